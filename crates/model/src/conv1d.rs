//! HF GPT-2's `Conv1D`: a linear map whose weight is stored `[in, out]` (transposed with respect
//! to `nn::Linear`), so checkpoints are byte-compatible with Hugging Face.

use tch::nn::{self, Init};
use tch::Tensor;

/// `y = x · weight + bias` with `weight [in, out]`, `bias [out]`.
#[derive(Debug)]
pub struct Conv1D {
    /// `[in, out]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Tensor,
}

impl Conv1D {
    /// Weight ~ N(0, `std`²), bias 0. The weight goes into the decayed parameter group, the bias
    /// into the non-decayed one (see [`crate::DECAY_GROUP`]).
    pub fn new(vs: &nn::Path, d_in: usize, d_out: usize, std: f64) -> Conv1D {
        let (d_in, d_out) = (d_in as i64, d_out as i64);
        let weight = vs.set_group(crate::DECAY_GROUP).var(
            "weight",
            &[d_in, d_out],
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        );
        let bias = vs
            .set_group(crate::NO_DECAY_GROUP)
            .var("bias", &[d_out], Init::Const(0.0));
        Conv1D { weight, bias }
    }

    /// Shapes: x `[..., in]` → `[..., out]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut out_shape = x.size();
        let d_in = out_shape.pop().unwrap_or_default();
        out_shape.push(self.weight.size()[1]);
        self.bias
            .addmm(&x.reshape([-1, d_in]), &self.weight)
            .view(out_shape.as_slice())
    }
}
