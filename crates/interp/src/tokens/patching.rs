//! Activation patching on token batches: one generic routine over any hook, position set, head
//! and metric ([`patch`]); thin constructors of the usual target lists on top
//! ([`resid_targets`], [`head_targets`], [`hook_targets`]).
//!
//! A target's activation in the base run is replaced by the source run's at the target's
//! positions (and head), everything downstream recomputed, by the engine in
//! [`super::patch_runs`] (batched forwards from the target's layer, suffix runs for residual
//! states).

use super::patch_runs::{cached_hooks, BaseTokens, PatchRuns};
use super::{AnswerPositions, Baselines, PromptBatch};
use crate::error::{InterpError, Result};
use crate::metric::Metric;
use crate::net::Rows;
use crate::net::{LnMode, Net};
use crate::patch::{Direction, SweepMode};
use model::{HookPoint, RunRequest};
use ndarray::{Array2, ArrayView1};
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

impl PatchTarget {
    /// Checks the target against prompts of `seq_len` positions and the model: a hook of one of
    /// its layers, at least one position, every position in `0..seq_len`, a head only on a
    /// per-head hook and in `0..H`.
    pub fn check(&self, net: &Net, seq_len: i64) -> Result<()> {
        let bad = |reason: String| Err(InterpError::spec("patch target", self.to_string(), reason));
        if let Some(layer) = self.hook.layer() {
            if layer >= net.n_layer() {
                return bad(format!("the model has layers 0..{}", net.n_layer()));
            }
        }
        if self.positions.is_empty() || self.positions.iter().any(|p| !(0..seq_len).contains(p)) {
            return bad(format!("positions must be in 0..{seq_len}"));
        }
        match self.head {
            Some(_) if !self.hook.is_per_head() => bad("the hook has no heads".into()),
            Some(h) if !(0..net.n_head() as i64).contains(&h) => {
                bad(format!("the model has heads 0..{}", net.n_head()))
            }
            _ => Ok(()),
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

/// How a patch runs on a token batch.
#[derive(Clone, Debug)]
pub struct PatchOptions {
    /// Which run is patched: noising patches the corrupted run's activations into the clean
    /// run, denoising the clean run's into the corrupted one.
    pub direction: Direction,
    /// Readout of the metric: the model's logits (`Recompute`), or ln_final with the base run's
    /// scale at the answer position (`CachedScale`: linear in the final residual state).
    pub ln_mode: LnMode,
    /// Largest batch of one forward, in rows (at least one row per target of a layer).
    pub max_rows: usize,
    /// `Batched` (the engine's paths) or `Naive` (one full forward per target and prompt, the
    /// reference; attribution ignores it).
    pub mode: SweepMode,
}

impl PatchOptions {
    /// `direction` with the model's own logits, batches of up to 2048 rows, batched.
    pub fn new(direction: Direction) -> PatchOptions {
        PatchOptions {
            direction,
            ln_mode: LnMode::Recompute,
            max_rows: 2048,
            mode: SweepMode::Batched,
        }
    }
}

/// Patches every target from the source run into the base run of `opts.direction` and
/// evaluates `metric` at each prompt's answer position; see `PatchRuns` (tokens/patch_runs.rs)
/// for the batching.
pub fn patch(
    net: &Net,
    batch: &PromptBatch,
    targets: &[PatchTarget],
    metric: &Metric,
    opts: &PatchOptions,
) -> Result<PatchValues> {
    let direction = opts.direction;
    for target in targets {
        target.check(net, batch.clean.size()[1])?;
    }
    let hooks = targets.iter().map(|t| t.hook);
    let (runs, baselines) = token_runs(net, batch, hooks, metric, opts, "patching")?;
    let clean = crate::stats::to_f64(&baselines.clean)?;
    let corrupted = match &baselines.corrupted {
        Some(c) => crate::stats::to_f64(c)?,
        None => Vec::new(),
    };
    let base_scores = match direction {
        Direction::Noising => &clean,
        Direction::Denoising => &corrupted,
    };
    let per_target = tch::no_grad(|| {
        let sets = batch.sets.to_device(net.device());
        let score = |logits: &Tensor, rows: Rows, k: i64| {
            let clean = rows.of(&baselines.clean_logits).repeat([k, 1]);
            let sets = sets.narrow(rows.start, rows.m).repeat(k);
            crate::stats::to_f64(&metric.per_row(logits, &sets, Some(&clean))?)
        };
        match opts.mode {
            SweepMode::Batched => runs.patch(net, targets, opts.max_rows, base_scores, &score),
            SweepMode::Naive => runs.patch_one_by_one(net, targets, &score),
        }
    })?;
    let mut values = Array2::zeros((targets.len(), batch.len()));
    for (mut row, scores) in values.rows_mut().into_iter().zip(per_target) {
        row.assign(&ArrayView1::from(&scores));
    }
    Ok(PatchValues {
        metric: metric.clone(),
        direction,
        targets: targets.to_vec(),
        values,
        clean,
        corrupted,
    })
}

/// The cached base and source runs of a token batch in `opts.direction` (every residual state,
/// `hooks` and the answer logits), and the baselines of `metric` read from the same two runs.
/// `analysis` names the caller in the error of a batch without corrupted tokens.
pub(crate) fn token_runs(
    net: &Net,
    batch: &PromptBatch,
    hooks: impl IntoIterator<Item = HookPoint>,
    metric: &Metric,
    opts: &PatchOptions,
    analysis: &str,
) -> Result<(PatchRuns, Baselines)> {
    let (base, source) = batch.base_and_source(opts.direction, analysis)?;
    tch::no_grad(|| {
        let mut capture = RunRequest::capture(cached_hooks(net, hooks));
        capture.logit_positions = AnswerPositions::new(&batch.answer_pos).logit_positions();
        let base_run = net.gpt.run(base, &capture)?;
        let source_run = net.gpt.run(source, &capture)?;
        let (base_logits, source_logits) = (
            base_run.logits.squeeze_dim(1),
            source_run.logits.squeeze_dim(1),
        );
        let baselines = match opts.direction {
            Direction::Noising => {
                Baselines::of_logits(batch, metric, base_logits, Some(&source_logits))
            }
            Direction::Denoising => {
                Baselines::of_logits(batch, metric, source_logits, Some(&base_logits))
            }
        }?;
        let mut runs = PatchRuns::new(
            net,
            base_run.cache,
            source_run.cache,
            &batch.answer_pos,
            opts.ln_mode,
        )?;
        runs.base_tokens = Some(BaseTokens {
            tokens: base.to_device(net.device()),
            noise: None,
        });
        Ok((runs, baselines))
    })
}
