//! One pre-LayerNorm transformer block (`transformer.h.{i}`).

use crate::attention::{Attention, KeyValues, LayerOptions};
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
    /// ln1/ln2 scale, attention hooks, attn_out, resid_mid, mlp hooks, mlp_out, resid_post; `opts`
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
        let normed = self
            .ln_1
            .forward_hooked(&resid_pre, HookPoint::Ln1Scale(layer), hooks)?;
        let attn_out = self.attn.forward(&normed, layer, hooks, opts)?;
        let attn_out = hooks.apply(HookPoint::AttnOut(layer), attn_out)?;
        let resid_mid = opts.rows.select(&resid_pre) + attn_out;
        let resid_mid = hooks.apply(HookPoint::ResidMid(layer), resid_mid)?;
        let normed = self
            .ln_2
            .forward_hooked(&resid_mid, HookPoint::Ln2Scale(layer), hooks)?;
        let mlp_out = self.mlp.forward(&normed, layer, hooks, opts.train)?;
        let mlp_out = hooks.apply(HookPoint::MlpOut(layer), mlp_out)?;
        hooks.apply(HookPoint::ResidPost(layer), resid_mid + mlp_out)
    }

    /// Keys and values of this block's attention for the residual stream entering it.
    /// Shapes: x `[B, T, d_model]` → `[B, H, T, d_head]` each.
    pub(crate) fn key_values(&self, x: &Tensor) -> Result<KeyValues> {
        self.attn.key_values(&self.ln_1.forward(x))
    }
}
