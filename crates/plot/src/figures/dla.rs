//! Direct logit attribution (dla.csv): a bar per component at one step, a layer × head heatmap
//! when heads are listed, and each component over training.

use std::path::Path;

use crate::bar_chart::BarChart;
use crate::colormap::{ColorMap, ColorScale};
use crate::data::{distinct, read_dla, DlaRow};
use crate::error::Result;
use crate::figures::{
    choose_step, saturation_note, step_axis, CellLabels, Figure, FigureOptions, Section,
};
use crate::line_chart::{LineChart, Series};
use crate::style::{format_number, INK};

/// Most components drawn as lines over training (those with the largest contributions).
const MAX_LINES: usize = 8;

const VALUE_AXIS: &str = "direct contribution to the logit difference";

/// Figures from dla.csv: `dla_step<N>.png` (bars, components in file order),
/// `dla_heads_step<N>.png` (layer × head, for components named like `head.<layer>.<head>`) and
/// `dla_over_training.png` (one line per non-head component).
pub fn direct_logit_attribution(
    dla_csv: &Path,
    out_dir: &Path,
    options: &FigureOptions,
) -> Result<Vec<Figure>> {
    let rows = read_dla(dla_csv)?;
    let mut steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    steps.sort_unstable();
    steps.dedup();
    let Some((step, note)) = choose_step(&steps, options.step) else {
        return Ok(Vec::new());
    };
    let components = distinct(rows.iter().map(|r| r.component.as_str()));
    let (heads, others): (Vec<String>, Vec<String>) =
        components.into_iter().partition(|c| head_of(c).is_some());
    let mut figures = Vec::new();
    if !others.is_empty() {
        figures.push(component_bars(&rows, &others, step, &note, out_dir)?);
    }
    if !heads.is_empty() {
        figures.push(head_heatmap(&rows, &heads, step, &note, out_dir)?);
    }
    if steps.len() > 1 && !others.is_empty() {
        figures.push(over_training(&rows, &others, &steps, out_dir, options)?);
    }
    Ok(figures)
}

/// The value of `component` at `step`; NaN when the file has no such row.
fn value_at(rows: &[DlaRow], component: &str, step: u64) -> f64 {
    rows.iter()
        .find(|r| r.component == component && r.step == step)
        .map_or(f64::NAN, |r| r.value)
}

/// `dla_step<N>.png`: one bar per component at `step`, in file order.
fn component_bars(
    rows: &[DlaRow],
    components: &[String],
    step: u64,
    note: &str,
    out_dir: &Path,
) -> Result<Figure> {
    let bars: Vec<(String, f64)> = components
        .iter()
        .map(|c| (c.clone(), value_at(rows, c, step)))
        .collect();
    let total: f64 = bars.iter().map(|b| b.1).filter(|v| v.is_finite()).sum();
    let chart = BarChart::new(
        format!("Direct logit attribution, step {step}"),
        VALUE_AXIS,
        "component",
        bars,
    );
    let path = out_dir.join(format!("dla_step{step}.png"));
    chart.save(&path, chart.default_size())?;
    Ok(Figure {
        path,
        caption: format!(
            "Direct logit attribution at checkpoint {step}: each component's output, scaled by \
             the final LayerNorm's cached scale and projected on the unembedding direction of \
             the gold answer minus its rival. Green pushes towards the gold answer, orange \
             away. The bars sum to {}.{note}",
            format_number(total)
        ),
        section: Section::DirectLogitAttribution,
    })
}

/// The [`MAX_LINES`] components with the largest |value| over `steps`, in file order.
fn largest_components<'c>(
    rows: &[DlaRow],
    components: &'c [String],
    steps: &[u64],
) -> Vec<&'c String> {
    let largest = |c: &String| {
        steps
            .iter()
            .map(|&s| value_at(rows, c, s).abs())
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
    };
    let mut ranked: Vec<&String> = components.iter().collect();
    ranked.sort_by(|a, b| largest(b).total_cmp(&largest(a)));
    ranked.truncate(MAX_LINES);
    components.iter().filter(|c| ranked.contains(c)).collect()
}

/// `dla_over_training.png`: one line per shown component over `steps`, coloured by layer, MLP
/// outputs dashed.
fn over_training(
    rows: &[DlaRow],
    others: &[String],
    steps: &[u64],
    out_dir: &Path,
    options: &FigureOptions,
) -> Result<Figure> {
    let (marker, saturation_text) = saturation_note(options.saturation.as_ref(), steps);
    let (x_scale, x_label) = step_axis(steps);
    let max_layer = others.iter().filter_map(|c| layer_of(c)).max().unwrap_or(0);
    let shown = largest_components(rows, others, steps);
    let left_out = if shown.len() < others.len() {
        format!(
            " The {} components with the largest contributions are shown; {} others are \
             left out.",
            shown.len(),
            others.len() - shown.len()
        )
    } else {
        String::new()
    };
    let mut chart = LineChart::new(
        "Direct logit attribution over training",
        x_label,
        VALUE_AXIS,
    )
    .x_scale(x_scale)
    .legend_title("component");
    for component in shown {
        let points = steps
            .iter()
            .map(|&s| (s as f64, value_at(rows, component, s)))
            .collect();
        let color = match layer_of(component) {
            Some(l) => ColorMap::Sequential.at(0.9 * l as f64 / max_layer.max(1) as f64),
            None => INK,
        };
        let series = Series::new(component.as_str(), points, color);
        chart = chart.series(if component.contains("mlp") {
            series.dashed()
        } else {
            series
        });
    }
    if let Some((x, text)) = &marker {
        chart = chart.marker(*x, text.as_str());
    }
    let path = out_dir.join("dla_over_training.png");
    chart.save(&path, chart.default_size())?;
    Ok(Figure {
        path,
        caption: format!(
            "Direct logit attribution of each component over training; colour follows the \
             layer, MLP outputs are dashed.{left_out}{saturation_text}"
        ),
        section: Section::DirectLogitAttribution,
    })
}

fn head_heatmap(
    rows: &[DlaRow],
    heads: &[String],
    step: u64,
    note: &str,
    out_dir: &Path,
) -> Result<Figure> {
    let cells: Vec<((usize, usize), f64)> = heads
        .iter()
        .filter_map(|c| {
            let value = rows
                .iter()
                .find(|r| &r.component == c && r.step == step)
                .map_or(f64::NAN, |r| r.value);
            head_of(c).map(|lh| (lh, value))
        })
        .collect();
    let n_layers = cells.iter().map(|c| c.0 .0).max().unwrap_or(0) + 1;
    let n_heads = cells.iter().map(|c| c.0 .1).max().unwrap_or(0) + 1;
    let mut values = vec![vec![f64::NAN; n_heads]; n_layers];
    for ((l, h), v) in &cells {
        values[*l][*h] = *v;
    }
    let scale = ColorScale::diverging_from(values.iter().flatten().copied());
    let labels = CellLabels {
        rows: (0..n_layers).map(|l| l.to_string()).collect(),
        columns: (0..n_heads).map(|h| h.to_string()).collect(),
        row_axis: "block",
        col_axis: "head",
        quantity: "contribution to logit difference".to_string(),
    };
    let path = out_dir.join(format!("dla_heads_step{step}.png"));
    let title = format!("Direct logit attribution per head, step {step}");
    labels.save_heatmap(&path, title, values, scale)?;
    Ok(Figure {
        path,
        caption: format!(
            "Direct logit attribution of each attention head (columns) in each block (rows) at \
             checkpoint {step}, on a diverging scale centred at 0.{note}"
        ),
        section: Section::DirectLogitAttribution,
    })
}

/// `(layer, head)` of a component named with "head" and exactly two numbers (`head.3.1`).
fn head_of(component: &str) -> Option<(usize, usize)> {
    if !component.to_ascii_lowercase().contains("head") {
        return None;
    }
    match numbers(component).as_slice() {
        [layer, head] => Some((*layer, *head)),
        _ => None,
    }
}

/// The layer number of a component such as `attn_out.3` or `blocks.3.mlp`.
fn layer_of(component: &str) -> Option<usize> {
    numbers(component).first().copied()
}

fn numbers(text: &str) -> Vec<usize> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}
