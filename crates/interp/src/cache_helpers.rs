//! An activation cache with TransformerLens's helpers: the residual stream accumulated layer by
//! layer, decomposed into the components that wrote it, split into heads, normalised with the
//! cached LayerNorm scale, and projected onto logit directions.
//!
//! Every helper returns a [`LabelledStack`]: a tensor whose first axis lists components, with one
//! label per component (TransformerLens's labels: `0_pre`, `final_post`, `embed`, `0_attn_out`,
//! `L0H1`, ...).
//!
//! ```no_run
//! # fn demo(net: &interp::Net, tokens: &tch::Tensor) -> interp::Result<()> {
//! use interp::cache_helpers::ActivationCache;
//! let cache = ActivationCache::run(net, tokens)?;
//! let parts = cache.decompose_resid(None)?; // embed, pos_embed, 0_attn_out, 0_mlp_out, ...
//! let normed = cache.apply_ln_to_stack(&parts, None)?;
//! let answer = tch::Tensor::from_slice(&[3i64]);
//! let per_component = cache.logit_attrs(&normed, &[2], &answer, None)?; // [components, batch]
//! # Ok(()) }
//! ```

use crate::error::{InterpError, Result};
use crate::net::Net;
use model::{HookPoint, RunRequest};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// A stack of tensors along a new first axis with one label per entry.
#[derive(Debug)]
pub struct LabelledStack {
    /// One label per entry of the first axis.
    pub labels: Vec<String>,
    /// `[C, ...]`, usually `[C, B, T, d_model]` or `[C, B, d_model]`.
    pub stack: Tensor,
}

impl LabelledStack {
    /// Stacks `parts` (all of one shape) in order.
    pub fn from_parts(parts: Vec<(String, Tensor)>) -> LabelledStack {
        let (labels, tensors): (Vec<String>, Vec<Tensor>) = parts.into_iter().unzip();
        LabelledStack {
            labels,
            stack: Tensor::stack(&tensors, 0),
        }
    }

    /// The entry labelled `label`, if any. Shapes: → the stack's shape without its first axis.
    pub fn get(&self, label: &str) -> Option<Tensor> {
        let i = self.labels.iter().position(|l| l == label)?;
        Some(self.stack.get(i as i64))
    }
}

/// The activations of one forward pass over a batch of tokens, every hook captured.
pub struct ActivationCache<'n, 'g> {
    net: &'n Net<'g>,
    /// Logits at every position `[B, T, V]`.
    pub logits: Tensor,
    hooks: BTreeMap<HookPoint, Tensor>,
}

impl<'n, 'g> ActivationCache<'n, 'g> {
    /// Runs `tokens` `[B, T]` through the model with every hook captured (no gradients).
    pub fn run(net: &'n Net<'g>, tokens: &Tensor) -> Result<ActivationCache<'n, 'g>> {
        let capture = HookPoint::all(net.n_layer());
        let out = tch::no_grad(|| net.gpt.run(tokens, &RunRequest::capture(capture)))?;
        Ok(ActivationCache {
            net,
            logits: out.logits,
            hooks: out.cache,
        })
    }

    /// The cached activation of `hook`, in the shape of [`model::hooks`].
    pub fn get(&self, hook: HookPoint) -> Result<&Tensor> {
        self.hooks.get(&hook).ok_or_else(|| InterpError::BadSpec {
            what: "hook",
            value: hook.to_string(),
            reason: "not in this model's cache".into(),
        })
    }

    /// The layer a helper stops at: `None` = after the last layer (the final residual stream).
    fn checked_layer(&self, layer: Option<usize>) -> Result<usize> {
        let top = layer.unwrap_or(self.net.n_layer());
        self.net.check_layer(top)?;
        Ok(top)
    }

    /// The residual stream entering each layer up to `layer` (exclusive; `None` = all) and, when
    /// `layer` is `None`, the final stream: labels `{l}_pre`, then `final_post`.
    /// Shapes: → `[C, B, T, d_model]`.
    pub fn accumulated_resid(&self, layer: Option<usize>) -> Result<LabelledStack> {
        let top = self.checked_layer(layer)?;
        let l = self.net.n_layer();
        let mut parts = Vec::new();
        for i in 0..top.min(l) {
            parts.push((
                format!("{i}_pre"),
                self.get(HookPoint::ResidPre(i))?.shallow_clone(),
            ));
        }
        if top == l {
            let last = self.get(self.net.resid_hook(l))?.shallow_clone();
            parts.push(("final_post".to_string(), last));
        }
        Ok(LabelledStack::from_parts(parts))
    }

    /// The components that sum to the residual stream entering `layer` (`None` = the final
    /// stream): `embed`, `pos_embed`, then per earlier layer `{l}_attn_out` and `{l}_mlp_out`.
    /// Shapes: → `[C, B, T, d_model]`; the sum over `C` is that residual stream.
    pub fn decompose_resid(&self, layer: Option<usize>) -> Result<LabelledStack> {
        let top = self.checked_layer(layer)?;
        let mut parts = vec![
            (
                "embed".to_string(),
                self.get(HookPoint::Embed)?.shallow_clone(),
            ),
            ("pos_embed".to_string(), self.pos_embed()?),
        ];
        for i in 0..top {
            parts.push((
                format!("{i}_attn_out"),
                self.get(HookPoint::AttnOut(i))?.shallow_clone(),
            ));
            parts.push((
                format!("{i}_mlp_out"),
                self.get(HookPoint::MlpOut(i))?.shallow_clone(),
            ));
        }
        Ok(LabelledStack::from_parts(parts))
    }

    /// `hook_pos_embed` broadcast to the batch. Shapes: → `[B, T, d_model]`.
    fn pos_embed(&self) -> Result<Tensor> {
        let embed = self.get(HookPoint::Embed)?;
        Ok(self.get(HookPoint::PosEmbed)?.expand_as(embed).contiguous())
    }

    /// Every head's output through `W_O` (`hook_result`) of the layers before `layer` (`None` =
    /// all): labels `L{l}H{h}`; with `remainder`, a last entry `remainder` = the residual stream
    /// entering `layer` minus the heads (embeddings, MLPs and the attention output biases).
    /// Shapes: → `[C, B, T, d_model]`.
    pub fn stack_head_results(
        &self,
        layer: Option<usize>,
        remainder: bool,
    ) -> Result<LabelledStack> {
        let top = self.checked_layer(layer)?;
        let mut parts = Vec::new();
        for l in 0..top {
            let result = self.get(HookPoint::Result(l))?;
            for h in 0..self.net.n_head() {
                parts.push((format!("L{l}H{h}"), result.select(2, h as i64)));
            }
        }
        if remainder {
            let resid = self.get(self.net.resid_hook(top))?;
            let heads_sum = parts.iter().fold(resid.zeros_like(), |acc, (_, t)| acc + t);
            parts.push(("remainder".to_string(), resid - heads_sum));
        }
        Ok(LabelledStack::from_parts(parts))
    }

    /// The LayerNorm that reads the residual stream entering `layer` (`None` or `L`: `ln_final`,
    /// else block `layer`'s `ln_1`), applied to each component as to a summand of that stream:
    /// centred, divided by the *cached* scale of the full stream (so the map is linear and the
    /// components still sum to the normalised stream) and multiplied by the LayerNorm weight.
    /// The LayerNorm bias is not a component's and is left out: the sum over the stack plus
    /// [`ActivationCache::ln_bias`] equals the LayerNorm's output.
    /// Shapes: stack `[C, B, T, d_model]` → `[C, B, T, d_model]`.
    pub fn apply_ln_to_stack(
        &self,
        stack: &LabelledStack,
        layer: Option<usize>,
    ) -> Result<LabelledStack> {
        let top = self.checked_layer(layer)?;
        let (scale_hook, weight) = self.ln_reading(top)?;
        let scale = self.get(scale_hook)?;
        let x = &stack.stack;
        let centred = x - x.mean_dim(-1, true, x.kind());
        Ok(LabelledStack {
            labels: stack.labels.clone(),
            stack: centred / scale * weight,
        })
    }

    /// The bias of the LayerNorm that reads the stream entering `layer` (`None`: `ln_final`).
    /// Shapes: → `[d_model]`.
    pub fn ln_bias(&self, layer: Option<usize>) -> Result<Tensor> {
        let top = self.checked_layer(layer)?;
        Ok(if top == self.net.n_layer() {
            self.net.gpt.ln_f.bias.shallow_clone()
        } else {
            self.block(top)?.ln_1.bias.shallow_clone()
        })
    }

    /// The scale hook and the weight of the LayerNorm reading the stream entering `layer`.
    fn ln_reading(&self, layer: usize) -> Result<(HookPoint, Tensor)> {
        Ok(if layer == self.net.n_layer() {
            (
                HookPoint::LnFinalScale,
                self.net.gpt.ln_f.weight.shallow_clone(),
            )
        } else {
            (
                HookPoint::Ln1Scale(layer),
                self.block(layer)?.ln_1.weight.shallow_clone(),
            )
        })
    }

    fn block(&self, layer: usize) -> Result<&model::Block> {
        self.net
            .gpt
            .block_at(layer)
            .ok_or(InterpError::LayerOutOfRange {
                layer,
                max: self.net.n_layer(),
            })
    }

    /// Each component's direct contribution to the logit of `tokens` (minus the logit of
    /// `incorrect`, when given) at each row's position `positions[b]`: the stack is read there and
    /// projected onto the tied unembedding. Apply [`ActivationCache::apply_ln_to_stack`] first;
    /// the sum over components plus the final LayerNorm bias's term ([`ActivationCache::ln_bias`]
    /// projected the same way) is then the logit (difference) of the run.
    /// Shapes: stack `[C, B, T, d_model]`, positions `[B]`, tokens and incorrect `[B]` i64 →
    /// `[C, B]`.
    pub fn logit_attrs(
        &self,
        stack: &LabelledStack,
        positions: &[i64],
        tokens: &Tensor,
        incorrect: Option<&Tensor>,
    ) -> Result<Tensor> {
        let direction = self.logit_directions(tokens, incorrect);
        Ok(project_at(stack, positions, &direction))
    }

    /// The unembedding columns of `tokens` (minus those of `incorrect`).
    /// Shapes: tokens, incorrect `[B]` i64 → `[B, d_model]`.
    pub fn logit_directions(&self, tokens: &Tensor, incorrect: Option<&Tensor>) -> Tensor {
        let device = self.net.device();
        let embed = |t: &Tensor| self.net.token_embeddings(&t.to_device(device));
        match incorrect {
            Some(bad) => embed(tokens) - embed(bad),
            None => embed(tokens),
        }
    }
}

/// Each component of `stack` at each row's position, projected onto that row's direction.
/// Shapes: stack `[C, B, T, d]`, positions `[B]`, directions `[B, d]` → `[C, B]`.
pub fn project_at(stack: &LabelledStack, positions: &[i64], directions: &Tensor) -> Tensor {
    let x = &stack.stack;
    let size = x.size();
    let (c, d) = (size[0], size[3]);
    let index = Tensor::from_slice(positions)
        .to_device(x.device())
        .view([1, -1, 1, 1])
        .expand([c, -1, 1, d], false);
    let at = x.gather(2, &index, false).squeeze_dim(2);
    (at * directions.to_kind(x.kind()).unsqueeze(0)).sum_dim_intlist(-1, false, Kind::Float)
}
