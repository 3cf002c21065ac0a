//! The rows of the tidy CSV files that one crate writes and another reads (the schemas of
//! docs/architecture.md): `interp` writes them with serde, `plot` and the sweeps read them.
//! `LensRow` serves `lens.csv`, `probe.csv` and `state_effect.csv` (which adds the `corruption`
//! column), `PatchRow` serves `patch.csv` and `attribution.csv` (which adds the `method` column).
//!
//! ```
//! let row = util::schema::PatchRow {
//!     step: 0,
//!     corruption: "r1".into(),
//!     direction: "noising".into(),
//!     component: "resid_pre".into(),
//!     layer: 1,
//!     position: "r1".into(),
//!     metric: "causal_strength".into(),
//!     value: 0.5,
//!     method: None,
//! };
//! assert_eq!(row.with_method("exact").method.as_deref(), Some("exact"));
//! ```

use serde::{Deserialize, Serialize};

/// One row of `lens.csv` or `probe.csv` (`step,layer,position,target,metric,value`) or of
/// `state_effect.csv` (`step,corruption,layer,…`: how a corruption changes the state at
/// (layer, position)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LensRow {
    pub step: u64,
    /// `state_effect.csv` only: the corruption; no column when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corruption: Option<String>,
    pub layer: usize,
    pub position: String,
    pub target: String,
    pub metric: String,
    pub value: f64,
}

/// One row of `patch.csv` (`step,corruption,direction,component,layer,position,metric,value`)
/// or of `attribution.csv` (the same columns plus `method`).
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
    /// `attribution.csv` only: `exact` or `attribution`; no column when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl PatchRow {
    /// This row as estimated by `method` (an `attribution.csv` row).
    pub fn with_method(self, method: &str) -> PatchRow {
        PatchRow {
            method: Some(method.to_string()),
            ..self
        }
    }
}
