//! The model as the analyses see it: a thin view over `model::Gpt` with the sizes, the final
//! LayerNorm and the unembedding. Forward passes go through `net.gpt` (`run`, `run_from`,
//! `run_suffix`, …) directly.

use crate::error::{InterpError, Result};
use model::{Gpt, GptConfig, HookPoint, LogitPositions};
use std::collections::BTreeSet;
use tch::{Kind, Tensor};

/// How the logit lens (and the cached-scale readout of patching metrics) applies the final
/// LayerNorm to an intermediate residual state.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum LnMode {
    /// `W_U · LN_final(h)`: ln_f's mean and variance recomputed on `h`, its learned weight and bias
    /// applied (the paper, tuned-lens, TransformerLens). The default.
    #[default]
    Recompute,
    /// `W_U · ((h − mean(h)) / s · w + b)` with `s` the cached ln_f scale of the final residual
    /// stream at the same position and example (TransformerLens `apply_ln_to_stack`). Linear in
    /// `h`: right for decompositions and attribution, wrong for a lens of early layers.
    CachedScale,
}

impl std::fmt::Display for LnMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LnMode::Recompute => "recompute",
            LnMode::CachedScale => "cached-scale",
        })
    }
}

impl std::str::FromStr for LnMode {
    type Err = InterpError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "recompute" => Ok(LnMode::Recompute),
            "cached-scale" | "cached" => Ok(LnMode::CachedScale),
            _ => Err(InterpError::spec(
                "LN mode",
                s,
                "expected recompute or cached-scale",
            )),
        }
    }
}

/// A model under analysis.
pub struct Net<'a> {
    pub gpt: &'a Gpt,
    pub config: GptConfig,
    /// Tied unembedding `wte` `[V, d]`.
    wte: Tensor,
    /// ln_f weight and bias `[d]`.
    ln_w: Tensor,
    ln_b: Tensor,
}

impl<'a> Net<'a> {
    /// Wraps a model (its config is read from the model).
    pub fn new(gpt: &'a Gpt) -> Net<'a> {
        let config = gpt.config().clone();
        Net {
            gpt,
            wte: gpt.embed.wte.shallow_clone(),
            ln_w: gpt.ln_f.weight.shallow_clone(),
            ln_b: gpt.ln_f.bias.shallow_clone(),
            config,
        }
    }

    /// Number of layers `L` (schedule entries); lens/patch layers are `0..=L`.
    pub fn n_layer(&self) -> usize {
        self.config.n_layer()
    }

    pub fn d_model(&self) -> i64 {
        self.config.d_model as i64
    }

    pub fn n_head(&self) -> usize {
        self.config.n_head
    }

    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    pub fn device(&self) -> tch::Device {
        self.wte.device()
    }

    /// Token embeddings (`hook_embed`) of token ids. Shapes: ids `[...]` → `[..., d]`.
    pub fn token_embeddings(&self, ids: &Tensor) -> Tensor {
        self.wte.index_select(0, &ids.view(-1)).view(
            ids.size()
                .into_iter()
                .chain([self.d_model()])
                .collect::<Vec<_>>()
                .as_slice(),
        )
    }

    /// Learned position embeddings of positions `0..t`. Shapes: → `[t, d]`.
    pub fn position_embeddings(&self, t: i64) -> Tensor {
        self.gpt.embed.wpe.narrow(0, 0, t)
    }

    /// The hook holding residual state `layer` (0 ≤ layer ≤ L): `resid_pre[layer]`, or the last
    /// block's `resid_post` for `layer = L`.
    pub fn resid_hook(&self, layer: usize) -> HookPoint {
        let l = self.n_layer();
        if layer < l {
            HookPoint::ResidPre(layer)
        } else {
            HookPoint::ResidPost(l - 1)
        }
    }

    /// ln_f's scale ([`model::layer_norm_scale`], in f32) of residual states.
    /// Shapes: `[..., d]` → `[..., 1]`.
    pub fn ln_scale(&self, x: &Tensor) -> Tensor {
        model::layer_norm_scale(&x.to_kind(Kind::Float), self.config.ln_eps)
    }

    /// Logits of residual states through ln_f and the tied unembedding.
    /// `scale = None`: recompute mode; `Some(s)`: cached-scale mode with `s` `[..., 1]`.
    /// Shapes: x `[..., d]` → `[..., V]`.
    pub fn readout(&self, x: &Tensor, scale: Option<&Tensor>) -> Tensor {
        let normed = match scale {
            None => x.layer_norm(
                [self.d_model()],
                Some(&self.ln_w),
                Some(&self.ln_b),
                self.config.ln_eps,
                false,
            ),
            Some(s) => (x - x.mean_dim(-1, true, Kind::Float)) / s * &self.ln_w + &self.ln_b,
        };
        normed.matmul(&self.wte.tr())
    }

    /// Checks `layer ≤ L`.
    pub fn check_layer(&self, layer: usize) -> Result<()> {
        if layer > self.n_layer() {
            return Err(InterpError::LayerOutOfRange {
                layer,
                max: self.n_layer(),
            });
        }
        Ok(())
    }

    /// The requested layers, each checked against the model, or every layer `0..=L` when none
    /// are requested.
    pub fn layers_or_all(&self, layers: Option<&[usize]>) -> Result<Vec<usize>> {
        match layers {
            Some(list) => {
                for &l in list {
                    self.check_layer(l)?;
                }
                Ok(list.to_vec())
            }
            None => Ok((0..=self.n_layer()).collect()),
        }
    }

    /// The capture set of every residual state `0..=L` plus the requested per-layer hooks.
    pub fn capture_set(&self, want: Want) -> BTreeSet<HookPoint> {
        let l = self.n_layer();
        let mut set: BTreeSet<HookPoint> = (0..=l).map(|i| self.resid_hook(i)).collect();
        for i in 0..l {
            if want.attn_out {
                set.insert(HookPoint::AttnOut(i));
            }
            if want.mlp_out {
                set.insert(HookPoint::MlpOut(i));
            }
            if want.z {
                set.insert(HookPoint::Z(i));
            }
        }
        set
    }
}

/// Which per-layer activations besides the residual stream a run must keep.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Want {
    pub attn_out: bool,
    pub mlp_out: bool,
    pub z: bool,
}

/// Logits at one position for every row.
pub fn logits_at(pos: usize) -> LogitPositions {
    LogitPositions::At(vec![pos as i64])
}

/// A chunk of prompts: rows `start..start + m`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rows {
    pub start: i64,
    pub m: i64,
}

impl Rows {
    /// The chunks of `n` rows, at most `size` (≥ 1) each.
    pub(crate) fn chunks(n: i64, size: i64) -> impl Iterator<Item = Rows> {
        let size = size.max(1);
        (0..n).step_by(size as usize).map(move |start| Rows {
            start,
            m: size.min(n - start),
        })
    }

    /// The rows as indices into a per-row slice.
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.m) as usize
    }

    /// `t`'s rows of this chunk (a view).
    pub(crate) fn of(&self, t: &Tensor) -> Tensor {
        t.narrow(0, self.start, self.m)
    }
}
