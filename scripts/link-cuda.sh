#!/usr/bin/env bash
# The linker of every binary the workspace builds (set in .cargo/config.toml): the system C
# compiler driver, with libtorch's CUDA libraries kept as NEEDED entries.
#
# rustc links with --as-needed, and nothing in grokscope references a symbol of libtorch_cuda.so:
# the linker would drop it, and libtorch registers its CUDA backend only from that library's static
# initialisers, so `--device cuda` would fail as if there were no GPU. torch-sys passes
# `-ltorch_cuda` exactly when the libtorch it builds against has that library; this wrapper wraps
# that argument in --no-as-needed (adding libc10_cuda beside it). A CPU-only libtorch gives no
# `-ltorch_cuda`, and the command line passes through unchanged.
set -euo pipefail
args=()
for arg in "$@"; do
    if [[ "$arg" == "-ltorch_cuda" ]]; then
        args+=("-Wl,--push-state,--no-as-needed" "-ltorch_cuda" "-lc10_cuda" "-Wl,--pop-state")
    else
        args+=("$arg")
    fi
done
exec "${GROKSCOPE_LINK_CC:-cc}" "${args[@]}"
