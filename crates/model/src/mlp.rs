//! The MLP of a block (`mlp.c_fc`, `mlp.c_proj`) with GELU (`gelu_new`, tanh approximation).

use crate::conv1d::Conv1D;
use crate::error::Result;
use crate::gelu::gelu_new;
use crate::hooks::{HookPoint, Hooks};
use tch::nn;
use tch::Tensor;

/// `dropout(c_proj(gelu_new(c_fc(x))))`.
#[derive(Debug)]
pub struct Mlp {
    /// `[d_model, d_mlp]`
    pub c_fc: Conv1D,
    /// `[d_mlp, d_model]`
    pub c_proj: Conv1D,
    dropout: f64,
}

impl Mlp {
    /// `vs` is the block's `mlp` path; `proj_std` is the std of the c_proj weight init.
    pub fn new(vs: &nn::Path, d_model: usize, d_mlp: usize, proj_std: f64, dropout: f64) -> Mlp {
        let c_fc = Conv1D::new(&(vs / "c_fc"), d_model, d_mlp, crate::INIT_STD);
        let c_proj = Conv1D::new(&(vs / "c_proj"), d_mlp, d_model, proj_std);
        Mlp {
            c_fc,
            c_proj,
            dropout,
        }
    }

    /// The MLP of layer `layer` with `mlp.hook_pre` and `mlp.hook_post`.
    /// Shapes: x `[B, T, d_model]` → `[B, T, d_model]`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        hooks: &mut Hooks,
        train: bool,
    ) -> Result<Tensor> {
        let pre = hooks.apply(HookPoint::MlpPre(layer), self.c_fc.forward(x))?;
        let post = hooks.apply(HookPoint::MlpPost(layer), gelu_new(&pre))?;
        Ok(self.c_proj.forward(&post).dropout(self.dropout, train))
    }
}
