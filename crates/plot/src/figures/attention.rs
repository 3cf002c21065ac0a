//! Attention patterns (attention.csv): one grid of query × key heatmaps (blocks down, heads across)
//! per example at one step.

use std::path::Path;

use crate::attention_grid::AttentionGrid;
use crate::data::{distinct, read_attention, AttentionRow};
use crate::error::Result;
use crate::figures::{choose_step, Figure, FigureOptions, Section};
use crate::heatmap::Annotate;

/// Most examples drawn.
const MAX_EXAMPLES: usize = 4;

/// Figures from attention.csv: `attention_step<N>_example<E>.png` for the first few examples at
/// the chosen step. Query and key positions keep the file's order.
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
    let at_step: Vec<&AttentionRow> = rows.iter().filter(|r| r.step == step).collect();
    let mut examples: Vec<u64> = at_step.iter().map(|r| r.example).collect();
    examples.sort_unstable();
    examples.dedup();
    let mut figures = Vec::new();
    for &example in examples.iter().take(MAX_EXAMPLES) {
        let of_example: Vec<&AttentionRow> = at_step
            .iter()
            .copied()
            .filter(|r| r.example == example)
            .collect();
        let mut layers: Vec<usize> = of_example.iter().map(|r| r.layer).collect();
        layers.sort_unstable();
        layers.dedup();
        let mut heads: Vec<usize> = of_example.iter().map(|r| r.head).collect();
        heads.sort_unstable();
        heads.dedup();
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
        let grid = AttentionGrid {
            title: format!("Attention patterns, step {step}, example {example}"),
            layer_labels: layers.iter().map(|l| format!("block {l}")).collect(),
            head_labels: heads.iter().map(|h| format!("head {h}")).collect(),
            query_labels: queries,
            key_labels: keys,
            patterns,
            annotate: Annotate::Auto,
        };
        let path = out_dir.join(format!("attention_step{step}_example{example}.png"));
        grid.save(&path, grid.default_size())?;
        figures.push(Figure {
            path,
            caption: format!(
                "Attention weights of every head (columns) in every block (rows) for example \
                 {example} at checkpoint {step}: each small grid has one row per query position \
                 and one column per key position; grey cells were not recorded (e.g. future \
                 positions under the causal mask).{note}"
            ),
            section: Section::Attention,
        });
    }
    if examples.len() > MAX_EXAMPLES {
        if let Some(last) = figures.last_mut() {
            last.caption.push_str(&format!(
                " attention.csv has {} examples at this step; the first {MAX_EXAMPLES} are drawn.",
                examples.len()
            ));
        }
    }
    Ok(figures)
}
