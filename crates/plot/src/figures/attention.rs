//! Attention patterns (attention.csv): grids of query × key heatmaps (blocks down, heads across)
//! for the mean over the sampled prompts and for the first few examples, and the weights from the
//! last query position over training.

use std::path::Path;

use crate::attention_grid::AttentionGrid;
use crate::colormap::ColorScale;
use crate::data::{distinct, read_attention, AttentionRow};
use crate::error::Result;
use crate::figures::{
    choose_step, rows_where, saturation_step, slug, spread_steps, CellLabels, Figure,
    FigureOptions, Section,
};
use crate::heatmap::Annotate;
use crate::small_multiples::Panel;

/// Most individual examples drawn.
const MAX_EXAMPLES: usize = 4;
/// Most checkpoints (columns) in the figure over training.
const MAX_STEPS: usize = 12;
const QUANTITY: &str = "attention weight";

/// Figures from attention.csv, all at the chosen step unless said otherwise:
/// `attention_step<N>_mean.png` (also at the saturation step when it differs),
/// `attention_step<N>_example<E>.png` for the first few examples, and
/// `attention_from_<query>_over_steps.png` when the file has the mean at two steps or more.
/// Query and key positions keep the file's order.
pub fn attention_patterns(
    attention_csv: &Path,
    out_dir: &Path,
    options: &FigureOptions,
) -> Result<Vec<Figure>> {
    let rows = read_attention(attention_csv)?;
    let mut steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    steps.sort_unstable();
    steps.dedup();
    let Some((step, note)) = choose_step(&steps, options.step) else {
        return Ok(Vec::new());
    };
    let mut grid_steps = vec![(step, note)];
    if let Some(sat) = saturation_step(&steps, options.saturation.as_ref()) {
        if sat != step && rows.iter().any(|r| r.step == sat && r.example.is_none()) {
            grid_steps.insert(
                0,
                (
                    sat,
                    " This is the first traced checkpoint at or after training saturated.".into(),
                ),
            );
        }
    }
    let mut figures = Vec::new();
    for (s, note) in &grid_steps {
        let at_step: Vec<&AttentionRow> = rows.iter().filter(|r| r.step == *s).collect();
        let mut examples: Vec<Option<u64>> = at_step.iter().map(|r| r.example).collect();
        examples.sort_unstable();
        examples.dedup();
        let drawn = examples.iter().filter(|e| e.is_none() || *s == step);
        for &example in drawn.take(MAX_EXAMPLES + 1) {
            figures.push(example_grid(&at_step, *s, example, note, out_dir)?);
        }
        let individual = examples.iter().filter(|e| e.is_some()).count();
        if *s == step && individual > MAX_EXAMPLES {
            if let Some(last) = figures.last_mut() {
                last.caption.push_str(&format!(
                    " attention.csv has {individual} examples at this step; the first \
                     {MAX_EXAMPLES} are drawn."
                ));
            }
        }
    }
    figures.extend(over_steps(&rows, &steps, out_dir, options)?);
    Ok(figures)
}

/// Sorted distinct layers and heads of `rows`.
fn layers_and_heads(rows: &[&AttentionRow]) -> (Vec<usize>, Vec<usize>) {
    let mut layers: Vec<usize> = rows.iter().map(|r| r.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    let mut heads: Vec<usize> = rows.iter().map(|r| r.head).collect();
    heads.sort_unstable();
    heads.dedup();
    (layers, heads)
}

/// The grid of one example (`None`: the mean) at `step`, saved as a PNG.
fn example_grid(
    at_step: &[&AttentionRow],
    step: u64,
    example: Option<u64>,
    note: &str,
    out_dir: &Path,
) -> Result<Figure> {
    let of_example: Vec<&AttentionRow> = rows_where(at_step, |r| r.example == example);
    let (layers, heads) = layers_and_heads(&of_example);
    let queries = distinct(of_example.iter().map(|r| r.query.as_str()));
    let keys = distinct(of_example.iter().map(|r| r.key.as_str()));
    let mut patterns =
        vec![vec![vec![vec![f64::NAN; keys.len()]; queries.len()]; heads.len()]; layers.len()];
    for r in &of_example {
        let index = (
            layers.binary_search(&r.layer),
            heads.binary_search(&r.head),
            queries.iter().position(|q| *q == r.query),
            keys.iter().position(|k| *k == r.key),
        );
        if let (Ok(l), Ok(h), Some(q), Some(k)) = index {
            patterns[l][h][q][k] = r.value;
        }
    }
    let (what, name) = match example {
        Some(e) => (format!("example {e}"), format!("example{e}")),
        None => (
            "the mean over the sampled prompts".to_string(),
            "mean".into(),
        ),
    };
    let grid = AttentionGrid {
        title: format!("Attention patterns, step {step}, {what}"),
        layer_labels: layers.iter().map(|l| format!("layer {l}")).collect(),
        head_labels: heads.iter().map(|h| format!("head {h}")).collect(),
        query_labels: queries,
        key_labels: keys,
        patterns,
        annotate: Annotate::Auto,
    };
    let path = out_dir.join(format!("attention_step{step}_{name}.png"));
    grid.save(&path, grid.default_size())?;
    Ok(Figure {
        path,
        caption: format!(
            "Attention weights of every head (columns) in every layer (rows) for {what} at \
             checkpoint {step}: each small grid has one row per query position and one column per \
             key position; grey cells were not recorded (e.g. future positions under the causal \
             mask).{note}"
        ),
        section: Section::Attention,
    })
}

/// One panel per (layer, head): the mean weight from the last query position to each key
/// position (rows) at up to [`MAX_STEPS`] checkpoints (columns). Nothing without the mean at two
/// steps or more.
fn over_steps(
    rows: &[AttentionRow],
    steps: &[u64],
    out_dir: &Path,
    options: &FigureOptions,
) -> Result<Option<Figure>> {
    let mean: Vec<&AttentionRow> = rows.iter().filter(|r| r.example.is_none()).collect();
    let queries = distinct(mean.iter().map(|r| r.query.as_str()));
    let Some(query) = queries.last() else {
        return Ok(None);
    };
    let from: Vec<&AttentionRow> = mean.into_iter().filter(|r| r.query == *query).collect();
    let mut mean_steps: Vec<u64> = from.iter().map(|r| r.step).collect();
    mean_steps.sort_unstable();
    mean_steps.dedup();
    if mean_steps.len() < 2 {
        return Ok(None);
    }
    let keep: Vec<u64> = saturation_step(steps, options.saturation.as_ref())
        .into_iter()
        .collect();
    let shown = spread_steps(&mean_steps, MAX_STEPS, &keep);
    let keys = distinct(from.iter().map(|r| r.key.as_str()));
    let (layers, heads) = layers_and_heads(&from);
    let panels = head_panels_over_steps(&from, &layers, &heads, &keys, &shown);
    let labels = CellLabels {
        rows: keys,
        columns: shown.iter().map(u64::to_string).collect(),
        row_axis: "key position",
        col_axis: "training step",
        quantity: QUANTITY.to_string(),
    };
    let path = out_dir.join(format!("attention_from_{}_over_steps.png", slug(query)));
    let title = format!("Attention from position {query} over training (mean over examples)");
    let scale = ColorScale::sequential(0.0, 1.0);
    labels.save_panels(&path, title, panels, scale, Some(heads.len()))?;
    Ok(Some(Figure {
        path,
        caption: format!(
            "Mean attention weight from the last position ({query}, where the answer is read) to \
             each key position (rows), per layer (panel rows) and head (panel columns), at {} of \
             the {} checkpoints (columns).",
            shown.len(),
            mean_steps.len()
        ),
        section: Section::Attention,
    }))
}

/// One panel per (layer, head), layer-major: `values[key][step]` of `rows` over the `keys` and
/// the sorted `steps`; NaN where there is no row.
fn head_panels_over_steps(
    rows: &[&AttentionRow],
    layers: &[usize],
    heads: &[usize],
    keys: &[String],
    steps: &[u64],
) -> Vec<Panel> {
    layers
        .iter()
        .flat_map(|&l| heads.iter().map(move |&h| (l, h)))
        .map(|(l, h)| {
            let mut values = vec![vec![f64::NAN; steps.len()]; keys.len()];
            for r in rows.iter().filter(|r| r.layer == l && r.head == h) {
                let k = keys.iter().position(|k| *k == r.key);
                if let (Some(k), Ok(s)) = (k, steps.binary_search(&r.step)) {
                    values[k][s] = r.value;
                }
            }
            Panel {
                title: format!("layer {l}, head {h}"),
                values,
            }
        })
        .collect()
}
