//! Shared fixtures: a tiny random 2-layer model and three prompts with corruptions.

use interp::metric::TokenSets;
use interp::tokens::PromptBatch;
use model::{Checkpoint, GptConfig};
use tch::{Device, Tensor};

/// A 2-layer model (vocab 19, d_model 16, 2 heads) with its non-LayerNorm weights scaled ×8 so
/// that its outputs depend strongly on its inputs.
pub fn tiny_model() -> Checkpoint {
    tch::set_num_threads(1);
    tch::manual_seed(5);
    let cfg = GptConfig {
        vocab_size: 19,
        n_ctx: 6,
        d_model: 16,
        n_head: 2,
        d_mlp: 32,
        n_blocks: 2,
        schedule: vec![0, 1],
        dropout: 0.0,
        ln_eps: 1e-5,
    };
    let ckpt = Checkpoint::new(cfg, Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in ckpt.vs.variables() {
            if !name.contains("ln_") {
                let _ = t.f_mul_scalar_(8.0).unwrap();
            }
        }
    });
    ckpt
}

/// Three prompts of 4 tokens whose corruption changes position 1 (and 2 in the last row).
pub fn batch() -> PromptBatch {
    let clean = Tensor::from_slice(&[1i64, 4, 7, 2, 3, 5, 8, 2, 6, 9, 0, 2]).view([3, 4]);
    let corrupted = Tensor::from_slice(&[1i64, 11, 7, 2, 3, 12, 8, 2, 6, 13, 14, 2]).view([3, 4]);
    let sets = TokenSets::from_rows(
        &[vec![10], vec![15, 16], vec![17]],
        &[vec![18], vec![1], vec![2, 3]],
    )
    .unwrap();
    PromptBatch::new(clean, Some(corrupted), None, sets).unwrap()
}
