#!/usr/bin/env bash
# Conveyor demo: an ETL pipeline on the coordinator (examples/README.md).
# Installs what is missing, builds, then starts conveyord, a source (C), two
# sinks (Python, weights 300 and 100) and three transforms (two in C, one in
# Python) in consumer group "transformers", and shows a live view. On an
# announced schedule it kills one transform with SIGKILL (session expiry,
# rebalance), starts a new one (rebalance), and lets a sink stop
# heartbeating (traffic shifts to the other). When the source has produced
# everything and it is all committed, it prints a summary: produced,
# delivered, lost (must be 0), duplicates, rebalances and their latencies,
# sink shares against weights. Stops everything it started.
# Usage: scripts/demo.sh [--duration S] [--rate R] [--quiet] [--no-build]
#                        [--curve] [--summary-json FILE]
#   --duration S   seconds the source produces for (default 40; the demo
#                  takes about S + 10 s); at least 16
#   --rate R       records per second per partition (default 100, 12 partitions)
#   --quiet        only the announcements and the summary, no live view
#   --curve        CurveZMQ: writes a server and a client certificate pair
#                  (conveyorctl keygen) into the run directory, starts
#                  conveyord with --curve-secret/--curve-clients and gives
#                  every program and conveyorctl --server-key/--cert (the
#                  pipeline's own source and sink sockets stay plaintext);
#                  default: plaintext
#   env DEMO_PORT (default 7400: coordinator; +1 its events, +2 the source,
#   +3 and +4 the sinks), BUILD_DIR (default build), DEMO_SUMMARY_JSON
#   (same as --summary-json), DEMO_KEEP_RUN=1 keeps the run directory.
# Exit status: 0 when every check of the summary passed, 1 otherwise.
set -euo pipefail
CALLER_DIR=$PWD
cd "$(dirname "$0")/.."

QUIET=0
BUILD=1
CURVE=0
DURATION=40
RATE=100
SUMMARY_JSON=${DEMO_SUMMARY_JSON:-}
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quiet) QUIET=1 ;;
    --no-build) BUILD=0 ;;
    --curve) CURVE=1 ;;
    --duration|--rate|--summary-json)
      [ $# -ge 2 ] || { echo "demo: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --duration) DURATION=$2 ;;
        --rate) RATE=$2 ;;
        --summary-json) SUMMARY_JSON=$2 ;;
      esac
      shift ;;
    --duration=*) DURATION=${1#*=} ;;
    --rate=*) RATE=${1#*=} ;;
    --summary-json=*) SUMMARY_JSON=${1#*=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ! [[ "$DURATION" =~ ^[0-9]+$ ]] || [ "$DURATION" -lt 16 ] || [ "$DURATION" -gt 3600 ]; then
  echo "demo: --duration must be a whole number of seconds, 16 to 3600" >&2; exit 2
fi
if ! [[ "$RATE" =~ ^[0-9]+$ ]] || [ "$RATE" -lt 1 ] || [ "$RATE" -gt 5000 ]; then
  echo "demo: --rate must be 1 to 5000 records per second per partition" >&2; exit 2
fi

# A relative --summary-json is relative to where the demo was started.
if [ -n "$SUMMARY_JSON" ] && [ "${SUMMARY_JSON#/}" = "$SUMMARY_JSON" ]; then
  SUMMARY_JSON=$CALLER_DIR/$SUMMARY_JSON
fi

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
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
EXAMPLES=examples
export PYTHONPATH="$PWD/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
RUN=$(mktemp -d "${TMPDIR:-/tmp}/conveyor-demo.XXXXXX")
mkdir -p "$RUN/sinks" "$RUN/journals" "$RUN/logs"
# --curve: certificates in RUN/curve (server.cert*, demo.cert*; clients/
# holds the public demo.cert, the only client the daemon lets in). KEYS go
# to every program that talks to the coordinator, and to conveyorctl.
CTL_PLAIN=$CTL
KEYS=()
CURVED=()
if [ "$CURVE" -eq 1 ]; then
  mkdir -p "$RUN/curve/clients"
  for name in server demo; do
    "$BIN/conveyorctl" keygen "$name" --dir "$RUN/curve" >/dev/null
  done
  cp "$RUN/curve/demo.cert" "$RUN/curve/clients/"
  KEYS=(--server-key "$RUN/curve/server.cert" --cert "$RUN/curve/demo.cert_secret")
  CURVED=(--curve-secret "$RUN/curve/server.cert_secret" --curve-clients "$RUN/curve/clients")
  CTL="$CTL ${KEYS[*]}"
fi
LEASE=2000         # services: unhealthy after 2 s without heartbeat, removed after 4 s
SESSION=3000       # group members: expired 3 s after their last heartbeat

# A redrawn screen on a terminal; plain lines otherwise.
VIEW=0
TTY=0
[ -t 1 ] && TTY=1
[ "$QUIET" -eq 0 ] && VIEW=1

PIDS=()                  # every process started, in order
declare -A PID_OF=()     # name -> pid
VIEW_PID=""

now_ms() { date +%s%3N; }
T0=$(now_ms)
since_start() { local ms=$(( $(now_ms) - T0 )); printf '+%d.%ds' $((ms / 1000)) $(((ms % 1000) / 100)); }
# Announcements: printed, and appended to the timeline the live view shows
# (on a terminal the view owns the screen, so only there).
say() {
  local text="$*"
  printf '%s %s\n' "$(now_ms)" "$text" >>"$RUN/timeline.txt"
  if [ "$VIEW" -eq 1 ] && [ "$TTY" -eq 1 ] && [ -n "$VIEW_PID" ]; then return 0; fi
  if [ "$TTY" -eq 1 ]; then
    printf '\033[1m[%s] %s\033[0m\n' "$(since_start)" "$text"
  else
    printf '[%s] %s\n' "$(since_start)" "$text"
  fi
}
# mark NAME [TARGET]: records an action for the report; MARK_AT is its time.
MARK_AT=0
mark() {
  MARK_AT=$(now_ms)
  printf '{"mark": "%s", "target": "%s", "at": %s}\n' "$1" "${2:-}" "$MARK_AT" >>"$RUN/marks.jsonl"
}

# Stops one process: SIGTERM, then SIGKILL after 8 s. Bounded.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 80); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  trap - EXIT INT TERM
  # Newest first: workers leave and services deregister while the
  # coordinator still runs.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${PIDS[i]}"
  done
  if [ -n "${DEMO_KEEP_RUN:-}" ]; then
    echo "demo: run directory kept: $RUN" >&2
  else
    rm -rf "$RUN"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for WHAT "NAMES" COMMAND...: waits (bounded: 10 s) until COMMAND
# succeeds; gives up at once if one of the processes NAMES has exited.
wait_for() {
  local what=$1 names=$2 name; shift 2
  for _ in $(seq 1 100); do
    "$@" >/dev/null 2>&1 && return 0
    for name in $names; do
      if ! kill -0 "${PID_OF[$name]}" 2>/dev/null; then
        echo "demo: $name exited: $(tail -n 1 "$RUN/logs/$name.log")" >&2
        exit 1
      fi
    done
    sleep 0.1
  done
  echo "demo: timed out waiting for $what (logs: $RUN/logs)" >&2
  DEMO_KEEP_RUN=1
  exit 1
}
# start NAME COMMAND...: in the background, output to RUN/logs/NAME.log.
start() {
  local name=$1; shift
  "$@" >"$RUN/logs/$name.log" 2>&1 &
  PIDS+=($!)
  PID_OF[$name]=$!
}
# Sleeps until S seconds after the source started.
at_second() {
  local left=$(( $1 * 1000 - ($(now_ms) - T_PROD) ))
  if [ "$left" -gt 0 ]; then sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"; fi
}
report() { "$PY" "$EXAMPLES/pipeline_report.py" -e "$EP" ${KEYS[@]+"${KEYS[@]}"} --run-dir "$RUN" "$@"; }
# Runs a report command and announces each line it prints.
announce() {
  local line
  while IFS= read -r line; do say "   $line"; done < <(report "$@" || true)
}
members() {
  $CTL --json groups 2>/dev/null | "$PY" -c '
import json, sys
groups = json.load(sys.stdin)["groups"]
print(next((g["members"] for g in groups if g["group_id"] == "transformers"), 0))'
}
three_members() { [ "$(members)" -ge 3 ]; }
services_up() { [ "$($CTL --json services --name "$1" 2>/dev/null | grep -c '"service_id"')" -ge "$2" ]; }

start_transform() {   # start_transform ID c|py
  # Batches of at most 50: a worker catching up after a rebalance spreads
  # its backlog over several picks of the balancer.
  local id=$1 args=(-e "$EP" ${KEYS[@]+"${KEYS[@]}"} --id "$1" --session-timeout-ms "$SESSION"
                    --lease-ms "$LEASE" --batch 50 --journal "$RUN/journals/$1.jsonl")
  if [ "$2" = c ]; then
    start "$id" "$BIN/conveyor-example-transform" "${args[@]}"
  else
    start "$id" "$PY" "$EXAMPLES/pipeline_transform.py" "${args[@]}"
  fi
}

RECORDS=$((DURATION * RATE))
mark start
say "Conveyor pipeline demo: coordinator $EP, topic 'events' (12 partitions x $RECORDS records at $RATE/s each, $DURATION s)"
if [ "$CURVE" -eq 1 ]; then
  say "CurveZMQ: conveyord accepts only the client certificate $RUN/curve/demo.cert; every program gets --server-key/--cert"
fi
# A daemon already there answers a plaintext status (one with CURVE would
# not, but it cannot hold the key made just now).
if $CTL_PLAIN -t 300 status >/dev/null 2>&1; then
  echo "demo: something already answers on $EP; choose another DEMO_PORT" >&2
  exit 1
fi
start conveyord "$BIN/conveyord" --listen "$EP" --publish "$EV" --lease-ms "$LEASE" \
  --min-lease-ms 500 --session-timeout-ms "$SESSION" ${CURVED[@]+"${CURVED[@]}"}
wait_for "conveyord" conveyord $CTL -t 300 status

$CTL topic create events 12 >/dev/null

say "Starting two sinks (Python, weights 300 and 100)"
for s in "sink-1 300 3" "sink-2 100 4"; do
  set -- $s
  start "$1" "$PY" "$EXAMPLES/pipeline_sink.py" -e "$EP" ${KEYS[@]+"${KEYS[@]}"} --id "$1" --weight "$2" \
    --listen "tcp://127.0.0.1:$((PORT + $3))" --lease-ms "$LEASE" --stats "$RUN/sinks/$1.json"
done
wait_for "the sinks" "sink-1 sink-2" services_up events-sink 2

if [ "$VIEW" -eq 1 ]; then
  view_args=(-e "$EP" ${KEYS[@]+"${KEYS[@]}"} --run-dir "$RUN" --t0 "$T0")
  [ "$TTY" -eq 1 ] || view_args+=(--plain)
  "$PY" "$EXAMPLES/pipeline_view.py" "${view_args[@]}" 2>"$RUN/logs/view.log" &
  VIEW_PID=$!
  PIDS+=("$VIEW_PID")
fi

say "Starting three transforms in group 'transformers': transform-c-1 (C), transform-py-1 (Python), transform-c-2 (C)"
start_transform transform-c-1 c
start_transform transform-py-1 py
start_transform transform-c-2 c
wait_for "three transforms in the group" "transform-c-1 transform-py-1 transform-c-2" three_members

say "Starting the source (C): it registers, and its partitions fill at $RATE records/s each"
start source-1 "$BIN/conveyor-example-source" -e "$EP" ${KEYS[@]+"${KEYS[@]}"} --id source-1 \
  --listen "tcp://127.0.0.1:$((PORT + 2))" --partitions 12 --records-per-partition "$RECORDS" \
  --rate "$RATE" --lease-ms "$LEASE" --report "$RUN/source-report.json"
T_PROD=$(now_ms)    # the schedule counts from here
wait_for "the source" source-1 services_up events-source 1

KILL_AT=$((DURATION * 20 / 100))
JOIN_AT=$((DURATION * 45 / 100))
SINK_AT=$((DURATION * 65 / 100))
say "Schedule, from the source's start: at +${KILL_AT}s kill -9 transform-c-1; at +${JOIN_AT}s start transform-py-2; at +${SINK_AT}s sink-2 stops heartbeating; at +${DURATION}s the source is done"

at_second "$KILL_AT"
victim=${PID_OF[transform-c-1]}
mark kill transform-c-1
kill_ms=$MARK_AT
{ kill -KILL "$victim"; wait "$victim"; } 2>/dev/null || true
say "kill -9 transform-c-1: no leave, no final commit; its session ($SESSION ms) must expire"
announce wait-rebalance --cause expired --member transform-c-1 --since "$kill_ms" --timeout 15

at_second "$JOIN_AT"
mark join transform-py-2
join_ms=$MARK_AT
say "Starting transform-py-2 (Python): it joins, the sticky assignor moves it a share"
start_transform transform-py-2 py
announce wait-rebalance --cause joined --member transform-py-2 --since "$join_ms" --timeout 15

at_second "$SINK_AT"
kill -USR1 "${PID_OF[sink-2]}"
mark sink_stop sink-2
stop_ms=$MARK_AT
say "sink-2 stops heartbeating (still serving): unhealthy after one lease ($LEASE ms), removed after two"
announce traffic --seconds 2
announce wait-service --service sink-2 --state unhealthy --since "$stop_ms" --timeout 10
say "   the transforms' balancers drop it: traffic shifts to sink-1"
sleep 2.5
announce traffic --seconds 2
announce wait-service --service sink-2 --state expired --since "$stop_ms" --timeout 10

at_second "$DURATION"
say "The source has produced everything; waiting until it is all committed"
report drain --timeout 30 --quiet >"$RUN/logs/drain.log" 2>&1 || true
say "   $(tail -n 1 "$RUN/logs/drain.log")"
mark drained

# Stop the view, then the workers (they finish their batch, leave the
# group), the sinks (final counts), the source (its report).
if [ -n "$VIEW_PID" ]; then stop_pid "$VIEW_PID"; VIEW_PID=""; fi
for name in transform-py-2 transform-c-2 transform-py-1 sink-1 sink-2 source-1; do
  stop_pid "${PID_OF[$name]}"
done

echo
if [ "$TTY" -eq 1 ]; then printf '\033[1m== Summary\033[0m\n'; else echo "== Summary"; fi
SUMMARY_OUT=${SUMMARY_JSON:-$RUN/summary.json}
status=0
report summary --json "$SUMMARY_OUT" || status=$?
exit "$status"
