//! The sweep's figures, drawn with the `plot` crate from each run's metrics.csv and from the
//! rows of sweep.csv, and the `index.html` around them.

use super::collect::Collected;
use super::plan::Sweep;
use super::spec::value_text;
use anyhow::Result;
use plot::colormap::ColorScale;
use plot::line_chart::{LineChart, Series};
use plot::style::palette_color;
use plotters::style::RGBColor;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Accuracy curves drawn, one figure each: (file stem, metrics.csv column, title).
const CURVES: [(&str, &str, &str); 3] = [
    (
        "curve_train",
        "train_inferred_acc",
        "Training accuracy (train_inferred)",
    ),
    ("curve_test_id", "test_inferred_iid_acc", "Test ID accuracy"),
    (
        "curve_test_ood",
        "test_inferred_ood_acc",
        "Test OOD accuracy",
    ),
];

/// Draws every figure into `out`; returns their paths.
pub fn draw(
    sweep: &Sweep,
    points: &[Collected],
    header: &[String],
    rows: &[Vec<String>],
    out: &Path,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let colors = colors(sweep, points);
    let colour_key = colour_key(sweep);
    let mut paths = Vec::new();
    for (stem, column, title) in CURVES {
        let mut chart = LineChart::new(title, "training step", "accuracy").y_range(0.0, 1.0);
        if let Some(key) = &colour_key {
            chart = chart.legend_title(format!("colour: {key}"));
        }
        for (c, color) in points.iter().zip(&colors) {
            if let Some(m) = &c.metrics {
                let series = Series::new(c.entry.label(), m.points(column), *color);
                chart = chart.series(series.without_markers());
            }
        }
        if chart.series.is_empty() {
            continue;
        }
        let path = out.join(format!("{stem}.png"));
        chart.save(&path, chart.default_size())?;
        paths.push(path);
    }
    if let Some(path) = milestones(sweep, header, rows, out)? {
        paths.push(path);
    }
    Ok(paths)
}

/// The key the curves are coloured by: the first axis's first key.
fn colour_key(sweep: &Sweep) -> Option<String> {
    sweep.manifest.axes.first().map(|a| a.keys[0].clone())
}

/// One colour per point, by its value of the colour key (see [`value_colors`]).
fn colors(sweep: &Sweep, points: &[Collected]) -> Vec<RGBColor> {
    let Some(key) = colour_key(sweep) else {
        return (0..points.len()).map(palette_color).collect();
    };
    let values: Vec<serde_json::Value> = points
        .iter()
        .map(|c| c.entry.values.get(&key).cloned().unwrap_or_default())
        .collect();
    value_colors(&key, &values)
}

/// Colours for the values of `key`: a sequential scale when they are numbers that measure
/// something, else one palette colour per distinct value — seeds are names, not magnitudes, so
/// a `seed` key always gets the palette.
fn value_colors(key: &str, values: &[serde_json::Value]) -> Vec<RGBColor> {
    let numbers: Option<Vec<f64>> = values.iter().map(|v| v.as_f64()).collect();
    if let Some(numbers) = numbers.filter(|_| key != "seed") {
        let scale = ColorScale::sequential_from(numbers.iter().copied());
        return numbers.iter().map(|&x| scale.color(x)).collect();
    }
    let mut distinct: Vec<String> = Vec::new();
    values
        .iter()
        .map(|v| {
            let text = value_text(v);
            let i = distinct.iter().position(|d| *d == text).unwrap_or_else(|| {
                distinct.push(text);
                distinct.len() - 1
            });
            palette_color(i)
        })
        .collect()
}

/// Milestone steps (train and test ID accuracy ≥ 0.9) against the first axis's value, one pair
/// of series per combination of the other axis values; `None` when the axis is not numeric.
fn milestones(
    sweep: &Sweep,
    header: &[String],
    rows: &[Vec<String>],
    out: &Path,
) -> Result<Option<PathBuf>> {
    let Some(key) = colour_key(sweep) else {
        return Ok(None);
    };
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(x_col), Some(train_col), Some(id_col)) = (
        col(&key),
        col("step_train_acc_0.9"),
        col("step_test_id_acc_0.9"),
    ) else {
        return Ok(None);
    };
    let others: Vec<usize> = sweep
        .manifest
        .axes
        .iter()
        .flat_map(|a| a.keys.iter())
        .filter(|k| **k != key)
        .filter_map(|k| col(k))
        .collect();
    let groups = group_rows(header, rows, &others);
    let mut chart = LineChart::new("Milestones", key.clone(), "first step with accuracy ≥ 0.9");
    for (g, (label, members)) in groups.iter().enumerate() {
        for (col, what, dashed) in [(train_col, "train", true), (id_col, "test ID", false)] {
            let mut points: Vec<(f64, f64)> = members
                .iter()
                .filter_map(|r| Some((r[x_col].parse().ok()?, r[col].parse().ok()?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let name = if label.is_empty() {
                what.to_string()
            } else {
                format!("{what}, {label}")
            };
            let series = Series::new(name, points, palette_color(g));
            chart = chart.series(if dashed { series.dashed() } else { series });
        }
    }
    if chart.series.iter().all(|s| s.points.is_empty()) {
        return Ok(None);
    }
    let path = out.join("milestones.png");
    chart.save(&path, chart.default_size())?;
    Ok(Some(path))
}

/// The rows grouped by their values in the `others` columns, as `(label, rows)` in first-seen
/// order; the label is `key=value …`.
pub fn group_rows<'a>(
    header: &[String],
    rows: &'a [Vec<String>],
    others: &[usize],
) -> Vec<(String, Vec<&'a Vec<String>>)> {
    let mut groups: Vec<(String, Vec<&Vec<String>>)> = Vec::new();
    for row in rows {
        let label = others
            .iter()
            .map(|&i| format!("{}={}", header[i], row[i]))
            .collect::<Vec<_>>()
            .join(" ");
        match groups.iter_mut().find(|(l, _)| *l == label) {
            Some((_, members)) => members.push(row),
            None => groups.push((label, vec![row])),
        }
    }
    groups
}

/// `index.html`: the figures, then sweep.csv as a table whose point names link to the runs'
/// reports.
pub fn write_index(
    sweep: &Sweep,
    figures: &[PathBuf],
    header: &[String],
    rows: &[Vec<String>],
) -> Result<PathBuf> {
    let esc = plot::report::escape;
    let mut html = String::new();
    let title = format!("Sweep {}", sweep.manifest.source.display());
    let _ = write!(html, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:90%}}img{{max-width:48%}}</style></head><body>\n<h1>{}</h1>\n<p>{} points; data in <a href=\"sweep.csv\">sweep.csv</a>.</p>\n", esc(&title), esc(&title), rows.len());
    for fig in figures {
        let rel = fig
            .strip_prefix(&sweep.dir)
            .unwrap_or(fig)
            .display()
            .to_string();
        let _ = writeln!(html, "<img src=\"{}\" alt=\"{}\">", esc(&rel), esc(&rel));
    }
    html.push_str("<table>\n<tr>");
    for h in header {
        let _ = write!(html, "<th>{}</th>", esc(h));
    }
    html.push_str("</tr>\n");
    for (row, p) in rows.iter().zip(&sweep.manifest.points) {
        html.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let report = sweep.trace_dir(p).join("index.html");
            if i == 0 && report.is_file() {
                let _ = write!(
                    html,
                    "<td><a href=\"points/{}/trace/index.html\">{}</a></td>",
                    esc(&p.name),
                    esc(cell)
                );
            } else {
                let _ = write!(html, "<td>{}</td>", esc(cell));
            }
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n</body></html>\n");
    let path = sweep.dir.join("index.html");
    std::fs::write(&path, html)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seeds_get_distinct_palette_colours_and_measures_a_scale() {
        let seeds = value_colors("seed", &[json!(42), json!(0), json!(1), json!(0)]);
        assert_eq!(
            seeds,
            [
                palette_color(0),
                palette_color(1),
                palette_color(2),
                palette_color(1)
            ]
        );
        let phi = value_colors("dataset.params.phi", &[json!(3.6), json!(9.0)]);
        let scale = ColorScale::sequential_from([3.6, 9.0]);
        assert_eq!(phi, [scale.color(3.6), scale.color(9.0)]);
    }
}
