//! Hook points (TransformerLens names), capture requests, interventions and the per-run hook
//! context that applies them.
//!
//! Shapes of the hooked activations (B = batch, T = positions, H = heads):
//!
//! | hook | shape |
//! |---|---|
//! | `hook_embed`, `hook_pos_embed` | `[B, T, d_model]` |
//! | `blocks.{l}.hook_resid_pre` / `_mid` / `_post`, `hook_attn_out`, `hook_mlp_out` | `[B, T, d_model]` |
//! | `blocks.{l}.hook_q_input` / `_k_input` / `_v_input` | `[B, T, H, d_model]` |
//! | `blocks.{l}.hook_mlp_in` | `[B, T, d_model]` |
//! | `blocks.{l}.attn.hook_q` / `_k` / `_v` / `_z` | `[B, T, H, d_head]` |
//! | `blocks.{l}.attn.hook_attn_scores` / `hook_pattern` | `[B, H, T_q, T_k]` |
//! | `blocks.{l}.attn.hook_result` | `[B, T, H, d_model]` |
//! | `blocks.{l}.mlp.hook_pre` / `hook_post` | `[B, T, d_mlp]` |
//! | `blocks.{l}.ln1.hook_scale`, `blocks.{l}.ln2.hook_scale`, `ln_final.hook_scale` | `[B, T, 1]` |

use crate::error::{ModelError, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use tch::{Device, Kind, Tensor};

/// A place in the forward pass whose activation can be captured or edited.
/// Prints as and parses from the TransformerLens hook name; `usize` fields are the layer, i.e.
/// the position in the block schedule.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookPoint {
    /// `hook_embed`: token embeddings `[B, T, d_model]`.
    Embed,
    /// `hook_pos_embed`: position embeddings broadcast to `[B, T, d_model]`.
    PosEmbed,
    /// `blocks.{l}.hook_resid_pre`: residual stream entering layer l `[B, T, d_model]`.
    ResidPre(usize),
    /// `blocks.{l}.hook_resid_mid`: `resid_pre + attn_out` `[B, T, d_model]`.
    ResidMid(usize),
    /// `blocks.{l}.hook_resid_post`: `resid_mid + mlp_out` `[B, T, d_model]`.
    ResidPost(usize),
    /// `blocks.{l}.hook_attn_out`: attention output added to the stream `[B, T, d_model]`.
    AttnOut(usize),
    /// `blocks.{l}.hook_mlp_out`: MLP output added to the stream `[B, T, d_model]`.
    MlpOut(usize),
    /// `blocks.{l}.hook_q_input`: the residual stream as each head's query reads it, before
    /// ln_1 `[B, T, H, d_model]` (TransformerLens `use_split_qkv_input`; see
    /// [`RunRequest::split_inputs`]).
    QInput(usize),
    /// `blocks.{l}.hook_k_input`: as [`HookPoint::QInput`], for the keys.
    KInput(usize),
    /// `blocks.{l}.hook_v_input`: as [`HookPoint::QInput`], for the values.
    VInput(usize),
    /// `blocks.{l}.hook_mlp_in`: the residual stream as the MLP reads it, before ln_2
    /// `[B, T, d_model]` (TransformerLens `use_hook_mlp_in`); edits change the MLP's input only.
    MlpIn(usize),
    /// `blocks.{l}.attn.hook_q`: queries `[B, T, H, d_head]`.
    Q(usize),
    /// `blocks.{l}.attn.hook_k`: keys `[B, T, H, d_head]`.
    K(usize),
    /// `blocks.{l}.attn.hook_v`: values `[B, T, H, d_head]`.
    V(usize),
    /// `blocks.{l}.attn.hook_z`: per-head attention-weighted values `[B, T, H, d_head]`.
    Z(usize),
    /// `blocks.{l}.attn.hook_attn_scores`: scaled, causally masked scores `[B, H, T_q, T_k]`.
    AttnScores(usize),
    /// `blocks.{l}.attn.hook_pattern`: softmax of the scores `[B, H, T_q, T_k]`.
    Pattern(usize),
    /// `blocks.{l}.attn.hook_result`: per-head output through W_O `[B, T, H, d_model]`
    /// (computed only when captured or edited).
    Result(usize),
    /// `blocks.{l}.mlp.hook_pre`: MLP pre-activation `[B, T, d_mlp]`.
    MlpPre(usize),
    /// `blocks.{l}.mlp.hook_post`: MLP post-activation `[B, T, d_mlp]`.
    MlpPost(usize),
    /// `blocks.{l}.ln1.hook_scale`: `sqrt(var + eps)` of ln_1's input `[B, T, 1]`.
    Ln1Scale(usize),
    /// `blocks.{l}.ln2.hook_scale`: `sqrt(var + eps)` of ln_2's input `[B, T, 1]`.
    Ln2Scale(usize),
    /// `ln_final.hook_scale`: `sqrt(var + eps)` of ln_f's input `[B, T, 1]`.
    LnFinalScale,
}

/// How the batch, position and head axes lie in a hooked tensor.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `[B, T, ...]`: residual stream, MLP and LayerNorm-scale hooks.
    Stream,
    /// `[B, T, H, ...]`: q/k/v inputs, q, k, v, z, result.
    PerHead,
    /// `[B, H, T_q, T_k]`: attn_scores, pattern.
    Pattern,
}

/// Constructor of a per-layer hook from its layer.
type LayerHook = fn(usize) -> HookPoint;

/// Per-layer hook constructors with their TransformerLens suffixes, in forward order.
const LAYER_HOOKS: [(LayerHook, &str); 20] = [
    (HookPoint::ResidPre, "hook_resid_pre"),
    (HookPoint::QInput, "hook_q_input"),
    (HookPoint::KInput, "hook_k_input"),
    (HookPoint::VInput, "hook_v_input"),
    (HookPoint::Ln1Scale, "ln1.hook_scale"),
    (HookPoint::Q, "attn.hook_q"),
    (HookPoint::K, "attn.hook_k"),
    (HookPoint::V, "attn.hook_v"),
    (HookPoint::AttnScores, "attn.hook_attn_scores"),
    (HookPoint::Pattern, "attn.hook_pattern"),
    (HookPoint::Z, "attn.hook_z"),
    (HookPoint::Result, "attn.hook_result"),
    (HookPoint::AttnOut, "hook_attn_out"),
    (HookPoint::ResidMid, "hook_resid_mid"),
    (HookPoint::MlpIn, "hook_mlp_in"),
    (HookPoint::Ln2Scale, "ln2.hook_scale"),
    (HookPoint::MlpPre, "mlp.hook_pre"),
    (HookPoint::MlpPost, "mlp.hook_post"),
    (HookPoint::MlpOut, "hook_mlp_out"),
    (HookPoint::ResidPost, "hook_resid_post"),
];

impl HookPoint {
    /// The layer (schedule position) of a per-layer hook; `None` for the embedding and final
    /// LayerNorm hooks.
    pub fn layer(&self) -> Option<usize> {
        use HookPoint::*;
        match *self {
            Embed | PosEmbed | LnFinalScale => None,
            ResidPre(l) | ResidMid(l) | ResidPost(l) | AttnOut(l) | MlpOut(l) | QInput(l)
            | KInput(l) | VInput(l) | MlpIn(l) | Q(l) | K(l) | V(l) | Z(l) | AttnScores(l)
            | Pattern(l) | Result(l) | MlpPre(l) | MlpPost(l) | Ln1Scale(l) | Ln2Scale(l) => {
                Some(l)
            }
        }
    }

    /// True for hooks with a head axis (q/k/v inputs, q, k, v, z, result, attn_scores, pattern).
    pub fn is_per_head(&self) -> bool {
        self.layout() != Layout::Stream
    }

    pub(crate) fn layout(&self) -> Layout {
        use HookPoint::*;
        match self {
            QInput(_) | KInput(_) | VInput(_) | Q(_) | K(_) | V(_) | Z(_) | Result(_) => {
                Layout::PerHead
            }
            AttnScores(_) | Pattern(_) => Layout::Pattern,
            _ => Layout::Stream,
        }
    }

    /// Every hook point of a model with `n_layer` layers, in forward order.
    pub fn all(n_layer: usize) -> Vec<HookPoint> {
        let mut hooks = vec![HookPoint::Embed, HookPoint::PosEmbed];
        for l in 0..n_layer {
            hooks.extend(LAYER_HOOKS.iter().map(|(make, _)| make(l)));
        }
        hooks.push(HookPoint::LnFinalScale);
        hooks
    }

    /// The hook points of a model with `n_layer` layers whose names match `pattern`
    /// (see [`glob_match`]), in forward order. An error when nothing matches.
    pub fn matching(pattern: &str, n_layer: usize) -> Result<Vec<HookPoint>> {
        let hooks: Vec<HookPoint> = HookPoint::all(n_layer)
            .into_iter()
            .filter(|h| glob_match(pattern, &h.to_string()))
            .collect();
        if hooks.is_empty() {
            return Err(ModelError::UnknownHook {
                name: pattern.to_string(),
                reason: format!("the pattern matches no hook of a {n_layer}-layer model"),
            });
        }
        Ok(hooks)
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookPoint::Embed => write!(f, "hook_embed"),
            HookPoint::PosEmbed => write!(f, "hook_pos_embed"),
            HookPoint::LnFinalScale => write!(f, "ln_final.hook_scale"),
            hook => {
                let l = hook.layer().unwrap_or_default();
                let suffix = LAYER_HOOKS
                    .iter()
                    .find(|(make, _)| make(l) == *hook)
                    .map(|(_, suffix)| *suffix)
                    .unwrap_or_default();
                write!(f, "blocks.{l}.{suffix}")
            }
        }
    }
}

impl FromStr for HookPoint {
    type Err = ModelError;

    /// Parses a TransformerLens hook name such as `blocks.3.attn.hook_pattern`.
    fn from_str(name: &str) -> Result<HookPoint> {
        let unknown = |reason: &str| ModelError::UnknownHook {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        match name {
            "hook_embed" => return Ok(HookPoint::Embed),
            "hook_pos_embed" => return Ok(HookPoint::PosEmbed),
            "ln_final.hook_scale" => return Ok(HookPoint::LnFinalScale),
            _ => {}
        }
        let rest = name.strip_prefix("blocks.").ok_or_else(|| {
            unknown(
                "expected hook_embed, hook_pos_embed, ln_final.hook_scale or blocks.{layer}.<hook>",
            )
        })?;
        let (layer, suffix) = rest
            .split_once('.')
            .ok_or_else(|| unknown("expected blocks.{layer}.<hook>"))?;
        let layer: usize = layer
            .parse()
            .map_err(|_| unknown("the layer must be a non-negative integer"))?;
        LAYER_HOOKS
            .iter()
            .find(|(_, s)| *s == suffix)
            .map(|(make, _)| make(layer))
            .ok_or_else(|| {
                let known: Vec<&str> = LAYER_HOOKS.iter().map(|(_, s)| *s).collect();
                unknown(&format!(
                    "`{suffix}` is not a block hook; known: {}",
                    known.join(", ")
                ))
            })
    }
}

/// Glob match of a hook name: `*` matches any run of characters other than `.`, every other
/// character matches itself. `blocks.*.hook_resid_post` matches the residual stream after every
/// layer; `blocks.2.attn.hook_*` every attention hook of layer 2.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != b'.')
                .any(|i| go(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// What an intervention does to the selected part of a hooked activation.
#[derive(Debug)]
pub enum Edit {
    /// Overwrite with this tensor (broadcastable to the selected part, see [`Intervention`]).
    Replace(Tensor),
    /// Add this tensor (broadcastable to the selected part).
    Add(Tensor),
    /// Set to zero.
    Zero,
    /// Multiply by a constant.
    Scale(f64),
}

/// An edit of one hook's activation at a subset of batch rows × positions (× heads).
///
/// The selected part of a hook tensor keeps the hook's axis order: `[R, P, ...]` for
/// `[B, T, ...]` hooks, `[R, P, H, ...]` for q/k/v/z/result and `[R, H, P, T_k]` for
/// attn_scores/pattern (positions select query positions), where R, P, H are the numbers of
/// selected rows, positions and heads (all of them when `None`). Replace/Add tensors must be
/// broadcastable to that shape. Interventions on the same hook apply in list order.
#[derive(Debug)]
pub struct Intervention {
    /// The hook whose activation is edited.
    pub hook: HookPoint,
    /// Batch rows it applies to (`None` = all).
    pub rows: Option<Vec<i64>>,
    /// Sequence positions it applies to (`None` = all).
    pub positions: Option<Vec<i64>>,
    /// Heads it applies to, for per-head hooks only (`None` = all).
    pub heads: Option<Vec<i64>>,
    /// The edit.
    pub edit: Edit,
}

impl Intervention {
    /// An edit of the whole activation of `hook`; narrow it with [`rows`](Self::rows),
    /// [`positions`](Self::positions) and [`heads`](Self::heads).
    pub fn new(hook: HookPoint, edit: Edit) -> Intervention {
        Intervention {
            hook,
            rows: None,
            positions: None,
            heads: None,
            edit,
        }
    }

    /// Restricts the edit to these batch rows.
    pub fn rows(self, rows: impl Into<Vec<i64>>) -> Intervention {
        Intervention {
            rows: Some(rows.into()),
            ..self
        }
    }

    /// Restricts the edit to these positions (query positions for attn_scores/pattern).
    pub fn positions(self, positions: impl Into<Vec<i64>>) -> Intervention {
        Intervention {
            positions: Some(positions.into()),
            ..self
        }
    }

    /// Restricts the edit to these heads (per-head hooks only).
    pub fn heads(self, heads: impl Into<Vec<i64>>) -> Intervention {
        Intervention {
            heads: Some(heads.into()),
            ..self
        }
    }
}

/// Which positions the logits of a run are computed for. The unembedding is the most expensive
/// matmul for large vocabularies, so sweeps that read one position should say so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LogitPositions {
    /// Every position: logits `[B, T, V]`.
    #[default]
    All,
    /// The same positions in every row: logits `[B, P, V]`.
    At(Vec<i64>),
    /// One position per batch row (the vector has B entries): logits `[B, 1, V]`.
    PerRow(Vec<i64>),
}

/// What a forward pass should capture and change.
#[derive(Debug, Default)]
pub struct RunRequest {
    /// Hooks whose activations are returned in [`RunOutput::cache`].
    pub capture: BTreeSet<HookPoint>,
    /// Edits applied during the pass, in order.
    pub interventions: Vec<Intervention>,
    /// Dropout on (training mode).
    pub train: bool,
    /// Positions the logits are computed for.
    pub logit_positions: LogitPositions,
    /// Run every head's query, key and value input and every MLP input through its own hook
    /// (`hook_q_input`, `hook_k_input`, `hook_v_input`, `hook_mlp_in`; TransformerLens
    /// `use_split_qkv_input` and `use_hook_mlp_in`), so that gradients with respect to them reach
    /// the model (edge attribution). Editing one of those hooks turns it on for its layer; when
    /// off, capturing them records the shared input on the side and changes nothing.
    pub split_inputs: bool,
}

impl RunRequest {
    /// A request that captures these hooks and changes nothing.
    pub fn capture(hooks: impl IntoIterator<Item = HookPoint>) -> RunRequest {
        RunRequest {
            capture: hooks.into_iter().collect(),
            ..RunRequest::default()
        }
    }

    /// A request that applies these edits, in order, and captures nothing.
    pub fn intervene(interventions: impl IntoIterator<Item = Intervention>) -> RunRequest {
        RunRequest {
            interventions: interventions.into_iter().collect(),
            ..RunRequest::default()
        }
    }
}

/// The result of [`crate::Gpt::run`].
#[derive(Debug)]
pub struct RunOutput {
    /// Logits `[B, T, V]` (or `[B, P, V]` / `[B, 1, V]`, see [`LogitPositions`]).
    pub logits: Tensor,
    /// Captured activations, after interventions. Not detached: use `tch::no_grad` for
    /// inference, or keep the graph for attribution patching.
    pub cache: BTreeMap<HookPoint, Tensor>,
}

/// The hook context of one forward pass: which hooks to capture and edit, and the cache.
pub(crate) struct Hooks<'a> {
    capture: Option<&'a BTreeSet<HookPoint>>,
    split_inputs: bool,
    edits: BTreeMap<HookPoint, Vec<&'a Intervention>>,
    pub(crate) cache: BTreeMap<HookPoint, Tensor>,
}

impl<'a> Hooks<'a> {
    /// A context that captures and edits nothing (the fast path).
    pub(crate) fn none() -> Hooks<'static> {
        Hooks {
            capture: None,
            split_inputs: false,
            edits: BTreeMap::new(),
            cache: BTreeMap::new(),
        }
    }

    /// The context of `req`.
    pub(crate) fn new(req: &'a RunRequest) -> Hooks<'a> {
        let mut edits: BTreeMap<HookPoint, Vec<&Intervention>> = BTreeMap::new();
        for iv in &req.interventions {
            edits.entry(iv.hook).or_default().push(iv);
        }
        let capture = (!req.capture.is_empty()).then_some(&req.capture);
        Hooks {
            capture,
            split_inputs: req.split_inputs,
            edits,
            cache: BTreeMap::new(),
        }
    }

    /// True when `hook` is captured.
    pub(crate) fn captured(&self, hook: HookPoint) -> bool {
        self.capture.is_some_and(|c| c.contains(&hook))
    }

    /// True when `hook` is edited.
    pub(crate) fn edited(&self, hook: HookPoint) -> bool {
        !self.edits.is_empty() && self.edits.contains_key(&hook)
    }

    /// True when layer `layer`'s heads read their query, key and value inputs through their own
    /// hooks ([`RunRequest::split_inputs`], or one of the three edited).
    pub(crate) fn splits_attention_input(&self, layer: usize) -> bool {
        self.split_inputs
            || [HookPoint::QInput, HookPoint::KInput, HookPoint::VInput]
                .iter()
                .any(|make| self.edited(make(layer)))
    }

    /// True when layer `layer`'s MLP reads its input through `hook_mlp_in`.
    pub(crate) fn splits_mlp_input(&self, layer: usize) -> bool {
        self.split_inputs || self.edited(HookPoint::MlpIn(layer))
    }

    /// True when `hook` is captured or edited.
    pub(crate) fn wants(&self, hook: HookPoint) -> bool {
        self.captured(hook) || self.edited(hook)
    }

    /// Caches `x` under `hook` if it is captured (for values computed only to be looked at).
    pub(crate) fn record(&mut self, hook: HookPoint, x: Tensor) {
        if self.captured(hook) {
            self.cache.insert(hook, x);
        }
    }

    /// Runs the hook: applies its interventions to a copy of `x` (never in place on `x`), caches
    /// the result when captured, and returns it. Returns `x` itself when nothing is requested.
    pub(crate) fn apply(&mut self, hook: HookPoint, x: Tensor) -> Result<Tensor> {
        let x = match self.edits.get(&hook) {
            None => x,
            Some(ivs) => {
                let mut y = x.copy();
                for iv in ivs {
                    apply_edit(hook, &mut y, iv)?;
                }
                y
            }
        };
        if self.captured(hook) {
            self.cache.insert(hook, x.shallow_clone());
        }
        Ok(x)
    }
}

/// Checks that `values` are distinct and within `0..size`; `what` names the axis.
fn check_indices(hook: HookPoint, what: &str, values: &[i64], size: i64) -> Result<()> {
    if let Some(bad) = values.iter().find(|&&v| v < 0 || v >= size) {
        return Err(ModelError::hook(
            hook,
            format!("{what} index {bad} is out of range 0..{size}"),
        ));
    }
    let distinct: BTreeSet<i64> = values.iter().copied().collect();
    if distinct.len() != values.len() {
        return Err(ModelError::hook(
            hook,
            format!("{what} indices {values:?} contain duplicates"),
        ));
    }
    Ok(())
}

/// An index tensor for one axis, shaped to broadcast against the other selected axes:
/// `slot` is its place among `n_axes` leading axes.
fn axis_index(
    sel: &Option<Vec<i64>>,
    size: i64,
    slot: usize,
    n_axes: usize,
    device: Device,
) -> Tensor {
    let idx = match sel {
        Some(v) => Tensor::from_slice(v).to_device(device),
        None => Tensor::arange(size, (Kind::Int64, device)),
    };
    let mut shape = vec![1i64; n_axes];
    shape[slot] = -1;
    idx.view(shape.as_slice())
}

/// True when a tensor of shape `from` broadcasts to `to`.
fn broadcastable(from: &[i64], to: &[i64]) -> bool {
    from.len() <= to.len()
        && from
            .iter()
            .rev()
            .zip(to.iter().rev())
            .all(|(&f, &t)| f == 1 || f == t)
}

/// Applies one intervention in place to `y`, a fresh copy of the hook's activation.
fn apply_edit(hook: HookPoint, y: &mut Tensor, iv: &Intervention) -> Result<()> {
    let size = y.size();
    let axes = EditAxes::of(hook);
    axes.check_selection(hook, iv, &size)?;
    let whole = iv.rows.is_none() && iv.positions.is_none() && iv.heads.is_none();
    let target = if whole {
        size.clone()
    } else {
        axes.selected_shape(iv, &size)
    };
    let (device, kind) = (y.device(), y.kind());
    let values = |v: &Tensor| edit_values(hook, v, &target, device, kind);
    if whole {
        match &iv.edit {
            Edit::Replace(v) => {
                y.f_copy_(&values(v)?)?;
            }
            Edit::Add(v) => {
                let _ = y.f_add_(&values(v)?)?;
            }
            Edit::Zero => {
                let _ = y.f_zero_()?;
            }
            Edit::Scale(s) => {
                let _ = y.f_mul_scalar_(*s)?;
            }
        }
    } else {
        let indices = axes.indices(iv, &size, device);
        match &iv.edit {
            Edit::Replace(v) => {
                let _ = y.f_index_put_(&indices, &values(v)?, false)?;
            }
            Edit::Add(v) => {
                let _ = y.f_index_put_(&indices, &values(v)?, true)?;
            }
            Edit::Zero => {
                let zero = Tensor::zeros([], (kind, device));
                let _ = y.f_index_put_(&indices, &zero, false)?;
            }
            Edit::Scale(s) => {
                let scaled = y.f_index(&indices)?.f_mul_scalar(*s)?;
                let _ = y.f_index_put_(&indices, &scaled, false)?;
            }
        }
    }
    Ok(())
}

/// Where the selectable axes of a hooked tensor lie (the batch rows are axis 0).
struct EditAxes {
    /// The sequence-position axis (the query position of attention patterns).
    pos: usize,
    /// The head axis, for per-head and pattern hooks.
    head: Option<usize>,
}

impl EditAxes {
    /// The axes of `hook`'s activation.
    fn of(hook: HookPoint) -> EditAxes {
        let (pos, head) = match hook.layout() {
            Layout::Stream => (1, None),
            Layout::PerHead => (1, Some(2)),
            Layout::Pattern => (2, Some(1)),
        };
        EditAxes { pos, head }
    }

    /// The number of leading axes that a selection indexes: batch and position, and heads.
    fn n_axes(&self) -> usize {
        if self.head.is_some() {
            3
        } else {
            2
        }
    }

    /// Checks the rows, positions and heads of `iv` against an activation of shape `size`.
    /// Errors: an index out of range or repeated, heads on a hook without a head axis.
    fn check_selection(&self, hook: HookPoint, iv: &Intervention, size: &[i64]) -> Result<()> {
        let axis_len = |axis: usize| size.get(axis).copied().unwrap_or(0);
        if let Some(rows) = &iv.rows {
            check_indices(hook, "row", rows, axis_len(0))?;
        }
        if let Some(positions) = &iv.positions {
            check_indices(hook, "position", positions, axis_len(self.pos))?;
        }
        match (self.head, &iv.heads) {
            (None, Some(_)) => Err(ModelError::hook(
                hook,
                "heads can only be selected on per-head hooks",
            )),
            (Some(axis), Some(heads)) => check_indices(hook, "head", heads, axis_len(axis)),
            _ => Ok(()),
        }
    }

    /// The index tensors of a (partial) selection of an activation of shape `size`, one per
    /// leading axis, each shaped to broadcast against the others.
    fn indices(&self, iv: &Intervention, size: &[i64], device: Device) -> Vec<Option<Tensor>> {
        let n_axes = self.n_axes();
        let mut idx: Vec<Option<Tensor>> = (0..n_axes).map(|_| None).collect();
        idx[0] = Some(axis_index(&iv.rows, size[0], 0, n_axes, device));
        idx[self.pos] = Some(axis_index(
            &iv.positions,
            size[self.pos],
            self.pos,
            n_axes,
            device,
        ));
        if let Some(axis) = self.head {
            idx[axis] = Some(axis_index(&iv.heads, size[axis], axis, n_axes, device));
        }
        idx
    }

    /// The shape of the selected part of an activation of shape `size`.
    fn selected_shape(&self, iv: &Intervention, size: &[i64]) -> Vec<i64> {
        let selected = |sel: &Option<Vec<i64>>, axis: usize| {
            sel.as_ref().map_or(size[axis], |v| v.len() as i64)
        };
        let mut target = size.to_vec();
        target[0] = selected(&iv.rows, 0);
        target[self.pos] = selected(&iv.positions, self.pos);
        if let Some(axis) = self.head {
            target[axis] = selected(&iv.heads, axis);
        }
        target
    }
}

/// An edit's tensor on the activation's device and of its kind. Errors: a tensor that does not
/// broadcast to the selected shape `target`.
fn edit_values(
    hook: HookPoint,
    v: &Tensor,
    target: &[i64],
    device: Device,
    kind: Kind,
) -> Result<Tensor> {
    if !broadcastable(&v.size(), target) {
        return Err(ModelError::hook(
            hook,
            format!(
                "edit tensor of shape {:?} does not broadcast to the selected shape {target:?}",
                v.size()
            ),
        ));
    }
    Ok(v.to_device(device).to_kind(kind))
}
