//! The one error type of the crate: every message names the parameter, or the file and record,
//! that caused it.

use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = TaskError> = std::result::Result<T, E>;

/// Everything that can go wrong while generating, reading or writing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A generator parameter is out of range; `name` is its command-line flag without `--`.
    #[error("--{name}: {message}")]
    Param { name: &'static str, message: String },
    /// A file or folder could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file is not JSON of the expected shape; `message` gives line and column.
    #[error("{}: malformed JSON: {message}", path.display())]
    Json { path: PathBuf, message: String },
    /// One record of a data file is wrong; records are numbered from 1 in file order.
    #[error("{}: record {record}: {message}", path.display())]
    Record {
        path: PathBuf,
        record: usize,
        message: String,
    },
    /// A file is wrong as a whole (a bad vocabulary, a manifest that disagrees with the data).
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// The output folder already holds something other than this dataset.
    #[error("{}: {message}", path.display())]
    OutputOccupied { path: PathBuf, message: String },
    /// A problem with no file attached (unknown token, missing fact, example of another task).
    #[error("{0}")]
    Invalid(String),
}

impl TaskError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &Path, error: std::io::Error) -> TaskError {
        TaskError::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    /// A parameter error for flag `--name`.
    pub(crate) fn param(name: &'static str, message: impl Into<String>) -> TaskError {
        TaskError::Param {
            name,
            message: message.into(),
        }
    }
}
