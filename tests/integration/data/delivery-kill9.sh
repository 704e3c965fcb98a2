# shellcheck shell=bash
# Shared body of tests/integration/45-gateway-kill9*.sh (sourced after the harness):
# the real gateway builds a backlog of alarm events while the upstream broker is down
# and is killed with SIGKILL at random moments (KILLS times, restarted at once each
# time, the simulator playing on); then the broker and a verifying QoS 1 subscriber
# (fixed client id) start, the gateway runs a last time and drains. With
# BROKER_RESTARTS=1 the broker (persistent, like the subscriber's session) is
# restarted four times during the drain (SIGTERM, SIGKILL, SIGTERM, SIGKILL) while
# events keep coming.
#
# The field: six Modbus covers polled every 200 ms whose tilt the scenario flips
# across a limit every 500 ms (two groups, staggered), under a rule with no delays: a
# dozen raised / cleared events a second, each one committed (fsync) to the outbox.
#
# Checked after the last stop, against <data_dir>/outbox.db (read-only):
#   - the subscriber saw every seq from 1 to the outbox's last_seq at least once, one
#     event_id per seq and one seq per event_id (a redelivery is byte-identical);
#   - per alarm, in seq order, raised and cleared alternate starting with raised: no
#     second raise of an alarm restored active, no lost clear, across every kill;
#   - the store opened every time without quarantine ("quarantin" in no log);
#   - nothing left in the outbox (events and alarm-state publications), depth 0;
#   - without broker restarts: the retained …/alarm topics a late subscriber sees are
#     exactly the alarms whose last event is `raised`, each with that event's seq.
: "${KILLS:=12}"
: "${BROKER_RESTARTS:=0}"
HARNESS_TIMEOUT=${HARNESS_TIMEOUT:-170}

SIM=${CITYGATE_SIM:-$CITYGATE_BUILD/devices/sim/citygate-sim}
need_citygate
[[ -x $SIM ]] || fail "citygate-sim not built: $SIM"
GW=GW-500103-0045
NDEV=6

TCP_PORT=$(free_port)
HTTP_PORT=$(free_port)
BROKER_PORT=$(free_port)
mkdir -p "$T/data" "$T/rules"
cat >"$T/rules/flip.json" <<'EOF'
{"schema": "citygate.rules/1",
 "description": "45: tilt across a limit, no delays: every flip is an event",
 "rules": [
  {"id": "flip", "name": "cover tilted", "when": {"field": "tilt_deg", "op": ">", "raise": 15, "clear": 10},
   "severity": "major", "problem": {"class": "component", "name": "cover displaced"}}]}
EOF
"$PYTHON" - "$T" "$TCP_PORT" "$HTTP_PORT" "$BROKER_PORT" "$GW" "$NDEV" "$CITYGATE_SRC/devices" <<'EOF'
import json, sys
t, tcp, http, broker, gw, ndev, profiles = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), sys.argv[7]
devs = [{"id": f"mh-{i}", "kind": "manhole", "interval_ms": 200, "rule_sets": ["flip"],
         "modbus": {"bus": "field", "unit_id": i, "profile": "generic-manhole"},
         "component": {"code": f"50010301020000{i:02d}", "grid": "500103001002003"}}
        for i in range(1, ndev + 1)]
cfg = {
    "gateway": {"id": gw, "name": "test 45", "admin_code": "500103", "data_dir": t + "/data",
                "log_level": "info"},
    "paths": {"rules": t + "/rules", "profiles": profiles},
    "buses": [{"id": "field", "type": "tcp", "host": "127.0.0.1", "port": tcp,
               "response_timeout_ms": 150, "retries": 0, "reconnect_min_ms": 200,
               "reconnect_max_ms": 1000}],
    "devices": devs,
    "outputs": {"mqtt": {"enabled": True, "url": f"tcp://127.0.0.1:{broker}", "client_id": "gw45",
                         "topic_prefix": "citygate", "report_interval_s": 3600, "max_inflight": 10},
                "influxdb": {"enabled": False}},
    "http": {"enabled": True, "listen": "127.0.0.1", "port": http},
}
json.dump(cfg, open(t + "/citygate.json", "w"), indent=1)
# Two groups flip in turn every 250 ms: each cover holds a value for 500 ms (2-3 polls).
steps = [{"at": "0s", "device": [d["id"] for d in devs], "hold": True, "set": {"tilt_deg": 0.5}}]
groups = [[d["id"] for d in devs[0::2]], [d["id"] for d in devs[1::2]]]
for k in range(4, 4 * 180):
    g = groups[k % 2]
    up = (k // 2) % 2 == 0
    steps.append({"at": f"{k * 250}ms", "device": g, "set": {"tilt_deg": 35 if up else 0.5}})
json.dump({"description": "45: covers flipping across the tilt limit", "steps": steps},
          open(t + "/scenario.json", "w"))
EOF
CFG=$T/citygate.json
"$CITYGATE_BIN" check -c "$CFG" >"$T/check.out" 2>&1 || fail "citygate check refused the test config: $(cat "$T/check.out")"

api() { curl -sS --fail --max-time 5 "http://127.0.0.1:$HTTP_PORT$1"; }
# fail_stuck MSG: fail, with the last run's thread stacks when gdb is there (a hung
# gateway is the failure this most needs explaining).
fail_stuck() {
    if [[ -n ${GW_PID:-} ]] && pid_alive "$GW_PID" && command -v gdb >/dev/null; then
        timeout 30 gdb -q -batch -p "$GW_PID" -ex "thread apply all bt" >"$T/stacks.txt" 2>&1 || true
        grep -A12 "^Thread" "$T/stacks.txt" | head -150 >&2 || true
    fi
    fail "$@"
}
metric() { { api /metrics 2>/dev/null || true; } | awk -v k="$1" '$1 == k { print $2 }'; }

start_bg sim "$SIM" -c "$CFG" --scenario "$T/scenario.json" --seed 45 --log-level warn
SIM_PID=$BG_PID
wait_for "grep -q 'citygate-sim: ready' '$T/sim.log' || ! pid_alive $SIM_PID" 15 || fail "simulator not ready"

# ---- the backlog, under SIGKILL ------------------------------------------------------
# At least KILLS runs, and more (up to 3 x KILLS) until 150 events are committed: the
# kill times are random and a slow start (sanitizers, a busy box) must not make the
# backlog too small to prove anything.
committed=0
for ((i = 1; i <= 3 * KILLS; i++)); do
    ((i <= KILLS || committed < 150)) || break
    start_bg "gw$i" "$CITYGATE_BIN" run -c "$CFG"
    pid=$BG_PID
    # 0.3 .. 2.8 s: sometimes during start-up and restore, mostly while committing.
    sleep "$((RANDOM % 3)).$((RANDOM % 10))"
    sleep 0.3
    pid_alive "$pid" || fail "run $i: the gateway exited on its own: $(tail -5 "$T/gw$i.log")"
    stop_pid "$pid" KILL 5
    committed=$(cat "$T"/gw*.log | grep -c ' engine: event #' || true)
done
KILLS=$((i - 1))
pid_alive "$SIM_PID" || fail "the simulator died during the kills"
((committed >= 150)) || fail "only $committed events committed during $KILLS runs: the backlog proved little"
info "$KILLS kills; $committed events committed meanwhile, none delivered yet"

# ---- broker, verifier, last run ------------------------------------------------------
MOSQUITTO_PERSISTENCE=1 start_mosquitto "$BROKER_PORT"
start_bg verifier mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -i t45-verifier -c -q 1 -F '%t %p' \
    -t "citygate/$GW/event/#"
wait_for "grep -q 'as t45-verifier' '$T/mosquitto.log'" 10 || fail "verifier did not connect"
sleep 0.3

start_bg gwlast "$CITYGATE_BIN" run -c "$CFG"
GW_PID=$BG_PID
if [[ $BROKER_RESTARTS == 1 ]]; then
    # The first restart as soon as the backlog starts going out, then every 2.5 s
    # (events committed while the broker is down make a new backlog each time).
    wait_for "[[ \$(grep -c . '$T/verifier.log') -ge 10 ]]" 20 || fail "the verifier got nothing"
    pause=0
    for sig in TERM KILL TERM KILL; do
        sleep "$pause"
        pause=2.5
        acked=$(metric citygate_upstream_acked_total)
        [[ -n $acked ]] || fail_stuck "the last run does not answer /metrics"
        info "broker: $sig (acked $acked, outbox depth $(metric citygate_outbox_depth))"
        stop_mosquitto "$sig"
        sleep 0.6
        MOSQUITTO_PERSISTENCE=1 start_mosquitto "$BROKER_PORT"
    done
    losses=$(metric citygate_upstream_connection_losses_total)
    ((losses >= 4)) || fail "the gateway saw $losses connection losses, expected >= 4"
else
    wait_for "[[ \$(metric citygate_upstream_connected) == 1 ]] || ! pid_alive $GW_PID" 15 ||
        fail "last run: not connected upstream within 15 s"
    sleep 4
fi
# End of the field's changes: no event after this (a silent device holds its alarms).
stop_pid "$SIM_PID" TERM 10 || true
wait_for "[[ \$(metric citygate_outbox_depth) == 0 && \$(metric citygate_upstream_inflight) == 0 ]]" 30 ||
    fail_stuck "outbox not drained: depth $(metric citygate_outbox_depth)"
LAST_SEQ=$(metric citygate_outbox_last_seq)
sleep 1
if [[ $BROKER_RESTARTS == 0 ]]; then
    timeout 10 mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -i t45-late -q 1 -F '%t %p' \
        -t "citygate/$GW/alarm/#" --retained-only -W 3 >"$T/retained.out" 2>/dev/null || true
fi
kill -TERM "$GW_PID"
wait_for "! pid_alive $GW_PID" 15 || fail_stuck "the last run did not stop within 15 s of SIGTERM"
stop_bg gwlast TERM 1
[[ $STOP_RC == 0 ]] || fail "the last run exited $STOP_RC"
# Let the verifier take what is still queued for it.
wait_for "[[ \$(grep -c . '$T/verifier.log') -ge $LAST_SEQ ]]" 20 || true
sleep 1

if grep -il "quarantin" "$T"/gw*.log; then
    fail "a store was quarantined: $(grep -ih quarantin "$T"/gw*.log | head -3)"
fi

"$PYTHON" - "$T" "$GW" "$LAST_SEQ" "$BROKER_RESTARTS" <<'EOF' || fail "delivery check failed"
import json, sqlite3, sys
t, gw, metric_last, broker_restarts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
bad = []
db = sqlite3.connect(f"file:{t}/data/outbox.db?mode=ro", uri=True)
last_seq = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
pending = db.execute("SELECT count(*) FROM events").fetchone()[0]
pubs = db.execute("SELECT count(*) FROM alarm_pubs").fetchone()[0]
db.close()
if last_seq != metric_last:
    bad.append(f"outbox last_seq {last_seq} after the stop, {metric_last} in /metrics before it")
if pending or pubs:
    bad.append(f"outbox not empty after the drain: {pending} events, {pubs} alarm states")

by_seq, by_id, lines = {}, {}, 0
for ln in open(f"{t}/verifier.log", encoding="utf-8"):
    topic, _, payload = ln.rstrip("\n").partition(" ")
    if not payload:
        continue
    lines += 1
    ev = json.loads(payload)
    s, eid = ev["seq"], ev["event_id"]
    if topic != f"citygate/{gw}/event/{ev['device']['id']}":
        bad.append(f"seq {s} on topic {topic}")
    if by_seq.setdefault(s, (eid, payload)) != (eid, payload):
        bad.append(f"seq {s} seen as {by_seq[s][0]} and as {eid}" if by_seq[s][0] != eid
                   else f"seq {s} redelivered with another payload")
    if by_id.setdefault(eid, s) != s:
        bad.append(f"event_id {eid} seen with seq {by_id[eid]} and {s}")
missing = sorted(set(range(1, last_seq + 1)) - set(by_seq))
extra = sorted(set(by_seq) - set(range(1, last_seq + 1)))
if missing:
    bad.append(f"{len(missing)} of {last_seq} seqs never delivered, e.g. {missing[:10]}")
if extra:
    bad.append(f"seqs beyond last_seq {last_seq}: {extra[:10]}")
if last_seq < 200:
    bad.append(f"only {last_seq} events in the whole run")

# Alternation is only meaningful over a complete sequence (a gap is reported above).
alarms = {}
for s in sorted(by_seq) if not missing else []:
    ev = json.loads(by_seq[s][1])
    alarms.setdefault(ev["alarm"]["id"], []).append((s, ev["type"]))
for aid, evs in sorted(alarms.items()):
    for k, (s, typ) in enumerate(evs):
        want = "raised" if k % 2 == 0 else "cleared"
        if typ != want:
            bad.append(f"{aid}: seq {s} is {typ}, expected {want} (history {[x[1][0] for x in evs[max(0, k - 3):k + 2]]})")
            break

if not broker_restarts:
    retained = {}
    for ln in open(f"{t}/retained.out", encoding="utf-8"):
        topic, _, payload = ln.rstrip("\n").partition(" ")
        if payload:
            retained[topic.split(f"citygate/{gw}/alarm/", 1)[-1]] = json.loads(payload)
    active = {aid: evs[-1][0] for aid, evs in alarms.items() if evs[-1][1] == "raised"}
    if sorted(retained) != sorted(active):
        bad.append(f"retained alarms {sorted(retained)}, active by the events {sorted(active)}")
    for aid, s in active.items():
        if aid in retained and retained[aid].get("seq") != s:
            bad.append(f"retained {aid} at seq {retained[aid].get('seq')}, its last event is {s}")

print(f"last_seq {last_seq}: all delivered ({lines} deliveries, {lines - len(by_seq)} duplicates), "
      f"{len(alarms)} alarms, {sum(len(v) for v in alarms.values())} events")
if bad:
    print("\n".join("FAIL: " + b for b in bad[:20]))
    sys.exit(1)
EOF
info "ok: $KILLS x SIGKILL with a backlog$([[ $BROKER_RESTARTS == 1 ]] && echo ', broker restarted 4 x during the drain'): every seq 1..$LAST_SEQ delivered, no repair"
