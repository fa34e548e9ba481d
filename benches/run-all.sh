#!/usr/bin/env bash
# Runs every loadgen scenario against an existing release build and prints
# one markdown table. Builds nothing: build first with
#   cargo build --release --bins
#
# Usage: benches/run-all.sh [BIN_DIR]        (default: target/release,
#        or $CARGO_TARGET_DIR/release when CARGO_TARGET_DIR is set)
#
# Environment:
#   SCENARIOS          which to run, in order (default: all, see below)
#   LOADGEN_NODE_PATH  a node_modules directory holding `ws`, for the Node
#                      reference in fanout (npm install ws in a scratch dir)
#   LOADGEN_ARGS_<SCENARIO>  the loadgen arguments for one scenario, in place
#                      of its default, e.g.
#                      LOADGEN_ARGS_fanout_1000="fanout --conns 1000 --step-s 3"
#   BENCH_LOCK_FILE    a file touched while each scenario runs and removed
#                      between them (BENCH_LOCK_GAP_S seconds apart, default
#                      0), so that cooperating builds pause meanwhile
#
# Progress goes to stderr; the table to stdout.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
default_bin="$here/target/release"
if [ -n "${CARGO_TARGET_DIR:-}" ]; then default_bin="$CARGO_TARGET_DIR/release"; fi
bin_dir=${1:-$default_bin}
loadgen="$bin_dir/loadgen"
swarmbridge="$bin_dir/swarmbridge"
for b in "$loadgen" "$swarmbridge"; do
  if [ ! -x "$b" ]; then
    echo "run-all: $b not found; build with: cargo build --release --bins" >&2
    exit 2
  fi
done
cd "$here" || exit 2

# 10,000 WebSocket connections need more than the usual 1,024 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
  echo "run-all: ulimit -n is $(ulimit -n); the 10,000-connection scenarios need about 10,100" >&2
fi

SCENARIOS=${SCENARIOS:-"startup idle latency claims reconnect_1 reconnect_100 fanout_1000 fanout_5000 fanout_10000"}

args_for() {
  case "$1" in
    startup) echo "startup --runs 10" ;;
    idle) echo "idle --conns 10000" ;;
    latency) echo "latency --rate 1000 --seconds 10" ;;
    claims) echo "claims --agents 100 --tasks 20000" ;;
    reconnect_1) echo "reconnect --agents 1 --events 20000 --timeout-s 120" ;;
    reconnect_100) echo "reconnect --agents 100 --events 20000 --timeout-s 120" ;;
    fanout_*) echo "fanout --conns ${1#fanout_} --targets swarmbridge,bare,node" ;;
    *) return 1 ;;
  esac
}

# Registering 10,000 agents (one CLI process each) is done once per build,
# before any measurement.
echo "run-all: $loadgen --bin $swarmbridge prepare" >&2
"$loadgen" --bin "$swarmbridge" prepare || exit 1

rows=$(mktemp)
trap 'rm -f "$rows"; [ -n "${BENCH_LOCK_FILE:-}" ] && rm -f "$BENCH_LOCK_FILE"' EXIT
for s in $SCENARIOS; do
  if ! base=$(args_for "$s"); then
    echo "run-all: unknown scenario $s" >&2
    exit 2
  fi
  override_var="LOADGEN_ARGS_$s"
  # shellcheck disable=SC2086 # word splitting of the argument list is wanted
  set -- ${!override_var:-$base}
  [ -n "${BENCH_LOCK_FILE:-}" ] && touch "$BENCH_LOCK_FILE"
  echo "run-all: $loadgen --bin $swarmbridge $*" >&2
  "$loadgen" --bin "$swarmbridge" "$@" >>"$rows"
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "| $s | FAILED | exit status $status | see stderr of \`loadgen $*\` |" >>"$rows"
  fi
  if [ -n "${BENCH_LOCK_FILE:-}" ]; then
    rm -f "$BENCH_LOCK_FILE"
    sleep "${BENCH_LOCK_GAP_S:-0}"
  fi
done

echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(uname -m)), binaries from $bin_dir"
echo
echo "| scenario | what | figure | detail |"
echo "| --- | --- | --- | --- |"
cat "$rows"
