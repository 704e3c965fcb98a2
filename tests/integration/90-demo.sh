#!/usr/bin/env bash
# The demo as a user runs it (without reinstalling or rebuilding): run-demo.sh with
# DEMO_SECONDS starts its servers, the simulator and the gateway, stops by itself, the
# gateway exits 0 within 5 s, and nothing it started is left behind (processes, temp dir).
# Event assertions come with the rules engine and upstream publisher.
. "$(dirname "$0")/../harness/lib.sh"
need_citygate

seconds=${DEMO_TEST_SECONDS:-20}
t0=$(now_ms)
set +e
DEMO_SECONDS=$seconds DEMO_VERBOSE=0 timeout -s TERM 180 \
    "$CITYGATE_SRC/run-demo.sh" --no-install --no-build >"$T/demo.log" 2>&1
rc=$?
set -e
took=$(($(now_ms) - t0))
cat "$T/demo.log" >&2
[[ $rc == 0 ]] || fail "run-demo.sh exited $rc"
((took >= seconds * 1000)) || fail "run-demo.sh returned after $took ms, before its ${seconds} s"
grep -q '^demo: citygate started' "$T/demo.log" || fail "no 'citygate started' line"
grep -Eq '^demo: dashboard: http://127\.0\.0\.1:[0-9]+/$' "$T/demo.log" || fail "no dashboard URL"
grep -Eq '^demo: citygate stopped: exit 0 after [0-9]+ ms$' "$T/demo.log" ||
    fail "the gateway did not stop cleanly"

# Everything the demo started is gone, and so is its temp dir.
pids=$(sed -n 's/^demo: processes: //p' "$T/demo.log" | grep -o '=[0-9]*' | tr -d '=')
[[ -n $pids ]] || fail "run-demo.sh did not list its processes"
for p in $pids; do
    pid_alive "$p" && fail "run-demo.sh left pid $p ($(cat "/proc/$p/comm" 2>/dev/null)) running"
done
demo_dir=$(sed -n 's/^demo: files in //p' "$T/demo.log")
[[ -n $demo_dir ]] || fail "run-demo.sh did not name its temp dir"
[[ ! -e $demo_dir ]] || fail "run-demo.sh left $demo_dir behind"
info "demo ran ${seconds} s and stopped cleanly (total $took ms)"
echo PASS
