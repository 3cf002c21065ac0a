//! One pre-LayerNorm transformer block (`transformer.h.{i}`).

use crate::attention::{Attention, AttentionInput, KeyValues, LayerOptions};
use crate::config::GptConfig;
use crate::error::ModelError;
use crate::error::Result;
use crate::hooks::{HookPoint, Hooks};
use crate::layer_norm::LayerNorm;
use crate::mlp::Mlp;
use tch::nn;
use tch::Tensor;

/// `x + attn(ln_1(x))`, then `+ mlp(ln_2(·))`.
#[derive(Debug)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

impl Block {
    /// `vs` is `transformer.h.{i}`. Every c_proj weight ~ N(0, (0.02/sqrt(2·n_blocks))²).
    pub fn new(vs: &nn::Path, cfg: &GptConfig) -> Block {
        let proj_std = crate::INIT_STD / (2.0 * cfg.n_blocks as f64).sqrt();
        Block {
            ln_1: LayerNorm::new(&(vs / "ln_1"), cfg.d_model, cfg.ln_eps),
            attn: Attention::new(
                &(vs / "attn"),
                cfg.d_model,
                cfg.n_head,
                proj_std,
                cfg.dropout,
            ),
            ln_2: LayerNorm::new(&(vs / "ln_2"), cfg.d_model, cfg.ln_eps),
            mlp: Mlp::new(&(vs / "mlp"), cfg.d_model, cfg.d_mlp, proj_std, cfg.dropout),
        }
    }

    /// The block applied as layer `layer` (its schedule position), with the hooks resid_pre,
    /// q/k/v inputs, ln1/ln2 scale, attention hooks, attn_out, resid_mid, mlp_in, mlp hooks,
    /// mlp_out, resid_post; `opts`
    /// selects the fast paths (keys and values of earlier positions, a subset of output rows).
    /// Shapes: x `[B, S, d_model]` → `[B, S, d_model]`, `[R, d_model]` or `[B, 1, d_model]`
    /// (see [`crate::attention::Rows`]).
    pub(crate) fn forward(
        &self,
        x: Tensor,
        layer: usize,
        hooks: &mut Hooks,
        opts: &LayerOptions,
    ) -> Result<Tensor> {
        let resid_pre = hooks.apply(HookPoint::ResidPre(layer), x)?;
        let attn_in = self.attention_input(&resid_pre, layer, hooks)?;
        let attn_out = self.attn.forward(&attn_in, layer, hooks, opts)?;
        let attn_out = hooks.apply(HookPoint::AttnOut(layer), attn_out)?;
        let resid_mid = opts.rows.select(&resid_pre) + attn_out;
        let resid_mid = hooks.apply(HookPoint::ResidMid(layer), resid_mid)?;
        let mlp_in = self.mlp_input(&resid_mid, layer, hooks)?;
        let normed = self
            .ln_2
            .forward_hooked(&mlp_in, HookPoint::Ln2Scale(layer), hooks)?;
        let mlp_out = self.mlp.forward(&normed, layer, hooks, opts.train)?;
        let mlp_out = hooks.apply(HookPoint::MlpOut(layer), mlp_out)?;
        hooks.apply(HookPoint::ResidPost(layer), resid_mid + mlp_out)
    }

    /// ln_1 of the residual stream, shared by every head, with the hooks q/k/v input (recorded
    /// on the side when captured) and ln1 scale; with split inputs, ln_1 of each head's own
    /// hooked query, key and value input (ln1 scale is then captured but cannot be edited).
    /// Shapes: resid_pre `[B, S, d_model]` → see [`AttentionInput`].
    fn attention_input(
        &self,
        resid_pre: &Tensor,
        layer: usize,
        hooks: &mut Hooks,
    ) -> Result<AttentionInput> {
        let roles = [HookPoint::QInput, HookPoint::KInput, HookPoint::VInput].map(|f| f(layer));
        let (b, s, d) = resid_pre.size3()?;
        let per_head = || {
            resid_pre
                .unsqueeze(2)
                .expand([b, s, self.attn.n_head as i64, d], false)
        };
        let scale = HookPoint::Ln1Scale(layer);
        if !hooks.splits_attention_input(layer) {
            for role in roles {
                if hooks.captured(role) {
                    hooks.record(role, per_head());
                }
            }
            let normed = self.ln_1.forward_hooked(resid_pre, scale, hooks)?;
            return Ok(AttentionInput::Shared(normed));
        }
        if hooks.edited(scale) {
            return Err(ModelError::hook(
                scale,
                "cannot be edited while the heads read split q/k/v inputs",
            ));
        }
        hooks.record(scale, self.ln_1.scale(resid_pre));
        let [q, k, v] = roles;
        let mut normed =
            |role| -> Result<Tensor> { Ok(self.ln_1.forward(&hooks.apply(role, per_head())?)) };
        Ok(AttentionInput::PerHead([
            normed(q)?,
            normed(k)?,
            normed(v)?,
        ]))
    }

    /// The MLP's input with the hook mlp_in: its own node of the graph when split (so that
    /// edits and gradients concern the MLP's reading only), else `resid_mid` itself, recorded
    /// when captured. Shapes: `[B, S, d_model]` (or `[R, d_model]`) → the same.
    fn mlp_input(&self, resid_mid: &Tensor, layer: usize, hooks: &mut Hooks) -> Result<Tensor> {
        let hook = HookPoint::MlpIn(layer);
        if hooks.splits_mlp_input(layer) {
            return hooks.apply(hook, resid_mid.alias());
        }
        hooks.record(hook, resid_mid.shallow_clone());
        Ok(resid_mid.shallow_clone())
    }

    /// Keys and values of this block's attention for the residual stream entering it.
    /// Shapes: x `[B, T, d_model]` → `[B, H, T, d_head]` each.
    pub(crate) fn key_values(&self, x: &Tensor) -> Result<KeyValues> {
        self.attn.key_values(&self.ln_1.forward(x))
    }
}
