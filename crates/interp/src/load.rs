//! Opening a checkpoint with its dataset, and listing the checkpoints of a run folder.

use crate::error::{InterpError, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// File name of a checkpoint's model inside `RUN/step-N/`.
pub const MODEL_FILE: &str = "model.safetensors";

/// A checkpoint with the dataset it is analysed on.
pub struct Opened {
    pub checkpoint: model::Checkpoint,
    pub data: tasks::Dataset,
    /// The checkpoint file.
    pub path: PathBuf,
    /// Training step: from the `step-N` folder name, else the `step` metadata entry, else 0.
    pub step: u64,
}

/// The dataset folder of a checkpoint: `data` when given; otherwise, for a checkpoint at
/// `RUN/step-N/model.safetensors`, the `data_dir` recorded in `RUN/config.json` (relative paths
/// are tried from the working directory, then from `RUN`).
pub fn resolve_data_dir(checkpoint: &Path, data: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = data {
        return Ok(d.to_path_buf());
    }
    let run = checkpoint
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new(""));
    let config = run.join("config.json");
    let missing = || InterpError::NoDataDir {
        checkpoint: checkpoint.to_path_buf(),
        config: config.clone(),
    };
    let text = fs::read_to_string(&config).map_err(|_| missing())?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| InterpError::Json {
            path: config.clone(),
            source,
        })?;
    let dir = value
        .get("data_dir")
        .and_then(|v| v.as_str())
        .ok_or_else(missing)?;
    let dir = PathBuf::from(dir);
    if dir.is_absolute() || dir.exists() {
        return Ok(dir);
    }
    let from_run = run.join(&dir);
    Ok(if from_run.exists() { from_run } else { dir })
}

/// The training step of a checkpoint file: the `N` of a `step-N` parent folder, else the `step`
/// metadata entry, else 0.
pub fn checkpoint_step(path: &Path, metadata: &std::collections::BTreeMap<String, String>) -> u64 {
    path.parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("step-"))
        .and_then(|n| n.parse().ok())
        .or_else(|| metadata.get("step").and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// Checks that a checkpoint can read a dataset: its vocabulary has exactly the dataset's size
/// (grokscope models use the task's own vocabulary) and its context holds `seq_len` tokens.
pub fn check_compatible(
    config: &model::GptConfig,
    data: &tasks::Dataset,
    seq_len: usize,
) -> Result<()> {
    let vocab = data.vocab.len();
    if config.vocab_size != vocab {
        return Err(InterpError::VocabMismatch {
            checkpoint: config.vocab_size,
            dataset: vocab,
            dataset_dir: data.dir.clone(),
        });
    }
    if seq_len > config.n_ctx {
        return Err(InterpError::ContextTooShort {
            len: seq_len,
            n_ctx: config.n_ctx,
        });
    }
    Ok(())
}

/// Loads a checkpoint and its dataset (see [`resolve_data_dir`]) and checks the vocabulary.
pub fn open(checkpoint: &Path, data: Option<&Path>, device: tch::Device) -> Result<Opened> {
    let ckpt = model::Checkpoint::load(checkpoint, device)?;
    let data_dir = resolve_data_dir(checkpoint, data)?;
    let data = tasks::Dataset::load(&data_dir)?;
    check_compatible(&ckpt.config, &data, 0)?;
    let step = checkpoint_step(checkpoint, &ckpt.metadata);
    Ok(Opened {
        checkpoint: ckpt,
        data,
        path: checkpoint.to_path_buf(),
        step,
    })
}

/// The checkpoints of a run folder: `(step, RUN/step-N/model.safetensors)` ascending by step.
/// An error when there is none.
pub fn list_checkpoints(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = fs::read_dir(run).map_err(|e| InterpError::io(run, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| InterpError::io(run, e))?;
        let name = entry.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let file = entry.path().join(MODEL_FILE);
        if file.is_file() {
            out.push((step, file));
        }
    }
    if out.is_empty() {
        return Err(InterpError::NoCheckpoints(run.to_path_buf()));
    }
    out.sort();
    Ok(out)
}
