#!/usr/bin/env bash
# Installs PyTorch 2.11.0 (libtorch for tch 0.24.0) and the Python reference packages into a
# virtualenv shared by every clone on this machine, and links it into the work tree as `.libtorch`.
# Idempotent: when everything is in place it only checks a stamp file and the symlink.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${GROKSCOPE_CACHE:-$HOME/.cache/grokscope}"
VENV="$CACHE/venv"
TORCH_VERSION="2.11.0"
PY_PACKAGES=("torch==$TORCH_VERSION" "transformers" "safetensors" "numpy")
STAMP="$VENV/.grokscope-setup-v1"

if [[ ! -f "$STAMP" ]]; then
    echo "setup: installing torch $TORCH_VERSION and reference packages into $VENV (first time only, ~2 min)"
    mkdir -p "$CACHE"
    PY="$(command -v python3 || true)"
    [[ -n "$PY" ]] || { echo "setup: python3 not found; install Python 3.9+ first" >&2; exit 1; }
    [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
    got="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
    [[ "$got" == "$TORCH_VERSION" ]] || { echo "setup: expected torch $TORCH_VERSION, found $got" >&2; exit 1; }
    touch "$STAMP"
fi

TORCH_DIR="$(ls -d "$VENV"/lib/python3*/site-packages/torch | head -n1)"
[[ -f "$TORCH_DIR/lib/libtorch_cpu.so" ]] || { echo "setup: libtorch not found under $TORCH_DIR; remove $STAMP and re-run" >&2; exit 1; }
if [[ "$(readlink "$ROOT/.libtorch" 2>/dev/null || true)" != "$TORCH_DIR" ]]; then
    ln -sfn "$TORCH_DIR" "$ROOT/.libtorch"
    echo "setup: linked .libtorch -> $TORCH_DIR"
fi
