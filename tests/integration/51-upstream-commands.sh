#!/usr/bin/env bash
# 51: commands on <prefix>/<gw>/cmd/<verb> are answered on cmd-reply/<request_id>;
# malformed commands are counted and dropped (or answered with an error when they carry
# a usable request_id) without disturbing the publisher; after a broker restart the
# command subscription is made again.
. "$(dirname "$0")/../harness/lib.sh"

TOOLS=${MQTT_TOOLS:-$CITYGATE_BUILD/tests/integration/tools}
DRV=$TOOLS/mqtt_upstream_driver
[[ -x $DRV ]] || fail "driver not built: $DRV"
GW=GW-T51
CMD=citygate/$GW/cmd

stat_of() {
    [[ -s $1 ]] || { echo -1; return; }
    tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"
}
pub() { mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 "$@"; }
reply_for() { grep "cmd-reply/$1 " "$T/replies.log" 2>/dev/null | head -n 1; }
wait_reply() {
    wait_for "[[ -n \$(reply_for $1) ]]" 10 || fail "no reply for request $1"
    reply_for "$1"
}

start_mosquitto
start_bg replies mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "citygate/$GW/cmd-reply/#"
start_bg driver "$DRV" --url "$MQTT_URL" --gw "$GW" --events 20 --rate 1000 \
    --stats "$T/up.stats" --report 1
wait_for "grep -q 'ALL ACKED 20' '$T/driver.log'" 15 || fail "driver did not deliver its events"
sleep 0.3 # the SUBACK for cmd/+ follows the CONNACK

# A good command.
pub -t "$CMD/ack" -m '{"request_id":"r-1","alarm_id":"mh-0001/cover-tilt","user":"op1"}'
r=$(wait_reply r-1)
[[ $r == *'"ok":true'* && $r == *'"acked":"mh-0001/cover-tilt"'* ]] || fail "bad reply: $r"
info "reply: $r"

# Malformed ones: none may crash or stall the publisher.
pub -t "$CMD/ack" -m 'garbage'
pub -t "$CMD/ack" -m ''
pub -t "$CMD/ack" -m '[1,2,3]'
pub -t "$CMD/ack" -m '{}'
pub -t "$CMD/ack" -m '{"request_id":42}'
pub -t "$CMD/ack" -m '{"request_id":"has/slash"}'
pub -t "$CMD/ack" -m '{"request_id":"r-x"'
pub -t "$CMD/ack" -m '{"request_id":"r-y"} trailing'
printf '{"request_id":"r-z"}\0tail' | pub -t "$CMD/ack" -s
head -c 70000 /dev/zero | tr '\0' 'a' | pub -t "$CMD/ack" -s
head -c 3000 /dev/urandom | pub -t "$CMD/ack" -s
nested=$(printf '[%.0s' $(seq 1 3000))
pub -t "$CMD/ack" -m "{\"request_id\":\"r-n\",\"x\":$nested"
malformed_sent=12

# Errors with a usable request_id are answered.
pub -t "$CMD/fail" -m '{"request_id":"r-2"}'
r=$(wait_reply r-2)
[[ $r == *'"ok":false'* && $r == *'"error"'* ]] || fail "error reply expected: $r"
pub -t "$CMD/unknown_verb" -m '{"request_id":"r-3"}'
r=$(wait_reply r-3)
[[ $r == *'"ok":false'* ]] || fail "unknown verb must be refused: $r"

# Still alive and answering after all of it.
pub -t "$CMD/ack" -m '{"request_id":"r-4","alarm_id":"a/b"}'
wait_reply r-4 >/dev/null
pid_alive "$(bg_pid driver)" || fail "driver died"
wait_for "[[ \$(stat_of '$T/up.stats' malformed) -ge $malformed_sent ]]" 5 ||
    fail "malformed=$(stat_of "$T/up.stats" malformed), expected >= $malformed_sent"
for id in r-x r-y r-z r-n; do
    [[ -z $(reply_for $id) ]] || fail "malformed request $id was answered"
done
wait_for "[[ \$(stat_of '$T/up.stats' reports) -ge 1 ]]" 5 || fail "no periodic report published"

# The subscription is made again after the broker restarts.
restart_mosquitto
start_bg replies2 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "citygate/$GW/cmd-reply/#"
wait_for "[[ \$(stat_of '$T/up.stats' connects) -ge 2 && \$(stat_of '$T/up.stats' connected) == 1 ]]" 20 ||
    fail "driver did not reconnect: $(cat "$T/up.stats")"
sleep 0.5
pub -t "$CMD/ack" -m '{"request_id":"r-5","alarm_id":"x/y"}'
wait_for "grep -q 'cmd-reply/r-5 ' '$T/replies2.log'" 10 || fail "no reply after broker restart"

stop_bg driver TERM 10 || fail "driver did not stop"
[[ $STOP_RC == 0 ]] || fail "driver exited $STOP_RC"
info "$(cat "$T/up.stats")"
echo "PASS"
