//! Attribution patching on token batches: the first-order estimate of patching every position
//! (and head) of the chosen hooks at once, `∂metric/∂a · (a_source − a_base)` summed over the
//! activation's feature axis, from two forward passes and one backward pass.

use super::{Baselines, PromptBatch};
use crate::error::Result;
use crate::metric::Metric;
use crate::net::Net;
use crate::patch::Direction;
use model::{HookPoint, LogitPositions, RunRequest};
use tch::{Kind, Tensor};

/// Per hook the attribution scores of every prompt, position (and head).
#[derive(Debug)]
pub struct AttributionValues {
    pub metric: Metric,
    pub direction: Direction,
    pub hooks: Vec<HookPoint>,
    /// Per hook `[B, T]`, or `[B, T, H]` for per-head hooks (`[B, H, T_q]` for attn_scores and
    /// pattern), f64 on the CPU.
    pub scores: Vec<Tensor>,
}

impl AttributionValues {
    /// Per hook, position (query position) and head (`None` for hooks without heads) the mean
    /// score over prompts.
    pub fn summary(&self) -> Vec<(HookPoint, i64, Option<i64>, f64)> {
        let mut rows = Vec::new();
        for (&hook, scores) in self.hooks.iter().zip(&self.scores) {
            let mean = scores.mean_dim(0, false, Kind::Double);
            let pattern = matches!(hook, HookPoint::AttnScores(_) | HookPoint::Pattern(_));
            let size = mean.size();
            for p in 0..size[if pattern { 1 } else { 0 }] {
                match size.len() {
                    1 => rows.push((hook, p, None, mean.double_value(&[p]))),
                    _ => {
                        let heads = size[if pattern { 0 } else { 1 }];
                        for h in 0..heads {
                            let at = if pattern { [h, p] } else { [p, h] };
                            rows.push((hook, p, Some(h), mean.double_value(&at)));
                        }
                    }
                }
            }
        }
        rows
    }
}

/// Attribution scores of every position (and head) of `hooks` for patching the source run of
/// `direction` into its base run, with the gradient of the summed per-row `metric` (divided by
/// `clean − corrupted` for a restoration).
pub fn attribute(
    net: &Net,
    batch: &PromptBatch,
    direction: Direction,
    hooks: &[HookPoint],
    metric: &Metric,
) -> Result<AttributionValues> {
    let (base, source) = batch.base_and_source(direction, "attribution patching")?;
    let baselines = Baselines::compute(net, batch, metric)?;
    let norm = baselines.restoration_norm(metric)?;
    let src = tch::no_grad(|| net.run(source, &RunRequest::capture(hooks.iter().copied())))?.cache;
    let (grads, acts) = base_gradients(net, batch, base, hooks, metric, &baselines)?;
    let scores = tch::no_grad(|| {
        hooks
            .iter()
            .zip(grads.iter().zip(&acts))
            .map(|(hook, (grad, act))| {
                let prod = grad.to_kind(Kind::Double) * (&src[hook] - act).to_kind(Kind::Double);
                (prod.sum_dim_intlist(-1, false, Kind::Double) / norm).to_device(tch::Device::Cpu)
            })
            .collect()
    });
    Ok(AttributionValues {
        metric: metric.clone(),
        direction,
        hooks: hooks.to_vec(),
        scores,
    })
}

/// The base run's activations of `hooks` and the gradient of the summed metric at each.
fn base_gradients(
    net: &Net,
    batch: &PromptBatch,
    base: &Tensor,
    hooks: &[HookPoint],
    metric: &Metric,
    baselines: &Baselines,
) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    tch::with_grad(|| {
        let req = RunRequest {
            capture: hooks.iter().copied().collect(),
            logit_positions: LogitPositions::PerRow(batch.answer_pos.clone()),
            ..RunRequest::default()
        };
        let out = net.run(base, &req)?;
        let sets = batch.sets.to_device(net.device());
        let total = metric
            .per_row(
                &out.logits.squeeze_dim(1),
                &sets,
                Some(&baselines.clean_logits),
            )?
            .sum(Kind::Double);
        let acts: Vec<Tensor> = hooks.iter().map(|h| out.cache[h].shallow_clone()).collect();
        let grads = Tensor::f_run_backward(&[total], &acts, false, false)?;
        Ok((grads, acts.iter().map(Tensor::detach).collect()))
    })
}
