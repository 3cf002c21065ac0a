//! Causal multi-head self-attention (`attn.c_attn`, `attn.c_proj`), written with explicit
//! matmul + softmax so that scores and pattern can be hooked.

use crate::conv1d::Conv1D;
use crate::error::Result;
use crate::hooks::{HookPoint, Hooks};
use tch::nn;
use tch::Tensor;

/// GPT-2 attention: one fused `c_attn` matmul for q, k, v; scores scaled by `1/sqrt(d_head)`;
/// causal mask; softmax; dropout on the pattern (training only); `c_proj`; residual dropout.
#[derive(Debug)]
pub struct Attention {
    /// `[d_model, 3·d_model]`: columns are q, k, v, each split into heads of `d_head`.
    pub c_attn: Conv1D,
    /// `[d_model, d_model]`: rows are the concatenated heads (W_O).
    pub c_proj: Conv1D,
    /// Number of heads.
    pub n_head: usize,
    dropout: f64,
}

impl Attention {
    /// `vs` is the block's `attn` path; `proj_std` is the std of the c_proj weight init.
    pub fn new(
        vs: &nn::Path,
        d_model: usize,
        n_head: usize,
        proj_std: f64,
        dropout: f64,
    ) -> Attention {
        let c_attn = Conv1D::new(&(vs / "c_attn"), d_model, 3 * d_model, crate::INIT_STD);
        let c_proj = Conv1D::new(&(vs / "c_proj"), d_model, d_model, proj_std);
        Attention {
            c_attn,
            c_proj,
            n_head,
            dropout,
        }
    }

    /// Per-head outputs through W_O, without the c_proj bias (TransformerLens `hook_result`).
    /// Shapes: z `[B, T, H, d_head]` → `[B, T, H, d_model]`.
    pub fn per_head_result(&self, z: &Tensor) -> Tensor {
        let size = z.size();
        let (h, dh) = (size[2], size[3]);
        let w_o = self.c_proj.weight.view([h, dh, -1]);
        Tensor::einsum("bthe,hed->bthd", &[z, &w_o], None::<i64>)
    }

    /// Attention of layer `layer` with the hooks q, k, v, attn_scores, pattern, z and result.
    /// Result is computed only when captured or edited; when edited the output is
    /// `c_proj(z) + Σ_heads(edited result − result)`, so heads and rows left alone keep the
    /// c_proj value bit for bit.
    /// Shapes: x `[B, T, d_model]` (the ln_1 output), future `[T, T]` bool (true above the
    /// diagonal) → `[B, T, d_model]`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        future: &Tensor,
        layer: usize,
        hooks: &mut Hooks,
        train: bool,
    ) -> Result<Tensor> {
        let (b, t, d) = x.size3()?;
        let h = self.n_head as i64;
        let dh = d / h;
        let qkv = self.c_attn.forward(x);
        let head = |i: i64| qkv.narrow(-1, i * d, d).view([b, t, h, dh]);
        let (q, k, v) = (head(0), head(1), head(2));
        let q = hooks.apply(HookPoint::Q(layer), q)?;
        let k = hooks.apply(HookPoint::K(layer), k)?;
        let v = hooks.apply(HookPoint::V(layer), v)?;
        let scores = q.transpose(1, 2).matmul(&k.permute([0, 2, 3, 1])) / (dh as f64).sqrt();
        let scores = scores.masked_fill(future, f64::NEG_INFINITY);
        let scores = hooks.apply(HookPoint::AttnScores(layer), scores)?;
        let pattern = hooks.apply(HookPoint::Pattern(layer), scores.softmax(-1, scores.kind()))?;
        let z = pattern
            .dropout(self.dropout, train)
            .matmul(&v.transpose(1, 2))
            .transpose(1, 2);
        let z = hooks.apply(HookPoint::Z(layer), z)?;
        let result = HookPoint::Result(layer);
        let out = self.c_proj.forward(&z.reshape([b, t, d]));
        let out = if hooks.edited(result) {
            let per_head = self.per_head_result(&z);
            let edited = hooks.apply(result, per_head.shallow_clone())?;
            let heads_sum = |r: &Tensor| r.sum_dim_intlist(2, false, r.kind());
            out + (heads_sum(&edited) - heads_sum(&per_head))
        } else {
            if hooks.captured(result) {
                hooks.record(result, self.per_head_result(&z));
            }
            out
        };
        Ok(out.dropout(self.dropout, train))
    }

    /// The attention output at the query positions `positions` only (no hooks): keys and values
    /// come from every position, queries only from the given ones, each masked causally at its
    /// own position. Used by training, where only the loss positions of the last layer matter.
    /// Shapes: x `[B, T, d_model]` (the ln_1 output), positions `[B, K]` i64 → `[B, K, d_model]`.
    pub(crate) fn forward_at(&self, x: &Tensor, positions: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t, d) = x.size3()?;
        let k_rows = positions.size()[1];
        let h = self.n_head as i64;
        let dh = d / h;
        let w = &self.c_attn.weight;
        let bias = &self.c_attn.bias;
        let rows = positions.unsqueeze(-1).expand([-1, -1, d], false);
        let q = bias
            .narrow(0, 0, d)
            .addmm(
                &x.gather(1, &rows, false).reshape([-1, d]),
                &w.narrow(1, 0, d),
            )
            .view([b, k_rows, h, dh]);
        let kv = bias
            .narrow(0, d, 2 * d)
            .addmm(&x.reshape([-1, d]), &w.narrow(1, d, 2 * d))
            .view([b, t, 2 * d]);
        let head = |i: i64| kv.narrow(-1, i * d, d).view([b, t, h, dh]);
        let (k, v) = (head(0), head(1));
        let scores = q.transpose(1, 2).matmul(&k.permute([0, 2, 3, 1])) / (dh as f64).sqrt();
        let keys = Tensor::arange(t, (tch::Kind::Int64, x.device()));
        let future = keys
            .view([1, 1, t])
            .gt_tensor(&positions.unsqueeze(-1))
            .unsqueeze(1);
        let pattern = scores
            .masked_fill(&future, f64::NEG_INFINITY)
            .softmax(-1, scores.kind());
        let z = pattern
            .dropout(self.dropout, train)
            .matmul(&v.transpose(1, 2))
            .transpose(1, 2)
            .reshape([b, k_rows, d]);
        Ok(self.c_proj.forward(&z).dropout(self.dropout, train))
    }
}
