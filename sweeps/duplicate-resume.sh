#!/usr/bin/env bash
# Training resumed from duplicated-layer models (docs/experiments.md, "Duplicated layers"): for each
# layer L of a grokked 4-layer checkpoint, `grokscope surgery --duplicate L --materialize` makes a
# 5-layer model whose copy of block L can diverge; each is trained STEPS more steps with the
# tiny-composition preset's settings (`init`), from training seeds 42, 0 and 1; the control trains
# the undisturbed checkpoint the same number of steps. This script makes the models and plans the
# two sweeps; `grokscope sweep run OUT/sweep --jobs 2` and `grokscope sweep run OUT/control` run them.
# Usage: sweeps/duplicate-resume.sh CHECKPOINT OUT [STEPS]   (STEPS default: 600)
set -euo pipefail
BIN="${GROKSCOPE:-target/release/grokscope}"
CKPT="${1:?usage: duplicate-resume.sh CHECKPOINT OUT [STEPS]}"
OUT="$(mkdir -p "${2:?output folder}" && cd "$2" && pwd)"
STEPS="${3:-600}"
inits=()
for layer in 0 1 2 3; do
    "$BIN" surgery --checkpoint "$CKPT" --duplicate "$layer" --materialize \
        --out "$OUT/dup$layer.safetensors" --force > /dev/null
    inits+=("\"$OUT/dup$layer.safetensors\"")
done
cat > "$OUT/sweep.toml" <<TOML
[base]
preset = "tiny-composition"

[base.set]
n_layer = 5
steps = $STEPS
checkpoints = "steps:$STEPS"

[grid]
init = [$(IFS=,; echo "${inits[*]}")]
seed = [42, 0, 1]
TOML
"$BIN" sweep plan "$OUT/sweep.toml" --out "$OUT/sweep"
cat > "$OUT/control.toml" <<TOML
[base]
preset = "tiny-composition"

[base.set]
init = "$(cd "$(dirname "$CKPT")" && pwd)/$(basename "$CKPT")"
steps = $STEPS
checkpoints = "steps:$STEPS"

[grid]
seed = [42, 0, 1]
TOML
"$BIN" sweep plan "$OUT/control.toml" --out "$OUT/control"
