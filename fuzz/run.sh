#!/bin/sh
# Builds the libFuzzer targets and runs each for RUNS executions (default 1,000,000) on one core (CORE,
# default 1), niced, under the bounds fuzz/README.md states; prints each target's executions, time and
# final stats, and what is new is merged (-merge=1) into a temporary corpus, never into the repo's.
# Usage: fuzz/run.sh [RUNS] [CORE] [TARGET...]   (targets: walk_image snapshot_json dump_file core_file)
set -eu
cd "$(dirname "$0")"
RUNS=${1:-1000000}
CORE=${2:-1}
shift $(( $# > 2 ? 2 : $# ))
TARGETS=${*:-walk_image snapshot_json dump_file core_file}
cargo +nightly fuzz build -O -a --features libfuzzer
BIN=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release
OUT=${FUZZ_OUT:-/tmp/memspy-fuzz}
mkdir -p "$OUT"
for name in $TARGETS; do
    case $name in
        walk_image) corpus=corpus/walk ;;
        snapshot_json) corpus=corpus/snapshot ;;
        dump_file) corpus=corpus/dump ;;
        core_file) corpus=corpus/core ;;
        *) echo "unknown target $name" >&2; exit 2 ;;
    esac
    work=$(mktemp -d "$OUT/$name-XXXXXX")
    start=$(date +%s)
    status=0
    taskset -c "$CORE" nice -n 15 "$BIN/$name" -runs="$RUNS" -rss_limit_mb=1024 -malloc_limit_mb=128 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$OUT/$name-" "$work" "$corpus" > "$OUT/$name.log" 2>&1 || status=$?
    secs=$(( $(date +%s) - start ))
    grep -E '^(Done|stat::)|ERROR|SUMMARY|crash|timeout|leak|oom' "$OUT/$name.log" | grep -v '^INFO' | tail -20
    echo "$name: exit $status, $RUNS runs asked, $secs s, $(date -u +%Y-%m-%d), new inputs in $work"
done
