//! Tidy CSV outputs (the schemas of docs/architecture.md; the rows `plot` reads too live in
//! [`util::schema`]) and atomic file writes.

use crate::error::{InterpError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use util::schema::{LensRow, PatchRow};

/// One row of `circuit_change.csv`: `corruption,layer,position,start,end,delta` (causal
/// strength at the start and the end checkpoint, and end − start).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CircuitChangeRow {
    pub corruption: String,
    pub layer: usize,
    pub position: String,
    pub start: f64,
    pub end: f64,
    pub delta: f64,
}

/// One row of `attention.csv`: `step,example,layer,head,query,key,value` — the weight head
/// `head` of layer `layer` puts on position `key` from position `query`; `example` is
/// [`crate::attention::MEAN_EXAMPLE`] (mean over the prompt sample) or an example's 0-based line in
/// `examples.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionRow {
    pub step: u64,
    pub example: String,
    pub layer: usize,
    pub head: usize,
    pub query: String,
    pub key: String,
    pub value: f64,
}

/// Writes `rows` as a CSV file with a header, atomically.
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let csv_err = |source| InterpError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| InterpError::io(path, e.into_error()))?;
    util::fs::write_atomic(path, &bytes).map_err(|e| InterpError::io(path, e))
}

/// Reads a CSV file written by [`write_csv`].
pub fn read_csv<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let csv_err = |source| InterpError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut r = csv::Reader::from_path(path).map_err(csv_err)?;
    r.deserialize().map(|row| row.map_err(csv_err)).collect()
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| InterpError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    util::fs::write_atomic(path, &bytes).map_err(|e| InterpError::io(path, e))
}
