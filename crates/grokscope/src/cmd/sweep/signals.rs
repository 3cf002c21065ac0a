//! `grokscope sweep signals`: which measures announce grokking (docs/experiments.md, "What
//! announces grokking"). For every trained point: each candidate signal's curve over the
//! evaluation steps, the step at which it has completed a fraction of its change after
//! memorisation, and its lead over the steps at which test ID accuracy passes 0.5 and 0.9. One
//! row per (point, signal, fraction) in `signals.csv`; across points, the mean and spread of each
//! lead in `signals_summary.csv`.

use super::answers::AnswerRow;
use super::collect::write_csv;
use super::plan::{PointEntry, Sweep};
use anyhow::{Context, Result};
use plot::data::{read_lens, read_patch, LensRow, Metrics, PatchRow};
use std::path::Path;
use train::metrics::fmt_value;
use util::stats::spread;

/// Fractions of a signal's change (from memorisation to the end of the run) whose first
/// completion counts as the signal "announcing" grokking.
pub const FRACTIONS: [f64; 2] = [0.1, 0.5];
/// Test ID accuracies whose first crossing the leads are measured against.
pub const TEST_ID_LEVELS: [f64; 2] = [0.5, 0.9];
/// Training accuracy (train_inferred) that marks memorisation: every signal's change is measured
/// from the first evaluation at or above it.
pub const MEMORISED: f64 = 0.9;
/// Test ID accuracy column of metrics.csv.
pub const TEST_ID_ACC: &str = "test_inferred_iid_acc";
/// The reference curve: test ID accuracy itself.
pub const ACC_SIGNAL: &str = "test_id_acc";
/// The leads of a signal, as named in the CSV files: over test ID ≥ 0.5, over test ID ≥ 0.9, and
/// over test ID accuracy's own announcing step at the same fraction.
pub const LEADS: [&str; 3] = ["lead_0.5", "lead_0.9", "lead_over_acc"];

/// One signal of one run: `(step, value)` points, ascending in step.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub name: String,
    pub points: Vec<(u64, f64)>,
}

/// A point's curves and its milestones.
pub struct PointSignals {
    pub entry: PointEntry,
    /// First evaluation with training accuracy ≥ [`MEMORISED`].
    pub memorised: Option<u64>,
    /// First evaluation with test ID accuracy ≥ each of [`TEST_ID_LEVELS`].
    pub test_id_steps: [Option<u64>; 2],
    pub curves: Vec<Curve>,
}

/// When one signal of one point announces, and its leads.
#[derive(Clone, Debug, PartialEq)]
pub struct Announcement {
    pub signal: String,
    pub fraction: f64,
    /// Last value minus the value at memorisation.
    pub change: f64,
    pub step: Option<u64>,
    /// The [`LEADS`]: test ID step (or test ID accuracy's announcing step) minus this announcing
    /// step (steps; positive = the signal moved first).
    pub leads: [Option<i64>; 3],
}

/// The finite points at or after `from`.
fn finite_from(points: &[(u64, f64)], from: u64) -> Vec<(u64, f64)> {
    points
        .iter()
        .copied()
        .filter(|(s, v)| *s >= from && v.is_finite())
        .collect()
}

/// The first and last value of the finite points at or after `from`.
fn ends_from(after: &[(u64, f64)]) -> Option<(f64, f64)> {
    Some((after.first()?.1, after.last()?.1))
}

/// The first step ≥ `from` at which the finite points have completed `fraction` of their change
/// from their first value at or after `from` to their last value; `None` when they do not change.
pub fn announce_step(points: &[(u64, f64)], from: u64, fraction: f64) -> Option<u64> {
    let after = finite_from(points, from);
    let (start, end) = ends_from(&after)?;
    let change = end - start;
    if change == 0.0 {
        return None;
    }
    after
        .iter()
        .find(|(_, v)| (v - start) / change >= fraction)
        .map(|(s, _)| *s)
}

/// Every curve's announcing step at each of [`FRACTIONS`] and its [`LEADS`].
pub fn announcements(point: &PointSignals) -> Vec<Announcement> {
    let Some(from) = point.memorised else {
        return Vec::new();
    };
    let acc = point.curves.iter().find(|c| c.name == ACC_SIGNAL);
    let acc_steps = FRACTIONS.map(|f| acc.and_then(|c| announce_step(&c.points, from, f)));
    let [id_low, id_high] = point.test_id_steps;
    let mut out = Vec::new();
    for curve in &point.curves {
        let change = ends_from(&finite_from(&curve.points, from)).map_or(f64::NAN, |(a, b)| b - a);
        for (fraction, acc_step) in FRACTIONS.into_iter().zip(acc_steps) {
            let step = announce_step(&curve.points, from, fraction);
            let leads = [id_low, id_high, acc_step].map(|t| Some(t? as i64 - step? as i64));
            out.push(Announcement {
                signal: curve.name.clone(),
                fraction,
                change,
                step,
                leads,
            });
        }
    }
    out
}

/// The curves from metrics.csv: the decayed-weight norm, test ID loss, gold probability and
/// accuracy (the last as the reference the others are compared with).
pub fn metric_curves(m: &Metrics) -> Vec<Curve> {
    [
        ("weight_norm", "weight_norm"),
        ("test_id_loss", "test_inferred_iid_loss"),
        ("test_id_gold_prob", "test_inferred_iid_p"),
        ("test_id_acc", TEST_ID_ACC),
    ]
    .into_iter()
    .map(|(name, column)| Curve {
        name: name.to_string(),
        points: m
            .points(column)
            .into_iter()
            .map(|(s, v)| (s as u64, v))
            .collect(),
    })
    .filter(|c| !c.points.is_empty())
    .collect()
}

/// `(name, step, value)` triples grouped into curves, in order of first appearance, each sorted
/// by step.
pub fn group_curves(triples: impl IntoIterator<Item = (String, u64, f64)>) -> Vec<Curve> {
    let mut curves: Vec<Curve> = Vec::new();
    for (name, step, value) in triples {
        match curves.iter_mut().find(|c| c.name == name) {
            Some(c) => c.points.push((step, value)),
            None => curves.push(Curve {
                name,
                points: vec![(step, value)],
            }),
        }
    }
    for c in &mut curves {
        c.points.sort_by_key(|p| p.0);
    }
    curves
}

/// Layers strictly inside the rows' range (neither the embeddings nor the last block's output).
fn inner_layer(layer: usize, n_layer: usize) -> bool {
    layer >= 1 && layer < n_layer
}

/// The logit lens's MRR of r2 at the r2 position, one curve per inner layer (`lens_r2@r2_L<l>`).
pub fn lens_curves(rows: &[LensRow], n_layer: usize) -> Vec<Curve> {
    group_curves(
        rows.iter()
            .filter(|r| r.target == "r2" && r.position == "r2" && r.metric == "mrr")
            .filter(|r| inner_layer(r.layer, n_layer))
            .map(|r| (format!("lens_r2@r2_L{}", r.layer), r.step, r.value)),
    )
}

/// Causal strength (residual noising) of the r1 state under the r1 corruption, one curve per
/// inner layer (`causal_r1@r1_L<l>`).
pub fn causal_curves(rows: &[PatchRow], n_layer: usize) -> Vec<Curve> {
    group_curves(
        rows.iter()
            .filter(|r| r.corruption == "r1" && r.position == "r1")
            .filter(|r| r.direction == "noising" && r.component == "resid")
            .filter(|r| r.metric == "causal_strength" && inner_layer(r.layer, n_layer))
            .map(|r| (format!("causal_r1@r1_L{}", r.layer), r.step, r.value)),
    )
}

/// Held-out accuracy of the linear probe of the bridge entity b1, one curve per (position, inner
/// layer) in probe.csv (`probe_b1@<position>_L<l>`).
pub fn probe_curves(rows: &[LensRow], n_layer: usize) -> Vec<Curve> {
    group_curves(
        rows.iter()
            .filter(|r| r.target == "b1" && r.metric == "probe_acc")
            .filter(|r| inner_layer(r.layer, n_layer))
            .map(|r| {
                (
                    format!("probe_b1@{}_L{}", r.position, r.layer),
                    r.step,
                    r.value,
                )
            }),
    )
}

/// Mean loss of the gold answer over the wrongly answered test ID examples, from answers.csv.
pub fn wrong_loss_curve(rows: &[AnswerRow]) -> Curve {
    Curve {
        name: "test_id_loss_wrong".into(),
        points: rows.iter().map(|r| (r.step, r.loss_wrong)).collect(),
    }
}

/// Where `sweep signals` reads a point's linear probes: `points/<p>/probe/probe.csv`.
pub fn probe_csv(sweep: &Sweep, p: &PointEntry) -> std::path::PathBuf {
    sweep.point_dir(p).join("probe").join("probe.csv")
}

/// Reads one trained and traced point's curves and milestones; the probes and answers are
/// optional (absent files add no curve).
pub fn read_point(sweep: &Sweep, p: &PointEntry, answers: &[AnswerRow]) -> Result<PointSignals> {
    let metrics = Metrics::read(&sweep.run_dir(p).join("metrics.csv"))?;
    let train_col = format!("{}_acc", metrics.train_split().unwrap_or("train_inferred"));
    let trace = sweep.trace_dir(p);
    let summary: interp::TraceSummary = serde_json::from_slice(
        &std::fs::read(trace.join("trace.json"))
            .with_context(|| format!("{}: not traced", p.name))?,
    )?;
    let n = summary.n_layer;
    let mut curves = metric_curves(&metrics);
    curves.extend(lens_curves(&read_lens(&trace.join("lens.csv"))?, n));
    curves.extend(causal_curves(&read_patch(&trace.join("patch.csv"))?, n));
    let probes = probe_csv(sweep, p);
    if probes.is_file() {
        curves.extend(probe_curves(&read_lens(&probes)?, n));
    }
    if !answers.is_empty() {
        curves.push(wrong_loss_curve(answers));
    }
    Ok(PointSignals {
        entry: p.clone(),
        memorised: metrics.first_step_at_least(&train_col, MEMORISED),
        test_id_steps: TEST_ID_LEVELS.map(|t| metrics.first_step_at_least(TEST_ID_ACC, t)),
        curves,
    })
}

/// Header of signals.csv.
const SIGNALS_HEADER: [&str; 9] = [
    "point",
    "label",
    "signal",
    "fraction",
    "memorised_step",
    "change",
    "announce_step",
    "test_id_0.5_step",
    "test_id_0.9_step",
];

/// Writes `signals.csv` (one row per point, signal and fraction, ending in the [`LEADS`]) and
/// `signals_summary.csv` (per signal and fraction: points with a lead, then mean, sd, min and max
/// of each lead in steps); returns the summary rows.
pub fn write_tables(dir: &Path, points: &[PointSignals]) -> Result<Vec<Vec<String>>> {
    let mut header: Vec<String> = SIGNALS_HEADER.iter().map(|s| s.to_string()).collect();
    header.extend(LEADS.iter().map(|s| s.to_string()));
    let opt = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut rows = Vec::new();
    let mut all: Vec<Announcement> = Vec::new();
    for p in points {
        for a in announcements(p) {
            rows.push(vec![
                p.entry.name.clone(),
                p.entry.label(),
                a.signal.clone(),
                fmt_value(a.fraction),
                opt(p.memorised.map(|s| s as i64)),
                fmt_value(a.change),
                opt(a.step.map(|s| s as i64)),
                opt(p.test_id_steps[0].map(|s| s as i64)),
                opt(p.test_id_steps[1].map(|s| s as i64)),
            ]);
            rows.last_mut()
                .expect("just pushed")
                .extend(a.leads.map(opt));
            all.push(a);
        }
    }
    write_csv(&dir.join("signals.csv"), &header, &rows)?;
    let summary = summary_rows(&all);
    write_csv(
        &dir.join("signals_summary.csv"),
        &summary_header(),
        &summary,
    )?;
    Ok(summary)
}

/// Header of signals_summary.csv.
pub fn summary_header() -> Vec<String> {
    let mut h = vec!["signal".to_string(), "fraction".into()];
    for lead in LEADS {
        for stat in ["n", "mean", "sd", "min", "max"] {
            h.push(format!("{lead}_{stat}"));
        }
    }
    h
}

/// Per (signal, fraction), in first-seen order: for each of the [`LEADS`], how many points have
/// it and the [`spread`] of its values.
pub fn summary_rows(all: &[Announcement]) -> Vec<Vec<String>> {
    let mut keys: Vec<(String, f64)> = Vec::new();
    for a in all {
        if !keys.iter().any(|(s, f)| *s == a.signal && *f == a.fraction) {
            keys.push((a.signal.clone(), a.fraction));
        }
    }
    keys.iter()
        .map(|(signal, fraction)| {
            let mut row = vec![signal.clone(), fmt_value(*fraction)];
            for level in 0..LEADS.len() {
                let leads: Vec<f64> = all
                    .iter()
                    .filter(|a| a.signal == *signal && a.fraction == *fraction)
                    .filter_map(|a| a.leads[level].map(|l| l as f64))
                    .collect();
                row.push(leads.len().to_string());
                row.extend(spread(&leads).iter().map(|v| fmt_value(*v)));
            }
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logistic step from 0 to 1 centred on `mid` (steps), sampled every 100 steps to 4,500.
    fn sigmoid(mid: f64, width: f64) -> Vec<(u64, f64)> {
        (1..=45)
            .map(|i| {
                let s = i * 100;
                (s, 1.0 / (1.0 + (-(s as f64 - mid) / width).exp()))
            })
            .collect()
    }

    #[test]
    fn announce_step_of_a_logistic_curve_is_where_it_passes_the_fraction() {
        // 1 / (1 + e^{-x}) = 0.1 at x = -ln 9 ≈ -2.197, so with the middle at step 2,050 and
        // width 100 the curve passes 0.1 at step 1,830 (first sample: 1,900) and 0.5 at 2,050
        // (first sample: 2,100); its change from step 100 (≈ 0) to 4,500 (≈ 1) is ≈ 1.
        let curve = sigmoid(2050.0, 100.0);
        assert_eq!(announce_step(&curve, 100, 0.1), Some(1900));
        assert_eq!(announce_step(&curve, 100, 0.5), Some(2100));
        // A falling curve is measured by its own (negative) change.
        let falling: Vec<(u64, f64)> = curve.iter().map(|(s, v)| (*s, 5.0 - 3.0 * v)).collect();
        assert_eq!(announce_step(&falling, 100, 0.5), Some(2100));
    }

    #[test]
    fn announce_step_starts_at_memorisation_and_ignores_a_flat_curve() {
        // A rise then fall: measured from step 1,000 only the fall counts.
        let hump: Vec<(u64, f64)> = (1..=45)
            .map(|i| {
                (
                    i * 100,
                    if i <= 10 {
                        i as f64
                    } else {
                        10.0 - (i - 10) as f64 * 0.2
                    },
                )
            })
            .collect();
        // From 10 at step 1,000 to 3 at step 4,500: half of the fall (6.5) is at step 2,800.
        assert_eq!(announce_step(&hump, 1000, 0.5), Some(2800));
        let flat: Vec<(u64, f64)> = (1..=10).map(|i| (i * 100, 2.0)).collect();
        assert_eq!(announce_step(&flat, 100, 0.1), None);
        assert_eq!(announce_step(&flat, 5000, 0.1), None);
    }

    #[test]
    fn leads_are_test_id_steps_minus_the_announcing_step() {
        let entry: PointEntry = serde_json::from_value(serde_json::json!({
            "index": 0, "name": "p000", "values": {"seed": 1}, "data": "d", "steps": 4500
        }))
        .unwrap();
        let point = PointSignals {
            entry,
            memorised: Some(1000),
            test_id_steps: [Some(2500), None],
            curves: vec![
                Curve {
                    name: "early".into(),
                    points: sigmoid(2050.0, 100.0),
                },
                Curve {
                    name: ACC_SIGNAL.into(),
                    points: sigmoid(2350.0, 100.0),
                },
            ],
        };
        let a = announcements(&point);
        assert_eq!(a.len(), 2 * FRACTIONS.len());
        // The accuracy curve is the same shape 300 steps later.
        assert_eq!(
            (a[0].step, a[0].leads),
            (Some(1900), [Some(600), None, Some(300)])
        );
        assert_eq!(
            (a[1].step, a[1].leads),
            (Some(2100), [Some(400), None, Some(300)])
        );
        assert_eq!(a[2].leads, [Some(300), None, Some(0)]);
        assert!((a[0].change - 1.0).abs() < 1e-3);
    }

    #[test]
    fn spread_of_known_values() {
        let [m, sd, lo, hi] = spread(&[100.0, 200.0, 300.0]);
        assert_eq!((m, lo, hi), (200.0, 100.0, 300.0));
        assert!((sd - 100.0).abs() < 1e-9);
        assert!(spread(&[]).iter().all(|v| v.is_nan()));
        assert!(spread(&[5.0])[1].is_nan());
    }

    #[test]
    fn summary_groups_leads_by_signal_and_fraction() {
        let a = |signal: &str, lead: Option<i64>| Announcement {
            signal: signal.into(),
            fraction: 0.1,
            change: 1.0,
            step: Some(1000),
            leads: [lead, Some(400), None],
        };
        let rows = summary_rows(&[a("x", Some(100)), a("x", Some(300)), a("y", None)]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][..4], ["x", "0.1", "2", "200"].map(String::from));
        assert_eq!(rows[1][2], "0");
        assert_eq!(rows[1][7], "1");
        assert_eq!(summary_header().len(), rows[0].len());
    }

    #[test]
    fn lens_and_causal_curves_keep_the_inner_layers_of_their_target() {
        let lens = |layer, target: &str, step| LensRow {
            step,
            corruption: None,
            layer,
            position: "r2".into(),
            target: target.into(),
            metric: "mrr".into(),
            value: step as f64,
        };
        let rows = vec![
            lens(2, "r2", 200),
            lens(2, "r2", 100),
            lens(0, "r2", 100),
            lens(4, "r2", 100),
            lens(2, "b1", 100),
        ];
        let curves = lens_curves(&rows, 4);
        assert_eq!(curves.len(), 1);
        assert_eq!(curves[0].name, "lens_r2@r2_L2");
        assert_eq!(curves[0].points, vec![(100, 100.0), (200, 200.0)]);
    }
}
