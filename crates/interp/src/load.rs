//! Opening a checkpoint with its dataset, and listing the checkpoints of a run folder.

use crate::error::{InterpError, Result};
use model::token_map::{RankOver, TOKEN_ROWS_KEY};
use std::fs;
use std::path::{Path, PathBuf};

/// File name of a checkpoint's model inside `RUN/step-N/`.
pub const MODEL_FILE: &str = "model.safetensors";

/// A checkpoint with the dataset it is analysed on.
pub struct Opened {
    /// The checkpoint, its vocabulary fitted to the dataset's ([`load_fitted`]).
    pub checkpoint: model::Checkpoint,
    pub data: tasks::Dataset,
    /// The rows ranks are taken over.
    pub rank_over: RankOver,
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

/// The training step of a checkpoint: the `N` of a `checkpoint-N` folder (the paper's runs) or of a
/// `step-N` parent folder (grokscope's), else the `step` metadata entry, else 0.
pub fn checkpoint_step(path: &Path, metadata: &std::collections::BTreeMap<String, String>) -> u64 {
    let number = |p: &Path, prefix: &str| -> Option<u64> {
        p.file_name()?.to_str()?.strip_prefix(prefix)?.parse().ok()
    };
    number(path, "checkpoint-")
        .or_else(|| path.parent().and_then(|p| number(p, "step-")))
        .or_else(|| metadata.get("step").and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// Checks that a checkpoint can read a dataset: its vocabulary has exactly the dataset's size
/// (grokscope models use the task's own vocabulary), or more when a token map fitted its first
/// rows to the dataset's tokens ([`load_fitted`] with [`RankOver::All`]), and its context holds
/// `seq_len` tokens.
pub fn check_compatible(
    checkpoint: &model::Checkpoint,
    data: &tasks::Dataset,
    seq_len: usize,
) -> Result<()> {
    let config = &checkpoint.config;
    let vocab = data.vocab.len();
    let fitted_superset =
        checkpoint.metadata.contains_key(TOKEN_ROWS_KEY) && config.vocab_size > vocab;
    if config.vocab_size != vocab && !fitted_superset {
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

/// Loads the checkpoint at `path` onto `device` with its vocabulary fitted to `data`'s
/// ([`model::Checkpoint::fit_vocabulary`]: the paper's 52k-row checkpoints re-rowed so that row `i`
/// is the dataset's token `i`), and the rank universe used (`rank_over`, or the checkpoint's
/// default); checks the vocabulary.
pub fn load_fitted(
    path: &Path,
    data: &tasks::Dataset,
    device: tch::Device,
    rank_over: Option<RankOver>,
) -> Result<(model::Checkpoint, RankOver)> {
    let ckpt = match hf_folder(path) {
        Some(dir) => model::import_hf(dir, device, Some(data.vocab.file_tokens()))?,
        None if path.is_dir() => model::Checkpoint::load(path.join(MODEL_FILE), device)?,
        None => model::Checkpoint::load(path, device)?,
    };
    let (ckpt, rank_over) = ckpt.fit_vocabulary(&data.vocab.tokens(), rank_over)?;
    check_compatible(&ckpt, data, 0)?;
    Ok((ckpt, rank_over))
}

/// The Hugging Face folder (one with `config.json`, such as the paper's `checkpoint-<step>`
/// folders) that `path` is, or whose `model.safetensors` / `pytorch_model.bin` it is, if any.
pub fn hf_folder(path: &Path) -> Option<&Path> {
    let weights = ["model.safetensors", "pytorch_model.bin"];
    let dir = match path.file_name().and_then(|n| n.to_str()) {
        _ if path.is_dir() => path,
        Some(name) if weights.contains(&name) => path.parent()?,
        _ => return None,
    };
    dir.join("config.json").is_file().then_some(dir)
}

/// Loads a checkpoint and its dataset (see [`resolve_data_dir`]), fitted as in [`load_fitted`],
/// and checks that the checkpoint was trained on that data ([`check_trained_on`];
/// `allow_other_data` accepts other data whose tokens the checkpoint has).
pub fn open(
    checkpoint: &Path,
    data: Option<&Path>,
    allow_other_data: bool,
    device: tch::Device,
    rank_over: Option<RankOver>,
) -> Result<Opened> {
    let data_dir = resolve_data_dir(checkpoint, data)?;
    let data = tasks::Dataset::load(&data_dir)?;
    let (ckpt, rank_over) = load_fitted(checkpoint, &data, device, rank_over)?;
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
        rank_over,
        path: checkpoint.to_path_buf(),
        step,
    })
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

/// One line saying which rows ranks are taken over, for a command's output.
pub fn describe_rank_universe(checkpoint: &model::Checkpoint, rank_over: RankOver) -> String {
    let rows = checkpoint.config.vocab_size;
    match rank_over {
        RankOver::All => {
            format!("ranks over all {rows} rows of the checkpoint's vocabulary (--rank-over all)")
        }
        RankOver::Task => format!("ranks over the task's {rows} tokens (--rank-over task)"),
    }
}

/// The checkpoints of a run folder: `(step, RUN/step-N/model.safetensors)` of a grokscope run, or
/// `(step, RUN/checkpoint-N)` of the paper's (Hugging Face folders with `config.json`), ascending
/// by step. An error when there is none.
pub fn list_checkpoints(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = fs::read_dir(run).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => InterpError::NoCheckpoints(run.to_path_buf()),
        _ => InterpError::io(run, e),
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| InterpError::io(run, e))?;
        let name = entry.file_name();
        let step_of = |prefix: &str| name.to_str()?.strip_prefix(prefix)?.parse::<u64>().ok();
        if let Some(step) = step_of("step-") {
            let file = entry.path().join(MODEL_FILE);
            if file.is_file() {
                out.push((step, file));
            }
        } else if let Some(step) = step_of("checkpoint-") {
            if entry.path().join("config.json").is_file() {
                out.push((step, entry.path()));
            }
        }
    }
    if out.is_empty() {
        return Err(InterpError::NoCheckpoints(run.to_path_buf()));
    }
    out.sort();
    Ok(out)
}

/// How token strings of a prompt file become rows of a checkpoint's embedding.
pub enum TokenLookup {
    /// The checkpoint's own token map (the paper's checkpoints: GPT-2 rows plus the task's).
    Map(model::token_map::TokenMap),
    /// The `vocab.json` of the dataset the checkpoint was trained on (grokscope's checkpoints).
    Vocab(tasks::Vocab),
    /// No vocabulary found: prompts must give integer ids.
    IdsOnly,
}

impl TokenLookup {
    /// The row of a token string.
    pub fn row(&self, token: &str) -> Option<i64> {
        match self {
            TokenLookup::Map(map) => map.row(token),
            TokenLookup::Vocab(vocab) => vocab.get(token).map(i64::from),
            TokenLookup::IdsOnly => None,
        }
    }
}

/// A checkpoint opened for prompt files: no dataset, only a way to read token strings.
pub struct PromptModel {
    pub checkpoint: model::Checkpoint,
    pub lookup: TokenLookup,
    pub path: PathBuf,
    pub step: u64,
}

/// Loads a checkpoint (a grokscope file, or a Hugging Face folder such as the paper's) with the
/// token lookup of its prompts: the token map it carries, else the `vocab.json` of `data` or of
/// the dataset recorded in its run's `config.json`, else ids only. Rows are the checkpoint's own
/// (nothing is re-rowed), so ranks run over its whole vocabulary.
pub fn open_for_prompts(
    path: &Path,
    data: Option<&Path>,
    device: tch::Device,
) -> Result<PromptModel> {
    let checkpoint = match hf_folder(path) {
        Some(dir) => model::import_hf(dir, device, None)?,
        None if path.is_dir() => model::Checkpoint::load(path.join(MODEL_FILE), device)?,
        None => model::Checkpoint::load(path, device)?,
    };
    let lookup = match model::token_map::TokenMap::from_metadata(&checkpoint.metadata, path)? {
        Some(map) => TokenLookup::Map(map),
        None => match resolve_data_dir(path, data) {
            Ok(dir) => TokenLookup::Vocab(read_vocab(&dir.join("vocab.json"))?),
            Err(_) => TokenLookup::IdsOnly,
        },
    };
    let step = checkpoint_step(path, &checkpoint.metadata);
    Ok(PromptModel {
        checkpoint,
        lookup,
        path: path.to_path_buf(),
        step,
    })
}

/// A dataset's `vocab.json` alone.
fn read_vocab(path: &Path) -> Result<tasks::Vocab> {
    let text = fs::read_to_string(path).map_err(|e| InterpError::io(path, e))?;
    let tokens: Vec<String> = serde_json::from_str(&text).map_err(|source| InterpError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    tasks::Vocab::from_tokens(tokens)
        .map_err(|e| InterpError::spec("vocabulary", path.display().to_string(), e.to_string()))
}
