#!/usr/bin/env bash
# 52: MQTT ingest against a real broker. Uplinks reach on_message with the right
# device (named topic segment, JSON path, case-insensitive keys, device decoder
# override); unknown devices, oversize, invalid JSON, missing keys and binary garbage
# are counted and dropped alone; QoS 1 messages published while the ingest is stopped
# arrive after it restarts (persistent session); a full core queue defers a message
# without losing it; after a broker restart it subscribes again; MQTT 5 works too.
. "$(dirname "$0")/../harness/lib.sh"

TOOLS=${MQTT_TOOLS:-$CITYGATE_BUILD/tests/integration/tools}
DRV=$TOOLS/mqtt_ingest_driver
[[ -x $DRV ]] || fail "driver not built: $DRV"
UP=application/7/device

stat_of() {
    [[ -s $1 ]] || { echo -1; return; }
    tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"
}
pub() { mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 "$@"; }
msgs() { grep -c "^MSG $1" "$T/${2:-ingest}.log" 2>/dev/null || true; }
expect_stat() { # expect_stat FILE KEY VALUE
    wait_for "[[ \$(stat_of '$1' $2) == $3 ]]" 10 ||
        fail "$2=$(stat_of "$1" "$2"), expected $3 ($(cat "$1"))"
}
start_ingest() { # start_ingest NAME [ARGS...]
    local name=$1
    shift
    start_bg "$name" "$DRV" --url "$MQTT_URL" --client-id t52-ingest --max-payload 1024 \
        --stats "$T/$name.stats" "$@"
    wait_for "[[ \$(stat_of '$T/$name.stats' connected) == 1 ]]" 15 || fail "$name did not connect"
    sleep 0.3 # SUBACK follows CONNACK
}

start_mosquitto
start_ingest ingest
S=$T/ingest.stats

# --- mapping ----------------------------------------------------------------------------
pub -t "$UP/24e124713b100001/event/up" -m '{"deviceInfo":{"devEui":"24e124713b100001"},"data":"AQI="}'
pub -t "$UP/24e124713b100002/event/up" -m '{"data":"AQI="}'   # configured upper-case
pub -t city/sensors/json -m '{"meta":{"id":"sensor-7"},"level_m":1.25}'
pub -t city/sensors/json -m '{"meta":{"id":9},"power_w":41.5}' # numeric key
expect_stat "$S" matched 4
[[ $(msgs "device=mh-0101 decoder=chirpstack topic=$UP/24e124713b100001/event/up") == 1 ]] ||
    fail "named segment: mh-0101 not matched"
[[ $(msgs "device=mh-0102 decoder=chirpstack") == 1 ]] || fail "case-insensitive key (the subscription decoder is passed; decode.c applies the device decoder)"
[[ $(msgs "device=wm-7 decoder=json topic=city/sensors/json") == 1 ]] || fail "JSON path: wm-7"
[[ $(msgs "device=lamp-9 decoder=json") == 1 ]] || fail "JSON path with a numeric key: lamp-9"
# a JSON-path message reaches the hook parsed (the decoder does not parse it again)
[[ $(msgs "device=wm-7 decoder=json topic=city/sensors/json len=[0-9]* doc=1 ") == 1 ]] ||
    fail "JSON path: the hook did not get the parsed payload"
[[ $(msgs "device=mh-0101 decoder=chirpstack topic=[^ ]* len=[0-9]* doc=0 ") == 1 ]] ||
    fail "named segment: the payload was parsed though no key had to be read from it"

# --- bad input, each followed by a good message (dropped alone) ---------------------------
good() { pub -t "$UP/24e124713b100001/event/up" -m "{\"good\":$1}"; }
pub -t "$UP/ffffffffffffffff/event/up" -m '{}'; good 1
pub -t "$UP/ffffffffffffffff/event/up" -m '{}'; good 2             # same unknown: logged once
pub -t "$UP/24e1247100000900/event/up" -m '{}'; good 3             # another source's device
pub -t city/sensors/json -m 'not json {{'; good 4
pub -t city/sensors/json -m '{"meta":{}}'; good 5
pub -t city/sensors/json -m '{"meta":{"id":["x"]}}'; good 6
pub -t city/sensors/json -m '{"meta":{"id":"sensor-7"}} trailing'; good 7
printf '{"meta":{"id":"sensor-7"}}\0xx' | pub -t city/sensors/json -s; good 8
head -c 600 /dev/urandom | pub -t city/sensors/json -s; good 9
head -c 5000 /dev/zero | tr '\0' 'x' | pub -t "$UP/24e124713b100001/event/up" -s; good 10
head -c 5000 /dev/zero | tr '\0' 'x' | pub -t city/sensors/json -s; good 11
nested=$(printf '[%.0s' $(seq 1 1000))
pub -t city/sensors/json -m "$nested"; good 12
pub -t city/sensors/json -m ''; good 13
expect_stat "$S" matched 17
expect_stat "$S" unknown 3
expect_stat "$S" oversize 2
expect_stat "$S" no_key 2
bad_json=$(stat_of "$S" bad_json)
[[ $bad_json -ge 5 ]] || fail "bad_json=$bad_json, expected >= 5"
[[ $(grep -c 'unknown device key "ffffffffffffffff"' "$T/ingest.log") == 1 ]] ||
    fail "an unknown device must be logged exactly once"
for i in $(seq 1 13); do
    [[ $(msgs "device=mh-0101 .*body={\"good\":$i}") == 1 ]] || fail "good message $i lost"
done
pid_alive "$(bg_pid ingest)" || fail "ingest driver died"
info "bad input counted: $(cat "$S")"

# --- persistent session: published while stopped, delivered after restart ---------------
stop_bg ingest TERM 10 || fail "ingest did not stop"
[[ $STOP_RC == 0 ]] || fail "ingest exited $STOP_RC"
for i in $(seq 1 20); do
    pub -t "$UP/24e124713b100001/event/up" -m "{\"offline\":$i}"
done
start_ingest ingest2
for i in $(seq 1 20); do
    wait_for "[[ \$(msgs 'device=mh-0101 .*body={\"offline\":$i}' ingest2) -ge 1 ]]" 10 ||
        fail "message $i published while stopped was lost"
done
info "20 messages published while stopped were delivered after restart"
stop_bg ingest2 TERM 10

# --- full core queue: deferred, delivered once room comes back -----------------------------
start_ingest ingest3 --full-first 3
pub -t "$UP/24e124713b100001/event/up" -m '{"deferred":1}'
wait_for "[[ \$(msgs 'device=mh-0101 .*body={\"deferred\":1}' ingest3) -ge 1 ]]" 20 ||
    fail "deferred message never delivered ($(cat "$T/ingest3.stats"))"
expect_stat "$T/ingest3.stats" deferred 3
[[ $(msgs 'device=mh-0101 .*body={"deferred":1}' ingest3) == 1 ]] || fail "deferred message duplicated"

# --- broker restart: subscribe again -----------------------------------------------------------
restart_mosquitto
wait_for "[[ \$(stat_of '$T/ingest3.stats' connects) -ge 2 && \$(stat_of '$T/ingest3.stats' connected) == 1 ]]" 20 ||
    fail "no reconnect after broker restart"
sleep 0.5
pub -t "$UP/24e124713b100001/event/up" -m '{"after_restart":1}'
wait_for "[[ \$(msgs 'device=mh-0101 .*body={\"after_restart\":1}' ingest3) == 1 ]]" 10 ||
    fail "no ingest after broker restart (resubscribe)"
stop_bg ingest3 TERM 10

# --- inbox under load: large messages of every size through the inbox ring (it wraps
# several times), a slow core so the inbox fills and Paho's thread defers; every message
# arrives once, in order, byte for byte ----------------------------------------------------
start_ingest ingest4 --client-id t52-ingest-load --max-payload 65536 --check --slow-first 100
N_LOAD=600
"$PYTHON" - "$MQTT_PORT" "$N_LOAD" "$UP/24e124713b100001/event/up" <<'PY' || fail "load publisher failed"
import random, sys, paho.mqtt.client as mqtt
port, n, topic = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rnd = random.Random(52)
c = mqtt.Client(client_id="t52-load-pub")
c.max_inflight_messages_set(100)
c.max_queued_messages_set(0)
c.connect("127.0.0.1", port)
c.loop_start()
infos = []
for seq in range(n):
    size = rnd.choice([10, 1000, rnd.randint(1, 65536), rnd.randint(32768, 65536)])
    head = ("seq=%d;" % seq).encode()
    body = bytes(97 + (seq + i) % 26 for i in range(len(head), max(size, len(head))))
    infos.append(c.publish(topic, head + body, qos=1))
for i in infos:
    i.wait_for_publish(60)
c.loop_stop()
c.disconnect()
PY
wait_for "[[ \$(grep -c '^SEQ ' '$T/ingest4.log') -ge $N_LOAD ]]" 90 ||
    fail "inbox load: $(grep -c '^SEQ ' "$T/ingest4.log") of $N_LOAD messages ($(cat "$T/ingest4.stats"))"
grep '^SEQ ' "$T/ingest4.log" | grep -v ' ok$' | head -3 | grep . && fail "inbox load: a message arrived damaged"
[[ $(grep '^SEQ ' "$T/ingest4.log" | awk '{print $2}' | tr '\n' ' ') == "$(seq 0 $((N_LOAD - 1)) | tr '\n' ' ')" ]] ||
    fail "inbox load: messages lost, duplicated or out of order"
wait_for "[[ \$(stat_of '$T/ingest4.stats' matched) -ge $N_LOAD ]]" 5 || fail "inbox load: stats stale"
deferred=$(stat_of "$T/ingest4.stats" deferred)
[[ $deferred -ge 1 ]] || fail "inbox load: the slow core never made Paho's thread defer ($(cat "$T/ingest4.stats"))"
info "inbox load: $N_LOAD messages (1 B .. 64 KiB) in order and intact, $deferred deferrals"
stop_bg ingest4 TERM 10

# --- MQTT 5, persistent session with expiry ----------------------------------------------------
start_ingest ingest5 --version 5 --client-id t52-ingest-v5
stop_bg ingest5 TERM 10
pub -t "$UP/24e124713b100001/event/up" -m '{"v5_offline":1}'
start_ingest ingest5b --version 5 --client-id t52-ingest-v5
wait_for "[[ \$(msgs 'device=mh-0101 .*body={\"v5_offline\":1}' ingest5b) == 1 ]]" 10 ||
    fail "MQTT 5 session did not keep a message published while stopped"
stop_bg ingest5b TERM 10
echo "PASS"
