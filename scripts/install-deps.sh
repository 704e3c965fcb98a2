#!/usr/bin/env bash
# Install the Debian 12 packages citygate needs to build, test and run its demo.
#
#   scripts/install-deps.sh          install what is missing (fast no-op when nothing is)
#   scripts/install-deps.sh --list   print the package list and exit
#
# Uses sudo when not root. The servers the tests use (mosquitto, influxd) are run by
# the tests themselves on private loopback ports, so a system service the packages
# may start on a systemd machine does not matter. On a machine without a running
# systemd (a CI container) service start-up is disabled for the duration of the
# install with a temporary policy-rc.d, removed afterwards; an existing policy-rc.d
# is left alone.
set -euo pipefail

# One list, one place: add a package here and CI gets it. "pkg:cmd" means the package,
# or any install that puts cmd on PATH (a node from NodeSource ships its own npm, and
# Debian's npm package would conflict with it).
PACKAGES=(
    # build
    build-essential cmake pkg-config zlib1g-dev dpkg-dev xxd
    # coverage-guided fuzzing (run-tests.sh --libfuzzer)
    clang libclang-rt-14-dev
    # libraries
    libpaho-mqtt-dev libmodbus-dev libcurl4-openssl-dev libcjson-dev libsqlite3-dev
    libmicrohttpd-dev libsystemd-dev libcmocka-dev libjs-dygraphs
    # servers and tools for the tests and the demo
    mosquitto mosquitto-clients influxdb socat curl ca-certificates jq iproute2
    python3 python3-pymodbus python3-serial python3-serial-asyncio python3-jsonschema
    python3-paho-mqtt collectd-core
    # the Debian package test (lintian, systemd-analyze verify of the unit, file)
    lintian systemd file
    # browser tests of the dashboard (playwright-core from npm drives Debian's chromium)
    chromium nodejs:node npm:npm
)

if [[ ${1:-} == --list ]]; then
    printf '%s\n' "${PACKAGES[@]%%:*}"
    exit 0
fi

missing() {
    # dpkg-query prints one line per known package; unknown ones are simply missing.
    local installed entry
    installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]%%:*}" 2>/dev/null |
        awk '$NF == "installed" && $(NF-1) == "ok" {print $1}') || true
    for entry in "${PACKAGES[@]}"; do
        if [[ $entry == *:* ]] && command -v "${entry#*:}" >/dev/null; then
            continue
        fi
        grep -qxF -- "${entry%%:*}" <<<"$installed" || echo "${entry%%:*}"
    done
}

mapfile -t todo < <(missing)
if [[ ${#todo[@]} -eq 0 ]]; then
    exit 0
fi
echo "install-deps: installing ${todo[*]}" >&2

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || {
        echo "install-deps: not root and no sudo; install as root: apt-get install ${todo[*]}" >&2
        exit 1
    }
    SUDO=(sudo)
fi

created_policy=0
cleanup() {
    if [[ $created_policy == 1 ]]; then
        "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
    fi
}
trap cleanup EXIT
if [[ ! -d /run/systemd/system && ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from citygate scripts/install-deps.sh\nexit 101\n' |
        "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends -o Dpkg::Use-Pty=0 "${todo[@]}" >/dev/null
still=$(missing | tr '\n' ' ')
if [[ -n $still ]]; then
    echo "install-deps: still missing after install: $still" >&2
    exit 1
fi
echo "install-deps: done" >&2
