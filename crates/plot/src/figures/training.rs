//! Training curves from metrics.csv and layer_norms.csv: accuracy, loss, weight norm and mean gold
//! probability per split over steps, with the step where training saturated marked.

use std::path::Path;

use crate::colormap::ColorMap;
use crate::data::{distinct, read_layer_norms, Metrics};
use crate::error::Result;
use crate::figures::{saturation_note, step_axis, Figure, Section};
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
    let charts = TrainingCharts::new(&metrics);
    Ok(vec![
        charts.accuracy(out_dir)?,
        charts.loss(out_dir)?,
        charts.weight_norm(layer_norms_csv, out_dir)?,
        charts.gold_prob(out_dir)?,
    ])
}

/// What every training curve shares: the metrics, the step axis and the saturation marker.
struct TrainingCharts<'a> {
    metrics: &'a Metrics,
    x_scale: AxisScale,
    x_label: &'static str,
    /// Caption sentence saying step 0 is off the log axis, or empty.
    step0_note: &'static str,
    /// (step, label) of the saturation line, when it lies within the steps.
    marker: Option<(f64, String)>,
    /// Caption sentence about the saturation step.
    saturation_text: String,
}

impl<'a> TrainingCharts<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        let saturation = metrics.saturation();
        let (marker, saturation_text) = saturation_note(saturation.as_ref(), &metrics.steps);
        let (x_scale, x_label) = step_axis(&metrics.steps);
        let step0_note = if x_scale == AxisScale::Log && metrics.steps.contains(&0) {
            " Step 0 is left out of the log axis."
        } else {
            ""
        };
        TrainingCharts {
            metrics,
            x_scale,
            x_label,
            step0_note,
            marker,
            saturation_text,
        }
    }

    /// The saturation line on `chart`, when there is one.
    fn with_marker(&self, chart: LineChart) -> LineChart {
        match &self.marker {
            Some((x, label)) => chart.marker(*x, label.as_str()),
            None => chart,
        }
    }

    /// One line per split of the column `<split><suffix>` over the steps, with the marker.
    fn split_chart(&self, title: &str, y_label: &str, suffix: &str) -> LineChart {
        let mut chart = LineChart::new(title, self.x_label, y_label)
            .x_scale(self.x_scale)
            .legend_title("split");
        for (i, split) in self.metrics.splits.iter().enumerate() {
            chart = chart.series(Series::new(
                split.as_str(),
                self.metrics.points(&format!("{split}{suffix}")),
                palette_color(i),
            ));
        }
        self.with_marker(chart)
    }

    /// `"<split> <last value>"` of the column `<split><suffix>` for each split, comma-separated.
    fn finals(&self, suffix: &str) -> String {
        self.metrics
            .splits
            .iter()
            .filter_map(|s| {
                self.metrics
                    .last_value(&format!("{s}{suffix}"))
                    .map(|(_, v)| format!("{s} {v:.3}"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// training_accuracy.png: accuracy per split in [0, 1].
    fn accuracy(&self, out_dir: &Path) -> Result<Figure> {
        let chart = self
            .split_chart("Accuracy per split", "accuracy", "_acc")
            .y_range(-0.02, 1.02);
        let path = out_dir.join("training_accuracy.png");
        chart.save(&path, chart.default_size())?;
        Ok(Figure {
            path,
            caption: format!(
                "Accuracy per split over training (greedy answer = gold answer).{} Final \
                 accuracy: {}.{}",
                self.saturation_text,
                self.finals("_acc"),
                self.step0_note
            ),
            section: Section::Training,
        })
    }

    /// training_loss.png: loss per split and the dashed batch loss, on a log y axis when the
    /// losses span more than a factor 30.
    fn loss(&self, out_dir: &Path) -> Result<Figure> {
        let mut loss = self.split_chart("Loss per split", "cross-entropy loss (nats)", "_loss");
        let train_loss = self.metrics.points("train_loss");
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
        if lo > 0.0 && hi / lo > 30.0 {
            loss = loss.y_scale(AxisScale::Log);
            loss.y_label = "cross-entropy loss (nats, log scale)".to_string();
        }
        let path = out_dir.join("training_loss.png");
        loss.save(&path, loss.default_size())?;
        Ok(Figure {
            path,
            caption: format!(
                "Loss per split (mean cross-entropy of the answer) and the training batch loss \
                 (dashed).{} Loss can rise while accuracy rises when probability mass spreads; \
                 compare with the gold-probability plot.{}",
                self.saturation_text, self.step0_note
            ),
            section: Section::Training,
        })
    }

    /// training_gold_prob.png: mean probability of the gold answer per split.
    fn gold_prob(&self, out_dir: &Path) -> Result<Figure> {
        let chart = self
            .split_chart(
                "Mean probability of the gold answer",
                "mean gold probability",
                "_p",
            )
            .y_range(-0.02, 1.02);
        let path = out_dir.join("training_gold_prob.png");
        chart.save(&path, chart.default_size())?;
        Ok(Figure {
            path,
            caption: format!(
                "Mean probability the model gives the gold answer, per split.{} Final: {}.{}",
                self.saturation_text,
                self.finals("_p"),
                self.step0_note
            ),
            section: Section::Training,
        })
    }

    /// training_weight_norm.png: the total weight norm, with the per-component norms of
    /// layer_norms.csv stacked below when given.
    fn weight_norm(&self, layer_norms_csv: Option<&Path>, out_dir: &Path) -> Result<Figure> {
        let total = self.with_marker(
            LineChart::new("Weight norm (decayed parameters)", self.x_label, "L2 norm")
                .x_scale(self.x_scale)
                .series(Series::new(
                    "total",
                    self.metrics.points("weight_norm"),
                    palette_color(0),
                )),
        );
        let per_component = match layer_norms_csv {
            Some(path) => {
                Some(self.with_marker(self.component_norms(path)?)).filter(|c| !c.series.is_empty())
            }
            None => None,
        };
        let path = out_dir.join("training_weight_norm.png");
        let (last_step, last_norm) = self
            .metrics
            .last_value("weight_norm")
            .unwrap_or((0, f64::NAN));
        let mut caption = format!(
            "L2 norm of the weight-decayed parameters (LayerNorm weights and biases excluded), \
             {} at step {last_step}.{} Weight decay shrinks the memorising solution; the norm \
             falling while test accuracy rises is the usual signature of grokking.",
            format_number(last_norm),
            self.saturation_text
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

    /// One line per component of layer_norms.csv (L2 norm over steps), in [`component_rank`]
    /// order, coloured from the embeddings to the last block; no marker.
    fn component_norms(&self, layer_norms_csv: &Path) -> Result<LineChart> {
        let rows = read_layer_norms(layer_norms_csv)?;
        let mut components = distinct(rows.iter().map(|r| r.component.as_str()));
        components.sort_by_key(|c| component_rank(c));
        let n = components.len().max(2) - 1;
        let mut chart = LineChart::new("Weight norm per component", self.x_label, "L2 norm")
            .x_scale(self.x_scale)
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
        Ok(chart)
    }
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
