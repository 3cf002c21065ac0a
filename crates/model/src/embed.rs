//! Token and learned position embeddings (`transformer.wte`, `transformer.wpe`).

use crate::error::Result;
use crate::hooks::{HookPoint, Hooks};
use tch::nn::{self, Init};
use tch::Tensor;

/// Token embeddings `wte` (tied to the unembedding) and position embeddings `wpe`.
#[derive(Debug)]
pub struct Embed {
    /// `transformer.wte.weight` `[vocab_size, d_model]`; also the unembedding `W_U = wteᵀ`.
    pub wte: Tensor,
    /// `transformer.wpe.weight` `[n_ctx, d_model]`.
    pub wpe: Tensor,
    dropout: f64,
}

impl Embed {
    /// `vs` is the `transformer` path; weights ~ N(0, 0.02²), in the decayed group.
    pub fn new(
        vs: &nn::Path,
        vocab_size: usize,
        n_ctx: usize,
        d_model: usize,
        dropout: f64,
    ) -> Embed {
        let vs = vs.set_group(crate::DECAY_GROUP);
        let init = Init::Randn {
            mean: 0.0,
            stdev: crate::INIT_STD,
        };
        let wte = (&vs / "wte").var("weight", &[vocab_size as i64, d_model as i64], init);
        let wpe = (&vs / "wpe").var("weight", &[n_ctx as i64, d_model as i64], init);
        Embed { wte, wpe, dropout }
    }

    /// `dropout(wte[tokens] + wpe[0..T])`, the residual stream entering layer 0, with
    /// `hook_embed` and `hook_pos_embed`. Tokens must be valid (checked by the caller).
    /// Shapes: tokens `[B, T]` i64 → `[B, T, d_model]`.
    pub(crate) fn forward(
        &self,
        tokens: &Tensor,
        hooks: &mut Hooks,
        train: bool,
    ) -> Result<Tensor> {
        let t = tokens.size()[1];
        let tok = Tensor::embedding(&self.wte, tokens, -1, false, false);
        let tok = hooks.apply(HookPoint::Embed, tok)?;
        let pos = self.wpe.narrow(0, 0, t);
        let pos = if hooks.wants(HookPoint::PosEmbed) {
            hooks.apply(HookPoint::PosEmbed, pos.unsqueeze(0).expand_as(&tok))?
        } else {
            pos
        };
        Ok((tok + pos).dropout(self.dropout, train))
    }
}
