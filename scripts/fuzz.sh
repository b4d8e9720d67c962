#!/usr/bin/env bash
# Builds the libFuzzer target fuzz_request (tests/fuzz) with clang, ASan and
# UBSan in build-fuzz/, and fuzzes the request path for a bounded time,
# starting from a copy of the committed seed corpus (tests/fuzz/corpus is
# never written). New inputs accumulate in build-fuzz/corpus; a crash, leak,
# hang or timeout leaves its input in build-fuzz/artifacts/ and makes this
# script exit non-zero.
# Usage: scripts/fuzz.sh [seconds (default 60)] [more libFuzzer arguments...]
#   e.g. scripts/fuzz.sh 600 -jobs=2 -workers=2
#   env FUZZ_CMAKE_ARGS: extra arguments for the cmake configure step
#   Reproduce one input: build-fuzz/tests/fuzz/fuzz_request FILE
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_RUN=${1:-60}
shift || true
BUILD=build-fuzz
CLANG=${CC:-clang}
case "$("$CLANG" --version 2>/dev/null | head -1)" in
  *clang*) ;;
  *) echo "fuzz.sh: needs clang (CC=$CLANG is not clang)" >&2; exit 2 ;;
esac

# shellcheck disable=SC2086
CC="$CLANG" cmake -S . -B "$BUILD" -DCONVEYOR_FUZZ=ON -DCONVEYOR_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo ${FUZZ_CMAKE_ARGS:-}
FUZZER="$BUILD/tests/fuzz/fuzz_request"
if ! cmake --build "$BUILD" -j"$(nproc)" --target fuzz_request || [ ! -x "$FUZZER" ]; then
  echo "fuzz.sh: $FUZZER was not built (is add_subdirectory(tests/fuzz) in CMakeLists.txt?)" >&2
  exit 2
fi

mkdir -p "$BUILD/corpus" "$BUILD/artifacts"
for seed in tests/fuzz/corpus/*; do
  [ -e "$BUILD/corpus/$(basename "$seed")" ] || cp "$seed" "$BUILD/corpus/"
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc=0
"$FUZZER" "$BUILD/corpus" \
  -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -detect_leaks=1 \
  -artifact_prefix="$BUILD/artifacts/" "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "fuzz.sh: the fuzzer failed (exit $rc); inputs in $BUILD/artifacts/:" >&2
  ls -l "$BUILD/artifacts/" >&2 || true
  exit "$rc"
fi
echo "fuzz.sh: no crash, leak or timeout in ${SECONDS_TO_RUN}s"
