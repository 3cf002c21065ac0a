//! Attribution patching on token batches: the first-order estimate of patching every position
//! (and head) of the chosen hooks at once, `∂metric/∂a · (a_source − a_base)` summed over the
//! activation's feature axis, from two cached forward passes and one forward and backward pass
//! per chunk of prompts ([`super::patch_runs::PatchRuns::gradient_products`]).

use super::patching::{token_runs, PatchOptions};
use super::PromptBatch;
use crate::error::Result;
use crate::metric::Metric;
use crate::net::Net;
use crate::net::Rows;
use crate::patch::Direction;
use model::HookPoint;
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
/// `opts.direction` into its base run, with the gradient of the summed per-row `metric` (divided
/// by `clean − corrupted` for a restoration) read as `opts.ln_mode` says, in chunks of at most
/// `opts.max_rows` prompts.
pub fn attribute(
    net: &Net,
    batch: &PromptBatch,
    hooks: &[HookPoint],
    metric: &Metric,
    opts: &PatchOptions,
) -> Result<AttributionValues> {
    let direction = opts.direction;
    let analysis = "attribution patching";
    let (runs, baselines) = token_runs(net, batch, hooks.iter().copied(), metric, opts, analysis)?;
    let norm = baselines.restoration_norm(metric)?;
    let sets = batch.sets.to_device(net.device());
    let summed = |logits: &Tensor, rows: Rows| -> Result<Tensor> {
        let clean = rows.of(&baselines.clean_logits);
        let sets = sets.narrow(rows.start, rows.m);
        Ok(metric
            .per_row(logits, &sets, Some(&clean))?
            .sum(Kind::Double))
    };
    let mut chunks: Vec<Vec<Tensor>> = hooks.iter().map(|_| Vec::new()).collect();
    for rows in Rows::chunks(runs.len(), opts.max_rows as i64) {
        let products = runs.gradient_products(net, hooks, rows, &summed)?;
        tch::no_grad(|| -> Result<()> {
            for ((hook, product), out) in hooks.iter().zip(products).zip(chunks.iter_mut()) {
                let per_element = match product {
                    Some(p) => p,
                    None => rows.of(&runs.base[hook]).zeros_like().to_kind(Kind::Double),
                };
                out.push(
                    (per_element.sum_dim_intlist(-1, false, Kind::Double) / norm)
                        .to_device(tch::Device::Cpu),
                );
            }
            Ok(())
        })?;
    }
    Ok(AttributionValues {
        metric: metric.clone(),
        direction,
        hooks: hooks.to_vec(),
        scores: chunks.iter().map(|parts| Tensor::cat(parts, 0)).collect(),
    })
}
