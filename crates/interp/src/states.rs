//! Runs of probe examples with every residual state captured, and the clean/corrupted inputs of
//! each corruption.

use crate::error::{InterpError, Result};
use crate::net::{logits_at, Net, Want};
use crate::probe::{noise_values, ProbeSet};
use model::{Edit, HookPoint, Intervention, RunRequest};
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
    pub fn of_probe(net: &Net, probe: &ProbeSet, max_rows: usize) -> Result<States> {
        let rows = probe.examples.iter().map(|e| e.tokens.as_slice());
        let clean = tokens_tensor(rows, net.device());
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
        let n = tokens.size()[0];
        let step = max_rows.max(1) as i64;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < n {
            let m = step.min(n - start);
            let mut req = RunRequest::capture(net.capture_set(want));
            req.logit_positions = logits_at(answer_pos);
            if let Some(noise) = noise {
                req.interventions.push(Intervention::new(
                    HookPoint::Embed,
                    Edit::Add(noise.narrow(0, start, m)),
                ));
            }
            let out = net.run(&tokens.narrow(0, start, m), &req)?;
            parts.push(States::from_cache(
                net,
                out.cache,
                out.logits.squeeze_dim(1),
                want,
            )?);
            start += m;
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
        let step = max_rows.max(1) as i64;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < n {
            let m = step.min(n - start);
            let base = base.narrow(start, m);
            let prefix = (0..l)
                .map(|i| net.key_values(i, &base.resid[i].narrow(1, 0, first)))
                .collect::<Result<Vec<_>>>()?;
            let mut embedded = net.token_embeddings(&tokens.narrow(0, start, m));
            if let Some(noise) = noise {
                embedded += noise.narrow(0, start, m);
            }
            let embedded = embedded + net.position_embeddings(t);
            let suffix = net.suffix_states(&embedded.narrow(1, first, t - first), &prefix)?;
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
            start += m;
        }
        States::cat(&parts)
    }

    /// Picks the states out of a run's cache.
    fn from_cache(
        net: &Net,
        mut cache: std::collections::BTreeMap<HookPoint, Tensor>,
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
                what: "probe set",
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

/// The clean run of a corruption's examples, kept for the next corruption: corruptions that
/// admit the same examples have the same clean inputs, so their clean run is computed once.
#[derive(Default)]
pub(crate) struct CleanRuns {
    examples: Vec<usize>,
    states: Option<States>,
}

impl CleanRuns {
    /// The clean run of `ci`'s examples (views of the kept one when the examples are the same).
    pub fn get(
        &mut self,
        net: &Net,
        ci: &CorruptionInputs,
        want: Want,
        answer_pos: usize,
        max_rows: usize,
    ) -> Result<States> {
        let states = match self.states.take() {
            Some(states) if self.examples == ci.examples => states,
            _ => States::compute(net, &ci.clean, None, want, answer_pos, max_rows)?,
        };
        self.examples.clone_from(&ci.examples);
        let view = states.narrow(0, ci.examples.len() as i64);
        self.states = Some(states);
        Ok(view)
    }
}

/// The inputs of one corruption: the examples that admit it, their clean and corrupted inputs.
pub struct CorruptionInputs {
    /// Corruption name (`r1`, `noise:h`, …).
    pub name: String,
    /// Indices into the probe set's examples.
    pub examples: Vec<usize>,
    /// Positions the corruption changes (the paper's patched positions).
    pub positions: Vec<usize>,
    /// Clean inputs `[n, T]` i64.
    pub clean: Tensor,
    /// Corrupted inputs `[n, T]` i64.
    pub corrupted: Tensor,
    /// Noise added to the corrupted run's token embeddings `[n, T, d]` (noise corruptions).
    pub noise: Option<Tensor>,
    /// Gold answers `[n]` i64.
    pub gold: Tensor,
}

/// `[N, T]` i64 tensor of token rows.
pub fn tokens_tensor<'b>(rows: impl Iterator<Item = &'b [u32]>, device: tch::Device) -> Tensor {
    let rows: Vec<Tensor> = rows
        .map(|r| Tensor::from_slice(&r.iter().map(|&t| i64::from(t)).collect::<Vec<_>>()))
        .collect();
    Tensor::stack(&rows, 0).to_device(device)
}

/// ROME's noise level ν = 3 × the standard deviation (unbiased) of the token embeddings of all
/// clean input tokens of the probe set.
pub fn noise_scale(net: &Net, probe: &ProbeSet) -> f64 {
    let ids: Vec<i64> = probe
        .examples
        .iter()
        .flat_map(|e| e.tokens.iter().map(|&t| i64::from(t)))
        .collect();
    let ids = Tensor::from_slice(&ids).to_device(net.device());
    let emb = tch::no_grad(|| net.token_embeddings(&ids));
    3.0 * emb.to_kind(Kind::Double).std(true).double_value(&[])
}

/// What a pass over every corruption of a probe set collects: per corruption one baseline and its
/// cells, and ν when any corruption added noise.
pub(crate) struct PerCorruption<B, C> {
    pub baselines: Vec<B>,
    pub cells: Vec<C>,
    pub noise_scale: Option<f64>,
}

/// Gathers the inputs of every corruption of the probe set (ν = `nu` for noise corruptions) and
/// runs `per` on each, in order.
pub(crate) fn for_each_corruption<B, C>(
    net: &Net,
    probe: &ProbeSet,
    nu: f64,
    mut per: impl FnMut(&CorruptionInputs) -> Result<(B, Vec<C>)>,
) -> Result<PerCorruption<B, C>> {
    let mut out = PerCorruption {
        baselines: Vec::new(),
        cells: Vec::new(),
        noise_scale: None,
    };
    for spec in &probe.corruptions {
        let name = spec.to_string();
        let ci = CorruptionInputs::new(net, probe, &name, nu)?;
        if ci.noise.is_some() {
            out.noise_scale = Some(nu);
        }
        let (baseline, cells) = per(&ci)?;
        out.baselines.push(baseline);
        out.cells.extend(cells);
    }
    Ok(out)
}

impl CorruptionInputs {
    /// Gathers the inputs of corruption `name`; `noise_scale` is ν for noise corruptions.
    pub fn new(
        net: &Net,
        probe: &ProbeSet,
        name: &str,
        noise_scale: f64,
    ) -> Result<CorruptionInputs> {
        let examples = admitted_examples(probe, name);
        let positions = shared_positions(probe, &examples, name)?;
        let device = net.device();
        let clean = tokens_tensor(
            examples
                .iter()
                .map(|&i| probe.examples[i].tokens.as_slice()),
            device,
        );
        let corrupted = tokens_tensor(
            examples
                .iter()
                .map(|&i| probe.examples[i].corruptions[name].tokens.as_slice()),
            device,
        );
        let noise = examples
            .iter()
            .map(|&i| probe.examples[i].corruptions[name].noise_seed)
            .collect::<Option<Vec<u64>>>()
            .map(|seeds| {
                let size = [probe.seq_len(), net.d_model() as usize];
                embedding_noise(&seeds, &positions, size, noise_scale).to_device(device)
            });
        let gold = Tensor::from_slice(
            &examples
                .iter()
                .map(|&i| i64::from(probe.examples[i].gold))
                .collect::<Vec<_>>(),
        )
        .to_device(device);
        Ok(CorruptionInputs {
            name: name.to_string(),
            examples,
            positions,
            clean,
            corrupted,
            noise,
            gold,
        })
    }

    /// The corrupted run. When only residual states are wanted and the corrupted inputs agree
    /// with the clean ones before the first corrupted position, only the positions from there on
    /// are computed ([`States::compute_after`] the `clean` run); otherwise a full run.
    pub fn corrupted_states(
        &self,
        net: &Net,
        clean: &States,
        want: Want,
        answer_pos: usize,
        max_rows: usize,
    ) -> Result<States> {
        let first = self.positions.iter().copied().min().unwrap_or(0);
        let agree = first > 0
            && want == Want::default()
            && self
                .corrupted
                .narrow(1, 0, first as i64)
                .equal(&self.clean.narrow(1, 0, first as i64));
        if agree {
            States::compute_after(
                net,
                clean,
                &self.corrupted,
                self.noise.as_ref(),
                first,
                answer_pos,
                max_rows,
            )
        } else {
            States::compute(
                net,
                &self.corrupted,
                self.noise.as_ref(),
                want,
                answer_pos,
                max_rows,
            )
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// True when no example admits the corruption.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }
}

/// The probe examples that admit corruption `name` with a corrupted input of the clean input's
/// length, in probe-set order.
fn admitted_examples(probe: &ProbeSet, name: &str) -> Vec<usize> {
    probe
        .admitting(name)
        .into_iter()
        .filter(|&i| {
            let e = &probe.examples[i];
            e.corruptions[name].tokens.len() == e.tokens.len()
        })
        .collect()
}

/// The positions that corruption `name` changes, the same in every one of `examples`. Errors: no
/// example, or two examples that patch different positions.
fn shared_positions(probe: &ProbeSet, examples: &[usize], name: &str) -> Result<Vec<usize>> {
    let Some(&first) = examples.first() else {
        return Err(InterpError::NoCorruptedExamples {
            corruption: name.to_string(),
        });
    };
    let positions = probe.examples[first].corruptions[name].positions.clone();
    if let Some(&bad) = examples
        .iter()
        .find(|&&i| probe.examples[i].corruptions[name].positions != positions)
    {
        return Err(InterpError::BadSpec {
            what: "corruption",
            value: name.to_string(),
            reason: format!(
                "examples {} and {} patch different positions",
                probe.examples[first].index, probe.examples[bad].index
            ),
        });
    }
    Ok(positions)
}

/// The noise of a noise corruption on the CPU, `[n, T, d]` float: per example (one noise seed
/// each) `ν · noise_values(seed, |P| · d)` at the corrupted `positions`, zero elsewhere; `size`
/// is `[T, d]` and `noise_scale` is ν.
fn embedding_noise(
    seeds: &[u64],
    positions: &[usize],
    [t, d]: [usize; 2],
    noise_scale: f64,
) -> Tensor {
    let mut host = vec![0f32; seeds.len() * t * d];
    for (row, seed) in seeds.iter().enumerate() {
        let values = noise_values(*seed, positions.len() * d);
        for (k, &p) in positions.iter().enumerate() {
            let dst = (row * t + p) * d;
            for (x, v) in host[dst..dst + d]
                .iter_mut()
                .zip(&values[k * d..(k + 1) * d])
            {
                *x = (f64::from(*v) * noise_scale) as f32;
            }
        }
    }
    Tensor::from_slice(&host).view([seeds.len() as i64, t as i64, d as i64])
}

/// The best non-gold token of each row: the "corrupted-run answer" of the logit difference.
/// Shapes: logits `[N, V]`, gold `[N]` → `[N]` i64.
pub fn alt_tokens(logits: &Tensor, gold: &Tensor) -> Tensor {
    logits
        .to_kind(Kind::Float)
        .scatter_value(1, &gold.unsqueeze(1), f64::NEG_INFINITY)
        .argmax(1, false)
}
