//! Training curves from metrics.csv and layer_norms.csv: accuracy, loss, weight norm and mean gold
//! probability per split over steps, with the step where training saturated marked.

use std::path::Path;

use crate::colormap::ColorMap;
use crate::data::{read_layer_norms, Metrics};
use crate::error::Result;
use crate::figures::{saturation_note, Figure, Section, STEP_AXIS};
use crate::line_chart::{AxisScale, LineChart, Series};
use crate::render::render_png;
use crate::style::{format_number, palette_color};

/// Writes training_accuracy.png, training_loss.png, training_weight_norm.png and
/// training_gold_prob.png.
pub fn training_curves(
    metrics_csv: &Path,
    layer_norms_csv: Option<&Path>,
    out_dir: &Path,
) -> Result<Vec<Figure>> {
    let metrics = Metrics::read(metrics_csv)?;
    let saturation = metrics.saturation();
    let (marker, saturation_text) = saturation_note(saturation.as_ref(), &metrics.steps);
    let positive_steps = metrics.steps.iter().filter(|s| **s > 0).count();
    let (x_scale, x_label, step0_note) = if positive_steps >= 2 {
        let note = if metrics.steps.contains(&0) {
            " Step 0 is left out of the log axis."
        } else {
            ""
        };
        (AxisScale::Log, STEP_AXIS, note)
    } else {
        (AxisScale::Linear, "training step", "")
    };
    let split_chart = |title: &str, y_label: &str, suffix: &str| {
        let mut chart = LineChart::new(title, x_label, y_label)
            .x_scale(x_scale)
            .legend_title("split");
        for (i, split) in metrics.splits.iter().enumerate() {
            chart = chart.series(Series::new(
                split.as_str(),
                metrics.points(&format!("{split}{suffix}")),
                palette_color(i),
            ));
        }
        if let Some((x, label)) = &marker {
            chart = chart.marker(*x, label.as_str());
        }
        chart
    };
    let finals = |suffix: &str| {
        metrics
            .splits
            .iter()
            .filter_map(|s| {
                metrics
                    .last_value(&format!("{s}{suffix}"))
                    .map(|(_, v)| format!("{s} {v:.3}"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut figures = Vec::new();

    let accuracy = split_chart("Accuracy per split", "accuracy", "_acc").y_range(-0.02, 1.02);
    let path = out_dir.join("training_accuracy.png");
    accuracy.save(&path, accuracy.default_size())?;
    figures.push(Figure {
        path,
        caption: format!(
            "Accuracy per split over training (greedy answer = gold answer).{saturation_text} \
             Final accuracy: {}.{step0_note}",
            finals("_acc")
        ),
        section: Section::Training,
    });

    let mut loss = split_chart("Loss per split", "cross-entropy loss (nats)", "_loss");
    let train_loss = metrics.points("train_loss");
    loss = loss.series(
        Series::new("train batch loss", train_loss, palette_color(8))
            .dashed()
            .without_markers(),
    );
    let losses = loss
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite());
    let (lo, hi) = losses.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let log_loss = lo > 0.0 && hi / lo > 30.0;
    if log_loss {
        loss = loss.y_scale(AxisScale::Log);
        loss.y_label = "cross-entropy loss (nats, log scale)".to_string();
    }
    let path = out_dir.join("training_loss.png");
    loss.save(&path, loss.default_size())?;
    figures.push(Figure {
        path,
        caption: format!(
            "Loss per split (mean cross-entropy of the answer) and the training batch loss \
             (dashed).{saturation_text} Loss can rise while accuracy rises when probability mass \
             spreads; compare with the gold-probability plot.{step0_note}"
        ),
        section: Section::Training,
    });

    figures.push(weight_norm_figure(
        &metrics,
        layer_norms_csv,
        out_dir,
        x_scale,
        x_label,
        marker.as_ref(),
        &saturation_text,
    )?);

    let gold = split_chart(
        "Mean probability of the gold answer",
        "mean gold probability",
        "_p",
    )
    .y_range(-0.02, 1.02);
    let path = out_dir.join("training_gold_prob.png");
    gold.save(&path, gold.default_size())?;
    figures.push(Figure {
        path,
        caption: format!(
            "Mean probability the model gives the gold answer, per split.{saturation_text} \
             Final: {}.{step0_note}",
            finals("_p")
        ),
        section: Section::Training,
    });
    Ok(figures)
}

fn weight_norm_figure(
    metrics: &Metrics,
    layer_norms_csv: Option<&Path>,
    out_dir: &Path,
    x_scale: AxisScale,
    x_label: &str,
    marker: Option<&(f64, String)>,
    saturation_text: &str,
) -> Result<Figure> {
    let with_marker = |chart: LineChart| match marker {
        Some((x, label)) => chart.marker(*x, label.as_str()),
        None => chart,
    };
    let total = with_marker(
        LineChart::new("Weight norm (decayed parameters)", x_label, "L2 norm")
            .x_scale(x_scale)
            .series(Series::new(
                "total",
                metrics.points("weight_norm"),
                palette_color(0),
            )),
    );
    let per_component = match layer_norms_csv {
        Some(path) => {
            let rows = read_layer_norms(path)?;
            let mut components = crate::data::distinct(rows.iter().map(|r| r.component.as_str()));
            components.sort_by_key(|c| component_rank(c));
            let n = components.len().max(2) - 1;
            let mut chart = LineChart::new("Weight norm per component", x_label, "L2 norm")
                .x_scale(x_scale)
                .legend_title("component");
            for (i, component) in components.iter().enumerate() {
                let mut points: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| &r.component == component)
                    .map(|r| (r.step as f64, r.norm))
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                let color = ColorMap::Sequential.at(0.88 * i as f64 / n as f64);
                chart = chart.series(Series::new(component.as_str(), points, color));
            }
            Some(with_marker(chart)).filter(|c| !c.series.is_empty())
        }
        None => None,
    };
    let path = out_dir.join("training_weight_norm.png");
    let (last_step, last_norm) = metrics.last_value("weight_norm").unwrap_or((0, f64::NAN));
    let mut caption = format!(
        "L2 norm of the weight-decayed parameters (LayerNorm weights and biases excluded), \
         {} at step {last_step}.{saturation_text} Weight decay shrinks the memorising solution; \
         the norm falling while test accuracy rises is the usual signature of grokking.",
        format_number(last_norm)
    );
    match per_component {
        Some(components) => {
            let (w1, h1) = total.default_size();
            let (w2, h2) = components.default_size();
            render_png(&path, (w1.max(w2), h1 + h2), |area| {
                let (top, bottom) = area.split_vertically(h1 as i32);
                total.draw(&top)?;
                components.draw(&bottom)
            })?;
            caption.push_str(" Below: the same per component (layer_norms.csv).");
        }
        None => total.save(&path, total.default_size())?,
    }
    Ok(Figure {
        path,
        caption,
        section: Section::Training,
    })
}

/// `embed` first, then `block.0`, `block.1`, … in numeric order, then the rest.
fn component_rank(component: &str) -> (usize, usize) {
    if component.starts_with("embed") || component.starts_with("wte") {
        return (0, 0);
    }
    match component
        .strip_prefix("block.")
        .and_then(|i| i.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
    {
        Some(i) => (1, i),
        None => (2, 0),
    }
}
