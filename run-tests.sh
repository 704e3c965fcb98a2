#!/usr/bin/env bash
# Build citygate and run its whole test suite (unit, integration, fuzz).
#
#   ./run-tests.sh                 install missing packages, build build/ with -Werror,
#                                  run every test
#   ./run-tests.sh --sanitize      the same in build-asan/ with AddressSanitizer + UBSan
#   ./run-tests.sh --libfuzzer     build-fuzz/ with clang + libFuzzer (ASan, UBSan), fuzz
#                                  targets only
#   ./run-tests.sh --no-install    skip the package check
#   ./run-tests.sh -R REGEX        only tests whose name matches (ctest -R)
#   ./run-tests.sh -L LABEL        only tests with a label: unit, integration, fuzz
#
# Environment: CITYGATE_FUZZ_SECONDS (default 20) seconds of mutation per fuzz target;
# CITYGATE_TEST_TIMEOUT (default 300) per-test timeout for tests that set none;
# CITYGATE_JOBS (default nproc) build jobs. Exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

sanitize=0 install=1 libfuzzer=0
ctest_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --sanitize) sanitize=1 ;;
    --libfuzzer) libfuzzer=1 ;;
    --no-install) install=0 ;;
    -R | -L | -E | -LE)
        [[ $# -ge 2 ]] || { echo "run-tests.sh: $1 needs an argument" >&2; exit 2; }
        ctest_args+=("$1" "$2")
        shift
        ;;
    -h | --help)
        sed -n '2,15s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *)
        echo "run-tests.sh: unknown option $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

if [[ $install == 1 ]]; then
    scripts/install-deps.sh
fi

if [[ $libfuzzer == 1 ]]; then
    # Coverage-guided fuzzing needs clang's libFuzzer; warnings are gcc's job (-Werror
    # in the main build), so this build does not add clang's own on top.
    build=build-fuzz
    export CC=clang
    cmake_args=(-DCITYGATE_LIBFUZZER=ON -DCITYGATE_WERROR=OFF -DCITYGATE_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo)
    ctest_args+=(-L fuzz)
elif [[ $sanitize == 1 ]]; then
    build=build-asan
    cmake_args=(-DCITYGATE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
else
    build=build
    cmake_args=()
fi
jobs=${CITYGATE_JOBS:-$(nproc)}

t0=$(date +%s)
mkdir -p "$build"
cmake -S . -B "$build" -DCITYGATE_WERROR=ON \
    -DCITYGATE_FUZZ_SECONDS="${CITYGATE_FUZZ_SECONDS:-20}" "${cmake_args[@]}" >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log" >&2; echo "run-tests.sh: cmake configure failed" >&2; exit 1; }
if [[ $libfuzzer == 1 ]]; then
    # Only the fuzz targets: plugin modules do not link against clang's static ASan runtime.
    mapfile -t targets < <(cmake --build "$build" --target help | sed -n 's/^\.\.\. \(fuzz_[a-z_0-9]*\).*/\1/p')
    cmake --build "$build" -j"$jobs" --target "${targets[@]}"
else
    cmake --build "$build" -j"$jobs"
fi
t1=$(date +%s)

rc=0
ctest --test-dir "$build" --output-on-failure -j2 \
    --timeout "${CITYGATE_TEST_TIMEOUT:-300}" "${ctest_args[@]}" || rc=$?
t2=$(date +%s)
echo "run-tests.sh: $build: build $((t1 - t0)) s, tests $((t2 - t1)) s, $([[ $rc == 0 ]] && echo PASSED || echo FAILED)"
exit $rc
