#!/usr/bin/env bash
# Modbus TCP against an independent server (Debian's python3-pymodbus, not our simulator):
#  - `citygate poll` decodes known register values exactly (every byte order, scale,
#    decimal register, enum, bit, string, coil, discrete input, invalid marker) through a
#    test profile and through the shipped eastron-sdm120 profile;
#  - a merged read the server refuses with exception 02 is split, and the split layout
#    is remembered (3 splits in total over many cycles, not 3 per cycle);
#  - a silent unit id times out (exit 1, comm_error samples) within its bound, and while
#    the poller runs it goes offline after 3 cycles without delaying the other units on
#    its connection by more than its own deadline;
#  - a device whose server is down comes back online when the server starts.
. "$(dirname "$0")/../harness/lib.sh"
need_citygate
POLLRUN=$CITYGATE_BUILD/tests/integration/tools/modbus_pollrun
SERVER=$CITYGATE_SRC/tests/integration/tools/modbus_pyserver.py
[[ -x $POLLRUN ]] || fail "modbus_pollrun not built: $POLLRUN"
"$PYTHON" -c 'import pymodbus, serial_asyncio' 2>/dev/null ||
    fail "python3-pymodbus and python3-serial-asyncio are required (apt-get install python3-pymodbus python3-serial-asyncio)"

mkdir -p "$T/devices" "$T/etc"
cp "$CITYGATE_SRC/devices/eastron-sdm120.json" "$T/devices/"

# A profile touching every decoder path; the server leaves holes at 6..9, 13..19 and
# 25..29, so the merged read 0..30 (max_gap 8) is refused with exception 02.
cat >"$T/devices/test-mixed.json" <<'EOF'
{"name": "test-mixed", "points": [
  {"field": "volts", "table": "holding", "address": 0, "type": "f32", "unit": "V"},
  {"field": "amps", "table": "holding", "address": 2, "type": "u32", "byte_order": "CDAB", "scale": 0.001, "unit": "A"},
  {"field": "temp", "table": "holding", "address": 4, "type": "i16", "scale": 0.1, "unit": "degC"},
  {"field": "pipe", "table": "holding", "address": 5, "type": "enum", "enum": {"0x55": "empty", "0xAA": "full"}},
  {"field": "flag", "table": "holding", "address": 10, "type": "bit", "bit": 3},
  {"field": "level", "table": "holding", "address": 11, "type": "u16", "decimal_register": 12, "unit": "m"},
  {"field": "flow", "table": "holding", "address": 20, "type": "f32", "byte_order": "DCBA", "unit": "m3/h"},
  {"field": "tag", "table": "holding", "address": 22, "type": "string", "count": 3},
  {"field": "broken", "table": "holding", "address": 30, "type": "u16", "invalid": ["0xFFFF"]},
  {"field": "counter", "table": "input", "address": 0, "type": "u16"},
  {"field": "relay", "table": "coil", "address": 0, "type": "bool"},
  {"field": "door", "table": "discrete", "address": 1, "type": "bool"}
]}
EOF

# Server A: unit 1 (test-mixed), unit 2 (SDM120). Unit 9 is not served: silent.
"$PYTHON" - "$T/spec-a.json" <<'EOF'
import json, sys
sdm = {str(a): 0 for a in list(range(0, 80)) + list(range(342, 346))}
sdm.update({"0": 17254, "1": 32768,          # voltage 230.5
            "6": 16288, "7": 0,              # current 1.25
            "12": 17295, "13": 49152,        # power 287.5
            "70": 16968, "71": 0,            # frequency 50.0
            "72": 17562, "73": 20480})       # import energy 1234.5
spec = {"units": {
    "1": {"holding": {"0": 17254, "1": 32768, "2": 9029, "3": 1, "4": 65413, "5": 170,
                      "10": 8, "11": 1234, "12": 2, "20": 7813, "21": 2879,
                      "22": 17225, "23": 21593, "24": 0, "30": 65535},
          "input": {"0": 4242}, "coils": {"0": 1}, "discrete": {"0": 0, "1": 1}},
    "2": {"input": sdm}}}
json.dump(spec, open(sys.argv[1], "w"))
EOF
echo '{"units": {"1": {"holding": {"0": 100, "1": 200, "2": 300, "3": 400, "4": 500, "5": 600, "6": 700, "7": 800, "8": 900, "9": 1000, "10": 0, "11": 0}, "discrete": {"0": 0}}}}' >"$T/spec-b.json"

PORT_A=$(free_port)
PORT_B=$(free_port)
start_bg pymodbus-a "$PYTHON" "$SERVER" --spec "$T/spec-a.json" --tcp "$PORT_A"
wait_port "$PORT_A" 20 || fail "pymodbus did not listen on $PORT_A"

cat >"$T/etc/citygate.json" <<EOF
{
  "gateway": {"id": "GW-500103-0020", "admin_code": "500103", "data_dir": "$T/data",
              "log_level": "info"},
  "paths": {"profiles": "$T/devices", "rules": "$CITYGATE_SRC/rules"},
  "buses": [
    {"id": "bus-a", "type": "tcp", "host": "localhost", "port": $PORT_A,
     "response_timeout_ms": 200, "retries": 1, "max_gap": 8,
     "reconnect_min_ms": 100, "reconnect_max_ms": 1000},
    {"id": "bus-b", "type": "tcp", "host": "127.0.0.1", "port": $PORT_B,
     "response_timeout_ms": 200, "retries": 0, "reconnect_min_ms": 100, "reconnect_max_ms": 1000}
  ],
  "devices": [
    {"id": "dev-mixed", "kind": "test", "interval_ms": 1000,
     "modbus": {"bus": "bus-a", "unit_id": 1, "profile": "test-mixed"}, "rule_sets": [],
     "component": {"code": "5001030102000001", "grid": "500103001002003"}},
    {"id": "dev-sdm", "kind": "lamp", "interval_ms": 1000,
     "modbus": {"bus": "bus-a", "unit_id": 2, "profile": "eastron-sdm120"}, "rule_sets": [],
     "component": {"code": "5001030102000002", "grid": "500103001002003"}},
    {"id": "dev-silent", "kind": "test", "interval_ms": 1000,
     "modbus": {"bus": "bus-a", "unit_id": 9, "profile": "test-mixed"}, "rule_sets": [],
     "component": {"code": "5001030102000003", "grid": "500103001002003"}},
    {"id": "dev-late", "kind": "manhole", "interval_ms": 500,
     "modbus": {"bus": "bus-b", "unit_id": 1, "profile": "generic-manhole"}, "rule_sets": [],
     "component": {"code": "5001030102000004", "grid": "500103001002003"}}
  ],
  "http": {"enabled": false}
}
EOF
cp "$CITYGATE_SRC/devices/generic-manhole.json" "$T/devices/"
"$CITYGATE_BIN" check -c "$T/etc/citygate.json" >"$T/check.log" 2>&1 ||
    fail "check rejected the test config: $(cat "$T/check.log")"

# --- poll --help --------------------------------------------------------------------------
# Not `| grep -q`: under pipefail, grep quitting early can SIGPIPE citygate and fail it.
[[ $("$CITYGATE_BIN" poll --help) == *"usage: citygate poll"* ]] || fail "poll --help"

# --- exact values through the test profile ------------------------------------------------
set +e
timeout 20 "$CITYGATE_BIN" poll -c "$T/etc/citygate.json" --device dev-mixed --json >"$T/poll-mixed.json" 2>"$T/poll-mixed.log"
rc=$?
set -e
[[ $rc == 0 ]] || fail "poll dev-mixed exited $rc: $(cat "$T/poll-mixed.json" "$T/poll-mixed.log")"
"$PYTHON" - "$T/poll-mixed.json" <<'EOF' || fail "dev-mixed values: $(cat "$T/poll-mixed.json")"
import json, re, sys
raw = open(sys.argv[1]).read()
r = json.loads(raw)
s = {x["field"]: x for x in r["samples"]}
bad = []
# Numbers in their shortest round-trip form: -12.3, not -12.300000000000001.
def digits(t):
    return len(t.lstrip("-").split("e")[0].replace(".", "").lstrip("0").rstrip("0"))
for t in re.findall(r'"(?:value|code)":(-?[0-9][0-9.eE+-]*)', raw):
    if digits(t) > digits(repr(float(t))):
        bad.append(f"{t} is not the shortest form of {float(t)!r}")
want = {"volts": 230.5, "amps": 74.565, "temp": -12.3, "pipe": "full", "flag": True,
        "level": 12.34, "tag": "CITY", "counter": 4242, "relay": True, "door": True}
for k, v in want.items():
    got = s[k]["value"]
    ok = abs(got - v) < 1e-9 if isinstance(v, float) else got == v
    if not ok or s[k]["quality"] != "good":
        bad.append(f"{k}: got {got!r} ({s[k]['quality']}), want {v!r}")
if abs(s["flow"]["value"] - 0.545) > 1e-6 or s["flow"]["quality"] != "good":
    bad.append(f"flow: {s['flow']}")
if s["broken"]["quality"] != "out_of_range":
    bad.append(f"broken: {s['broken']}")
if s["volts"]["unit"] != "V":
    bad.append("unit of volts")
# the merged holding read was refused and split until every read worked
reads = r["reads"]
exc = [x for x in reads if x["exception"] == 2]
splits = [x for x in reads if x["split"]]
ok_holding = sorted((x["address"], x["count"]) for x in reads if x["table"] == "holding" and x["result"] == "ok")
if len(exc) != 3 or len(splits) != 3:
    bad.append(f"want 3 refused+split reads, got {len(exc)} / {len(splits)}")
if ok_holding != [(0, 6), (10, 3), (20, 5), (30, 1)]:
    bad.append(f"working layout {ok_holding}")
if not r["answered"]:
    bad.append("answered false")
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
EOF
info "dev-mixed: all values exact; 0..30 split into 0..5, 10..12, 20..24, 30"

# --- the shipped SDM120 profile against the independent server ----------------------------
timeout 20 "$CITYGATE_BIN" poll -c "$T/etc/citygate.json" --device dev-sdm >"$T/poll-sdm.txt" 2>&1 ||
    fail "poll dev-sdm exited $?: $(cat "$T/poll-sdm.txt")"
for want in "voltage_v  *230.5 *V  *good" "current_a  *1.25 *A  *good" "power_w  *287.5 *W  *good" \
    "frequency_hz  *50 *Hz  *good" "import_energy_kwh  *1234.5 *kWh  *good"; do
    grep -Eq "^$want" "$T/poll-sdm.txt" || fail "dev-sdm: no line matching '$want': $(cat "$T/poll-sdm.txt")"
done
grep -Eq "input +0\.\.37 +\( *38\) ok" "$T/poll-sdm.txt" || fail "dev-sdm reads: $(cat "$T/poll-sdm.txt")"

# --- a silent unit: exit 1 within its bound, comm_error samples ---------------------------
t0=$(now_ms)
set +e
timeout 20 "$CITYGATE_BIN" poll -c "$T/etc/citygate.json" --device dev-silent --json >"$T/poll-silent.json" 2>"$T/poll-silent.log"
rc=$?
set -e
dt=$(($(now_ms) - t0))
[[ $rc == 1 ]] || fail "poll dev-silent exited $rc, want 1: $(cat "$T/poll-silent.json")"
((dt < 3000)) || fail "poll dev-silent took $dt ms (bound: 2 x 200 ms + start-up)"
"$PYTHON" - "$T/poll-silent.json" <<'EOF' || fail "dev-silent: $(cat "$T/poll-silent.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert not r["answered"]
assert all(x["quality"] == "comm_error" for x in r["samples"]), r["samples"]
assert len(r["samples"]) == 12
assert len(r["reads"]) == 1 and r["reads"][0]["result"] == "timeout" and r["reads"][0]["attempts"] == 2
EOF
info "dev-silent: exit 1 after $dt ms, 12 comm_error samples"

# --- a device whose server is down: exit 1 quickly ---------------------------------------
set +e
timeout 20 "$CITYGATE_BIN" poll -c "$T/etc/citygate.json" --device dev-late >"$T/poll-late.txt" 2>&1
rc=$?
set -e
[[ $rc == 1 ]] || fail "poll dev-late (nothing listening) exited $rc, want 1"
grep -q "connect to 127.0.0.1 failed" "$T/poll-late.txt" || fail "dev-late: $(cat "$T/poll-late.txt")"

# --- the poller running: cadence, offline, recovery, remembered split ----------------------
start_bg pollrun "$POLLRUN" -c "$T/etc/citygate.json" --seconds 9
sleep 4
start_bg pymodbus-b "$PYTHON" "$SERVER" --spec "$T/spec-b.json" --tcp "$PORT_B"
wait_for "! pid_alive $(bg_pid pollrun)" 30 || fail "modbus_pollrun did not finish"
out=$T/pollrun.log
"$PYTHON" - "$out" <<'EOF' || fail "pollrun: $(cat "$out")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
devs = {}; events = []; stats = None
for l in lines:
    if l.startswith("event "):
        p = l.split(" ", 4); events.append((int(p[1]), p[2], p[3]))
    elif l.startswith("{\"device\""):
        d = json.loads(l); devs[d["device"]] = d
    elif l.startswith("{\"stats\""):
        stats = json.loads(l)["stats"]
bad = []
for name in ("dev-mixed", "dev-sdm"):
    d = devs[name]
    # 9 s at 1 s: the first poll lands within the first interval
    if d["cycles"] < 8: bad.append(f"{name}: {d['cycles']} cycles")
    # the silent unit on the same connection costs at most 2 x 200 ms per cycle
    if d["max_gap_ms"] > 1450: bad.append(f"{name}: max gap {d['max_gap_ms']} ms")
    # online: once split, every read works (an out_of_range marker is not a comm fault)
    if d["state"] != "online": bad.append(f"{name}: {d['state']}")
silent = devs["dev-silent"]
off = [t for t, n, s in events if n == "dev-silent" and s == "offline"]
if not off: bad.append("dev-silent never offline")
elif off[0] > 4500: bad.append(f"dev-silent offline only at {off[0]} ms")
if silent["good"] != 0: bad.append("dev-silent had good samples")
if silent["cycles"] < 8: bad.append(f"dev-silent produced comm_error samples in only {silent['cycles']} cycles")
late = devs["dev-late"]
back = [t for t, n, s in events if n == "dev-late" and s == "online"]
if not back: bad.append("dev-late never came back online")
elif back[-1] < 4000: bad.append(f"dev-late online at {back[-1]} ms, before its server started")
if late["state"] != "online": bad.append(f"dev-late ends {late['state']}")
if not [1 for t, n, s in events if n == "dev-late" and s == "offline"]: bad.append("dev-late never offline")
if stats["splits"] != 3: bad.append(f"splits {stats['splits']} (the layout must be remembered)")
if stats["dropped"] != 0: bad.append("samples dropped")
if stats["workers"] != 2: bad.append(f"{stats['workers']} workers for 2 connections")
if bad:
    print("\n".join(bad), file=sys.stderr); sys.exit(1)
print(f"ok: mixed {devs['dev-mixed']['cycles']} cycles max gap {devs['dev-mixed']['max_gap_ms']} ms; "
      f"silent offline at {off[0]} ms; late back at {back[-1]} ms; stats {stats}")
EOF
info "poller: cadence kept, silent unit offline, late device back online, split remembered"
echo "PASS"
