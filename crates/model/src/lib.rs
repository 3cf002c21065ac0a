//! `model`: a pre-LayerNorm GPT-2 decoder in tch with TransformerLens hook points,
//! interventions, block schedules (plain, shared, looped), layer surgery and safetensors
//! checkpoints with Hugging Face GPT-2 names (export to and import from HF folders).
//!
//! ```
//! use model::{Checkpoint, GptConfig, HookPoint, RunRequest};
//! // A 2-layer GPT-2 over 16 tokens; capture the residual stream after the last block.
//! let ckpt = Checkpoint::new(GptConfig::new(16, 8, 32, 4, 2), tch::Device::Cpu)?;
//! let tokens = tch::Tensor::from_slice(&[1i64, 5, 9]).view([1, 3]);
//! let out = ckpt.model.run(&tokens, &RunRequest::capture([HookPoint::ResidPost(1)]))?;
//! assert_eq!(out.logits.size(), [1, 3, 16]);
//! assert_eq!(out.cache[&HookPoint::ResidPost(1)].size(), [1, 3, 32]);
//! assert_eq!(HookPoint::ResidPost(1).to_string(), "blocks.1.hook_resid_post");
//! # Ok::<(), model::ModelError>(())
//! ```
//!
//! Entry points: [`GptConfig`] → [`Gpt::new`] (or [`Checkpoint::new`] / [`Checkpoint::load`]);
//! training uses [`Gpt::hidden_at`] (or [`Gpt::hidden_t`]) + [`Gpt::unembed`]; interpretability
//! uses [`Gpt::run`] and [`Gpt::run_from`] with a [`RunRequest`], and [`Gpt::run_suffix`] for runs
//! that differ from a base run only after a prefix. All run one forward pass (`docs/model.md`).

mod attention;
mod block;
mod config;
mod conv1d;
pub mod device;
mod embed;
mod error;
mod gelu;
mod gpt;
pub mod hf;
pub mod hooks;
mod layer_norm;
mod mlp;
mod model_file;
mod readout;
pub mod surgery;
pub mod token_map;

pub use attention::{Attention, KeyValues};
pub use block::Block;
pub use config::{check_schedule, looped_schedule, plain_schedule, shared_schedule, GptConfig};
pub use conv1d::Conv1D;
pub use embed::Embed;
pub use error::{ModelError, Result};
pub use gpt::{decayed_param_names, is_decayed, Gpt};
pub use hf::{export_hf, import_hf, HfLayout};
pub use hooks::{glob_match, Edit, HookPoint, Intervention, LogitPositions, RunOutput, RunRequest};
pub use layer_norm::{layer_norm_scale, LayerNorm};
pub use mlp::Mlp;
pub use model_file::{
    check_finite_file, param_shapes, write_safetensors, Checkpoint, CONFIG_KEY,
    DATA_FINGERPRINT_KEY,
};
pub use readout::gold_rank;
pub use surgery::{SurgeryOp, SurgeryPlan};

/// Standard deviation of the GPT-2 weight initialisation.
pub const INIT_STD: f64 = 0.02;

/// tch parameter group of the parameters that get weight decay (weights of embeddings, c_attn,
/// c_proj, c_fc); use with `Optimizer::set_weight_decay_group`.
pub const DECAY_GROUP: usize = 1;

/// tch parameter group of the parameters without weight decay (LayerNorm weights and all biases).
pub const NO_DECAY_GROUP: usize = 0;
