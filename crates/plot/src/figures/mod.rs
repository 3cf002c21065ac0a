//! The figures of a run, drawn from its CSV files alone. Each function reads one CSV file,
//! writes its PNGs into an output folder and returns them with their captions.

mod attention;
mod dla;
mod lens;
mod patch;
mod training;

use std::path::{Path, PathBuf};

pub use attention::attention_patterns;
pub use dla::direct_logit_attribution;
pub use lens::{lens_comparison, logit_lens, probes};
pub use patch::{attribution_patching, causal_tracing};
pub use training::training_curves;

use crate::colormap::ColorScale;
use crate::data::{existing, Metrics, Saturation};
use crate::error::{PlotError, Result};
use crate::heatmap::Heatmap;
use crate::line_chart::AxisScale;
use crate::small_multiples::{Panel, SmallMultiples};

/// The part of the report a figure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Training,
    LogitLens,
    CausalTracing,
    AttributionPatching,
    DirectLogitAttribution,
    Probes,
    Attention,
}

impl Section {
    /// Heading used in the report.
    pub fn title(self) -> &'static str {
        match self {
            Section::Training => "Training",
            Section::LogitLens => "Logit lens",
            Section::CausalTracing => "Causal tracing (activation patching)",
            Section::AttributionPatching => "Attribution patching",
            Section::DirectLogitAttribution => "Direct logit attribution",
            Section::Probes => "Linear probes",
            Section::Attention => "Attention patterns",
        }
    }
}

/// A PNG that was written, with the caption the report shows under it.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub path: PathBuf,
    pub caption: String,
    pub section: Section,
}

/// Choices that apply across figures.
#[derive(Clone, Debug, Default)]
pub struct FigureOptions {
    /// Checkpoint step for the single-step heatmaps (default: each file's last step).
    pub step: Option<u64>,
    /// Earlier step of the circuit change (default: the first step at or after `saturation`).
    pub change_from: Option<u64>,
    /// Later step of the circuit change (default: the last step).
    pub change_to: Option<u64>,
    /// Where training saturated, marked on curves over steps (filled in from metrics.csv).
    pub saturation: Option<Saturation>,
}

/// The CSV files of one run: metrics from the run folder, analyses from the analysis folder.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInputs {
    pub run_dir: PathBuf,
    pub analysis_dir: PathBuf,
    pub metrics: PathBuf,
    pub layer_norms: Option<PathBuf>,
    pub lens: Option<PathBuf>,
    pub patch: Option<PathBuf>,
    pub attribution: Option<PathBuf>,
    pub dla: Option<PathBuf>,
    pub probe: Option<PathBuf>,
    pub attention: Option<PathBuf>,
}

impl RunInputs {
    /// Finds the files of a run; metrics.csv must exist, the others are optional.
    pub fn discover(run_dir: &Path, analysis_dir: &Path) -> Result<RunInputs> {
        let metrics = run_dir.join("metrics.csv");
        if !metrics.is_file() {
            return Err(PlotError::BadFile {
                path: metrics,
                message: "not found (is this a run folder written by `grokscope train`?)"
                    .to_string(),
            });
        }
        let analysis = |name: &str| existing(analysis_dir.join(name));
        Ok(RunInputs {
            run_dir: run_dir.to_path_buf(),
            analysis_dir: analysis_dir.to_path_buf(),
            metrics,
            layer_norms: existing(run_dir.join("layer_norms.csv")),
            lens: analysis("lens.csv"),
            patch: analysis("patch.csv"),
            attribution: analysis("attribution.csv"),
            dla: analysis("dla.csv"),
            probe: analysis("probe.csv"),
            attention: analysis("attention.csv"),
        })
    }

    /// `notebooks-out/<run folder name>`, the analysis folder `grokscope trace` writes by default.
    pub fn default_analysis_dir(run_dir: &Path) -> PathBuf {
        let name = run_dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_os_string()))
            .or_else(|| run_dir.file_name().map(|n| n.to_os_string()))
            .unwrap_or_else(|| "run".into());
        Path::new("notebooks-out").join(name)
    }

    /// Whether any analysis CSV file (lens, patch, attribution, dla, probe, attention) was found.
    pub fn has_analysis(&self) -> bool {
        self.analyses().iter().any(|(csv, _)| csv.is_some())
    }

    /// The files that were found, in reading order.
    pub fn files(&self) -> Vec<&Path> {
        let analyses = self.analyses().into_iter().map(|(csv, _)| csv);
        std::iter::once(self.metrics.as_path())
            .chain(self.layer_norms.as_deref())
            .chain(analyses.flatten().map(PathBuf::as_path))
            .collect()
    }

    /// Each analysis CSV file, when found, with the function drawing its figures, in drawing
    /// order: lens, patch, attribution, dla, probe, attention.
    fn analyses(&self) -> [(&Option<PathBuf>, AnalysisFigures); 6] {
        [
            (&self.lens, logit_lens),
            (&self.patch, causal_tracing),
            (&self.attribution, attribution_patching),
            (&self.dla, direct_logit_attribution),
            (&self.probe, probes),
            (&self.attention, attention_patterns),
        ]
    }
}

/// The figure function of one analysis CSV file: `(csv, out_dir, options)` to the figures it
/// wrote into `out_dir`.
type AnalysisFigures = fn(&Path, &Path, &FigureOptions) -> Result<Vec<Figure>>;

/// Draws every figure the run's files allow into `out_dir`.
pub fn draw_run(
    inputs: &RunInputs,
    out_dir: &Path,
    options: &FigureOptions,
) -> Result<Vec<Figure>> {
    let metrics = Metrics::read(&inputs.metrics)?;
    let options = FigureOptions {
        saturation: options.saturation.clone().or_else(|| metrics.saturation()),
        ..options.clone()
    };
    let mut figures = training_curves(&inputs.metrics, inputs.layer_norms.as_deref(), out_dir)?;
    for (csv, draw) in inputs.analyses() {
        if let Some(csv) = csv {
            figures.extend(draw(csv, out_dir, &options)?);
        }
    }
    Ok(figures)
}

/// Row axis name of every layer heatmap.
pub(crate) const LAYER_AXIS: &str = "layer (0 = embeddings)";
/// x axis name of every curve over training.
pub(crate) const STEP_AXIS: &str = "training step (log scale)";

/// The labels around a grid of coloured cells, shared by a figure's heatmap or panels: `rows`
/// (drawn bottom to top) on the axis `row_axis`, `columns` (left to right) on the axis
/// `col_axis`, and the `quantity` the colour bar names.
pub(crate) struct CellLabels {
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    pub row_axis: &'static str,
    pub col_axis: &'static str,
    pub quantity: String,
}

impl CellLabels {
    /// Saves a heatmap of `values[row][column]` coloured on `scale` to the PNG `path`, at the
    /// heatmap's default size in pixels.
    pub(crate) fn save_heatmap(
        &self,
        path: &Path,
        title: String,
        values: Vec<Vec<f64>>,
        scale: ColorScale,
    ) -> Result<()> {
        let heatmap = Heatmap::new(title, self.rows.clone(), self.columns.clone(), values)
            .axes(self.row_axis, self.col_axis)
            .quantity(self.quantity.clone())
            .scale(scale);
        heatmap.save(path, heatmap.default_size())
    }

    /// Saves small multiples, each panel `values[row][column]`, on the one colour `scale` to the
    /// PNG `path` at their default size in pixels; `per_row` panels a row (`None`: up to 4).
    pub(crate) fn save_panels(
        &self,
        path: &Path,
        title: String,
        panels: Vec<Panel>,
        scale: ColorScale,
        per_row: Option<usize>,
    ) -> Result<()> {
        let mut figure =
            SmallMultiples::new(title, self.rows.clone(), self.columns.clone(), panels)
                .axes(self.row_axis, self.col_axis)
                .quantity(self.quantity.clone())
                .scale(scale);
        if let Some(per_row) = per_row {
            figure = figure.columns(per_row);
        }
        figure.save(path, figure.default_size())
    }
}

/// The x axis of a curve over the training steps `steps`: a log scale named [`STEP_AXIS`] when at
/// least two steps are positive (step 0 then falls off the axis), else a linear one.
pub(crate) fn step_axis(steps: &[u64]) -> (AxisScale, &'static str) {
    if steps.iter().filter(|s| **s > 0).count() >= 2 {
        (AxisScale::Log, STEP_AXIS)
    } else {
        (AxisScale::Linear, "training step")
    }
}

/// A name safe for a file name: letters, digits, `-` and `_`; anything else becomes `_`.
pub(crate) fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// How a metric is named on axes and colour bars.
pub(crate) fn metric_label(metric: &str) -> String {
    match metric {
        "mrr" => "MRR",
        "mean_rank" => "mean rank (0 = top)",
        "top1" => "top-1 accuracy",
        "recall3" => "recall@3",
        "causal_strength" => "causal strength",
        "gold_prob" => "gold probability",
        "logit_diff" => "logit difference",
        "restoration" => "restoration (1 = fully restored)",
        "acc" | "accuracy" => "accuracy",
        other => other,
    }
    .to_string()
}

/// Whether a metric lives in `[0, 1]`, so that its colour scale is fixed to that range.
pub(crate) fn is_unit_metric(metric: &str) -> bool {
    matches!(
        metric,
        "mrr" | "top1" | "recall3" | "causal_strength" | "gold_prob" | "acc" | "accuracy"
    )
}

/// The colour scale of a metric: `[0, 1]` for fractions, diverging when values have both signs,
/// `[0, max]` for other non-negative values.
pub(crate) fn metric_scale(
    metric: &str,
    values: impl IntoIterator<Item = f64> + Clone,
) -> ColorScale {
    let in_unit = values
        .clone()
        .into_iter()
        .filter(|v| v.is_finite())
        .all(|v| (-1e-9..=1.0 + 1e-9).contains(&v));
    if is_unit_metric(metric) && in_unit {
        ColorScale::sequential(0.0, 1.0)
    } else if values.clone().into_iter().any(|v| v < 0.0) {
        ColorScale::diverging_from(values)
    } else {
        ColorScale::sequential_from(values.into_iter().chain([0.0]))
    }
}

/// The colour scale of a metric (see [`metric_scale`]) over every value of `panels`.
pub(crate) fn panels_scale(metric: &str, panels: &[Panel]) -> ColorScale {
    metric_scale(
        metric,
        panels
            .iter()
            .flat_map(|p| p.values.iter().flatten().copied()),
    )
}

/// One panel titled `step <N>` per step of `steps`, holding `matrix(step)`.
pub(crate) fn step_panels(steps: &[u64], matrix: impl Fn(u64) -> Vec<Vec<f64>>) -> Vec<Panel> {
    steps
        .iter()
        .map(|&s| Panel {
            title: format!("step {s}"),
            values: matrix(s),
        })
        .collect()
}

/// The checkpoint a single-step figure shows: `wanted` if the file has it, else the nearest step
/// (with a note for the caption); the last step when nothing is asked for.
pub(crate) fn choose_step(steps: &[u64], wanted: Option<u64>) -> Option<(u64, String)> {
    let last = *steps.iter().max()?;
    let Some(wanted) = wanted else {
        return Some((last, String::new()));
    };
    if steps.contains(&wanted) {
        return Some((wanted, String::new()));
    }
    let nearest = *steps.iter().min_by_key(|s| s.abs_diff(wanted))?;
    Some((
        nearest,
        format!(" Step {wanted} was asked for; this file's nearest checkpoint is {nearest}."),
    ))
}

/// The first step at or after `saturation` (the paper's start of grokking), else the first step.
pub(crate) fn saturation_step(steps: &[u64], saturation: Option<&Saturation>) -> Option<u64> {
    let first = steps.iter().min().copied();
    match saturation {
        Some(sat) => steps
            .iter()
            .filter(|s| **s >= sat.step)
            .min()
            .copied()
            .or(first),
        None => first,
    }
}

/// At most `max` steps spread evenly over `steps` (sorted), always with the first and last and
/// every step of `keep`.
pub(crate) fn spread_steps(steps: &[u64], max: usize, keep: &[u64]) -> Vec<u64> {
    let mut sorted = steps.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() <= max {
        return sorted;
    }
    let n = sorted.len() - 1;
    let mut picked: Vec<u64> = (0..max)
        .map(|i| sorted[(i * n + (max - 1) / 2) / (max - 1).max(1)])
        .collect();
    picked.extend(keep.iter().filter(|k| sorted.contains(k)));
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// The marker (when the saturation step lies within `steps`) and the caption sentence for the
/// saturation step on a curve over training.
pub(crate) fn saturation_note(
    saturation: Option<&Saturation>,
    steps: &[u64],
) -> (Option<(f64, String)>, String) {
    let first = steps.iter().copied().filter(|s| *s > 0).min().unwrap_or(0);
    let last = steps.iter().copied().max().unwrap_or(0);
    match saturation {
        Some(sat) if sat.step < first || sat.step > last => (
            None,
            format!(
                " Training saturated ({} accuracy ≥ {}) at step {}, outside the steps shown.",
                sat.split, sat.threshold, sat.step
            ),
        ),
        Some(sat) => {
            let fallback = if sat.threshold < 0.99 {
                " (it never reached 0.99, so the 0.95 crossing is marked)"
            } else {
                ""
            };
            (
                Some((sat.step as f64, format!("train saturated, step {}", sat.step))),
                format!(
                    " The dashed line marks step {}, where {} accuracy first reached ≥ {}{fallback}: \
                     the paper's start of grokking.",
                    sat.step, sat.split, sat.threshold
                ),
            )
        }
        None => (
            None,
            " Training accuracy never reached 0.95, so no saturation step is marked.".to_string(),
        ),
    }
}

/// The rows of `rows` that `keep` accepts, in order.
pub(crate) fn rows_where<'r, T>(rows: &[&'r T], keep: impl Fn(&T) -> bool) -> Vec<&'r T> {
    rows.iter().copied().filter(|r| keep(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_keeps_ends_and_requested_steps() {
        let steps: Vec<u64> = (1..=30).map(|i| i * 100).collect();
        let picked = spread_steps(&steps, 6, &[1700]);
        assert_eq!(picked.first(), Some(&100));
        assert_eq!(picked.last(), Some(&3000));
        assert!(picked.contains(&1700));
        assert!(picked.len() <= 7);
    }

    #[test]
    fn nearest_step_is_used_with_a_note() {
        assert_eq!(choose_step(&[10, 20, 30], None), Some((30, String::new())));
        let (step, note) = choose_step(&[10, 20, 30], Some(18)).unwrap();
        assert_eq!(step, 20);
        assert!(note.contains("18"));
    }
}
