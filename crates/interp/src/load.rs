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

/// The fingerprint of the data a checkpoint file was trained on: its
/// [`model::DATA_FINGERPRINT_KEY`] metadata entry, else the `data_fingerprint` of the
/// `state.json` beside it (checkpoints written before the model file recorded it); `None` when
/// neither exists (imported or hand-made checkpoints).
pub fn recorded_fingerprint(
    checkpoint: &Path,
    metadata: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    if let Some(fp) = metadata.get(model::DATA_FINGERPRINT_KEY) {
        return Some(fp.clone());
    }
    let state = checkpoint.parent()?.join("state.json");
    let value: serde_json::Value = serde_json::from_str(&fs::read_to_string(state).ok()?).ok()?;
    Some(value.get("data_fingerprint")?.as_str()?.to_string())
}

/// Checks that `data` (whose [`tasks::Dataset::fingerprint`] is `fingerprint`) is the dataset
/// the checkpoint file was trained on, by [`recorded_fingerprint`]; a checkpoint that records no
/// fingerprint passes. With `allow_other` a mismatch passes too (a deliberate transfer
/// experiment).
pub fn check_trained_on(
    checkpoint: &Path,
    metadata: &std::collections::BTreeMap<String, String>,
    data: &tasks::Dataset,
    fingerprint: &str,
    allow_other: bool,
) -> Result<()> {
    match recorded_fingerprint(checkpoint, metadata) {
        Some(recorded) if recorded != fingerprint && !allow_other => {
            Err(InterpError::DataMismatch {
                checkpoint: checkpoint.to_path_buf(),
                dataset_dir: data.dir.clone(),
                recorded,
                actual: fingerprint.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// Loads a checkpoint and its dataset (see [`resolve_data_dir`]) and checks that the checkpoint
/// was trained on that data ([`check_trained_on`]; `allow_other_data` accepts other data with the
/// same vocabulary size).
pub fn open(
    checkpoint: &Path,
    data: Option<&Path>,
    allow_other_data: bool,
    device: tch::Device,
) -> Result<Opened> {
    let ckpt = model::Checkpoint::load(checkpoint, device)?;
    let data_dir = resolve_data_dir(checkpoint, data)?;
    let data = tasks::Dataset::load(&data_dir)?;
    check_compatible(&ckpt.config, &data, 0)?;
    let fingerprint = data.fingerprint();
    check_trained_on(
        checkpoint,
        &ckpt.metadata,
        &data,
        &fingerprint,
        allow_other_data,
    )?;
    let step = checkpoint_step(checkpoint, &ckpt.metadata);
    Ok(Opened {
        checkpoint: ckpt,
        data,
        path: checkpoint.to_path_buf(),
        step,
    })
}

/// The checkpoints of a run folder: `(step, RUN/step-N/model.safetensors)` ascending by step.
/// An error when there is none (or no such folder).
pub fn list_checkpoints(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = fs::read_dir(run).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => InterpError::NoCheckpoints(run.to_path_buf()),
        _ => InterpError::io(run, e),
    })?;
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
