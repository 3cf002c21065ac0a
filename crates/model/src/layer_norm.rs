//! LayerNorm with a TransformerLens `hook_scale`.

use crate::error::Result;
use crate::hooks::{HookPoint, Hooks};
use tch::nn::{self, Init};
use tch::Tensor;

/// `y = (x − mean) / sqrt(var + eps) · weight + bias` over the last axis.
#[derive(Debug)]
pub struct LayerNorm {
    /// `[d]`, initialised to 1.
    pub weight: Tensor,
    /// `[d]`, initialised to 0.
    pub bias: Tensor,
    /// Epsilon added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Parameters `weight` and `bias` of size `d` under `vs`, in the non-decayed group.
    pub fn new(vs: &nn::Path, d: usize, eps: f64) -> LayerNorm {
        let vs = vs.set_group(crate::NO_DECAY_GROUP);
        let weight = vs.var("weight", &[d as i64], Init::Const(1.0));
        let bias = vs.var("bias", &[d as i64], Init::Const(0.0));
        LayerNorm { weight, bias, eps }
    }

    /// Shapes: x `[..., d]` → `[..., d]` (libtorch's fused kernel).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let d = self.weight.size()[0];
        x.layer_norm([d], Some(&self.weight), Some(&self.bias), self.eps, true)
    }

    /// This LayerNorm's [`layer_norm_scale`] of x, the TransformerLens `hook_scale`.
    /// Shapes: x `[..., d]` → `[..., 1]`.
    pub fn scale(&self, x: &Tensor) -> Tensor {
        layer_norm_scale(x, self.eps)
    }

    /// The forward pass with `hook` (ln1/ln2/ln_final `hook_scale`). When the scale is captured
    /// only, it is computed on the side and the output is the fused kernel's, so capturing changes
    /// nothing. When it is edited, the output is `fused + (x̂(edited scale) − x̂(scale))`, where
    /// x̂(s) = (x − mean)/s · weight + bias: positions whose scale is unchanged keep the fused
    /// value bit for bit, edited positions get the normalisation by the edited scale, and
    /// gradients flow to the edited scale everywhere.
    /// Shapes: x `[B, T, d]` → `[B, T, d]`.
    pub(crate) fn forward_hooked(
        &self,
        x: &Tensor,
        hook: HookPoint,
        hooks: &mut Hooks,
    ) -> Result<Tensor> {
        if hooks.edited(hook) {
            let centred = x - x.mean_dim(-1, true, x.kind());
            let scale = self.scale(x);
            let edited = hooks.apply(hook, scale.shallow_clone())?;
            let normed = |s: &Tensor| &centred / s * &self.weight + &self.bias;
            return Ok(self.forward(x) + (normed(&edited) - normed(&scale)));
        }
        if hooks.captured(hook) {
            hooks.record(hook, self.scale(x));
        }
        Ok(self.forward(x))
    }
}

/// `sqrt(var + eps)` over the last axis (population variance, in x's kind): the divisor of a
/// LayerNorm with epsilon `eps`, the TransformerLens `hook_scale`.
/// Shapes: x `[..., d]` → `[..., 1]`.
pub fn layer_norm_scale(x: &Tensor, eps: f64) -> Tensor {
    let centred = x - x.mean_dim(-1, true, x.kind());
    (centred.square().mean_dim(-1, true, x.kind()) + eps).sqrt()
}
