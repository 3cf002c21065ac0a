//! Typed errors of the interpretability crate.

use std::path::PathBuf;

/// Everything that can go wrong in `interp`. Every variant is a user-fixable condition or a
/// failure of a lower layer (model, tasks, IO) passed through with its context.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// The checkpoint's vocabulary is not the dataset's (wrong checkpoint for the data).
    #[error(
        "checkpoint and dataset do not match: the checkpoint has a vocabulary of {checkpoint} tokens \
         but the dataset {dataset_dir} has {dataset} (pass the dataset the checkpoint was trained on)"
    )]
    VocabMismatch {
        checkpoint: usize,
        dataset: usize,
        dataset_dir: PathBuf,
    },
    /// The checkpoint records a data fingerprint other than the dataset's.
    #[error(
        "{} was trained on other data than {} (data fingerprint {recorded}, this dataset's is \
         {actual}): pass the dataset it was trained on with --data, or --allow-other-data for a \
         deliberate transfer experiment",
        checkpoint.display(),
        dataset_dir.display()
    )]
    DataMismatch {
        checkpoint: PathBuf,
        dataset_dir: PathBuf,
        recorded: String,
        actual: String,
    },
    /// The probe prompts are longer than the model's context.
    #[error("probe prompts have {len} tokens but the checkpoint's context is only {n_ctx}")]
    ContextTooShort { len: usize, n_ctx: usize },
    /// A role name the task does not define.
    #[error("the task has no role `{role}` (available: {available})")]
    UnknownRole { role: String, available: String },
    /// A position name that is not a position of the probe prompts.
    #[error("no position `{position}` in the probe prompts (positions: {available})")]
    UnknownPosition { position: String, available: String },
    /// A layer outside `0..=n_layer`.
    #[error("layer {layer} is out of range: this model has layers 0..={max}")]
    LayerOutOfRange { layer: usize, max: usize },
    /// A split the dataset does not have.
    #[error("the dataset has no split `{split}` (splits: {available})")]
    UnknownSplit { split: String, available: String },
    /// The requested prompt sample is empty.
    #[error("the prompt sample is empty: split `{split}` has no usable examples")]
    EmptyProbeSet { split: String },
    /// Examples of different prompt shapes in one prompt sample.
    #[error(
        "split `{split}` mixes prompts of different shapes ({first} vs {other}); pick a split whose \
         prompts all have the same roles, e.g. train_inferred"
    )]
    MixedPromptShapes {
        split: String,
        first: String,
        other: String,
    },
    /// No sampled prompt admits the requested corruption.
    #[error("no example of the prompt sample admits the corruption `{corruption}`")]
    NoCorruptedExamples { corruption: String },
    /// A malformed command-line specification (target, corruption, layer list, ...).
    #[error("invalid {what} `{value}`: {reason}")]
    BadSpec {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// A run folder without `step-*/model.safetensors` files.
    #[error("no checkpoints found in {0} (expected step-<N>/model.safetensors)")]
    NoCheckpoints(PathBuf),
    /// A requested step with no checkpoint in the run.
    #[error("the run {run} has no checkpoint for step {step} (steps: {available})")]
    UnknownStep {
        run: PathBuf,
        step: u64,
        available: String,
    },
    /// `--data` omitted and the run folder does not record a dataset.
    #[error(
        "no dataset given and none recorded for {checkpoint}: pass --data DIR (looked for \
         data_dir in {config})"
    )]
    NoDataDir {
        checkpoint: PathBuf,
        config: PathBuf,
    },
    /// A malformed file (run config, metrics.csv, ...).
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error(transparent)]
    Tasks(#[from] tasks::TaskError),
    #[error("libtorch: {0}")]
    Tch(#[from] tch::TchError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = InterpError> = std::result::Result<T, E>;

impl InterpError {
    /// Wraps an IO error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        InterpError::Io {
            path: path.into(),
            source,
        }
    }

    /// A malformed specification given by the user.
    pub fn spec(what: &'static str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        InterpError::BadSpec {
            what,
            value: value.into(),
            reason: reason.into(),
        }
    }
}
