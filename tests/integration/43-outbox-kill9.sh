#!/usr/bin/env bash
# The outbox under SIGKILL: a driver commits events in a loop (acking every third) and
# is killed at random moments, 12 times. After every kill the store must open without
# repair (no quarantine), hold every committed and un-acked event with its exact
# payload, and continue the seq where it stopped.
. "$(dirname "$0")/../harness/lib.sh"

TOOLS=${DELIVERY_TOOLS:-$CITYGATE_BUILD/tests/integration/tools}
CRASH=$TOOLS/outbox_crash
[[ -x $CRASH ]] || fail "driver not built: $CRASH"
DATA=$T/data
mkdir -p "$DATA"
ROUNDS=12

for ((i = 1; i <= ROUNDS; i++)); do
    start_bg "crash$i" "$CRASH" run "$DATA"
    pid=$BG_PID
    # Random moment 150..1150 ms after start (the driver commits continuously).
    sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"
    sleep "0.$((RANDOM % 5))"
    pid_alive "$pid" || fail "round $i: driver exited on its own: $(tail -3 "$T/crash$i.log")"
    stop_pid "$pid" KILL 5
    "$CRASH" dump "$DATA" >"$T/dump$i.txt" 2>>"$T/dump$i.err" || fail "round $i: dump failed"
    "$PYTHON" - "$T" "$i" <<'PY' || fail "round $i: verification failed"
import sys, re
t, rounds = sys.argv[1], int(sys.argv[2])
committed, ack_started, prev_max = set(), set(), 0
for r in range(1, rounds + 1):
    log = open(f"{t}/crash{r}.log").read().split("\n")
    opened = {m.group(1): int(m.group(2)) for m in (re.match(r"open (\w+)=(\d+)", l) for l in log) if m}
    if opened.get("quarantined", -1) != 0:
        sys.exit(f"run {r}: store needed repair: {opened}")
    if opened["last_seq"] < prev_max:
        sys.exit(f"run {r}: last_seq {opened['last_seq']} went back below {prev_max}")
    cs = [int(l[2:]) for l in log if l.startswith("C ")]
    if cs and cs[0] != opened["last_seq"] + 1:
        sys.exit(f"run {r}: seq did not continue: first {cs[0]} after last_seq {opened['last_seq']}")
    if cs:
        prev_max = max(prev_max, cs[-1])
    committed.update(cs)
    ack_started.update(int(l[2:]) for l in log if l.startswith("a "))
dump = open(f"{t}/dump{rounds}.txt").read().split("\n")
pending = {int(l[2:]) for l in dump if l.startswith("P ")}
kv = dict(l.split("=") for l in dump if "=" in l)
if int(kv["quarantined"]) != 0:
    sys.exit("dump: store quarantined")
if int(kv["last_seq"]) < prev_max:
    sys.exit(f"dump: last_seq {kv['last_seq']} < committed {prev_max}")
lost = sorted(committed - ack_started - pending)
if lost:
    sys.exit(f"{len(lost)} committed events lost, e.g. {lost[:5]}")
ghost = sorted(s for s in pending if s not in committed and s > int(kv["last_seq"]))
if ghost:
    sys.exit(f"events beyond last_seq: {ghost[:5]}")
print(f"round {rounds}: {len(committed)} committed, {len(pending)} pending, last_seq {kv['last_seq']}")
PY
done
total=$(cat "$T"/crash*.log | grep -c '^C ' || true)
((total > 100)) || fail "only $total events committed over $ROUNDS rounds: the kill test proved little"
info "43-outbox-kill9: $ROUNDS kills, $total commits, no loss, no repair"
