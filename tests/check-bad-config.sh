#!/bin/bash
# Usage: check-bad-config.sh CITYGATE_BIN CONFIG.json
#
# Runs `citygate check -c NAME.json` from the config's own directory and requires
# exit code 2 and every line of NAME.expected to appear verbatim (whole line) in the
# output. Lines not listed are allowed: the .expected file names what must be caught.
set -u

bin=$1
cfg=$2
dir=$(cd "$(dirname "$cfg")" && pwd)
name=$(basename "$cfg")
expected="$dir/${name%.json}.expected"

if [ ! -f "$expected" ]; then
    echo "FAIL: $expected does not exist"
    exit 1
fi

out=$(cd "$dir" && timeout 20 "$bin" check -c "$name" 2>&1)
rc=$?
fail=0
if [ "$rc" -ne 2 ]; then
    echo "FAIL: exit code $rc, want 2"
    fail=1
fi
while IFS= read -r line || [ -n "$line" ]; do
    [ -z "$line" ] && continue
    if ! grep -Fxq -- "$line" <<<"$out"; then
        [ "$fail" -eq 0 ] && echo "FAIL: missing lines in the output of 'citygate check -c $name':"
        echo "- $line"
        fail=1
    fi
done <"$expected"
if [ "$fail" -ne 0 ]; then
    echo "--- output was:"
    printf '%s\n' "$out" | sed 's/^/+ /'
    exit 1
fi
echo "ok: $name ($(grep -c . "$expected") expected lines found, exit 2)"
