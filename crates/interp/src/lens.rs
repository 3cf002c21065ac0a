//! The logit lens: how strongly an intermediate residual state S[l, pos] predicts a role's token.
//!
//! `logits_l = W_U · LN_final(S[l, pos])` (recompute mode, the default; or the cached-scale mode of
//! [`LnMode`]), ranked over the whole vocabulary. Layer `l` is `resid_pre[l]`: 0 = embeddings,
//! `L` = the last block's output before ln_final, so the lens at `L` is the model's prediction.
//!
//! This is the task layer over the token lens ([`crate::tokens::lens_readings`]): it turns a
//! prompt sample's roles and positions into readings and the values into `lens.csv`'s metrics.

use crate::error::{InterpError, Result};
use crate::metric::{Metric, TokenSets};
use crate::net::{LnMode, Net};
use crate::output::LensRow;
use crate::prompt_sample::PromptSample;
use crate::stats::mrr;
use crate::tokens::{lens_readings, LensOptions, LensReading};
use ndarray::Array2;
use std::fmt;
use std::str::FromStr;
use tch::Tensor;
use util::stats::mean;

/// Pseudo-role of the gold answer token.
pub const ANSWER: &str = "answer";
/// Pseudo-role of the three comparison labels together (metric `recall3`).
pub const LABELS: &str = "labels";

/// A lens target: a role's token read at a position.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetSpec {
    /// A role of the task, `answer` (the gold answer) or `labels` (the three comparison labels,
    /// scored by Recall@3).
    pub role: String,
    /// A position name, or `last` for the answer position.
    pub position: String,
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.role, self.position)
    }
}

impl FromStr for TargetSpec {
    type Err = InterpError;

    /// Parses `ROLE@POSITION`, e.g. `b1@r1`, `v2@e2`, `labels@a`, `answer@last`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().split_once('@') {
            Some((role, position)) if !role.is_empty() && !position.is_empty() => Ok(TargetSpec {
                role: role.to_string(),
                position: position.to_string(),
            }),
            _ => Err(InterpError::spec(
                "lens target",
                s,
                "expected ROLE@POSITION, e.g. b1@r1 or labels@a",
            )),
        }
    }
}

impl TargetSpec {
    fn new(role: &str, position: &str) -> TargetSpec {
        TargetSpec {
            role: role.into(),
            position: position.into(),
        }
    }
}

pub use tasks::LABEL_ROLES;

/// The paper's lens targets for the prompt sample's task ([`tasks::lens_readings`]), keeping those
/// whose roles exist: composition (k hops): each bridge `b_i` at `r_i`, `r_k` at `r_k`;
/// comparison and complex: `v1` at `e1`, `v2` at `e2`, the three labels and their Recall@3 at `a`
/// (when all three are known); then the answer at the last position.
pub fn default_targets(probe: &PromptSample) -> Vec<TargetSpec> {
    let roles = probe.role_names();
    let has = |r: &str| roles.iter().any(|x| x == r);
    let labels_known = LABEL_ROLES.iter().all(|r| has(r));
    let is_label = |r: &str| LABEL_ROLES.contains(&r);
    let mut out = Vec::new();
    for (role, position) in tasks::lens_readings(probe.kind) {
        if (is_label(&role) && labels_known) || (!is_label(&role) && has(&role)) {
            out.push(TargetSpec::new(&role, &position));
        }
        if role == LABEL_ROLES[2] && labels_known {
            out.push(TargetSpec::new(LABELS, &position));
        }
    }
    out.retain(|t| probe.position(&t.position).is_ok());
    out.push(TargetSpec::new(ANSWER, "last"));
    out
}

/// Every role (and the answer) at every position.
pub fn all_targets(probe: &PromptSample) -> Vec<TargetSpec> {
    let mut roles = probe.role_names();
    roles.push(ANSWER.into());
    let mut out: Vec<TargetSpec> = probe
        .positions
        .iter()
        .flat_map(|p| roles.iter().map(move |r| TargetSpec::new(r, p)))
        .collect();
    if probe
        .role_names()
        .iter()
        .filter(|r| LABEL_ROLES.contains(&r.as_str()))
        .count()
        == 3
    {
        out.extend(probe.positions.iter().map(|p| TargetSpec::new(LABELS, p)));
    }
    out
}

/// The lens result of one target.
#[derive(Clone, Debug)]
pub struct TargetResult {
    pub spec: TargetSpec,
    /// Position name (`last` resolved).
    pub position: String,
    /// Position index.
    pub pos: usize,
    /// Layers of the rows of `values`.
    pub layers: Vec<usize>,
    /// Per layer (rows) and example (columns): the 0-based rank of the target token, or for
    /// `labels` the fraction of the three labels among the top 3 tokens.
    pub values: Array2<f64>,
}

impl TargetResult {
    /// The row of `layer`, if it was computed.
    fn row(&self, layer: usize) -> Option<ndarray::ArrayView1<'_, f64>> {
        let i = self.layers.iter().position(|&l| l == layer)?;
        Some(self.values.row(i))
    }

    /// MRR of the target at `layer` (not for `labels`).
    pub fn mrr(&self, layer: usize) -> Option<f64> {
        (self.spec.role != LABELS)
            .then(|| self.row(layer).map(|r| mrr(r.iter().map(|&x| x as i64))))
            .flatten()
    }

    /// The metrics of one layer: `mrr`, `mean_rank`, `top1` for a token; `recall3` for labels.
    pub fn metrics(&self, layer: usize) -> Vec<(&'static str, f64)> {
        let Some(row) = self.row(layer) else {
            return Vec::new();
        };
        if self.spec.role == LABELS {
            return vec![("recall3", mean(row.iter().copied()))];
        }
        vec![
            ("mrr", mrr(row.iter().map(|&x| x as i64))),
            ("mean_rank", mean(row.iter().copied())),
            (
                "top1",
                mean(row.iter().map(|&x| f64::from(u8::from(x == 0.0)))),
            ),
        ]
    }
}

/// The lens over a prompt sample.
#[derive(Clone, Debug)]
pub struct LensResult {
    pub ln_mode: LnMode,
    pub targets: Vec<TargetResult>,
}

impl LensResult {
    /// `lens.csv` rows: per target, layer and metric; the target column is the role, the position
    /// column the position name.
    pub fn rows(&self, step: u64) -> Vec<LensRow> {
        let mut rows = Vec::new();
        for t in &self.targets {
            for &layer in &t.layers {
                for (metric, value) in t.metrics(layer) {
                    rows.push(LensRow {
                        step,
                        corruption: None,
                        layer,
                        position: t.position.clone(),
                        target: t.spec.role.clone(),
                        metric: metric.into(),
                        value,
                    });
                }
            }
        }
        rows
    }

    /// The result of `role` at position name `position`.
    pub fn get(&self, role: &str, position: &str) -> Option<&TargetResult> {
        self.targets
            .iter()
            .find(|t| t.spec.role == role && t.position == position)
    }
}

/// Token ids of a target per example (`[N]`), or `[N, 3]` for `labels`.
fn target_tokens(probe: &PromptSample, spec: &TargetSpec) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for e in &probe.examples {
        if spec.role == ANSWER {
            out.push(i64::from(e.gold));
        } else if spec.role == LABELS {
            for r in LABEL_ROLES {
                probe.check_role(r)?;
                out.push(i64::from(e.roles[r]));
            }
        } else {
            probe.check_role(&spec.role)?;
            out.push(i64::from(e.roles[&spec.role]));
        }
    }
    Ok(out)
}

/// The logit lens of `targets` on the prompt sample's clean inputs at `opts.layers` (`None`:
/// `0..=L`), in chunks of at most `opts.max_rows` examples; with `opts.tuned`, the tuned lens
/// (each state translated by its layer's translator before the readout).
pub fn logit_lens(
    net: &Net,
    probe: &PromptSample,
    targets: &[TargetSpec],
    opts: &LensOptions,
) -> Result<LensResult> {
    let layers = net.layers_or_all(opts.layers)?;
    let prepared = targets
        .iter()
        .map(|spec| TargetTokens::new(net, probe, spec))
        .collect::<Result<Vec<_>>>()?;
    let values = lens_values(net, probe, &prepared, &layers, opts)?;
    Ok(LensResult {
        ln_mode: opts.ln_mode,
        targets: prepared
            .into_iter()
            .zip(values)
            .map(|(target, values)| TargetResult {
                spec: target.spec.clone(),
                position: probe.positions[target.pos].clone(),
                pos: target.pos,
                layers: layers.clone(),
                values,
            })
            .collect(),
    })
}

/// The values of every target at every layer of `layers` (`opts.layers` checked and resolved),
/// `[layers, N]` per target (see [`TargetResult`]): one reading of the token lens
/// ([`lens_readings`]) per target, each token scored by its 0-based rank and the three labels by
/// Recall@3.
fn lens_values(
    net: &Net,
    probe: &PromptSample,
    targets: &[TargetTokens],
    layers: &[usize],
    opts: &LensOptions,
) -> Result<Vec<Array2<f64>>> {
    let n = probe.examples.len();
    let readings: Vec<LensReading> = targets
        .iter()
        .map(|t| LensReading {
            positions: vec![t.pos as i64; n],
            sets: TokenSets::answers_only(&t.tokens),
            metric: if t.spec.role == LABELS {
                Metric::RecallAtK(LABEL_ROLES.len())
            } else {
                Metric::Rank
            },
        })
        .collect();
    let opts = LensOptions {
        layers: Some(layers),
        ..*opts
    };
    let tokens = probe.clean_tokens(net.device());
    Ok(lens_readings(net, &tokens, &readings, &opts)?.1)
}

/// A lens target resolved against the prompt sample: its position and its tokens.
struct TargetTokens<'s> {
    spec: &'s TargetSpec,
    /// The position index the lens reads.
    pos: usize,
    /// The target tokens of every example, `[N, 1]` i64 (`[N, 3]` for `labels`) on the model's
    /// device.
    tokens: Tensor,
}

impl<'s> TargetTokens<'s> {
    /// The target `spec` on the prompt sample. Errors: an unknown position or role.
    fn new(net: &Net, probe: &PromptSample, spec: &'s TargetSpec) -> Result<TargetTokens<'s>> {
        let pos = probe.position(&spec.position)?;
        let width = if spec.role == LABELS { 3 } else { 1 };
        let tokens = Tensor::from_slice(&target_tokens(probe, spec)?)
            .view([probe.examples.len() as i64, width])
            .to_device(net.device());
        Ok(TargetTokens { spec, pos, tokens })
    }
}
