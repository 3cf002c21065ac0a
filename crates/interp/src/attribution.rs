//! Attribution patching: the gradient approximation of activation patching.
//!
//! For the logit difference `M = Σ_i (logit_i[gold] − logit_i[alt])` of the base run (the
//! corrupted run when denoising, the clean run when noising) and an activation `a`,
//! `attr(cell) ≈ Σ_{pos ∈ cell} Σ_d ∂M/∂a · (a_source − a_base)`, for every cell of the grid from
//! two forward passes and one backward pass (`Tensor::run_backward` on the cached activations).
//! Each cell is also patched exactly (the batched sweep of [`crate::patch`]), and the agreement
//! between both is reported as a Spearman rank correlation over the grid.

use crate::corruption::{for_each_corruption, noise_scale, CleanRuns, CorruptionInputs};
use crate::error::Result;
use crate::net::{LnMode, Net, Rows};
use crate::output::PatchRow;
use crate::patch::{
    position_sets, run_group, target_of, Cell, CellGrid, CellGroup, ComponentKind, Direction, Pair,
    Runs, SweepMode,
};
use crate::prompt_sample::PromptSample;
use crate::stats::{restoration, to_f64};
use crate::tokens::patch_runs::selected_part;
use model::HookPoint;
use serde::Serialize;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};
use util::stats::{mean, pearson, spearman};

/// What attribution patching covers.
#[derive(Clone, Debug)]
pub struct AttributionOptions {
    pub direction: Direction,
    pub grid: CellGrid,
    /// Readout of the metric: the model's logits (`Recompute`) or ln_f with the base run's
    /// cached final scale (`CachedScale`, which makes the metric linear in the final state).
    pub ln_mode: LnMode,
    pub max_rows: usize,
}

impl Default for AttributionOptions {
    fn default() -> Self {
        AttributionOptions {
            direction: Direction::Denoising,
            grid: CellGrid {
                components: vec![
                    ComponentKind::Resid,
                    ComponentKind::AttnOut,
                    ComponentKind::MlpOut,
                    ComponentKind::Heads,
                ],
                ..CellGrid::default()
            },
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
    pub fn rows(&self, step: u64) -> Vec<PatchRow> {
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
                rows.extend(
                    metrics
                        .into_iter()
                        .map(|(metric, value)| c.cell.row(step, metric, value).with_method(method)),
                );
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

/// Baseline and cells of one corruption: the gradient estimates and the exact patches of every
/// cell.
fn attribute_corruption(
    net: &Net,
    probe: &PromptSample,
    ci: &CorruptionInputs,
    opts: &AttributionOptions,
    clean_runs: &mut CleanRuns,
) -> Result<(LdBaseline, Vec<AttributionCell>)> {
    let ap = probe.answer_pos;
    let want = opts.grid.want();
    let sets = position_sets(probe, &ci.positions, &opts.grid.positions);
    let groups = opts.grid.groups(net, &sets)?;
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
    let pair = tch::no_grad(|| Pair::new(net, ci, &runs, opts.direction, opts.ln_mode, ap))?;
    let base_ld = &pair.base_outcomes.ld;

    let mut cells = Vec::new();
    let attributions = gradient_attributions(net, &pair, &groups, opts.max_rows)?;
    for (group, attr) in groups.iter().zip(attributions) {
        let exact = tch::no_grad(|| {
            run_group(
                net,
                &pair,
                group.layer,
                &group.vars,
                SweepMode::Batched,
                opts.max_rows,
            )
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

/// Per group, per variant, per example: `Σ_{pos ∈ set} Σ_d ∂M/∂a · (a_source − a_base)` for the
/// summed logit difference `M`, from one forward with gradients and one backward pass per chunk
/// of examples ([`crate::tokens::patch_runs::PatchRuns::gradient_products`]).
fn gradient_attributions(
    net: &Net,
    pair: &Pair,
    groups: &[CellGroup],
    max_rows: usize,
) -> Result<Vec<Vec<Vec<f64>>>> {
    let mut out: Vec<Vec<Vec<f64>>> = groups
        .iter()
        .map(|g| g.vars.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut hooks: Vec<HookPoint> = groups.iter().map(|g| g.kind.hook(net, g.layer)).collect();
    hooks.sort();
    hooks.dedup();
    let logit_diff = |logits: &Tensor, rows: Rows| -> Result<Tensor> {
        let gold = rows.of(pair.gold).unsqueeze(1);
        let alt = rows.of(pair.alt).unsqueeze(1);
        Ok((logits.gather(1, &gold, false) - logits.gather(1, &alt, false)).sum(Kind::Float))
    };
    for rows in Rows::chunks(pair.runs.len(), max_rows as i64) {
        let products = pair
            .runs
            .gradient_products(net, &hooks, rows, &logit_diff)?;
        let by_hook: BTreeMap<HookPoint, Option<Tensor>> =
            hooks.iter().copied().zip(products).collect();
        tch::no_grad(|| -> Result<()> {
            for (group, out) in groups.iter().zip(out.iter_mut()) {
                let hook = group.kind.hook(net, group.layer);
                let product = by_hook.get(&hook).and_then(Option::as_ref);
                let per_variant = group_attribution(net, pair, group, product, rows)?;
                for (out, values) in out.iter_mut().zip(per_variant) {
                    out.extend(values);
                }
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// One group's attribution of a chunk, per variant per example: the gradient products
/// `∂M/∂a · (a_source − a_base)` (`[m, T, ...]`, f64; `None`: zero) summed over the variant's
/// positions (and head) and the feature axis.
fn group_attribution(
    net: &Net,
    pair: &Pair,
    group: &CellGroup,
    product: Option<&Tensor>,
    rows: Rows,
) -> Result<Vec<Vec<f64>>> {
    let hook = group.kind.hook(net, group.layer);
    let prod = match product {
        Some(p) => p.shallow_clone(),
        None => rows
            .of(&pair.runs.base[&hook])
            .zeros_like()
            .to_kind(Kind::Double),
    };
    group
        .vars
        .iter()
        .map(|(component, set)| {
            let target = target_of(net, *component, group.layer, &set.positions);
            let sel = selected_part(&prod, &target);
            let per_example = sel
                .reshape([rows.m, -1])
                .sum_dim_intlist(1, false, Kind::Double);
            to_f64(&per_example)
        })
        .collect()
}
