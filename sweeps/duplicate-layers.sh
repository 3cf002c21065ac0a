#!/usr/bin/env bash
# The readers' "duplicated layers" question (docs/experiments.md): duplicate each layer of a grokked
# checkpoint in turn with `grokscope surgery`, then score every split (`eval`) and read the logit
# lens (`lens`) of the original and of each copy; `eval.csv` gathers the accuracies.
# Usage: sweeps/duplicate-layers.sh CHECKPOINT DATASET OUT [LAYERS]   (LAYERS default: 0 1 2 3)
set -euo pipefail
BIN="${GROKSCOPE:-target/release/grokscope}"
CKPT="${1:?usage: duplicate-layers.sh CHECKPOINT DATASET OUT [LAYERS]}"
DATA="${2:?dataset folder}"
OUT="${3:?output folder}"
LAYERS="${4:-0 1 2 3}"
mkdir -p "$OUT"
"$BIN" eval --checkpoint "$CKPT" --data "$DATA" > "$OUT/eval-orig.txt"
"$BIN" lens --checkpoint "$CKPT" --data "$DATA" --out "$OUT/lens-orig" > /dev/null
for layer in $LAYERS; do
    "$BIN" surgery --checkpoint "$CKPT" --duplicate "$layer" --out "$OUT/dup$layer.safetensors" > /dev/null
    "$BIN" eval --checkpoint "$OUT/dup$layer.safetensors" --data "$DATA" > "$OUT/eval-dup$layer.txt"
    "$BIN" lens --checkpoint "$OUT/dup$layer.safetensors" --data "$DATA" --out "$OUT/lens-dup$layer" > /dev/null
done
"$(dirname "$0")/eval-table.sh" "$OUT/eval.csv" "$OUT"/eval-*.txt
echo "wrote $OUT"
