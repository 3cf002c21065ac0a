//! Activation patching on token batches: one generic routine over any hook, position set, head
//! and metric ([`patch`]); thin constructors of the usual target lists on top
//! ([`resid_targets`], [`head_targets`], [`hook_targets`]).
//!
//! A target's activation in the base run is replaced by the source run's at the target's
//! positions (and head), everything downstream recomputed; the targets of a chunk run together
//! as row blocks of one batched forward, each with its own row-restricted intervention.

use super::{Baselines, PromptBatch};
use crate::error::Result;
use crate::metric::Metric;
use crate::net::Net;
use crate::patch::Direction;
use model::{Edit, HookPoint, Intervention, LogitPositions, RunRequest};
use ndarray::Array2;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use tch::Tensor;

/// One patched activation: a hook at a set of positions, optionally one head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchTarget {
    pub hook: HookPoint,
    /// Sequence positions (query positions for attn_scores/pattern).
    pub positions: Vec<i64>,
    /// The head, for per-head hooks (`None` = all heads).
    pub head: Option<i64>,
}

impl fmt::Display for PatchTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pos: Vec<String> = self.positions.iter().map(i64::to_string).collect();
        match self.head {
            Some(h) => write!(f, "{}[head={h}]@{}", self.hook, pos.join("+")),
            None => write!(f, "{}@{}", self.hook, pos.join("+")),
        }
    }
}

/// The residual stream entering every layer and after the last (`resid_pre[0..L]`, then the
/// last `resid_post`), each position on its own (TransformerLens `get_act_patch_resid_pre`).
pub fn resid_targets(n_layer: usize, positions: &[i64]) -> Vec<PatchTarget> {
    let mut hooks: Vec<HookPoint> = (0..n_layer).map(HookPoint::ResidPre).collect();
    hooks.push(HookPoint::ResidPost(n_layer - 1));
    hook_targets(&hooks, positions)
}

/// Every head's `hook_z` of every layer at each position on its own (TransformerLens
/// `get_act_patch_attn_head_out_by_pos`).
pub fn head_targets(n_layer: usize, n_head: usize, positions: &[i64]) -> Vec<PatchTarget> {
    let mut targets = Vec::new();
    for l in 0..n_layer {
        for h in 0..n_head as i64 {
            for &p in positions {
                targets.push(PatchTarget {
                    hook: HookPoint::Z(l),
                    positions: vec![p],
                    head: Some(h),
                });
            }
        }
    }
    targets
}

/// Each hook at each position on its own, all heads together.
pub fn hook_targets(hooks: &[HookPoint], positions: &[i64]) -> Vec<PatchTarget> {
    hooks
        .iter()
        .flat_map(|&hook| {
            positions.iter().map(move |&p| PatchTarget {
                hook,
                positions: vec![p],
                head: None,
            })
        })
        .collect()
}

/// Per target and prompt the metric of the patched run, with the clean and corrupted runs'.
#[derive(Debug)]
pub struct PatchValues {
    pub metric: Metric,
    pub direction: Direction,
    pub targets: Vec<PatchTarget>,
    /// `[targets, B]`.
    pub values: Array2<f64>,
    /// The clean run's per-row metric `[B]`.
    pub clean: Vec<f64>,
    /// The corrupted run's per-row metric `[B]`.
    pub corrupted: Vec<f64>,
}

impl PatchValues {
    /// Per target its label and reported value: the mean over prompts, normalised for a
    /// restoration metric.
    pub fn summary(&self) -> Vec<(String, f64)> {
        let mean = |v: &[f64]| util::stats::mean(v.iter().copied());
        let (clean, corrupted) = (mean(&self.clean), mean(&self.corrupted));
        self.targets
            .iter()
            .zip(self.values.rows())
            .map(|(t, row)| {
                let m = util::stats::mean(row.iter().copied());
                (t.to_string(), self.metric.summarise(m, clean, corrupted))
            })
            .collect()
    }
}

/// Patches every target from the source run into the base run of `direction` and evaluates
/// `metric` at each prompt's answer position. At most `max_rows` rows run in one forward (at
/// least one target's worth).
pub fn patch(
    net: &Net,
    batch: &PromptBatch,
    direction: Direction,
    targets: &[PatchTarget],
    metric: &Metric,
    max_rows: usize,
) -> Result<PatchValues> {
    let (base, source) = batch.base_and_source(direction, "patching")?;
    let baselines = Baselines::compute(net, batch, metric)?;
    let b = batch.len();
    let mut values = Array2::zeros((targets.len(), b));
    tch::no_grad(|| -> Result<()> {
        let src = source_cache(net, source, targets)?;
        let per_chunk = (max_rows / b.max(1)).max(1);
        for (c, chunk) in targets.chunks(per_chunk).enumerate() {
            let v = patched_chunk(net, batch, base, &src, chunk, metric, &baselines)?;
            for (i, row) in v.into_iter().enumerate() {
                for (j, x) in row.into_iter().enumerate() {
                    values[[c * per_chunk + i, j]] = x;
                }
            }
        }
        Ok(())
    })?;
    Ok(PatchValues {
        metric: metric.clone(),
        direction,
        targets: targets.to_vec(),
        values,
        clean: crate::stats::to_f64(&baselines.clean)?,
        corrupted: match &baselines.corrupted {
            Some(c) => crate::stats::to_f64(c)?,
            None => Vec::new(),
        },
    })
}

/// The source run's activations of every target hook.
fn source_cache(
    net: &Net,
    source: &Tensor,
    targets: &[PatchTarget],
) -> Result<BTreeMap<HookPoint, Tensor>> {
    let hooks: BTreeSet<HookPoint> = targets.iter().map(|t| t.hook).collect();
    Ok(net.run(source, &RunRequest::capture(hooks))?.cache)
}

/// One batched forward of the base tokens repeated once per target, target `i`'s rows patched;
/// returns per target the per-row metric.
fn patched_chunk(
    net: &Net,
    batch: &PromptBatch,
    base: &Tensor,
    src: &BTreeMap<HookPoint, Tensor>,
    targets: &[PatchTarget],
    metric: &Metric,
    baselines: &Baselines,
) -> Result<Vec<Vec<f64>>> {
    let (b, k) = (batch.len() as i64, targets.len() as i64);
    let device = net.device();
    let mut req = RunRequest {
        logit_positions: LogitPositions::PerRow(batch.answer_pos.repeat(k as usize)),
        ..RunRequest::default()
    };
    for (i, target) in targets.iter().enumerate() {
        let values = selected_part(&src[&target.hook], target, device);
        let rows: Vec<i64> = (i as i64 * b..(i as i64 + 1) * b).collect();
        req.interventions
            .push(intervention(target, values).rows(rows));
    }
    let logits = net.run(&base.repeat([k, 1]), &req)?.logits.squeeze_dim(1);
    let sets = batch.sets.to_device(device).repeat(k);
    let clean = baselines.clean_logits.repeat([k, 1]);
    let per_row = crate::stats::to_f64(&metric.per_row(&logits, &sets, Some(&clean))?)?;
    Ok(per_row.chunks(b as usize).map(<[f64]>::to_vec).collect())
}

/// The part of a source activation a target replaces, in the axis order of
/// [`model::Intervention`]: `[B, P, ...]`, `[B, P, 1, ...]` for one head of a per-head hook,
/// `[B, 1, P, T_k]` for one head of attn_scores/pattern.
fn selected_part(activation: &Tensor, target: &PatchTarget, device: tch::Device) -> Tensor {
    let pos = Tensor::from_slice(&target.positions).to_device(device);
    let pattern = matches!(
        target.hook,
        HookPoint::AttnScores(_) | HookPoint::Pattern(_)
    );
    let (pos_axis, head_axis) = if pattern { (2, 1) } else { (1, 2) };
    let part = activation.index_select(pos_axis, &pos);
    match target.head {
        Some(h) if target.hook.is_per_head() => part.narrow(head_axis, h, 1),
        _ => part,
    }
}

/// The replacement of a target's activation by `values`.
fn intervention(target: &PatchTarget, values: Tensor) -> Intervention {
    let iv =
        Intervention::new(target.hook, Edit::Replace(values)).positions(target.positions.clone());
    match target.head {
        Some(h) if target.hook.is_per_head() => iv.heads(vec![h]),
        _ => iv,
    }
}
