#!/usr/bin/env bash
# `just bench`: installs the Python references' extra dependency (transformer-lens) into the shared
# virtualenv, then runs bench/run.py with that virtualenv's Python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GROKSCOPE_CACHE:-$HOME/.cache/grokscope}/venv"
"$VENV/bin/python" -c 'import transformer_lens' 2>/dev/null \
    || "$VENV/bin/pip" install --quiet --disable-pip-version-check "transformer-lens==4.3.0"
exec env HF_HUB_OFFLINE=1 "$VENV/bin/python" "$ROOT/bench/run.py" "$@"
