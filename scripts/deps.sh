#!/usr/bin/env bash
# Installs the Debian 12 packages Conveyor needs, only those missing.
# Shared by scripts/test.sh and scripts/demo.sh.
set -euo pipefail

CONVEYOR_PACKAGES=(
  build-essential cmake pkg-config
  libzmq3-dev libczmq-dev libmsgpack-dev libjansson-dev libcmocka-dev
  python3 python3-zmq python3-msgpack python3-pytest
  clang libclang-rt-14-dev
)

missing=()
for p in "${CONVEYOR_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
