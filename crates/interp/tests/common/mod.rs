//! Shared fixtures: random models with scaled weights (so that every component matters), tiny
//! generated datasets, three prompts with corruptions, and scratch folders. Each test file uses
//! a part of them.
#![allow(dead_code)]

use interp::metric::TokenSets;
use interp::tokens::PromptBatch;
use model::{Checkpoint, GptConfig};
use std::path::PathBuf;
use tasks::{ComparisonParams, CompositionParams, Dataset, TaskSpec};
use tch::{Device, Tensor};

/// A model of `n_layer` distinct blocks (n_ctx 8, d_model 32, 4 heads, d_mlp 64) over
/// `vocab_size` tokens.
pub fn config(vocab_size: usize, n_layer: usize) -> GptConfig {
    GptConfig {
        vocab_size,
        n_ctx: 8,
        d_model: 32,
        n_head: 4,
        d_mlp: 64,
        n_blocks: n_layer,
        schedule: (0..n_layer).collect(),
        dropout: 0.0,
        ln_eps: 1e-5,
    }
}

/// A random model of `cfg` drawn with `seed`, each variable then changed in place by
/// `rescale(name, variable)`. Tiny models run fastest on one intra-op thread (and tests run in
/// parallel).
pub fn random_model(cfg: GptConfig, seed: i64, rescale: impl Fn(&str, &mut Tensor)) -> Checkpoint {
    tch::set_num_threads(1);
    tch::manual_seed(seed);
    let ckpt = Checkpoint::new(cfg, Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in ckpt.vs.variables() {
            rescale(&name, &mut t);
        }
    });
    ckpt
}

/// Multiplies every variable but the LayerNorms' by `factor`.
pub fn scale_all_but_ln(factor: f64) -> impl Fn(&str, &mut Tensor) {
    move |name, t| {
        if !name.contains("ln_") {
            let _ = t.f_mul_scalar_(factor).unwrap();
        }
    }
}

/// A 2-layer model (vocab 19, n_ctx 6, d_model 16, 2 heads) with its non-LayerNorm weights
/// scaled ×8 so that its outputs depend strongly on its inputs.
pub fn tiny_model() -> Checkpoint {
    let cfg = GptConfig {
        vocab_size: 19,
        n_ctx: 6,
        d_model: 16,
        n_head: 2,
        d_mlp: 32,
        ..config(19, 2)
    };
    random_model(cfg, 5, scale_all_but_ln(8.0))
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

/// A small two-hop composition dataset (40 entities, 8 relations) whose prompt samples in
/// test.json hold `test_size` examples.
pub fn composition_with(test_size: usize) -> Dataset {
    let spec = TaskSpec::Composition(CompositionParams {
        entities: 40,
        relations: 8,
        out_degree: 4,
        hops: 2,
        phi: 3.0,
        test_size,
        ..CompositionParams::default()
    });
    Dataset::generate(&spec, 3).unwrap()
}

/// [`composition_with`] 40 test examples.
pub fn composition() -> Dataset {
    composition_with(40)
}

/// A small comparison dataset (30 entities, 3 attributes of 6 values).
pub fn comparison() -> Dataset {
    let spec = TaskSpec::Comparison(ComparisonParams {
        entities: 30,
        attributes: 3,
        values: 6,
        phi: 2.0,
        test_size: 40,
        ..ComparisonParams::default()
    });
    Dataset::generate(&spec, 5).unwrap()
}

/// An empty scratch folder `name`, unique to this test binary and process.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "interp-{}-{}-{name}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
