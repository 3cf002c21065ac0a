//! Runs of sampled prompts with every residual state captured ([`States`]); the corrupted inputs
//! those runs take live in [`crate::corruption`].

use crate::error::{InterpError, Result};
use crate::net::{logits_at, Net, Rows, Want};
use crate::prompt_sample::PromptSample;
use model::{Edit, HookPoint, Intervention, RunRequest};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// Activations of one run of `N` examples.
pub struct States {
    /// Residual states `0..=L`: `resid[l]` = `resid_pre[l]` (`resid[L]` = last `resid_post`),
    /// each `[N, T, d]`.
    pub resid: Vec<Tensor>,
    /// `attn_out[l]` `[N, T, d]` for `l < L` (empty unless requested).
    pub attn_out: Vec<Tensor>,
    /// `mlp_out[l]` `[N, T, d]` for `l < L` (empty unless requested).
    pub mlp_out: Vec<Tensor>,
    /// `z[l]` `[N, T, H, d_head]` for `l < L` (empty unless requested).
    pub z: Vec<Tensor>,
    /// Logits at the answer position `[N, V]`.
    pub logits: Tensor,
}

impl States {
    /// The clean run of every example of `probe` (residual states and answer logits), in chunks
    /// of at most `max_rows` rows. Run it under `tch::no_grad`.
    pub fn of_sample(net: &Net, probe: &PromptSample, max_rows: usize) -> Result<States> {
        let clean = probe.clean_tokens(net.device());
        States::compute(
            net,
            &clean,
            None,
            Want::default(),
            probe.answer_pos,
            max_rows,
        )
    }

    /// Runs `tokens` (plus `noise` added to the token embeddings) in chunks of at most
    /// `max_rows` rows and keeps every residual state and the requested activations.
    /// Run it under `tch::no_grad`. Shapes: tokens `[N, T]` i64, noise `[N, T, d]`.
    pub fn compute(
        net: &Net,
        tokens: &Tensor,
        noise: Option<&Tensor>,
        want: Want,
        answer_pos: usize,
        max_rows: usize,
    ) -> Result<States> {
        let mut parts = Vec::new();
        for rows in Rows::chunks(tokens.size()[0], max_rows as i64) {
            let mut req = RunRequest::capture(net.capture_set(want));
            req.logit_positions = logits_at(answer_pos);
            if let Some(noise) = noise {
                req.interventions.push(Intervention::new(
                    HookPoint::Embed,
                    Edit::Add(rows.of(noise)),
                ));
            }
            let out = net.gpt.run(&rows.of(tokens), &req)?;
            parts.push(States::from_cache(
                net,
                out.cache,
                out.logits.squeeze_dim(1),
                want,
            )?);
        }
        States::cat(&parts)
    }

    /// The residual states of the run of `tokens` (plus `noise` on the token embeddings) when
    /// its inputs agree with those of the run `base` before position `first`: the states there
    /// are `base`'s (causal attention), positions `first..` are computed against `base`'s keys
    /// and values ([`model::Gpt::suffix_states`]), in chunks of at most `max_rows` rows.
    /// Residual states and answer logits only. Run it under `tch::no_grad`.
    /// Shapes: tokens `[N, T]` i64, noise `[N, T, d]` (zero before `first`), 0 < first < T.
    pub fn compute_after(
        net: &Net,
        base: &States,
        tokens: &Tensor,
        noise: Option<&Tensor>,
        first: usize,
        answer_pos: usize,
        max_rows: usize,
    ) -> Result<States> {
        let (n, t) = tokens.size2()?;
        let first = first as i64;
        let l = net.n_layer();
        let mut parts = Vec::new();
        for rows in Rows::chunks(n, max_rows as i64) {
            let base = base.narrow(rows.start, rows.m);
            let prefix = (0..l)
                .map(|i| Ok(net.gpt.key_values(i, &base.resid[i].narrow(1, 0, first))?))
                .collect::<Result<Vec<_>>>()?;
            let mut embedded = net.token_embeddings(&rows.of(tokens));
            if let Some(noise) = noise {
                embedded += rows.of(noise);
            }
            let embedded = embedded + net.position_embeddings(t);
            let suffix =
                net.gpt
                    .suffix_states(0, &embedded.narrow(1, first, t - first), &prefix)?;
            let resid: Vec<Tensor> = base
                .resid
                .iter()
                .zip(&suffix)
                .map(|(b, s)| Tensor::cat(&[&b.narrow(1, 0, first), s], 1))
                .collect();
            let logits = net.readout(&resid[l].select(1, answer_pos as i64), None);
            parts.push(States {
                resid,
                attn_out: Vec::new(),
                mlp_out: Vec::new(),
                z: Vec::new(),
                logits,
            });
        }
        States::cat(&parts)
    }

    /// Picks the states out of a run's cache.
    fn from_cache(
        net: &Net,
        mut cache: BTreeMap<HookPoint, Tensor>,
        logits: Tensor,
        want: Want,
    ) -> Result<States> {
        let mut take = |hook: HookPoint| {
            cache.remove(&hook).ok_or_else(|| InterpError::BadSpec {
                what: "hook",
                value: hook.to_string(),
                reason: "the model did not return a requested activation".into(),
            })
        };
        let l = net.n_layer();
        let resid = (0..=l)
            .map(|i| take(net.resid_hook(i)))
            .collect::<Result<Vec<_>>>()?;
        let per_layer = |flag: bool,
                         make: fn(usize) -> HookPoint,
                         take: &mut dyn FnMut(HookPoint) -> Result<Tensor>|
         -> Result<Vec<Tensor>> {
            if flag {
                (0..l).map(|i| take(make(i))).collect()
            } else {
                Ok(Vec::new())
            }
        };
        let attn_out = per_layer(want.attn_out, HookPoint::AttnOut, &mut take)?;
        let mlp_out = per_layer(want.mlp_out, HookPoint::MlpOut, &mut take)?;
        let z = per_layer(want.z, HookPoint::Z, &mut take)?;
        Ok(States {
            resid,
            attn_out,
            mlp_out,
            z,
            logits,
        })
    }

    /// Concatenates chunks along the batch axis.
    fn cat(parts: &[States]) -> Result<States> {
        let Some(first) = parts.first() else {
            return Err(InterpError::BadSpec {
                what: "prompt sample",
                value: String::new(),
                reason: "no examples to run".into(),
            });
        };
        if parts.len() == 1 {
            return Ok(first.narrow(0, first.logits.size()[0]));
        }
        let cat_all = |pick: fn(&States) -> &Vec<Tensor>| -> Vec<Tensor> {
            (0..pick(first).len())
                .map(|i| Tensor::cat(&parts.iter().map(|p| &pick(p)[i]).collect::<Vec<_>>(), 0))
                .collect()
        };
        Ok(States {
            resid: cat_all(|s| &s.resid),
            attn_out: cat_all(|s| &s.attn_out),
            mlp_out: cat_all(|s| &s.mlp_out),
            z: cat_all(|s| &s.z),
            logits: Tensor::cat(&parts.iter().map(|p| &p.logits).collect::<Vec<_>>(), 0),
        })
    }

    /// The activations by hook (views, no copy): every residual state (`Net::resid_hook`) and
    /// the kept `attn_out`, `mlp_out` and `z`.
    pub fn activations(&self, net: &Net) -> BTreeMap<HookPoint, Tensor> {
        let mut all: BTreeMap<HookPoint, Tensor> = self
            .resid
            .iter()
            .enumerate()
            .map(|(l, t)| (net.resid_hook(l), t.shallow_clone()))
            .collect();
        let mut add = |tensors: &[Tensor], hook: fn(usize) -> HookPoint| {
            for (l, t) in tensors.iter().enumerate() {
                all.insert(hook(l), t.shallow_clone());
            }
        };
        add(&self.attn_out, HookPoint::AttnOut);
        add(&self.mlp_out, HookPoint::MlpOut);
        add(&self.z, HookPoint::Z);
        all
    }

    /// Rows `start..start + len` (views, no copy).
    pub fn narrow(&self, start: i64, len: i64) -> States {
        let nar = |v: &Vec<Tensor>| v.iter().map(|t| t.narrow(0, start, len)).collect();
        States {
            resid: nar(&self.resid),
            attn_out: nar(&self.attn_out),
            mlp_out: nar(&self.mlp_out),
            z: nar(&self.z),
            logits: self.logits.narrow(0, start, len),
        }
    }
}

/// `[N, T]` i64 tensor of token rows.
pub fn tokens_tensor<'b>(rows: impl Iterator<Item = &'b [u32]>, device: tch::Device) -> Tensor {
    let rows: Vec<Tensor> = rows
        .map(|r| Tensor::from_slice(&r.iter().map(|&t| i64::from(t)).collect::<Vec<_>>()))
        .collect();
    Tensor::stack(&rows, 0).to_device(device)
}

/// The best non-gold token of each row: the "corrupted-run answer" of the logit difference.
/// Shapes: logits `[N, V]`, gold `[N]` → `[N]` i64.
pub fn alt_tokens(logits: &Tensor, gold: &Tensor) -> Tensor {
    logits
        .to_kind(Kind::Float)
        .scatter_value(1, &gold.unsqueeze(1), f64::NEG_INFINITY)
        .argmax(1, false)
}
