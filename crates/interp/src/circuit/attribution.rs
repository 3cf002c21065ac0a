//! Edge attribution patching (EAP, Syed et al. 2023) and its integrated-gradients variant
//! (EAP-IG, Hanna et al. 2024): the first-order estimate of patching every edge at once,
//! `(source(s) − base(s)) · ∂metric/∂input(r)`, summed over the feature axis and the edge's
//! positions and averaged over prompts — two forward passes (in [`EdgeRuns::new`]) and one
//! forward and backward pass per gradient.

use super::graph::Edge;
use super::runs::EdgeRuns;
use crate::error::{InterpError, Result};
use model::{Edit, HookPoint, Intervention, LogitPositions, RunRequest};
use std::fmt;
use std::str::FromStr;
use tch::{Kind, Tensor};

/// How edge scores are computed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EdgeMethod {
    /// Gradients at the base run.
    Eap,
    /// Gradients averaged over `steps` runs whose token embeddings lie on the straight line from
    /// the base to the source run's, at `α = (k − ½) / steps`, k = 1..steps (midpoint rule).
    EapIg { steps: usize },
}

impl fmt::Display for EdgeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeMethod::Eap => write!(f, "eap"),
            EdgeMethod::EapIg { steps } => write!(f, "eap-ig:{steps}"),
        }
    }
}

impl FromStr for EdgeMethod {
    type Err = InterpError;

    /// `eap`, `eap-ig` (5 steps) or `eap-ig:STEPS`.
    fn from_str(s: &str) -> Result<EdgeMethod> {
        let bad = || InterpError::spec("edge method", s, "expected eap, eap-ig or eap-ig:STEPS");
        match s.split_once(':') {
            None if s == "eap" => Ok(EdgeMethod::Eap),
            None if s == "eap-ig" => Ok(EdgeMethod::EapIg { steps: 5 }),
            Some(("eap-ig", steps)) => match steps.parse() {
                Ok(steps) if steps > 0 => Ok(EdgeMethod::EapIg { steps }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Every edge's score: the estimated change of the mean metric (divided by `clean − corrupted`
/// for a restoration) when that edge alone is patched.
#[derive(Debug)]
pub struct EdgeScores {
    pub method: EdgeMethod,
    pub edges: Vec<Edge>,
    pub scores: Vec<f64>,
}

/// Scores of every edge of the graph, each at every position together or, with
/// `per_position`, once per position.
pub fn edge_attribution(
    runs: &EdgeRuns,
    method: EdgeMethod,
    per_position: bool,
) -> Result<EdgeScores> {
    let grads = match method {
        EdgeMethod::Eap => receiver_gradients(runs, 0.0)?,
        EdgeMethod::EapIg { steps } => {
            let mut sum = receiver_gradients(runs, 0.5 / steps as f64)?;
            for k in 2..=steps {
                sum += receiver_gradients(runs, (k as f64 - 0.5) / steps as f64)?;
            }
            sum / steps as f64
        }
    };
    let b = runs.batch.len() as f64;
    let deltas = runs.sender_deltas().to_kind(Kind::Double);
    let by_position = Tensor::einsum("sbtd,rbtd->srt", &[&deltas, &grads], None::<i64>) / b;
    let t = by_position.size()[2];
    let by_position: Vec<f64> = by_position
        .to_device(tch::Device::Cpu)
        .flatten(0, -1)
        .try_into()?;
    let n_r = runs.graph.receivers.len() as i64;
    let at =
        |s: usize, r: usize, p: i64| by_position[((s as i64 * n_r + r as i64) * t + p) as usize];
    let positions: Vec<i64> = (0..t).collect();
    let edges = runs
        .graph
        .edges(per_position.then_some(positions.as_slice()));
    let scores = edges
        .iter()
        .map(|e| match e.position {
            Some(p) => at(e.sender, e.receiver, p),
            None => (0..t).map(|p| at(e.sender, e.receiver, p)).sum(),
        })
        .collect();
    Ok(EdgeScores {
        method,
        edges,
        scores,
    })
}

/// The gradient of the summed per-row metric (over `norm`) with respect to every receiver's
/// input, in a run of the base tokens whose token embeddings are moved `alpha` of the way to
/// the source run's. Shapes: → `[N_r, B, T, d_model]` f64.
fn receiver_gradients(runs: &EdgeRuns, alpha: f64) -> Result<Tensor> {
    let n_layer = runs.graph.n_layer;
    let mut hooks = Vec::new();
    for l in 0..n_layer {
        hooks.extend([
            HookPoint::QInput(l),
            HookPoint::KInput(l),
            HookPoint::VInput(l),
        ]);
        hooks.push(HookPoint::MlpIn(l));
    }
    hooks.push(HookPoint::ResidPost(n_layer - 1));
    let mut edits: Vec<Intervention> = runs.readout_edit().into_iter().collect();
    if alpha != 0.0 {
        let toward = (runs.source_values.get(0) - runs.base_values.get(0)) * alpha;
        edits.push(Intervention::new(HookPoint::Embed, Edit::Add(toward)));
    }
    let req = RunRequest {
        interventions: edits,
        logit_positions: LogitPositions::PerRow(runs.batch.answer_pos.clone()),
        split_inputs: true,
        ..RunRequest::capture(hooks.iter().copied())
    };
    tch::with_grad(|| {
        let out = runs.net.gpt.run(runs.base_tokens(), &req)?;
        let total = runs
            .metric_of(&out.logits.squeeze_dim(1), 1)?
            .sum(Kind::Double)
            / runs.norm;
        let inputs: Vec<Tensor> = hooks.iter().map(|h| out.cache[h].shallow_clone()).collect();
        let grads = Tensor::f_run_backward(&[total], &inputs, false, false)?;
        let parts: Vec<Tensor> = hooks
            .iter()
            .zip(&grads)
            .map(|(hook, g)| match hook.is_per_head() {
                true => g.permute([2, 0, 1, 3]),
                false => g.unsqueeze(0),
            })
            .collect();
        Ok(Tensor::cat(&parts, 0).to_kind(Kind::Double))
    })
}
