//! Attribution patching: the gradient approximation of activation patching.
//!
//! For the logit difference `M = Σ_i (logit_i[gold] − logit_i[alt])` of the base run (the
//! corrupted run when denoising, the clean run when noising) and an activation `a`,
//! `attr(cell) ≈ Σ_{pos ∈ cell} Σ_d ∂M/∂a · (a_source − a_base)`, for every cell of the grid from
//! two forward passes and one backward pass (`Tensor::run_backward` on the cached activations).
//! Each cell is also patched exactly (the batched sweep of [`crate::patch`]), and the agreement
//! between both is reported as a Spearman rank correlation over the grid.

use crate::corruption::{for_each_corruption, noise_scale, CleanRuns, CorruptionInputs};
use crate::error::{InterpError, Result};
use crate::net::{logits_at, LnMode, Net};
use crate::output::AttributionRow;
use crate::patch::{
    layers_for, position_sets, run_group_batched, variants, want_for, Cell, Component,
    ComponentKind, Direction, Pair, PositionChoice, PositionSet, Runs,
};
use crate::prompt_sample::PromptSample;
use crate::states::States;
use crate::stats::{restoration, to_f64};
use model::{HookPoint, RunOutput, RunRequest};
use serde::Serialize;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};
use util::stats::{mean, pearson, spearman};

/// What attribution patching covers.
#[derive(Clone, Debug)]
pub struct AttributionOptions {
    pub direction: Direction,
    pub components: Vec<ComponentKind>,
    pub positions: Vec<PositionChoice>,
    /// Layers (`None`: all).
    pub layers: Option<Vec<usize>>,
    /// Readout of the metric: the model's logits (`Recompute`) or ln_f with the base run's
    /// cached final scale (`CachedScale`, which makes the metric linear in the final state).
    pub ln_mode: LnMode,
    pub max_rows: usize,
}

impl Default for AttributionOptions {
    fn default() -> Self {
        AttributionOptions {
            direction: Direction::Denoising,
            components: vec![
                ComponentKind::Resid,
                ComponentKind::AttnOut,
                ComponentKind::MlpOut,
                ComponentKind::Heads,
            ],
            positions: vec![PositionChoice::Each, PositionChoice::Corrupted],
            layers: None,
            ln_mode: LnMode::Recompute,
            max_rows: 1024,
        }
    }
}

/// One cell: per example the exact change of the logit difference and its attribution estimate.
#[derive(Clone, Debug)]
pub struct AttributionCell {
    pub cell: Cell,
    pub exact: Vec<f64>,
    pub attribution: Vec<f64>,
}

/// Mean logit differences of a corruption's unpatched runs.
#[derive(Clone, Debug, Serialize)]
pub struct LdBaseline {
    pub corruption: String,
    pub examples: usize,
    /// Mean logit difference of the clean run.
    pub clean: f64,
    /// Mean logit difference of the corrupted run.
    pub corrupted: f64,
}

/// Agreement between exact and attribution patching over a set of cells.
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    pub cells: usize,
    /// Spearman rank correlation of the per-cell mean effects (`null` if undefined).
    pub spearman: Option<f64>,
    /// Pearson correlation of the same.
    pub pearson: Option<f64>,
}

/// The result of attribution patching.
#[derive(Clone, Debug)]
pub struct AttributionResult {
    pub direction: Direction,
    pub ln_mode: LnMode,
    pub cells: Vec<AttributionCell>,
    pub baselines: Vec<LdBaseline>,
    /// ν of the noise corruptions (when any was requested).
    pub noise_scale: Option<f64>,
}

impl AttributionResult {
    fn agreement<'c>(cells: impl Iterator<Item = &'c AttributionCell>) -> Agreement {
        let (x, y): (Vec<f64>, Vec<f64>) = cells
            .map(|c| {
                (
                    mean(c.exact.iter().copied()),
                    mean(c.attribution.iter().copied()),
                )
            })
            .unzip();
        Agreement {
            cells: x.len(),
            spearman: spearman(&x, &y),
            pearson: pearson(&x, &y),
        }
    }

    /// Agreement over all cells (key `all`), per component kind (`resid`, `attn_out`, `mlp_out`,
    /// `heads`) and per corruption (`corruption:NAME`).
    pub fn agreements(&self) -> BTreeMap<String, Agreement> {
        let mut out = BTreeMap::new();
        out.insert("all".to_string(), Self::agreement(self.cells.iter()));
        for (kind, name) in [
            (ComponentKind::Resid, "resid"),
            (ComponentKind::AttnOut, "attn_out"),
            (ComponentKind::MlpOut, "mlp_out"),
            (ComponentKind::Heads, "heads"),
        ] {
            if self.cells.iter().any(|c| c.cell.component.kind() == kind) {
                out.insert(
                    name.to_string(),
                    Self::agreement(
                        self.cells
                            .iter()
                            .filter(|c| c.cell.component.kind() == kind),
                    ),
                );
            }
        }
        for b in &self.baselines {
            out.insert(
                format!("corruption:{}", b.corruption),
                Self::agreement(
                    self.cells
                        .iter()
                        .filter(|c| c.cell.corruption == b.corruption),
                ),
            );
        }
        out
    }

    /// `attribution.csv` rows: per cell and method (`exact`, `attribution`) the mean change of the
    /// logit difference (`logit_diff_delta`) and the normalised `restoration`
    /// `(LD_base + Δ − LD_corrupted) / (LD_clean − LD_corrupted)`.
    pub fn rows(&self, step: u64) -> Vec<AttributionRow> {
        let mut rows = Vec::new();
        for c in &self.cells {
            let Some(b) = self
                .baselines
                .iter()
                .find(|b| b.corruption == c.cell.corruption)
            else {
                continue;
            };
            let base = match c.cell.direction {
                Direction::Noising => b.clean,
                Direction::Denoising => b.corrupted,
            };
            for (method, values) in [("exact", &c.exact), ("attribution", &c.attribution)] {
                let delta = mean(values.iter().copied());
                let mut metrics = vec![("logit_diff_delta", delta)];
                if let Some(r) = restoration(base + delta, b.clean, b.corrupted) {
                    metrics.push(("restoration", r));
                }
                rows.extend(metrics.into_iter().map(|(metric, value)| {
                    AttributionRow::new(c.cell.row(step, metric, value), method)
                }));
            }
        }
        rows
    }
}

/// Attribution patching and exact patching over the same grid, for every corruption of the probe
/// set.
pub fn attribution_patching(
    net: &Net,
    probe: &PromptSample,
    opts: &AttributionOptions,
) -> Result<AttributionResult> {
    let nu = tch::no_grad(|| noise_scale(net, probe));
    let mut clean_runs = CleanRuns::default();
    let all = for_each_corruption(net, probe, nu, |ci| {
        attribute_corruption(net, probe, ci, opts, &mut clean_runs)
    })?;
    Ok(AttributionResult {
        direction: opts.direction,
        ln_mode: opts.ln_mode,
        cells: all.cells,
        baselines: all.baselines,
        noise_scale: all.noise_scale,
    })
}

/// One (kind, layer) group of the grid with its variants.
struct Group<'s> {
    kind: ComponentKind,
    layer: usize,
    vars: Vec<(Component, &'s PositionSet)>,
}

fn attribute_corruption(
    net: &Net,
    probe: &PromptSample,
    ci: &CorruptionInputs,
    opts: &AttributionOptions,
    clean_runs: &mut CleanRuns,
) -> Result<(LdBaseline, Vec<AttributionCell>)> {
    let ap = probe.answer_pos;
    let want = want_for(&opts.components);
    let sets = position_sets(probe, &ci.positions, &opts.positions);
    let mut groups = Vec::new();
    for &kind in &opts.components {
        for layer in layers_for(net, kind, &opts.layers)? {
            groups.push(Group {
                kind,
                layer,
                vars: variants(net, kind, &sets),
            });
        }
    }
    let runs = tch::no_grad(|| -> Result<Runs> {
        let clean = clean_runs.get(net, ci, want, ap, opts.max_rows)?;
        let corrupted = ci.corrupted_states(net, &clean, want, ap, opts.max_rows)?;
        Runs::new(clean, corrupted, &ci.gold)
    })?;
    let baseline = LdBaseline {
        corruption: ci.name.clone(),
        examples: ci.len(),
        clean: runs.clean_outcomes.logit_diff(),
        corrupted: runs.corrupted_outcomes.logit_diff(),
    };
    let pair = Pair::new(net, ci, &runs, opts.direction, opts.ln_mode, ap);
    let base_ld = &pair.base_outcomes.ld;

    let mut cells = Vec::new();
    let attributions = gradient_attributions(net, &pair, &groups, ap, opts.max_rows)?;
    for (group, attr) in groups.iter().zip(attributions) {
        let exact = tch::no_grad(|| {
            run_group_batched(net, &pair, group.layer, &group.vars, ap, opts.max_rows)
        })?;
        for (((component, set), exact), attribution) in group.vars.iter().zip(exact).zip(attr) {
            cells.push(AttributionCell {
                cell: Cell {
                    corruption: ci.name.clone(),
                    direction: opts.direction,
                    component: *component,
                    layer: group.layer,
                    position: set.name.clone(),
                    positions: set.positions.clone(),
                },
                exact: exact.ld.iter().zip(base_ld).map(|(p, b)| p - b).collect(),
                attribution,
            });
        }
    }
    Ok((baseline, cells))
}

/// The activation of a group's kind in a run's cache (`[n, T, …]`).
fn group_hook(net: &Net, kind: ComponentKind, layer: usize) -> HookPoint {
    match kind {
        ComponentKind::Resid => net.resid_hook(layer),
        ComponentKind::AttnOut => HookPoint::AttnOut(layer),
        ComponentKind::MlpOut => HookPoint::MlpOut(layer),
        ComponentKind::Heads => HookPoint::Z(layer),
    }
}

/// The source − base difference of a group's activation. Shapes: `[n, T, d]` or `[n, T, H, dh]`.
fn group_delta(pair: &Pair, kind: ComponentKind, layer: usize, start: i64, m: i64) -> Tensor {
    let pick = |s: &States| -> Tensor {
        match kind {
            ComponentKind::Resid => s.resid[layer].narrow(0, start, m),
            ComponentKind::AttnOut => s.attn_out[layer].narrow(0, start, m),
            ComponentKind::MlpOut => s.mlp_out[layer].narrow(0, start, m),
            ComponentKind::Heads => s.z[layer].narrow(0, start, m),
        }
    };
    pick(&pair.src) - pick(&pair.base)
}

/// Per group, per variant, per example: `Σ_{pos ∈ set} Σ_d ∂M/∂a · (a_source − a_base)`, from one
/// forward with gradients and one backward pass per chunk of examples.
fn gradient_attributions(
    net: &Net,
    pair: &Pair,
    groups: &[Group],
    ap: usize,
    max_rows: usize,
) -> Result<Vec<Vec<Vec<f64>>>> {
    let n = pair.gold.size()[0];
    let chunk = (max_rows.max(1) as i64).min(n.max(1));
    let mut out: Vec<Vec<Vec<f64>>> = groups
        .iter()
        .map(|g| g.vars.iter().map(|_| Vec::new()).collect())
        .collect();
    let hooks = gradient_hooks(net, groups);
    let mut start = 0;
    while start < n {
        let m = chunk.min(n - start);
        let rows = Rows { start, m };
        let grads = ChunkGradients::new(net, pair, &hooks, ap, rows)?;
        tch::no_grad(|| -> Result<()> {
            for (group, out) in groups.iter().zip(out.iter_mut()) {
                let per_variant = group_attribution(net, pair, group, &grads, rows)?;
                for (out, values) in out.iter_mut().zip(per_variant) {
                    out.extend(values);
                }
            }
            Ok(())
        })?;
        start += m;
    }
    Ok(out)
}

/// A chunk of examples: `m` rows from row `start`.
#[derive(Copy, Clone, Debug)]
struct Rows {
    start: i64,
    m: i64,
}

/// The hooks whose gradients the groups need, sorted and without repeats, leaving out
/// `ResidPre(0)` (the run's input, which always has its gradient taken).
fn gradient_hooks(net: &Net, groups: &[Group]) -> Vec<HookPoint> {
    let mut hooks: Vec<HookPoint> = groups
        .iter()
        .map(|g| group_hook(net, g.kind, g.layer))
        .filter(|h| *h != HookPoint::ResidPre(0))
        .collect();
    hooks.sort();
    hooks.dedup();
    hooks
}

/// The gradients `∂M/∂a` of one chunk's summed logit difference with respect to the run's input
/// and the captured activations, from one forward with gradients and one backward pass.
struct ChunkGradients {
    /// One gradient per entry of `hooks`, of that activation's shape (`[m, T, d]` or
    /// `[m, T, H, d_head]`); undefined where the metric does not depend on it.
    grads: Vec<Tensor>,
    /// The hook of every gradient: `ResidPre(0)`, then the captured hooks in order.
    hooks: Vec<HookPoint>,
}

impl ChunkGradients {
    /// The gradients of the base run of `rows` with respect to `ResidPre(0)` and `hooks`, for the
    /// metric read at the answer position `ap`.
    fn new(
        net: &Net,
        pair: &Pair,
        hooks: &[HookPoint],
        ap: usize,
        rows: Rows,
    ) -> Result<ChunkGradients> {
        let x0 = pair.base.resid[0]
            .narrow(0, rows.start, rows.m)
            .detach()
            .to_kind(Kind::Float)
            .set_requires_grad(true);
        let mut req = RunRequest::capture(hooks.iter().copied());
        req.logit_positions = logits_at(ap);
        if pair.base_scale.is_some() {
            req.capture.insert(net.resid_hook(net.n_layer()));
        }
        tch::with_grad(|| {
            let out = net.run_from(0, &x0, &req)?;
            let logits = metric_logits(net, pair, &out, ap, rows)?;
            let gold = pair.gold.narrow(0, rows.start, rows.m).unsqueeze(1);
            let alt = pair.alt.narrow(0, rows.start, rows.m).unsqueeze(1);
            let metric =
                (logits.gather(1, &gold, false) - logits.gather(1, &alt, false)).sum(Kind::Float);
            let mut inputs = vec![x0.shallow_clone()];
            let mut order = vec![HookPoint::ResidPre(0)];
            for h in hooks {
                if let Some(t) = out.cache.get(h) {
                    inputs.push(t.shallow_clone());
                    order.push(*h);
                }
            }
            let grads = Tensor::f_run_backward(&[metric], &inputs, false, false)?;
            Ok(ChunkGradients {
                grads,
                hooks: order,
            })
        })
    }

    /// The defined gradient of `hook`, if any.
    fn of(&self, hook: HookPoint) -> Option<&Tensor> {
        self.hooks
            .iter()
            .position(|h| *h == hook)
            .map(|i| &self.grads[i])
            .filter(|t| t.defined())
    }
}

/// The answer-position logits `[m, V]` of the metric: the run's own logits, or with the base
/// run's cached final LayerNorm scale the readout of the run's final state (kept in the graph).
fn metric_logits(net: &Net, pair: &Pair, out: &RunOutput, ap: usize, rows: Rows) -> Result<Tensor> {
    let Some(scale) = &pair.base_scale else {
        return Ok(out.logits.squeeze_dim(1));
    };
    let final_hook = net.resid_hook(net.n_layer());
    let fin = out
        .cache
        .get(&final_hook)
        .ok_or_else(|| InterpError::BadSpec {
            what: "hook",
            value: final_hook.to_string(),
            reason: "the model did not return a requested activation".into(),
        })?;
    Ok(net.readout(
        &fin.select(1, ap as i64),
        Some(&scale.narrow(0, rows.start, rows.m).detach()),
    ))
}

/// One group's attribution of a chunk, per variant per example: `Σ_{pos ∈ set} Σ_d ∂M/∂a ·
/// (a_source − a_base)` (double; zero where the metric has no gradient for the activation).
fn group_attribution(
    net: &Net,
    pair: &Pair,
    group: &Group,
    grads: &ChunkGradients,
    rows: Rows,
) -> Result<Vec<Vec<f64>>> {
    let Rows { start, m } = rows;
    let hook = group_hook(net, group.kind, group.layer);
    let delta = group_delta(pair, group.kind, group.layer, start, m);
    // ∂M/∂a · Δa, of the activation's shape [m, T, ...].
    let prod = match grads.of(hook) {
        Some(grad) => grad.to_kind(Kind::Double) * delta.to_kind(Kind::Double),
        None => delta.zeros_like().to_kind(Kind::Double),
    };
    group
        .vars
        .iter()
        .map(|(component, set)| {
            let idx =
                Tensor::from_slice(&set.positions.iter().map(|&p| p as i64).collect::<Vec<_>>())
                    .to_device(net.device());
            let sel = prod.index_select(1, &idx);
            let sel = match component {
                Component::Head(h) => sel.narrow(2, *h as i64, 1),
                _ => sel,
            };
            let per_example = sel.reshape([m, -1]).sum_dim_intlist(1, false, Kind::Double);
            to_f64(&per_example)
        })
        .collect()
}
