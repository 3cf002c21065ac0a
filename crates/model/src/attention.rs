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
        let qkv = self.c_attn.forward(x).split(d, -1);
        let head = |i: usize| qkv[i].view([b, t, h, dh]);
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

    /// The attention output at the rows `rows` only (no hooks): the attention runs on every
    /// position (small: `T × T` scores per head), `c_proj` only on the selected rows of `z`. Used
    /// by training, where only the loss positions of the last layer matter.
    /// Shapes: x `[B, T, d_model]` (the ln_1 output), rows `[R]` i64 indices into the flattened
    /// `B·T` positions → `[R, d_model]`.
    pub(crate) fn forward_at(&self, x: &Tensor, rows: &Tensor, train: bool) -> Result<Tensor> {
        let (_, t, d) = x.size3()?;
        let (q, kv) = self.heads(x)?;
        let future = Tensor::ones([t, t], (tch::Kind::Bool, x.device())).triu(1);
        let z = self.attend(&q, &kv, Some(&future), train)?;
        let z = z.view([-1, d]).index_select(0, rows);
        Ok(self.c_proj.forward(&z).dropout(self.dropout, train))
    }

    /// The attention output of the positions `P..P+S` of a run whose positions `0..P` are given
    /// by their keys and values `prefix` (no hooks, no dropout): queries, keys and values of the
    /// suffix rows, each query masked causally at its own position; with `last_only` only the
    /// last row's output. Shapes: x `[B, S, d_model]` (the ln_1 output at `P..P+S`), prefix
    /// `[B, H, P, d_head]` → `[B, S, d_model]` (`[B, 1, d_model]` with `last_only`).
    pub(crate) fn forward_suffix(
        &self,
        x: &Tensor,
        prefix: &KeyValues,
        last_only: bool,
    ) -> Result<Tensor> {
        let s = x.size3()?.1;
        let p = prefix.k.size()[2];
        let (q, own) = self.heads(x)?;
        let kv = KeyValues {
            k: Tensor::cat(&[&prefix.k, &own.k], 2),
            v: Tensor::cat(&[&prefix.v, &own.v], 2),
        };
        let z = if last_only {
            self.attend(&q.narrow(2, s - 1, 1), &kv, None, false)?
        } else {
            let future = Tensor::ones([s, p + s], (tch::Kind::Bool, x.device())).triu(p + 1);
            self.attend(&q, &kv, Some(&future), false)?
        };
        Ok(self.c_proj.forward(&z))
    }

    /// Keys and values of the ln_1 output `x` (the k and v columns of `c_attn` only).
    /// Shapes: x `[B, T, d_model]` → `[B, H, T, d_head]` each.
    pub(crate) fn key_values(&self, x: &Tensor) -> Result<KeyValues> {
        let (b, t, d) = x.size3()?;
        let kv = self
            .c_attn
            .bias
            .narrow(0, d, 2 * d)
            .addmm(&x.reshape([-1, d]), &self.c_attn.weight.narrow(1, d, 2 * d))
            .view([b, t, 2 * d])
            .split(d, -1);
        Ok(KeyValues {
            k: self.split_heads(&kv[0])?,
            v: self.split_heads(&kv[1])?,
        })
    }

    /// Queries, keys and values of the ln_1 output `x` (one fused `c_attn`).
    /// Shapes: x `[B, T, d_model]` → q `[B, H, T, d_head]`, k and v the same.
    fn heads(&self, x: &Tensor) -> Result<(Tensor, KeyValues)> {
        let d = x.size3()?.2;
        let qkv = self.c_attn.forward(x).split(d, -1);
        let kv = KeyValues {
            k: self.split_heads(&qkv[1])?,
            v: self.split_heads(&qkv[2])?,
        };
        Ok((self.split_heads(&qkv[0])?, kv))
    }

    /// Shapes: `[B, T, d_model]` → `[B, H, T, d_head]`.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.size3()?;
        let h = self.n_head as i64;
        Ok(x.view([b, t, h, d / h]).transpose(1, 2))
    }

    /// Scaled dot-product attention of `q` over `kv` (entries where `future` is true masked),
    /// pattern dropout, heads merged: `z` before `c_proj`.
    /// Shapes: q `[B, H, Q, d_head]`, kv `[B, H, K, d_head]`, future broadcastable to
    /// `[B, H, Q, K]` → `[B, Q, d_model]`.
    fn attend(
        &self,
        q: &Tensor,
        kv: &KeyValues,
        future: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let (b, h, n_q, dh) = q.size4()?;
        let scores = q.matmul(&kv.k.transpose(2, 3)) / (dh as f64).sqrt();
        let scores = match future {
            Some(future) => scores.masked_fill(future, f64::NEG_INFINITY),
            None => scores,
        };
        Ok(scores
            .softmax(-1, scores.kind())
            .dropout(self.dropout, train)
            .matmul(&kv.v)
            .transpose(1, 2)
            .reshape([b, n_q, h * dh]))
    }
}

/// The keys and values of one layer's attention at a run's positions: what a later position
/// needs of the earlier ones ([`crate::Gpt::run_suffix`]).
#[derive(Debug)]
pub struct KeyValues {
    /// `[B, H, T, d_head]`
    pub k: Tensor,
    /// `[B, H, T, d_head]`
    pub v: Tensor,
}

impl KeyValues {
    /// `f` applied to the keys and to the values (e.g. a narrow of rows or positions).
    pub fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> KeyValues {
        KeyValues {
            k: f(&self.k),
            v: f(&self.v),
        }
    }
}
