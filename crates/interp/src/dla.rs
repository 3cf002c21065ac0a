//! Direct logit attribution (DLA): how much each component writing to the residual stream adds
//! directly to the logit difference `logit[gold] − logit[alt]` at the answer position.
//!
//! The final residual state is the sum of its components: `hook_embed + hook_pos_embed +
//! Σ_l (attn_out_l + mlp_out_l)`, and `attn_out_l = Σ_h hook_result[l, h] + b_O[l]`. With the
//! cached final LayerNorm scale `s` (`ln_final.hook_scale` of the same example and position), the
//! logit difference splits exactly (TransformerLens `apply_ln_to_stack`):
//!
//! `attr_c = ((c − mean(c)) / s) · (w_ln ⊙ (W_U[:, gold] − W_U[:, alt]))`, plus the LayerNorm
//! bias term `b_ln · (W_U[:, gold] − W_U[:, alt])`; the unembedding is tied and has no bias.
//!
//! Components, in order: `embed`, `pos_embed`, then per layer `attn_out.{l}` and `mlp_out.{l}`,
//! then `ln_final.bias`, then per layer every head `head.{l}.{h}` and the attention output bias
//! `attn_bias.{l}`. Two partitions of the logit difference follow: embeddings + `attn_out.*` +
//! `mlp_out.*` + `ln_final.bias` (the layer view), and embeddings + `head.*.*` + `attn_bias.*` +
//! `mlp_out.*` + `ln_final.bias` (the head view); `attn_out.{l}` equals the sum of its heads and
//! `attn_bias.{l}`.
//!
//! `dla.csv` holds the layer view (drawn as bars that sum to the logit difference) and the heads
//! (drawn as a layer × head heatmap); the attention biases are left out of it so that no bar is
//! counted twice — they are in [`DlaResult`] and in `dla_summary.json`.

use crate::error::{InterpError, Result};
use crate::net::{logits_at, Net};
use crate::prompt_sample::PromptSample;
use crate::states::{alt_tokens, tokens_tensor};
use crate::stats::{to_f64, to_i64};
use model::{Attention, HookPoint, RunOutput, RunRequest};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
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

/// One row of `dla.csv`: `step,component,value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlaRow {
    pub step: u64,
    pub component: String,
    pub value: f64,
}

/// Direct logit attribution of a prompt sample.
#[derive(Clone, Debug)]
pub struct DlaResult {
    /// Components (columns of `values`), in the order of [`DlaComponent::all`].
    pub components: Vec<DlaComponent>,
    /// Attribution per example (rows, sample order) and component `[N, C]`.
    pub values: Array2<f64>,
    /// The model's logit difference `logit[gold] − logit[alt]` per example.
    pub logit_diff: Vec<f64>,
    /// The alternative token per example (runner-up, or the given one).
    pub alt: Vec<u32>,
}

impl DlaResult {
    /// Mean attribution of each component over the examples.
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

    /// Largest `|Σ parts − logit difference|` over examples and both partitions (a check that the
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

    /// `dla.csv` rows: the mean of every component at `step`, in order, except the attention
    /// biases (see the module documentation).
    pub fn rows(&self, step: u64) -> Vec<DlaRow> {
        self.means()
            .into_iter()
            .filter(|(c, _)| !matches!(c, DlaComponent::AttnBias(_)))
            .map(|(c, value)| DlaRow {
                step,
                component: c.to_string(),
                value,
            })
            .collect()
    }
}

/// Direct logit attribution of gold versus `alternative` (a token id; `None`: each example's
/// runner-up, the highest-logit non-gold token) at the answer position of every sampled prompt,
/// in chunks of at most `max_rows` examples. Computed in double precision from the cached
/// activations. Errors: an alternative token outside the vocabulary.
pub fn direct_logit_attribution(
    net: &Net,
    probe: &PromptSample,
    alternative: Option<u32>,
    max_rows: usize,
) -> Result<DlaResult> {
    check_alternative(net, alternative)?;
    let components = DlaComponent::all(net.n_layer(), net.n_head());
    let column = |c: DlaComponent| components.iter().position(|x| *x == c).unwrap_or_default();
    let weights = DlaWeights::new(net)?;
    let capture = captured_hooks(net.n_layer());
    let device = net.device();
    let n = probe.examples.len();
    let tokens = tokens_tensor(probe.examples.iter().map(|e| e.tokens.as_slice()), device);
    let gold_all = gold_tensor(probe, device);
    let mut values = Array2::<f64>::zeros((n, components.len()));
    let mut logit_diff = Vec::with_capacity(n);
    let mut alt_ids = Vec::with_capacity(n);
    let chunk = max_rows.max(1);
    tch::no_grad(|| -> Result<()> {
        for start in (0..n).step_by(chunk) {
            let m = chunk.min(n - start);
            let mut req = RunRequest::capture(capture.iter().copied());
            req.logit_positions = logits_at(probe.answer_pos);
            let out = net.run(&tokens.narrow(0, start as i64, m as i64), &req)?;
            let acts = AnswerActivations {
                out: &out,
                pos: probe.answer_pos as i64,
            };
            let gold = gold_all.narrow(0, start as i64, m as i64);
            let (alt, ld) = logit_difference(&out.logits.squeeze_dim(1), &gold, alternative);
            let readout = ChunkReadout::new(&weights, &acts, &gold, &alt)?;
            for (c, col) in chunk_attributions(&weights, &acts, &readout, m)? {
                for (i, v) in to_f64(&col)?.into_iter().enumerate() {
                    values[[start + i, column(c)]] = v;
                }
            }
            logit_diff.extend(to_f64(&ld)?);
            alt_ids.extend(to_i64(&alt)?.into_iter().map(|a| a as u32));
        }
        Ok(())
    })?;
    Ok(DlaResult {
        components,
        values,
        logit_diff,
        alt: alt_ids,
    })
}

/// Errors unless the fixed alternative token (if any) is inside the model's vocabulary.
fn check_alternative(net: &Net, alternative: Option<u32>) -> Result<()> {
    match alternative {
        Some(a) if a as usize >= net.vocab_size() => Err(InterpError::spec(
            "alternative token",
            a.to_string(),
            format!("outside the model's vocabulary of {}", net.vocab_size()),
        )),
        _ => Ok(()),
    }
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

/// The gold token of every sampled prompt, `[n]` (int64) on `device`.
fn gold_tensor(probe: &PromptSample, device: tch::Device) -> Tensor {
    let gold: Vec<i64> = probe.examples.iter().map(|e| i64::from(e.gold)).collect();
    Tensor::from_slice(&gold).to_device(device)
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

/// The cached activations of one chunk of `m` examples, read at the answer position `pos`.
struct AnswerActivations<'o> {
    out: &'o RunOutput,
    pos: i64,
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

    /// A stream hook at the answer position: `[m, T, d]` → `[m, d]` (double).
    fn at_answer(&self, hook: HookPoint) -> Result<Tensor> {
        Ok(self.cached(hook)?.select(1, self.pos).to_kind(Kind::Double))
    }
}

/// The alternative token of every example of a chunk, `[m]` (int64), and the logit difference
/// `logit[gold] − logit[alt]`, `[m]` (double), from the answer-position logits `[m, V]` and the
/// gold tokens `[m]`.
fn logit_difference(logits: &Tensor, gold: &Tensor, alternative: Option<u32>) -> (Tensor, Tensor) {
    let alt = match alternative {
        Some(a) => Tensor::full(
            [gold.size()[0]],
            i64::from(a),
            (Kind::Int64, logits.device()),
        ),
        None => alt_tokens(logits, gold),
    };
    let logits = logits.to_kind(Kind::Double);
    let ld =
        logits.gather(1, &gold.unsqueeze(1), false) - logits.gather(1, &alt.unsqueeze(1), false);
    (alt, ld)
}

/// The readout of one chunk of `m` examples (double): what a component's attribution is the
/// projection on.
struct ChunkReadout {
    /// `ΔW_U = W_U[:, gold] − W_U[:, alt]`, `[m, d]`.
    delta: Tensor,
    /// The readout direction through the LayerNorm weight, `ΔW_U ⊙ w_ln`, `[m, d]`.
    dir: Tensor,
    /// The cached final LayerNorm scale `s`, `[m, 1]`.
    scale: Tensor,
}

impl ChunkReadout {
    /// The readout of gold `[m]` versus alt `[m]` with the chunk's cached LayerNorm scale.
    fn new(
        weights: &DlaWeights,
        acts: &AnswerActivations,
        gold: &Tensor,
        alt: &Tensor,
    ) -> Result<ChunkReadout> {
        let delta = weights.wte.index_select(0, gold) - weights.wte.index_select(0, alt);
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
        let z = acts.cached(HookPoint::Z(l))?.narrow(1, acts.pos, 1);
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
