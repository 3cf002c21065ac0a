//! The train crate's error type.

use std::path::{Path, PathBuf};

/// Everything that can stop a training or evaluation run. Each message is one line that names the
/// offending key, file, tensor or step.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad preset, config file, `--set` override or value out of range.
    #[error("{0}")]
    Config(String),
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON or TOML file that does not parse.
    #[error("{}: {msg}", path.display())]
    Parse { path: PathBuf, msg: String },
    /// The dataset could not be generated or loaded.
    #[error("dataset: {0}")]
    Data(#[from] tasks::TaskError),
    /// The model could not be built, saved or loaded.
    #[error("model: {0}")]
    Model(#[from] model::ModelError),
    /// A libtorch operation failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A checkpoint folder is incomplete or inconsistent.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The existing run folder was started with different settings or data.
    #[error("{0}")]
    Mismatch(String),
    /// The training loss became NaN or infinite.
    #[error(
        "training loss became {value} between steps {after} and {at}; stopped without saving ({})",
        match last_good {
            Some(step) => format!("the last good checkpoint is step {step}"),
            None => "there is no good checkpoint yet; lower lr and start again".to_string(),
        }
    )]
    NonFinite {
        value: f64,
        after: u64,
        at: u64,
        /// Step of the latest checkpoint written before the loss went bad, if any.
        last_good: Option<u64>,
    },
    /// Another live process holds the folder's lock ([`crate::lock::FolderLock`]).
    #[error(
        "{} is in use by {}; wait for it to finish or stop it, or choose another folder",
        dir.display(),
        match pid {
            Some(pid) => format!("grokscope process {pid}"),
            None => "another grokscope process".to_string(),
        }
    )]
    Locked { dir: PathBuf, pid: Option<u32> },
}

/// Result alias for the train crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Attaches `path` to an I/O error: `fs::read(p).map_err(io_err(p))`.
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
