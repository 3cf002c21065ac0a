#!/usr/bin/env bash
# Gathers the accuracy tables that `grokscope eval` prints (lines `split n acc`) into one CSV,
# `model,split,n,acc`, one row per model and split; the model is the file name without `eval-` and
# `.txt` (e.g. `dup2`, `p001-orig`), or, in a file of several tables, the name in the `== NAME`
# line before each (without `.safetensors`).
# Usage: sweeps/eval-table.sh OUT.csv EVAL.txt...
set -euo pipefail
OUT="${1:?usage: eval-table.sh OUT.csv EVAL.txt...}"
shift
echo "model,split,n,acc" > "$OUT"
for file in "$@"; do
    model="$(basename "$file" .txt)"
    model="${model#eval-}"
    awk -v model="$model" '
        $1 == "==" { model = $2; sub(/\.safetensors$/, "", model); next }
        NF == 3 && $2 ~ /^[0-9]+$/ { print model "," $1 "," $2 "," $3 }' "$file" >> "$OUT"
done
echo "wrote $OUT ($(($(wc -l < "$OUT") - 1)) rows)"
