//! The effect of a corruption on intermediate states (paper App. D.1, Fig. 11): does perturbing
//! `h` change S[l, r2]? For each corruption, each layer `0..=L` and each position, the distance
//! between the corrupted and the clean residual state, and the logit-lens MRR of the lens targets
//! in both runs.

use crate::corruption::{noise_scale, CleanRuns, CorruptionInputs};
use crate::error::Result;
use crate::lens::{TargetSpec, ANSWER, LABELS};
use crate::net::{Net, Want};
use crate::output::LensRow;
use crate::prompt_sample::PromptSample;
use crate::stats::{mrr, to_f64, to_i64};
use tch::{Kind, Tensor};
use util::stats::mean;

/// Target column of the distance metrics.
pub const STATE: &str = "state";

/// `state_effect.csv` rows for every corruption of the prompt sample: per (layer, position)
/// `l2` (mean ‖S_corrupted − S_clean‖), `rel_l2` (the same divided by ‖S_clean‖) and
/// `cosine_distance` (mean 1 − cos) with target `state`; and per lens target (role token at its
/// position; `labels` skipped) `mrr_clean`, `mrr_corrupted`, `mean_rank_clean`,
/// `mean_rank_corrupted` at every layer. Lens readout: recompute mode.
pub fn state_effect(
    net: &Net,
    probe: &PromptSample,
    targets: &[TargetSpec],
    step: u64,
    max_rows: usize,
) -> Result<Vec<LensRow>> {
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
            let lens_targets = targets
                .iter()
                .filter(|t| t.role != LABELS)
                .map(|t| LensTarget::new(net, probe, &ci, t))
                .collect::<Result<Vec<_>>>()?;
            let mut out = EffectRows {
                rows: &mut rows,
                step,
                corruption: &name,
            };
            for layer in 0..=net.n_layer() {
                let (clean, corr) = (&clean.resid[layer], &corr.resid[layer]);
                for (p, pname) in probe.positions.iter().enumerate() {
                    for (metric, value) in state_distances(clean, corr, p)? {
                        out.push(layer, pname, STATE, metric, value);
                    }
                }
                for t in &lens_targets {
                    let pname = &probe.positions[t.pos];
                    for (run, resid) in [("clean", clean), ("corrupted", corr)] {
                        let ranks = t.ranks(net, resid)?;
                        out.push(
                            layer,
                            pname,
                            t.role,
                            &format!("mrr_{run}"),
                            mrr(ranks.iter().copied()),
                        );
                        out.push(
                            layer,
                            pname,
                            t.role,
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

/// The rows of one corruption at one step, appended to `rows`.
struct EffectRows<'r> {
    rows: &'r mut Vec<LensRow>,
    step: u64,
    corruption: &'r str,
}

impl EffectRows<'_> {
    /// Appends the row of (layer, position, target, metric).
    fn push(&mut self, layer: usize, position: &str, target: &str, metric: &str, value: f64) {
        self.rows.push(LensRow {
            step: self.step,
            corruption: Some(self.corruption.to_string()),
            layer,
            position: position.to_string(),
            target: target.to_string(),
            metric: metric.to_string(),
            value,
        });
    }
}

/// The distance metrics between the clean and the corrupted residual states `[n, T, d]` at
/// position `p`, averaged over examples: `l2` (‖S_corrupted − S_clean‖), `rel_l2` (the same
/// divided by ‖S_clean‖) and `cosine_distance` (1 − cos), computed in double precision.
fn state_distances(clean: &Tensor, corr: &Tensor, p: usize) -> Result<[(&'static str, f64); 3]> {
    let a = clean.select(1, p as i64).to_kind(Kind::Double);
    let b = corr.select(1, p as i64).to_kind(Kind::Double);
    let dist = (&b - &a).norm_scalaropt_dim(2, [1], false);
    let norm = a.norm_scalaropt_dim(2, [1], false);
    let cos = Tensor::cosine_similarity(&a, &b, 1, 1e-12);
    let dist_v = to_f64(&dist)?;
    let rel_v = to_f64(&(&dist / norm.clamp_min(1e-12)))?;
    let cos_v = to_f64(&cos)?;
    Ok([
        ("l2", mean(dist_v)),
        ("rel_l2", mean(rel_v)),
        ("cosine_distance", mean(cos_v.into_iter().map(|c| 1.0 - c))),
    ])
}

/// A lens target of one corruption's examples: the role's token (or the gold answer) read at its
/// position.
struct LensTarget<'t> {
    /// The role (or `answer`).
    role: &'t str,
    /// The position index the lens reads.
    pos: usize,
    /// The target token of every example, `[n]` i64 on the model's device.
    tokens: Tensor,
}

impl<'t> LensTarget<'t> {
    /// The target `t` of the examples of `ci`. Errors: an unknown role or position.
    fn new(
        net: &Net,
        probe: &PromptSample,
        ci: &CorruptionInputs,
        t: &'t TargetSpec,
    ) -> Result<LensTarget<'t>> {
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
        Ok(LensTarget {
            role: &t.role,
            pos,
            tokens: Tensor::from_slice(&tokens).to_device(net.device()),
        })
    }

    /// The 0-based rank of the target token among the lens's logits of residual states `[n, T, d]`
    /// (recompute mode), one per example.
    fn ranks(&self, net: &Net, resid: &Tensor) -> Result<Vec<i64>> {
        let logits = net
            .readout(&resid.select(1, self.pos as i64), None)
            .to_kind(Kind::Float);
        to_i64(&model::gold_rank(&logits, &self.tokens))
    }
}
