#!/usr/bin/env bash
# InfluxDB stopped in the middle of a feed and started again: the writer spools while
# the server is away, replays in order when it is back, and every generated point is
# in the database exactly once (explicit timestamps make retries idempotent).
. "$(dirname "$0")/../harness/lib.sh"

TOOLS=${DELIVERY_TOOLS:-$CITYGATE_BUILD/tests/integration/tools}
FEED=$TOOLS/influx_feed
[[ -x $FEED ]] || fail "driver not built: $FEED"
N=12000
start_influxd
mkdir -p "$T/data"
# 12000 points at 2000/s: 6 s of feed; the server is down from ~1.5 s to ~4.5 s.
start_bg feed "$FEED" feed --url "$INFLUX_URL" --dir "$T/data" --points $N --rate 2000 \
    --devices 25 --batch-lines 500 --flush-ms 200 --timeout-ms 1000 --wait-s 90
FEED_PID=$BG_PID
sleep 1.5
stop_influxd KILL
info "influxd killed"
sleep 3
start_influxd "$INFLUX_PORT"
wait_for "! pid_alive $FEED_PID" 120 || fail "feed did not finish"
stop_pid "$FEED_PID"
[[ $STOP_RC == 0 ]] || fail "feed reported incomplete delivery: $(cat "$T/feed.log")"
grep -q '^retries=[1-9]' "$T/feed.log" || fail "no retry happened: the outage was not exercised"
grep -q '^dropped_spool=0$' "$T/feed.log" || fail "spool dropped data"
grep -q '^dropped_queue=0$' "$T/feed.log" || fail "queue dropped data"
count=$(influx_query "SELECT count(tilt_deg) FROM manhole" |
    "$PYTHON" -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print(r["series"][0]["values"][0][1] if "series" in r else 0)')
info "generated $N, counted $count"
[[ $count == "$N" ]] || fail "count $count != generated $N"
spooled=$(grep '^requests=' "$T/feed.log")
info "40-influx-outage: $N points exactly once across the outage ($spooled)"
