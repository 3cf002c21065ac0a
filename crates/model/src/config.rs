//! Model configuration and block schedules.
//!
//! A model has `n_blocks` distinct parameter blocks (`transformer.h.{0..n_blocks}`) and a
//! `schedule`: the blocks applied in order. The hook layer index is the position in the schedule,
//! so `blocks.5.hook_resid_post` of the shared schedule `[0,1,2,3,0,1,2,3]` is the output of
//! parameter block 1 on its second application.

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// Sizes and schedule of a GPT-2 decoder. Stored as JSON in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Number of token embeddings (rows of `wte`, columns of the logits).
    pub vocab_size: usize,
    /// Maximum sequence length (rows of `wpe`).
    pub n_ctx: usize,
    /// Residual stream width.
    pub d_model: usize,
    /// Attention heads per block; `d_model` must be a multiple of it.
    pub n_head: usize,
    /// Hidden width of the MLP.
    pub d_mlp: usize,
    /// Distinct parameter blocks `transformer.h.{0..n_blocks}`.
    pub n_blocks: usize,
    /// Blocks applied in order; hook layer index = position in this list.
    pub schedule: Vec<usize>,
    /// Dropout probability for embeddings, attention weights and residual outputs (training only).
    pub dropout: f64,
    /// LayerNorm epsilon (every LayerNorm, `ln_f` included).
    pub ln_eps: f64,
}

impl GptConfig {
    /// A plain GPT-2 of `n_layer` distinct blocks applied once each, with HF `gpt2` defaults:
    /// `d_mlp = 4 · d_model`, dropout 0.1, LayerNorm epsilon 1e-5.
    pub fn new(
        vocab_size: usize,
        n_ctx: usize,
        d_model: usize,
        n_head: usize,
        n_layer: usize,
    ) -> GptConfig {
        GptConfig {
            vocab_size,
            n_ctx,
            d_model,
            n_head,
            d_mlp: 4 * d_model,
            n_blocks: n_layer,
            schedule: plain_schedule(n_layer),
            dropout: 0.1,
            ln_eps: 1e-5,
        }
    }

    /// The same sizes with `n_blocks` blocks applied `repeats` times in sequence
    /// (the paper's parameter sharing: `shared(4, 2)` gives `[0,1,2,3,0,1,2,3]`).
    pub fn shared(self, n_blocks: usize, repeats: usize) -> GptConfig {
        GptConfig {
            n_blocks,
            schedule: shared_schedule(n_blocks, repeats),
            ..self
        }
    }

    /// The same sizes with one block applied `times` times (`[0, 0, ..., 0]`).
    pub fn looped(self, times: usize) -> GptConfig {
        GptConfig {
            n_blocks: 1,
            schedule: looped_schedule(times),
            ..self
        }
    }

    /// The same sizes with an arbitrary schedule over `n_blocks` blocks.
    pub fn with_schedule(self, n_blocks: usize, schedule: Vec<usize>) -> GptConfig {
        GptConfig {
            n_blocks,
            schedule,
            ..self
        }
    }

    /// Number of layers = number of schedule entries.
    pub fn n_layer(&self) -> usize {
        self.schedule.len()
    }

    /// Width of one attention head: `d_model / n_head`.
    pub fn d_head(&self) -> usize {
        self.d_model / self.n_head.max(1)
    }

    /// True when the schedule is `0..n_blocks`, each block applied once in order.
    pub fn is_plain(&self) -> bool {
        self.schedule.len() == self.n_blocks
            && self.schedule.iter().enumerate().all(|(i, &b)| i == b)
    }

    /// Checks sizes and schedule: every size positive, `d_model % n_head == 0`, every schedule
    /// entry below `n_blocks`, every block used at least once, dropout in `[0, 1)`, `ln_eps > 0`.
    pub fn validate(&self) -> Result<()> {
        let err = |msg: String| Err(ModelError::Config(msg));
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("n_ctx", self.n_ctx),
            ("d_model", self.d_model),
            ("n_head", self.n_head),
            ("d_mlp", self.d_mlp),
            ("n_blocks", self.n_blocks),
        ] {
            if value == 0 {
                return err(format!("{name} must be positive"));
            }
            if i64::try_from(value).is_err() {
                return err(format!("{name} = {value} is too large"));
            }
        }
        if !self.d_model.is_multiple_of(self.n_head) {
            return err(format!(
                "d_model = {} is not a multiple of n_head = {}",
                self.d_model, self.n_head
            ));
        }
        check_schedule(&self.schedule, self.n_blocks).map_err(ModelError::Config)?;
        if !(0.0..1.0).contains(&self.dropout) {
            return err(format!("dropout = {} must be in [0, 1)", self.dropout));
        }
        if !(self.ln_eps > 0.0 && self.ln_eps.is_finite()) {
            return err(format!("ln_eps = {} must be positive", self.ln_eps));
        }
        Ok(())
    }
}

/// `[0, 1, ..., n_blocks - 1]`: every block once, in order.
pub fn plain_schedule(n_blocks: usize) -> Vec<usize> {
    (0..n_blocks).collect()
}

/// `0..n_blocks` repeated `repeats` times: `shared_schedule(4, 2) = [0,1,2,3,0,1,2,3]`.
pub fn shared_schedule(n_blocks: usize, repeats: usize) -> Vec<usize> {
    (0..repeats).flat_map(|_| 0..n_blocks).collect()
}

/// Block 0 applied `times` times: `looped_schedule(3) = [0, 0, 0]`.
pub fn looped_schedule(times: usize) -> Vec<usize> {
    vec![0; times]
}

/// Checks a block schedule over `n_blocks` distinct blocks: not empty, every entry below
/// `n_blocks`, every block used at least once. The error says which rule failed.
pub fn check_schedule(schedule: &[usize], n_blocks: usize) -> std::result::Result<(), String> {
    if schedule.is_empty() {
        return Err("the schedule is empty: a model needs at least one layer".into());
    }
    if let Some(&b) = schedule.iter().find(|&&b| b >= n_blocks) {
        return Err(format!(
            "schedule {schedule:?} uses block {b}, but there are only {n_blocks} blocks"
        ));
    }
    if let Some(unused) = (0..n_blocks).find(|b| !schedule.contains(b)) {
        return Err(format!(
            "schedule {schedule:?} never uses block {unused} of {n_blocks}"
        ));
    }
    Ok(())
}
