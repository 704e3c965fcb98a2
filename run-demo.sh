#!/usr/bin/env bash
# The citygate demo: a simulated district (manholes, street lamps, water and gas
# sensors on Modbus TCP, an electricity meter on an RS-485 line made of a pty pair,
# LoRa manhole monitors over MQTT) feeding a real gateway, with a private mosquitto and
# InfluxDB, all on 127.0.0.1 ports nobody else uses and files in a temp dir.
#
#   ./run-demo.sh                  install missing packages, build, run until Ctrl-C
#   ./run-demo.sh --no-install     skip the package check
#   ./run-demo.sh --no-build       use the binaries already in the build dir
#   DEMO_SECONDS=60 ./run-demo.sh  stop by itself after 60 s
#   DEMO_KEEP=1 ./run-demo.sh      keep the temp dir (config, logs, data) afterwards
#
# It prints the alarm events as the gateway publishes them (one line each) and the
# address of the dashboard. Ctrl-C stops the gateway first, then everything else this
# script started (exactly those processes). Exit status 0 when the gateway stopped
# cleanly. Environment: CITYGATE_BUILD (build dir, default ./build), DEMO_CONFIG
# (default packaging/citygate.json), DEMO_SCENARIO (default
# devices/sim/scenarios/demo.json).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
install=1 build=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --no-install) install=0 ;;
    --no-build) build=0 ;;
    -h | --help)
        sed -n '2,20s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *)
        echo "run-demo.sh: unknown option $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

BUILD=${CITYGATE_BUILD:-$here/build}
DEMO_CONFIG=${DEMO_CONFIG:-$here/packaging/citygate.json}
DEMO_SCENARIO=${DEMO_SCENARIO:-$here/devices/sim/scenarios/demo.json}
DEMO_SECONDS=${DEMO_SECONDS:-0}

say() { printf 'demo: %s\n' "$*"; }

if [[ $install == 1 ]]; then
    "$here/scripts/install-deps.sh"
fi
if [[ $build == 1 ]]; then
    say "building in $BUILD (first time: a few minutes)"
    # The same cache settings as run-tests.sh, so the two never rebuild each other's tree.
    mkdir -p "$BUILD"
    cmake -S "$here" -B "$BUILD" -DCITYGATE_WERROR=ON >"$BUILD/configure.log" 2>&1 ||
        { cat "$BUILD/configure.log" >&2; exit 1; }
    cmake --build "$BUILD" -j"$(nproc)" >"$BUILD/build.log" 2>&1 ||
        { tail -n 40 "$BUILD/build.log" >&2; say "build failed (log: $BUILD/build.log)"; exit 1; }
fi

export CITYGATE_SRC=$here CITYGATE_BUILD=$BUILD CITYGATE_BIN=$BUILD/gateway/citygate
SIM_BIN=$BUILD/devices/sim/citygate-sim
# The demo runs until stopped, keeps Ctrl-C for itself and may keep its files.
export HARNESS_TIMEOUT=0 HARNESS_BG_SIGINT=inherit HARNESS_KEEP=${DEMO_KEEP:-0}
# DEMO_VERBOSE=1 shows the harness's own progress lines.
export HARNESS_QUIET=$([[ ${DEMO_VERBOSE:-0} == 1 ]] && echo 0 || echo 1)
. "$here/tests/harness/lib.sh"
need_citygate
say "files in $T"

# --- the field: RTU lines, broker, database ---------------------------------------------
rtu_gw=() rtu_sim=()
while read -r bus; do
    [[ -n $bus ]] || continue
    start_socat_pty "rtu-$bus"
    rtu_gw+=(--rtu "$bus=$PTY_A")
    rtu_sim+=(--rtu "$bus=$PTY_B")
done < <("$PYTHON" "$here/scripts/demo-config.py" --list-rtu "$DEMO_CONFIG")
start_mosquitto
start_influxd

# Plugins built in the tree, wherever their CMake put them, gathered in one directory.
mkdir -p "$T/plugins"
if [[ -d $BUILD/plugins ]]; then
    find "$BUILD/plugins" -name '*.so' -type f -exec ln -sf {} "$T/plugins/" \;
fi

HTTP_PORT=$(free_port)
CONFIG=$T/citygate.json
"$PYTHON" "$here/scripts/demo-config.py" "$DEMO_CONFIG" "$CONFIG" \
    --data-dir "$T/data" --mqtt-url "$MQTT_URL" --influx-url "$INFLUX_URL" \
    --http-port "$HTTP_PORT" --plugins "$T/plugins" "${rtu_gw[@]}" >"$T/buses.txt" ||
    fail "could not write the demo config"
"$CITYGATE_BIN" check -c "$CONFIG" >"$T/check.log" 2>&1 || {
    cat "$T/check.log" >&2
    fail "the demo config does not pass 'citygate check'"
}

# --- the simulator -----------------------------------------------------------------------
if [[ -x $SIM_BIN ]]; then
    sim_args=(-c "$CONFIG" "${rtu_sim[@]}")
    if [[ -f $DEMO_SCENARIO ]]; then
        sim_args+=(--scenario "$DEMO_SCENARIO")
    else
        say "note: no scenario $DEMO_SCENARIO; the simulated devices stay normal"
    fi
    start_bg citygate-sim "$SIM_BIN" "${sim_args[@]}"
    while read -r _ bus port; do
        wait_for "port_listening $port || ! pid_alive $BG_PID" 15 ||
            fail "citygate-sim does not serve bus $bus on port $port"
        pid_alive "$BG_PID" || fail "citygate-sim exited at start"
    done <"$T/buses.txt"
    say "simulator serving $(wc -l <"$T/buses.txt") TCP bus(es) and $((${#rtu_sim[@]} / 2)) RTU line(s)"
else
    say "note: $SIM_BIN not built yet: running without simulated devices (they will show as offline)"
fi

# --- the event printer: mosquitto_sub -> fifo -> one line per event ---------------------
mkfifo "$T/events.fifo"
"$PYTHON" "$here/scripts/demo-events.py" <"$T/events.fifo" &
track_pid event-printer $!
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t 'citygate/+/event/#' -F '%j' \
    >"$T/events.fifo" 2>>"$T/mosquitto_sub.log" </dev/null &
track_pid event-subscriber $!

# --- the gateway ---------------------------------------------------------------------------
start_bg citygate "$CITYGATE_BIN" run -c "$CONFIG"
GW_PID=$BG_PID
wait_for "grep -q started '$T/citygate.log' || ! pid_alive $GW_PID" 30 ||
    fail "citygate did not report 'started' within 30 s"
pid_alive "$GW_PID" || fail "citygate exited at start"
say "citygate started (pid $GW_PID)"
say "dashboard: http://127.0.0.1:$HTTP_PORT/"
say "mqtt: $MQTT_URL   influxdb: $INFLUX_URL (database citygate)   gateway log: $T/citygate.log"
say "processes: $(for p in "${HARNESS_PIDS[@]}"; do printf '%s=%s ' "${HARNESS_NAME[$p]}" "$p"; done)"
if ((DEMO_SECONDS > 0)); then
    say "running for ${DEMO_SECONDS} s; events:"
else
    say "Ctrl-C to stop; events:"
fi

# --- run until Ctrl-C, SIGTERM or DEMO_SECONDS ----------------------------------------------
stop_requested=0
trap 'stop_requested=1' INT TERM
deadline=$(($(now_ms) + DEMO_SECONDS * 1000))
while ((stop_requested == 0)); do
    if ((DEMO_SECONDS > 0 && $(now_ms) >= deadline)); then break; fi
    pid_alive "$GW_PID" || { stop_pid "$GW_PID"; fail "citygate exited by itself (status $STOP_RC)"; }
    sleep 0.5 || true
done
trap 'exit 130' INT
trap 'exit 143' TERM

# Gateway first (it says goodbye to the broker), then the harness stops the rest.
stop_pid "$GW_PID" TERM 10 || true
say "citygate stopped: exit $STOP_RC after $STOP_MS ms"
((STOP_KILLED == 0)) || fail "citygate ignored SIGTERM for 10 s and was killed"
[[ $STOP_RC == 0 ]] || fail "citygate exited with status $STOP_RC"
((STOP_MS < 5000)) || fail "citygate took $STOP_MS ms to stop"
exit 0
