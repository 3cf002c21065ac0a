//! The corruptions of a prompt sample as model inputs: per corruption the examples that admit it,
//! their clean and corrupted tokens (and the embedding noise of noise corruptions), the positions
//! it changes, and the loop that runs an analysis over every corruption.

use crate::error::{InterpError, Result};
use crate::net::{Net, Want};
use crate::prompt_sample::{noise_values, PromptSample};
use crate::states::{tokens_tensor, States};
use tch::{Kind, Tensor};

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
    /// Indices into the prompt sample's examples.
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

/// ROME's noise level ν = 3 × the standard deviation (unbiased) of the token embeddings of all
/// clean input tokens of the prompt sample.
pub fn noise_scale(net: &Net, probe: &PromptSample) -> f64 {
    let ids: Vec<i64> = probe
        .examples
        .iter()
        .flat_map(|e| e.tokens.iter().map(|&t| i64::from(t)))
        .collect();
    let ids = Tensor::from_slice(&ids).to_device(net.device());
    let emb = tch::no_grad(|| net.token_embeddings(&ids));
    3.0 * emb.to_kind(Kind::Double).std(true).double_value(&[])
}

/// What a pass over every corruption of a prompt sample collects: per corruption one baseline and its
/// cells, and ν when any corruption added noise.
pub(crate) struct PerCorruption<B, C> {
    pub baselines: Vec<B>,
    pub cells: Vec<C>,
    pub noise_scale: Option<f64>,
}

/// Gathers the inputs of every corruption of the prompt sample (ν = `nu` for noise corruptions) and
/// runs `per` on each, in order.
pub(crate) fn for_each_corruption<B, C>(
    net: &Net,
    probe: &PromptSample,
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
        probe: &PromptSample,
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

/// The sampled prompts that admit corruption `name` with a corrupted input of the clean input's
/// length, in sample order.
fn admitted_examples(probe: &PromptSample, name: &str) -> Vec<usize> {
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
fn shared_positions(probe: &PromptSample, examples: &[usize], name: &str) -> Result<Vec<usize>> {
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
