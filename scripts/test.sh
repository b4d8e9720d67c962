#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest:
# the C suites (cmocka), the Python suites (pytest), the examples and the
# install check. Then builds again with AddressSanitizer + UBSan
# (scripts/sanitize.sh) and runs the suites there: any report fails.
# Usage: scripts/test.sh [ctest arguments...]
#   env CONVEYOR_SKIP_SANITIZE=1 skips the sanitizer pass (quick local runs)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD" -j"$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j2 "$@"

if [ "${CONVEYOR_SKIP_SANITIZE:-0}" != 1 ]; then
  scripts/sanitize.sh "$@"
fi
