//! Checkpoint folders `RUN_DIR/step-<step>/` and atomic file writes.
//!
//! A checkpoint folder holds `model.safetensors` (the model crate's format, HF GPT-2 names),
//! `optimizer.safetensors` (AdamW moments `m.<param>`, `v.<param>` and the running training
//! sums `acc.*`) and `state.json` ([`RunState`], with the data fingerprint and a hash of each
//! tensor file). It is written under a temporary name, every file is fsynced, and the folder is
//! renamed into place, so a folder named `step-<step>` is always complete. [`verify_step`] checks
//! a folder afterwards.

use crate::error::{io_err, Result, TrainError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// File names inside a checkpoint folder.
pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";
/// The tensor files whose hashes `state.json` records.
pub const HASHED_FILES: [&str; 2] = [MODEL_FILE, OPTIMIZER_FILE];

/// Everything besides tensors needed to continue a run exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Optimiser updates done.
    pub step: u64,
    /// Epoch the next update belongs to (0-based).
    pub epoch: u64,
    /// Batches of that epoch already consumed.
    pub batch_in_epoch: u64,
    /// Batches per epoch (`ceil(train examples / batch_size)`).
    pub steps_per_epoch: u64,
    /// How every random draw of the loop is derived (there is no other RNG state to save).
    pub rng: RngInfo,
    /// Hash of the settings that determine the weights (see `TrainConfig::trajectory_hash`).
    pub config_hash: String,
    /// Hash of the training data (tokens, loss positions, vocabulary).
    pub data_fingerprint: String,
    /// libtorch intra-op threads of the run that wrote it (CPU results depend on it).
    pub threads: usize,
    /// Device the run used, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// [`file_hash`] of each of [`HASHED_FILES`], by file name; filled in by [`write()`]. Empty in
    /// checkpoints written before hashes were recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hashes: BTreeMap<String, String>,
}

/// The seeds of the loop's random draws: the epoch permutation is a ChaCha8 shuffle seeded with
/// `mix(seed, epoch)`, and `tch::manual_seed(mix(seed, step))` precedes every update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RngInfo {
    pub seed: u64,
    pub permutation: String,
    pub dropout: String,
}

/// Folder name of the checkpoint at `step`.
pub fn step_dir(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join(format!("step-{step}"))
}

/// Steps of the complete checkpoints in `run_dir` (folders `step-<n>` holding all three files),
/// ascending.
pub fn list(run_dir: &Path) -> Result<Vec<u64>> {
    let mut steps = Vec::new();
    let entries = match fs::read_dir(run_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(steps),
        Err(e) => return Err(io_err(run_dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(run_dir))?;
        let name = entry.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix("step-")?.parse::<u64>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        if [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE]
            .iter()
            .all(|f| dir.join(f).is_file())
        {
            steps.push(step);
        }
    }
    steps.sort_unstable();
    Ok(steps)
}

/// Removes temporary folders left by a checkpoint write that was killed midway.
pub fn remove_partial(run_dir: &Path) -> Result<()> {
    for entry in fs::read_dir(run_dir).map_err(io_err(run_dir))? {
        let entry = entry.map_err(io_err(run_dir))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with(".tmp-step-")) {
            fs::remove_dir_all(entry.path()).map_err(io_err(&entry.path()))?;
        }
    }
    Ok(())
}

/// Writes a checkpoint folder atomically: `fill(tmp_dir)` writes the tensor files into a temporary
/// folder, their hashes go into `state.json`, then every file and the folder are fsynced and the
/// folder is renamed to `step-<state.step>`. An existing complete folder for that step is left as
/// it is.
pub fn write(
    run_dir: &Path,
    state: &RunState,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dst = step_dir(run_dir, state.step);
    if dst.join(STATE_FILE).is_file() {
        return Ok(dst);
    }
    let tmp = run_dir.join(format!(".tmp-step-{}", state.step));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    fill(&tmp)?;
    let mut state = state.clone();
    for file in HASHED_FILES {
        state
            .hashes
            .insert(file.to_string(), file_hash(&tmp.join(file))?);
    }
    let json = serde_json::to_string_pretty(&state).map_err(|e| TrainError::Parse {
        path: tmp.join(STATE_FILE),
        msg: e.to_string(),
    })?;
    fs::write(tmp.join(STATE_FILE), json + "\n").map_err(io_err(&tmp.join(STATE_FILE)))?;
    for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
        let path = entry.map_err(io_err(&tmp))?.path();
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&path))?;
    }
    sync_dir(&tmp)?;
    if dst.exists() {
        fs::remove_dir_all(&dst).map_err(io_err(&dst))?;
    }
    fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
    sync_dir(run_dir)?;
    Ok(dst)
}

/// Reads `state.json` of a checkpoint folder.
pub fn read_state(dir: &Path) -> Result<RunState> {
    let path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Parse {
        path,
        msg: e.to_string(),
    })
}

/// FNV-1a 64 ([`util::hash::fnv1a`]) of a file's bytes, as 16 hex digits.
pub fn file_hash(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    Ok(format!("{:016x}", util::hash::fnv1a(&bytes)))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// What [`verify_step`] found in one checkpoint folder.
#[derive(Clone, Debug, PartialEq)]
pub enum StepCheck {
    /// Complete, readable and finite; `hashed` when its tensor files matched recorded hashes
    /// (false for checkpoints written before hashes were recorded).
    Good { hashed: bool },
    /// The first problem found, in words.
    Bad(String),
}

/// Checks the checkpoint folder `dir` of `step`: all three files present, `state.json` readable
/// and for `step`, each tensor file's bytes matching its recorded hash (when one is recorded),
/// every floating-point tensor finite.
pub fn verify_step(dir: &Path, step: u64) -> StepCheck {
    match check_step(dir, step) {
        Ok(hashed) => StepCheck::Good { hashed },
        Err(problem) => StepCheck::Bad(problem),
    }
}

/// [`verify_step`]'s checks; `Ok(hashed)` or the problem.
fn check_step(dir: &Path, step: u64) -> std::result::Result<bool, String> {
    let absent: Vec<&str> = [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !absent.is_empty() {
        return Err(format!("incomplete: no {}", absent.join(", no ")));
    }
    let state = read_state(dir).map_err(|e| e.to_string())?;
    if state.step != step {
        return Err(format!("{STATE_FILE} says step {}", state.step));
    }
    for file in HASHED_FILES {
        let Some(recorded) = state.hashes.get(file) else {
            continue;
        };
        let actual = file_hash(&dir.join(file)).map_err(|e| e.to_string())?;
        if &actual != recorded {
            return Err(format!(
                "{file} has changed since it was written (hash {actual}, recorded {recorded})"
            ));
        }
    }
    for file in HASHED_FILES {
        model::check_finite_file(&dir.join(file)).map_err(|e| e.to_string())?;
    }
    Ok(HASHED_FILES.iter().all(|f| state.hashes.contains_key(*f)))
}
