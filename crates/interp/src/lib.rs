//! `interp`: the analyses of "Grokked Transformers are Implicit Reasoners" (paper-spec §5) on
//! grokscope checkpoints — logit lens, activation patching (batched), attribution patching, the
//! effect of corruptions on intermediate states, and sweeps over every checkpoint of a run.
//!
//! ```
//! use interp::metric::{Metric, TokenSets};
//! use interp::tokens::{lens, patch, resid_targets, Direction, PatchOptions, PromptBatch};
//! use interp::{LnMode, Net};
//! let ckpt = model::Checkpoint::new(model::GptConfig::new(16, 8, 32, 4, 2), tch::Device::Cpu)?;
//! let net = Net::new(&ckpt.model);
//! // Two prompts, their corrupted versions, answers and alternatives as token ids.
//! let clean = tch::Tensor::from_slice(&[1i64, 5, 9, 2, 6, 9]).view([2, 3]);
//! let corrupted = tch::Tensor::from_slice(&[3i64, 5, 9, 4, 6, 9]).view([2, 3]);
//! let sets = TokenSets::from_rows(&[vec![7], vec![8]], &[vec![10], vec![11]])?;
//! let batch = PromptBatch::new(clean, Some(corrupted), None, sets)?;
//! let by_layer = lens(&net, &batch, &Metric::ReciprocalRank, LnMode::Recompute, None)?;
//! assert_eq!(by_layer.layers, [0, 1, 2]);
//! let targets = resid_targets(net.n_layer(), &[0, 1, 2]);
//! let opts = PatchOptions::new(Direction::Noising);
//! let patched = patch(&net, &batch, &targets, &Metric::LogitDiff, &opts)?;
//! assert_eq!(patched.summary().len(), 3 * 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Conventions (see docs/interp.md):
//! - layer `l` is the residual stream entering block `l` (`resid_pre[l]`, the paper's `S[l, ·]`):
//!   0 = embeddings, `L` = output of the last block before ln_final;
//! - positions are named by their role in the prompt (`h, r1, r2` / `a, q, e1, mask, e2`);
//! - ranks are 0-based over the whole vocabulary; MRR = mean(1 / (rank + 1)).

pub mod attention;
pub mod attribution;
pub mod cache_helpers;
pub mod circuit;
pub mod corruption;
pub mod dla;
pub mod effect;
pub mod error;
pub mod export;
pub mod lens;
pub mod linear_probe;
pub mod load;
pub mod metric;
pub mod net;
pub mod output;
pub mod patch;
pub mod prompt_sample;
pub mod states;
pub mod stats;
pub mod tokens;
pub mod trace;
pub mod tuned_lens;

pub use attention::{attention_patterns, AttentionResult};
pub use attribution::{attribution_patching, AttributionOptions, AttributionResult};
pub use cache_helpers::{ActivationCache, LabelledStack};
pub use dla::{direct_logit_attribution, DlaComponent, DlaResult};
pub use effect::state_effect;
pub use error::{InterpError, Result};
pub use export::{export_activations, resolve_hooks};
pub use lens::{all_targets, default_targets, logit_lens, LensResult, TargetSpec};
pub use linear_probe::{linear_probes, LinearProbeOptions, LinearProbeResult};
pub use net::{LnMode, Net};
pub use patch::{
    patch_sweep, CellGrid, ComponentKind, Direction, PatchResult, PositionChoice, SweepMode,
    SweepOptions,
};
pub use prompt_sample::{
    default_corruptions, read_example_indices, CorruptionSpec, PromptSample, SampleSpec,
};
pub use trace::{trace, TraceOptions, TraceSummary};
