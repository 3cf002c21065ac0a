//! Path patching and exact edge patching: one generic routine ([`path_patch`]) patches a set of
//! senders into a set of receivers; a single edge is the case of one sender and one receiver
//! ([`patch_edges`]), node patching the case of every receiver after the sender.

use super::graph::Edge;
use super::runs::EdgeRuns;
use crate::error::Result;
use ndarray::Array2;
use tch::{Kind, Tensor};

/// Senders whose source-run outputs reach these receivers (every other path keeps the base
/// run's), at these positions (`None` = all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPatch {
    /// Indices into [`super::Graph::senders`].
    pub senders: Vec<usize>,
    /// Indices into [`super::Graph::receivers`].
    pub receivers: Vec<usize>,
    pub positions: Option<Vec<i64>>,
}

impl PathPatch {
    /// The patch of one edge.
    pub fn edge(edge: &Edge) -> PathPatch {
        PathPatch {
            senders: vec![edge.sender],
            receivers: vec![edge.receiver],
            positions: edge.position.map(|p| vec![p]),
        }
    }
}

/// Per patch and prompt the metric of the patched run.
#[derive(Debug)]
pub struct PathValues {
    /// `[patches, B]`.
    pub values: Array2<f64>,
    /// Mean of the base run's metric.
    pub base: f64,
    /// Divisor of the effects (`clean − corrupted` for a restoration, else 1).
    pub norm: f64,
}

impl PathValues {
    /// Per patch the effect on the mean metric, `(patched − base) / norm`.
    pub fn effects(&self) -> Vec<f64> {
        self.values
            .rows()
            .into_iter()
            .map(|row| (util::stats::mean(row.iter().copied()) - self.base) / self.norm)
            .collect()
    }
}

/// Runs every patch; at most `max_rows` rows run in one forward (at least one patch's worth).
pub fn path_patch(runs: &EdgeRuns, patches: &[PathPatch], max_rows: usize) -> Result<PathValues> {
    let b = runs.batch.len();
    let mut values = Array2::zeros((patches.len(), b));
    let deltas = runs.sender_deltas();
    let per_chunk = (max_rows / b.max(1)).max(1);
    tch::no_grad(|| -> Result<()> {
        for (c, chunk) in patches.chunks(per_chunk).enumerate() {
            let mut edits = runs.deltas((chunk.len() * b) as i64);
            for (i, patch) in chunk.iter().enumerate() {
                for &r in &patch.receivers {
                    if let Some(delta) = receiver_delta(runs, &deltas, patch, r) {
                        edits.add(runs.graph.receivers[r], (i * b) as i64, &delta)?;
                    }
                }
            }
            let (metric, _) = runs.run(chunk.len() as i64, edits.into_edits(), false)?;
            let metric = crate::stats::to_f64(&metric)?;
            for (i, row) in metric.chunks(b).enumerate() {
                for (j, &x) in row.iter().enumerate() {
                    values[[c * per_chunk + i, j]] = x;
                }
            }
        }
        Ok(())
    })?;
    let base = runs.base_metric().mean(Kind::Double).double_value(&[]);
    Ok(PathValues {
        values,
        base,
        norm: runs.norm,
    })
}

/// What a patch adds to receiver `r`: the summed deltas of its senders that feed `r`, zero
/// outside its positions; `None` when no sender feeds `r`.
/// Shapes: deltas `[N_s, B, T, d]` → `[B, T, d]`.
fn receiver_delta(runs: &EdgeRuns, deltas: &Tensor, patch: &PathPatch, r: usize) -> Option<Tensor> {
    let feeding: Vec<i64> = patch
        .senders
        .iter()
        .filter(|&&s| runs.graph.feeds(s, r))
        .map(|&s| s as i64)
        .collect();
    if feeding.is_empty() {
        return None;
    }
    let index = Tensor::from_slice(&feeding).to_device(deltas.device());
    let delta = deltas
        .index_select(0, &index)
        .sum_dim_intlist(0, false, deltas.kind());
    Some(match &patch.positions {
        None => delta,
        Some(ps) => {
            let mask = position_mask(ps, delta.size()[1], &delta);
            delta * mask
        }
    })
}

/// `[1, T, 1]` ones at `positions`, zeros elsewhere, in `like`'s kind and device.
pub(crate) fn position_mask(positions: &[i64], t: i64, like: &Tensor) -> Tensor {
    let index = Tensor::from_slice(positions).to_device(like.device());
    Tensor::zeros([t], (like.kind(), like.device()))
        .index_fill(0, &index, 1.0)
        .view([1, t, 1])
}

/// The effect of patching each edge on its own (exact edge patching).
pub fn patch_edges(runs: &EdgeRuns, edges: &[Edge], max_rows: usize) -> Result<Vec<f64>> {
    let patches: Vec<PathPatch> = edges.iter().map(PathPatch::edge).collect();
    Ok(path_patch(runs, &patches, max_rows)?.effects())
}
