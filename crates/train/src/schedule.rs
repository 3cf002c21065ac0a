//! Learning-rate schedules and checkpoint schedules.
//!
//! Steps count optimiser updates: "step s" is the state after s updates, and update `i` (0-based)
//! produces step `i + 1`.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Shape of the learning rate after the linear warm-up.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrShape {
    /// Constant after warm-up (the paper: `get_constant_schedule_with_warmup`).
    Constant,
    /// Half-cosine from the base rate to 0 at the last step (`get_cosine_schedule_with_warmup`).
    Cosine,
}

/// Learning rate for update `i` (0-based), as Hugging Face's schedulers compute it: the factor is
/// `i / warmup` during warm-up (so the very first update has rate 0), then 1 (constant) or
/// `0.5 · (1 + cos(π · (i − warmup) / (total − warmup)))` (cosine).
pub fn learning_rate(base: f64, shape: LrShape, warmup: u64, total: u64, i: u64) -> f64 {
    if i < warmup {
        return base * i as f64 / warmup.max(1) as f64;
    }
    match shape {
        LrShape::Constant => base,
        LrShape::Cosine => {
            let progress = (i - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
            base * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
        }
    }
}

/// When checkpoints are written. Written in configs as a string:
/// `paper`, `every:N`, `log:N`, or `steps:a,b,c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointSchedule {
    /// The paper's: every 2000 steps up to 40,000, then every 50,000.
    Paper,
    /// Every N steps.
    Every(u64),
    /// N checkpoints log-spaced between the first step and the last (rounded, deduplicated).
    Log(u64),
    /// An explicit list of steps (those beyond the last step are ignored).
    Steps(Vec<u64>),
}

impl CheckpointSchedule {
    /// The sorted checkpoint steps of a run of `total` steps; `total` itself is always included.
    pub fn steps(&self, total: u64) -> Vec<u64> {
        let mut out = BTreeSet::new();
        match self {
            CheckpointSchedule::Paper => {
                out.extend((1..=20).map(|k| 2000 * k).take_while(|&s| s <= total));
                out.extend((1..).map(|k| 50_000 * k).take_while(|&s| s <= total));
            }
            CheckpointSchedule::Every(n) => {
                out.extend((1..).map(|k| n * k).take_while(|&s| s <= total));
            }
            CheckpointSchedule::Log(n) => {
                if *n >= 2 {
                    let last = (total as f64).ln();
                    for k in 0..*n {
                        let s = (last * k as f64 / (*n - 1) as f64).exp().round() as u64;
                        out.insert(s.clamp(1, total));
                    }
                }
            }
            CheckpointSchedule::Steps(list) => {
                out.extend(list.iter().copied().filter(|&s| s >= 1 && s <= total));
            }
        }
        out.insert(total);
        out.into_iter().collect()
    }
}

impl FromStr for CheckpointSchedule {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            TrainError::Config(format!(
                "checkpoints = {s:?}: {why} (expected paper, every:N, log:N or steps:a,b,c)"
            ))
        };
        let positive = |v: &str| match v.trim().parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(bad(&format!("{v:?} is not a positive integer"))),
        };
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        match kind.trim() {
            "paper" if arg.is_empty() => Ok(CheckpointSchedule::Paper),
            "every" => Ok(CheckpointSchedule::Every(positive(arg)?)),
            "log" => match positive(arg)? {
                n if n >= 2 => Ok(CheckpointSchedule::Log(n)),
                _ => Err(bad("log needs at least 2 checkpoints")),
            },
            "steps" => {
                let steps = arg.split(',').map(positive).collect::<Result<Vec<_>>>()?;
                Ok(CheckpointSchedule::Steps(steps))
            }
            _ => Err(bad("unknown schedule")),
        }
    }
}

impl fmt::Display for CheckpointSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointSchedule::Paper => write!(f, "paper"),
            CheckpointSchedule::Every(n) => write!(f, "every:{n}"),
            CheckpointSchedule::Log(n) => write!(f, "log:{n}"),
            CheckpointSchedule::Steps(list) => {
                let list: Vec<String> = list.iter().map(u64::to_string).collect();
                write!(f, "steps:{}", list.join(","))
            }
        }
    }
}

impl Serialize for CheckpointSchedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CheckpointSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
