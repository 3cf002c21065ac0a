//! The effect of a corruption on intermediate states (paper App. D.1, Fig. 11): does perturbing
//! `h` change S[l, r2]? For each corruption, each layer `0..=L` and each position, the distance
//! between the corrupted and the clean residual state, and the logit-lens MRR of the lens targets
//! in both runs.

use crate::error::Result;
use crate::lens::{TargetSpec, ANSWER, LABELS};
use crate::net::{Net, Want};
use crate::output::EffectRow;
use crate::probe::ProbeSet;
use crate::states::{noise_scale, CleanRuns, CorruptionInputs};
use crate::stats::{mrr, to_f64, to_i64};
use tch::{Kind, Tensor};
use util::stats::mean;

/// Target column of the distance metrics.
pub const STATE: &str = "state";

/// `state_effect.csv` rows for every corruption of the probe set: per (layer, position)
/// `l2` (mean ‖S_corrupted − S_clean‖), `rel_l2` (the same divided by ‖S_clean‖) and
/// `cosine_distance` (mean 1 − cos) with target `state`; and per lens target (role token at its
/// position; `labels` skipped) `mrr_clean`, `mrr_corrupted`, `mean_rank_clean`,
/// `mean_rank_corrupted` at every layer. Lens readout: recompute mode.
pub fn state_effect(
    net: &Net,
    probe: &ProbeSet,
    targets: &[TargetSpec],
    step: u64,
    max_rows: usize,
) -> Result<Vec<EffectRow>> {
    tch::no_grad(|| {
        let nu = noise_scale(net, probe);
        let mut rows = Vec::new();
        let mut clean_runs = CleanRuns::default();
        for spec in &probe.corruptions {
            let name = spec.to_string();
            let ci = CorruptionInputs::new(net, probe, &name, nu)?;
            let ap = probe.answer_pos;
            let clean = clean_runs.get(net, &ci, Want::default(), ap, max_rows)?;
            let corr = ci.corrupted_states(net, &clean, Want::default(), ap, max_rows)?;
            let mut push =
                |layer: usize, position: &str, target: &str, metric: &str, value: f64| {
                    rows.push(EffectRow {
                        step,
                        corruption: name.clone(),
                        layer,
                        position: position.to_string(),
                        target: target.to_string(),
                        metric: metric.to_string(),
                        value,
                    });
                };
            for layer in 0..=net.n_layer() {
                for (p, pname) in probe.positions.iter().enumerate() {
                    let a = clean.resid[layer].select(1, p as i64).to_kind(Kind::Double);
                    let b = corr.resid[layer].select(1, p as i64).to_kind(Kind::Double);
                    let dist = (&b - &a).norm_scalaropt_dim(2, [1], false);
                    let norm = a.norm_scalaropt_dim(2, [1], false);
                    let cos = Tensor::cosine_similarity(&a, &b, 1, 1e-12);
                    let dist_v = to_f64(&dist)?;
                    let rel_v = to_f64(&(&dist / norm.clamp_min(1e-12)))?;
                    let cos_v = to_f64(&cos)?;
                    push(layer, pname, STATE, "l2", mean(dist_v));
                    push(layer, pname, STATE, "rel_l2", mean(rel_v));
                    push(
                        layer,
                        pname,
                        STATE,
                        "cosine_distance",
                        mean(cos_v.into_iter().map(|c| 1.0 - c)),
                    );
                }
                for t in targets.iter().filter(|t| t.role != LABELS) {
                    let pos = probe.position(&t.position)?;
                    let tokens: Vec<i64> = ci
                        .examples
                        .iter()
                        .map(|&i| {
                            let e = &probe.examples[i];
                            if t.role == ANSWER {
                                Ok(i64::from(e.gold))
                            } else {
                                probe
                                    .check_role(&t.role)
                                    .map(|_| i64::from(e.roles[&t.role]))
                            }
                        })
                        .collect::<Result<_>>()?;
                    let tokens = Tensor::from_slice(&tokens).to_device(net.device());
                    for (run, states) in [("clean", &clean), ("corrupted", &corr)] {
                        let logits = net
                            .readout(&states.resid[layer].select(1, pos as i64), None)
                            .to_kind(Kind::Float);
                        let ranks = to_i64(&model::gold_rank(&logits, &tokens))?;
                        let pname = &probe.positions[pos];
                        push(
                            layer,
                            pname,
                            &t.role,
                            &format!("mrr_{run}"),
                            mrr(ranks.iter().copied()),
                        );
                        push(
                            layer,
                            pname,
                            &t.role,
                            &format!("mean_rank_{run}"),
                            mean(ranks.iter().map(|&r| r as f64)),
                        );
                    }
                }
            }
        }
        Ok(rows)
    })
}
