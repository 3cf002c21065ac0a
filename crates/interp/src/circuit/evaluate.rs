//! Circuits: the metric of the base run when only some edges keep their values and every other
//! edge carries the source run's sender output ([`evaluate_circuits`]); the faithfulness curve
//! of the top-scored edges ([`faithfulness_curve`]); the smallest top-k circuit that recovers a
//! chosen fraction of the metric ([`smallest_circuit`]).
//!
//! What a receiver reads in a circuit depends on senders that are themselves patched, so a run
//! is repeated with each pass's sender outputs feeding the next pass's edits: after pass `k`
//! every node `k` steps deep in the graph is exact, and `2L + 1` passes make the logits exact.

use super::attribution::EdgeScores;
use super::graph::Edge;
use super::runs::EdgeRuns;
use crate::error::Result;
use serde::Serialize;
use tch::{Kind, Tensor};

/// The mean metric of each circuit: `kept[c][e]` says whether `edges[e]` keeps its value in
/// circuit `c`; edges that are not listed keep theirs. At most `max_rows` rows run in one
/// forward (at least one circuit's worth).
pub fn evaluate_circuits(
    runs: &EdgeRuns,
    edges: &[Edge],
    kept: &[Vec<bool>],
    max_rows: usize,
) -> Result<Vec<f64>> {
    let per_chunk = (max_rows / runs.batch.len().max(1)).max(1);
    let mut means = Vec::with_capacity(kept.len());
    tch::no_grad(|| -> Result<()> {
        for chunk in kept.chunks(per_chunk) {
            let metric = evaluate_chunk(runs, edges, chunk)?;
            let b = runs.batch.len() as i64;
            for c in 0..chunk.len() as i64 {
                means.push(
                    metric
                        .narrow(0, c * b, b)
                        .mean(Kind::Double)
                        .double_value(&[]),
                );
            }
        }
        Ok(())
    })?;
    Ok(means)
}

/// The per-row metric of the circuits of one chunk, as row blocks `[C·B]`.
fn evaluate_chunk(runs: &EdgeRuns, edges: &[Edge], kept: &[Vec<bool>]) -> Result<Tensor> {
    let c = kept.len() as i64;
    let missing = missing_mask(runs, edges, kept);
    let passes = if missing.sum(Kind::Double).double_value(&[]) == 0.0 {
        1
    } else {
        2 * runs.graph.n_layer + 1
    };
    let source = runs.source_values.repeat([1, c, 1, 1]);
    let mut current = runs.base_values.repeat([1, c, 1, 1]);
    let mut metric = Tensor::zeros([0], (Kind::Double, tch::Device::Cpu));
    for _ in 0..passes {
        let edits = circuit_edits(runs, &missing, &(&source - &current), c)?;
        let (m, values) = runs.run(c, edits, true)?;
        metric = m;
        if let Some(values) = values {
            current = values;
        }
    }
    Ok(metric)
}

/// `[C, N_r, N_s, T]` ones where an edge is left out of a circuit (at its position, or at every
/// position for an edge without one).
fn missing_mask(runs: &EdgeRuns, edges: &[Edge], kept: &[Vec<bool>]) -> Tensor {
    let (n_r, n_s) = (runs.graph.receivers.len(), runs.graph.senders.len());
    let t = runs.batch.clean.size()[1] as usize;
    let mut mask = vec![0f32; kept.len() * n_r * n_s * t];
    for (c, keep) in kept.iter().enumerate() {
        for (e, edge) in edges.iter().enumerate() {
            if keep[e] {
                continue;
            }
            let at = ((c * n_r + edge.receiver) * n_s + edge.sender) * t;
            match edge.position {
                Some(p) => mask[at + p as usize] = 1.0,
                None => mask[at..at + t].fill(1.0),
            }
        }
    }
    Tensor::from_slice(&mask)
        .view([kept.len() as i64, n_r as i64, n_s as i64, t as i64])
        .to_device(runs.net.device())
}

/// Per receiver the sum of `source − current` over the senders whose edge into it is missing.
/// Shapes: missing `[C, N_r, N_s, T]`, deltas `[N_s, C·B, T, d]` → one edit per receiver.
fn circuit_edits(
    runs: &EdgeRuns,
    missing: &Tensor,
    deltas: &Tensor,
    c: i64,
) -> Result<Vec<model::Intervention>> {
    let size = deltas.size();
    let (n_s, t, d) = (size[0], size[2], size[3]);
    let per_block = deltas.view([n_s, c, -1, t, d]);
    let missing = missing.to_kind(deltas.kind());
    let by_receiver = Tensor::einsum("crst,scbtd->rcbtd", &[&missing, &per_block], None::<i64>)
        .reshape([missing.size()[1], -1, t, d]);
    let used = missing.sum_dim_intlist([0, 2, 3].as_slice(), false, Kind::Double);
    let mut edits = runs.deltas(by_receiver.size()[1]);
    for (r, &receiver) in runs.graph.receivers.iter().enumerate() {
        if used.double_value(&[r as i64]) > 0.0 {
            edits.add(receiver, 0, &by_receiver.get(r as i64))?;
        }
    }
    Ok(edits.into_edits())
}

/// One point of a faithfulness curve.
#[derive(Clone, Debug, Serialize)]
pub struct CurvePoint {
    /// Number of top-scored edges kept.
    pub edges_kept: usize,
    /// Mean metric of the circuit.
    pub metric: f64,
    /// `(metric − source) / (base − source)`: 1 = the base run's metric, 0 = the source run's.
    pub recovered: f64,
}

/// Edge indices by decreasing |score| (ties in edge order).
pub fn ranked(scores: &EdgeScores) -> Vec<usize> {
    by_magnitude(&scores.scores)
}

/// Indices of `values` by decreasing absolute value (ties in index order).
pub(crate) fn by_magnitude(values: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].abs().total_cmp(&values[a].abs()));
    order
}

/// Each edge's 1-based rank by decreasing |score| (the position in [`ranked`]).
pub fn ranks(scores: &EdgeScores) -> Vec<usize> {
    let mut rank = vec![0; scores.scores.len()];
    for (i, &e) in ranked(scores).iter().enumerate() {
        rank[e] = i + 1;
    }
    rank
}

/// The circuits of the `k` top-scored edges for each `k` of `counts`.
pub fn faithfulness_curve(
    runs: &EdgeRuns,
    scores: &EdgeScores,
    counts: &[usize],
    max_rows: usize,
) -> Result<Vec<CurvePoint>> {
    let order = ranked(scores);
    let kept: Vec<Vec<bool>> = counts.iter().map(|&k| top_k(&order, k)).collect();
    let means = evaluate_circuits(runs, &scores.edges, &kept, max_rows)?;
    let mean = |t: Tensor| t.mean(Kind::Double).double_value(&[]);
    let (base, source) = (mean(runs.base_metric()), mean(runs.source_metric()));
    Ok(counts
        .iter()
        .zip(means)
        .map(|(&edges_kept, metric)| CurvePoint {
            edges_kept,
            metric,
            recovered: (metric - source) / (base - source),
        })
        .collect())
}

/// Whether each edge is among the first `k` of `order`.
fn top_k(order: &[usize], k: usize) -> Vec<bool> {
    let mut keep = vec![false; order.len()];
    for &e in order.iter().take(k) {
        keep[e] = true;
    }
    keep
}

/// Edge counts for a curve over `n` edges: 0, every count up to 8, then about 24 steps growing
/// geometrically to `n`.
pub fn curve_counts(n: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = (0..=n.min(8)).collect();
    let mut k = 8.0f64;
    while (k as usize) < n {
        k = (k * (n as f64 / 8.0).powf(1.0 / 24.0)).max(k + 1.0);
        counts.push((k as usize).min(n));
    }
    counts.dedup();
    counts
}

/// The fewest top-scored edges whose circuit recovers at least `target` of the metric: the
/// first curve point that does, narrowed by bisection from the point before it. Returns the
/// count and its curve point (the full graph when no point reaches the target).
pub fn smallest_circuit(
    runs: &EdgeRuns,
    scores: &EdgeScores,
    curve: &[CurvePoint],
    target: f64,
    max_rows: usize,
) -> Result<CurvePoint> {
    let Some(hit) = curve.iter().position(|p| p.recovered >= target) else {
        return Ok(curve.last().cloned().unwrap_or(CurvePoint {
            edges_kept: 0,
            metric: f64::NAN,
            recovered: f64::NAN,
        }));
    };
    let mut best = curve[hit].clone();
    let mut lo = if hit == 0 {
        0
    } else {
        curve[hit - 1].edges_kept
    };
    while best.edges_kept > lo + 1 {
        let mid = (lo + best.edges_kept) / 2;
        let point = faithfulness_curve(runs, scores, &[mid], max_rows)?.remove(0);
        if point.recovered >= target {
            best = point;
        } else {
            lo = mid;
        }
    }
    Ok(best)
}
