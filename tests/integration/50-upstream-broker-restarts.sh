#!/usr/bin/env bash
# 50: the upstream publisher delivers every event at least once while the broker is
# stopped and restarted several times (SIGTERM and SIGKILL) during a burst; the status
# topic says online on connect, offline on a clean stop and (as the will) when the
# gateway is killed.
#
# The broker runs with persistence (saved every second and on SIGTERM), so the
# verifying subscriber's persistent session (mosquitto_sub -c -q 1, fixed id) survives
# its restarts. What a SIGKILLed broker had acknowledged but not saved is outside the
# gateway's guarantee (reference/delivery.md §1.6 item 4): the restarts are spaced so
# that the verifier has reconnected and drained its queue before the next kill, so the
# only messages at risk would be ones the gateway failed to publish again.
. "$(dirname "$0")/../harness/lib.sh"

TOOLS=${MQTT_TOOLS:-$CITYGATE_BUILD/tests/integration/tools}
DRV=$TOOLS/mqtt_upstream_driver
[[ -x $DRV ]] || fail "driver not built: $DRV"
GW=GW-T50
N=${T50_EVENTS:-5000}
RATE=${T50_RATE:-400}

stat_of() { # stat_of FILE KEY
    [[ -s $1 ]] || { echo -1; return; }
    tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"
}

distinct_events() {
    grep -o '"event_id":"ev-[0-9]*"' "$T/verifier.log" 2>/dev/null | sort -u | wc -l
}

MOSQUITTO_PERSISTENCE=1 start_mosquitto "$(free_port)"
start_bg verifier mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i t50-verifier -c -q 1 \
    -t "citygate/$GW/event/#"
start_bg statuswatch mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "citygate/$GW/status"
wait_for "grep -q 'as t50-verifier' '$T/mosquitto.log'" 10 || fail "verifier did not connect"
sleep 0.3

start_bg driver "$DRV" --url "tcp://127.0.0.1:$MQTT_PORT" --gw "$GW" --events "$N" \
    --rate "$RATE" --inflight 10 --stats "$T/up.stats" ${T50_DEBUG:+--debug}
wait_for "[[ \$(stat_of '$T/up.stats' connected) == 1 ]]" 15 || fail "driver did not connect"
wait_for "grep -q 'citygate/$GW/status online' '$T/statuswatch.log'" 10 ||
    fail "no retained 'online' status after connect"

# Restart the broker four times during the burst, alternating TERM and KILL.
for sig in TERM KILL TERM KILL; do
    sleep 2.5
    info "broker: $sig (acked so far: $(stat_of "$T/up.stats" acked))"
    stop_mosquitto "$sig"
    sleep 0.6
    MOSQUITTO_PERSISTENCE=1 start_mosquitto "$MQTT_PORT"
done

wait_for "grep -q 'ALL ACKED $N' '$T/driver.log'" 120 ||
    fail "not every event was acked: $(cat "$T/up.stats")"
expected=$((N - N / 25)) # every 25th message is retained alarm state, not an event
wait_for "[[ \$(distinct_events) -ge $expected ]]" 60 ||
    fail "verifier saw $(distinct_events) of $expected event ids"
got=$(distinct_events)
[[ $got -eq $expected ]] || fail "verifier saw $got distinct ids, expected $expected"
lines=$(grep -c '"event_id"' "$T/verifier.log")
losses=$(stat_of "$T/up.stats" losses)
[[ $losses -ge 4 ]] || fail "expected the driver to see >= 4 connection losses, got $losses"
[[ $(stat_of "$T/up.stats" order_error) == 0 ]] || fail "acks out of order"
info "all $expected event ids seen ($lines deliveries, $((lines - expected)) duplicates);" \
    "losses=$losses republished=$(stat_of "$T/up.stats" republished)"

# Clean stop: "offline" published by the gateway itself.
stop_bg driver TERM 10 || fail "driver did not stop on SIGTERM"
[[ $STOP_RC == 0 ]] || fail "driver exited $STOP_RC (3 = acks out of order)"
wait_for "[[ \$(tail -n 1 '$T/statuswatch.log') == 'citygate/$GW/status offline' ]]" 10 ||
    fail "no 'offline' status after a clean stop"

# Crash: the broker publishes the will.
online_before=$(grep -c 'status online' "$T/statuswatch.log")
start_bg driver2 "$DRV" --url "tcp://127.0.0.1:$MQTT_PORT" --gw "$GW" --events 1 \
    --stats "$T/up2.stats"
wait_for "[[ \$(grep -c 'status online' '$T/statuswatch.log') -gt $online_before ]]" 15 ||
    fail "second driver did not publish 'online'"
stop_bg driver2 KILL 5
wait_for "[[ \$(tail -n 1 '$T/statuswatch.log') == 'citygate/$GW/status offline' ]]" 15 ||
    fail "no 'offline' will after SIGKILL of the gateway"
info "status: online on connect, offline on clean stop and as will on SIGKILL"
echo "PASS"
