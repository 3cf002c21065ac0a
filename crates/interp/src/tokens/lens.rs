//! The logit lens on token batches: the metric of every layer's residual state read through
//! `ln_final` and the unembedding. [`lens`] reads each prompt at its answer position;
//! [`lens_readings`] reads any number of (position, token sets, metric) readings of the same
//! prompts in one pass, optionally through a tuned lens — the task lens ([`crate::lens`]) is that
//! call with one reading per role and position.

use super::{AnswerPositions, PromptBatch};
use crate::error::{InterpError, Result};
use crate::metric::{Metric, TokenSets};
use crate::net::{LnMode, Net, Rows};
use crate::tuned_lens::TunedLens;
use model::{LogitPositions, RunRequest};
use ndarray::Array2;
use tch::{Kind, Tensor};

/// Per layer and prompt the metric of the lens logits.
#[derive(Debug)]
pub struct LensValues {
    pub metric: Metric,
    /// Residual layers read (`0` = embeddings … `L` = the model's output).
    pub layers: Vec<usize>,
    /// `[layers, B]`.
    pub values: Array2<f64>,
}

impl LensValues {
    /// Per layer the mean over prompts.
    pub fn means(&self) -> Vec<(usize, f64)> {
        self.layers
            .iter()
            .zip(self.values.rows())
            .map(|(&l, row)| (l, util::stats::mean(row.iter().copied())))
            .collect()
    }
}

/// One thing the lens reads from every prompt: a position per row and the token sets a metric
/// scores there.
#[derive(Debug)]
pub struct LensReading {
    /// Per row the position read (`B` entries, each in `0..T`).
    pub positions: Vec<i64>,
    /// The tokens `metric` reads, one row per prompt.
    pub sets: TokenSets,
    pub metric: Metric,
}

/// How the lens reads the residual stream.
#[derive(Clone, Copy)]
pub struct LensOptions<'a> {
    /// The LayerNorm of the readout (recomputed per state, or the final state's scale).
    pub ln_mode: LnMode,
    /// Residual layers to read (`None`: `0..=L`).
    pub layers: Option<&'a [usize]>,
    /// Largest batch of one forward pass (bounds memory).
    pub max_rows: usize,
    /// Translate each state with this tuned lens before the readout.
    pub tuned: Option<&'a TunedLens>,
}

impl Default for LensOptions<'_> {
    /// Recompute mode, every layer, one forward pass, no tuned lens.
    fn default() -> Self {
        LensOptions {
            ln_mode: LnMode::Recompute,
            layers: None,
            max_rows: usize::MAX,
            tuned: None,
        }
    }
}

/// The lens of the clean prompts at `layers` (`None` = `0..=L`): the residual state entering
/// each layer at the answer position, read out with `ln_mode`, scored by `metric`
/// ([`Metric::KlToClean`] compares with the model's own output distribution).
pub fn lens(
    net: &Net,
    batch: &PromptBatch,
    metric: &Metric,
    ln_mode: LnMode,
    layers: Option<&[usize]>,
) -> Result<LensValues> {
    let reading = LensReading {
        positions: batch.answer_pos.clone(),
        sets: batch.sets.to_device(net.device()),
        metric: metric.clone(),
    };
    let opts = LensOptions {
        ln_mode,
        layers,
        ..LensOptions::default()
    };
    let (layers, mut values) = lens_readings(net, &batch.clean, &[reading], &opts)?;
    Ok(LensValues {
        metric: metric.clone(),
        layers,
        values: values.remove(0),
    })
}

/// The lens of `readings` on the prompts `tokens` (`[B, T]` i64): per reading the layers read
/// and a `[layers, B]` array of its metric. Each state is read at the reading's positions, through
/// `opts.tuned` when given, with the final state's LayerNorm scale at the same positions in
/// cached-scale mode; [`Metric::KlToClean`] compares with the model's output there. The prompts
/// run in chunks of at most `opts.max_rows` rows; readings at the same positions share their
/// logits.
pub fn lens_readings(
    net: &Net,
    tokens: &Tensor,
    readings: &[LensReading],
    opts: &LensOptions,
) -> Result<(Vec<usize>, Vec<Array2<f64>>)> {
    let layers = net.layers_or_all(opts.layers)?;
    let (n, t) = tokens
        .size2()
        .map_err(|e| InterpError::spec("lens tokens", "prompts", e.to_string()))?;
    for r in readings {
        r.check(n, t)?;
    }
    let device = net.device();
    let readings: Vec<DeviceReading> = readings.iter().map(|r| r.on(device)).collect();
    let mut values: Vec<Array2<f64>> = readings
        .iter()
        .map(|_| Array2::zeros((layers.len(), n as usize)))
        .collect();
    tch::no_grad(|| -> Result<()> {
        for rows in Rows::chunks(n, opts.max_rows as i64) {
            let (start, m) = (rows.start, rows.m);
            let resid = residual_states(net, &rows.of(tokens))?;
            let mut model_logits = LogitsByPositions::default();
            for (li, &layer) in layers.iter().enumerate() {
                let mut chunk_lens = ChunkLens::new(net, layer, &resid, opts);
                for (reading, values) in readings.iter().zip(values.iter_mut()) {
                    let v = chunk_lens.values(reading, start, m, &mut model_logits)?;
                    for (j, x) in v.into_iter().enumerate() {
                        values[[li, start as usize + j]] = x;
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok((layers, values))
}

/// A reading with its token sets on the model's device.
struct DeviceReading<'r> {
    reading: &'r LensReading,
    sets: TokenSets,
}

impl LensReading {
    /// Errors unless the reading has `n` positions in `0..t` and `n` token set rows.
    fn check(&self, n: i64, t: i64) -> Result<()> {
        let bad =
            |reason: String| InterpError::spec("lens reading", self.metric.to_string(), reason);
        if self.positions.len() as i64 != n || self.positions.iter().any(|&p| p < 0 || p >= t) {
            return Err(bad(format!("needs {n} positions in 0..{t}")));
        }
        if self.sets.answer.size()[0] != n {
            return Err(bad(format!(
                "{} token set rows for {n} prompts",
                self.sets.answer.size()[0]
            )));
        }
        Ok(())
    }

    fn on(&self, device: tch::Device) -> DeviceReading<'_> {
        DeviceReading {
            reading: self,
            sets: self.sets.to_device(device),
        }
    }
}

/// The residual states `0..=L` of `tokens` (`[m, T]`), each `[m, T, d]`.
fn residual_states(net: &Net, tokens: &Tensor) -> Result<Vec<Tensor>> {
    let capture = (0..=net.n_layer()).map(|l| net.resid_hook(l));
    let mut req = RunRequest::capture(capture);
    req.logit_positions = LogitPositions::At(vec![tokens.size()[1] - 1]);
    let mut cache = net.gpt.run(tokens, &req)?.cache;
    (0..=net.n_layer())
        .map(|l| {
            let hook = net.resid_hook(l);
            cache
                .remove(&hook)
                .ok_or_else(|| InterpError::spec("hook", hook.to_string(), "not captured"))
        })
        .collect()
}

/// Logits `[m, V]` of one chunk of prompts, each computed once per set of positions (one per row).
#[derive(Default)]
struct LogitsByPositions(Vec<(Vec<i64>, Tensor)>);

impl LogitsByPositions {
    /// The logits at `rows`, computed by `compute` the first time.
    fn get(&mut self, rows: &[i64], compute: impl FnOnce() -> Tensor) -> Tensor {
        if let Some((_, lg)) = self.0.iter().find(|(p, _)| p == rows) {
            return lg.shallow_clone();
        }
        let lg = compute();
        self.0.push((rows.to_vec(), lg.shallow_clone()));
        lg
    }
}

/// The lens over one chunk of prompts at one layer, computing the logits of each set of
/// positions once.
struct ChunkLens<'a> {
    net: &'a Net<'a>,
    layer: usize,
    resid: &'a [Tensor],
    opts: &'a LensOptions<'a>,
    /// The lens logits `[m, V]` (float) read so far.
    logits: LogitsByPositions,
}

impl<'a> ChunkLens<'a> {
    fn new(net: &'a Net, layer: usize, resid: &'a [Tensor], opts: &'a LensOptions) -> Self {
        ChunkLens {
            net,
            layer,
            resid,
            opts,
            logits: LogitsByPositions::default(),
        }
    }

    /// The reading's metric on rows `start..start + m` of the batch; `model_logits` holds the
    /// model's own logits of the chunk (for [`Metric::KlToClean`]), shared by every layer.
    fn values(
        &mut self,
        reading: &DeviceReading,
        start: i64,
        m: i64,
        model_logits: &mut LogitsByPositions,
    ) -> Result<Vec<f64>> {
        let rows = &reading.reading.positions[start as usize..(start + m) as usize];
        let logits = self.logits_at(rows);
        let sets = reading.sets.narrow(start, m);
        let metric = &reading.reading.metric;
        let clean = metric.needs_clean_logits().then(|| {
            model_logits.get(rows, || {
                let last = self.at(self.net.n_layer(), &AnswerPositions::new(rows));
                self.net.readout(&last, None)
            })
        });
        crate::stats::to_f64(&metric.per_row(&logits, &sets, clean.as_ref())?)
    }

    /// The states of residual layer `layer` at one position per row → `[m, d]`.
    fn at(&self, layer: usize, positions: &AnswerPositions) -> Tensor {
        positions.pick(&self.resid[layer])
    }

    /// The lens's logits `[m, V]` (float) at one position per row (`rows`): the readout of the
    /// (translated) state, with the final state's LayerNorm scale in cached-scale mode.
    fn logits_at(&mut self, rows: &[i64]) -> Tensor {
        let (net, layer, resid, opts) = (self.net, self.layer, self.resid, self.opts);
        self.logits.get(rows, || {
            let positions = AnswerPositions::new(rows);
            let x = positions.pick(&resid[layer]);
            let x = opts
                .tuned
                .map_or(x.shallow_clone(), |t| t.translate(layer, &x));
            let scale = (opts.ln_mode == LnMode::CachedScale)
                .then(|| net.ln_scale(&positions.pick(&resid[net.n_layer()])));
            net.readout(&x, scale.as_ref()).to_kind(Kind::Float)
        })
    }
}
