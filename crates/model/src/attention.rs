//! Causal multi-head self-attention (`attn.c_attn`, `attn.c_proj`), written with explicit
//! matmul + softmax so that scores and pattern can be hooked. One computation serves every pass:
//! the fast paths (keys and values of earlier positions given, outputs at some rows only) are
//! [`LayerOptions`] of it.

use crate::conv1d::Conv1D;
use crate::error::Result;
use crate::hooks::{HookPoint, Hooks};
use tch::nn;
use tch::{Kind, Tensor};

/// Which rows of its input a layer computes outputs for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rows<'a> {
    /// Every position: `[B, S, d_model]`.
    All,
    /// The given rows of the flattened `B·S` positions (`[R]` i64): `[R, d_model]`. The
    /// attention still runs every query (each row's keys are its own batch item's).
    Flat(&'a Tensor),
    /// The last position only (its query alone is run): `[B, 1, d_model]`.
    Last,
}

impl Rows<'_> {
    /// The queries the attention runs: the last position for [`Rows::Last`], else all.
    /// Shapes: x `[B, S, ...]` → `[B, S, ...]` (`[B, 1, ...]` for `Last`).
    pub(crate) fn queries(&self, x: &Tensor) -> Tensor {
        match self {
            Rows::Last => {
                let s = x.size()[1];
                x.narrow(1, s - 1, 1)
            }
            Rows::All | Rows::Flat(_) => x.shallow_clone(),
        }
    }

    /// The selected rows of a tensor over the run queries: the flattened rows for
    /// [`Rows::Flat`], else all. Shapes: x `[B, Q, ...]` → `[R, ...]` for `Flat`, else `[B, Q, ...]`.
    pub(crate) fn outputs(&self, x: &Tensor) -> Tensor {
        match self {
            Rows::Flat(rows) => x.flatten(0, 1).index_select(0, rows),
            Rows::All | Rows::Last => x.shallow_clone(),
        }
    }

    /// The selected rows of the residual stream: [`Rows::queries`] then [`Rows::outputs`].
    /// Shapes: x `[B, S, d_model]` → as the layer's output.
    pub(crate) fn select(&self, x: &Tensor) -> Tensor {
        self.outputs(&self.queries(x))
    }
}

/// What the attention reads: one ln_1 output shared by every head's query, key and value, or
/// (split inputs, [`crate::RunRequest::split_inputs`]) one per head and role.
#[derive(Debug)]
pub(crate) enum AttentionInput {
    /// The ln_1 output `[B, S, d_model]`.
    Shared(Tensor),
    /// ln_1 of each head's query, key and value input, `[B, S, H, d_model]` each.
    PerHead([Tensor; 3]),
}

/// How one layer runs: the plain pass is `prefix: None, rows: All`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerOptions<'a> {
    /// Keys and values of the positions `0..P` before the input, whose positions are then
    /// `P..P+S`; each query attends to the prefix and causally to the input. `[B, H, P, d_head]`.
    pub prefix: Option<&'a KeyValues>,
    /// The rows the layer outputs.
    pub rows: Rows<'a>,
    /// Dropout on (training mode).
    pub train: bool,
}

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

    /// Attention of layer `layer` with the hooks q, k, v, attn_scores, pattern, z and result
    /// (hook shapes as in [`crate::hooks`] on the plain pass; `opts` narrows them). Result is
    /// computed only when captured or edited.
    /// Shapes: input `[B, S, d_model]` (or `[B, S, H, d_model]` per role) → `[B, S, d_model]`,
    /// `[R, d_model]` or `[B, 1, d_model]` (see [`Rows`]).
    pub(crate) fn forward(
        &self,
        input: &AttentionInput,
        layer: usize,
        hooks: &mut Hooks,
        opts: &LayerOptions,
    ) -> Result<Tensor> {
        let [q, k, v] = self.project(input, layer, hooks)?;
        let own = KeyValues {
            k: k.transpose(1, 2),
            v: v.transpose(1, 2),
        };
        let kv = match opts.prefix {
            Some(prefix) => KeyValues {
                k: Tensor::cat(&[&prefix.k, &own.k], 2),
                v: Tensor::cat(&[&prefix.v, &own.v], 2),
            },
            None => own,
        };
        let q = opts.rows.queries(&q).transpose(1, 2);
        let z = self.attend(&q, &kv, layer, hooks, opts)?;
        let out = self.output(&z, layer, hooks, opts.rows)?;
        Ok(out.dropout(self.dropout, opts.train))
    }

    /// Keys and values of the ln_1 output `x`, as the attention computes them.
    /// Shapes: x `[B, T, d_model]` → `[B, H, T, d_head]` each.
    pub(crate) fn key_values(&self, x: &Tensor) -> Result<KeyValues> {
        let input = AttentionInput::Shared(x.shallow_clone());
        let [_, k, v] = self.project(&input, 0, &mut Hooks::none())?;
        Ok(KeyValues {
            k: k.transpose(1, 2),
            v: v.transpose(1, 2),
        })
    }

    /// Queries, keys and values with the hooks q, k and v: one fused `c_attn` of a shared input,
    /// or per head and role the matching slice of `c_attn` applied to that head's own input.
    /// Shapes: input `[B, S, d_model]` or `[B, S, H, d_model]` ×3 → `[B, S, H, d_head]` each.
    fn project(
        &self,
        input: &AttentionInput,
        layer: usize,
        hooks: &mut Hooks,
    ) -> Result<[Tensor; 3]> {
        let h = self.n_head as i64;
        let [q, k, v] = match input {
            AttentionInput::Shared(x) => {
                let (b, s, d) = x.size3()?;
                let qkv = self.c_attn.forward(x).split(d, -1);
                [0, 1, 2].map(|i| qkv[i].view([b, s, h, d / h]))
            }
            AttentionInput::PerHead(xs) => {
                let d = self.c_attn.weight.size()[0];
                let weights = self.c_attn.weight.split(d, -1);
                let biases = self.c_attn.bias.split(d, -1);
                [0, 1, 2].map(|i| {
                    let w = weights[i].view([d, h, d / h]);
                    Tensor::einsum("bshd,dhe->bshe", &[&xs[i], &w], None::<i64>)
                        + biases[i].view([h, d / h])
                })
            }
        };
        Ok([
            hooks.apply(HookPoint::Q(layer), q)?,
            hooks.apply(HookPoint::K(layer), k)?,
            hooks.apply(HookPoint::V(layer), v)?,
        ])
    }

    /// Scaled dot-product attention of the queries `q` over `kv` with the hooks attn_scores,
    /// pattern and z: query `i` of the input (position `P+i`) sees keys `0..=P+i`; the last
    /// query alone ([`Rows::Last`]) sees every key, unmasked.
    /// Shapes: q `[B, H, Q, d_head]`, kv `[B, H, P+S, d_head]` → z `[B, Q, H, d_head]`.
    fn attend(
        &self,
        q: &Tensor,
        kv: &KeyValues,
        layer: usize,
        hooks: &mut Hooks,
        opts: &LayerOptions,
    ) -> Result<Tensor> {
        let (_, _, n_q, dh) = q.size4()?;
        let n_k = kv.k.size()[2];
        let scores = q.matmul(&kv.k.transpose(2, 3)) / (dh as f64).sqrt();
        let scores = match opts.rows {
            Rows::Last => scores,
            Rows::All | Rows::Flat(_) => {
                let p = n_k - n_q;
                let future = Tensor::ones([n_q, n_k], (Kind::Bool, q.device())).triu(p + 1);
                scores.masked_fill(&future, f64::NEG_INFINITY)
            }
        };
        let scores = hooks.apply(HookPoint::AttnScores(layer), scores)?;
        let pattern = hooks.apply(HookPoint::Pattern(layer), scores.softmax(-1, scores.kind()))?;
        let z = pattern
            .dropout(self.dropout, opts.train)
            .matmul(&kv.v)
            .transpose(1, 2);
        hooks.apply(HookPoint::Z(layer), z)
    }

    /// `c_proj` of the heads of `z` at the selected rows, with the hook result: when edited the
    /// output is `c_proj(z) + Σ_heads(edited result − result)`, so heads and rows left alone keep
    /// the c_proj value bit for bit.
    /// Shapes: z `[B, Q, H, d_head]` → `[B, Q, d_model]` (`[R, d_model]` for [`Rows::Flat`]).
    fn output(&self, z: &Tensor, layer: usize, hooks: &mut Hooks, rows: Rows) -> Result<Tensor> {
        let (b, n_q, h, dh) = z.size4()?;
        let out = self
            .c_proj
            .forward(&rows.outputs(&z.reshape([b, n_q, h * dh])));
        let result = HookPoint::Result(layer);
        if hooks.edited(result) {
            let per_head = rows.outputs(&self.per_head_result(z));
            let edited = hooks.apply(result, per_head.shallow_clone())?;
            let heads_sum = |r: &Tensor| r.sum_dim_intlist(-2, false, r.kind());
            return Ok(out + (heads_sum(&edited) - heads_sum(&per_head)));
        }
        if hooks.captured(result) {
            hooks.record(result, rows.outputs(&self.per_head_result(z)));
        }
        Ok(out)
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
