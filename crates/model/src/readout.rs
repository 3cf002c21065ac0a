//! What is read off a model's logits: the rank of the gold token.
//!
//! The workspace has one rank convention: ranks are **0-based** (the top token has rank 0) over
//! the whole vocabulary, and MRR is `mean(1 / (rank + 1))`. A file format that needs 1-based
//! ranks converts at its writer and says so (`grokscope eval --out` writes
//! `gold_rank` 1-based).

use tch::{Kind, Tensor};

/// 0-based rank of each gold token among the vocabulary: the number of tokens with a strictly
/// larger logit (ties rank optimistically).
/// Shapes: logits `[R, V]`, gold `[R]` i64 (same device) → `[R]` i64.
pub fn gold_rank(logits: &Tensor, gold: &Tensor) -> Tensor {
    let gold_logit = logits.gather(1, &gold.reshape([-1, 1]), false);
    logits
        .gt_tensor(&gold_logit)
        .sum_dim_intlist(1, false, Kind::Int64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_token_has_rank_zero_and_ties_rank_optimistically() {
        let logits = Tensor::from_slice(&[1.0f32, 3.0, 2.0, 3.0, 0.0, 0.0]).view([2, 3]);
        let gold = Tensor::from_slice(&[1i64, 1]);
        let rank = Vec::<i64>::try_from(gold_rank(&logits, &gold)).unwrap();
        assert_eq!(rank, vec![0, 1]);
    }
}
