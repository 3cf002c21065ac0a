//! Shared helpers: small random models, token batches, temporary folders, comparisons.

use model::{Checkpoint, GptConfig, HookPoint, RunRequest};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// A 3-layer model: vocab 50, n_ctx 16, d_model 32, 4 heads, d_mlp 64.
pub fn tiny_config() -> GptConfig {
    let mut cfg = GptConfig::new(50, 16, 32, 4, 3);
    cfg.d_mlp = 64;
    cfg
}

/// A model for `cfg` with every parameter perturbed (LayerNorm weights away from 1, biases away
/// from 0), so no parameter is trivial.
pub fn random_model(cfg: GptConfig, seed: i64) -> Checkpoint {
    tch::manual_seed(seed);
    let ckpt = Checkpoint::new(cfg, Device::Cpu).expect("valid config");
    tch::no_grad(|| {
        for (_, mut var) in ckpt.vs.variables() {
            let noise = var.randn_like() * 0.1;
            let _ = var.f_add_(&noise).expect("perturb parameter");
        }
    });
    ckpt
}

/// Random tokens `[b, t]` in `0..vocab`.
pub fn tokens(b: i64, t: i64, vocab: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randint(vocab, [b, t], (Kind::Int64, Device::Cpu))
}

/// Largest absolute difference.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}

/// Asserts `a ≈ b` within `tol`.
#[track_caller]
pub fn assert_close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    let d = max_diff(a, b);
    assert!(d <= tol, "{what}: max |diff| = {d:e} > {tol:e}");
}

/// Asserts `a == b` element for element.
#[track_caller]
pub fn assert_exact(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.size(), b.size(), "{what}: shapes differ");
    assert!(
        a.equal(b),
        "{what}: not bit-identical (max |diff| = {:e})",
        max_diff(a, b)
    );
}

/// A fresh empty folder under cargo's per-target temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("model-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A request capturing every hook of an `n_layer`-layer model.
pub fn capture_all(n_layer: usize) -> RunRequest {
    RunRequest::capture(HookPoint::all(n_layer))
}
