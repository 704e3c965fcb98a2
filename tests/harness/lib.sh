# shellcheck shell=bash
# citygate integration-test harness. Every tests/integration/NN-*.sh sources this file:
#
#   . "$(dirname "$0")/../harness/lib.sh"
#
# What it gives a test:
#   - $T: a private temp dir, removed at exit (HARNESS_KEEP=1 keeps it for a post mortem);
#   - real servers on free 127.0.0.1 ports with their files in $T: start_mosquitto,
#     start_influxd, start_socat_pty; any other process with start_bg;
#   - an EXIT trap that stops exactly the PIDs this harness started (TERM, then KILL
#     after HARNESS_GRACE seconds) and nothing else: never a kill by name;
#   - a watchdog: after HARNESS_TIMEOUT seconds (default 240, 0 = off) the test is
#     failed and cleaned up, before ctest's own timeout would kill the shell and orphan
#     its children.
#
# Every helper that waits has a timeout; every failure goes through fail(), which
# prints the message (and the tails of the logs in $T) and exits 1. Loopback only.

set -euo pipefail

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${CITYGATE_SRC:=$(cd "$HARNESS_DIR/../.." && pwd)}"
: "${CITYGATE_BUILD:=$CITYGATE_SRC/build}"
: "${CITYGATE_BIN:=$CITYGATE_BUILD/gateway/citygate}"
: "${HARNESS_GRACE:=5}"
: "${HARNESS_TIMEOUT:=240}"
: "${HARNESS_KEEP:=0}"
: "${HARNESS_QUIET:=0}"
export CITYGATE_SRC CITYGATE_BUILD CITYGATE_BIN

# Debian's interpreter: pymodbus and friends are installed for it, not for pyenv & co.
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi

T=$(mktemp -d "${TMPDIR:-/tmp}/citygate-$(basename "${0%.sh}").XXXXXX")
export T

HARNESS_PIDS=()          # PIDs started here, in start order
declare -A HARNESS_NAME  # PID -> name (for messages)
declare -A HARNESS_PID   # name -> PID
HARNESS_PORTS=" "        # ports handed out by free_port, never handed out twice
HARNESS_EXIT_HOOKS=()
HARNESS_WATCHDOG=""
HARNESS_T0=$(date +%s%N)

# ---- messages ------------------------------------------------------------------------

# Milliseconds since the harness was loaded.
elapsed_ms() { echo $((($(date +%s%N) - HARNESS_T0) / 1000000)); }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

info() {
    [[ $HARNESS_QUIET == 1 ]] && return 0
    printf '[%6d ms] %s\n' "$(elapsed_ms)" "$*" >&2
}

# Print the last lines of every log in $T (what a failing test most needs).
dump_logs() {
    local f
    for f in "$T"/*.log; do
        [[ -s $f ]] || continue
        printf -- '----- %s (last 30 lines) -----\n' "${f##*/}" >&2
        tail -n 30 "$f" >&2 || true
    done
}

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    [[ ${HARNESS_NO_DUMP:-0} == 1 ]] || dump_logs
    exit 1
}

# ---- processes -----------------------------------------------------------------------

# 1 if PID runs (a zombie counts as gone: it has exited, only not been reaped).
pid_alive() {
    local pid=$1 state
    [[ -r /proc/$pid/stat ]] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# Drop PID from the harness's records (after it was stopped and reaped).
forget_pid() {
    local pid=$1 i name
    for i in "${!HARNESS_PIDS[@]}"; do
        [[ ${HARNESS_PIDS[$i]} == "$pid" ]] && unset 'HARNESS_PIDS[i]'
    done
    HARNESS_PIDS=("${HARNESS_PIDS[@]}")
    name=${HARNESS_NAME[$pid]:-}
    unset 'HARNESS_NAME[$pid]'
    if [[ -n $name && ${HARNESS_PID[$name]:-} == "$pid" ]]; then
        unset 'HARNESS_PID[$name]'
    fi
}

# track_pid NAME PID: record a process the caller started itself (its own redirections,
# a pipeline stage) so that the EXIT trap stops it like the others.
track_pid() {
    HARNESS_PIDS+=("$2")
    HARNESS_NAME[$2]=$1
    HARNESS_PID[$1]=$2
}

# start_bg NAME CMD [ARGS...]: run CMD in the background with stdout and stderr in
# $T/NAME.log; records the PID (BG_PID, and `bg_pid NAME`). SIGINT and SIGQUIT are
# reset to their defaults: a non-interactive shell makes its background jobs ignore
# them, which would hide exactly what a Ctrl-C test wants to see. HARNESS_BG_SIGINT=
# inherit keeps them ignored (a demo wants Ctrl-C to reach only the script, which then
# stops everything in order).
start_bg() {
    local name=$1
    shift
    [[ $# -gt 0 ]] || fail "start_bg $name: no command"
    if [[ ${HARNESS_BG_SIGINT:-default} == inherit ]]; then
        "$@" >>"$T/$name.log" 2>&1 </dev/null &
    else
        env --default-signal=INT,QUIT "$@" >>"$T/$name.log" 2>&1 </dev/null &
    fi
    BG_PID=$!
    track_pid "$name" "$BG_PID"
    info "started $name (pid $BG_PID): $*"
}

bg_pid() { echo "${HARNESS_PID[$1]:-}"; }

# stop_pid PID [SIGNAL] [TIMEOUT_S]: send SIGNAL (default TERM), wait up to TIMEOUT_S
# (default HARNESS_GRACE) for the process to exit, KILL it if it did not. Sets STOP_MS
# (time from signal to exit), STOP_RC (exit status when it was our child, else -1) and
# STOP_KILLED (1 if it had to be killed). Returns 0 when it exited within the timeout.
stop_pid() {
    local pid=$1 sig=${2:-TERM} timeout=${3:-$HARNESS_GRACE} t0 deadline rc=0
    STOP_RC=-1 STOP_MS=0 STOP_KILLED=0
    if ! pid_alive "$pid"; then
        wait "$pid" 2>/dev/null && STOP_RC=0 || STOP_RC=$?
        forget_pid "$pid"
        return 0
    fi
    t0=$(now_ms)
    deadline=$((t0 + ${timeout%.*} * 1000))
    kill -s "$sig" "$pid" 2>/dev/null || true
    while pid_alive "$pid" && (($(now_ms) < deadline)); do sleep 0.02; done
    STOP_MS=$(($(now_ms) - t0))
    if pid_alive "$pid"; then
        info "pid $pid (${HARNESS_NAME[$pid]:-?}) ignored SIG$sig for ${timeout}s: killing"
        kill -KILL "$pid" 2>/dev/null || true
        STOP_KILLED=1
        rc=1
        while pid_alive "$pid"; do sleep 0.02; done
    fi
    # Reap it when it is our child; the status tells how it ended.
    if wait "$pid" 2>/dev/null; then STOP_RC=0; else STOP_RC=$?; fi
    forget_pid "$pid"
    return $rc
}

# stop_bg NAME [SIGNAL] [TIMEOUT_S]: stop_pid for a process started with start_bg.
stop_bg() {
    local pid
    pid=$(bg_pid "$1")
    [[ -n $pid ]] || fail "stop_bg: no process named $1"
    stop_pid "$pid" "${2:-TERM}" "${3:-$HARNESS_GRACE}"
}

# on_exit CMD: run CMD (a string, eval'd) at exit, before the harness's PIDs are stopped
# (newest hook first). A hook may set rc to change the exit status.
on_exit() { HARNESS_EXIT_HOOKS+=("$1"); }

harness_cleanup() {
    local rc=$? pid i deadline
    trap - EXIT INT TERM HUP
    set +e
    if [[ -n $HARNESS_WATCHDOG ]]; then
        kill -TERM "$HARNESS_WATCHDOG" 2>/dev/null
        wait "$HARNESS_WATCHDOG" 2>/dev/null
    fi
    for ((i = ${#HARNESS_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${HARNESS_EXIT_HOOKS[$i]}"
    done
    # Newest first: clients go before the servers they talk to.
    for ((i = ${#HARNESS_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${HARNESS_PIDS[$i]}
        pid_alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    deadline=$(($(now_ms) + HARNESS_GRACE * 1000))
    for pid in "${HARNESS_PIDS[@]}"; do
        while pid_alive "$pid" && (($(now_ms) < deadline)); do sleep 0.05; done
        if pid_alive "$pid"; then
            echo "harness: pid $pid (${HARNESS_NAME[$pid]:-?}) ignored SIGTERM: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    HARNESS_PIDS=()
    if [[ $HARNESS_KEEP == 1 ]]; then
        echo "harness: kept $T" >&2
    else
        rm -rf "$T"
    fi
    exit "$rc"
}
trap harness_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [[ $HARNESS_TIMEOUT -gt 0 ]]; then
    # The watchdog is a subshell of ours (not in HARNESS_PIDS: it must outlive the
    # stop of everything else); its sleep dies with it.
    (
        trap 'kill -TERM $sp 2>/dev/null; exit 0' TERM
        sleep "$HARNESS_TIMEOUT" &
        sp=$!
        wait $sp
        echo "FAIL: harness watchdog: test still running after ${HARNESS_TIMEOUT}s" >&2
        kill -TERM $$
    ) &
    HARNESS_WATCHDOG=$!
fi

# ---- waiting -------------------------------------------------------------------------

# wait_for CMD TIMEOUT_S: eval CMD every 50 ms until it succeeds; returns 1 on timeout.
wait_for() {
    local cmd=$1 timeout=${2:-10} deadline
    deadline=$(($(now_ms) + ${timeout%.*} * 1000))
    until eval "$cmd" >/dev/null 2>&1; do
        (($(now_ms) < deadline)) || return 1
        sleep 0.05
    done
}

port_listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
port_in_use() { [[ -n $(ss -Htan "sport = :$1" 2>/dev/null | grep -v TIME-WAIT) ]]; }

# wait_port PORT TIMEOUT_S: until something listens on PORT; returns 1 on timeout.
wait_port() { wait_for "port_listening $1" "${2:-10}"; }
# wait_port_free PORT TIMEOUT_S: until nothing listens on PORT.
wait_port_free() { wait_for "! port_listening $1" "${2:-10}"; }

# free_port: a port the kernel says is free on 127.0.0.1 now. Never returns the same
# port twice in one test, so two servers started back to back cannot collide.
free_port() {
    local port tries=0
    while ((tries++ < 50)); do
        port=$("$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
        if [[ $HARNESS_PORTS != *" $port "* ]] && ! port_in_use "$port"; then
            HARNESS_PORTS+="$port "
            echo "$port"
            return 0
        fi
    done
    fail "free_port: no free port after 50 tries"
}

# ---- mosquitto -----------------------------------------------------------------------

# start_mosquitto [PORT]: a private broker on 127.0.0.1 (anonymous; no persistence, or
# with MOSQUITTO_PERSISTENCE=1 sessions and retained messages kept in $T/mosquitto-db
# across restart_mosquitto, saved every second and at a clean stop).
# Exports MQTT_PORT, MQTT_URL (tcp://127.0.0.1:PORT), MOSQUITTO_PID. Log: $T/mosquitto.log.
start_mosquitto() {
    local port=${1:-${MQTT_PORT:-}} persist="persistence false"
    [[ -n $port ]] || port=$(free_port)
    if [[ ${MOSQUITTO_PERSISTENCE:-0} == 1 ]]; then
        mkdir -p "$T/mosquitto-db"
        persist="persistence true
persistence_location $T/mosquitto-db/
autosave_interval 1"
    fi
    # "user": as root, mosquitto would switch to the mosquitto user, which cannot write
    # into the private temp dir.
    cat >"$T/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
user $(id -un)
$persist
log_dest file $T/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
max_queued_messages 100000
EOF
    start_bg mosquitto-proc mosquitto -c "$T/mosquitto.conf"
    MOSQUITTO_PID=$BG_PID
    MQTT_PORT=$port
    MQTT_URL="tcp://127.0.0.1:$port"
    export MOSQUITTO_PID MQTT_PORT MQTT_URL
    wait_for "port_listening $port || ! pid_alive $MOSQUITTO_PID" 10 ||
        fail "mosquitto did not listen on $port within 10 s"
    pid_alive "$MOSQUITTO_PID" || fail "mosquitto exited at start (port $port)"
    info "mosquitto on 127.0.0.1:$port"
}

# stop_mosquitto [SIGNAL]: stop the broker (TERM by default; KILL for a crash).
stop_mosquitto() {
    [[ -n ${MOSQUITTO_PID:-} ]] || fail "stop_mosquitto: not started"
    stop_pid "$MOSQUITTO_PID" "${1:-TERM}" 10 || true
    MOSQUITTO_PID=""
    wait_port_free "$MQTT_PORT" 10 || fail "mosquitto port $MQTT_PORT still busy after stop"
}

# restart_mosquitto [SIGNAL]: stop (with SIGNAL) and start again on the same port.
restart_mosquitto() {
    stop_mosquitto "${1:-TERM}"
    start_mosquitto "$MQTT_PORT"
}

# ---- influxd -------------------------------------------------------------------------

# start_influxd: a private InfluxDB 1.x on two free loopback ports (HTTP and RPC) with
# its data in $T/influxdb; waits for /ping and creates database "citygate".
# Exports INFLUX_PORT, INFLUX_URL, INFLUXD_PID. Log: $T/influxd.log.
start_influxd() {
    local port=${1:-${INFLUX_PORT:-}} rpc dir=$T/influxdb
    [[ -n $port ]] || port=$(free_port)
    rpc=$(free_port)
    mkdir -p "$dir/meta" "$dir/data" "$dir/wal"
    cat >"$T/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"

[meta]
  dir = "$dir/meta"

[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$port"
  log-enabled = false

[monitor]
  store-enabled = false

[logging]
  level = "warn"
EOF
    start_bg influxd-proc influxd run -config "$T/influxdb.conf"
    INFLUXD_PID=$BG_PID
    INFLUX_PORT=$port
    INFLUX_URL="http://127.0.0.1:$port"
    export INFLUXD_PID INFLUX_PORT INFLUX_URL
    wait_for "[[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 $INFLUX_URL/ping) == 204 ]] || ! pid_alive $INFLUXD_PID" 30 ||
        fail "influxd did not answer /ping within 30 s"
    pid_alive "$INFLUXD_PID" || fail "influxd exited at start"
    influx_query "CREATE DATABASE citygate" >/dev/null
    info "influxd on 127.0.0.1:$port (rpc $rpc)"
}

# influx_query Q [DB]: run an InfluxQL statement through /query; prints the JSON answer.
influx_query() {
    local q=$1 db=${2:-citygate}
    curl -sS --fail --max-time 10 -XPOST "$INFLUX_URL/query" \
        --data-urlencode "db=$db" --data-urlencode "q=$q"
}

# influx_write LINES [DB]: write line protocol (precision ns); fails unless 204.
influx_write() {
    local code
    code=$(curl -sS -o "$T/influx-write.out" -w '%{http_code}' --max-time 10 \
        -XPOST "$INFLUX_URL/write?db=${2:-citygate}" --data-binary "$1")
    [[ $code == 204 ]] || fail "influx write answered $code: $(cat "$T/influx-write.out")"
}

stop_influxd() {
    [[ -n ${INFLUXD_PID:-} ]] || fail "stop_influxd: not started"
    stop_pid "$INFLUXD_PID" "${1:-TERM}" 15 || true
    INFLUXD_PID=""
    wait_port_free "$INFLUX_PORT" 10 || fail "influxd port $INFLUX_PORT still busy after stop"
}

# ---- pseudo-terminal pair (an RS-485 line on one box) --------------------------------

# start_socat_pty [NAME]: a pty pair with links $T/NAME-a and $T/NAME-b (NAME default
# "pty"). Exports PTY_A, PTY_B, SOCAT_PID (for the last pair started).
start_socat_pty() {
    local name=${1:-pty}
    start_bg "socat-$name" socat -d -d "pty,raw,echo=0,link=$T/$name-a" "pty,raw,echo=0,link=$T/$name-b"
    SOCAT_PID=$BG_PID
    PTY_A=$T/$name-a
    PTY_B=$T/$name-b
    export SOCAT_PID PTY_A PTY_B
    wait_for "[[ -e $PTY_A && -e $PTY_B ]]" 10 || fail "socat did not create $PTY_A / $PTY_B"
    info "pty pair $PTY_A <-> $PTY_B"
}

# ---- citygate ------------------------------------------------------------------------

# need_citygate: fail unless the binary exists.
need_citygate() {
    [[ -x $CITYGATE_BIN ]] || fail "citygate binary not found: $CITYGATE_BIN (build first)"
}
