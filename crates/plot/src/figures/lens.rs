//! Logit-lens (lens.csv) and probe (probe.csv) figures: layer × position heatmaps per target at
//! one step, the same over steps as small multiples, and each layer's value over training
//! (the paper's Fig. 4c/5c).

use std::collections::BTreeMap;
use std::path::Path;

use crate::colormap::ColorMap;
use crate::data::{distinct, read_lens, role_rank, roles_in_order, LensRow};
use crate::error::Result;
use crate::figures::{
    choose_step, is_unit_metric, metric_label, metric_scale, panels_scale, rows_where,
    saturation_note, saturation_step, slug, spread_steps, step_axis, step_panels, CellLabels,
    Figure, FigureOptions, Section, LAYER_AXIS,
};
use crate::line_chart::{LineChart, Series};

/// Most checkpoints shown as small multiples.
const MAX_PANELS: usize = 8;

/// What a lens-layout CSV holds.
#[derive(Clone, Copy)]
struct Kind {
    file_prefix: &'static str,
    title: &'static str,
    section: Section,
    what: &'static str,
}

const LENS: Kind = Kind {
    file_prefix: "lens",
    title: "Logit lens",
    section: Section::LogitLens,
    what: "the logit lens (the residual stream read through the final LayerNorm and the \
           unembedding)",
};

const PROBE: Kind = Kind {
    file_prefix: "probe",
    title: "Linear probe",
    section: Section::Probes,
    what: "a linear probe trained on the residual stream (held-out examples)",
};

/// Figures from lens.csv, per target: `lens_<target>_<metric>_step<N>.png` (layer × position),
/// `…_over_steps.png` (small multiples) and `…_by_layer.png` (each layer over training).
/// MRR and recall@3 are drawn when present, otherwise the target's first metric.
pub fn logit_lens(lens_csv: &Path, out_dir: &Path, options: &FigureOptions) -> Result<Vec<Figure>> {
    let rows = read_lens(lens_csv)?;
    lens_like(&rows, LENS, out_dir, options, |metrics| {
        let preferred: Vec<String> = ["mrr", "recall3"]
            .iter()
            .filter(|m| metrics.iter().any(|x| x == *m))
            .map(|m| m.to_string())
            .collect();
        if preferred.is_empty() {
            metrics.iter().take(1).cloned().collect()
        } else {
            preferred
        }
    })
}

/// Figures from probe.csv (same layout as lens.csv), for every target and metric:
/// `probe_<target>_<metric>_step<N>.png`, `…_over_steps.png` and `…_by_layer.png`.
pub fn probes(probe_csv: &Path, out_dir: &Path, options: &FigureOptions) -> Result<Vec<Figure>> {
    let rows = read_lens(probe_csv)?;
    lens_like(&rows, PROBE, out_dir, options, |metrics| metrics.to_vec())
}

fn lens_like(
    rows: &[LensRow],
    kind: Kind,
    out_dir: &Path,
    options: &FigureOptions,
    pick_metrics: impl Fn(&[String]) -> Vec<String>,
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for target in distinct(rows.iter().map(|r| r.target.as_str())) {
        let of_target: Vec<&LensRow> = rows.iter().filter(|r| r.target == target).collect();
        let metrics = distinct(of_target.iter().map(|r| r.metric.as_str()));
        for metric in pick_metrics(&metrics) {
            let selected: Vec<&LensRow> = rows_where(&of_target, |r| r.metric == metric);
            let family = LensFigures {
                grid: LensGrid::new(&selected),
                kind,
                target: &target,
                metric: &metric,
                label: metric_label(&metric),
                name: format!("{}_{}_{}", kind.file_prefix, slug(&target), slug(&metric)),
                out_dir,
                options,
            };
            figures.push(family.step_heatmap()?);
            if family.grid.steps.len() > 1 {
                figures.push(family.over_steps()?);
                figures.extend(family.by_layer()?);
            }
        }
    }
    Ok(figures)
}

/// The rows of one (target, metric), indexed by step, layer and position.
struct LensGrid {
    steps: Vec<u64>,
    layers: Vec<usize>,
    positions: Vec<String>,
    values: BTreeMap<(u64, usize, String), f64>,
}

impl LensGrid {
    fn new(rows: &[&LensRow]) -> LensGrid {
        let mut steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
        steps.sort_unstable();
        steps.dedup();
        let mut layers: Vec<usize> = rows.iter().map(|r| r.layer).collect();
        layers.sort_unstable();
        layers.dedup();
        LensGrid {
            steps,
            layers,
            positions: roles_in_order(rows.iter().map(|r| r.position.as_str())),
            values: rows
                .iter()
                .map(|r| ((r.step, r.layer, r.position.clone()), r.value))
                .collect(),
        }
    }

    fn value(&self, step: u64, layer: usize, position: &str) -> f64 {
        self.values
            .get(&(step, layer, position.to_string()))
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// `[layer][position]` at `step`.
    fn matrix(&self, step: u64) -> Vec<Vec<f64>> {
        self.layers
            .iter()
            .map(|&l| {
                self.positions
                    .iter()
                    .map(|p| self.value(step, l, p))
                    .collect()
            })
            .collect()
    }

    /// The layers as rows and the positions as columns, with `quantity` on the colour bar.
    fn labels(&self, quantity: String) -> CellLabels {
        CellLabels {
            rows: self.layers.iter().map(|l| l.to_string()).collect(),
            columns: self.positions.clone(),
            row_axis: LAYER_AXIS,
            col_axis: "position (token role)",
            quantity,
        }
    }
}

/// The figures of one target and metric of a lens-layout file, and where they go.
struct LensFigures<'a> {
    /// The rows of this target and metric.
    grid: LensGrid,
    kind: Kind,
    target: &'a str,
    metric: &'a str,
    /// The metric's axis label.
    label: String,
    /// File name stem `<prefix>_<target>_<metric>`.
    name: String,
    out_dir: &'a Path,
    options: &'a FigureOptions,
}

impl LensFigures<'_> {
    /// `<name>_step<N>.png`: layer × position at the chosen step.
    fn step_heatmap(&self) -> Result<Figure> {
        let (kind, target, label, grid) = (self.kind, self.target, &self.label, &self.grid);
        let (step, note) =
            choose_step(&grid.steps, self.options.step).unwrap_or((0, String::new()));
        let values = grid.matrix(step);
        let scale = metric_scale(self.metric, values.iter().flatten().copied());
        let path = self.out_dir.join(format!("{}_step{step}.png", self.name));
        let title = format!("{}: {label} of {target}, step {step}", kind.title);
        grid.labels(label.clone())
            .save_heatmap(&path, title, values, scale)?;
        Ok(Figure {
            path,
            caption: format!(
                "{label} of the target {target} under {} at each layer (rows, 0 = embeddings) and \
                 prompt position (columns), checkpoint {step}.{note}",
                kind.what
            ),
            section: kind.section,
        })
    }

    /// `<name>_over_steps.png`: up to [`MAX_PANELS`] steps as small multiples, the saturation
    /// checkpoint kept.
    fn over_steps(&self) -> Result<Figure> {
        let (kind, target, label, grid) = (self.kind, self.target, &self.label, &self.grid);
        let keep: Vec<u64> = saturation_step(&grid.steps, self.options.saturation.as_ref())
            .into_iter()
            .collect();
        let shown = spread_steps(&grid.steps, MAX_PANELS, &keep);
        let panels = step_panels(&shown, |s| grid.matrix(s));
        let scale = panels_scale(self.metric, &panels);
        let path = self.out_dir.join(format!("{}_over_steps.png", self.name));
        let title = format!("{} over training: {label} of {target}", kind.title);
        grid.labels(label.clone())
            .save_panels(&path, title, panels, scale, Some(4))?;
        Ok(Figure {
            path,
            caption: format!(
                "{label} of {target} under {} at {} of the {} checkpoints, on one colour scale.",
                kind.what,
                shown.len(),
                grid.steps.len()
            ),
            section: kind.section,
        })
    }

    /// `<name>_by_layer….png`: one chart per position the target is read at (usually one: b at
    /// r1, r2 at r2, v1 at e1 …).
    fn by_layer(&self) -> Result<Vec<Figure>> {
        let (kind, target, label) = (self.kind, self.target, &self.label);
        let positions = home_positions(target, &self.grid.positions);
        let (marker, saturation_text) =
            saturation_note(self.options.saturation.as_ref(), &self.grid.steps);
        let mut figures = Vec::new();
        for position in &positions {
            let mut chart = self.layer_curves(position);
            if let Some((x, text)) = &marker {
                chart = chart.marker(*x, text.as_str());
            }
            let file = if positions.len() == 1 {
                format!("{}_by_layer.png", self.name)
            } else {
                format!("{}_by_layer_at_{}.png", self.name, slug(position))
            };
            let path = self.out_dir.join(file);
            chart.save(&path, chart.default_size())?;
            figures.push(Figure {
                path,
                caption: format!(
                    "{label} of {target} at position {position} under {}, one line per layer, \
                     over training (the paper's Fig. 4c/5c reads a middle layer, e.g. layer 5 of \
                     8).{saturation_text}",
                    kind.what
                ),
                section: kind.section,
            });
        }
        Ok(figures)
    }

    /// One line per layer: the metric of `target` at `position` against the training step (log
    /// scale when at least two steps are positive), coloured from the first layer to the last.
    fn layer_curves(&self, position: &str) -> LineChart {
        let (target, label, grid) = (self.target, &self.label, &self.grid);
        let (x_scale, x_label) = step_axis(&grid.steps);
        let mut chart = LineChart::new(
            format!(
                "{}: {label} of {target} at position {position}, per layer",
                self.kind.title
            ),
            x_label,
            label.clone(),
        )
        .x_scale(x_scale)
        .legend_title("layer");
        if is_unit_metric(self.metric) {
            chart = chart.y_range(-0.02, 1.02);
        }
        let n = grid.layers.len().max(2) - 1;
        for (i, &layer) in grid.layers.iter().enumerate() {
            let points = grid
                .steps
                .iter()
                .map(|&s| (s as f64, grid.value(s, layer, position)))
                .collect();
            let color = ColorMap::Sequential.at(0.9 * i as f64 / n as f64);
            chart = chart.series(Series::new(format!("layer {layer}"), points, color));
        }
        chart
    }
}

/// The position(s) where a target is meant to be read: the paper's pairs (b at r1, bk at rk, r2 at
/// r2, v1 at e1, v2 at e2, labels at a, the answer t at the last position), else every position.
fn home_positions(target: &str, positions: &[String]) -> Vec<String> {
    if positions.len() <= 1 {
        return positions.to_vec();
    }
    let known = match target {
        "b" => Some("r1".to_string()),
        t if t.starts_with('b') && t[1..].parse::<usize>().is_ok() => Some(format!("r{}", &t[1..])),
        "v1" => Some("e1".to_string()),
        "v2" => Some("e2".to_string()),
        "t" | "answer" | "label" => positions.iter().max_by_key(|p| role_rank(p)).cloned(),
        t if t.starts_with("label") => Some("a".to_string()),
        t => Some(t.to_string()),
    };
    match known.filter(|p| positions.contains(p)) {
        Some(p) => vec![p],
        None => positions.to_vec(),
    }
}

/// Figures comparing the logit lens (`logit_csv`) with the tuned lens (`tuned_csv`, the same
/// layout) at the last step: per target, its MRR at its position against the layer, one line per
/// lens: `lens_vs_tuned_<target>.png`.
pub fn lens_comparison(logit_csv: &Path, tuned_csv: &Path, out_dir: &Path) -> Result<Vec<Figure>> {
    let (logit, tuned) = (read_lens(logit_csv)?, read_lens(tuned_csv)?);
    let mut figures = Vec::new();
    for target in distinct(logit.iter().map(|r| r.target.as_str())) {
        let by_layer = |rows: &[LensRow]| -> Vec<(f64, f64)> {
            let last = rows.iter().map(|r| r.step).max().unwrap_or(0);
            rows.iter()
                .filter(|r| r.target == target && r.metric == "mrr" && r.step == last)
                .map(|r| (r.layer as f64, r.value))
                .collect()
        };
        let (a, b) = (by_layer(&logit), by_layer(&tuned));
        if a.is_empty() || b.is_empty() {
            continue;
        }
        let position = logit
            .iter()
            .find(|r| r.target == target)
            .map_or("", |r| r.position.as_str());
        let chart = LineChart::new(
            format!("MRR of {target} at position {position}: logit lens and tuned lens"),
            LAYER_AXIS,
            metric_label("mrr"),
        )
        .y_range(-0.02, 1.02)
        .legend_title("lens")
        .series(Series::new("logit lens", a, ColorMap::Sequential.at(0.3)))
        .series(Series::new("tuned lens", b, ColorMap::Sequential.at(0.8)).dashed());
        let path = out_dir.join(format!("lens_vs_tuned_{}.png", slug(&target)));
        chart.save(&path, chart.default_size())?;
        figures.push(Figure {
            path,
            caption: format!(
                "MRR of {target} at position {position} per layer, read by the logit lens (ln_f and \
                 the unembedding) and by the tuned lens (a trained affine translator per layer first)."
            ),
            section: Section::LogitLens,
        });
    }
    Ok(figures)
}
