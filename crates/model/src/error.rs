//! Errors of the `model` crate: every failure a caller can cause (bad config, bad tokens, bad hook
//! names, bad interventions, bad checkpoints) is a value of [`ModelError`], never a panic.

use std::path::PathBuf;

/// Result type of the `model` crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Everything that can go wrong in the `model` crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model configuration is inconsistent (sizes, schedule, dropout, ...).
    #[error("invalid model config: {0}")]
    Config(String),
    /// A hook name that is not one of the TransformerLens names this model has.
    #[error("unknown hook `{name}`: {reason}")]
    UnknownHook { name: String, reason: String },
    /// A token id outside `0..vocab_size`.
    #[error("token id {id} is out of range for a vocabulary of {vocab_size} tokens")]
    TokenOutOfRange { id: i64, vocab_size: usize },
    /// A sequence longer than the model's context.
    #[error("sequence length {len} exceeds the model's context n_ctx = {n_ctx}")]
    SequenceTooLong { len: usize, n_ctx: usize },
    /// A tensor handed to the model has the wrong rank, size or kind.
    #[error("invalid input: {0}")]
    Input(String),
    /// A capture or intervention request that cannot be carried out.
    #[error("hook {hook}: {msg}")]
    Hook { hook: String, msg: String },
    /// Tensors the config expects are absent from a checkpoint.
    #[error("{}: missing tensor(s) {}", path.display(), list(names))]
    MissingTensors { path: PathBuf, names: Vec<String> },
    /// A checkpoint holds tensors the config does not expect.
    #[error("{}: unexpected tensor(s) {}", path.display(), list(names))]
    ExtraTensors { path: PathBuf, names: Vec<String> },
    /// A checkpoint tensor with the wrong shape.
    #[error("{}: tensor `{name}` has shape {found:?}, expected {expected:?}", path.display())]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    /// Any other problem with a checkpoint file or a Hugging Face folder.
    #[error("{}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },
    /// A filesystem error, with the path it happened on.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A surgery operation that does not fit the checkpoint's schedule.
    #[error("surgery: {0}")]
    Surgery(String),
    /// The model cannot be written as a Hugging Face GPT-2 folder.
    #[error("export to Hugging Face format: {0}")]
    Export(String),
    /// An error reported by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

impl ModelError {
    /// An [`ModelError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> ModelError {
        ModelError::Io {
            path: path.into(),
            error,
        }
    }

    /// A [`ModelError::Checkpoint`] for `path`.
    pub(crate) fn checkpoint(path: impl Into<PathBuf>, msg: impl Into<String>) -> ModelError {
        ModelError::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// A [`ModelError::Hook`] for `hook`.
    pub(crate) fn hook(hook: impl ToString, msg: impl Into<String>) -> ModelError {
        ModelError::Hook {
            hook: hook.to_string(),
            msg: msg.into(),
        }
    }
}

/// `a`, `b`, `c` and 2 more.
fn list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut out = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}
