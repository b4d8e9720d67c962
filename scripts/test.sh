#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest:
# the C suites (cmocka), the Python suites (pytest), the examples and the
# install check. Then a 30 s soak (conveyor-bench --soak: churn of 1,000
# services and 50 members, checked for protocol errors, assignment
# invariants and RSS growth), a 60 s libFuzzer run of the request path
# (scripts/fuzz.sh, clang), and a build with AddressSanitizer + UBSan
# (scripts/sanitize.sh) that runs the suites again: any report fails.
# Usage: scripts/test.sh [ctest arguments...]
#   env CONVEYOR_SKIP_SANITIZE=1 skips the sanitizer pass (quick local runs)
#   env CONVEYOR_SOAK_SECONDS / CONVEYOR_FUZZ_SECONDS: 0 skips that run
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD" -j"$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j2 "$@"

SOAK=${CONVEYOR_SOAK_SECONDS:-30}
if [ "$SOAK" != 0 ]; then
  echo "test.sh: soak for ${SOAK}s"
  "$BUILD/bin/conveyor-bench" --soak "$SOAK"
fi
FUZZ=${CONVEYOR_FUZZ_SECONDS:-60}
if [ "$FUZZ" != 0 ]; then
  scripts/fuzz.sh "$FUZZ"
fi

if [ "${CONVEYOR_SKIP_SANITIZE:-0}" != 1 ]; then
  scripts/sanitize.sh "$@"
fi
