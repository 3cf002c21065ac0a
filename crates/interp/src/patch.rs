//! Activation patching (causal tracing) of a prompt sample's corruptions: the task layer over the
//! token core's patching engine (`tokens/patch_runs.rs`).
//!
//! For a corruption, the clean and the corrupted run of every example are computed once with all
//! residual states (and, when needed, `attn_out`, `mlp_out`, `z`) captured. For noising (the
//! paper) the *base* run is the clean one and the *source* the corrupted one; for denoising
//! (TransformerLens) the other way round. A cell (component, layer, position set) replaces the
//! base run's activation at those positions with the source run's and reads the prediction at the
//! answer position.
//!
//! This layer turns cells into patch targets (`target_of`) and patched logits into the task's
//! outcomes (gold rank, probability, logit difference against the corrupted run's best other
//! token); the engine batches: the states below layer `l` never change, so all variants (position
//! sets, heads) of a layer run side by side from `run_from(l)`, residual cells on the suffix path.
//! [`SweepMode::Naive`] runs one full forward per example and cell, the reference.

use crate::corruption::{for_each_corruption, noise_scale, CleanRuns, CorruptionInputs};
use crate::error::{InterpError, Result};
use crate::net::{LnMode, Net, Rows, Want};
use crate::output::PatchRow;
use crate::prompt_sample::PromptSample;
use crate::states::{alt_tokens, States};
use crate::stats::{restoration, Outcomes};
use crate::tokens::patch_runs::{BaseTokens, PatchRuns};
use crate::tokens::PatchTarget;
use model::HookPoint;
use std::fmt;
use std::str::FromStr;
use tch::Tensor;

/// Which run receives the patched activations.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// The paper: the corrupted run's state patched into the clean run.
    Noising,
    /// TransformerLens: the clean run's state patched into the corrupted run.
    Denoising,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Noising => "noising",
            Direction::Denoising => "denoising",
        })
    }
}

impl FromStr for Direction {
    type Err = InterpError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "noising" => Ok(Direction::Noising),
            "denoising" => Ok(Direction::Denoising),
            _ => Err(InterpError::spec(
                "direction",
                s,
                "expected noising or denoising",
            )),
        }
    }
}

/// A kind of patched activation (a granularity of the sweep).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentKind {
    /// The residual stream `resid_pre[l]`, layers `0..=L`.
    Resid,
    /// `blocks.{l}.hook_attn_out`, layers `0..L`.
    AttnOut,
    /// `blocks.{l}.hook_mlp_out`, layers `0..L`.
    MlpOut,
    /// `blocks.{l}.attn.hook_z` of each head, layers `0..L`.
    Heads,
}

impl FromStr for ComponentKind {
    type Err = InterpError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "resid" => Ok(ComponentKind::Resid),
            "attn_out" => Ok(ComponentKind::AttnOut),
            "mlp_out" => Ok(ComponentKind::MlpOut),
            "heads" | "head" => Ok(ComponentKind::Heads),
            _ => Err(InterpError::spec(
                "component",
                s,
                "expected resid, attn_out, mlp_out or heads",
            )),
        }
    }
}

impl ComponentKind {
    /// The activation a component of this kind patches at `layer`: `resid_pre[l]` (the final
    /// state for `l = L`), `hook_attn_out`, `hook_mlp_out` or `attn.hook_z`.
    pub(crate) fn hook(self, net: &Net, layer: usize) -> HookPoint {
        match self {
            ComponentKind::Resid => net.resid_hook(layer),
            ComponentKind::AttnOut => HookPoint::AttnOut(layer),
            ComponentKind::MlpOut => HookPoint::MlpOut(layer),
            ComponentKind::Heads => HookPoint::Z(layer),
        }
    }
}

/// One patched activation of a cell.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Resid,
    AttnOut,
    MlpOut,
    /// Head `h`'s `hook_z`.
    Head(usize),
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Resid => f.write_str("resid"),
            Component::AttnOut => f.write_str("attn_out"),
            Component::MlpOut => f.write_str("mlp_out"),
            Component::Head(h) => write!(f, "head.{h}"),
        }
    }
}

impl Component {
    /// The kind this component belongs to.
    pub fn kind(&self) -> ComponentKind {
        match self {
            Component::Resid => ComponentKind::Resid,
            Component::AttnOut => ComponentKind::AttnOut,
            Component::MlpOut => ComponentKind::MlpOut,
            Component::Head(_) => ComponentKind::Heads,
        }
    }
}

/// Which position sets a sweep patches.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PositionChoice {
    /// The positions the corruption changes (the paper's cell; `e1+mask` for comparison's e1).
    Corrupted,
    /// Every input position on its own.
    Each,
    /// All input positions at once.
    All,
}

impl FromStr for PositionChoice {
    type Err = InterpError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "corrupted" => Ok(PositionChoice::Corrupted),
            "each" => Ok(PositionChoice::Each),
            "all" => Ok(PositionChoice::All),
            _ => Err(InterpError::spec(
                "position choice",
                s,
                "expected corrupted, each or all",
            )),
        }
    }
}

/// A named set of input positions patched together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionSet {
    /// Role names joined by `+`, or `all`.
    pub name: String,
    /// Sorted position indices.
    pub positions: Vec<usize>,
}

/// The position sets of `choices` for a corruption that changes `corrupted` (duplicates removed,
/// first name kept).
pub fn position_sets(
    probe: &PromptSample,
    corrupted: &[usize],
    choices: &[PositionChoice],
) -> Vec<PositionSet> {
    let mut sets: Vec<PositionSet> = Vec::new();
    let t = probe.seq_len();
    for choice in choices {
        let candidates: Vec<Vec<usize>> = match choice {
            PositionChoice::Corrupted => vec![corrupted.to_vec()],
            PositionChoice::Each => (0..t).map(|p| vec![p]).collect(),
            PositionChoice::All => vec![(0..t).collect()],
        };
        for mut positions in candidates {
            positions.sort_unstable();
            positions.dedup();
            if !positions.is_empty() && !sets.iter().any(|s| s.positions == positions) {
                sets.push(PositionSet {
                    name: probe.position_set_name(&positions),
                    positions,
                });
            }
        }
    }
    sets
}

/// Batched sweep or the naive reference loop.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum SweepMode {
    #[default]
    Batched,
    /// One full forward per example, layer and cell (batch size 1): a reference for tests and
    /// benchmarks.
    Naive,
}

/// What a patching sweep covers.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    pub directions: Vec<Direction>,
    pub grid: CellGrid,
    pub mode: SweepMode,
    /// Largest batch of one forward (bounds memory).
    pub max_rows: usize,
    /// How the prediction is read: `Recompute` = the model's own logits; `CachedScale` = ln_f
    /// applied with the base run's final scale (linear in the final state; used by attribution).
    pub ln_mode: LnMode,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            directions: vec![Direction::Noising, Direction::Denoising],
            grid: CellGrid::default(),
            mode: SweepMode::Batched,
            max_rows: 2048,
            ln_mode: LnMode::Recompute,
        }
    }
}

/// One cell of a sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub corruption: String,
    pub direction: Direction,
    pub component: Component,
    pub layer: usize,
    /// Name of the patched position set.
    pub position: String,
    pub positions: Vec<usize>,
}

impl Cell {
    /// The `patch.csv` row of this cell's `metric` at checkpoint `step`.
    pub fn row(&self, step: u64, metric: &str, value: f64) -> PatchRow {
        PatchRow {
            step,
            corruption: self.corruption.clone(),
            direction: self.direction.to_string(),
            component: self.component.to_string(),
            layer: self.layer,
            position: self.position.clone(),
            metric: metric.into(),
            value,
            method: None,
        }
    }
}

/// A cell with the per-example outcomes of its patched runs (order of [`Baseline::examples`]).
#[derive(Clone, Debug)]
pub struct CellResult {
    pub cell: Cell,
    pub outcomes: Outcomes,
}

/// The unpatched clean and corrupted runs of a corruption.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub corruption: String,
    /// Indices into the prompt sample of the examples that admit the corruption.
    pub examples: Vec<usize>,
    /// Positions the corruption changes.
    pub positions: Vec<usize>,
    /// Per example the corrupted run's best non-gold token (the `alt` of the logit difference).
    pub alt: Vec<i64>,
    pub clean: Outcomes,
    pub corrupted: Outcomes,
}

/// The result of a sweep: per cell, per example outcomes, and the baselines.
#[derive(Clone, Debug)]
pub struct PatchResult {
    pub cells: Vec<CellResult>,
    pub baselines: Vec<Baseline>,
    /// ν of the noise corruptions (when any was requested).
    pub noise_scale: Option<f64>,
}

impl PatchResult {
    /// Aggregated `patch.csv` rows: per cell `causal_strength`, `mean_rank`, `gold_prob`,
    /// `logit_diff`, and `restoration` (omitted when clean and corrupted logit differences agree).
    pub fn rows(&self, step: u64) -> Vec<PatchRow> {
        let mut rows = Vec::new();
        for c in &self.cells {
            let Some(base) = self
                .baselines
                .iter()
                .find(|b| b.corruption == c.cell.corruption)
            else {
                continue;
            };
            let o = &c.outcomes;
            let mut metrics = vec![
                ("causal_strength", o.causal_strength()),
                ("mean_rank", o.mean_rank()),
                ("gold_prob", o.gold_prob()),
                ("logit_diff", o.logit_diff()),
            ];
            if let Some(r) = restoration(
                o.logit_diff(),
                base.clean.logit_diff(),
                base.corrupted.logit_diff(),
            ) {
                metrics.push(("restoration", r));
            }
            rows.extend(
                metrics
                    .into_iter()
                    .map(|(m, value)| c.cell.row(step, m, value)),
            );
        }
        rows
    }
}

/// Runs a patching sweep over every corruption of the prompt sample.
pub fn patch_sweep(net: &Net, probe: &PromptSample, opts: &SweepOptions) -> Result<PatchResult> {
    tch::no_grad(|| {
        let nu = noise_scale(net, probe);
        let mut clean_runs = CleanRuns::default();
        let all = for_each_corruption(net, probe, nu, |ci| {
            sweep_corruption(net, probe, ci, opts, &mut clean_runs)
        })?;
        Ok(PatchResult {
            cells: all.cells,
            baselines: all.baselines,
            noise_scale: all.noise_scale,
        })
    })
}

/// The cells a patching sweep covers: component kinds, position sets and layers (exact
/// patching and attribution patching alike).
#[derive(Clone, Debug)]
pub struct CellGrid {
    pub components: Vec<ComponentKind>,
    pub positions: Vec<PositionChoice>,
    /// Layers (`None`: all, `0..=L` for the residual stream, `0..L` otherwise).
    pub layers: Option<Vec<usize>>,
}

impl Default for CellGrid {
    /// The residual stream at every layer, each position alone and the corrupted ones together.
    fn default() -> Self {
        CellGrid {
            components: vec![ComponentKind::Resid],
            positions: vec![PositionChoice::Each, PositionChoice::Corrupted],
            layers: None,
        }
    }
}

/// One (kind, layer) group of a grid with its variants: each component of the kind (every head
/// for `Heads`) with each position set.
pub(crate) struct CellGroup<'s> {
    pub kind: ComponentKind,
    pub layer: usize,
    pub vars: Vec<(Component, &'s PositionSet)>,
}

impl CellGrid {
    /// The groups of the grid: each component kind at each of its layers (validated against
    /// `L`), with every position set of `sets`.
    pub(crate) fn groups<'s>(
        &self,
        net: &Net,
        sets: &'s [PositionSet],
    ) -> Result<Vec<CellGroup<'s>>> {
        let mut groups = Vec::new();
        for &kind in &self.components {
            for layer in self.layers_of(net, kind)? {
                groups.push(CellGroup {
                    kind,
                    layer,
                    vars: variants(net, kind, sets),
                });
            }
        }
        Ok(groups)
    }

    /// The activations the grid's component kinds need besides the residual stream.
    pub(crate) fn want(&self) -> Want {
        let has = |kind| self.components.contains(&kind);
        Want {
            attn_out: has(ComponentKind::AttnOut),
            mlp_out: has(ComponentKind::MlpOut),
            z: has(ComponentKind::Heads),
        }
    }

    /// The layers of a component kind covered by the grid (validated against `L`).
    fn layers_of(&self, net: &Net, kind: ComponentKind) -> Result<Vec<usize>> {
        let l = net.n_layer();
        let top = if kind == ComponentKind::Resid {
            l
        } else {
            l - 1
        };
        match &self.layers {
            None => Ok((0..=top).collect()),
            Some(list) => {
                for &layer in list {
                    net.check_layer(layer)?;
                }
                Ok(list.iter().copied().filter(|&x| x <= top).collect())
            }
        }
    }
}

/// The variants of one (kind, layer) group: each component with each position set.
fn variants<'s>(
    net: &Net,
    kind: ComponentKind,
    sets: &'s [PositionSet],
) -> Vec<(Component, &'s PositionSet)> {
    let comps: Vec<Component> = match kind {
        ComponentKind::Resid => vec![Component::Resid],
        ComponentKind::AttnOut => vec![Component::AttnOut],
        ComponentKind::MlpOut => vec![Component::MlpOut],
        ComponentKind::Heads => (0..net.n_head()).map(Component::Head).collect(),
    };
    sets.iter()
        .flat_map(|s| comps.iter().map(move |&c| (c, s)))
        .collect()
}

/// The two runs of a direction as the engine sees them ([`PatchRuns`]), with each example's
/// gold and `alt` tokens and the base run's own outcomes.
pub(crate) struct Pair<'s> {
    pub runs: PatchRuns,
    pub gold: &'s Tensor,
    pub alt: &'s Tensor,
    /// The base run's own outcomes (what a patch that changes nothing reports).
    pub base_outcomes: &'s Outcomes,
}

/// The clean and corrupted runs of a corruption, with the `alt` token of each example and the
/// outcomes of both runs.
pub(crate) struct Runs {
    pub clean: States,
    pub corrupted: States,
    /// The corrupted run's best non-gold token per example `[n]` i64.
    pub alt: Tensor,
    pub clean_outcomes: Outcomes,
    pub corrupted_outcomes: Outcomes,
}

impl Runs {
    /// The two runs of a corruption whose gold answers are `gold` `[n]` i64.
    pub(crate) fn new(clean: States, corrupted: States, gold: &Tensor) -> Result<Runs> {
        let alt = alt_tokens(&corrupted.logits, gold);
        Ok(Runs {
            clean_outcomes: Outcomes::from_logits(&clean.logits, gold, &alt)?,
            corrupted_outcomes: Outcomes::from_logits(&corrupted.logits, gold, &alt)?,
            clean,
            corrupted,
            alt,
        })
    }
}

impl<'s> Pair<'s> {
    pub(crate) fn new(
        net: &Net,
        ci: &'s CorruptionInputs,
        runs: &'s Runs,
        direction: Direction,
        ln_mode: LnMode,
        answer_pos: usize,
    ) -> Result<Pair<'s>> {
        let (clean, corrupted) = (&runs.clean, &runs.corrupted);
        let (base, src, base_tokens, base_noise, base_outcomes) = match direction {
            Direction::Noising => (clean, corrupted, &ci.clean, None, &runs.clean_outcomes),
            Direction::Denoising => (
                corrupted,
                clean,
                &ci.corrupted,
                ci.noise.as_ref(),
                &runs.corrupted_outcomes,
            ),
        };
        let answer_pos = vec![answer_pos as i64; ci.len()];
        let mut patch_runs = PatchRuns::new(
            net,
            base.activations(net),
            src.activations(net),
            &answer_pos,
            ln_mode,
        )?;
        patch_runs.base_tokens = Some(BaseTokens {
            tokens: base_tokens.shallow_clone(),
            noise: base_noise.map(Tensor::shallow_clone),
        });
        Ok(Pair {
            runs: patch_runs,
            gold: &ci.gold,
            alt: &runs.alt,
            base_outcomes,
        })
    }

    /// The outcomes of the answer-position logits of `k` patched variants of the examples of
    /// `rows` (`[k · m, V]`, variant-major).
    fn score(&self, logits: &Tensor, rows: Rows, k: i64) -> Result<Outcomes> {
        let gold = rows.of(self.gold).repeat([k]);
        let alt = rows.of(self.alt).repeat([k]);
        Outcomes::from_logits(logits, &gold, &alt)
    }
}

/// Baseline and cells of one corruption.
fn sweep_corruption(
    net: &Net,
    probe: &PromptSample,
    ci: &CorruptionInputs,
    opts: &SweepOptions,
    clean_runs: &mut CleanRuns,
) -> Result<(Baseline, Vec<CellResult>)> {
    let ap = probe.answer_pos;
    let want = opts.grid.want();
    let sets = position_sets(probe, &ci.positions, &opts.grid.positions);
    let rows = match opts.mode {
        SweepMode::Batched => opts.max_rows,
        SweepMode::Naive => 1,
    };
    let clean = clean_runs.get(net, ci, want, ap, rows)?;
    let corrupted = match opts.mode {
        SweepMode::Batched => ci.corrupted_states(net, &clean, want, ap, rows)?,
        SweepMode::Naive => States::compute(net, &ci.corrupted, ci.noise.as_ref(), want, ap, rows)?,
    };
    let runs = Runs::new(clean, corrupted, &ci.gold)?;
    let baseline = Baseline {
        corruption: ci.name.clone(),
        examples: ci.examples.clone(),
        positions: ci.positions.clone(),
        alt: crate::stats::to_i64(&runs.alt)?,
        clean: runs.clean_outcomes.clone(),
        corrupted: runs.corrupted_outcomes.clone(),
    };
    let groups = opts.grid.groups(net, &sets)?;
    let mut cells = Vec::new();
    for &direction in &opts.directions {
        let pair = Pair::new(net, ci, &runs, direction, opts.ln_mode, ap)?;
        for group in &groups {
            let (layer, vars) = (group.layer, &group.vars);
            let outcomes = run_group(net, &pair, layer, vars, opts.mode, opts.max_rows)?;
            for ((component, set), outcomes) in vars.iter().zip(outcomes) {
                cells.push(CellResult {
                    cell: Cell {
                        corruption: ci.name.clone(),
                        direction,
                        component: *component,
                        layer,
                        position: set.name.clone(),
                        positions: set.positions.clone(),
                    },
                    outcomes,
                });
            }
        }
    }
    Ok((baseline, cells))
}

/// The patch target of a component at `layer` over `positions`.
pub(crate) fn target_of(
    net: &Net,
    component: Component,
    layer: usize,
    positions: &[usize],
) -> PatchTarget {
    PatchTarget {
        hook: component.kind().hook(net, layer),
        positions: positions.iter().map(|&p| p as i64).collect(),
        head: match component {
            Component::Head(h) => Some(h as i64),
            _ => None,
        },
    }
}

/// The outcomes of every variant of one (layer, variants) group over all examples: batched by
/// the engine ([`PatchRuns::patch`]: residual variants on the suffix path, the others as
/// row-specific interventions of one `run_from(layer)` forward per chunk), or one full forward
/// per example and variant ([`SweepMode::Naive`]).
pub(crate) fn run_group(
    net: &Net,
    pair: &Pair,
    layer: usize,
    vars: &[(Component, &PositionSet)],
    mode: SweepMode,
    max_rows: usize,
) -> Result<Vec<Outcomes>> {
    let targets: Vec<PatchTarget> = vars
        .iter()
        .map(|(component, set)| target_of(net, *component, layer, &set.positions))
        .collect();
    let score = |logits: &Tensor, rows: Rows, k: i64| pair.score(logits, rows, k);
    match mode {
        SweepMode::Batched => pair
            .runs
            .patch(net, &targets, max_rows, pair.base_outcomes, &score),
        SweepMode::Naive => pair.runs.patch_one_by_one(net, &targets, &score),
    }
}
