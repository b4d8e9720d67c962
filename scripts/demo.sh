#!/usr/bin/env bash
# Conveyor demo: installs what is missing, builds, starts the coordinator and
# a small pipeline of services, shows `conveyorctl watch` live, kills one
# service with SIGKILL and shows the coordinator noticing (unhealthy after one
# lease, expired after two). Stops everything it started.
# Usage: scripts/demo.sh [--quiet] [--no-build]
#   env DEMO_PORT (default 7400; events on DEMO_PORT+1), BUILD_DIR (default build)
set -euo pipefail
cd "$(dirname "$0")/.."

QUIET=0
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --quiet) QUIET=1 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "demo: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

BUILD_DIR=${BUILD_DIR:-build}
if [ "$BUILD" -eq 1 ]; then
  scripts/deps.sh
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null
fi

PORT=${DEMO_PORT:-7400}
EP="tcp://127.0.0.1:$PORT"
EV="tcp://127.0.0.1:$((PORT + 1))"
BIN=$BUILD_DIR/bin
CTL="$BIN/conveyorctl -e $EP"
LOGDIR=$(mktemp -d)
PIDS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
  # Newest first: services deregister while the coordinator still runs.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
    wait "${PIDS[i]}" 2>/dev/null || true
  done
  rm -rf "$LOGDIR"
}
trap cleanup EXIT

# Waits (bounded) until a command succeeds.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: timed out waiting for $what" >&2; exit 1
}

say "Starting conveyord on $EP (events on $EV), leases of 1.5 s"
$BIN/conveyord --listen "$EP" --publish "$EV" --lease-ms 1500 --min-lease-ms 500 \
  2>"$LOGDIR/conveyord.log" &
PIDS+=($!)
wait_for "conveyord" $CTL -t 300 status

say "conveyorctl watch service/ (every event, live)"
if [ "$QUIET" -eq 0 ]; then
  $CTL watch service/ > >(sed -u 's/^/  [watch] /') &
else
  $CTL watch service/ >/dev/null &
fi
PIDS+=($!)
sleep 0.5

say "Starting a source, two transforms and a sink (examples/service.c)"
start_service() {
  $BIN/conveyor-example-service -e "$EP" --id "$1" --name "$2" --type "$3" \
    --listen "tcp://127.0.0.1:$4" --lease-ms 1500 --weight "$5" --label zone=eu \
    >"$LOGDIR/$1.log" 2>&1 &
  PIDS+=($!)
  echo $! >"$LOGDIR/$1.pid"
}
start_service orders-src-1 orders source 9101 100
start_service enrich-1 enrich transform 9201 100
start_service enrich-2 enrich transform 9202 300
start_service warehouse-1 warehouse sink 9301 100
wait_for "4 services" bash -c "[ \$($CTL --json services | grep -c '\"service_id\"') -eq 4 ]"
$CTL services

say "kill -9 enrich-1: its heartbeats stop (unhealthy after 1.5 s, expired after 3 s)"
victim=$(cat "$LOGDIR/enrich-1.pid")
{ kill -KILL "$victim"; wait "$victim"; } 2>/dev/null || true
started=$(date +%s%N)
wait_for "enrich-1 to expire" bash -c "! $CTL -t 300 service enrich-1"
echo "  enrich-1 removed $(( ($(date +%s%N) - started) / 1000000 )) ms after the kill"
$CTL services --name enrich

say "Coordinator counters"
$CTL stats

say "Stopping: services deregister, then the coordinator exits"
