# grokscope: every command a person runs.
set shell := ["bash", "-euo", "pipefail", "-c"]

bin := "target/release/grokscope"

# Show the recipes.
default:
    @just --list

# Install libtorch (PyTorch 2.11.0) and the Python references into ~/.cache/grokscope (idempotent).
setup:
    @scripts/setup.sh

# Build the release binary.
build: setup
    cargo build --release -p grokscope

# Run the whole test suite (unit, integration, end-to-end CLI, HF parity, doctests), then the
# three programs of examples/. Doctest binaries are built outside target/, so they find libtorch
# through LD_LIBRARY_PATH rather than the rpath of the other binaries.
test: setup
    LD_LIBRARY_PATH="{{justfile_directory()}}/.libtorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" cargo test --workspace --release
    for example in lens_on_checkpoint patch_custom_metric train_with_hook; do cargo run --release -q -p grokscope --example "$example"; done

# The paper's story end to end on this CPU: data, training, tracing, figures, report.
demo: build
    {{bin}} demo

# Benchmarks side by side with the PyTorch references.
bench *args: build
    scripts/bench.sh {{args}}

# The GPU check for a lent CUDA machine (docs/cuda.md): run there with the carried release binary;
# `just gpu-check OUT --dry-run` tests its plumbing on the CPU.
gpu-check out *args:
    scripts/gpu-check.sh {{out}} {{args}}

# Start a one-node Slurm cluster on this machine (root; installs slurm-wlm and munge if missing).
slurm-up:
    scripts/slurm-up.sh

# Stop the cluster of slurm-up and remove its state.
slurm-down:
    scripts/slurm-down.sh

# Format the code.
fmt:
    cargo fmt --all

# Lint with clippy; warnings are errors.
lint: setup
    cargo clippy --workspace --all-targets -- -D warnings

# Remove generated datasets, runs and analysis outputs (keeps committed fixtures).
clean-outputs:
    find data checkpoints notebooks-out -mindepth 1 -maxdepth 1 ! -name .gitkeep ! -name fixtures -exec rm -rf {} +
