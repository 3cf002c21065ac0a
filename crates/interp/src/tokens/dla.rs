//! Direct logit attribution (DLA) on token batches: how much each component writing to the
//! residual stream adds directly to each prompt's logit difference at its answer position — the
//! mean logit of the answer set minus that of the alternative set (a single answer token without
//! alternatives: its logit).
//!
//! The final residual state is the sum of its components: `hook_embed + hook_pos_embed +
//! Σ_l (attn_out_l + mlp_out_l)`, and `attn_out_l = Σ_h hook_result[l, h] + b_O[l]`. With the
//! cached final LayerNorm scale `s` (`ln_final.hook_scale` of the same prompt and position), the
//! logit difference splits exactly (TransformerLens `apply_ln_to_stack`):
//!
//! `attr_c = ((c − mean(c)) / s) · (w_ln ⊙ ΔW_U)`, plus the LayerNorm bias term `b_ln · ΔW_U`,
//! where `ΔW_U` is the mean unembedding column of the answer set minus that of the alternative
//! set; the unembedding is tied and has no bias. Everything is computed in double precision from
//! the cached activations, in chunks of at most `max_rows` prompts.
//!
//! Components, in order: `embed`, `pos_embed`, then per layer `attn_out.{l}` and `mlp_out.{l}`,
//! then `ln_final.bias`, then per layer every head `head.{l}.{h}` and the attention output bias
//! `attn_bias.{l}`. Two partitions of the logit difference follow: embeddings + `attn_out.*` +
//! `mlp_out.*` + `ln_final.bias` (the layer view), and embeddings + `head.*.*` + `attn_bias.*` +
//! `mlp_out.*` + `ln_final.bias` (the head view); `attn_out.{l}` equals the sum of its heads and
//! `attn_bias.{l}`. The task DLA ([`crate::dla`]) is this with the gold answer against each
//! example's runner-up.

use super::{AnswerPositions, PromptBatch};
use crate::error::{InterpError, Result};
use crate::metric::{Metric, TokenSets};
use crate::net::{Net, Rows};
use crate::stats::to_f64;
use model::{Attention, HookPoint, RunOutput, RunRequest};
use ndarray::Array2;
use std::fmt;
use tch::{Kind, Tensor};
use util::stats::mean;

/// A component of the residual stream at the answer position.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DlaComponent {
    /// `hook_embed`: the token embedding.
    Embed,
    /// `hook_pos_embed`: the position embedding.
    PosEmbed,
    /// `blocks.{l}.hook_attn_out` (= its heads + its output bias).
    AttnOut(usize),
    /// `blocks.{l}.hook_mlp_out`.
    MlpOut(usize),
    /// The final LayerNorm's bias `b_ln · ΔW_U`.
    LnBias,
    /// `blocks.{l}.attn.hook_result` of head `h`.
    Head(usize, usize),
    /// The attention output bias `b_O` of layer `l` (c_proj bias).
    AttnBias(usize),
}

impl fmt::Display for DlaComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DlaComponent::Embed => write!(f, "embed"),
            DlaComponent::PosEmbed => write!(f, "pos_embed"),
            DlaComponent::AttnOut(l) => write!(f, "attn_out.{l}"),
            DlaComponent::MlpOut(l) => write!(f, "mlp_out.{l}"),
            DlaComponent::LnBias => write!(f, "ln_final.bias"),
            DlaComponent::Head(l, h) => write!(f, "head.{l}.{h}"),
            DlaComponent::AttnBias(l) => write!(f, "attn_bias.{l}"),
        }
    }
}

impl DlaComponent {
    /// Every component of a model with `n_layer` layers and `n_head` heads, in the order above.
    pub fn all(n_layer: usize, n_head: usize) -> Vec<DlaComponent> {
        let mut out = vec![DlaComponent::Embed, DlaComponent::PosEmbed];
        for l in 0..n_layer {
            out.push(DlaComponent::AttnOut(l));
            out.push(DlaComponent::MlpOut(l));
        }
        out.push(DlaComponent::LnBias);
        for l in 0..n_layer {
            out.extend((0..n_head).map(|h| DlaComponent::Head(l, h)));
            out.push(DlaComponent::AttnBias(l));
        }
        out
    }

    /// True for the components of the layer view (embeddings, `attn_out`, `mlp_out`, LN bias).
    pub fn in_layer_view(&self) -> bool {
        !matches!(self, DlaComponent::Head(..) | DlaComponent::AttnBias(_))
    }

    /// True for the components of the head view (embeddings, heads, attention biases,
    /// `mlp_out`, LN bias).
    pub fn in_head_view(&self) -> bool {
        !matches!(self, DlaComponent::AttnOut(_))
    }
}

/// Per prompt and component its direct contribution to the logit difference.
#[derive(Clone, Debug)]
pub struct DlaValues {
    /// Components (columns of `values`), in the order of [`DlaComponent::all`].
    pub components: Vec<DlaComponent>,
    /// Attribution per prompt (rows, batch order) and component `[B, C]`.
    pub values: Array2<f64>,
    /// The model's logit difference per prompt `[B]`, from its logits (what each view sums to).
    pub logit_diff: Vec<f64>,
}

impl DlaValues {
    /// Mean attribution of each component over the prompts.
    pub fn means(&self) -> Vec<(DlaComponent, f64)> {
        self.components
            .iter()
            .enumerate()
            .map(|(j, c)| (*c, mean(self.values.column(j).iter().copied())))
            .collect()
    }

    /// Mean logit difference.
    pub fn mean_logit_diff(&self) -> f64 {
        mean(self.logit_diff.iter().copied())
    }

    /// Largest `|Σ parts − logit difference|` over prompts and both partitions (a check that the
    /// decomposition is exact; float rounding only).
    pub fn max_residual(&self) -> f64 {
        let mut worst: f64 = 0.0;
        for view in [DlaComponent::in_layer_view, DlaComponent::in_head_view] {
            for (row, ld) in self.values.rows().into_iter().zip(&self.logit_diff) {
                let sum: f64 = self
                    .components
                    .iter()
                    .zip(row)
                    .filter(|(c, _)| view(c))
                    .map(|(_, v)| v)
                    .sum();
                worst = worst.max((sum - ld).abs());
            }
        }
        worst
    }
}

/// DLA of the clean prompts of `batch` in chunks of at most `max_rows` prompts. The metric must be
/// linear in the logits: [`Metric::LogitDiff`].
pub fn dla(net: &Net, batch: &PromptBatch, metric: &Metric, max_rows: usize) -> Result<DlaValues> {
    if !matches!(metric, Metric::LogitDiff) {
        return Err(InterpError::spec(
            "metric",
            metric.to_string(),
            "direct logit attribution needs a metric linear in the logits: logit-diff",
        ));
    }
    let components = DlaComponent::all(net.n_layer(), net.n_head());
    let weights = DlaWeights::new(net)?;
    let sets = batch.sets.to_device(net.device());
    let n = batch.len();
    let mut values = Array2::<f64>::zeros((n, components.len()));
    let mut logit_diff = Vec::with_capacity(n);
    tch::no_grad(|| -> Result<()> {
        for rows in Rows::chunks(n as i64, max_rows as i64) {
            let positions = AnswerPositions::new(&batch.answer_pos[rows.range()]);
            let mut req = RunRequest::capture(captured_hooks(net.n_layer()));
            req.logit_positions = positions.logit_positions();
            let out = net.gpt.run(&rows.of(&batch.clean), &req)?;
            let acts = AnswerActivations {
                out: &out,
                positions,
            };
            let sets = sets.narrow(rows.start, rows.m);
            let logits = out.logits.squeeze_dim(1).to_kind(Kind::Double);
            logit_diff.extend(to_f64(
                &(set_mean(&logits, &sets.answer, &sets.answer_mask)
                    - set_mean(&logits, &sets.alternative, &sets.alternative_mask)),
            )?);
            let readout = ChunkReadout::new(&weights, &acts, &sets)?;
            for (c, col) in chunk_attributions(&weights, &acts, &readout, rows.m as usize)? {
                let j = components.iter().position(|x| *x == c).unwrap_or_default();
                for (i, v) in to_f64(&col)?.into_iter().enumerate() {
                    values[[rows.start as usize + i, j]] = v;
                }
            }
        }
        Ok(())
    })?;
    Ok(DlaValues {
        components,
        values,
        logit_diff,
    })
}

/// Per row the mean of the masked entries of `values` picked by `ids` (0 for an empty set), in
/// double precision. Shapes: values `[B, V]`, ids/mask `[B, K]` → `[B]`.
fn set_mean(values: &Tensor, ids: &Tensor, mask: &Tensor) -> Tensor {
    masked_mean(&values.gather(1, ids, false), mask)
}

/// The mean unembedding column of each row's masked token set (0 for an empty set), double.
/// Shapes: wte `[V, d]`, ids/mask `[B, K]` → `[B, d]`.
fn mean_column(wte: &Tensor, ids: &Tensor, mask: &Tensor) -> Tensor {
    let size = ids.size();
    let cols = wte
        .index_select(0, &ids.reshape([-1]))
        .view([size[0], size[1], -1]);
    masked_mean(&cols, &mask.unsqueeze(-1))
}

/// The mean over axis 1 of the entries of `x` that `mask` keeps (0 where it keeps none), double.
/// Shapes: x `[B, K, ...]`, mask `[B, K, ...]` (broadcast against x) → `[B, ...]`.
fn masked_mean(x: &Tensor, mask: &Tensor) -> Tensor {
    let mask = mask.to_kind(Kind::Double);
    (x * &mask).sum_dim_intlist(1, false, Kind::Double)
        / mask.sum_dim_intlist(1, false, Kind::Double).clamp_min(1.0)
}

/// The hooks that DLA captures: the embeddings, the final LayerNorm scale, and per layer the
/// attention and MLP outputs and `hook_z`. Per-head results are computed at the answer position
/// only, from `hook_z` through the model's own per-head `W_O` (`Attention::per_head_result`, the
/// values of `hook_result`).
fn captured_hooks(n_layer: usize) -> Vec<HookPoint> {
    let mut capture = vec![
        HookPoint::Embed,
        HookPoint::PosEmbed,
        HookPoint::LnFinalScale,
    ];
    for l in 0..n_layer {
        capture.extend([HookPoint::AttnOut(l), HookPoint::MlpOut(l), HookPoint::Z(l)]);
    }
    capture
}

/// The model weights that DLA reads, in double precision on the model's device.
struct DlaWeights<'a> {
    /// The model's device.
    device: tch::Device,
    /// The tied embedding and unembedding `W_E = W_Uᵀ`, `[V, d]`.
    wte: Tensor,
    /// The final LayerNorm weight `w_ln`, `[d]`.
    ln_w: Tensor,
    /// The final LayerNorm bias `b_ln`, `[d]`.
    ln_b: Tensor,
    /// Every layer's attention, in layer order.
    attn: Vec<&'a Attention>,
}

impl<'a> DlaWeights<'a> {
    /// The weights of `net`. Errors: a layer the model does not have.
    fn new(net: &Net<'a>) -> Result<DlaWeights<'a>> {
        let n_layer = net.n_layer();
        let gpt = net.gpt;
        let attn = (0..n_layer)
            .map(|l| {
                gpt.block_at(l)
                    .map(|b| &b.attn)
                    .ok_or(InterpError::LayerOutOfRange {
                        layer: l,
                        max: n_layer,
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let device = net.device();
        let double = |t: &Tensor| t.to_device(device).to_kind(Kind::Double);
        Ok(DlaWeights {
            device,
            wte: double(&gpt.embed.wte),
            ln_w: double(&gpt.ln_f.weight),
            ln_b: double(&gpt.ln_f.bias),
            attn,
        })
    }

    /// The attention output bias `b_O` of layer `l` for `m` examples, `[m, d]` (double).
    fn attn_bias(&self, l: usize, m: usize) -> Tensor {
        self.attn[l]
            .c_proj
            .bias
            .to_device(self.device)
            .to_kind(Kind::Double)
            .expand([m as i64, -1], false)
    }
}

/// The cached activations of one chunk of `m` prompts, read at their answer positions.
struct AnswerActivations<'o> {
    out: &'o RunOutput,
    positions: AnswerPositions,
}

impl AnswerActivations<'_> {
    /// The whole cached activation of `hook` (`[m, T, ...]`, the model's kind). Errors: a hook the
    /// run did not return.
    fn cached(&self, hook: HookPoint) -> Result<&Tensor> {
        self.out
            .cache
            .get(&hook)
            .ok_or_else(|| InterpError::BadSpec {
                what: "hook",
                value: hook.to_string(),
                reason: "the model did not return a requested activation".into(),
            })
    }

    /// A stream hook at the answer positions: `[m, T, d]` → `[m, d]` (double).
    fn at_answer(&self, hook: HookPoint) -> Result<Tensor> {
        Ok(self
            .positions
            .select(self.cached(hook)?)
            .squeeze_dim(1)
            .to_kind(Kind::Double))
    }
}

/// The readout of one chunk of `m` examples (double): what a component's attribution is the
/// projection on.
struct ChunkReadout {
    /// `ΔW_U`: mean answer column minus mean alternative column, `[m, d]`.
    delta: Tensor,
    /// The readout direction through the LayerNorm weight, `ΔW_U ⊙ w_ln`, `[m, d]`.
    dir: Tensor,
    /// The cached final LayerNorm scale `s`, `[m, 1]`.
    scale: Tensor,
}

impl ChunkReadout {
    /// The readout of the chunk's answer sets versus its alternative sets with the chunk's cached
    /// LayerNorm scale.
    fn new(
        weights: &DlaWeights,
        acts: &AnswerActivations,
        sets: &TokenSets,
    ) -> Result<ChunkReadout> {
        let delta = mean_column(&weights.wte, &sets.answer, &sets.answer_mask)
            - mean_column(&weights.wte, &sets.alternative, &sets.alternative_mask);
        let dir = &delta * &weights.ln_w;
        let scale = acts.at_answer(HookPoint::LnFinalScale)?;
        Ok(ChunkReadout { delta, dir, scale })
    }

    /// The attribution `((c − mean(c)) / s) · dir` of components `[m, d]` → `[m]` (double).
    fn attribute(&self, c: &Tensor) -> Tensor {
        project(c, &self.dir, &self.scale)
    }

    /// The attribution of per-head components `[m, H, d]` → `[m, H]` (double).
    fn attribute_heads(&self, c: &Tensor) -> Tensor {
        project(c, &self.dir.unsqueeze(1), &self.scale.unsqueeze(1))
    }

    /// The LayerNorm bias term `b_ln · ΔW_U`, `[m]` (double).
    fn ln_bias(&self, weights: &DlaWeights) -> Tensor {
        (&self.delta * &weights.ln_b).sum_dim_intlist(-1, false, Kind::Double)
    }
}

/// `((c − mean(c)) / scale) · dir` over the last dimension: `[m, ..., d]` → `[m, ...]` (double),
/// with `dir` and `scale` broadcast against `c`.
fn project(c: &Tensor, dir: &Tensor, scale: &Tensor) -> Tensor {
    ((c - c.mean_dim(-1, true, Kind::Double)) / scale * dir).sum_dim_intlist(
        -1,
        false,
        Kind::Double,
    )
}

/// The attribution of every component for one chunk of `m` examples, each `[m]` (double), with
/// its component.
fn chunk_attributions(
    weights: &DlaWeights,
    acts: &AnswerActivations,
    readout: &ChunkReadout,
    m: usize,
) -> Result<Vec<(DlaComponent, Tensor)>> {
    let mut cols = vec![
        (
            DlaComponent::Embed,
            readout.attribute(&acts.at_answer(HookPoint::Embed)?),
        ),
        (
            DlaComponent::PosEmbed,
            readout.attribute(&acts.at_answer(HookPoint::PosEmbed)?),
        ),
        (DlaComponent::LnBias, readout.ln_bias(weights)),
    ];
    for (l, attn) in weights.attn.iter().enumerate() {
        cols.push((
            DlaComponent::AttnOut(l),
            readout.attribute(&acts.at_answer(HookPoint::AttnOut(l))?),
        ));
        cols.push((
            DlaComponent::MlpOut(l),
            readout.attribute(&acts.at_answer(HookPoint::MlpOut(l))?),
        ));
        // z [m, 1, H, d_head] → result [m, H, d] → attribution [m, H].
        let z = acts.positions.select(acts.cached(HookPoint::Z(l))?);
        let result = attn.per_head_result(&z).squeeze_dim(1);
        let heads = readout.attribute_heads(&result.to_kind(Kind::Double));
        for h in 0..attn.n_head {
            cols.push((DlaComponent::Head(l, h), heads.select(1, h as i64)));
        }
        cols.push((
            DlaComponent::AttnBias(l),
            readout.attribute(&weights.attn_bias(l, m)),
        ));
    }
    Ok(cols)
}
