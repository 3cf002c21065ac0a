//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading the CSV files or drawing a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A CSV file lacks a column its schema requires.
    #[error("{}: missing column `{column}` (the header has: {header})", path.display())]
    MissingColumn {
        path: PathBuf,
        column: String,
        header: String,
    },
    /// A cell that does not parse as the column's type.
    #[error("{}: line {line}, column `{column}`: {value:?} is not {expected}", path.display())]
    BadValue {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
        expected: &'static str,
    },
    /// A row that cannot be read at all (wrong number of fields, invalid UTF-8).
    #[error("{}: line {line}: {message}", path.display())]
    BadRow {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A file whose content as a whole does not fit its schema.
    #[error("{}: {message}", path.display())]
    BadFile { path: PathBuf, message: String },
    /// A figure description that cannot be drawn (empty, or inconsistent shapes).
    #[error("cannot draw figure: {0}")]
    InvalidFigure(String),
    /// plotters failed while drawing.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// The PNG could not be written.
    #[error("{}: cannot write PNG: {message}", path.display())]
    WritePng { path: PathBuf, message: String },
    /// The embedded font could not be registered.
    #[error("embedded font: {0}")]
    Font(String),
}

/// Result with [`PlotError`].
pub type Result<T, E = PlotError> = std::result::Result<T, E>;

/// Maps any plotters drawing error into [`PlotError::Draw`].
pub(crate) fn draw_error(err: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(err.to_string())
}
