//! Activation patching (causal tracing), batched.
//!
//! For a corruption, the clean and the corrupted run of every example are computed once with all
//! residual states (and, when needed, `attn_out`, `mlp_out`, `z`) captured. For noising (the
//! paper) the *base* run is the clean one and the *source* the corrupted one; for denoising
//! (TransformerLens) the other way round. A cell (component, layer, position set) replaces the
//! base run's activation at those positions with the source run's and reads the prediction at the
//! answer position.
//!
//! Batched sweep: the states below layer `l` never change, so for each layer all variants
//! (position sets, heads) of a chunk of examples are stacked on the batch axis and run through the
//! remaining blocks once with `Gpt::run_from(l, …)`: a residual cell is a row whose input state is
//! patched; an `attn_out`/`mlp_out`/head cell is a row-specific intervention in the same batched
//! run. The cost is `Σ_l (L − l)` block passes per example and variant instead of `L` per cell.
//! [`SweepMode::Naive`] keeps the per-example, per-layer, per-cell full forward loop as a reference.

use crate::corruption::{for_each_corruption, noise_scale, CleanRuns, CorruptionInputs};
use crate::error::{InterpError, Result};
use crate::net::{logits_at, LnMode, Net, Want};
use crate::output::PatchRow;
use crate::prompt_sample::PromptSample;
use crate::states::{alt_tokens, States};
use crate::stats::{restoration, Outcomes};
use model::{Edit, HookPoint, Intervention, KeyValues, RunRequest};
use std::cell::OnceCell;
use std::collections::BTreeMap;
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
    pub components: Vec<ComponentKind>,
    pub positions: Vec<PositionChoice>,
    /// Layers to patch (`None`: all, `0..=L` for the residual stream, `0..L` otherwise).
    pub layers: Option<Vec<usize>>,
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
            components: vec![ComponentKind::Resid],
            positions: vec![PositionChoice::Each, PositionChoice::Corrupted],
            layers: None,
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

/// The layers of a component kind covered by `opts` (validated against `L`).
pub(crate) fn layers_for(
    net: &Net,
    kind: ComponentKind,
    layers: &Option<Vec<usize>>,
) -> Result<Vec<usize>> {
    let l = net.n_layer();
    let top = if kind == ComponentKind::Resid {
        l
    } else {
        l - 1
    };
    match layers {
        None => Ok((0..=top).collect()),
        Some(list) => {
            for &layer in list {
                net.check_layer(layer)?;
            }
            Ok(list.iter().copied().filter(|&x| x <= top).collect())
        }
    }
}

/// The variants of one (kind, layer) group: each component with each position set.
pub(crate) fn variants<'s>(
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

/// The activations a set of component kinds needs besides the residual stream.
pub(crate) fn want_for(kinds: &[ComponentKind]) -> Want {
    Want {
        attn_out: kinds.contains(&ComponentKind::AttnOut),
        mlp_out: kinds.contains(&ComponentKind::MlpOut),
        z: kinds.contains(&ComponentKind::Heads),
    }
}

/// The two runs of a direction, seen from the patched (base) run.
pub(crate) struct Pair<'s> {
    pub base: States,
    pub src: States,
    /// Inputs of the base run (for the naive full forwards).
    pub base_tokens: &'s Tensor,
    pub base_noise: Option<&'s Tensor>,
    pub gold: &'s Tensor,
    pub alt: &'s Tensor,
    /// The base run's own outcomes (what a patch that changes nothing reports).
    pub base_outcomes: &'s Outcomes,
    /// ln_f scale of the base run's final state at the answer position `[n, 1]`
    /// (cached-scale readout only).
    pub base_scale: Option<Tensor>,
    /// Per layer `0..L` the base run's attention keys and values at the positions before the
    /// answer, `[n, H, answer_pos, d_head]` (computed on first use by a residual group).
    base_kv: OnceCell<Vec<KeyValues>>,
    answer_pos: usize,
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
    ) -> Pair<'s> {
        let all = runs.clean.logits.size()[0];
        let (clean, corrupted) = (&runs.clean, &runs.corrupted);
        let (base, src, base_tokens, base_noise, base_outcomes) = match direction {
            Direction::Noising => (
                clean.narrow(0, all),
                corrupted.narrow(0, all),
                &ci.clean,
                None,
                &runs.clean_outcomes,
            ),
            Direction::Denoising => (
                corrupted.narrow(0, all),
                clean.narrow(0, all),
                &ci.corrupted,
                ci.noise.as_ref(),
                &runs.corrupted_outcomes,
            ),
        };
        let base_scale = (ln_mode == LnMode::CachedScale)
            .then(|| net.ln_scale(&base.resid[net.n_layer()].select(1, answer_pos as i64)));
        Pair {
            base,
            src,
            base_tokens,
            base_noise,
            gold: &ci.gold,
            alt: &runs.alt,
            base_outcomes,
            base_scale,
            base_kv: OnceCell::new(),
            answer_pos,
        }
    }

    /// The base run's keys and values of every layer at positions `0..answer_pos`.
    fn base_kv(&self, net: &Net) -> Result<&[KeyValues]> {
        if let Some(kv) = self.base_kv.get() {
            return Ok(kv);
        }
        let ap = self.answer_pos as i64;
        let kv = (0..net.n_layer())
            .map(|l| net.key_values(l, &self.base.resid[l].narrow(1, 0, ap)))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.base_kv.get_or_init(|| kv))
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
    let want = want_for(&opts.components);
    let sets = position_sets(probe, &ci.positions, &opts.positions);
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
    let mut cells = Vec::new();
    for &direction in &opts.directions {
        let pair = Pair::new(net, ci, &runs, direction, opts.ln_mode, ap);
        for &kind in &opts.components {
            for layer in layers_for(net, kind, &opts.layers)? {
                let vars = variants(net, kind, &sets);
                let outcomes = match opts.mode {
                    SweepMode::Batched => {
                        run_group_batched(net, &pair, layer, &vars, ap, opts.max_rows)?
                    }
                    SweepMode::Naive => run_group_naive(net, &pair, layer, &vars, ap)?,
                };
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
    }
    Ok((baseline, cells))
}

/// Index tensor of positions. Shapes: → `[P]` i64.
fn pos_index(positions: &[usize], device: tch::Device) -> Tensor {
    Tensor::from_slice(&positions.iter().map(|&p| p as i64).collect::<Vec<_>>()).to_device(device)
}

/// The source activation that replaces the base one for a non-residual variant, restricted to
/// the variant's positions (and head). Shapes: → `[n, P, d]` or `[n, P, 1, d_head]`.
fn source_values(src: &States, component: Component, layer: usize, idx: &Tensor) -> Tensor {
    match component {
        Component::Resid => src.resid[layer].index_select(1, idx),
        Component::AttnOut => src.attn_out[layer].index_select(1, idx),
        Component::MlpOut => src.mlp_out[layer].index_select(1, idx),
        Component::Head(h) => src.z[layer].index_select(1, idx).narrow(2, h as i64, 1),
    }
}

/// The intervention of a non-residual variant, or of a residual one in a full forward.
fn variant_intervention(
    net: &Net,
    component: Component,
    layer: usize,
    positions: &[usize],
    values: Tensor,
) -> Intervention {
    let pos: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
    let iv = match component {
        Component::Resid => Intervention::new(net.resid_hook(layer), Edit::Replace(values)),
        Component::AttnOut => Intervention::new(HookPoint::AttnOut(layer), Edit::Replace(values)),
        Component::MlpOut => Intervention::new(HookPoint::MlpOut(layer), Edit::Replace(values)),
        Component::Head(h) => {
            Intervention::new(HookPoint::Z(layer), Edit::Replace(values)).heads(vec![h as i64])
        }
    };
    iv.positions(pos)
}

/// Logits at the answer position of a patched run `[R, V]`: the model's own (recompute), or
/// ln_f with the base run's scale applied to the final state (cached-scale).
fn answer_logits(
    net: &Net,
    out: model::RunOutput,
    start_layer: usize,
    input: &Tensor,
    scale: Option<&Tensor>,
    ap: usize,
) -> Result<Tensor> {
    let Some(scale) = scale else {
        return Ok(out.logits.squeeze_dim(1));
    };
    let l = net.n_layer();
    let final_state = if start_layer == l {
        input.shallow_clone()
    } else {
        out.cache
            .get(&net.resid_hook(l))
            .map(Tensor::shallow_clone)
            .ok_or_else(|| InterpError::BadSpec {
                what: "hook",
                value: net.resid_hook(l).to_string(),
                reason: "the model did not return a requested activation".into(),
            })?
    };
    Ok(net.readout(&final_state.select(1, ap as i64), Some(scale)))
}

/// The request of a patched run: logits at the answer position, plus the final state when the
/// readout needs it.
fn patched_request(net: &Net, start_layer: usize, cached: bool, ap: usize) -> RunRequest {
    let mut req = RunRequest {
        logit_positions: logits_at(ap),
        ..RunRequest::default()
    };
    if cached && start_layer < net.n_layer() {
        req.capture.insert(net.resid_hook(net.n_layer()));
    }
    req
}

/// The batched sweep of one (layer, variants) group: every variant of a chunk of examples on the
/// batch axis, one forward per chunk. Returns per variant the outcomes of all examples.
/// Residual groups take the suffix path ([`run_resid_group`]), the others `run_from(layer)` with
/// a row-specific intervention per variant.
pub(crate) fn run_group_batched(
    net: &Net,
    pair: &Pair,
    layer: usize,
    vars: &[(Component, &PositionSet)],
    ap: usize,
    max_rows: usize,
) -> Result<Vec<Outcomes>> {
    if vars.iter().all(|(c, _)| *c == Component::Resid) {
        let sets: Vec<&PositionSet> = vars.iter().map(|(_, set)| *set).collect();
        return run_resid_group(net, pair, layer, &sets, ap, max_rows);
    }
    let n = pair.gold.size()[0];
    let k = vars.len() as i64;
    let chunk = ((max_rows as i64) / k.max(1)).max(1);
    let device = net.device();
    let mut results: Vec<Outcomes> = vars.iter().map(|_| Outcomes::default()).collect();
    let mut start = 0;
    while start < n {
        let m = chunk.min(n - start);
        let base = pair.base.narrow(start, m);
        let src = pair.src.narrow(start, m);
        let input = base.resid[layer].repeat([k, 1, 1]);
        let cached = pair.base_scale.is_some();
        let mut req = patched_request(net, layer, cached, ap);
        for (v, (component, set)) in vars.iter().enumerate() {
            let idx = pos_index(&set.positions, device);
            let values = source_values(&src, *component, layer, &idx);
            let rows: Vec<i64> = (v as i64 * m..(v as i64 + 1) * m).collect();
            req.interventions.push(
                variant_intervention(net, *component, layer, &set.positions, values).rows(rows),
            );
        }
        let out = net.run_from(layer, &input, &req)?;
        let scale = pair
            .base_scale
            .as_ref()
            .map(|s| s.narrow(0, start, m).repeat([k, 1]));
        let logits = answer_logits(net, out, layer, &input, scale.as_ref(), ap)?;
        let gold = pair.gold.narrow(0, start, m).repeat([k]);
        let alt = pair.alt.narrow(0, start, m).repeat([k]);
        let all = Outcomes::from_logits(&logits, &gold, &alt)?;
        for (v, res) in results.iter_mut().enumerate() {
            res.extend(all.slice(v * m as usize, m as usize));
        }
        start += m;
    }
    Ok(results)
}

/// The residual variants of one layer, computing only what a patch can change. A patch at
/// positions `S` of `resid_pre[layer]` changes nothing before `min S` (causal attention), so the
/// layers from `layer` on run only on positions `min S..=answer` against the base run's cached
/// keys and values of the earlier positions, and the last layer only on the answer row
/// ([`model::Gpt::run_suffix`]). Positions whose source and base states are equal in every
/// example of the chunk, positions after the answer, and at `layer = L` positions other than the
/// answer, cannot change the prediction and are left out; a variant left with none has the base
/// run's outcomes. Variants with the same first position share one forward.
fn run_resid_group(
    net: &Net,
    pair: &Pair,
    layer: usize,
    sets: &[&PositionSet],
    ap: usize,
    max_rows: usize,
) -> Result<Vec<Outcomes>> {
    let n = pair.gold.size()[0];
    let chunk = ((max_rows / sets.len().max(1)) as i64).max(1);
    let mut results: Vec<Outcomes> = sets.iter().map(|_| Outcomes::default()).collect();
    let mut start = 0;
    while start < n {
        let m = chunk.min(n - start);
        let rc = ResidChunk::new(pair, layer, ap, start, m);
        let differs = rc.changed_positions()?;
        // Variants by their first patched position: (variant, patched positions).
        let mut by_first: BTreeMap<usize, Vec<(usize, Vec<usize>)>> = BTreeMap::new();
        for (v, set) in sets.iter().enumerate() {
            let patched = rc.effective_positions(set, &differs, net.n_layer());
            match patched.first() {
                Some(&first) => by_first.entry(first).or_default().push((v, patched)),
                None => results[v].extend(pair.base_outcomes.slice(start as usize, m as usize)),
            }
        }
        for (first, group) in by_first {
            let all = rc.run_variants(net, pair, first, &group)?;
            for (g, (v, _)) in group.iter().enumerate() {
                results[*v].extend(all.slice(g * m as usize, m as usize));
            }
        }
        start += m;
    }
    Ok(results)
}

/// One chunk of `m` examples (from row `start`) of a residual group at `resid_pre[layer]`, with
/// the states of the positions up to the answer position `ap`.
struct ResidChunk {
    layer: usize,
    ap: usize,
    start: i64,
    m: i64,
    /// Positions `0..=ap`: `ap + 1`.
    width: i64,
    /// The base run's states, `[m, width, d]`.
    base_resid: Tensor,
    /// The source run's states, `[m, width, d]`.
    src_resid: Tensor,
}

impl ResidChunk {
    /// The chunk of `m` examples from row `start`.
    fn new(pair: &Pair, layer: usize, ap: usize, start: i64, m: i64) -> ResidChunk {
        let width = ap as i64 + 1;
        let base = pair.base.narrow(start, m);
        let src = pair.src.narrow(start, m);
        ResidChunk {
            layer,
            ap,
            start,
            m,
            width,
            base_resid: base.resid[layer].narrow(1, 0, width),
            src_resid: src.resid[layer].narrow(1, 0, width),
        }
    }

    /// Per position `0..=ap`: 1 where the source and base states differ in some example of the
    /// chunk, else 0.
    fn changed_positions(&self) -> Result<Vec<i64>> {
        crate::stats::to_i64(
            &self
                .src_resid
                .ne_tensor(&self.base_resid)
                .any_dim(2, false)
                .any_dim(0, false)
                .to_kind(tch::Kind::Int64),
        )
    }

    /// The positions of `set` whose patch can change the prediction, in order: up to the answer,
    /// with states that differ (`differs`), and at the last layer (`n_layer`) the answer only.
    fn effective_positions(
        &self,
        set: &PositionSet,
        differs: &[i64],
        n_layer: usize,
    ) -> Vec<usize> {
        set.positions
            .iter()
            .copied()
            .filter(|&p| p <= self.ap && differs[p] != 0 && (self.layer < n_layer || p == self.ap))
            .collect()
    }

    /// The outcomes of the `k` variants of `group` (variant, patched positions), which share their
    /// first patched position `first`: one suffix forward of `k · m` rows, variant-major.
    fn run_variants(
        &self,
        net: &Net,
        pair: &Pair,
        first: usize,
        group: &[(usize, Vec<usize>)],
    ) -> Result<Outcomes> {
        let (start, m, k) = (self.start, self.m, group.len() as i64);
        let suffix = self.patched_suffix(net.device(), first, group);
        let prefix: Vec<KeyValues> = pair.base_kv(net)?[self.layer..]
            .iter()
            .map(|kv| {
                kv.map(|t| {
                    t.narrow(0, start, m)
                        .narrow(2, 0, first as i64)
                        .repeat([k, 1, 1, 1])
                })
            })
            .collect();
        let last = net.run_suffix(self.layer, &suffix, &prefix)?;
        let scale = pair
            .base_scale
            .as_ref()
            .map(|s| s.narrow(0, start, m).repeat([k, 1]));
        let logits = net.readout(&last, scale.as_ref());
        let gold = pair.gold.narrow(0, start, m);
        let alt = pair.alt.narrow(0, start, m);
        Outcomes::from_logits(&logits, &gold.repeat([k]), &alt.repeat([k]))
    }

    /// The input states of positions `first..=ap` of every variant of `group`, `[k · m, len, d]`
    /// (variant-major): the source state at the variant's patched positions, else the base state.
    fn patched_suffix(
        &self,
        device: tch::Device,
        first: usize,
        group: &[(usize, Vec<usize>)],
    ) -> Tensor {
        let k = group.len() as i64;
        let len = self.width - first as i64;
        let mut mask = vec![false; (k * len) as usize];
        for (g, (_, patched)) in group.iter().enumerate() {
            for &p in patched {
                mask[g * len as usize + p - first] = true;
            }
        }
        let mask = Tensor::from_slice(&mask)
            .view([k, 1, len, 1])
            .to_device(device);
        let narrow = |t: &Tensor| t.narrow(1, first as i64, len).unsqueeze(0);
        narrow(&self.src_resid)
            .where_self(&mask, &narrow(&self.base_resid))
            .reshape([k * self.m, len, -1])
    }
}

/// The naive reference: for each example and variant one full forward of the base input (batch
/// size 1) with a single intervention at the patched hook.
fn run_group_naive(
    net: &Net,
    pair: &Pair,
    layer: usize,
    vars: &[(Component, &PositionSet)],
    ap: usize,
) -> Result<Vec<Outcomes>> {
    let n = pair.gold.size()[0];
    let device = net.device();
    let mut results: Vec<Outcomes> = vars.iter().map(|_| Outcomes::default()).collect();
    for i in 0..n {
        let src = pair.src.narrow(i, 1);
        let tokens = pair.base_tokens.narrow(0, i, 1);
        for ((component, set), res) in vars.iter().zip(results.iter_mut()) {
            let idx = pos_index(&set.positions, device);
            let values = source_values(&src, *component, layer, &idx);
            let cached = pair.base_scale.is_some();
            let mut req = patched_request(net, 0, cached, ap);
            if let Some(noise) = pair.base_noise {
                req.interventions.push(Intervention::new(
                    HookPoint::Embed,
                    Edit::Add(noise.narrow(0, i, 1)),
                ));
            }
            req.interventions.push(variant_intervention(
                net,
                *component,
                layer,
                &set.positions,
                values,
            ));
            let out = net.run(&tokens, &req)?;
            let scale = pair.base_scale.as_ref().map(|s| s.narrow(0, i, 1));
            let logits = answer_logits(net, out, 0, &tokens, scale.as_ref(), ap)?;
            res.extend(Outcomes::from_logits(
                &logits,
                &pair.gold.narrow(0, i, 1),
                &pair.alt.narrow(0, i, 1),
            )?);
        }
    }
    Ok(results)
}
