#!/usr/bin/env bash
# 60: the acceptance test of issue 5. citygate-sim plays tests/integration/data/
# fault-scenario.json on the demo district (packaging/citygate.json: Modbus TCP, an RTU
# meter on a socat pty, LoRa covers over MQTT) and citygate runs the whole pipeline
# against a private mosquitto. A verifying subscriber on the upstream topics must see
# exactly the expected events (type, alarm id, severity, problem code) and nothing else:
# cover tilted (major after the 30 s on-delay), a LoRa cover thrown off (critical at
# once), lamp out at night, a pressure drop (burst and low pressure), methane through 20
# and 50 %LEL, a device going silent, then the recoveries. seq is dense from 1 and increasing, every event valid
# against docs/event.schema.json, the retained …/alarm topics show the current state and
# are emptied on clear. The gateway is stopped (SIGTERM) and started again mid-scenario
# with alarms active: no second `raised`, and the clear that happened while it was down
# is reported after the start.
#
# Test config = the demo config with free ports, data_dir in $T, influxdb off, polling
# every 2 s, lamp schedules around the current time (so "night" is deterministic), and
# two overrides that shorten 60 s delays (lamp-failure, pressure-low) to keep the test
# near a minute. Needs python3-jsonschema (Debian).
. "$(dirname "$0")/../harness/lib.sh"

SIM=${CITYGATE_SIM:-$CITYGATE_BUILD/devices/sim/citygate-sim}
SCENARIO=$CITYGATE_SRC/tests/integration/data/fault-scenario.json
need_citygate
[[ -x $SIM ]] || fail "citygate-sim not built: $SIM"
"$PYTHON" -c 'import jsonschema' 2>/dev/null || fail "python3-jsonschema missing (apt-get install python3-jsonschema)"
GW=GW-500103-0001

start_mosquitto
start_socat_pty rtu
TCP_PORT=$(free_port)
HTTP_PORT=$(free_port)
mkdir -p "$T/data"

"$PYTHON" - "$CITYGATE_SRC" "$CITYGATE_BUILD" "$T" "$TCP_PORT" "$MQTT_PORT" "$HTTP_PORT" "$PTY_B" <<'EOF'
import datetime, json, sys
src, build, t, tcp, mqtt, http, pty = sys.argv[1:]
c = json.load(open(src + "/packaging/citygate.json"))
c["gateway"]["data_dir"] = t + "/data"
c["gateway"]["log_level"] = "info"
c["paths"] = {"profiles": [src + "/devices"], "rules": [src + "/rules"], "plugins": [build + "/plugins"]}
for b in c["buses"]:
    if b["type"] == "tcp":
        b.update(port=int(tcp), response_timeout_ms=300, retries=0, reconnect_min_ms=200, reconnect_max_ms=1000)
    else:
        b["device"] = pty
for s in c["mqtt_sources"]:
    s["url"] = "tcp://127.0.0.1:" + mqtt
c["outputs"]["mqtt"]["url"] = "tcp://127.0.0.1:" + mqtt
c["outputs"]["influxdb"]["enabled"] = False
c["http"]["port"] = int(http)
# Lamps should burn now: on an hour ago, off in three hours, gateway local time.
off_min = int(c["gateway"]["timezone"][0] + "1") * (int(c["gateway"]["timezone"][1:3]) * 60 + int(c["gateway"]["timezone"][4:6]))
now = datetime.datetime.utcnow() + datetime.timedelta(minutes=off_min)
hhmm = lambda d: d.strftime("%H:%M")
sched = {"on": hhmm(now - datetime.timedelta(hours=1)), "off": hhmm(now + datetime.timedelta(hours=3))}
for d in c["devices"]:
    d["interval_ms"] = 5000 if "mqtt" in d else 2000
    if d["kind"] == "lamp":
        d.setdefault("params", {})["schedule"] = sched
    if d["id"] == "lamp-0002":
        d["overrides"] = {"lamp-failure": {"on_delay": "10s", "off_delay": "5s"}}
    if d["id"] == "water-0001":
        d["overrides"] = {"pressure-low": {"on_delay": "10s", "off_delay": "5s"}}
json.dump(c, open(t + "/citygate.json", "w"), indent=1, ensure_ascii=False)
EOF
CFG=$T/citygate.json

"$CITYGATE_BIN" check -c "$CFG" >"$T/check.out" 2>&1 || { cat "$T/check.out" >&2; fail "citygate check refused the test config"; }
grep -q "warning:" "$T/check.out" && fail "check warns about the demo devices: $(grep warning: "$T/check.out")"

# Verifiers first, so they see everything from the first event on.
start_bg events mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i t60-events -q 1 -F '%t %p' -t "citygate/+/event/#"
start_bg alarms mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i t60-alarms -q 1 -F '%t %p' -t "citygate/+/alarm/#"
wait_for "grep -q 'as t60-events' '$T/mosquitto.log' && grep -q 'as t60-alarms' '$T/mosquitto.log'" 10 ||
    fail "verifying subscribers did not connect"
sleep 0.3

start_bg sim "$SIM" -c "$CFG" --scenario "$SCENARIO" --rtu "field-rtu=$PTY_A" --seed 60
wait_for "grep -q 'citygate-sim: ready' '$T/sim.log' || ! pid_alive $BG_PID" 15 || fail "simulator not ready"
pid_alive "$(bg_pid sim)" || fail "simulator exited at start"
S0=$(now_ms) # scenario time 0
sleep_until() { # sleep_until SCENARIO_S
    local ms=$((S0 + $1 * 1000 - $(now_ms)))
    ((ms > 0)) && sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
    return 0
}

start_gw() { # start_gw NAME
    start_bg "$1" "$CITYGATE_BIN" run -c "$CFG"
    wait_for "grep -q 'started' '$T/$1.log' || ! pid_alive $BG_PID" 15 || fail "$1: no 'started' line"
    pid_alive "$BG_PID" || fail "$1 exited at start"
}
start_gw gw1

# Before the restart: cover-tilt is raised (major, after its on-delay), not critical.
sleep_until 39
grep -q '"id":"mh-0001/cover-tilt","state":"active_unacked","severity":"major"' "$T/events.log" ||
    fail "cover-tilt not raised as major by scenario time 39 s"
grep -q "citygate/$GW/alarm/mh-0001/cover-tilt {.*\"severity\":\"major\"" "$T/alarms.log" ||
    fail "no retained major state on …/alarm/mh-0001/cover-tilt"
info "restart: SIGTERM at scenario $((($(now_ms) - S0) / 1000)) s"
stop_bg gw1 TERM 10 || fail "gateway did not stop within 10 s of SIGTERM"
[[ $STOP_RC == 0 ]] || fail "gateway exit status $STOP_RC after SIGTERM"
RESTART_MS=$(now_ms)
sleep_until 46 # the methane clear (43 s) happens while it is down
start_gw gw2

# The last recovery is at 60 s (+ one poll); allow for slow polls, then stop looking.
wait_for "grep -c '\"type\":\"cleared\"' '$T/events.log' | grep -qx 6" $((80 - ($(now_ms) - S0) / 1000)) ||
    info "not every clear arrived by scenario time 80 s (checked below)"
sleep 3 # anything unexpected that would follow
END_MS=$(now_ms)

# Retained state seen by a subscriber connecting now: only the open alarm.
timeout 10 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i t60-late -q 1 -F '%t %p' \
    -t "citygate/+/alarm/#" --retained-only -W 3 >"$T/retained.out" 2>/dev/null || true

! grep -q "skipped for device" "$T/gw1.log" "$T/gw2.log" || fail "gateway skips rules for demo devices"

"$PYTHON" - "$CITYGATE_SRC/docs/event.schema.json" "$T" "$GW" "$S0" "$RESTART_MS" "$END_MS" <<'EOF' || fail "event sequence check failed"
import datetime, json, sys
from jsonschema import Draft202012Validator
schema_file, t, gw, s0, restart_ms, end_ms = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:])
validator = Draft202012Validator(json.load(open(schema_file)))
problems = []
def bad(msg):
    problems.append(msg)

def ms_of(ts):
    return int(datetime.datetime.fromisoformat(ts).timestamp() * 1000)

def lines(name):
    out = []
    for ln in open(f"{t}/{name}", encoding="utf-8"):
        ln = ln.rstrip("\n")
        topic, _, payload = ln.partition(" ")
        out.append((topic, payload))
    return out

# ---- events: distinct by event_id (at least once: a duplicate must be identical) ----
events, by_id, dups = [], {}, 0
for topic, payload in lines("events.log"):
    try:
        ev = json.loads(payload)
    except ValueError:
        bad(f"not JSON on {topic}: {payload[:200]}")
        continue
    if ev.get("event_id") in by_id:
        dups += 1
        if by_id[ev["event_id"]] != payload:
            bad(f"event {ev['event_id']} delivered twice with different payloads")
        continue
    by_id[ev.get("event_id")] = payload
    errs = sorted(validator.iter_errors(ev), key=lambda e: list(e.path))
    for e in errs[:3]:
        bad(f"seq {ev.get('seq')}: schema: {'/'.join(map(str, e.path))}: {e.message}")
    if topic != f"citygate/{gw}/event/{ev['device']['id']}":
        bad(f"seq {ev['seq']} on topic {topic}")
    if ev["gateway"] != gw:
        bad(f"seq {ev['seq']}: gateway {ev['gateway']}")
    events.append(ev)

seqs = [e["seq"] for e in events]
if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
    bad(f"seq not strictly increasing in arrival order: {seqs}")
if sorted(seqs) != list(range(1, len(seqs) + 1)):
    bad(f"seq not dense from 1: {sorted(seqs)}")

# ---- the expected sequence, per alarm: (type, severity, problem code) ----
expected = {
    "mh-0001/cover-tilt": [("raised", "major", "0102"), ("cleared", "major", "0102")],
    "mh-0101/cover-tilt": [("raised", "critical", "0103"), ("cleared", "critical", "0103")],
    "gas-0001/ch4-high": [("raised", "warning", "0403"), ("updated", "major", "0403"),
                          ("cleared", "major", "0403")],
    "lamp-0002/lamp-failure": [("raised", "major", "0118"), ("cleared", "major", "0118")],
    "water-0001/pipe-burst": [("raised", "critical", "0402")],
    "water-0001/pressure-low": [("raised", "major", "0499"), ("cleared", "major", "0499")],
    "lamp-0004/comm-loss": [("raised", "major", "D01"), ("cleared", "major", "D01")],
}
got = {}
for e in events:
    got.setdefault(e["alarm"]["id"], []).append(e)
for aid in sorted(set(got) | set(expected)):
    have = [(e["type"], e["alarm"]["severity"], e["problem"]["code"]) for e in got.get(aid, [])]
    if have != expected.get(aid, []):
        bad(f"{aid}: expected {expected.get(aid, [])}, got {have}")

def first(aid, typ):
    return next((e for e in got.get(aid, []) if e["type"] == typ), None)

# ---- evidence, conditions and timing of the bug that started it all ----
r = first("mh-0001/cover-tilt", "raised")
if r:
    if r["rule"]["condition"] != "tilt_deg > 15 for 30s" or r["evidence"]["value"] != 35:
        bad(f"cover-tilt raised: condition {r['rule']['condition']!r}, value {r['evidence']['value']}")
    held = ms_of(r["ts"]) - ms_of(r["alarm"]["active_since"])
    if not 30000 <= held <= 34000:
        bad(f"cover-tilt raised {held} ms after the tilt began (on-delay 30 s)")
    if ms_of(r["ts"]) - s0 < 32500:
        bad(f"cover-tilt raised at scenario {(ms_of(r['ts']) - s0) / 1000} s, before 3 s + 30 s")
u = first("mh-0101/cover-tilt", "raised")
if u:
    if u["rule"]["condition"] != "tilt_deg > 90" or abs(u["evidence"]["value"] - 120) > 0.5:
        bad(f"LoRa cover-tilt raised: condition {u['rule']['condition']!r}, value {u['evidence']['value']}")
    if not 48000 <= ms_of(u["ts"]) - s0 <= 56000:
        bad(f"LoRa cover-tilt raised at scenario {(ms_of(u['ts']) - s0) / 1000} s: not at once after 48 s + one uplink")
w, m = first("gas-0001/ch4-high", "raised"), first("gas-0001/ch4-high", "updated")
if w and m:
    if w["rule"]["condition"] != "ch4_lel >= 20 for 5s" or m["rule"]["condition"] != "ch4_lel >= 50":
        bad(f"ch4-high conditions {w['rule']['condition']!r} / {m['rule']['condition']!r}")
    if m["reason"] != "escalated" or m["alarm"]["count"] != 1:
        bad(f"ch4-high updated: reason {m.get('reason')}, count {m['alarm']['count']}")
c = first("gas-0001/ch4-high", "cleared")
if c and ms_of(c["ts"]) < restart_ms:
    bad("ch4-high cleared before the restart: the scenario's clear-while-down did not happen")
for aid in ("mh-0001/cover-tilt", "lamp-0002/lamp-failure", "water-0001/pipe-burst",
            "water-0001/pressure-low", "lamp-0004/comm-loss", "gas-0001/ch4-high"):
    r = first(aid, "raised")
    if r and ms_of(r["ts"]) > restart_ms:
        bad(f"{aid} raised only after the restart (scenario timing off?)")
for e in events:
    if e["type"] == "raised" and e["alarm"]["count"] != 1:
        bad(f"{e['alarm']['id']}: raised with count {e['alarm']['count']}")
    if e["component"]["code"][6:10] != e["problem"]["code"] and e["problem"]["class"] == "component":
        bad(f"{e['alarm']['id']}: component problem code {e['problem']['code']} is not the minor class")

# ---- retained …/alarm/<device>/<rule>: follows each event, empty once cleared ----
last_event = {}
for e in events:
    last_event[e["alarm"]["id"]] = e
pubs = {}
for topic, payload in lines("alarms.log"):
    aid = topic.split(f"citygate/{gw}/alarm/", 1)[-1]
    pubs.setdefault(aid, []).append(payload)
for aid, e in last_event.items():
    p = pubs.get(aid, [])
    if not p:
        bad(f"no retained publication for {aid}")
        continue
    if e["type"] == "cleared":
        if p[-1] != "":
            bad(f"{aid}: retained not emptied after cleared: {p[-1][:120]}")
        continue
    doc = json.loads(p[-1]) if p[-1] else {}
    if doc.get("schema") != "citygate.alarm/1" or doc.get("seq") != e["seq"] or \
            doc.get("alarm", {}).get("severity") != e["alarm"]["severity"]:
        bad(f"{aid}: retained {p[-1][:160]} does not match its last event (seq {e['seq']})")
for aid in pubs:
    if aid not in last_event:
        bad(f"retained publication for {aid}, which had no event")
late = [ln for ln in lines("retained.out") if ln[1] != ""]
late_ids = sorted(tp.split(f"citygate/{gw}/alarm/", 1)[-1] for tp, _ in late)
if late_ids != ["water-0001/pipe-burst"]:
    bad(f"a late subscriber sees retained alarms {late_ids}, expected only water-0001/pipe-burst")

print(f"{len(events)} events ({dups} redelivered), seq 1..{len(events)}, "
      f"{sum(len(v) for v in pubs.values())} retained publications")
for e in events:
    print(f"  #{e['seq']:<3} {(ms_of(e['ts']) - s0) / 1000:6.1f}s {e['type']:<8} {e['alarm']['id']:<26} "
          f"{e['alarm']['severity']:<9} {e['problem']['code']}  {e['rule']['condition']}")
if problems:
    print("\n".join("FAIL: " + p for p in problems))
    sys.exit(1)
EOF
info "ok: the fault scenario gave exactly the expected events"
