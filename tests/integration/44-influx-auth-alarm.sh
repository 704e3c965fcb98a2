#!/usr/bin/env bash
# 44: an InfluxDB configuration fault is an alarm of the gateway itself (DESIGN.md §6),
# and no telemetry is lost while it lasts.
#
# citygate-sim serves three Modbus manholes (values held, polled every 400 ms); the
# gateway writes telemetry through tests/integration/tools/influx_fault_server.py, which
# answers 401 to the first writes and then proxies to a real influxd, and publishes
# events to a private mosquitto. The gateway is restarted (SIGTERM) while the fault is
# active. Checked:
#   - upstream sees exactly one `raised` and then one `cleared` for <gw>/influx-config
#     (major, problem class "gateway", code G01; valid against docs/event.schema.json),
#     no second `raised` after the restart, the clear only after a write went through,
#     and the retained …/alarm/<gw>/influx-config emptied at the end;
#   - the telemetry of the fault (kept in the spool, across the restart) reached influxd:
#     points during the fault window, no gap in any device's series beyond what a lost
#     batch would leave (except around the restart), nothing dropped, the spool back to
#     0 bytes, and the server's point count in line with what the writer says it wrote.
. "$(dirname "$0")/../harness/lib.sh"

HARNESS_TIMEOUT=${HARNESS_TIMEOUT:-150}
SIM=${CITYGATE_SIM:-$CITYGATE_BUILD/devices/sim/citygate-sim}
need_citygate
[[ -x $SIM ]] || fail "citygate-sim not built: $SIM"
"$PYTHON" -c 'import jsonschema' 2>/dev/null || fail "python3-jsonschema missing (apt-get install python3-jsonschema)"
GW=GW-500103-0044
INTERVAL_MS=400
N401=${N401:-8}

start_influxd
start_mosquitto
FRONT_PORT=$(free_port)
start_bg fault-server "$PYTHON" "$CITYGATE_SRC/tests/integration/tools/influx_fault_server.py" \
    --port "$FRONT_PORT" --upstream "$INFLUX_URL" --plan "401*$N401" --log "$T/requests.jsonl"
wait_port "$FRONT_PORT" 10 || fail "fault server did not listen"

TCP_PORT=$(free_port)
HTTP_PORT=$(free_port)
mkdir -p "$T/data" "$T/no-rules"
dev() { # dev N
    printf '{"id": "mh-%d", "kind": "manhole", "interval_ms": %d, "rule_sets": [],
     "modbus": {"bus": "field", "unit_id": %d, "profile": "generic-manhole"},
     "component": {"code": "500103010200000%d", "grid": "500103001002003"}}' "$1" "$INTERVAL_MS" "$1" "$1"
}
cat >"$T/citygate.json" <<EOF
{
  "gateway": {"id": "$GW", "name": "test 44", "admin_code": "500103", "data_dir": "$T/data",
              "log_level": "info"},
  "paths": {"profiles": "$CITYGATE_SRC/devices", "rules": "$T/no-rules"},
  "buses": [
    {"id": "field", "type": "tcp", "host": "127.0.0.1", "port": $TCP_PORT,
     "response_timeout_ms": 300, "retries": 1, "reconnect_min_ms": 200, "reconnect_max_ms": 1000}
  ],
  "devices": [$(dev 1), $(dev 2), $(dev 3)],
  "outputs": {
    "mqtt": {"enabled": true, "url": "$MQTT_URL", "client_id": "gw44", "topic_prefix": "citygate",
             "report_interval_s": 3600},
    "influxdb": {"enabled": true, "url": "http://127.0.0.1:$FRONT_PORT", "version": 1,
                 "database": "citygate", "precision": "us", "flush_ms": 1000, "timeout_ms": 5000,
                 "gzip": true}
  },
  "http": {"enabled": true, "listen": "127.0.0.1", "port": $HTTP_PORT}
}
EOF
"$CITYGATE_BIN" check -c "$T/citygate.json" >"$T/check.out" 2>&1 ||
    fail "citygate check refused the test config: $(cat "$T/check.out")"
cat >"$T/scenario.json" <<'EOF'
{"description": "44: three covers holding exact values", "steps": [
  {"at": "0s", "device": ["mh-1", "mh-2", "mh-3"], "hold": true,
   "set": {"tilt_deg": 1.5, "water_level_m": 0.3}}]}
EOF

start_bg events mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i t44-events -q 1 -F '%t %p' -t "citygate/+/event/#"
start_bg alarms mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i t44-alarms -q 1 -F '%t %p' -t "citygate/+/alarm/#"
wait_for "grep -q 'as t44-events' '$T/mosquitto.log' && grep -q 'as t44-alarms' '$T/mosquitto.log'" 10 ||
    fail "verifying subscribers did not connect"

start_bg sim "$SIM" -c "$T/citygate.json" --scenario "$T/scenario.json" --seed 44
wait_for "grep -q 'citygate-sim: ready' '$T/sim.log' || ! pid_alive $BG_PID" 15 || fail "simulator not ready"

api() { curl -sS --fail --max-time 5 "http://127.0.0.1:$HTTP_PORT$1"; }
metric() { api /metrics 2>/dev/null | awk -v k="$1" '$1 == k { print $2 }'; }
start_gw() { # start_gw NAME
    start_bg "$1" "$CITYGATE_BIN" run -c "$T/citygate.json"
    wait_for "curl -sf --max-time 1 http://127.0.0.1:$HTTP_PORT/healthz >/dev/null || curl -s --max-time 1 -o /dev/null -w '%{http_code}' http://127.0.0.1:$HTTP_PORT/healthz | grep -q 503 || ! pid_alive $BG_PID" 15 ||
        fail "$1: HTTP did not answer"
    pid_alive "$BG_PID" || fail "$1 exited at start"
}
ALARM_RE="\"id\":\"$GW/influx-config\""
raised() { grep "citygate/$GW/event/$GW " "$T/events.log" 2>/dev/null | grep -c '"type":"raised"'; }

start_gw gw1
wait_for "[[ \$(raised) -ge 1 ]]" 20 || fail "no raised event for $GW/influx-config within 20 s"
[[ $(metric 'citygate_influx_state{state="config_fault"}') == 1 ]] || info "writer no longer in config_fault at the raise"
# Restart while the alarm is active: the restored alarm must not be raised again.
sleep 1
info "restart during the fault"
WRITTEN1=$(metric citygate_influx_points_written_total)
RESTART_T0=$(now_ms)
stop_bg gw1 TERM 15 || fail "gateway did not stop within 15 s of SIGTERM"
[[ $STOP_RC == 0 ]] || fail "gateway exit status $STOP_RC after SIGTERM"
start_gw gw2
RESTART_T1=$(now_ms)

cleared() { grep "citygate/$GW/event/$GW " "$T/events.log" 2>/dev/null | grep -c '"type":"cleared"'; }
wait_for "[[ \$(cleared) -ge 1 ]]" 45 || fail "no cleared event for $GW/influx-config within 45 s of the restart"
wait_for "[[ \$(metric citygate_influx_spool_bytes) == 0 ]]" 20 ||
    fail "spool not drained: $(metric citygate_influx_spool_bytes) bytes left"
sleep 2 # live data after the drain
# Freeze the input (the sim stops: only bad-quality samples follow, never written), let
# the writer flush, then compare the server with the writer's own count.
stop_bg sim TERM 10 || true
sleep 2.5
wait_for "[[ \$(metric citygate_influx_spool_bytes) == 0 ]]" 10 || fail "spool not empty at the end"
WRITTEN=$(($(metric citygate_influx_points_written_total) + WRITTEN1))
DROPS=$(api /metrics | awk '$1 ~ /^citygate_influx_dropped_total/ { s += $2 } END { print s + 0 }')
END_MS=$(now_ms)
stop_bg gw2 TERM 15 || fail "gateway did not stop within 15 s of SIGTERM"
grep -qi "quarantin" "$T/gw1.log" "$T/gw2.log" && fail "a store was quarantined"
[[ $DROPS == 0 ]] || fail "telemetry dropped: $(grep -h dropped "$T"/gw*.log | tail -3)"

influx_query "SELECT * FROM manhole" >"$T/points.json"
"$PYTHON" - "$CITYGATE_SRC/docs/event.schema.json" "$T" "$GW" "$WRITTEN" "$INTERVAL_MS" \
    "$RESTART_T0" "$RESTART_T1" "$END_MS" <<'EOF' || fail "check failed"
import datetime, json, sys
from jsonschema import Draft202012Validator
schema, t, gw = sys.argv[1:4]
written, interval, r0, r1, end_ms = map(int, sys.argv[4:])
validator = Draft202012Validator(json.load(open(schema)))
bad = []
ms = lambda ts: int(datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)

events = {}
for ln in open(f"{t}/events.log", encoding="utf-8"):
    topic, _, payload = ln.rstrip("\n").partition(" ")
    ev = json.loads(payload)
    for e in list(validator.iter_errors(ev))[:3]:
        bad.append(f"seq {ev.get('seq')}: schema: {'/'.join(map(str, e.path))}: {e.message}")
    if events.get(ev["event_id"], payload) != payload:
        bad.append(f"event {ev['event_id']} redelivered with another payload")
    events[ev["event_id"]] = payload
evs = sorted((json.loads(p) for p in events.values()), key=lambda e: e["seq"])
mine = [e for e in evs if e["alarm"]["id"] == f"{gw}/influx-config"]
others = [e for e in evs if e["alarm"]["id"] != f"{gw}/influx-config"]
if others:
    bad.append(f"unexpected events: {[(e['type'], e['alarm']['id']) for e in others]}")
if [e["type"] for e in mine] != ["raised", "cleared"]:
    bad.append(f"influx-config events {[(e['seq'], e['type']) for e in mine]}, want raised, cleared")
else:
    r, c = mine
    for e in mine:
        if (e["problem"]["class"], e["problem"]["code"], e["device"]["kind"], e["device"]["id"],
                e["alarm"]["severity"]) != ("gateway", "G01", "gateway", gw, "major"):
            bad.append(f"seq {e['seq']}: problem {e['problem']}, device {e['device']}, severity {e['alarm']['severity']}")
    if "401" not in str(r["evidence"]["value"]):
        bad.append(f"raised evidence {r['evidence']}")
    if c["seq"] <= r["seq"]:
        bad.append("cleared before raised")
    reqs = [json.loads(l) for l in open(f"{t}/requests.jsonl")]
    n401 = sum(1 for q in reqs if q["status"] == 401)
    ok = [q for q in reqs if q["forwarded"] and q["status"] == 204]
    if not ok:
        bad.append("no write reached influxd")
    elif ms(c["ts"]) + 50 < ok[0]["t"] * 1000:
        bad.append(f"cleared at {c['ts']}, before the first accepted write")
    if not ms(r["ts"]) < r0:
        bad.append("raised only after the restart")
    if not r1 < ms(c["ts"]):
        bad.append("cleared before the restart: the restored alarm was not exercised")
    print(f"raised seq {r['seq']} at {r['ts']}, cleared seq {c['seq']} at {c['ts']}; {n401} x 401, "
          f"{len(ok)} writes accepted")
    fault0, fault1 = ms(r["ts"]), ms(c["ts"])

last = {}
for ln in open(f"{t}/alarms.log", encoding="utf-8"):
    topic, _, payload = ln.rstrip("\n").partition(" ")
    last[topic] = payload
key = f"citygate/{gw}/alarm/{gw}/influx-config"
if key not in last or last[key] != "":
    bad.append(f"retained {key} not emptied: {last.get(key, '<never published>')[:120]}")

res = json.load(open(f"{t}/points.json"))["results"][0]
rows = res["series"][0]["values"] if "series" in res else []
cols = res["series"][0]["columns"] if rows else []
by_dev = {}
for row in rows:
    d = dict(zip(cols, row))
    # One poll is two Modbus reads, two lines (two points); tilt_deg is in one of them.
    all_pts = by_dev.setdefault(d["device"] + "/all", [])
    all_pts.append(1)
    if d.get("tilt_deg") is not None:
        by_dev.setdefault(d["device"], []).append(ms(d["time"]))
total = sum(len(v) for k, v in by_dev.items() if k.endswith("/all"))
by_dev = {k: v for k, v in by_dev.items() if not k.endswith("/all")}
if sorted(by_dev) != ["mh-1", "mh-2", "mh-3"]:
    bad.append(f"devices in influxd: {sorted(by_dev)}")
if not (written * 0.95 <= total <= written):
    bad.append(f"influxd holds {total} points, the writer wrote {written} lines")
# A lost batch (flush_ms 1000) leaves a gap of more than a second in every series.
limit = 1300
for dev, ts in sorted(by_dev.items()):
    ts.sort()
    gaps = [(a, b) for a, b in zip(ts, ts[1:]) if b - a > limit and not (a <= r1 + 2000 and b >= r0 - 1000)]
    if gaps:
        bad.append(f"{dev}: {len(gaps)} gaps over {limit} ms, e.g. {[(b - a) for a, b in gaps[:5]]} ms")
    if mine and len(mine) == 2:
        during = sum(1 for x in ts if fault0 <= x <= fault1)
        span = (fault1 - fault0) / 1000
        if during < 0.5 * span * 1000 / interval - (r1 - r0) / interval:
            bad.append(f"{dev}: only {during} points in the {span:.1f} s fault window")
        print(f"{dev}: {len(ts)} points, {during} of them during the {span:.1f} s fault")
if bad:
    print("\n".join("FAIL: " + b for b in bad))
    sys.exit(1)
print(f"influxd holds {total} points; the writer wrote {written} lines")
EOF
info "ok: InfluxDB 401 raised $GW/influx-config, cleared after recovery, no telemetry lost"
