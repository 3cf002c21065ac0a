//! Tidy CSV outputs (the schemas of docs/architecture.md) and atomic file writes.

use crate::error::{InterpError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One row of `lens.csv`: `step,layer,position,target,metric,value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LensRow {
    pub step: u64,
    pub layer: usize,
    pub position: String,
    pub target: String,
    pub metric: String,
    pub value: f64,
}

/// One row of `patch.csv`: `step,corruption,direction,component,layer,position,metric,value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchRow {
    pub step: u64,
    pub corruption: String,
    pub direction: String,
    pub component: String,
    pub layer: usize,
    pub position: String,
    pub metric: String,
    pub value: f64,
}

/// One row of `attribution.csv`: the columns of `patch.csv` plus `method`
/// (`exact` or `attribution`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributionRow {
    pub step: u64,
    pub corruption: String,
    pub direction: String,
    pub component: String,
    pub layer: usize,
    pub position: String,
    pub metric: String,
    pub value: f64,
    pub method: String,
}

impl AttributionRow {
    /// The `patch.csv` row `row` as estimated by `method`.
    pub fn new(row: PatchRow, method: &str) -> AttributionRow {
        AttributionRow {
            step: row.step,
            corruption: row.corruption,
            direction: row.direction,
            component: row.component,
            layer: row.layer,
            position: row.position,
            metric: row.metric,
            value: row.value,
            method: method.into(),
        }
    }
}

/// One row of `state_effect.csv`: `step,corruption,layer,position,target,metric,value` — how a
/// corruption changes the intermediate state S[layer, position] (paper App. D.1, Fig. 11).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EffectRow {
    pub step: u64,
    pub corruption: String,
    pub layer: usize,
    pub position: String,
    pub target: String,
    pub metric: String,
    pub value: f64,
}

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
