#!/usr/bin/env bash
# docs/add-a-sensor.md, executed: the field engineer's two paths for a new sensor, with
# the files of docs/examples/.
#   (a) a Modbus profile: check, poll against citygate-sim, a rule override that check
#       validates and that raises and clears an alarm in `citygate run`;
#   (b) a decoder plugin from the template, built out of tree against the installed
#       header with pkg-config, tried with `citygate decode`, configured on an MQTT
#       source, and fed one uplink through a real broker into `citygate run`.
# Every command goes through step(), which first checks that the command is written,
# character for character, on a line of a ```sh block of the page: edit one without the
# other and this test fails. The only differences from the page: HOME is a private
# directory, the install reads $CITYGATE_BUILD instead of build/, background processes
# run under the harness (so they are stopped by PID), and the example ports 15020 /
# 18830 / 18080 are replaced by free ones.
HARNESS_TIMEOUT=${HARNESS_TIMEOUT:-200}
. "$(dirname "$0")/../harness/lib.sh"
need_citygate

DOC=$CITYGATE_SRC/docs/add-a-sensor.md
[[ -f $DOC ]] || fail "$DOC missing"
command -v pkg-config >/dev/null || fail "pkg-config missing"
command -v xxd >/dev/null || fail "xxd missing"

# The command lines of the page: every line inside a ```sh block.
awk '/^```sh$/ {on = 1; next} /^```/ {on = 0} on' "$DOC" >"$T/doc-commands.txt"
[[ -s $T/doc-commands.txt ]] || fail "no \`\`\`sh blocks in $DOC"

MB_PORT=$(free_port)
HTTP_PORT=$(free_port)
ports() { # the page's example ports -> this run's
    local s=$1
    s=${s//15020/$MB_PORT}
    s=${s//18830/${MQTT_PORT:-18830}}
    s=${s//18080/$HTTP_PORT}
    printf '%s' "$s"
}
documented() { grep -qxF -- "$1" "$T/doc-commands.txt" || fail "not in $DOC any more: $1"; }
# step CMD: a documented command, run in this shell; its output is in $OUT (and on
# stderr for the log). Fails unless the command exits with ${WANT_RC:-0}.
step() {
    documented "$1"
    local rc=0
    info "\$ $1"
    OUT=$(eval "$(ports "$1")" 2>&1) || rc=$?
    printf '%s\n' "$OUT" >&2
    [[ $rc == "${WANT_RC:-0}" ]] || fail "exit $rc (want ${WANT_RC:-0}): $1
$OUT"
}
# bg_step NAME CMD: a documented background command (written 'CMD &' or 'CMD'),
# started under the harness.
bg_step() {
    local name=$1 cmd=$2
    grep -qxF -- "$cmd &" "$T/doc-commands.txt" || documented "$cmd"
    info "\$ $cmd &"
    start_bg "$name" bash -c "exec $(ports "$cmd")"
}
shows() { [[ $OUT == *"$1"* ]] || fail "output lacks '$1':
$OUT"; }
shows_re() { [[ $OUT =~ $1 ]] || fail "output does not match /$1/:
$OUT"; }

export HOME=$T/home
mkdir -p "$HOME"

# --- 0. set up ---------------------------------------------------------------------------
cd "$CITYGATE_SRC"
documented 'cmake --install build --prefix "$HOME/citygate"'
cmake --install "$CITYGATE_BUILD" --prefix "$HOME/citygate" >"$T/install.log" 2>&1 ||
    fail "cmake --install failed: $(tail -5 "$T/install.log")"
step 'export PATH="$HOME/citygate/bin:$PATH" PKG_CONFIG_PATH="$HOME/citygate/lib/pkgconfig"'
export PATH="$HOME/citygate/bin:$PATH" PKG_CONFIG_PATH="$HOME/citygate/lib/pkgconfig"
[[ $(command -v citygate) == "$HOME/citygate/bin/citygate" ]] || fail "citygate on PATH is $(command -v citygate)"
step 'EX=$PWD/docs/examples'
EX=$PWD/docs/examples
step 'mkdir -p "$HOME/site/devices" "$HOME/site/plugins"'
# Nothing shipped is copied: the site's configuration lists the installed profile and
# rule directories after its own (first file found wins).

# --- (a) a Modbus profile ----------------------------------------------------------------
step 'cp "$EX/generic-ultrasonic-level.json" "$HOME/site/devices/"'
step 'cp "$EX/level-site.json" "$HOME/site/citygate.json"'
step 'cd "$HOME/site"'
cd "$HOME/site"
sed -i "s/15020/$MB_PORT/" citygate.json

step 'citygate check -c citygate.json'
shows "citygate.json: ok"
shows "water        1  (modbus 1, mqtt 0)"
shows "rule sets: 2 (9 rules)"

bg_step sim 'citygate-sim -c citygate.json'
wait_for "grep -q 'citygate-sim: ready' '$T/sim.log'" 10 || fail "simulator not ready"
step 'citygate poll -c citygate.json --device lvl-0001'
shows "device lvl-0001 (unit 1 on bus field-tcp): answered"
for f in distance_m temperature_c level_m; do
    shows_re "$f +[0-9.]+ (m|degC) +good"
done
shows_re "sensor_fault +false +- +good"
shows_re "holding +0\.\.3 +\( +4\) ok +1 attempt"
stop_bg sim

step "sed 's/\"clear\": 1.1/\"clear\": 1.3/' citygate.json > broken.json"
WANT_RC=2 step 'citygate check -c broken.json'
shows "broken.json: devices[0].overrides.level-high: clear (1.3) must be <= raise (1.2) for op > (deadband)"
shows "1 error"

step 'cp "$EX/level-rise.json" .'
bg_step sim2 'citygate-sim -c citygate.json --scenario level-rise.json'
wait_for "grep -q 'citygate-sim: ready' '$T/sim2.log'" 10 || fail "simulator not ready"
bg_step run-a 'citygate run -c citygate.json'
# The ramp passes 1.2 m about 3.5 s after the 3rd second, plus the 3 s on-delay; it
# stops at 1.35 m, under the rule's own 1.5 m: only the override can raise.
wait_for "grep -q 'event #1 raised lvl-0001/level-high' '$T/run-a.log'" 30 ||
    fail "the override did not raise lvl-0001/level-high"
wait_for "grep -q 'event #2 cleared lvl-0001/level-high' '$T/run-a.log'" 30 ||
    fail "lvl-0001/level-high did not clear when the well drained"
stop_pid "$(bg_pid run-a)" INT 10 || fail "citygate run did not stop on SIGINT"
grep -q "gateway: stopped" "$T/run-a.log" || fail "citygate run did not log its stop"
stop_bg sim2
info "ok: (a) profile checked, polled, override raised and cleared"

# --- (b) a decoder plugin, out of tree ---------------------------------------------------
step 'cp -r "$HOME/citygate/share/citygate/plugin-template" "$HOME/nblevel" && cd "$HOME/nblevel"'
cd "$HOME/nblevel"
step "sed -i 's/template/nblevel/g' template.c && mv template.c nblevel.c"
grep -q 'CG_PLUGIN_ENTRY(nblevel)' nblevel.c || fail "the renamed template has no CG_PLUGIN_ENTRY(nblevel)"
step 'cp "$EX/nblevel.c" nblevel.c'
step 'cc -std=c11 -Wall -Wextra -O2 -shared -fPIC $(pkg-config --cflags citygate-plugin) -o nblevel.so nblevel.c -lm'
[[ -z $OUT ]] || fail "the plugin does not build warning-free: $OUT"
# Built against the installed header only, linking nothing from citygate.
[[ $(pkg-config --cflags citygate-plugin) == *"$HOME/citygate/lib/pkgconfig/../../include"* ]] ||
    fail "pkg-config does not point at the private prefix"
! nm -D --undefined-only nblevel.so | grep -q ' gw_' || fail "nblevel.so needs citygate symbols"

step "citygate decode --plugin-dir . --plugin nblevel --hex 'A5 01 04 D2 00 D7 0E 10 00 71'"
shows_re "level_m +1\.234 m +good"
shows_re "temperature_c +21\.5 degC +good"
shows_re "battery_v +3\.6 V +good"
shows_re "sensor_fault +false - +good"
shows_re "tamper +false - +good"
WANT_RC=1 step "citygate decode --plugin-dir . --plugin nblevel --hex 'A5 01 04 D2 00 D7 0E 10 00 72'"
shows "bad payload (frame, decoder nblevel): checksum 0x72, computed 0x71"
shows "citygate decode: payload rejected (frame)"
step "citygate decode --plugin-dir . --plugin nblevel --options '{\"level_offset_m\": 0.25}' --hex 'A5 01 FF FF 00 D7 0E 10 01 9A'"
shows_re "level_m +0 m +out_of_range"
shows_re "sensor_fault +true - +good"
step 'citygate decode --plugin-dir . --plugin nblevel --help'
shows "nblevel 0.1.0 (./nblevel.so, ABI 1."
shows_re "level_offset_m +number default 0 +-100\.\.100"

step 'install -m 644 nblevel.so "$HOME/site/plugins/"'
step 'cp "$EX/nblevel-site.json" "$HOME/site/nblevel.json"'
step 'cd "$HOME/site"'
cd "$HOME/site"
start_mosquitto
sed -i "s/18830/$MQTT_PORT/; s/18080/$HTTP_PORT/" nblevel.json

step 'citygate check -c nblevel.json'
shows "nblevel.json: ok"
shows "water        1  (modbus 0, mqtt 1)"
shows "http:          127.0.0.1:$HTTP_PORT"
step "sed 's/\"level_offset_m\": 0.25/\"level_offset\": 0.25/' nblevel.json > broken.json"
WANT_RC=2 step 'citygate check -c broken.json'
shows "broken.json: devices[0].mqtt.options.level_offset: unknown option for plugin 'nblevel' (did you mean 'level_offset_m'?)"
step "citygate decode -c nblevel.json --device nbl-0001 --plugin nblevel --hex 'A5 01 04 D2 00 D7 0E 10 00 71'"
shows_re "level_m +1\.484 m +good +[0-9-]+T[0-9:.]+\+08:00"   # the site's timezone, as poll shows it

documented 'mosquitto -p 18830 &' # started above by the harness, on $MQTT_PORT
bg_step run-b 'citygate run -c nblevel.json'
wait_for "grep -q 'mqtt-ingest: nbiot: connected' '$T/run-b.log'" 15 || fail "the gateway did not connect to the broker"
step "echo 'A5 01 04 D2 00 D7 0E 10 00 71' | xxd -r -p > frame.bin"
[[ $(stat -c %s frame.bin) == 10 ]] || fail "frame.bin is not 10 bytes"
step 'mosquitto_pub -p 18830 -q 1 -t city/nblevel/860000000000075 -f frame.bin'
got_level() {
    OUT=$(eval "$(ports 'curl -s http://127.0.0.1:18080/api/devices')" 2>&1) &&
        [[ $OUT == *'"level_m":{"value":1.484,"unit":"m","quality":"good"'* ]]
}
wait_for got_level 10 || fail "the uplink did not reach /api/devices: $OUT"
step 'curl -s http://127.0.0.1:18080/api/devices'
shows '"id":"nbl-0001"'
shows '"health":"online"'
shows '"battery_v":{"value":3.6,"unit":"V","quality":"good"'
# A bad frame on the topic: rejected, counted, logged; the gateway keeps going.
echo 'A5 01 04 D2 00 D7 0E 10 00 72' | xxd -r -p >bad.bin
mosquitto_pub -p "$MQTT_PORT" -q 1 -t city/nblevel/860000000000075 -f bad.bin
wait_for "grep -q 'decode: device nbl-0001: bad payload (frame, decoder nblevel): checksum 0x72, computed 0x71' '$T/run-b.log'" 10 ||
    fail "the bad frame was not logged"
OUT=$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics")
shows_re $'\ncitygate_decode_bad_payloads_total 1\n'
stop_pid "$(bg_pid run-b)" INT 10 || fail "citygate run did not stop on SIGINT"
info "ok: (b) plugin built out of tree, decoded, configured, fed through a broker"
