//! Metrics over a run's logits at the answer position, given as values: the built-ins
//! (logit difference between two token sets, probability, rank and reciprocal rank of a token,
//! KL divergence to the clean run, normalised restoration of any of them) and user closures.
//!
//! A metric maps answer-position logits `[B, V]` to one value per row `[B]`; every analysis of
//! [`crate::tokens`] reports its mean over the rows. Ranks are 0-based (the crate's convention):
//! the number of tokens with a strictly larger logit.
//!
//! ```no_run
//! use interp::metric::{Metric, TokenSets};
//! use std::sync::Arc;
//! // A user metric: the answer's logit minus the mean logit of the row.
//! let margin = Metric::custom("margin", Arc::new(|logits: &tch::Tensor, sets: &TokenSets| {
//!     logits.gather(1, &sets.first_answer().unsqueeze(1), false).squeeze_dim(1)
//!         - logits.mean_dim(1, false, tch::Kind::Float)
//! }));
//! ```

use crate::error::{InterpError, Result};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Per row, the tokens a metric reads: the answer set and the alternative set, each padded to a
/// common width with a mask.
#[derive(Debug)]
pub struct TokenSets {
    /// `[B, K]` i64 token ids (padding entries hold a valid id and are masked off).
    pub answer: Tensor,
    /// `[B, K]` bool: which entries of `answer` are real.
    pub answer_mask: Tensor,
    /// `[B, K']` i64 token ids of the alternatives (the other side of a logit difference).
    pub alternative: Tensor,
    /// `[B, K']` bool.
    pub alternative_mask: Tensor,
}

impl TokenSets {
    /// Token sets from per-row lists; every row needs at least one answer, and one alternative
    /// when `alternatives` is given (else the alternative set is empty).
    pub fn from_rows(answers: &[Vec<i64>], alternatives: &[Vec<i64>]) -> Result<TokenSets> {
        if answers.iter().any(Vec::is_empty) {
            return Err(InterpError::spec(
                "token sets",
                "answer",
                "a row has no answer token",
            ));
        }
        let (answer, answer_mask) = padded(answers);
        let (alternative, alternative_mask) = padded(alternatives);
        Ok(TokenSets {
            answer,
            answer_mask,
            alternative,
            alternative_mask,
        })
    }

    /// Answer sets without alternatives: every entry of `answer` (`[B, K]` i64) is real.
    pub fn answers_only(answer: &Tensor) -> TokenSets {
        let b = answer.size()[0];
        let no_ids = Tensor::zeros([b, 0], (Kind::Int64, answer.device()));
        TokenSets {
            answer_mask: answer.ones_like().to_kind(Kind::Bool),
            alternative_mask: no_ids.to_kind(Kind::Bool),
            alternative: no_ids,
            answer: answer.shallow_clone(),
        }
    }

    /// One answer and one alternative token per row. Shapes: `[B]` i64 each.
    pub fn single(answer: &Tensor, alternative: &Tensor) -> TokenSets {
        let ones = |t: &Tensor| t.ones_like().to_kind(Kind::Bool).unsqueeze(1);
        TokenSets {
            answer_mask: ones(answer),
            alternative_mask: ones(alternative),
            answer: answer.unsqueeze(1),
            alternative: alternative.unsqueeze(1),
        }
    }

    /// The first answer token of each row. Shapes: → `[B]` i64.
    pub fn first_answer(&self) -> Tensor {
        self.answer.select(1, 0)
    }

    /// True when some row has no alternative token.
    pub fn lacks_alternatives(&self) -> bool {
        let size = self.alternative.size();
        size[1] == 0
            || !bool::try_from(self.alternative_mask.any_dim(1, false).all()).unwrap_or(false)
    }

    /// These sets on `device`.
    pub fn to_device(&self, device: tch::Device) -> TokenSets {
        TokenSets {
            answer: self.answer.to_device(device),
            answer_mask: self.answer_mask.to_device(device),
            alternative: self.alternative.to_device(device),
            alternative_mask: self.alternative_mask.to_device(device),
        }
    }

    /// Rows `start..start + len`.
    pub fn narrow(&self, start: i64, len: i64) -> TokenSets {
        TokenSets {
            answer: self.answer.narrow(0, start, len),
            answer_mask: self.answer_mask.narrow(0, start, len),
            alternative: self.alternative.narrow(0, start, len),
            alternative_mask: self.alternative_mask.narrow(0, start, len),
        }
    }

    /// Every row repeated `k` times, row blocks in order (`[r0..rB, r0..rB, ...]`).
    pub fn repeat(&self, k: i64) -> TokenSets {
        TokenSets {
            answer: self.answer.repeat([k, 1]),
            answer_mask: self.answer_mask.repeat([k, 1]),
            alternative: self.alternative.repeat([k, 1]),
            alternative_mask: self.alternative_mask.repeat([k, 1]),
        }
    }
}

/// Rows of ids padded with their row's first id (or 0) and the mask of real entries.
/// Shapes: → `[B, K]` i64 and `[B, K]` bool, `K` the longest row.
fn padded(rows: &[Vec<i64>]) -> (Tensor, Tensor) {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut mask = Vec::with_capacity(rows.len() * width);
    for row in rows {
        let fill = row.first().copied().unwrap_or(0);
        for k in 0..width {
            ids.push(row.get(k).copied().unwrap_or(fill));
            mask.push(k < row.len());
        }
    }
    let shape = [rows.len() as i64, width as i64];
    (
        Tensor::from_slice(&ids).view(shape),
        Tensor::from_slice(&mask).view(shape),
    )
}

/// A user metric: answer-position logits `[B, V]` and the rows' token sets → `[B]`.
pub type MetricFn = Arc<dyn Fn(&Tensor, &TokenSets) -> Tensor + Send + Sync>;

/// A metric over answer-position logits.
#[derive(Clone)]
pub enum Metric {
    /// Mean logit of the answer set minus mean logit of the alternative set.
    LogitDiff,
    /// Total probability of the answer set.
    Prob,
    /// 0-based rank of the best-ranked answer token.
    Rank,
    /// `1 / (rank + 1)` of the best-ranked answer token (its mean is the MRR).
    ReciprocalRank,
    /// The fraction of the answer set among the `k` highest logits (the comparison task's labels:
    /// Recall@3).
    RecallAtK(usize),
    /// `KL(p_clean ‖ p_run)` in nats: how far the run's distribution moved from the clean run's.
    KlToClean,
    /// A metric normalised by the clean and corrupted runs' means:
    /// `(m − m_corrupted) / (m_clean − m_corrupted)`, 1 = clean behaviour restored, 0 = none.
    Restoration(Box<Metric>),
    /// A user closure with its name (the name labels output rows).
    Custom { name: String, f: MetricFn },
}

impl Metric {
    /// A user metric.
    pub fn custom(name: &str, f: MetricFn) -> Metric {
        Metric::Custom {
            name: name.to_string(),
            f,
        }
    }

    /// The metric the values of a run are computed with (the inner one of a restoration).
    pub fn per_row_metric(&self) -> &Metric {
        match self {
            Metric::Restoration(inner) => inner.per_row_metric(),
            other => other,
        }
    }

    /// True when the metric reads the alternative token set.
    pub fn needs_alternatives(&self) -> bool {
        matches!(self.per_row_metric(), Metric::LogitDiff)
    }

    /// True when the metric compares with the clean run's logits.
    pub fn needs_clean_logits(&self) -> bool {
        matches!(self.per_row_metric(), Metric::KlToClean)
    }

    /// Per-row values of the metric (of its inner metric for a restoration).
    /// Shapes: logits `[B, V]`, clean_logits `[B, V]` (KL only) → `[B]` f64.
    pub fn per_row(
        &self,
        logits: &Tensor,
        sets: &TokenSets,
        clean_logits: Option<&Tensor>,
    ) -> Result<Tensor> {
        let logits = logits.to_kind(Kind::Float);
        let values = match self.per_row_metric() {
            Metric::LogitDiff => {
                set_mean(&logits, &sets.answer, &sets.answer_mask)
                    - set_mean(&logits, &sets.alternative, &sets.alternative_mask)
            }
            Metric::Prob => {
                let p = logits
                    .softmax(1, Kind::Float)
                    .gather(1, &sets.answer, false);
                (p * sets.answer_mask.to_kind(Kind::Float)).sum_dim_intlist(1, false, Kind::Float)
            }
            Metric::Rank => best_rank(&logits, sets).to_kind(Kind::Float),
            Metric::ReciprocalRank => 1.0 / (best_rank(&logits, sets).to_kind(Kind::Float) + 1.0),
            Metric::RecallAtK(k) => recall_at_k(&logits, sets, *k)?,
            Metric::KlToClean => {
                let clean = clean_logits.ok_or_else(|| {
                    InterpError::spec("metric", "kl", "needs the clean run's logits")
                })?;
                let log_p = clean.to_kind(Kind::Float).log_softmax(1, Kind::Float);
                let log_q = logits.log_softmax(1, Kind::Float);
                (log_p.exp() * (&log_p - log_q)).sum_dim_intlist(1, false, Kind::Float)
            }
            Metric::Custom { f, .. } => f(&logits, sets),
            Metric::Restoration(_) => unreachable!("per_row_metric unwraps restorations"),
        };
        Ok(values.to_kind(Kind::Double))
    }

    /// The reported value of per-row values: their mean, normalised for a restoration by the
    /// clean and corrupted runs' means (NaN when those agree).
    pub fn summarise(&self, mean: f64, clean: f64, corrupted: f64) -> f64 {
        match self {
            Metric::Restoration(_) => {
                crate::stats::restoration(mean, clean, corrupted).unwrap_or(f64::NAN)
            }
            _ => mean,
        }
    }
}

/// Mean logit of each row's masked token set. Shapes: logits `[B, V]`, ids/mask `[B, K]` → `[B]`.
fn set_mean(logits: &Tensor, ids: &Tensor, mask: &Tensor) -> Tensor {
    let mask = mask.to_kind(Kind::Float);
    let picked = logits.gather(1, ids, false) * &mask;
    picked.sum_dim_intlist(1, false, Kind::Float) / mask.sum_dim_intlist(1, false, Kind::Float)
}

/// The fraction of each row's answer set among its `k` highest logits, in f64.
/// Shapes: logits `[B, V]` → `[B]`. Errors: `k` is 0 or above `V`.
fn recall_at_k(logits: &Tensor, sets: &TokenSets, k: usize) -> Result<Tensor> {
    let vocab = logits.size()[1];
    if k == 0 || k as i64 > vocab {
        return Err(InterpError::spec(
            "metric",
            format!("recall@{k}"),
            format!("k must be in 1..={vocab}"),
        ));
    }
    let (_, top) = logits.topk(k as i64, 1, true, true);
    let hits = top
        .unsqueeze(1)
        .eq_tensor(&sets.answer.unsqueeze(2))
        .any_dim(2, false)
        .logical_and(&sets.answer_mask);
    let count = |t: &Tensor| {
        t.to_kind(Kind::Double)
            .sum_dim_intlist(1, false, Kind::Double)
    };
    Ok(count(&hits) / count(&sets.answer_mask))
}

/// 0-based rank of the best-ranked answer token of each row. Shapes: → `[B]` i64.
fn best_rank(logits: &Tensor, sets: &TokenSets) -> Tensor {
    let answer_logits = logits
        .gather(1, &sets.answer, false)
        .masked_fill(&sets.answer_mask.logical_not(), f64::NEG_INFINITY);
    let best = sets.answer.gather(1, &answer_logits.argmax(1, true), false);
    model::gold_rank(logits, &best.squeeze_dim(1))
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::LogitDiff => f.write_str("logit_diff"),
            Metric::Prob => f.write_str("prob"),
            Metric::Rank => f.write_str("rank"),
            Metric::ReciprocalRank => f.write_str("reciprocal_rank"),
            Metric::RecallAtK(k) => write!(f, "recall_at_{k}"),
            Metric::KlToClean => f.write_str("kl_to_clean"),
            Metric::Restoration(inner) => write!(f, "restoration_{inner}"),
            Metric::Custom { name, .. } => f.write_str(name),
        }
    }
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metric({self})")
    }
}

impl FromStr for Metric {
    type Err = InterpError;

    /// `logit-diff`, `prob`, `rank`, `reciprocal-rank`, `recall@K` (or `recall-at-K`), `kl`, and
    /// `restoration` (of the logit difference) or `restoration:METRIC`; underscores work as dashes.
    fn from_str(s: &str) -> Result<Metric> {
        let name = s.trim().replace('_', "-");
        if name == "restoration" {
            return Ok(Metric::Restoration(Box::new(Metric::LogitDiff)));
        }
        if let Some(inner) = name.strip_prefix("restoration:") {
            return Ok(Metric::Restoration(Box::new(inner.parse()?)));
        }
        if let Some(k) = name
            .strip_prefix("recall@")
            .or_else(|| name.strip_prefix("recall-at-"))
        {
            return match k.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Metric::RecallAtK(k)),
                _ => Err(InterpError::spec(
                    "metric",
                    s,
                    "recall@K needs a whole K ≥ 1",
                )),
            };
        }
        match name.as_str() {
            "logit-diff" => Ok(Metric::LogitDiff),
            "prob" => Ok(Metric::Prob),
            "rank" => Ok(Metric::Rank),
            "reciprocal-rank" | "rr" => Ok(Metric::ReciprocalRank),
            "kl" | "kl-to-clean" => Ok(Metric::KlToClean),
            _ => Err(InterpError::spec(
                "metric",
                s,
                "expected logit-diff, prob, rank, reciprocal-rank, recall@K, kl, restoration or \
                 restoration:METRIC",
            )),
        }
    }
}
