#!/usr/bin/env bash
# citygate's command line and process lifecycle: --version and --help answer; `check`
# accepts a good config and rejects bad ones with exit 2; `run` starts, logs, and on
# SIGTERM and on SIGINT exits 0 within 5 s (measured); a secret from the config never
# reaches the logs.
. "$(dirname "$0")/../harness/lib.sh"
need_citygate

SECRET="pw-$RANDOM$RANDOM-do-not-log"
FILE_SECRET="fpw-$RANDOM$RANDOM-from-file"
STOP_LIMIT_MS=5000

# --- version and help --------------------------------------------------------------------
out=$("$CITYGATE_BIN" --version) || fail "--version exited $?"
[[ $out =~ ^citygate\ [0-9]+\.[0-9]+\.[0-9]+ ]] || fail "--version printed '$out'"
for verb in run check; do
    out=$("$CITYGATE_BIN" "$verb" --help) || fail "$verb --help exited $?"
    [[ $out == *"usage: citygate $verb"* ]] || fail "$verb --help printed: $out"
done
out=$("$CITYGATE_BIN" --help) || fail "--help exited $?"
[[ $out == *"usage: citygate"* ]] || fail "--help printed: $out"
set +e
"$CITYGATE_BIN" no-such-verb >/dev/null 2>&1
rc=$?
"$CITYGATE_BIN" run >/dev/null 2>&1 # no -c
rc2=$?
set -e
[[ $rc == 2 ]] || fail "unknown verb exited $rc, want 2"
[[ $rc2 == 2 ]] || fail "run without -c exited $rc2, want 2"

# --- configs -----------------------------------------------------------------------------
mkdir -p "$T/etc"
HTTP_PORT=$(free_port)
# The minimal config: a gateway and nothing to do (its page on a private port).
cat >"$T/etc/minimal.json" <<EOF
{
  "gateway": {"id": "GW-500103-0042", "name": "lifecycle test", "admin_code": "500103",
              "data_dir": "$T/data-minimal", "timezone": "+08:00", "log_level": "info"},
  "paths": {"profiles": "$CITYGATE_SRC/devices", "rules": "$CITYGATE_SRC/rules"},
  "http": {"port": $HTTP_PORT}
}
EOF

# A fuller one: upstream MQTT with credentials (to a real private broker), a password
# from a file in the credentials directory, debug logging, and - when the generic
# profile exists - two devices on a Modbus TCP bus where nothing listens.
start_mosquitto
DEAD_PORT=$(free_port)
printf '%s\n' "$FILE_SECRET" >"$T/etc/influx-password"
devices='[]'
buses='[]'
if [[ -f $CITYGATE_SRC/devices/generic-manhole.json ]]; then
    buses='[{"id": "field-tcp", "type": "tcp", "host": "127.0.0.1", "port": '$DEAD_PORT',
             "response_timeout_ms": 200, "reconnect_min_ms": 100, "reconnect_max_ms": 1000}]'
    devices='[
    {"id": "mh-0001", "kind": "manhole", "interval_ms": 500,
     "modbus": {"bus": "field-tcp", "unit_id": 1, "profile": "generic-manhole"},
     "component": {"code": "5001030102000001", "grid": "500103001002003"}},
    {"id": "mh-0002", "kind": "manhole", "interval_ms": 500,
     "modbus": {"bus": "field-tcp", "unit_id": 2, "profile": "generic-manhole"},
     "component": {"code": "5001030102000002", "grid": "500103001002003"}}]'
else
    info "NOTE: $CITYGATE_SRC/devices/generic-manhole.json missing: the full config has no devices"
fi
cat >"$T/etc/full.json" <<EOF
{
  "gateway": {"id": "GW-500103-0043", "name": "lifecycle test", "admin_code": "500103",
              "data_dir": "$T/data-full", "timezone": "+08:00", "log_level": "debug"},
  "paths": {"profiles": "$CITYGATE_SRC/devices", "rules": "$CITYGATE_SRC/rules"},
  "buses": $buses,
  "devices": $devices,
  "outputs": {
    "mqtt": {"enabled": true, "url": "tcp://127.0.0.1:$MQTT_PORT", "client_id": "lifecycle-test",
             "username": "citygate", "password": "$SECRET", "topic_prefix": "citygate"},
    "influxdb": {"enabled": true, "url": "http://127.0.0.1:$DEAD_PORT", "version": 1,
                 "database": "citygate", "username": "citygate",
                 "password_file": "influx-password", "flush_ms": 200, "timeout_ms": 500}
  },
  "http": {"enabled": true, "listen": "127.0.0.1", "port": $HTTP_PORT}
}
EOF

# --- check ---------------------------------------------------------------------------
for cfg in minimal full; do
    "$CITYGATE_BIN" check -c "$T/etc/$cfg.json" >"$T/check-$cfg.log" 2>&1 ||
        fail "check of the valid $cfg config exited $?: $(cat "$T/check-$cfg.log")"
done

cat >"$T/etc/bad-json.json" <<'EOF'
{"gateway": {"id": "GW-1", "admin_code": "500103",}
EOF
cat >"$T/etc/bad-keys.json" <<EOF
{
  "gateway": {"id": "GW-500103-0044", "admin_code": "500103", "data_dir": "$T/d",
              "log_levle": "info"},
  "outputs": {"mqtt": {"enabled": true, "url": "tcp://127.0.0.1:1", "password": "$SECRET",
                       "keepalive_s": "thirty"}}
}
EOF
cat >"$T/etc/bad-empty.json" <<'EOF'
[]
EOF
for bad in bad-json bad-keys bad-empty missing; do
    set +e
    (cd "$T/etc" && timeout 20 "$CITYGATE_BIN" check -c "$bad.json") >"$T/check-$bad.log" 2>&1
    rc=$?
    set -e
    [[ $rc == 2 ]] || fail "check of $bad.json exited $rc, want 2: $(cat "$T/check-$bad.log")"
    grep -q "^$bad.json: " "$T/check-$bad.log" ||
        fail "check of $bad.json did not name the file: $(cat "$T/check-$bad.log")"
done
grep -q 'log_levle' "$T/check-bad-keys.log" || fail "unknown key not reported"
grep -q 'keepalive_s' "$T/check-bad-keys.log" || fail "wrong type not reported"
# run refuses a bad config the same way, without starting.
set +e
(cd "$T/etc" && timeout 20 "$CITYGATE_BIN" run -c bad-keys.json) >"$T/run-bad.log" 2>&1
rc=$?
set -e
[[ $rc == 2 ]] || fail "run of a bad config exited $rc, want 2"

# --- run: start, log, stop on a signal within the limit --------------------------------
# run_and_stop NAME CONFIG SIGNAL: start, wait for the "started" line, run a moment,
# signal, and require exit 0 within STOP_LIMIT_MS.
run_and_stop() {
    local name=$1 cfg=$2 sig=$3 log=$T/$1.log
    CREDENTIALS_DIRECTORY=$T/etc start_bg "$name" "$CITYGATE_BIN" run -c "$cfg"
    local pid=$BG_PID
    wait_for "grep -q 'started' '$log' || ! pid_alive $pid" 15 ||
        fail "$name: no 'started' line within 15 s"
    pid_alive "$pid" || fail "$name: exited at start"
    sleep "${RUN_SECONDS:-1}"
    pid_alive "$pid" || fail "$name: died while running"
    stop_pid "$pid" "$sig" 10 || true
    info "$name: SIG$sig -> exit $STOP_RC after $STOP_MS ms"
    ((STOP_KILLED == 0)) || fail "$name: did not exit within 10 s of SIG$sig"
    [[ $STOP_RC == 0 ]] || fail "$name: exit status $STOP_RC after SIG$sig, want 0"
    ((STOP_MS < STOP_LIMIT_MS)) || fail "$name: took $STOP_MS ms to stop after SIG$sig (limit $STOP_LIMIT_MS)"
    grep -q 'stopped' "$log" || fail "$name: no 'stopped' line"
    [[ -s $log ]] || fail "$name: logged nothing"
}

run_and_stop minimal-term "$T/etc/minimal.json" TERM
run_and_stop minimal-int "$T/etc/minimal.json" INT
[[ -d $T/data-minimal ]] || fail "run did not create its data_dir"
RUN_SECONDS=3 run_and_stop full-term "$T/etc/full.json" TERM
RUN_SECONDS=3 run_and_stop full-int "$T/etc/full.json" INT

# --- secrets -----------------------------------------------------------------------------
for f in "$T"/*.log; do
    if grep -qF -e "$SECRET" -e "$FILE_SECRET" "$f"; then
        [[ ${f##*/} == mosquitto.log ]] && continue
        fail "a secret appears in ${f##*/}: $(grep -nF -e "$SECRET" -e "$FILE_SECRET" "$f" | head -3)"
    fi
done
info "no secret in any citygate log"
echo PASS
