#!/usr/bin/env bash
# Modbus RTU on a socat pseudo-terminal pair, against an independent RTU server
# (python3-pymodbus on the other end): `citygate poll` reads the shipped pzem-016 and
# rs485-pressure profiles exactly (u32 low word first, decimal-point register); a unit
# id nobody answers times out (exit 1) within its bound; the poller keeps the answering
# units' cadence on the shared serial line while the silent one goes offline.
. "$(dirname "$0")/../harness/lib.sh"
need_citygate
POLLRUN=$CITYGATE_BUILD/tests/integration/tools/modbus_pollrun
SERVER=$CITYGATE_SRC/tests/integration/tools/modbus_pyserver.py
[[ -x $POLLRUN ]] || fail "modbus_pollrun not built: $POLLRUN"
"$PYTHON" -c 'import pymodbus, serial, serial_asyncio' 2>/dev/null ||
    fail "python3-pymodbus, python3-serial and python3-serial-asyncio are required"

mkdir -p "$T/devices" "$T/etc"
cp "$CITYGATE_SRC/devices/pzem-016.json" "$CITYGATE_SRC/devices/rs485-pressure.json" "$T/devices/"

# PZEM: 230.1 V, current 0x00012345 = 74.565 A (LW first), power 0x00000BB8 = 300.0 W,
# energy 5000 Wh, 50.0 Hz, PF 0.95, no alarm. Pressure transmitter: dp 2, value -1234.
cat >"$T/spec.json" <<'EOF'
{"units": {
  "1": {"input": {"0": 2301, "1": 9029, "2": 1, "3": 3000, "4": 0, "5": 5000, "6": 0,
                  "7": 500, "8": 95, "9": 0}},
  "2": {"holding": {"0": 2, "1": 3, "2": 1, "3": 2, "4": 64302, "5": 0, "6": 10000}}}}
EOF

start_socat_pty rs485
start_bg pymodbus-rtu "$PYTHON" "$SERVER" --spec "$T/spec.json" --serial "$PTY_B"
wait_for "grep -q serving $T/pymodbus-rtu.log" 20 || fail "pymodbus RTU server did not start"
sleep 0.5

cat >"$T/etc/citygate.json" <<EOF
{
  "gateway": {"id": "GW-500103-0021", "admin_code": "500103", "data_dir": "$T/data",
              "log_level": "info"},
  "paths": {"profiles": "$T/devices", "rules": "$CITYGATE_SRC/rules"},
  "buses": [
    {"id": "rs485", "type": "rtu", "device": "$PTY_A", "baud": 9600, "parity": "N",
     "data_bits": 8, "stop_bits": 1, "response_timeout_ms": 300, "retries": 1,
     "reconnect_min_ms": 100, "reconnect_max_ms": 1000}
  ],
  "devices": [
    {"id": "pzem", "kind": "lamp", "interval_ms": 1500,
     "modbus": {"bus": "rs485", "unit_id": 1, "profile": "pzem-016"}, "rule_sets": [],
     "component": {"code": "5001030118000001", "grid": "500103001002003"}},
    {"id": "pressure", "kind": "water", "interval_ms": 1500,
     "modbus": {"bus": "rs485", "unit_id": 2, "profile": "rs485-pressure"}, "rule_sets": [],
     "component": {"code": "5001030101000001", "grid": "500103001002003"}},
    {"id": "nobody", "kind": "water", "interval_ms": 1500,
     "modbus": {"bus": "rs485", "unit_id": 7, "profile": "rs485-pressure"}, "rule_sets": [],
     "component": {"code": "5001030101000002", "grid": "500103001002003"}}
  ],
  "http": {"enabled": false}
}
EOF

timeout 20 "$CITYGATE_BIN" poll -c "$T/etc/citygate.json" --device pzem --json >"$T/pzem.json" 2>"$T/pzem.log" ||
    fail "poll pzem exited $?: $(cat "$T/pzem.json" "$T/pzem.log")"
timeout 20 "$CITYGATE_BIN" poll -c "$T/etc/citygate.json" --device pressure --json >"$T/pressure.json" 2>"$T/pressure.log" ||
    fail "poll pressure exited $?: $(cat "$T/pressure.json" "$T/pressure.log")"
"$PYTHON" - "$T/pzem.json" "$T/pressure.json" <<'EOF' || fail "RTU values: $(cat "$T/pzem.json" "$T/pressure.json")"
import json, sys
pz = {x["field"]: x for x in json.load(open(sys.argv[1]))["samples"]}
pr = json.load(open(sys.argv[2]))
ps = {x["field"]: x for x in pr["samples"]}
want = [(pz, "voltage_v", 230.1), (pz, "current_a", 74.565), (pz, "power_w", 300.0),
        (pz, "energy_kwh", 5.0), (pz, "frequency_hz", 50.0), (pz, "power_factor", 0.95),
        (ps, "pressure_kpa", -12.34), (ps, "range_full", 100.0), (ps, "decimals", 2)]
bad = [f"{f}: {s[f]}" for s, f, v in want if abs(s[f]["value"] - v) > 1e-9 or s[f]["quality"] != "good"]
if pz["power_alarm"]["value"] is not False: bad.append(f"power_alarm {pz['power_alarm']}")
if ps["baud_code"]["value"] != "9600": bad.append(f"baud_code {ps['baud_code']}")
# one read of registers 1..6 (0 is not a point) on the transmitter
if [(r["address"], r["count"]) for r in pr["reads"]] != [(1, 6)]: bad.append(f"reads {pr['reads']}")
if bad: print("\n".join(bad), file=sys.stderr); sys.exit(1)
EOF
info "RTU: pzem-016 and rs485-pressure decoded exactly"

t0=$(now_ms)
set +e
timeout 20 "$CITYGATE_BIN" poll -c "$T/etc/citygate.json" --device nobody >"$T/nobody.txt" 2>&1
rc=$?
set -e
dt=$(($(now_ms) - t0))
[[ $rc == 1 ]] || fail "poll of a unit nobody answers exited $rc, want 1: $(cat "$T/nobody.txt")"
((dt < 3000)) || fail "silent RTU unit took $dt ms"
grep -q "timeout" "$T/nobody.txt" || fail "no timeout reported: $(cat "$T/nobody.txt")"

start_bg pollrun "$POLLRUN" -c "$T/etc/citygate.json" --seconds 8
wait_for "! pid_alive $(bg_pid pollrun)" 30 || fail "modbus_pollrun did not finish"
"$PYTHON" - "$T/pollrun.log" <<'EOF' || fail "RTU pollrun: $(cat "$T/pollrun.log")"
import json, sys
devs = {}; stats = None
for l in open(sys.argv[1]):
    if l.startswith("{\"device\""):
        d = json.loads(l); devs[d["device"]] = d
    elif l.startswith("{\"stats\""):
        stats = json.loads(l)["stats"]
bad = []
for n in ("pzem", "pressure"):
    d = devs[n]
    if d["cycles"] < 5 or d["state"] != "online": bad.append(f"{n}: {d}")
    # the silent unit shares the line: it may delay a cycle by its 2 x 300 ms, no more
    if d["max_gap_ms"] > 1500 + 700: bad.append(f"{n}: max gap {d['max_gap_ms']}")
if devs["nobody"]["state"] not in ("offline", "probing"): bad.append(f"nobody: {devs['nobody']}")
if stats["crc_errors"] or stats["bad_frames"]: bad.append(f"frame errors on a clean line: {stats}")
if bad: print("\n".join(bad), file=sys.stderr); sys.exit(1)
EOF
info "RTU poller: cadence kept on the shared line, silent unit offline"
echo "PASS"
