#!/usr/bin/env bash
# 26: the real gateway (`citygate run`) against citygate-sim over Modbus TCP (issue 3
# acceptance). Four devices share one TCP connection, polled every second with a short
# response timeout; the simulator plays tests/integration/data/modbus-e2e-tcp.json and
# tests/integration/data/modbus-e2e-check.py watches GET /api/devices and /metrics:
#   - held values arrive exactly (decoded, with the profile's unit, quality good), and
#     stay exact while the other devices misbehave on the same connection;
#   - a device that stops answering is offline within OFFLINE_AFTER x interval +
#     attempts x timeout (+ the health tick), not sooner than OFFLINE_AFTER-1 intervals,
#     while the others keep ~1 cycle/s (age_s < 2 s, samples grow); it comes back online;
#   - exception 04 is reported with its code (citygate_modbus_exceptions_total{code="4"},
#     last_exception / last_error in /api/devices), the device degraded, not offline;
#   - malformed answers are rejected and counted, never taken as values: a byte count
#     promising more than follows (read by byte count: a timeout), a wrong transaction
#     id, function code, unit id or an MBAP length 3 too long (bad_frame: the poller
#     frames TCP reads itself and checks every field, gateway/modbus/frame.h; libmodbus
#     3.1.6 took the last two as good answers); the device recovers when the answers
#     are sound again;
#   - the gateway survives all of it and stops cleanly on SIGTERM.
. "$(dirname "$0")/../harness/lib.sh"
need_citygate
SIM=${CITYGATE_SIM:-$CITYGATE_BUILD/devices/sim/citygate-sim}
[[ -x $SIM ]] || fail "citygate-sim not built: $SIM"
DATA=$CITYGATE_SRC/tests/integration/data
OFFLINE_AFTER=$(awk '/#define GW_POLLER_OFFLINE_AFTER/ {print $3}' "$CITYGATE_SRC/gateway/modbus/poller.h")
[[ $OFFLINE_AFTER =~ ^[0-9]+$ ]] || fail "cannot read GW_POLLER_OFFLINE_AFTER from poller.h"

TCP_PORT=$(free_port)
HTTP_PORT=$(free_port)
mkdir -p "$T/data"
cat >"$T/citygate.json" <<EOF
{
  "gateway": {"id": "GW-500103-0026", "admin_code": "500103", "data_dir": "$T/data",
              "log_level": "info"},
  "paths": {"profiles": "$CITYGATE_SRC/devices", "rules": "$T/no-rules"},
  "buses": [
    {"id": "field", "type": "tcp", "host": "127.0.0.1", "port": $TCP_PORT,
     "response_timeout_ms": 200, "retries": 1, "reconnect_min_ms": 200, "reconnect_max_ms": 2000}
  ],
  "devices": [
    {"id": "lamp-1", "kind": "lamp", "interval_ms": 1000, "rule_sets": [],
     "modbus": {"bus": "field", "unit_id": 1, "profile": "generic-lamp"},
     "component": {"code": "5001030118000001", "grid": "500103001002003"}},
    {"id": "mh-2", "kind": "manhole", "interval_ms": 1000, "rule_sets": [],
     "modbus": {"bus": "field", "unit_id": 2, "profile": "generic-manhole"},
     "component": {"code": "5001030102000002", "grid": "500103001002003"}},
    {"id": "lamp-3", "kind": "lamp", "interval_ms": 1000, "rule_sets": [],
     "modbus": {"bus": "field", "unit_id": 3, "profile": "generic-lamp"},
     "component": {"code": "5001030118000003", "grid": "500103001002003"}},
    {"id": "meter-4", "kind": "lamp", "interval_ms": 1000, "rule_sets": [],
     "modbus": {"bus": "field", "unit_id": 4, "profile": "eastron-sdm120"},
     "component": {"code": "5001030118000004", "grid": "500103001002003"}}
  ],
  "outputs": {"mqtt": {"enabled": false}, "influxdb": {"enabled": false}},
  "http": {"enabled": true, "listen": "127.0.0.1", "port": $HTTP_PORT}
}
EOF
"$CITYGATE_BIN" check -c "$T/citygate.json" >"$T/check.out" 2>&1 ||
    fail "citygate check refused the test config: $(cat "$T/check.out")"

start_bg sim "$SIM" -c "$T/citygate.json" --scenario "$DATA/modbus-e2e-tcp.json" --seed 26
wait_for "grep -q 'citygate-sim: ready' '$T/sim.log' || ! pid_alive $BG_PID" 15 || fail "simulator not ready"
pid_alive "$(bg_pid sim)" || fail "simulator exited at start"

start_bg citygate "$CITYGATE_BIN" run -c "$T/citygate.json"
GW_PID=$BG_PID
wait_for "curl -sf --max-time 1 http://127.0.0.1:$HTTP_PORT/api/devices || ! pid_alive $GW_PID" 15 ||
    fail "citygate HTTP did not answer on $HTTP_PORT"
pid_alive "$GW_PID" || fail "citygate exited at start"

"$PYTHON" "$DATA/modbus-e2e-check.py" --config "$T/citygate.json" \
    --scenario "$DATA/modbus-e2e-tcp.json" --sim-log "$T/sim.log" \
    --http "http://127.0.0.1:$HTTP_PORT" --gw-pid "$GW_PID" --offline-after "$OFFLINE_AFTER" \
    --expect short=timeout --expect tid=bad_frame --expect function=bad_frame \
    --expect unit=bad_frame --expect length=bad_frame >&2 ||
    fail "gateway against citygate-sim over TCP: see check: lines above"

grep -q "device mh-2 (bus field, unit 2) offline after $OFFLINE_AFTER unanswered cycles" "$T/citygate.log" ||
    fail "no offline line for mh-2 in the gateway log"
grep -q "device mh-2 online" "$T/citygate.log" || fail "no recovery line for mh-2 in the gateway log"
stop_pid "$GW_PID" TERM 10
[[ $STOP_KILLED == 0 && $STOP_RC == 0 ]] || fail "citygate did not stop cleanly on SIGTERM (rc $STOP_RC)"
info "PASS"
