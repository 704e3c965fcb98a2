#!/usr/bin/env bash
# 61: the upstream MQTT contract (DESIGN.md §4-5, docs/events.md) as the city's case
# system sees it, end to end through `citygate run` and a private mosquitto. The test
# is the sensor: two manhole covers report plain JSON on an ingest topic, so every
# transition happens when the test says.
#   1. topics and QoS / retain: events QoS 1 and not retained; …/alarm/<dev>/<rule>
#      retained and emptied on clear; …/status "online" retained (birth), "offline" on
#      SIGTERM and as the will after kill -9; …/report QoS 1, periodic, not retained;
#   2. every event valid against docs/event.schema.json; event_id unique, seq dense and
#      increasing, ts in the gateway's +08:00; problem.upstream_type from
#      outputs.mqtt.problem_types; component complete; a `raised` carries what a case
#      needs (component, grid, units, evidence value); a `cleared` the clearing value and
#      its duration (ts - active_since); `updated` on escalation;
#   3. commands on cmd/<verb>: ack, shelve (duration_s and until), unshelve,
#      out_of_service, in_service answered on cmd-reply/<request_id> with the event's id
#      and seq; shelving and out of service hold events back, a shelve expires
#      (unshelved, reason expired) and the held-back clear follows; refused commands
#      (unknown alarm or verb, nothing to ack, shelve without a time) answered
#      "ok": false with the reason; malformed ones (bad JSON, no request_id) counted in
#      the report, never answered, never a crash;
#   4. the periodic report is complete (uptime, devices, alarms by severity, queues and
#      spool, drops, errors, upstream counters) and agrees with the open alarms.
# Needs python3-jsonschema (Debian).
. "$(dirname "$0")/../harness/lib.sh"

need_citygate
"$PYTHON" -c 'import jsonschema' 2>/dev/null || fail "python3-jsonschema missing (apt-get install python3-jsonschema)"
GW=GW-T61
BASE=citygate/$GW

start_mosquitto
HTTP_PORT=$(free_port)
mkdir -p "$T/data" "$T/plugins"

cat >"$T/cfg.json" <<EOF
{"gateway": {"id": "$GW", "admin_code": "500103", "timezone": "+08:00", "data_dir": "$T/data",
             "log_level": "info"},
 "paths": {"rules": "$CITYGATE_SRC/rules", "plugins": "$T/plugins"},
 "http": {"port": $HTTP_PORT},
 "mqtt_sources": [
   {"id": "field", "url": "$MQTT_URL", "client_id": "t61-ingest", "mqtt_version": 3,
    "subscriptions": [{"topic": "t61/sensors", "decoder": "json", "device_key": "id", "qos": 1}]}],
 "devices": [
   {"id": "mh-0001", "kind": "manhole", "name": "Jiefangbei cover 1", "interval_ms": 60000,
    "mqtt": {"source": "field", "key": "mh-0001",
             "options": {"fields": {"tilt_deg": {"path": "tilt", "unit": "deg"}}}},
    "component": {"code": "5001030102000001", "grid": "500103001002003", "owner": "Yuzhong drainage",
                  "maintainer": "Yuzhong maintenance",
                  "location": {"lon": 106.577, "lat": 29.557, "address": "Jiefangbei 1"}},
    "overrides": {"cover-tilt": {"on_delay": "2s"}}},
   {"id": "mh-0002", "kind": "manhole", "interval_ms": 60000,
    "mqtt": {"source": "field", "key": "mh-0002",
             "options": {"fields": {"cover_open": {"path": "open", "type": "bool"}}}},
    "component": {"code": "5001030103000002", "grid": "500103001002004"},
    "overrides": {"cover-open": {"on_delay": "1s", "off_delay": "1s"}}}],
 "outputs": {"mqtt": {"enabled": true, "url": "$MQTT_URL", "mqtt_version": 3, "keepalive_s": 5,
                      "report_interval_s": 2, "problem_types": {"0102": "SITE-MH-TILT"}},
             "influxdb": {"enabled": false}}}
EOF
"$CITYGATE_BIN" check -c "$T/cfg.json" >"$T/check.out" 2>&1 || { cat "$T/check.out" >&2; fail "check refused the test config"; }

sensor() { # sensor DEVICE JSON-MEMBERS
    mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t t61/sensors -m "{\"id\":\"$1\",$2}"
}
cmd() { # cmd VERB JSON
    mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$BASE/cmd/$1" -m "$2"
}
reply_of() { grep "^$BASE/cmd-reply/$1 " "$T/all.log" 2>/dev/null | head -n 1 | cut -d' ' -f4-; }
wait_reply() { # wait_reply REQUEST_ID: prints the reply JSON
    wait_for "grep -q '^$BASE/cmd-reply/$1 ' '$T/all.log'" 10 || fail "no reply for $1"
    reply_of "$1"
}
n_events() { grep -c "^$BASE/event/" "$T/all.log" || true; }
wait_event() { # wait_event SECONDS PATTERN...: an event line matching every pattern
    local s=$1 pat=""
    shift
    for p in "$@"; do pat+=" | grep -F -- '$p'"; done
    wait_for "grep '^$BASE/event/' '$T/all.log' $pat | grep -q ." "$s" || fail "no event with: $*"
}
expect_reply() { # expect_reply ID true|false [TEXT]
    local r
    r=$(wait_reply "$1")
    [[ $r == *"\"ok\":$2"* ]] || fail "$1: expected ok:$2, got $r"
    [[ -z ${3:-} || $r == *"$3"* ]] || fail "$1: reply lacks '$3': $r"
    info "$1: $r"
}
iso_in() { date -d "+$1 seconds" +%Y-%m-%dT%H:%M:%S.000%:z; }

# Everything under citygate/ with QoS and retain flag, from before the first message.
start_bg all mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i t61-all -q 1 -F '%t q%q r%r %p' -t "citygate/#"
wait_for "grep -q 'as t61-all' '$T/mosquitto.log'" 10 || fail "subscriber did not connect"

start_gw() {
    start_bg "$1" "$CITYGATE_BIN" run -c "$T/cfg.json"
    wait_for "grep -q 'started' '$T/$1.log' || ! pid_alive $BG_PID" 15 || fail "$1: no 'started' line"
    pid_alive "$BG_PID" || fail "$1 exited at start"
    wait_for "[[ \$(grep -c '^$BASE/status q1 r0 online' '$T/all.log') -ge $2 ]]" 10 || fail "$1: no 'online' birth"
    wait_for "grep -q 'as t61-ingest' '$T/mosquitto.log'" 10 || fail "$1: ingest not connected"
    sleep 0.5 # SUBACKs (ingest topic, cmd/+)
}
start_gw gw1 1

# ---- raise, ack, escalate ----
sensor mh-0001 '"tilt":30'
sensor mh-0002 '"open":true'
wait_event 10 '"type":"raised"' '"id":"mh-0001/cover-tilt"'
wait_event 10 '"type":"raised"' '"id":"mh-0002/cover-open"'

cmd ack '{"request_id":"r-ack","alarm":"mh-0001/cover-tilt","user":"duty","comment":"crew sent"}'
expect_reply r-ack true '"state":"active_acked"'
cmd ack '{"request_id":"r-ack2","alarm":"mh-0001/cover-tilt","user":"duty"}'
expect_reply r-ack2 false 'nothing to acknowledge'

sensor mh-0001 '"tilt":95'
wait_event 10 '"type":"updated"' '"reason":"escalated"' '"severity":"critical"'

# ---- shelve for a duration: the clear is held back until the shelve runs out ----
cmd shelve '{"request_id":"r-shelve-d","alarm":"mh-0001/cover-tilt","user":"duty","duration_s":4}'
expect_reply r-shelve-d true '"state":"shelved"'
sensor mh-0001 '"tilt":2'
sleep 2
held=$(n_events)
grep "^$BASE/event/mh-0001" "$T/all.log" | grep -q '"type":"cleared"' && fail "cleared while shelved"
wait_event 10 '"type":"unshelved"' '"reason":"expired"' '"id":"mh-0001/cover-tilt"'
wait_event 5 '"type":"cleared"' '"id":"mh-0001/cover-tilt"'

# ---- shelve until a time, unshelve ----
UNTIL=$(iso_in 600)
cmd shelve "{\"request_id\":\"r-shelve-u\",\"alarm\":\"mh-0002/cover-open\",\"until\":\"$UNTIL\"}"
expect_reply r-shelve-u true '"state":"shelved"'
cmd unshelve '{"request_id":"r-unshelve","alarm":"mh-0002/cover-open"}'
expect_reply r-unshelve true

# ---- out of service: nothing while it lasts, the clear after ----
cmd out_of_service '{"request_id":"r-oos","alarm":"mh-0002/cover-open","user":"maint","comment":"cover replaced"}'
expect_reply r-oos true '"state":"out_of_service"'
before=$(n_events)
sensor mh-0002 '"open":false'
sleep 2.5
[[ $(n_events) == "$before" ]] || fail "an event while out of service: $(grep "^$BASE/event/" "$T/all.log" | tail -n 1)"
cmd in_service '{"request_id":"r-ins","alarm":"mh-0002/cover-open","user":"maint"}'
expect_reply r-ins true
wait_event 5 '"type":"cleared"' '"id":"mh-0002/cover-open"'

# ---- refused and malformed commands ----
cmd ack '{"request_id":"r-nope","alarm":"mh-0001/no-such-rule"}'
expect_reply r-nope false 'no such alarm'
cmd reboot '{"request_id":"r-verb","alarm":"mh-0001/cover-tilt"}'
expect_reply r-verb false 'unknown command'
cmd ack '{"request_id":"r-noalarm"}'
expect_reply r-noalarm false
cmd shelve '{"request_id":"r-nodur","alarm":"mh-0001/cover-tilt"}'
expect_reply r-nodur false 'duration_s'
cmd ack '{"alarm":"mh-0001/cover-tilt"}'
cmd ack 'not json'
cmd ack '{"request_id":"r-trunc","alarm":'
cmd ack '{"request_id":"bad/id","alarm":"mh-0001/cover-tilt"}'
MALFORMED=4
cmd ack '{"request_id":"r-alive","alarm":"mh-0001/cover-tilt"}' # cleared, not acknowledged
expect_reply r-alive true '"state":"normal"'
[[ -z $(reply_of r-trunc) ]] || fail "a malformed command was answered"
pid_alive "$(bg_pid gw1)" || fail "gateway died on bad commands"

# ---- one alarm left open: retained state and report agree ----
sensor mh-0001 '"tilt":40'
wait_for "grep '^$BASE/event/mh-0001' '$T/all.log' | tail -n 1 | grep -q '\"type\":\"raised\"'" 10 ||
    fail "mh-0001 not raised again"
sleep 4.5 # two report periods
timeout 10 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i t61-late -q 1 -F '%t q%q r%r %p' \
    -t "citygate/#" --retained-only -W 2 >"$T/late.out" 2>/dev/null || true

# ---- clean stop: offline; restart: online, no second raised; kill -9: the will ----
stop_bg gw1 TERM 10 || fail "gateway did not stop on SIGTERM"
[[ $STOP_RC == 0 ]] || fail "exit status $STOP_RC after SIGTERM"
wait_for "grep -q '^$BASE/status q1 r0 offline' '$T/all.log'" 5 || fail "no 'offline' on a clean stop"
timeout 10 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i t61-late2 -q 1 -F '%p' \
    -t "$BASE/status" --retained-only -W 2 >"$T/late2.out" 2>/dev/null || true
[[ $(cat "$T/late2.out") == offline ]] || fail "retained status after SIGTERM: $(cat "$T/late2.out")"
start_gw gw2 2
sleep 3
pid=$(bg_pid gw2)
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
forget_pid "$pid"
wait_for "[[ \$(grep -c '^$BASE/status q1 r0 offline' '$T/all.log') -ge 2 ]]" 15 || fail "no will 'offline' after kill -9"

"$PYTHON" - "$CITYGATE_SRC/docs/event.schema.json" "$T" "$BASE" "$held" "$MALFORMED" <<'EOF' || fail "contract check failed"
import datetime, json, sys
from jsonschema import Draft202012Validator
schema_file, t, base, held, malformed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
validator = Draft202012Validator(json.load(open(schema_file)))
problems = []
bad = problems.append
ms = lambda ts: datetime.datetime.fromisoformat(ts).timestamp() * 1000

msgs = []
for ln in open(f"{t}/all.log", encoding="utf-8"):
    topic, q, r, payload = (ln.rstrip("\n").split(" ", 3) + [""])[:4]
    msgs.append((topic[len(base) + 1:], q, r, payload))
for sub, q, r, p in msgs:
    if q != "q1":
        bad(f"{sub}: delivered at {q} to a QoS 1 subscriber: published below QoS 1")

events, ids = [], set()
for sub, q, r, p in msgs:
    if not sub.startswith("event/"):
        continue
    e = json.loads(p)
    if e["event_id"] in ids:
        continue  # at least once: a redelivery
    ids.add(e["event_id"])
    for err in list(validator.iter_errors(e))[:3]:
        bad(f"seq {e.get('seq')}: schema: {'/'.join(map(str, err.path))}: {err.message}")
    if sub != f"event/{e['device']['id']}":
        bad(f"seq {e['seq']} on event topic {sub}")
    for k in ("ts",):
        if not e[k].endswith("+08:00"):
            bad(f"seq {e['seq']}: {k} {e[k]} not in the gateway's +08:00")
    events.append(e)
seqs = [e["seq"] for e in events]
if seqs != list(range(1, len(seqs) + 1)):
    bad(f"seq not dense and increasing from 1: {seqs}")

by = {}
for e in events:
    by.setdefault(e["alarm"]["id"], []).append(e)
want = {
    "mh-0001/cover-tilt": [("raised", None, "major"), ("acked", "command", "major"),
                           ("updated", "escalated", "critical"), ("shelved", "command", "critical"),
                           ("unshelved", "expired", "critical"), ("cleared", "condition", "critical"),
                           ("acked", "command", None), ("raised", "condition", "major")],
    "mh-0002/cover-open": [("raised", "condition", "major"), ("shelved", "command", "major"),
                           ("unshelved", "command", "major"), ("out_of_service", "command", None),
                           ("in_service", "command", None), ("cleared", "condition", "major")],
}
for aid in sorted(set(by) | set(want)):
    have = [(e["type"], e.get("reason"), e["alarm"]["severity"]) for e in by.get(aid, [])]
    exp = want.get(aid, [])
    ok = len(have) == len(exp) and all(
        h[0] == x[0] and (x[1] is None or h[1] == x[1]) and (x[2] is None or h[2] == x[2])
        for h, x in zip(have, exp))
    if not ok:
        bad(f"{aid}: expected {exp}, got {have}")

def ev(aid, typ, k=0):
    l = [e for e in by.get(aid, []) if e["type"] == typ]
    return l[k] if len(l) > k else None

# A case can be filed from `raised` alone.
r = ev("mh-0001/cover-tilt", "raised")
if r:
    c = r["component"]
    if (c["code"], c["grid"], c["owner"], c["maintainer"], c["location"]["address"]) != \
            ("5001030102000001", "500103001002003", "Yuzhong drainage", "Yuzhong maintenance", "Jiefangbei 1"):
        bad(f"raised: component {c}")
    if r["problem"] != {"class": "component", "code": "0102", "name": "cover displaced",
                        "upstream_type": "SITE-MH-TILT"}:
        bad(f"raised: problem {r['problem']}")
    if r["evidence"]["value"] != 30 or r["evidence"]["unit"] != "deg" or not r["evidence"]["samples"]:
        bad(f"raised: evidence {r['evidence']}")
    if r["rule"].get("raise") != 15 or r["rule"].get("clear") != 10 or r["alarm"]["count"] != 1:
        bad(f"raised: rule {r['rule']} count {r['alarm']['count']}")
    if not 1900 <= ms(r["ts"]) - ms(r["alarm"]["active_since"]) <= 4000:
        bad(f"raised {ms(r['ts']) - ms(r['alarm']['active_since'])} ms after the tilt (on-delay 2 s)")
o = ev("mh-0002/cover-open", "raised")
if o and "upstream_type" in o["problem"]:
    bad(f"mh-0002 (0103 is not mapped) has upstream_type: {o['problem']}")
u = ev("mh-0001/cover-tilt", "updated")
if u and (u["evidence"]["value"] != 95 or u["alarm"]["state"] != "active_unacked" or u["rule"]["raise"] != 90):
    bad(f"updated: value {u['evidence']['value']}, state {u['alarm']['state']}, rule {u['rule']}")
# ... and verified closed from `cleared`.
c = ev("mh-0001/cover-tilt", "cleared")
if c:
    if c["evidence"]["value"] != 2 or c["alarm"]["active"] or c["alarm"]["active_since"] != r["alarm"]["active_since"]:
        bad(f"cleared: evidence {c['evidence']['value']}, alarm {c['alarm']}")
    dur = ms(c["ts"]) - ms(c["alarm"]["active_since"])
    if not 5000 <= dur <= 60000:
        bad(f"cleared: duration {dur} ms from active_since")
c2 = ev("mh-0002/cover-open", "cleared")
if c2 and c2["evidence"]["value"] != 0:
    bad(f"mh-0002 cleared: evidence value {c2['evidence']['value']}")
# Shelving: shelved_until from duration_s and from until.
s = ev("mh-0001/cover-tilt", "shelved")
if s and not 3000 <= ms(s["alarm"]["shelved_until"]) - ms(s["ts"]) <= 4100:
    bad(f"shelve duration_s 4: shelved_until {s['alarm']['shelved_until']}, ts {s['ts']}")
x = ev("mh-0001/cover-tilt", "unshelved")
if s and x and not 3900 <= ms(x["ts"]) - ms(s["ts"]) <= 6000:
    bad(f"shelve expired {ms(x['ts']) - ms(s['ts'])} ms after it was set (4 s)")
s2 = ev("mh-0002/cover-open", "shelved")
if s2 and abs(ms(s2["alarm"]["shelved_until"]) - ms(s2["ts"]) - 600000) > 2000:
    bad(f"shelve until: shelved_until {s2['alarm']['shelved_until']}")
if len(events) < held:
    bad("events lost")

# Command replies: ok with the event's id and seq; the event carries the command.
replies = {sub.split("/", 1)[1]: json.loads(p) for sub, q, r, p in msgs if sub.startswith("cmd-reply/")}
by_rid = {e["command"]["request_id"]: e for e in events if "command" in e}
for rid in ("r-ack", "r-shelve-d", "r-shelve-u", "r-unshelve", "r-oos", "r-ins", "r-alive"):
    rep, e = replies.get(rid), by_rid.get(rid)
    if not rep or not e:
        bad(f"{rid}: reply {rep}, event {e and e['type']}")
        continue
    res = rep.get("result", {})
    if not rep["ok"] or res.get("event_id") != e["event_id"] or res.get("seq") != e["seq"] or rep.get("request_id") != rid:
        bad(f"{rid}: reply {rep} does not name its event (seq {e['seq']})")
a = by_rid.get("r-ack")
if a and (a["command"] != {"request_id": "r-ack", "user": "duty", "comment": "crew sent"} or a["alarm"]["state"] != "active_acked"):
    bad(f"acked event: {a['command']}, state {a['alarm']['state']}")
for rid in ("r-ack2", "r-nope", "r-verb", "r-noalarm", "r-nodur"):
    rep = replies.get(rid)
    if not rep or rep["ok"] is not False or not rep.get("error"):
        bad(f"{rid}: a refused command must be answered ok:false with an error: {rep}")
for rid in replies:
    if rid in ("r-trunc", "bad/id"):
        bad(f"malformed {rid} answered")

# Retained alarm state: follows each event, emptied on clear; a late subscriber sees
# status online and the one open alarm, no event and no report.
last = {}
for sub, q, r, p in msgs:
    if sub.startswith("alarm/"):
        last[sub[6:]] = p
for aid, evs in by.items():
    p = last.get(aid)
    if p is None:
        bad(f"no retained state for {aid}")
late = {}
for ln in open(f"{t}/late.out", encoding="utf-8"):
    topic, q, r, p = (ln.rstrip("\n").split(" ", 3) + [""])[:4]
    late[topic[len(base) + 1:]] = (r, p)
if sorted(late) != ["alarm/mh-0001/cover-tilt", "status"]:
    bad(f"retained topics seen late: {sorted(late)} (expected the open alarm and status)")
if late.get("status", ("", ""))[1] != "online":
    bad(f"retained status {late.get('status')}")
doc = json.loads(late.get("alarm/mh-0001/cover-tilt", ("", "{}"))[1] or "{}")
lastev = by["mh-0001/cover-tilt"][-1] if by.get("mh-0001/cover-tilt") else {}
if doc.get("schema") != "citygate.alarm/1" or doc.get("seq") != lastev.get("seq") or doc.get("value") != 40 \
        or doc.get("alarm", {}).get("state") != "active_unacked":
    bad(f"retained mh-0001/cover-tilt: {doc}")
if any(r != "r1" for r, p in late.values()):
    bad("late messages without the retain flag")

# Reports: periodic, complete, agreeing with the open alarm.
reps = [json.loads(p) for sub, q, r, p in msgs if sub == "report"]
if len(reps) < 10:
    bad(f"only {len(reps)} reports (every 2 s expected)")
else:
    gaps = [ms(b["ts"]) - ms(a["ts"]) for a, b in zip(reps, reps[1:]) if b["uptime_s"] > a["uptime_s"]]
    if any(not 1500 <= g <= 3500 for g in gaps):
        bad(f"report intervals {gaps}")
    # the last report of the first run (one alarm open, both devices heard from)
    stop_at = next(i for i, m in enumerate(msgs) if m[0] == "status" and m[3] == "offline")
    rp = [json.loads(p) for sub, q, r, p in msgs[:stop_at] if sub == "report"][-1]
    need = {"schema": str, "gateway": str, "source": str, "ts": str, "uptime_s": (int, float),
            "devices": dict, "alarms": dict, "queues": dict, "drops": dict, "errors": dict,
            "upstream": dict, "influxdb": str}
    for k, ty in need.items():
        if not isinstance(rp.get(k), ty):
            bad(f"report lacks {k}: {rp}")
    if not problems:
        for k in ("total", "online", "offline"):
            if k not in rp["devices"]:
                bad(f"report devices lack {k}")
        for k in ("samples", "outbox", "spool_bytes"):
            if k not in rp["queues"]:
                bad(f"report queues lack {k}")
        for k in ("samples_queue", "telemetry_spool"):
            if k not in rp["drops"]:
                bad(f"report drops lack {k}")
        if rp["alarms"].get("active") != 1 or rp["alarms"].get("by_severity", {}).get("major") != 1:
            bad(f"report alarms {rp['alarms']} (one major open)")
        if rp["devices"]["total"] != 2 or rp["devices"]["online"] != 2:
            bad(f"report devices {rp['devices']}")
        if rp["upstream"].get("commands_malformed", 0) < malformed:
            bad(f"report upstream {rp['upstream']}: {malformed} malformed commands not counted")
        if rp["errors"].get("commands_rejected", 0) < 5:
            bad(f"report errors {rp['errors']}: refused commands not counted")

print(f"{len(events)} events, {len(replies)} replies, {len(reps)} reports")
for e in events:
    print(f"  #{e['seq']:<3} {e['type']:<14} {e.get('reason', ''):<10} {e['alarm']['id']:<22} "
          f"{e['alarm']['state']:<15} {e['alarm']['severity']:<9} {e['evidence']['value']}")
if problems:
    print("\n".join("FAIL: " + p for p in problems))
    sys.exit(1)
EOF
info "ok: the upstream contract holds"
