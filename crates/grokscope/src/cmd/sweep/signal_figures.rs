//! The figures of `sweep signals`, drawn with the `plot` crate: each signal against step (one
//! line per point, the mean test ID milestones marked), the mean lead of each signal, and the
//! test ID loss beside the loss on wrong answers.

use super::answers::AnswerRow;
use super::signals::{PointSignals, FRACTIONS, LEADS, TEST_ID_LEVELS};
use anyhow::Result;
use plot::bar_chart::BarChart;
use plot::line_chart::{LineChart, Series};
use plot::style::palette_color;
use std::path::{Path, PathBuf};
use util::stats::mean;

/// Draws every figure into `out`; returns their paths.
pub fn draw(
    points: &[PointSignals],
    answers: &[Vec<AnswerRow>],
    summary: &[Vec<String>],
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for c in points.iter().flat_map(|p| &p.curves) {
        if !names.contains(&c.name.as_str()) {
            names.push(&c.name);
        }
    }
    for name in names {
        paths.push(signal_curve(points, name, out)?);
    }
    for lead_index in 0..LEADS.len() {
        if let Some(path) = leads_chart(summary, lead_index, out)? {
            paths.push(path);
        }
    }
    if let Some(path) = loss_split(points, answers, out)? {
        paths.push(path);
    }
    Ok(paths)
}

/// The finite `(step, value)` points as chart coordinates.
fn finite(points: impl Iterator<Item = (u64, f64)>) -> Vec<(f64, f64)> {
    points
        .filter(|(_, v)| v.is_finite())
        .map(|(s, v)| (s as f64, v))
        .collect()
}

/// A file stem from a signal name (`@` becomes `_at_`).
fn stem(name: &str) -> String {
    name.replace('@', "_at_")
}

/// One signal against step, one line per point, with the mean test ID milestone steps marked.
fn signal_curve(points: &[PointSignals], name: &str, out: &Path) -> Result<PathBuf> {
    let mut chart = LineChart::new(name, "training step", name).legend_title("point");
    for (i, p) in points.iter().enumerate() {
        if let Some(c) = p.curves.iter().find(|c| c.name == name) {
            let xy = finite(c.points.iter().map(|(s, v)| (*s, *v)));
            chart =
                chart.series(Series::new(p.entry.label(), xy, palette_color(i)).without_markers());
        }
    }
    for (k, level) in TEST_ID_LEVELS.iter().enumerate() {
        let steps: Vec<f64> = points
            .iter()
            .filter_map(|p| p.test_id_steps[k].map(|s| s as f64))
            .collect();
        if !steps.is_empty() {
            chart = chart.marker(mean(steps), format!("test ID {level} (mean)"));
        }
    }
    let path = out.join(format!("curve_{}.png", stem(name)));
    chart.save(&path, chart.default_size())?;
    Ok(path)
}

/// Mean of one of the [`LEADS`] (steps) for every signal, at the first of [`FRACTIONS`]; `None`
/// when no signal has it.
fn leads_chart(summary: &[Vec<String>], lead_index: usize, out: &Path) -> Result<Option<PathBuf>> {
    let fraction = train::metrics::fmt_value(FRACTIONS[0]);
    // Columns: signal, fraction, then (n, mean, sd, min, max) per lead.
    let mean_col = 2 + 5 * lead_index + 1;
    let bars: Vec<(String, f64)> = summary
        .iter()
        .filter(|r| r[1] == fraction)
        .map(|r| (r[0].clone(), r[mean_col].parse().unwrap_or(f64::NAN)))
        .collect();
    if !bars.iter().any(|b| b.1.is_finite()) {
        return Ok(None);
    }
    let over = match TEST_ID_LEVELS.get(lead_index) {
        Some(level) => format!("test ID ≥ {level}"),
        None => "test ID accuracy itself (at the same fraction)".to_string(),
    };
    let title = format!(
        "Lead over {over} (signal at {}% of its change after memorisation)",
        FRACTIONS[0] * 100.0
    );
    let chart = BarChart::new(
        title,
        "mean lead (steps; > 0: the signal moves first)",
        "signal",
        bars,
    );
    let path = out.join(format!("{}.png", LEADS[lead_index]));
    chart.save(&path, chart.default_size())?;
    Ok(Some(path))
}

/// Test ID loss (solid) and the loss on wrong answers (dashed) against step, one colour per point.
fn loss_split(
    points: &[PointSignals],
    answers: &[Vec<AnswerRow>],
    out: &Path,
) -> Result<Option<PathBuf>> {
    let mut chart = LineChart::new(
        "Test ID loss: all examples (solid) and wrong answers only (dashed)",
        "training step",
        "mean cross-entropy of the gold answer (nats)",
    )
    .legend_title("point");
    for (i, (p, rows)) in points.iter().zip(answers).enumerate() {
        let all = finite(rows.iter().map(|r| (r.step, r.loss)));
        let wrong = finite(rows.iter().map(|r| (r.step, r.loss_wrong)));
        let label = p.entry.label();
        chart = chart
            .series(Series::new(format!("{label} all"), all, palette_color(i)).without_markers())
            .series(
                Series::new(format!("{label} wrong"), wrong, palette_color(i))
                    .dashed()
                    .without_markers(),
            );
    }
    if chart.series.iter().all(|s| s.points.is_empty()) {
        return Ok(None);
    }
    let path = out.join("test_id_loss_wrong.png");
    chart.save(&path, chart.default_size())?;
    Ok(Some(path))
}
