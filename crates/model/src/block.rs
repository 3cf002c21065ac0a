//! One pre-LayerNorm transformer block (`transformer.h.{i}`).

use crate::attention::{Attention, KeyValues};
use crate::config::GptConfig;
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
    /// ln1/ln2 scale, attention hooks, attn_out, resid_mid, mlp hooks, mlp_out, resid_post.
    /// Shapes: x `[B, T, d_model]`, future `[T, T]` bool causal mask → `[B, T, d_model]`.
    pub(crate) fn forward(
        &self,
        x: Tensor,
        future: &Tensor,
        layer: usize,
        hooks: &mut Hooks,
        train: bool,
    ) -> Result<Tensor> {
        let resid_pre = hooks.apply(HookPoint::ResidPre(layer), x)?;
        let normed = self
            .ln_1
            .forward_hooked(&resid_pre, HookPoint::Ln1Scale(layer), hooks)?;
        let attn_out = self.attn.forward(&normed, future, layer, hooks, train)?;
        let attn_out = hooks.apply(HookPoint::AttnOut(layer), attn_out)?;
        let resid_mid = hooks.apply(HookPoint::ResidMid(layer), resid_pre + attn_out)?;
        let normed = self
            .ln_2
            .forward_hooked(&resid_mid, HookPoint::Ln2Scale(layer), hooks)?;
        let mlp_out = self.mlp.forward(&normed, layer, hooks, train)?;
        let mlp_out = hooks.apply(HookPoint::MlpOut(layer), mlp_out)?;
        hooks.apply(HookPoint::ResidPost(layer), resid_mid + mlp_out)
    }

    /// The block's output at `positions` only (no hooks): the attention on every position,
    /// `c_proj`, the residual, ln_2 and the MLP only on those rows.
    /// Shapes: x `[B, T, d_model]`, positions `[B, K]` i64 → `[B, K, d_model]`.
    pub(crate) fn forward_at(&self, x: &Tensor, positions: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t, d) = x.size3()?;
        let k = positions.size()[1];
        let first = Tensor::arange_start_step(0, b * t, t, (tch::Kind::Int64, x.device()));
        let rows = (positions + first.unsqueeze(1)).view([-1]);
        let attn_out = self.attn.forward_at(&self.ln_1.forward(x), &rows, train)?;
        let resid_mid = x.reshape([-1, d]).index_select(0, &rows) + attn_out;
        Ok(self.mlp_residual(resid_mid, train)?.view([b, k, d]))
    }

    /// Keys and values of this block's attention for the residual stream entering it.
    /// Shapes: x `[B, T, d_model]` → `[B, H, T, d_head]` each.
    pub(crate) fn key_values(&self, x: &Tensor) -> Result<KeyValues> {
        self.attn.key_values(&self.ln_1.forward(x))
    }

    /// The block's output at the positions `P..P+S` of a run whose positions `0..P` enter only
    /// through their keys and values `prefix` (no hooks, no dropout); with `last_only` at the
    /// last row only. Shapes: x `[B, S, d_model]`, prefix `[B, H, P, d_head]` →
    /// `[B, S, d_model]` (`[B, 1, d_model]` with `last_only`).
    pub(crate) fn forward_suffix(
        &self,
        x: &Tensor,
        prefix: &KeyValues,
        last_only: bool,
    ) -> Result<Tensor> {
        let s = x.size3()?.1;
        let attn_out = self
            .attn
            .forward_suffix(&self.ln_1.forward(x), prefix, last_only)?;
        let resid = if last_only {
            x.narrow(1, s - 1, 1)
        } else {
            x.shallow_clone()
        };
        self.mlp_residual(resid + attn_out, false)
    }

    /// `resid_mid + mlp(ln_2(resid_mid))` without hooks: the second half of a block.
    /// Shapes: `[..., d_model]` → `[..., d_model]`.
    fn mlp_residual(&self, resid_mid: Tensor, train: bool) -> Result<Tensor> {
        let mut no_hooks = Hooks::none();
        let mlp_out = self
            .mlp
            .forward(&self.ln_2.forward(&resid_mid), 0, &mut no_hooks, train)?;
        Ok(resid_mid + mlp_out)
    }
}
