//! Circuit discovery in one call: edge scores, exact edge patching beside them (rank agreement),
//! the faithfulness curve and the smallest top-scored circuit that recovers a target fraction.

use super::attribution::{edge_attribution, EdgeMethod, EdgeScores};
use super::evaluate::{
    by_magnitude, curve_counts, faithfulness_curve, ranked, smallest_circuit, CurvePoint,
};
use super::patching::patch_edges;
use super::runs::EdgeRuns;
use crate::error::Result;
use serde::Serialize;
use std::time::Instant;

/// What [`discover`] computes.
#[derive(Clone, Debug)]
pub struct DiscoveryOptions {
    pub method: EdgeMethod,
    /// One edge per position (else every position together).
    pub per_position: bool,
    /// Fraction of the metric the circuit must recover (`0 < target ≤ 1`).
    pub target: f64,
    /// Also patch every edge exactly, for the agreement of the scores.
    pub exact: bool,
    /// Largest batch of one forward pass.
    pub max_rows: usize,
}

/// How well edge scores rank the edges as exact patching does.
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    /// Spearman correlation of scores and exact effects over every edge.
    pub spearman: Option<f64>,
    /// `(k, overlap)`: the share of the top-k edges by |exact effect| that are among the top-k
    /// by |score|.
    pub top_k: Vec<(usize, f64)>,
}

/// Seconds spent per stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub attribution: f64,
    pub exact: f64,
    pub curve: f64,
}

/// A discovered circuit with everything it was found from.
#[derive(Debug)]
pub struct Discovery {
    pub scores: EdgeScores,
    /// Exact effect of each edge (same order as the scores), when asked for.
    pub exact: Option<Vec<f64>>,
    pub agreement: Option<Agreement>,
    pub curve: Vec<CurvePoint>,
    /// The smallest top-scored circuit reaching the target (the full graph when none does).
    pub circuit: CurvePoint,
    /// Per edge whether it is in the circuit.
    pub kept: Vec<bool>,
    pub seconds: Timings,
}

/// Scores every edge, patches them exactly when asked, draws the faithfulness curve and finds
/// the smallest circuit of top-scored edges recovering `opts.target` of the metric.
pub fn discover(runs: &EdgeRuns, opts: &DiscoveryOptions) -> Result<Discovery> {
    let mut seconds = Timings::default();
    let clock = Instant::now();
    let scores = edge_attribution(runs, opts.method, opts.per_position)?;
    seconds.attribution = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    let exact = match opts.exact {
        true => Some(patch_edges(runs, &scores.edges, opts.max_rows)?),
        false => None,
    };
    seconds.exact = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    let curve = faithfulness_curve(
        runs,
        &scores,
        &curve_counts(scores.edges.len()),
        opts.max_rows,
    )?;
    let circuit = smallest_circuit(runs, &scores, &curve, opts.target, opts.max_rows)?;
    seconds.curve = clock.elapsed().as_secs_f64();
    let mut kept = vec![false; scores.edges.len()];
    for &e in ranked(&scores).iter().take(circuit.edges_kept) {
        kept[e] = true;
    }
    let agreement = exact
        .as_ref()
        .map(|x| agreement(&scores.scores, x, circuit.edges_kept));
    Ok(Discovery {
        scores,
        exact,
        agreement,
        curve,
        circuit,
        kept,
        seconds,
    })
}

/// Spearman correlation and top-k overlaps at k = 10 and the circuit's size.
fn agreement(scores: &[f64], exact: &[f64], circuit_size: usize) -> Agreement {
    let top = |values: &[f64], k: usize| -> Vec<usize> {
        let mut order = by_magnitude(values);
        order.truncate(k);
        order
    };
    let mut ks = vec![10.min(scores.len()), circuit_size.max(1).min(scores.len())];
    ks.dedup();
    let top_k = ks
        .into_iter()
        .filter(|&k| k > 0)
        .map(|k| {
            let by_exact = top(exact, k);
            let by_score = top(scores, k);
            let shared = by_exact.iter().filter(|e| by_score.contains(e)).count();
            (k, shared as f64 / k as f64)
        })
        .collect();
    Agreement {
        spearman: util::stats::spearman(scores, exact),
        top_k,
    }
}
