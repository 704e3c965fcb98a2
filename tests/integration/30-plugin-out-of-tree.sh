#!/usr/bin/env bash
# The field engineer's path for a new decoder, exactly as docs/plugins.md tells it:
# install citygate into a private prefix (header + pkg-config file), copy the plugin
# template out of the tree, build it against the installed header only, drop the .so in
# a plugins directory and try it with `citygate decode`. Then the ABI rules at
# `citygate check` time: a plugin built with the wrong ABI major, a .so without the
# entry symbol and a bad option are refused with clear messages naming the place, while
# a plugin built against an older minor (1.0: no derive member) still loads and decodes.
. "$(dirname "$0")/../harness/lib.sh"
need_citygate

[[ -d $CITYGATE_BUILD ]] || fail "CITYGATE_BUILD not set"
command -v pkg-config >/dev/null || fail "pkg-config missing"
CC=${CC:-cc}

# --- install into a private prefix --------------------------------------------------------
cmake --install "$CITYGATE_BUILD" --prefix "$T/prefix" >"$T/install.log" 2>&1 ||
    fail "cmake --install failed: $(tail -5 "$T/install.log")"
pc=$(find "$T/prefix" -name citygate-plugin.pc | head -1)
[[ -n $pc ]] || fail "citygate-plugin.pc not installed"
[[ -f $T/prefix/include/citygate/plugin.h ]] || fail "plugin.h not installed"
BIN="$T/prefix/bin/citygate"
[[ -x $BIN ]] || fail "citygate not installed"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
cflags=$(pkg-config --cflags citygate-plugin) || fail "pkg-config --cflags failed"
incdir=$(pkg-config --variable=includedir citygate-plugin)
[[ $(realpath "$incdir") == $(realpath "$T/prefix/include") ]] ||
    fail "pkg-config includedir '$incdir' is not the install prefix's"

# --- the template, copied and renamed, built out of tree --------------------------------
mkdir -p "$T/work" "$T/plugins"
# The installed template, where the pkg-config file says it is, with its test vectors;
# plugindir follows the install prefix too.
tdir=$(pkg-config --variable=templatedir citygate-plugin)
[[ $(realpath "$tdir") == $(realpath "$T/prefix/share/citygate/plugin-template") ]] ||
    fail "pkg-config templatedir '$tdir' is not the install prefix's"
[[ -f $tdir/template.c && -f $tdir/README.md ]] || fail "template not installed in $tdir"
ls "$tdir"/vectors/*.json >/dev/null 2>&1 || fail "template vectors/ not installed in $tdir"
pdir=$(pkg-config --variable=plugindir citygate-plugin)
[[ $(realpath "$pdir") == $(realpath "$(dirname "$pc")/../citygate/plugins") ]] ||
    fail "pkg-config plugindir '$pdir' is not the install prefix's"
[[ -f $pdir/manhole.so ]] || fail "plugindir '$pdir' holds no installed plugin"
cp -r "$tdir" "$T/work/myplug"
cd "$T/work/myplug"
sed -i 's/template/myplug/g' template.c
mv template.c myplug.c
build() { # build OUT.so SRC: -Werror, the installed header only, no citygate library
    "$CC" -std=c11 -Wall -Wextra -Werror -O2 -shared -fPIC $cflags -o "$1" "$2" -lm \
        >"$T/cc-$(basename "$1").log" 2>&1 || fail "building $2 failed: $(cat "$T/cc-$(basename "$1").log")"
}
build "$T/plugins/myplug.so" myplug.c

out=$("$BIN" decode --plugin-dir "$T/plugins" --plugin myplug --hex 01F4) ||
    fail "decode --hex exited $?: $out"
[[ $out =~ ^value\ +50\ +-\ +good ]] || fail "decode printed: $out"
out=$("$BIN" decode --plugin-dir "$T/plugins" --plugin myplug --json '{"reading": 1.5}' \
      --options '{"scale": 2, "field": "level_m", "unit": "m"}') || fail "decode --json exited $?"
[[ $out =~ ^level_m\ +3\ +m\ +good ]] || fail "decode --json printed: $out"
set +e
out=$("$BIN" decode --plugin-dir "$T/plugins" --plugin myplug --hex 010203 2>&1); rc=$?
set -e
[[ $rc == 1 ]] || fail "a 3-byte payload exited $rc, want 1: $out"
[[ $out == *"bad payload (size, decoder myplug): expected 2 bytes, got 3"* ]] || fail "rejection printed: $out"
set +e
out=$("$BIN" decode --plugin-dir "$T/plugins" --plugin myplug --hex 01F4 --options '{"scal": 2}' 2>&1); rc=$?
set -e
[[ $rc == 2 ]] || fail "an unknown option exited $rc, want 2"
[[ $out == *"devices[0].mqtt.options.scal: unknown option for plugin 'myplug' (did you mean 'scale'?)"* ]] ||
    fail "unknown option printed: $out"
out=$("$BIN" decode --plugin-dir "$T/plugins" --plugin myplug --help) || fail "--plugin --help exited $?"
[[ $out == *"scale"*"multiply the reading by this"* ]] || fail "--plugin --help printed: $out"

# --- plugins that must be refused, and one of an older minor that must load --------------
cat >"$T/work/badabi.c" <<'C'
#include <citygate/plugin.h>
static int dec(cg_ctx *c, const uint8_t *p, size_t n, cg_emit_fn e) { (void)c; (void)p; (void)n; (void)e; return 0; }
/* What a plugin built against a future major 2 would hand over. */
static const cg_plugin_desc d = {.abi = CG_ABI_VERSION(2, 0), .size = sizeof d, .name = "badabi", .decode = dec};
CG_PLUGIN_ENTRY(badabi) { (void)host_table; (void)host_abi; return &d; }
C
cat >"$T/work/nosym.c" <<'C'
/* A shared object that is not a citygate plugin. */
int nosym_answer(void);
int nosym_answer(void) { return 42; }
C
cat >"$T/work/oldminor.c" <<'C'
#include <citygate/plugin.h>
/* Built as ABI 1.0 would have been: the descriptor ends after decode (no derive) and
 * only minor-0 host functions are used. */
static const cg_host *host;
static int dec(cg_ctx *c, const uint8_t *p, size_t n, cg_emit_fn emit)
{
    if (n != 1) return host->reject(c, CG_BAD_SIZE, "one byte");
    cg_sample s = {.field = "old_value", .unit = "x", .value = p[0]};
    return emit(c, &s);
}
static const cg_plugin_desc d = {.abi = CG_ABI_VERSION(1, 0),
    .size = offsetof(cg_plugin_desc, decode) + sizeof(void (*)(void)),
    .name = "oldminor", .version = "1.0-era", .decode = dec};
CG_PLUGIN_ENTRY(oldminor) { (void)host_abi; host = host_table; return &d; }
C
build "$T/plugins/badabi.so" "$T/work/badabi.c"
build "$T/plugins/nosym.so" "$T/work/nosym.c"
build "$T/plugins/oldminor.so" "$T/work/oldminor.c"

out=$("$BIN" decode --plugin-dir "$T/plugins" --plugin oldminor --hex 2A) || fail "old minor refused: $out"
[[ $out =~ ^old_value\ +42\ +x ]] || fail "old minor decoded: $out"

device() { # device ID DECODER OPTIONS_JSON
    printf '{"id": "%s", "kind": "sensor", "interval_ms": 60000,
      "mqtt": {"source": "lora", "key": "%s", "decoder": "%s", "options": %s},
      "component": {"code": "50010301020000%02d", "grid": "500103001002003"}}' "$1" "$1" "$2" "$3" "$4"
}
write_config() { # FILE DEVICES...
    local file=$1; shift
    local devs
    devs=$(IFS=,; echo "$*")
    cat >"$file" <<J
{
  "gateway": {"id": "GW-500103-0030", "name": "plugin test", "admin_code": "500103",
              "data_dir": "$T/data", "timezone": "+08:00"},
  "paths": {"profiles": "$CITYGATE_SRC/devices", "rules": "$CITYGATE_SRC/rules",
            "plugins": "$T/plugins"},
  "mqtt_sources": [{"id": "lora", "url": "tcp://127.0.0.1:1", "client_id": "t30",
     "subscriptions": [{"topic": "city/+/{key}", "decoder": "json"}]}],
  "devices": [$devs],
  "http": {"enabled": false}
}
J
}
write_config "$T/bad.json" \
    "$(device dev-a badabi '{}' 1)" "$(device dev-b nosym '{}' 2)" \
    "$(device dev-c myplug '{"scale": "x"}' 3)" "$(device dev-d oldminor '{}' 4)" \
    "$(device dev-e nosuch '{}' 5)"
set +e
out=$("$BIN" check -c "$T/bad.json" 2>&1); rc=$?
set -e
[[ $rc == 2 ]] || fail "check of bad plugins exited $rc, want 2: $out"
expect() { [[ $out == *"$1"* ]] || fail "check did not say: $1
--- it printed:
$out"; }
expect "$T/bad.json: devices[0].mqtt.decoder: plugin 'badabi' ($T/plugins/badabi.so): ABI major 2, this citygate speaks 1"
expect "$T/bad.json: devices[1].mqtt.decoder: plugin 'nosym' ($T/plugins/nosym.so): no symbol citygate_plugin_entry"
expect "$T/bad.json: devices[2].mqtt.options.scale: must be a number"
expect "$T/bad.json: devices[4].mqtt.decoder: plugin 'nosuch': not built in and no $T/plugins/nosuch.so"
[[ $out != *"dev-d"* && $out != *"devices[3]"* ]] || fail "the old-minor plugin was refused: $out"

write_config "$T/good.json" "$(device dev-c myplug '{"scale": 0.5}' 3)" "$(device dev-d oldminor '{}' 4)" \
    "$(device dev-m manhole '{"reference_tilt_deg": 2}' 6)"
out=$("$BIN" check -c "$T/good.json" 2>&1) || fail "check of good plugins failed: $out"
info "ok: template built out of tree, decoded; wrong major, missing symbol and bad options refused"
