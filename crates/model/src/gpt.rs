//! The GPT-2 decoder: embeddings, the block schedule, the final LayerNorm and the tied
//! unembedding. Every entry point runs the one pass over the blocks (`Gpt::layers`): hooked
//! ([`Gpt::run`], [`Gpt::run_from`]), plain ([`Gpt::forward_t`], [`Gpt::hidden_t`]), or with a
//! fast path of `Pass`: the last layer at the loss rows only ([`Gpt::hidden_at`]), or positions
//! after a prefix given by its keys and values ([`Gpt::run_suffix`], [`Gpt::suffix_states`]).

use crate::attention::{KeyValues, LayerOptions, Rows};
use crate::block::Block;
use crate::config::GptConfig;
use crate::embed::Embed;
use crate::error::{ModelError, Result};
use crate::hooks::{HookPoint, Hooks, LogitPositions, RunOutput, RunRequest};
use crate::layer_norm::LayerNorm;
use std::ops::Range;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// A pre-LayerNorm GPT-2 decoder with HF parameter names under `transformer.`.
#[derive(Debug)]
pub struct Gpt {
    cfg: GptConfig,
    /// `transformer.wte`, `transformer.wpe`.
    pub embed: Embed,
    /// The distinct parameter blocks `transformer.h.{0..n_blocks}` (index = block id, not layer).
    pub blocks: Vec<Block>,
    /// `transformer.ln_f`.
    pub ln_f: LayerNorm,
    device: Device,
}

/// How a pass runs its layers: the plain pass, or one of its fast paths.
struct Pass<'a> {
    /// Dropout on (training mode).
    train: bool,
    /// Keys and values of the positions before the input, one entry per layer of the pass
    /// (empty: the input starts at position 0). Each `[B, H, P, d_head]`.
    prefix: &'a [KeyValues],
    /// The rows the last layer of the pass outputs; earlier layers output every row.
    last_rows: Rows<'a>,
}

impl Pass<'_> {
    /// Every layer on every row, from position 0.
    fn plain(train: bool) -> Pass<'static> {
        Pass {
            train,
            prefix: &[],
            last_rows: Rows::All,
        }
    }
}

impl Gpt {
    /// Builds the model under `vs` (normally the VarStore root; names `transformer.wte.weight`,
    /// `transformer.h.{i}.attn.c_attn.weight`, ...) with GPT-2 initialisation: weights
    /// N(0, 0.02²), every c_proj weight N(0, (0.02/sqrt(2·n_blocks))²), biases 0, LayerNorm 1/0.
    /// Weights go into parameter group [`crate::DECAY_GROUP`], LayerNorm parameters and biases into
    /// [`crate::NO_DECAY_GROUP`].
    pub fn new(vs: &nn::Path, cfg: &GptConfig) -> Result<Gpt> {
        cfg.validate()?;
        let root = vs / "transformer";
        let embed = Embed::new(&root, cfg.vocab_size, cfg.n_ctx, cfg.d_model, cfg.dropout);
        let blocks = (0..cfg.n_blocks)
            .map(|i| Block::new(&(&root / "h" / i), cfg))
            .collect();
        let ln_f = LayerNorm::new(&(&root / "ln_f"), cfg.d_model, cfg.ln_eps);
        Ok(Gpt {
            cfg: cfg.clone(),
            embed,
            blocks,
            ln_f,
            device: vs.device(),
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The parameter block applied at layer `layer` (schedule position).
    pub fn block_at(&self, layer: usize) -> Option<&Block> {
        self.cfg
            .schedule
            .get(layer)
            .and_then(|&b| self.blocks.get(b))
    }

    /// Checks a token batch: shape `[B, T]` with B, T ≥ 1, T ≤ n_ctx, integer kind, every id in
    /// `0..vocab_size`. Reads the minimum and maximum id back to the host.
    pub fn check_tokens(&self, tokens: &Tensor) -> Result<()> {
        let size = tokens.size();
        if size.len() != 2 {
            return Err(ModelError::Input(format!(
                "tokens must have shape [batch, pos], got {size:?}"
            )));
        }
        if size[0] == 0 || size[1] == 0 {
            return Err(ModelError::Input(format!(
                "tokens of shape {size:?} are empty"
            )));
        }
        if size[1] as usize > self.cfg.n_ctx {
            return Err(ModelError::SequenceTooLong {
                len: size[1] as usize,
                n_ctx: self.cfg.n_ctx,
            });
        }
        if !matches!(
            tokens.kind(),
            Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
        ) {
            return Err(ModelError::Input(format!(
                "token ids must be integers, got {:?}",
                tokens.kind()
            )));
        }
        let min = tokens.f_min()?.f_int64_value(&[])?;
        let max = tokens.f_max()?.f_int64_value(&[])?;
        for id in [min, max] {
            if id < 0 || id as u64 >= self.cfg.vocab_size as u64 {
                return Err(ModelError::TokenOutOfRange {
                    id,
                    vocab_size: self.cfg.vocab_size,
                });
            }
        }
        Ok(())
    }

    /// Logits of the plain forward pass (no hooks, no checks; dropout when `train`).
    /// Panics with the libtorch message on invalid tokens: use [`Gpt::f_forward_t`] or
    /// [`Gpt::run`] for unchecked input.
    /// Shapes: tokens `[B, T]` i64 → `[B, T, vocab_size]`.
    pub fn forward_t(&self, tokens: &Tensor, train: bool) -> Tensor {
        self.unembed(&self.hidden_t(tokens, train))
    }

    /// [`Gpt::forward_t`] after [`Gpt::check_tokens`]; errors instead of panics.
    pub fn f_forward_t(&self, tokens: &Tensor, train: bool) -> Result<Tensor> {
        self.check_tokens(tokens)?;
        Ok(self.unembed(&self.hidden(tokens, train)?))
    }

    /// The residual stream after the last layer, before `ln_f` (no hooks, no checks).
    /// Panics with the libtorch message on invalid tokens: use [`Gpt::f_forward_t`] or
    /// [`Gpt::run`] for unchecked input. Shapes: tokens `[B, T]` i64 → `[B, T, d_model]`.
    pub fn hidden_t(&self, tokens: &Tensor, train: bool) -> Tensor {
        match self.hidden(tokens, train) {
            Ok(x) => x,
            Err(err) => panic!("Gpt::hidden_t: {err}"),
        }
    }

    /// The plain pass without hooks. Shapes: tokens `[B, T]` → `[B, T, d_model]`.
    fn hidden(&self, tokens: &Tensor, train: bool) -> Result<Tensor> {
        let tokens = tokens.to_device(self.device).to_kind(Kind::Int64);
        let mut hooks = Hooks::none();
        let x = self.embed.forward(&tokens, &mut hooks, train)?;
        self.layers(0..self.cfg.n_layer(), x, &mut hooks, &Pass::plain(train))
    }

    /// The residual stream after the last layer at `positions` only, before `ln_f` (no hooks, no
    /// checks): the plain pass whose last layer outputs only the given rows (its attention still
    /// runs on every position) — what a loss on those positions needs. Equals
    /// `hidden_t(tokens).gather(1, positions)`.
    /// Shapes: tokens `[B, T]` i64, positions `[B, K]` i64 in `0..T` → `[B, K, d_model]`.
    pub fn hidden_at(&self, tokens: &Tensor, positions: &Tensor, train: bool) -> Result<Tensor> {
        if self.cfg.schedule.is_empty() {
            return Err(ModelError::Config("the schedule is empty".into()));
        }
        let tokens = tokens.to_device(self.device).to_kind(Kind::Int64);
        let positions = positions.to_device(self.device).to_kind(Kind::Int64);
        let (b, t) = tokens.size2()?;
        let first = Tensor::arange_start_step(0, b * t, t, (Kind::Int64, self.device));
        let rows = (&positions + first.unsqueeze(1)).view([-1]);
        let pass = Pass {
            train,
            prefix: &[],
            last_rows: Rows::Flat(&rows),
        };
        let mut hooks = Hooks::none();
        let x = self.embed.forward(&tokens, &mut hooks, train)?;
        let x = self.layers(0..self.cfg.n_layer(), x, &mut hooks, &pass)?;
        Ok(x.view([b, positions.size()[1], -1]))
    }

    /// The final LayerNorm `ln_f` (recomputed on `resid`, as the logit lens does).
    /// Shapes: resid `[..., d_model]` → `[..., d_model]`.
    pub fn ln_final(&self, resid: &Tensor) -> Tensor {
        self.ln_f.forward(resid)
    }

    /// `ln_f` then the tied unembedding `· wteᵀ` (no bias).
    /// Shapes: resid `[..., d_model]` → `[..., vocab_size]`.
    pub fn unembed(&self, resid: &Tensor) -> Tensor {
        self.ln_final(resid).linear::<Tensor>(&self.embed.wte, None)
    }

    /// The hooked forward pass: captures `req.capture`, applies `req.interventions`, computes
    /// logits at `req.logit_positions`. Checks the tokens (range, length) and the request (every
    /// hook exists in this model) and returns an error instead of panicking.
    /// Shapes: tokens `[B, T]` → logits `[B, T, vocab_size]`; cache as in [`crate::hooks`].
    pub fn run(&self, tokens: &Tensor, req: &RunRequest) -> Result<RunOutput> {
        self.check_tokens(tokens)?;
        let tokens = tokens.to_device(self.device).to_kind(Kind::Int64);
        let (b, t) = tokens.size2()?;
        self.check_request(req, None, b, t)?;
        let mut hooks = Hooks::new(req);
        let x = self.embed.forward(&tokens, &mut hooks, req.train)?;
        self.run_layers(0..self.cfg.n_layer(), x, hooks, req)
    }

    /// The hooked forward pass started at layer `layer` from `resid_pre` (the residual stream
    /// entering that layer, e.g. a cached `blocks.{layer}.hook_resid_pre`, possibly patched).
    /// `layer = n_layer` runs only `ln_f` and the unembedding. Hooks before `layer` cannot be
    /// captured or edited. The `blocks.{layer}.hook_resid_pre` hook applies to `resid_pre`.
    /// Shapes: resid_pre `[B, T, d_model]` → logits `[B, T, vocab_size]`.
    pub fn run_from(
        &self,
        layer: usize,
        resid_pre: &Tensor,
        req: &RunRequest,
    ) -> Result<RunOutput> {
        let n_layer = self.cfg.n_layer();
        if layer > n_layer {
            return Err(ModelError::Input(format!(
                "run_from layer {layer} is beyond the {n_layer} layers"
            )));
        }
        let (b, t) = self.check_stream("resid_pre", resid_pre)?;
        self.check_request(req, Some(layer), b, t)?;
        let x = resid_pre
            .to_device(self.device)
            .to_kind(self.embed.wte.kind());
        self.run_layers(layer..n_layer, x, Hooks::new(req), req)
    }

    /// The hooked layers `range` from `x`, then `ln_f` and the logits of `req`.
    /// Shapes: x `[B, T, d_model]` → logits `[B, T, vocab_size]` (see [`LogitPositions`]).
    fn run_layers(
        &self,
        range: Range<usize>,
        x: Tensor,
        mut hooks: Hooks,
        req: &RunRequest,
    ) -> Result<RunOutput> {
        let x = self.layers(range, x, &mut hooks, &Pass::plain(req.train))?;
        let logits = self.logits(&x, &mut hooks, &req.logit_positions)?;
        Ok(RunOutput {
            logits,
            cache: hooks.cache,
        })
    }

    /// Checks a residual stream given as input: floating point, shape `[B, T, d_model]` with
    /// B, T ≥ 1 and T ≤ n_ctx; returns `(B, T)`. `name` names it in the error.
    fn check_stream(&self, name: &str, x: &Tensor) -> Result<(i64, i64)> {
        let size = x.size();
        if size.len() != 3 || size[2] != self.cfg.d_model as i64 || size[0] == 0 || size[1] == 0 {
            return Err(ModelError::Input(format!(
                "{name} must have shape [batch, pos, {}], got {size:?}",
                self.cfg.d_model
            )));
        }
        if size[1] as usize > self.cfg.n_ctx {
            return Err(ModelError::SequenceTooLong {
                len: size[1] as usize,
                n_ctx: self.cfg.n_ctx,
            });
        }
        if !x.is_floating_point() {
            return Err(ModelError::Input(format!(
                "{name} must be floating point, got {:?}",
                x.kind()
            )));
        }
        Ok((size[0], size[1]))
    }

    /// Keys and values of layer `layer`'s attention for a run whose residual stream entering that
    /// layer is `resid_pre`: what [`Gpt::run_suffix`] needs of the positions a patch leaves alone.
    /// Shapes: resid_pre `[B, T, d_model]` → `[B, H, T, d_head]` each.
    pub fn key_values(&self, layer: usize, resid_pre: &Tensor) -> Result<KeyValues> {
        let block = self.block_at(layer).ok_or_else(|| {
            ModelError::Input(format!(
                "key_values: layer {layer} is beyond the {} layers",
                self.cfg.n_layer()
            ))
        })?;
        block.key_values(resid_pre)
    }

    /// Continues a base run from layer `layer` when its residual stream differs from the base run
    /// only at positions `P..` (causal attention leaves every earlier state unchanged, at every
    /// later layer): `suffix` is `resid_pre[layer]` at positions `P..P+S`, `prefix[i]` the base
    /// run's keys and values of layer `layer + i` at positions `0..P` ([`Gpt::key_values`]).
    /// Returns the final residual state (before `ln_f`) at the last position `P+S−1`; the last
    /// layer runs that row's query only. No hooks, no dropout. Equals `run_from(layer, states)` at
    /// that position (its `resid_post` of the last layer).
    /// Shapes: suffix `[B, S, d_model]`, prefix `n_layer − layer` entries `[B, H, P, d_head]`
    /// → `[B, d_model]`.
    pub fn run_suffix(
        &self,
        layer: usize,
        suffix: &Tensor,
        prefix: &[KeyValues],
    ) -> Result<Tensor> {
        self.check_suffix(layer, suffix, prefix)?;
        let pass = Pass {
            train: false,
            prefix,
            last_rows: Rows::Last,
        };
        let x = suffix.shallow_clone();
        let range = layer..self.cfg.n_layer();
        Ok(self
            .layers(range, x, &mut Hooks::none(), &pass)?
            .select(1, -1))
    }

    /// The residual stream at positions `P..P+S` of a run that agrees with a base run before `P`,
    /// entering every layer from `layer` and after the last: as [`Gpt::run_suffix`], but every
    /// layer on every suffix position; the states entering the layers are the suffix pass's
    /// `resid_pre` hooks. `states[0]` is `suffix`, `states[i]` enters layer `layer + i`, the last
    /// is the final state (before `ln_f`). No dropout.
    /// Shapes: suffix `[B, S, d_model]`, prefix `n_layer − layer` entries `[B, H, P, d_head]` →
    /// `n_layer − layer + 1` tensors `[B, S, d_model]`.
    pub fn suffix_states(
        &self,
        layer: usize,
        suffix: &Tensor,
        prefix: &[KeyValues],
    ) -> Result<Vec<Tensor>> {
        self.check_suffix(layer, suffix, prefix)?;
        let range = layer..self.cfg.n_layer();
        let req = RunRequest::capture(range.clone().map(HookPoint::ResidPre));
        let mut hooks = Hooks::new(&req);
        let pass = Pass {
            train: false,
            prefix,
            last_rows: Rows::All,
        };
        let last = self.layers(range, suffix.shallow_clone(), &mut hooks, &pass)?;
        // The cache holds only `resid_pre` hooks, ordered by layer.
        Ok(hooks.cache.into_values().chain([last]).collect())
    }

    /// Checks the input of a suffix run from `layer` (see [`Gpt::run_suffix`]): one prefix entry
    /// per layer from `layer`, keys of the suffix's batch and width, `P + S ≤ n_ctx`.
    fn check_suffix(&self, layer: usize, suffix: &Tensor, prefix: &[KeyValues]) -> Result<()> {
        let n_layer = self.cfg.n_layer();
        if layer > n_layer || prefix.len() != n_layer - layer {
            return Err(ModelError::Input(format!(
                "a suffix run from layer {layer} of {n_layer} needs {} prefix entries, got {}",
                n_layer.saturating_sub(layer),
                prefix.len()
            )));
        }
        let (b, s) = self.check_stream("suffix", suffix)?;
        for (kv, l) in prefix.iter().zip(layer..n_layer) {
            let (pb, ph, p, pd) = kv.k.size4()?;
            if pb != b || ph * pd != self.cfg.d_model as i64 || p + s > self.cfg.n_ctx as i64 {
                return Err(ModelError::Input(format!(
                    "prefix keys of layer {l} have shape {:?} for a suffix of shape {:?}",
                    kv.k.size(),
                    suffix.size()
                )));
            }
        }
        Ok(())
    }

    /// The one pass over layers `range` (schedule positions, within `0..n_layer`) from `x`, the
    /// residual stream entering the first; `pass` picks the fast paths.
    /// Shapes: x `[B, S, d_model]` → the last layer's output (see [`Pass::last_rows`]).
    fn layers(
        &self,
        range: Range<usize>,
        mut x: Tensor,
        hooks: &mut Hooks,
        pass: &Pass,
    ) -> Result<Tensor> {
        for (i, layer) in range.clone().enumerate() {
            let opts = LayerOptions {
                prefix: pass.prefix.get(i),
                rows: if layer + 1 == range.end {
                    pass.last_rows
                } else {
                    Rows::All
                },
                train: pass.train,
            };
            x = self.blocks[self.cfg.schedule[layer]].forward(x, layer, hooks, &opts)?;
        }
        Ok(x)
    }

    /// `ln_f` (with `ln_final.hook_scale`) and the unembedding at the requested positions.
    fn logits(&self, x: &Tensor, hooks: &mut Hooks, positions: &LogitPositions) -> Result<Tensor> {
        let normed = self
            .ln_f
            .forward_hooked(x, HookPoint::LnFinalScale, hooks)?;
        let selected = match positions {
            LogitPositions::All => normed,
            LogitPositions::At(p) => {
                normed.index_select(1, &Tensor::from_slice(p).to_device(self.device))
            }
            LogitPositions::PerRow(p) => {
                let rows = Tensor::arange(p.len() as i64, (Kind::Int64, self.device));
                let pos = Tensor::from_slice(p).to_device(self.device);
                normed.index(&[Some(rows), Some(pos)]).unsqueeze(1)
            }
        };
        Ok(selected.linear::<Tensor>(&self.embed.wte, None))
    }

    /// Checks that every captured or edited hook exists in this model and is reached by a run
    /// starting at `start` (`None` = from the tokens), and that the logit positions fit `[b, t]`.
    fn check_request(&self, req: &RunRequest, start: Option<usize>, b: i64, t: i64) -> Result<()> {
        let n_layer = self.cfg.n_layer();
        let hooks = req
            .capture
            .iter()
            .copied()
            .chain(req.interventions.iter().map(|iv| iv.hook));
        for hook in hooks {
            match (hook.layer(), start) {
                (Some(l), _) if l >= n_layer => {
                    return Err(ModelError::hook(
                        hook,
                        format!("the model has only {n_layer} layers"),
                    ));
                }
                (Some(l), Some(s)) if l < s => {
                    return Err(ModelError::hook(
                        hook,
                        format!("not computed by a run that starts at layer {s}"),
                    ));
                }
                (None, Some(s)) if hook != HookPoint::LnFinalScale => {
                    return Err(ModelError::hook(
                        hook,
                        format!("not computed by a run that starts at layer {s}"),
                    ));
                }
                _ => {}
            }
        }
        for iv in &req.interventions {
            if iv.heads.is_some() && !iv.hook.is_per_head() {
                return Err(ModelError::hook(
                    iv.hook,
                    "heads can only be selected on per-head hooks",
                ));
            }
        }
        let bad = |what: String| Err(ModelError::Input(format!("logit positions: {what}")));
        let in_range = |p: &[i64]| p.iter().find(|&&p| p < 0 || p >= t).copied();
        match &req.logit_positions {
            LogitPositions::All => Ok(()),
            LogitPositions::At(p) => match in_range(p) {
                Some(p) => bad(format!("position {p} is out of range 0..{t}")),
                None => Ok(()),
            },
            LogitPositions::PerRow(p) if p.len() as i64 != b => bad(format!(
                "{} positions given for a batch of {b} rows",
                p.len()
            )),
            LogitPositions::PerRow(p) => match in_range(p) {
                Some(p) => bad(format!("position {p} is out of range 0..{t}")),
                None => Ok(()),
            },
        }
    }
}

impl nn::ModuleT for Gpt {
    /// Shapes: tokens `[B, T]` → logits `[B, T, vocab_size]`.
    fn forward_t(&self, tokens: &Tensor, train: bool) -> Tensor {
        Gpt::forward_t(self, tokens, train)
    }
}

/// True for parameters that get weight decay: every weight except LayerNorm weights (the embeddings
/// `wte`/`wpe` are decayed, as in the paper's training script); no bias.
pub fn is_decayed(name: &str) -> bool {
    name.ends_with(".weight") && !name.split('.').any(|part| part.starts_with("ln_"))
}

/// Names of the decayed parameters of `vs` (see [`is_decayed`]), sorted.
pub fn decayed_param_names(vs: &nn::VarStore) -> Vec<String> {
    let mut names: Vec<String> = vs
        .variables()
        .into_keys()
        .filter(|n| is_decayed(n))
        .collect();
    names.sort();
    names
}
