#!/usr/bin/env bash
# Test-time looping (docs/experiments.md, "Looped and shared layers"): evaluates the last
# checkpoint of every point of a looped-block sweep (e.g. sweeps/looped-mixed-hops.toml) with 1 to
# MAX_LOOPS applications of its block (`grokscope surgery --schedule 0,0,…`), on every split of
# the point's own dataset, and writes OUT/loops.csv: point, seed, loops, split, n, acc.
# Usage: sweeps/test-time-loops.sh SWEEP_DIR OUT [MAX_LOOPS]   (MAX_LOOPS default: 8)
set -euo pipefail
BIN="${GROKSCOPE:-target/release/grokscope}"
SWEEP="${1:?usage: test-time-loops.sh SWEEP_DIR OUT [MAX_LOOPS]}"
OUT="${2:?output folder}"
MAX_LOOPS="${3:-8}"
mkdir -p "$OUT"
# The value of a top-level key of a run's config.json (string or number).
config_value() {
    sed -n "s/^  \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$1/config.json"
}
echo "point,seed,loops,split,n,acc" > "$OUT/loops.csv"
for point_dir in "$SWEEP"/points/p*/; do
    point="$(basename "$point_dir")"
    run="$point_dir/run"
    last="$run/step-$(ls "$run" | sed -n 's/^step-\([0-9]*\)$/\1/p' | sort -n | tail -n 1)"
    seed="$(config_value "$run" seed)"
    data="$(config_value "$run" data_dir)"
    for loops in $(seq 1 "$MAX_LOOPS"); do
        schedule="$(seq -s, 1 "$loops" | sed 's/[0-9]\+/0/g')"
        model="$OUT/$point-loops$loops.safetensors"
        "$BIN" surgery --checkpoint "$last" --schedule "$schedule" --out "$model" --force > /dev/null
        "$BIN" eval --checkpoint "$model" --data "$data" \
            | awk -v p="$point" -v s="$seed" -v l="$loops" \
                'NF == 3 && $2 ~ /^[0-9]+$/ { print p "," s "," l "," $1 "," $2 "," $3 }' \
            >> "$OUT/loops.csv"
        rm -f "$model"
    done
done
echo "wrote $OUT/loops.csv"
