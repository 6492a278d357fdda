#!/usr/bin/env bash
# The core's cost in instructions per body, counted by callgrind (which, unlike
# wall-clock time, does not move with machine load): examples/core_instructions.rs
# normalises + Avro-encodes samples/webhooks.jsonl ROUNDS times; only its loop
# (run_corpus) is counted, so corpus loading and codec set-up are not.
# Prints Ir per body, then the top of the profile (self cost, then inclusive).
#   ./scripts/core-instructions.sh [ROUNDS] [all|normalize]
# Needs valgrind. Builds with the `profiling` profile (dist without its fat LTO).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-100}
MODE=${2:-all}
cargo build --locked --profile profiling --example core_instructions
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
summary=$(valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
    --toggle-collect='*run_corpus*' \
    target/profiling/examples/core_instructions "$ROUNDS" "$MODE" 2>"$out/log")
echo "$summary"
total=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$out/cg.out")
processed=$(sed -n 's/.*processed=\([0-9]*\).*/\1/p' <<<"$summary")
echo "Ir in the loop: $total; instructions per body: $((total / processed))"
# Function names only: drop the source paths callgrind puts before them.
top() {
    callgrind_annotate --inclusive="$1" "$out/cg.out" 2>/dev/null |
        grep -E '^ *[0-9,]+ \(' | grep -v 'PROGRAM TOTALS' |
        sed -E 's@  ([^ ]*\.(rs|c|S)|\?\?\?):@  @; s@ \[[^]]*\]$@@' | head -"$2"
}
echo "== self cost"
top no 15
echo "== inclusive (the core's own functions)"
top yes 60 | grep 'codat_stream::core' | head -15
