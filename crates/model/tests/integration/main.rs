//! Integration tests of the `model` crate (one binary: small random models on the CPU).

mod checkpoint;
mod common;
mod forward_options;
mod hf;
mod hooks;
mod schedule;
mod split_inputs;
mod surgery;
