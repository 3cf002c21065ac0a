#!/usr/bin/env bash
# `just gpu-check OUT [--dry-run]`: the GPU check of a lent CUDA machine (scripts/gpu_check.py has the
# rows). Run it there with the release binary built on a CPU machine and carried over: that machine
# has PyTorch 2.11.0+cu130 in its `python3` but no internet, so `.libtorch` is pointed at that torch's
# folder, which the binary's rpath ($ORIGIN/../../.libtorch/lib) finds. `--dry-run` runs every row on
# the CPU at toy sizes with this machine's libtorch, to test the plumbing without a GPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: scripts/gpu-check.sh OUT_DIR [--dry-run]}"
shift
PY="${GPU_CHECK_PYTHON:-}"
if [[ -z "$PY" ]]; then
    VENV_PY="${GROKSCOPE_CACHE:-$HOME/.cache/grokscope}/venv/bin/python"
    if [[ -x "$VENV_PY" ]]; then PY="$VENV_PY"; else PY="$(command -v python3)"; fi
fi
if [[ ! -f "$ROOT/.libtorch/lib/libtorch_cpu.so" ]]; then
    TORCH_DIR="$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
    ln -sfn "$TORCH_DIR" "$ROOT/.libtorch"
    echo "gpu-check: linked .libtorch -> $TORCH_DIR" >&2
fi
BIN="${GROKSCOPE_BIN:-$ROOT/target/release/grokscope}"
[[ -x "$BIN" ]] || { echo "gpu-check: $BIN missing: build it with 'just build' and carry it" >&2; exit 2; }
echo "gpu-check: the binary's CUDA libraries: $(readelf -d "$BIN" | grep -o 'lib[a-z0-9_]*cuda[a-z0-9_]*\.so' | tr '\n' ' ')" >&2
exec "$PY" "$ROOT/scripts/gpu_check.py" "$OUT" --bin "$BIN" --python "$PY" "$@"
