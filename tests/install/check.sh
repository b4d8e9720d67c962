#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds a program against
# it twice: with CMake's find_package(conveyor) and with pkg-config.
# Usage: check.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/conveyor/conveyor.h"
test -f "$work/prefix/lib/pkgconfig/conveyor.pc" || test -f "$work"/prefix/lib/*/pkgconfig/conveyor.pc
libdir=$(dirname "$(find "$work/prefix" -name 'libconveyor.so' | head -1)")
test -f "$libdir/libconveyor.a"

cmake -S "$src/tests/install" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
LD_LIBRARY_PATH="$libdir" "$work/consumer/consumer"

export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc "$src/tests/install/consumer.c" -o "$work/pc-consumer" $(pkg-config --cflags --libs conveyor)
LD_LIBRARY_PATH="$libdir" "$work/pc-consumer"
echo "install: find_package and pkg-config consumers built and ran"
