#!/usr/bin/env bash
# The Debian package: it builds (`cpack -G DEB` from a /usr-prefixed RelWithDebInfo build);
# lintian reports no errors; its contents are the expected files with the expected modes;
# the systemd unit passes `systemd-analyze verify` (ExecStart pointed at the unpacked
# binary) and keeps its hardening (exposure <= 2.0); the packaged binary, unpacked with
# `dpkg -x` into a temp root, runs `citygate check` on the packaged config, which finds
# its profiles and rules inside that root.
#
# The package build dir is $CITYGATE_BUILD itself when it was configured for /usr, else
# $CITYGATE_BUILD/package-build (configured on first use, incremental afterwards).
HARNESS_TIMEOUT=${HARNESS_TIMEOUT:-170}
. "$(dirname "$0")/../harness/lib.sh"

for tool in cmake cpack dpkg-deb dpkg lintian systemd-analyze; do
    command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps.sh installs it)"
done
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
[[ -n $MULTIARCH ]] || fail "cannot tell the multiarch triplet"

# ---- build the package ----------------------------------------------------------------
cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$2/CMakeCache.txt" 2>/dev/null; }
if [[ $(cache_value CMAKE_INSTALL_PREFIX "$CITYGATE_BUILD") == /usr &&
      $(cache_value CMAKE_BUILD_TYPE "$CITYGATE_BUILD") == RelWithDebInfo ]]; then
    PKG_BUILD=$CITYGATE_BUILD
else
    PKG_BUILD=$CITYGATE_BUILD/package-build
fi
info "package build dir: $PKG_BUILD"
if [[ $PKG_BUILD != "$CITYGATE_BUILD" ]]; then
    cmake -S "$CITYGATE_SRC" -B "$PKG_BUILD" -DCMAKE_INSTALL_PREFIX=/usr \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCITYGATE_TESTS=OFF -DBUILD_TESTING=OFF \
        -DCITYGATE_BENCH=OFF >"$T/configure.log" 2>&1 || fail "cmake configure failed"
fi
t0=$(now_ms)
cmake --build "$PKG_BUILD" -j2 >"$T/build.log" 2>&1 || fail "package build failed"
info "build: $(($(now_ms) - t0)) ms"
mkdir -p "$T/out"
(cd "$PKG_BUILD" && cpack -G DEB -B "$T/out") >"$T/cpack.log" 2>&1 || fail "cpack -G DEB failed"
shopt -s nullglob
debs=("$T"/out/citygate_*.deb)
shopt -u nullglob
[[ ${#debs[@]} == 1 ]] || fail "expected one citygate_*.deb in $T/out, found ${#debs[@]}"
DEB=${debs[0]}
info "built ${DEB##*/} ($(stat -c %s "$DEB") bytes)"

# ---- control data -----------------------------------------------------------------------
dpkg-deb -f "$DEB" Package | grep -qx citygate || fail "Package is not citygate"
deps=$(dpkg-deb -f "$DEB" Depends)
for d in adduser libjs-dygraphs libcjson1 libmodbus5 libpaho-mqtt1.3 libmicrohttpd12 libcurl4; do
    [[ $deps == *"$d"* ]] || fail "Depends lacks $d: $deps"
done
mkdir -p "$T/control"
dpkg-deb -e "$DEB" "$T/control"
for s in postinst prerm postrm; do
    [[ -x $T/control/$s ]] || fail "maintainer script $s missing or not executable"
    sh -n "$T/control/$s" || fail "maintainer script $s: syntax error"
done
grep -qx /etc/citygate/citygate.json "$T/control/conffiles" ||
    fail "/etc/citygate/citygate.json is not a conffile: $(cat "$T/control/conffiles" 2>&1)"

# ---- lintian ------------------------------------------------------------------------------
set +e
lintian --tag-display-limit 0 "$DEB" >"$T/lintian.log" 2>&1
rc=$?
set -e
grep -v '^running with root privileges' "$T/lintian.log" >&2 || true
# Exit 1 means tags at the fail-on level (errors); 2 or more, lintian itself failed.
((rc <= 1)) || fail "lintian did not run (exit $rc)"
if grep -q '^E: ' "$T/lintian.log"; then
    fail "lintian reports $(grep -c '^E: ' "$T/lintian.log") error(s)"
fi
((rc == 0)) || fail "lintian exited $rc without an E: line"
info "lintian: no errors ($(grep -c '^W: ' "$T/lintian.log" || true) warnings)"

# ---- contents -----------------------------------------------------------------------------
dpkg-deb -c "$DEB" >"$T/contents.txt"
# "MODE PATH" for each entry, path without the leading "."
awk '{ p = $6; sub(/^\./, "", p); print $1, p }' "$T/contents.txt" >"$T/entries.txt"
has() { grep -q " $1\$" "$T/entries.txt"; }
mode_of() { awk -v p="$1" '$2 == p { print $1 }' "$T/entries.txt"; }
expect=(
    /usr/bin/citygate
    /etc/citygate/citygate.json
    /etc/citygate/credentials/
    /etc/citygate/credentials/mqtt-password
    /etc/citygate/credentials/influx-token
    /etc/citygate/credentials/http-token
    /lib/systemd/system/citygate.service
    /usr/include/citygate/plugin.h
    "/usr/lib/$MULTIARCH/pkgconfig/citygate-plugin.pc"
    "/usr/lib/$MULTIARCH/citygate/plugins/"
    /usr/share/doc/citygate/copyright
    /usr/share/doc/citygate/changelog.Debian.gz
)
[[ -f $CITYGATE_SRC/devices/sim/CMakeLists.txt ]] && expect+=(/usr/bin/citygate-sim)
for f in "$CITYGATE_SRC"/devices/*.json; do expect+=("/usr/share/citygate/devices/${f##*/}"); done
for f in "$CITYGATE_SRC"/rules/*.json; do expect+=("/usr/share/citygate/rules/${f##*/}"); done
for d in "$CITYGATE_SRC"/plugins/*/; do
    name=$(basename "$d")
    [[ -f $d/CMakeLists.txt && $name != template ]] || continue
    expect+=("/usr/lib/$MULTIARCH/citygate/plugins/$name.so")
done
missing=()
for p in "${expect[@]}"; do has "$p" || missing+=("$p"); done
((${#missing[@]} == 0)) || { cat "$T/contents.txt" >&2; fail "package lacks: ${missing[*]}"; }
info "contents: ${#expect[@]} expected entries present ($(wc -l <"$T/entries.txt") in all)"
# Nothing from the build tree, nothing outside the FHS places a package may use.
grep -E 'CMakeFiles|cmake_install|/work/|\.o$|\.a$' "$T/entries.txt" >&2 &&
    fail "build-tree files in the package"
bad=$(awk '{print $2}' "$T/entries.txt" | grep -vE '^/(usr|etc|lib)(/|$)|^/$' || true)
[[ -z $bad ]] || fail "unexpected top-level paths: $bad"
# Secrets: directory 0700, files 0600; binaries executable; the config readable.
[[ $(mode_of /etc/citygate/credentials/) == drwx------ ]] ||
    fail "credentials dir mode $(mode_of /etc/citygate/credentials/), want drwx------"
for c in mqtt-password influx-token http-token; do
    [[ $(mode_of "/etc/citygate/credentials/$c") == -rw------- ]] ||
        fail "credential $c mode $(mode_of "/etc/citygate/credentials/$c"), want -rw-------"
done
[[ $(mode_of /usr/bin/citygate) == -rwxr-xr-x ]] || fail "citygate mode $(mode_of /usr/bin/citygate)"
awk '$2 != "root/root"' "$T/contents.txt" | grep . >&2 && fail "files not owned by root/root"

# ---- unpack ---------------------------------------------------------------------------------
ROOT=$T/root
dpkg -x "$DEB" "$ROOT" || fail "dpkg -x failed"
file "$ROOT/usr/bin/citygate" | grep -q 'not stripped' && fail "/usr/bin/citygate is not stripped"
if ldd "$ROOT/usr/bin/citygate" | grep 'not found' >&2; then
    fail "packaged binary has unresolved libraries"
fi

# ---- the pkg-config file: its directories resolve inside the unpacked tree -----------------
if command -v pkg-config >/dev/null; then
    pcdir="$ROOT/usr/lib/$MULTIARCH/pkgconfig"
    for v in includedir plugindir templatedir; do
        d=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=$v citygate-plugin) ||
            fail "pkg-config --variable=$v failed"
        [[ -d $d && $(realpath "$d") == "$ROOT"/usr/* ]] ||
            fail "citygate-plugin.pc $v '$d' is not a directory of the package"
    done
    d=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=plugindir citygate-plugin)
    [[ $(realpath "$d") == "$ROOT/usr/lib/$MULTIARCH/citygate/plugins" ]] ||
        fail "citygate-plugin.pc plugindir '$d' is not the packaged plugin directory"
    d=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=templatedir citygate-plugin)
    ls "$d"/vectors/*.json >/dev/null 2>&1 || fail "the packaged plugin template has no vectors/"
fi

# ---- the unit ---------------------------------------------------------------------------------
UNIT=$ROOT/lib/systemd/system/citygate.service
for directive in 'Type=notify' 'WatchdogSec=' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
    'StateDirectory=citygate' 'RestrictAddressFamilies=' 'LimitNOFILE=1024' 'DevicePolicy=closed' \
    'DeviceAllow=' 'LoadCredential=' 'User=citygate' 'ExecStart=/usr/bin/citygate run '; do
    grep -q "^$directive" "$UNIT" || fail "unit lacks $directive"
done
grep -qx 'CapabilityBoundingSet=' "$UNIT" || fail "unit lacks an empty CapabilityBoundingSet="
# verify checks that every Exec binary exists: point them at the unpacked one.
mkdir -p "$T/unit"
sed "s|/usr/bin/citygate\\b|$ROOT/usr/bin/citygate|g" "$UNIT" >"$T/unit/citygate.service"
grep -q "$ROOT/usr/bin/citygate run" "$T/unit/citygate.service" || fail "ExecStart not rewritten"
if ! systemd-analyze verify "$T/unit/citygate.service" >"$T/verify.log" 2>&1; then
    fail "systemd-analyze verify failed: $(cat "$T/verify.log")"
fi
# verify only warns about unknown or misspelt keys: any message is a failure here.
[[ ! -s $T/verify.log ]] || fail "systemd-analyze verify complained: $(cat "$T/verify.log")"
info "systemd-analyze verify: clean"
if systemd-analyze security --offline=true "$T/unit/citygate.service" >"$T/security.log" 2>&1; then
    exposure=$(sed -n 's/.*Overall exposure level for citygate.service: \([0-9.]*\).*/\1/p' "$T/security.log")
    [[ -n $exposure ]] || fail "no exposure level in: $(tail -n 3 "$T/security.log")"
    awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' ||
        fail "unit exposure $exposure > 2.0: $(grep '✗' "$T/security.log" | head -20)"
    info "systemd-analyze security: exposure $exposure"
else
    fail "systemd-analyze security --offline failed: $(tail -n 5 "$T/security.log")"
fi

# ---- the packaged binary on the packaged config ----------------------------------------------
"$ROOT/usr/bin/citygate" --version >"$T/version.txt" 2>&1 || fail "packaged citygate --version failed"
set +e
"$ROOT/usr/bin/citygate" check -c "$ROOT/etc/citygate/citygate.json" >"$T/check.out" 2>"$T/check.err"
rc=$?
set -e
[[ $rc == 0 ]] || fail "citygate check on the packaged config exited $rc: $(cat "$T/check.out" "$T/check.err")"
grep -q ': ok$' "$T/check.out" || fail "check did not say ok: $(cat "$T/check.out")"
# The config found its files inside the unpacked root: without them it must fail (unless
# this host has citygate installed, whose files the absolute fallbacks would find).
if [[ ! -e /usr/share/citygate/devices ]]; then
    mv "$ROOT/usr/share/citygate/devices" "$ROOT/usr/share/citygate/devices.away"
    set +e
    "$ROOT/usr/bin/citygate" check -c "$ROOT/etc/citygate/citygate.json" >"$T/check2.out" 2>&1
    rc=$?
    set -e
    mv "$ROOT/usr/share/citygate/devices.away" "$ROOT/usr/share/citygate/devices"
    [[ $rc == 2 ]] || fail "check without the unpacked profiles exited $rc, want 2"
fi
# The repo's own copy still checks from the source tree.
"$ROOT/usr/bin/citygate" check -c "$CITYGATE_SRC/packaging/citygate.json" >"$T/check3.out" 2>&1 ||
    fail "packaging/citygate.json does not check from the source tree: $(cat "$T/check3.out")"
info "packaged citygate check: ok ($(head -c 60 "$T/version.txt"))"
echo "PASS: package ${DEB##*/}"
