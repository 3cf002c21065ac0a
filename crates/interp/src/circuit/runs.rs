//! The runs every edge analysis shares: the base and source runs' sender outputs, and forwards of
//! the base tokens with additive edits of receiver inputs ([`EdgeRuns::run`]).
//!
//! Patching an edge `s → r` adds `source(s) − base(s)` to what `r` reads (at the edge's
//! positions) and nothing else: every other path keeps the base run's value of `s`, and what
//! lies downstream of `r` is recomputed.

use super::graph::{Graph, Receiver};
use crate::error::Result;
use crate::metric::Metric;
use crate::net::{LnMode, Net};
use crate::patch::Direction;
use crate::tokens::{Baselines, PromptBatch};
use model::{Edit, HookPoint, Intervention, LogitPositions, RunRequest};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// A prompt batch, a direction and a metric, with the base and source runs' sender outputs.
pub struct EdgeRuns<'n, 'g> {
    pub net: &'n Net<'g>,
    pub batch: &'n PromptBatch,
    pub graph: Graph,
    pub direction: Direction,
    pub metric: Metric,
    /// [`LnMode::CachedScale`] freezes ln_final's scale to the base run's in every run, which
    /// makes the logits linear in what the logits receiver reads.
    pub readout: LnMode,
    base: Tensor,
    /// The base run's sender outputs `[N_s, B, T, d_model]`.
    pub base_values: Tensor,
    /// The source run's sender outputs `[N_s, B, T, d_model]`.
    pub source_values: Tensor,
    /// The base run's ln_final scale `[B, T, 1]`.
    base_scale: Tensor,
    pub(crate) baselines: Baselines,
    /// Divisor of effects and gradients: `clean − corrupted` for a restoration, else 1.
    pub norm: f64,
}

impl<'n, 'g> EdgeRuns<'n, 'g> {
    /// Runs the clean and corrupted prompts once each (the batch needs corrupted tokens).
    pub fn new(
        net: &'n Net<'g>,
        batch: &'n PromptBatch,
        direction: Direction,
        metric: &Metric,
        readout: LnMode,
    ) -> Result<EdgeRuns<'n, 'g>> {
        let (base, source) = batch.base_and_source(direction, "edge patching")?;
        let graph = Graph::new(net.n_layer(), net.n_head());
        let baselines = Baselines::compute(net, batch, metric)?;
        let norm = baselines.restoration_norm(metric)?;
        let mut hooks = sender_hooks(graph.n_layer);
        hooks.push(HookPoint::LnFinalScale);
        let (base_cache, source_cache) = tch::no_grad(|| -> Result<_> {
            let req = RunRequest::capture(hooks);
            Ok((
                net.gpt.run(base, &req)?.cache,
                net.gpt.run(source, &req)?.cache,
            ))
        })?;
        Ok(EdgeRuns {
            base_values: sender_values(&graph, &base_cache),
            source_values: sender_values(&graph, &source_cache),
            base_scale: base_cache[&HookPoint::LnFinalScale].shallow_clone(),
            net,
            batch,
            graph,
            direction,
            metric: metric.clone(),
            readout,
            base: base.shallow_clone(),
            baselines,
            norm,
        })
    }

    /// The base run's per-row metric `[B]`.
    pub fn base_metric(&self) -> Tensor {
        match (self.direction, &self.baselines.corrupted) {
            (Direction::Denoising, Some(c)) => c.shallow_clone(),
            _ => self.baselines.clean.shallow_clone(),
        }
    }

    /// The source run's per-row metric `[B]`.
    pub fn source_metric(&self) -> Tensor {
        match (self.direction, &self.baselines.corrupted) {
            (Direction::Noising, Some(c)) => c.shallow_clone(),
            _ => self.baselines.clean.shallow_clone(),
        }
    }

    /// Means of the clean and corrupted runs' metric.
    pub fn clean_and_corrupted(&self) -> (f64, f64) {
        let mean = |t: &Tensor| t.mean(Kind::Double).double_value(&[]);
        let corrupted = self.baselines.corrupted.as_ref().map_or(f64::NAN, mean);
        (mean(&self.baselines.clean), corrupted)
    }

    /// `source − base` of every sender `[N_s, B, T, d_model]`.
    pub fn sender_deltas(&self) -> Tensor {
        &self.source_values - &self.base_values
    }

    /// An empty set of additions to receiver inputs for a forward of `rows` rows.
    pub(crate) fn deltas(&self, rows: i64) -> ReceiverDeltas {
        ReceiverDeltas {
            n_layer: self.graph.n_layer,
            rows,
            like: self.base_values.get(0),
            n_head: self.graph.n_head as i64,
            by_hook: BTreeMap::new(),
        }
    }

    /// One forward of the base tokens repeated `blocks` times with `edits`; returns the per-row
    /// metric `[blocks·B]` and, when asked, the run's sender outputs `[N_s, blocks·B, T, d]`.
    pub(crate) fn run(
        &self,
        blocks: i64,
        mut edits: Vec<Intervention>,
        capture_senders: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        if self.readout == LnMode::CachedScale {
            let scale = self.base_scale.repeat([blocks, 1, 1]);
            edits.push(Intervention::new(
                HookPoint::LnFinalScale,
                Edit::Replace(scale),
            ));
        }
        let capture = if capture_senders {
            sender_hooks(self.graph.n_layer)
        } else {
            Vec::new()
        };
        let req = RunRequest {
            interventions: edits,
            logit_positions: LogitPositions::PerRow(self.batch.answer_pos.repeat(blocks as usize)),
            ..RunRequest::capture(capture)
        };
        let out = self.net.gpt.run(&self.base.repeat([blocks, 1]), &req)?;
        let metric = self.metric_of(&out.logits.squeeze_dim(1), blocks)?;
        let values = capture_senders.then(|| sender_values(&self.graph, &out.cache));
        Ok((metric, values))
    }

    /// The per-row metric of answer logits of `blocks` repetitions of the batch.
    /// Shapes: logits `[blocks·B, V]` → `[blocks·B]` f64.
    pub(crate) fn metric_of(&self, logits: &Tensor, blocks: i64) -> Result<Tensor> {
        let sets = self.batch.sets.to_device(self.net.device()).repeat(blocks);
        let clean = self.baselines.clean_logits.repeat([blocks, 1]);
        self.metric.per_row(logits, &sets, Some(&clean))
    }

    /// The edit freezing ln_final's scale to the base run's (cached-scale readout only).
    pub(crate) fn readout_edit(&self) -> Option<Intervention> {
        (self.readout == LnMode::CachedScale).then(|| {
            Intervention::new(
                HookPoint::LnFinalScale,
                Edit::Replace(self.base_scale.shallow_clone()),
            )
        })
    }

    /// The base tokens `[B, T]`.
    pub(crate) fn base_tokens(&self) -> &Tensor {
        &self.base
    }
}

/// Additions to receiver inputs, gathered per hook into one dense tensor so that a forward
/// carries one edit per hook however many edges it patches.
pub(crate) struct ReceiverDeltas {
    n_layer: usize,
    n_head: i64,
    rows: i64,
    /// A `[B, T, d_model]` tensor of the kind and device of the deltas.
    like: Tensor,
    /// `[rows, T, H, d]` for head inputs, `[rows, T, d]` for MLP inputs and the logits.
    by_hook: BTreeMap<HookPoint, Tensor>,
}

impl ReceiverDeltas {
    /// Adds `delta` to what `receiver` reads at rows `start..start + R`.
    /// Shapes: delta `[R, T, d_model]`.
    pub(crate) fn add(&mut self, receiver: Receiver, start: i64, delta: &Tensor) -> Result<()> {
        let hook = receiver.hook(self.n_layer);
        let (rows, n_head) = (self.rows, self.n_head);
        let size = self.like.size();
        let dense = self.by_hook.entry(hook).or_insert_with(|| {
            let shape = match receiver.head() {
                Some(_) => vec![rows, size[1], n_head, size[2]],
                None => vec![rows, size[1], size[2]],
            };
            Tensor::zeros(shape.as_slice(), (self.like.kind(), self.like.device()))
        });
        let mut block = dense.narrow(0, start, delta.size()[0]);
        if let Some(h) = receiver.head() {
            block = block.select(2, h as i64);
        }
        let _ = block.f_add_(delta)?;
        Ok(())
    }

    /// One additive edit per hook.
    pub(crate) fn into_edits(self) -> Vec<Intervention> {
        self.by_hook
            .into_iter()
            .map(|(hook, delta)| Intervention::new(hook, Edit::Add(delta)))
            .collect()
    }
}

/// The hooks whose values make up the senders' outputs.
fn sender_hooks(n_layer: usize) -> Vec<HookPoint> {
    let mut hooks = vec![HookPoint::Embed, HookPoint::PosEmbed];
    for l in 0..n_layer {
        hooks.push(HookPoint::Result(l));
        hooks.push(HookPoint::MlpOut(l));
    }
    hooks
}

/// The senders' outputs in a run's cache, stacked in graph order.
/// Shapes: → `[N_s, B, T, d_model]`.
fn sender_values(graph: &Graph, cache: &BTreeMap<HookPoint, Tensor>) -> Tensor {
    let embed = &cache[&HookPoint::Embed] + &cache[&HookPoint::PosEmbed];
    let mut parts = vec![embed.unsqueeze(0)];
    for l in 0..graph.n_layer {
        parts.push(cache[&HookPoint::Result(l)].permute([2, 0, 1, 3]));
        parts.push(cache[&HookPoint::MlpOut(l)].unsqueeze(0));
    }
    Tensor::cat(&parts, 0)
}
