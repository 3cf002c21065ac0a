//! `grokscope sweep collect`: one `sweep.csv` across the runs, the sweep's figures and an
//! `index.html` that links every run's report.

use super::plan::{PointEntry, Sweep};
use super::point::{is_traced, is_trained, last_error};
use super::spec::value_text;
use anyhow::{Context, Result};
use interp::TraceSummary;
use plot::data::Metrics;
use std::path::Path;
use train::metrics::fmt_value;

/// Test split of in-distribution inferred facts, and of out-of-distribution ones.
const ID_SPLIT: &str = "test_inferred_iid";
const OOD_SPLIT: &str = "test_inferred_ood";
/// Accuracy threshold of the milestones.
const MILESTONE: f64 = 0.9;

/// What is known of one point.
pub struct Collected {
    pub entry: PointEntry,
    /// `done`, `failed`, `trained` (not traced), `partial` (some steps) or `not run`.
    pub status: &'static str,
    pub error: Option<String>,
    pub metrics: Option<Metrics>,
    pub trace: Option<TraceSummary>,
}

/// Reads every point's state, metrics and trace.
pub fn gather(sweep: &Sweep) -> Vec<Collected> {
    sweep
        .manifest
        .points
        .iter()
        .map(|p| {
            let metrics = Metrics::read(&sweep.run_dir(p).join("metrics.csv")).ok();
            let trace = std::fs::read(sweep.trace_dir(p).join("trace.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let error = last_error(sweep, p);
            let status = match (&error, is_trained(sweep, p), is_traced(sweep, p)) {
                (_, true, true) => "done",
                (Some(_), _, _) => "failed",
                (None, true, false) => "trained",
                (None, false, _) if metrics.is_some() => "partial",
                _ => "not run",
            };
            Collected {
                entry: p.clone(),
                status,
                error,
                metrics,
                trace,
            }
        })
        .collect()
}

/// The header and rows of `sweep.csv`.
pub fn table(sweep: &Sweep, points: &[Collected]) -> (Vec<String>, Vec<Vec<String>>) {
    let axis_keys: Vec<String> = sweep
        .manifest
        .axes
        .iter()
        .flat_map(|a| a.keys.clone())
        .collect();
    let mut extra: Vec<String> = Vec::new();
    for c in points {
        for (name, _) in trace_cells(c.trace.as_ref()) {
            if !extra.contains(&name) {
                extra.push(name);
            }
        }
    }
    let mut header = vec!["point".to_string()];
    header.extend(axis_keys.iter().cloned());
    header.extend(METRIC_COLUMNS.iter().map(|s| s.to_string()));
    header.extend(extra.iter().cloned());
    header.push("error".into());
    let rows = points
        .iter()
        .map(|c| {
            let mut row = vec![c.entry.name.clone()];
            row.extend(
                axis_keys
                    .iter()
                    .map(|k| c.entry.values.get(k).map(value_text).unwrap_or_default()),
            );
            row.push(c.status.to_string());
            row.extend(metric_cells(c.metrics.as_ref()));
            let cells = trace_cells(c.trace.as_ref());
            row.extend(extra.iter().map(|name| {
                cells
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| fmt_value(*v))
                    .unwrap_or_default()
            }));
            row.push(c.error.clone().unwrap_or_default());
            row
        })
        .collect();
    (header, rows)
}

/// Columns from metrics.csv (after the point and its axis values).
const METRIC_COLUMNS: [&str; 9] = [
    "status",
    "final_step",
    "final_train_acc",
    "final_test_id_acc",
    "final_test_ood_acc",
    "step_train_acc_0.9",
    "step_test_id_acc_0.9",
    "best_test_ood_acc",
    "best_test_ood_step",
];

/// The metric cells after `status`: final values, milestone steps and the best OOD accuracy.
fn metric_cells(metrics: Option<&Metrics>) -> Vec<String> {
    let Some(m) = metrics else {
        return vec![String::new(); METRIC_COLUMNS.len() - 1];
    };
    let train = m
        .train_split()
        .map(|s| format!("{s}_acc"))
        .unwrap_or_default();
    let (id, ood) = (format!("{ID_SPLIT}_acc"), format!("{OOD_SPLIT}_acc"));
    let last = |col: &str| {
        m.last_value(col)
            .map(|(_, v)| fmt_value(v))
            .unwrap_or_default()
    };
    let first = |col: &str| {
        m.first_step_at_least(col, MILESTONE)
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    let best = m
        .points(&ood)
        .into_iter()
        .filter(|(_, v)| !v.is_nan())
        .fold(None, |best: Option<(f64, f64)>, (s, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((s, v)),
        });
    vec![
        m.steps.last().map(|s| s.to_string()).unwrap_or_default(),
        last(&train),
        last(&id),
        last(&ood),
        first(&train),
        first(&id),
        best.map(|(_, v)| fmt_value(v)).unwrap_or_default(),
        best.map(|(s, _)| (s as u64).to_string())
            .unwrap_or_default(),
    ]
}

/// Tracing summaries of trace.json: the saturation step, each lens key number at the last
/// traced step and each causal strength at the end.
fn trace_cells(trace: Option<&TraceSummary>) -> Vec<(String, f64)> {
    let Some(t) = trace else {
        return Vec::new();
    };
    let mut cells = vec![("saturation_step".to_string(), t.saturation.step as f64)];
    for k in &t.lens {
        if let Some((_, v)) = k.values.last() {
            cells.push((
                format!("lens_{}@{}_L{}_{}", k.target, k.position, k.layer, k.metric),
                *v,
            ));
        }
    }
    for c in &t.causal {
        if let Some(v) = c.end {
            cells.push((
                format!("causal_{}@{}_L{}", c.corruption, c.position, c.layer),
                v,
            ));
        }
    }
    cells
}

/// Writes a table of formatted fields (`sweep.csv`, `seeds.csv`, `signals.csv`) atomically.
pub fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    util::fs::write_atomic(path, util::csv::table(header, rows).as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
