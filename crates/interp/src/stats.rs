//! Per-example outcomes of a run (gold rank, probability, logit difference) and the statistics
//! reported over them (MRR, causal strength, restoration); plain-number statistics (mean,
//! Pearson, Spearman) live in `util::stats`.

use crate::error::Result;
use tch::{Device, Kind, Tensor};
use util::stats::mean;

/// Per-example outcomes at the answer position of some run, in sample order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcomes {
    /// 0-based rank of the gold token among the whole vocabulary ([`model::gold_rank`]).
    pub rank: Vec<i64>,
    /// Softmax probability of the gold token.
    pub prob: Vec<f64>,
    /// Logit difference `logit[gold] − logit[alt]` (alt: the corrupted run's best non-gold token).
    pub ld: Vec<f64>,
}

impl Outcomes {
    /// Computes the outcomes of a batch of answer-position logits.
    /// Shapes: logits `[R, V]` (float), gold `[R]` i64, alt `[R]` i64 (same device).
    pub fn from_logits(logits: &Tensor, gold: &Tensor, alt: &Tensor) -> Result<Outcomes> {
        let logits = logits.to_kind(Kind::Float);
        let gold_logit = logits.gather(1, &gold.unsqueeze(1), false);
        let rank = model::gold_rank(&logits, gold);
        let prob = logits
            .log_softmax(1, Kind::Float)
            .gather(1, &gold.unsqueeze(1), false)
            .squeeze_dim(1)
            .exp();
        let ld =
            gold_logit.squeeze_dim(1) - logits.gather(1, &alt.unsqueeze(1), false).squeeze_dim(1);
        Ok(Outcomes {
            rank: to_i64(&rank)?,
            prob: to_f64(&prob)?,
            ld: to_f64(&ld)?,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.rank.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.rank.is_empty()
    }

    /// Appends the outcomes of more examples.
    pub fn extend(&mut self, other: Outcomes) {
        self.rank.extend(other.rank);
        self.prob.extend(other.prob);
        self.ld.extend(other.ld);
    }

    /// The outcomes of examples `start..start + len`.
    pub fn slice(&self, start: usize, len: usize) -> Outcomes {
        Outcomes {
            rank: self.rank[start..start + len].to_vec(),
            prob: self.prob[start..start + len].to_vec(),
            ld: self.ld[start..start + len].to_vec(),
        }
    }

    /// Fraction of examples whose top-1 is not the gold token (the paper's causal strength when
    /// computed on a noised run).
    pub fn causal_strength(&self) -> f64 {
        mean(self.rank.iter().map(|&r| f64::from(u8::from(r != 0))))
    }

    /// Mean 0-based gold rank.
    pub fn mean_rank(&self) -> f64 {
        mean(self.rank.iter().map(|&r| r as f64))
    }

    /// Mean gold probability.
    pub fn gold_prob(&self) -> f64 {
        mean(self.prob.iter().copied())
    }

    /// Mean logit difference.
    pub fn logit_diff(&self) -> f64 {
        mean(self.ld.iter().copied())
    }
}

/// Mean reciprocal rank of 0-based ranks: `mean(1 / (rank + 1))`.
pub fn mrr(ranks: impl IntoIterator<Item = i64>) -> f64 {
    mean(ranks.into_iter().map(|r| 1.0 / (r as f64 + 1.0)))
}

/// Normalised restoration `(ld_patched − ld_corrupted) / (ld_clean − ld_corrupted)` of mean logit
/// differences; `None` when the clean and corrupted runs have (nearly) the same mean.
pub fn restoration(patched: f64, clean: f64, corrupted: f64) -> Option<f64> {
    let denom = clean - corrupted;
    (denom.abs() > 1e-9 && patched.is_finite()).then(|| (patched - corrupted) / denom)
}

/// Copies a tensor to a host vector of i64.
pub fn to_i64(t: &Tensor) -> Result<Vec<i64>> {
    let t = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Int64)
        .contiguous()
        .view(-1);
    Ok(Vec::<i64>::try_from(&t)?)
}

/// Copies a tensor to a host vector of f64.
pub fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    let t = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Double)
        .contiguous()
        .view(-1);
    Ok(Vec::<f64>::try_from(&t)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrr_and_restoration() {
        assert!((mrr([0, 1, 3]) - (1.0 + 0.5 + 0.25) / 3.0).abs() < 1e-12);
        assert_eq!(restoration(1.0, 2.0, 0.0), Some(0.5));
        assert_eq!(restoration(1.0, 2.0, 2.0), None);
    }
}
