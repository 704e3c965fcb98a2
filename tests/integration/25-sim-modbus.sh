#!/usr/bin/env bash
# citygate-sim against an independent Modbus client (Debian's pymodbus, raw sockets,
# raw serial frames): plausible values that decode within their ranges, exact held
# values, exceptions 02/03/0B, writes, RTU over a socat pty pair (CRC, silence for an
# unknown unit and a bad CRC), the scripted exception / silence / drip at their times,
# 1,000 devices on one port number answering over 1,000 concurrent connections,
# --speed with a "stop" step, config and scenario errors, clean SIGTERM.
. "$(dirname "$0")/../harness/lib.sh"

SIM=${CITYGATE_SIM:-$CITYGATE_BUILD/devices/sim/citygate-sim}
[[ -x $SIM ]] || fail "citygate-sim not built: $SIM"
"$PYTHON" -c 'import pymodbus, serial' 2>/dev/null || fail "python3-pymodbus / python3-serial missing"
CHECK="$PYTHON $CITYGATE_SRC/tests/integration/tools/sim_check.py"

mkdir -p "$T/devices"
cat >"$T/devices/test-mixed.json" <<'EOF'
{"name": "test-mixed", "byte_order": "ABCD",
 "points": [
  {"field": "voltage_v", "table": "input", "address": 0, "type": "u16", "scale": 0.1, "unit": "V"},
  {"field": "power_w", "table": "input", "address": 1, "type": "f32", "unit": "W"},
  {"field": "energy_kwh", "table": "input", "address": 3, "type": "u32", "byte_order": "CDAB", "scale": 0.01, "unit": "kWh"},
  {"field": "tilt_deg", "table": "holding", "address": 10, "type": "i16", "scale": 0.01, "unit": "deg"},
  {"field": "pressure_mpa", "table": "holding", "address": 11, "type": "i16", "decimal_register": 12, "unit": "MPa"},
  {"field": "ch4_lel", "table": "holding", "address": 20, "type": "f32", "byte_order": "DCBA", "unit": "%LEL"},
  {"field": "relay_on", "table": "coil", "address": 0, "type": "bool"},
  {"field": "cover_open", "table": "discrete", "address": 5, "type": "bool"},
  {"field": "fixed", "table": "holding", "address": 30, "type": "u16", "sim": {"value": 1234}}
 ]}
EOF

# write_config FILE TCP_PORT RTU_DEVICE [HOSTS UNITS]: d1 (lamp) and d2 (water) on TCP,
# d3 (gas) on RTU; or HOSTS x UNITS devices on 127.0.0.1..HOSTS, all on TCP_PORT.
write_config() {
    "$PYTHON" - "$@" <<'EOF'
import json, sys
out, port, rtu = sys.argv[1], int(sys.argv[2]), sys.argv[3]
comp = lambda i: {"code": "5001030118%06d" % i, "grid": "500103001002003"}
cfg = {"gateway": {"id": "GW-SIM-TEST", "admin_code": "500103"},
       "paths": {"profiles": "devices", "rules": "devices"},
       "outputs": {"mqtt": {"enabled": False}, "influxdb": {"enabled": False}},
       "http": {"enabled": False}}
if len(sys.argv) > 4:
    hosts, units = int(sys.argv[4]), int(sys.argv[5])
    cfg["buses"] = [{"id": "b%d" % h, "type": "tcp", "host": "127.0.0.%d" % h, "port": port}
                    for h in range(1, hosts + 1)]
    cfg["devices"] = [{"id": "dev-%d-%d" % (h, u), "kind": "lamp", "interval_ms": 1000,
                       "modbus": {"bus": "b%d" % h, "unit_id": u, "profile": "test-mixed"},
                       "component": comp(h * 1000 + u)}
                      for h in range(1, hosts + 1) for u in range(1, units + 1)]
else:
    cfg["buses"] = [{"id": "t", "type": "tcp", "host": "127.0.0.1", "port": port},
                    {"id": "r", "type": "rtu", "device": rtu}]
    cfg["devices"] = [
        {"id": "d1", "kind": "lamp", "modbus": {"bus": "t", "unit_id": 1, "profile": "test-mixed"}, "component": comp(1)},
        {"id": "d2", "kind": "water", "modbus": {"bus": "t", "unit_id": 2, "profile": "test-mixed"}, "component": comp(2)},
        {"id": "d3", "kind": "gas", "modbus": {"bus": "r", "unit_id": 5, "profile": "test-mixed"}, "component": comp(3)}]
json.dump(cfg, open(out, "w"), indent=1)
EOF
}

# start_sim NAME ARGS...: start the simulator and wait for its ready line.
start_sim() {
    local name=$1
    shift
    start_bg "$name" "$SIM" "$@"
    wait_for "grep -q 'citygate-sim: ready' $T/$name.log || ! pid_alive $BG_PID" 15 ||
        fail "$name: no ready line within 15 s"
    pid_alive "$BG_PID" || fail "$name exited at start"
}

# ---- 1. values, exceptions, writes, RTU -----------------------------------------------
start_socat_pty line
P1=$(free_port)
write_config "$T/a.json" "$P1" "$PTY_A"
cat >"$T/hold.json" <<'EOF'
{"description": "d1 holds exact values; d2 and d3 walk",
 "steps": [{"at": "0s", "device": "d1", "hold": true,
            "set": {"voltage_v": 230.5, "tilt_deg": -3.25, "relay_on": true}}]}
EOF
start_sim sim-a -c "$T/a.json" --scenario "$T/hold.json" --rtu "r=$PTY_B" --seed 7
$CHECK values "$P1" "$PTY_A" || fail "value checks failed"
grep -q 'step 0: {"at":"0s","device":"d1"' "$T/sim-a.log" || fail "scenario step not logged"

stop_bg sim-a TERM 5
[[ $STOP_KILLED == 0 && $STOP_RC == 0 ]] || fail "sim-a did not exit 0 on SIGTERM (rc $STOP_RC)"
grep -q 'stopping on signal 15' "$T/sim-a.log" || fail "no clean-stop line"
info "SIGTERM: clean exit in ${STOP_MS} ms"

# ---- 2. scripted faults at their times -------------------------------------------------
P2=$(free_port)
write_config "$T/b.json" "$P2" /dev/null
cat >"$T/timeline.json" <<'EOF'
{"steps": [
  {"at": "2s", "device": "d1", "exception": {"address": 11, "code": 4, "table": "holding"}},
  {"at": "3s", "device": "d2", "silent": true},
  {"at": "5s", "device": "d2", "silent": false},
  {"at": "6s", "device": "d2", "drip_ms": 10}]}
EOF
start_sim sim-b -c "$T/b.json" --scenario "$T/timeline.json"
$CHECK timeline "$P2" || fail "timeline checks failed"
stop_bg sim-b

# ---- 3. 1,000 devices on one port number (5 loopback hosts x 200 unit ids) -----------
ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(( $(ulimit -n) >= 1100 )) || fail "need 1100 open files for 1,000 connections, have $(ulimit -n)"
P3=$(free_port)
write_config "$T/c.json" "$P3" /dev/null 5 200
start_sim sim-c -c "$T/c.json" --log-level notice
$CHECK many "$P3" 5 200 || fail "1,000-device checks failed"
pid=$(bg_pid sim-c)
threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
info "1,000 devices: simulator has $threads thread(s), RSS ${rss} kB"
[[ $threads -eq 1 ]] || fail "simulator should serve 1,000 devices on one thread, has $threads"
stop_bg sim-c

# ---- 4. --speed and a stop step ---------------------------------------------------------
cat >"$T/stop.json" <<'EOF'
{"steps": [{"at": "20s", "stop": true, "note": "runs 2 s at --speed 10"}]}
EOF
t0=$(now_ms)
start_sim sim-d -c "$T/b.json" --scenario "$T/stop.json" --speed 10 --listen-override "t=$(free_port)"
pid=$(bg_pid sim-d)
wait_for "! pid_alive $pid" 10 || fail "sim-d did not stop by its scenario"
dt=$(($(now_ms) - t0))
wait "$pid" && rc=0 || rc=$?
forget_pid "$pid"
[[ $rc == 0 ]] || fail "scenario stop exit status $rc"
((dt >= 1500 && dt <= 5000)) || fail "stop at 20 s / speed 10 took $dt ms (want ~2000)"
info "--speed 10: stop step at 20 s ran after $dt ms"

# ---- 5. errors name the place ---------------------------------------------------------
cat >"$T/bad.json" <<'EOF'
{"steps": [
  {"at": "1x", "device": "nope", "set": {"tilt": 3}},
  {"at": "1s", "device": "d1", "set": {"tilt_dg": 3}, "silnt": true},
  {"at": "1s", "device": "d1", "ramp": {"tilt_deg": {"to": 5, "ovr": "1s"}}}]}
EOF
set +e
"$SIM" -c "$T/b.json" --scenario "$T/bad.json" >"$T/bad.out" 2>&1
rc=$?
set -e
[[ $rc == 2 ]] || fail "bad scenario: exit $rc, want 2"
for want in "bad.json: steps[0].at: must be a time" \
            "bad.json: steps[0].device: no device 'nope'" \
            "bad.json: steps[1].silnt: unknown key 'silnt'" \
            "bad.json: steps[1].set.tilt_dg: no field 'tilt_dg' on d1" \
            "bad.json: steps[2].ramp.tilt_deg.ovr: unknown key 'ovr'"; do
    grep -qF "$want" "$T/bad.out" || fail "missing error line: $want (got: $(cat "$T/bad.out"))"
done
set +e
"$SIM" -c "$T/b.json" --rtu "t=/dev/null" >"$T/bad2.out" 2>&1
rc=$?
set -e
[[ $rc == 2 ]] && grep -qF -- "--rtu: t: no RTU bus 't'" "$T/bad2.out" ||
    fail "--rtu on a TCP bus: exit $rc, $(cat "$T/bad2.out")"

# ---- 6. the shipped demo scenario stays valid for the packaged config -----------------
start_sim sim-demo -c "$CITYGATE_SRC/packaging/citygate.json" \
    --scenario "$CITYGATE_SRC/devices/sim/scenarios/demo.json" \
    --listen-override "field-tcp=$(free_port)" --speed 100
wait_for "grep -q 'step 10:' $T/sim-demo.log" 10 || fail "demo scenario did not run its steps"
stop_bg sim-demo
[[ $STOP_RC == 0 ]] || fail "demo run exit status $STOP_RC"
info "PASS"
