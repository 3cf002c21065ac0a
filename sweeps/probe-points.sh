#!/usr/bin/env bash
# Linear probes of the bridge entity b1 at every checkpoint of every trained point of a sweep, for
# `grokscope sweep signals` (docs/experiments.md, "What announces grokking"): held-out accuracy of
# a logistic probe per inner layer at the r1 and r2 positions, written to points/<p>/probe/.
# Points not trained to their last step, or already probed to it, are skipped. One libtorch thread.
# Usage: sweeps/probe-points.sh SWEEP_DIR [LAYERS]   (LAYERS default: 1,2,3)
set -euo pipefail
BIN="${GROKSCOPE:-target/release/grokscope}"
DIR="${1:?usage: probe-points.sh SWEEP_DIR [LAYERS]}"
LAYERS="${2:-1,2,3}"
for point in "$DIR"/points/p*; do
    last=$(ls -d "$point"/run/step-* 2>/dev/null | sed 's/.*step-//' | sort -n | tail -1)
    steps=$(sed -n 's/.*"steps": *\([0-9]*\).*/\1/p' "$point/point.json")
    if [[ -z "$last" || "$last" != "$steps" ]]; then
        echo "$point: not trained to step $steps yet, skipped"
        continue
    fi
    if [[ -f "$point/probe/probe.csv" ]] && grep -q "^$last," "$point/probe/probe.csv"; then
        echo "$point: probed to step $last already"
        continue
    fi
    "$BIN" --threads 1 probe --run "$point/run" --out "$point/probe" --target b1 \
        --positions r1,r2 --layers "$LAYERS" > "$point/probe.log"
    echo "$point: probed to step $last"
done
