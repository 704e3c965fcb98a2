#!/usr/bin/env bash
# The writer against a scripted HTTP front (500, 429 + Retry-After, 401, 413 for large
# bodies) backed by a real influxd, which itself answers 400 partial writes for lines
# whose field type conflicts. Checks the counters, the fault callback, the Retry-After
# pause, the dead-letter file and exactly what reached the real server.
. "$(dirname "$0")/../harness/lib.sh"

TOOLS=${DELIVERY_TOOLS:-$CITYGATE_SRC/tests/integration/tools}
FEED=${DELIVERY_TOOLS:-$CITYGATE_BUILD/tests/integration/tools}/influx_feed
[[ -x $FEED ]] || fail "driver not built: $FEED"
N=3000
P=7
start_influxd
# Field tilt_deg is an integer on measurement "poison": the feed's float lines for it
# are refused by the real server (400 partial write, field type conflict; field types
# are per shard, so the seed point lies in the shard of the feed's timestamps).
influx_write "poison,device=seed tilt_deg=1i 1700000000000000000"
PORT=$(free_port)
start_bg fault-server "$PYTHON" "$CITYGATE_SRC/tests/integration/tools/influx_fault_server.py" \
    --port "$PORT" --upstream "$INFLUX_URL" --plan "500*2,429:2,401*3" --max-lines 250 \
    --log "$T/requests.jsonl"
wait_port "$PORT" 10 || fail "fault server did not listen"
mkdir -p "$T/data"
"$FEED" feed --url "http://127.0.0.1:$PORT" --dir "$T/data" --points $N --poison $P \
    --rate 1500 --devices 10 --batch-lines 400 --flush-ms 200 --timeout-ms 2000 \
    --wait-s 120 >"$T/feed.out" 2>&1 || fail "feed incomplete: $(cat "$T/feed.out")"
get() { grep "^$1=" "$T/feed.out" | head -1 | cut -d= -f2; }

[[ $(get dropped_rejected) == "$P" ]] || fail "dropped_rejected $(get dropped_rejected) != $P"
[[ $(get points_written) == "$N" ]] || fail "points_written $(get points_written) != $N"
(($(get retries) >= 6)) || fail "retries $(get retries) < 6 (2x500 + 429 + 3x401)"
(($(get splits) >= 1)) || fail "no split on 413 / 400"
[[ $(get dropped_spool) == 0 && $(get dropped_queue) == 0 ]] || fail "data dropped"
grep -q '^fault_event=1 status=401' "$T/feed.out" || fail "no config fault raised on 401"
grep -q '^fault_event=0 ' "$T/feed.out" || fail "config fault never cleared"
dl=$T/data/influx-deadletter.lp
[[ -f $dl ]] || fail "no dead-letter file"
[[ $(wc -l <"$dl") == "$P" ]] || fail "dead-letter holds $(wc -l <"$dl") lines, want $P"
[[ $(grep -c '^poison,' "$dl") == "$P" ]] || fail "dead-letter holds other lines: $(head -3 "$dl")"

"$PYTHON" - "$T/requests.jsonl" <<'PY' || fail "request log check failed"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
s413 = [r for r in reqs if r["status"] == 413]
if not s413: sys.exit("no 413 answered")
big = [r for r in reqs if r["forwarded"] and r["lines"] > 250]
if big: sys.exit(f"{len(big)} bodies over 250 lines reached the server")
i429 = next(i for i, r in enumerate(reqs) if r["status"] == 429)
gap = reqs[i429 + 1]["t"] - reqs[i429]["t"]
if gap < 1.9: sys.exit(f"Retry-After: 2 not honoured: next request after {gap:.2f} s")
codes = [r["status"] for r in reqs]
print(f"{len(reqs)} requests; 413: {len(s413)}; after 429 waited {gap:.2f} s; "
      f"statuses seen {sorted(set(codes))}")
for c in (500, 429, 401, 400, 204):
    if c not in codes: sys.exit(f"status {c} never seen")
PY
q() { influx_query "$1" | "$PYTHON" -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print(r["series"][0]["values"][0][1] if "series" in r else 0)'; }
[[ $(q "SELECT count(tilt_deg) FROM manhole") == "$N" ]] || fail "server holds $(q "SELECT count(tilt_deg) FROM manhole") manhole points, want $N"
[[ $(q "SELECT count(tilt_deg) FROM poison") == 1 ]] || fail "poison lines reached the server"
info "41-influx-http-faults: 500/429/401/413/400 handled; $N points once, $P dead-lettered"
