#!/usr/bin/env bash
# Installs the Debian 12 packages Conveyor needs, only those missing.
# Shared by scripts/test.sh and scripts/demo.sh.
set -euo pipefail

CONVEYOR_PACKAGES=(
  build-essential cmake pkg-config
  libzmq3-dev libczmq-dev libmsgpack-dev libjansson-dev libcmocka-dev
  python3 python3-zmq python3-msgpack python3-pytest
  clang libclang-rt-14-dev
  libuv1-dev
)
# libraft (the Raft engine, src/cvr_raft.c) is installed on its own below:
# Debian 12 ships 0.15 (canonical/raft, archived upstream); we want the
# maintained cowsql fork, 0.22.x, which bookworm-backports carries (and
# trixie in main). The code builds and passes on either.
RAFT_MIN_VERSION=0.22

missing=()
for p in "${CONVEYOR_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
raft_version=$(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null || true)
raft_ok=0
if dpkg-query -W -f='${Status}' libraft-dev 2>/dev/null | grep -q "install ok installed" \
   && dpkg --compare-versions "$raft_version" ge "$RAFT_MIN_VERSION"; then
  raft_ok=1
fi

if ((${#missing[@]})) || [ "$raft_ok" = 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  raft_target=()
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ "$raft_ok" = 0 ] && [ "$codename" = bookworm ]; then
    # Add bookworm-backports once, unless a source (one-line or deb822)
    # already names it.
    if ! grep -rqsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "deps: adding bookworm-backports to apt sources (for libraft-dev $RAFT_MIN_VERSION)"
      echo "deb http://deb.debian.org/debian bookworm-backports main" |
        $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    raft_target=(-t bookworm-backports)
  fi
  # An unreachable source must not stop the rest: the installs below say
  # what is really missing.
  $SUDO apt-get update -qq || echo "deps: WARNING: apt-get update reported errors" >&2
  if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if [ "$raft_ok" = 0 ]; then
    # On its own: -t would otherwise pull backports of everything else too.
    echo "deps: installing libraft-dev ${raft_target[*]}"
    if ! $SUDO apt-get install -y -qq --no-install-recommends "${raft_target[@]}" libraft-dev; then
      echo "deps: WARNING: no libraft-dev >= $RAFT_MIN_VERSION; falling back to the distribution's" >&2
      $SUDO apt-get install -y -qq --no-install-recommends libraft-dev
    fi
  fi
fi
