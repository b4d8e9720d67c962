#!/usr/bin/env bash
# Builds with AddressSanitizer + UBSan (CONVEYOR_SANITIZE=ON) in build-asan/
# and runs the C test suites and the Python suites against the sanitized
# daemon there. Any sanitizer report fails the run.
# Usage: scripts/sanitize.sh [ctest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build-asan -DCONVEYOR_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
cmake --build build-asan -j"$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j2 "$@"
