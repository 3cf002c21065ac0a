//! Per-split evaluation: accuracy (argmax at the answer position equals gold), cross-entropy of
//! the gold answer and its mean probability, batched, in eval mode, without gradients.

use crate::amp::with_precision;
use crate::config::Precision;
use crate::error::Result;
use crate::tensors::EvalSplit;
use model::Gpt;
use tch::{Kind, Tensor};

/// Metrics of one split.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitMetrics {
    /// Split name.
    pub name: String,
    /// Number of examples.
    pub n: usize,
    /// Fraction of examples whose argmax prediction is the gold answer.
    pub acc: f64,
    /// Mean cross-entropy of the gold answer (nats).
    pub loss: f64,
    /// Mean probability of the gold answer.
    pub p: f64,
}

/// One example's prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Argmax token at the answer position.
    pub pred: i64,
    /// Probability of the gold answer.
    pub gold_prob: f64,
    /// 0-based rank of the gold answer ([`model::gold_rank`]).
    pub gold_rank: i64,
}

/// Logits at each example's answer position.
/// Shapes: tokens `[B, L]` i64, answer_pos `[B]` i64 → `[B, V]` f32.
pub fn answer_logits(
    model: &Gpt,
    tokens: &Tensor,
    answer_pos: &Tensor,
    precision: Precision,
) -> Tensor {
    with_precision(precision, tokens.device(), || {
        let hidden = model.hidden_t(tokens, false);
        let d = hidden.size()[2];
        let index = answer_pos.view([-1, 1, 1]).expand([-1, 1, d], false);
        let at_answer = hidden.gather(1, &index, false).squeeze_dim(1);
        model.unembed(&at_answer)
    })
    .to_kind(Kind::Float)
}

/// Evaluates every split in batches of `batch` examples. One host read per split.
pub fn evaluate(
    model: &Gpt,
    splits: &[EvalSplit],
    batch: usize,
    precision: Precision,
) -> Result<Vec<SplitMetrics>> {
    tch::no_grad(|| {
        splits
            .iter()
            .map(|split| {
                let device = split.tokens.device();
                let mut sums = Tensor::zeros([3], (Kind::Double, device));
                for (start, len) in chunks(split.len, batch) {
                    let tokens = split.tokens.narrow(0, start, len);
                    let pos = split.answer_pos.narrow(0, start, len);
                    let gold = split.answer.narrow(0, start, len);
                    let logits = answer_logits(model, &tokens, &pos, precision);
                    let logp = logits.log_softmax(-1, Kind::Float);
                    let gold_logp = logp.gather(1, &gold.unsqueeze(1), false).squeeze_dim(1);
                    let correct = logits.argmax(-1, false).eq_tensor(&gold);
                    let batch_sums = Tensor::stack(
                        &[
                            correct.sum(Kind::Double),
                            -gold_logp.sum(Kind::Double),
                            gold_logp.exp().sum(Kind::Double),
                        ],
                        0,
                    );
                    sums += batch_sums;
                }
                let sums = Vec::<f64>::try_from(sums.to_device(tch::Device::Cpu))?;
                let n = split.len.max(1) as f64;
                Ok(SplitMetrics {
                    name: split.name.clone(),
                    n: split.len,
                    acc: sums[0] / n,
                    loss: sums[1] / n,
                    p: sums[2] / n,
                })
            })
            .collect()
    })
}

/// Per-example predictions of one split, in its order.
pub fn predict(
    model: &Gpt,
    split: &EvalSplit,
    batch: usize,
    precision: Precision,
) -> Result<Vec<Prediction>> {
    tch::no_grad(|| {
        let mut out = Vec::with_capacity(split.len);
        for (start, len) in chunks(split.len, batch) {
            let tokens = split.tokens.narrow(0, start, len);
            let pos = split.answer_pos.narrow(0, start, len);
            let gold = split.answer.narrow(0, start, len).unsqueeze(1);
            let logits = answer_logits(model, &tokens, &pos, precision);
            let rank = model::gold_rank(&logits, &gold);
            let prob = logits
                .softmax(-1, Kind::Float)
                .gather(1, &gold, false)
                .squeeze_dim(1);
            let pred = Vec::<i64>::try_from(logits.argmax(-1, false).to_device(tch::Device::Cpu))?;
            let prob =
                Vec::<f64>::try_from(prob.to_kind(Kind::Double).to_device(tch::Device::Cpu))?;
            let rank = Vec::<i64>::try_from(rank.to_device(tch::Device::Cpu))?;
            for ((pred, gold_prob), gold_rank) in pred.into_iter().zip(prob).zip(rank) {
                out.push(Prediction {
                    pred,
                    gold_prob,
                    gold_rank,
                });
            }
        }
        Ok(out)
    })
}

/// `(start, len)` of consecutive chunks of at most `size` covering `0..n`.
fn chunks(n: usize, size: usize) -> impl Iterator<Item = (i64, i64)> {
    let size = size.max(1);
    (0..n)
        .step_by(size)
        .map(move |s| (s as i64, size.min(n - s) as i64))
}
