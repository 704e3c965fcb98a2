#!/usr/bin/env bash
# The shipped device profiles against their two validators, which must agree: the JSON
# Schema (devices/profile.schema.json, via python3-jsonschema) and citygate's own parser
# (through `citygate check` on a config that references every profile). Broken profiles
# are rejected by both, with citygate naming FILE: json.path.
. "$(dirname "$0")/../harness/lib.sh"
need_citygate
"$PYTHON" -c 'import jsonschema' 2>/dev/null || fail "python3-jsonschema is required"

mkdir -p "$T/devices" "$T/etc"
cp "$CITYGATE_SRC"/devices/*.json "$T/devices/"
rm -f "$T/devices/profile.schema.json"
profiles=$(cd "$T/devices" && ls *.json | sed 's/\.json$//')

# A broken profile: both validators must reject it.
cat >"$T/devices/broken.json" <<'EOF'
{"name": "broken", "points": [
  {"field": "Volts", "table": "coil", "address": 0, "type": "u16"},
  {"field": "x", "table": "holding", "address": 70000, "type": "float"}]}
EOF

"$PYTHON" - "$CITYGATE_SRC/devices/profile.schema.json" "$T/devices" <<'EOF' || fail "schema validation"
import glob, json, os, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
bad = []
for f in sorted(glob.glob(os.path.join(sys.argv[2], "*.json"))):
    errs = list(v.iter_errors(json.load(open(f))))
    if f.endswith("broken.json"):
        if not errs: bad.append("schema accepted broken.json")
    elif errs:
        bad.append(f"{f}: {errs[0].message}")
if bad: print("\n".join(bad), file=sys.stderr); sys.exit(1)
EOF

config() { # $1: file, $2..: profile names
    local out=$1 i=0 sep=""
    shift
    {
        printf '{"gateway": {"id": "GW-500103-0022", "admin_code": "500103", "data_dir": "%s"},\n' "$T/data"
        printf ' "paths": {"profiles": "%s", "rules": "%s"},\n' "$T/devices" "$CITYGATE_SRC/rules"
        printf ' "buses": [{"id": "b", "type": "tcp", "host": "127.0.0.1", "port": 1502}],\n "devices": ['
        for p in "$@"; do
            i=$((i + 1))
            printf '%s\n  {"id": "d%d", "kind": "test", "rule_sets": [], "modbus": {"bus": "b", "unit_id": %d, "profile": "%s"},' "$sep" "$i" "$i" "$p"
            printf ' "component": {"code": "500103010200%04d", "grid": "500103001002003"}}' "$i"
            sep=","
        done
        printf ']}\n'
    } >"$out"
}
# shellcheck disable=SC2086
config "$T/etc/good.json" $profiles
"$CITYGATE_BIN" check -c "$T/etc/good.json" >"$T/check-good.log" 2>&1 ||
    fail "check rejected the shipped profiles: $(cat "$T/check-good.log")"
config "$T/etc/bad.json" broken
set +e
"$CITYGATE_BIN" check -c "$T/etc/bad.json" >"$T/check-bad.log" 2>&1
rc=$?
set -e
[[ $rc == 2 ]] || fail "check of a broken profile exited $rc, want 2: $(cat "$T/check-bad.log")"
for want in "broken.json: points\[0\].field: must match" "broken.json: points\[0\].type: a coil holds single bits" \
    "broken.json: points\[1\].address: must be 0..65535" "broken.json: points\[1\].type: unknown type \"float\" (did you mean \"f32\"?)"; do
    grep -q "$want" "$T/check-bad.log" || fail "check output lacks '$want': $(cat "$T/check-bad.log")"
done
info "$(echo $profiles | wc -w) shipped profiles valid under both; broken.json rejected by both"
echo "PASS"
