//! The drawing primitives write valid, non-blank PNGs whose colours follow the data.

mod common;

use common::{assert_valid_png, dark_pixels, load_png, pixel, scratch_dir};
use plot::attention_grid::AttentionGrid;
use plot::bar_chart::BarChart;
use plot::colormap::{ColorMap, ColorScale, NO_DATA};
use plot::heatmap::{Annotate, Heatmap};
use plot::line_chart::{AxisScale, LineChart, Series};
use plot::small_multiples::{Panel, SmallMultiples};
use plot::PlotError;

fn labels(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn layer_by_role(values: Vec<Vec<f64>>) -> Heatmap {
    let rows = (0..values.len()).map(|l| l.to_string()).collect();
    let cols = vec!["h".to_string(), "r1".to_string(), "r2".to_string()];
    Heatmap::new("Logit lens: MRR of b, step 1000", rows, cols, values)
        .axes("layer (0 = embeddings)", "position (token role)")
        .quantity("MRR")
}

#[test]
fn heatmap_png_has_its_size_and_is_not_blank() {
    let dir = scratch_dir("heatmap_png");
    let heatmap = layer_by_role(vec![vec![0.1, 0.5, 0.9]; 5]);
    let size = heatmap.default_size();
    let path = dir.join("heatmap.png");
    heatmap.save(&path, size).unwrap();
    assert_valid_png(&path, size);
}

#[test]
fn heatmap_max_cell_gets_top_colour_and_min_cell_bottom_colour() {
    let dir = scratch_dir("heatmap_extremes");
    let values = vec![
        vec![0.20, 0.35, 0.40],
        vec![0.30, 0.95, 0.50],
        vec![0.05, 0.60, 0.70],
    ];
    let heatmap = layer_by_role(values).annotate(Annotate::Never);
    let size = heatmap.default_size();
    let path = dir.join("extremes.png");
    heatmap.save(&path, size).unwrap();
    let img = load_png(&path);
    let layout = heatmap.layout(size);
    assert_eq!(
        pixel(&img, layout.cell(1, 1).center()),
        ColorMap::Sequential.top()
    );
    assert_eq!(
        pixel(&img, layout.cell(2, 0).center()),
        ColorMap::Sequential.bottom()
    );
    // Row 0 is drawn at the bottom.
    assert!(layout.cell(0, 0).y0 > layout.cell(2, 0).y0);
}

#[test]
fn diverging_map_puts_zero_at_its_centre_colour() {
    let dir = scratch_dir("heatmap_diverging");
    let values = vec![vec![-0.4, 0.0, 0.8], vec![0.2, -0.8, 0.1]];
    let heatmap = layer_by_role(values)
        .scale(ColorScale::diverging_from([-0.4, 0.0, 0.8, 0.2, -0.8, 0.1]))
        .quantity("Δ causal strength")
        .annotate(Annotate::Never);
    let size = heatmap.default_size();
    let path = dir.join("diverging.png");
    heatmap.save(&path, size).unwrap();
    let img = load_png(&path);
    let layout = heatmap.layout(size);
    assert_eq!(
        pixel(&img, layout.cell(0, 1).center()),
        ColorMap::Diverging.centre()
    );
    assert_eq!(
        pixel(&img, layout.cell(0, 2).center()),
        ColorMap::Diverging.top()
    );
    assert_eq!(
        pixel(&img, layout.cell(1, 1).center()),
        ColorMap::Diverging.bottom()
    );
}

#[test]
fn colour_scales_map_ends_centre_and_missing_values() {
    let diverging = ColorScale::diverging(2.0);
    assert_eq!(diverging.color(0.0), ColorMap::Diverging.centre());
    assert_eq!(diverging.color(5.0), ColorMap::Diverging.top());
    assert_eq!(diverging.color(-2.0), ColorMap::Diverging.bottom());
    let sequential = ColorScale::sequential_from([3.0, 7.0, f64::NAN]);
    assert_eq!((sequential.min, sequential.max), (3.0, 7.0));
    assert_eq!(sequential.color(f64::NAN), NO_DATA);
}

#[test]
fn heatmap_text_is_drawn_with_the_embedded_font() {
    let dir = scratch_dir("heatmap_text");
    let heatmap = layer_by_role(vec![vec![0.5; 3]; 3]);
    let size = heatmap.default_size();
    let path = dir.join("text.png");
    heatmap.save(&path, size).unwrap();
    let img = load_png(&path);
    let title_band = dark_pixels(&img, 0, heatmap.layout(size).grid.y0 as u32 - 4);
    assert!(title_band > 200, "title has {title_band} dark pixels");
}

#[test]
fn heatmap_with_mismatched_shape_is_an_error() {
    let heatmap = layer_by_role(vec![vec![0.5, 0.5]]);
    let err = heatmap
        .save(&scratch_dir("heatmap_bad").join("bad.png"), (400, 300))
        .unwrap_err();
    assert!(matches!(err, PlotError::InvalidFigure(_)), "{err}");
}

#[test]
fn small_multiples_share_one_colour_scale() {
    let dir = scratch_dir("small_multiples");
    let rows = labels("", 4);
    let cols = vec!["a".to_string(), "e1".to_string(), "e2".to_string()];
    let panels = (0..3)
        .map(|p| Panel {
            title: format!("step {}", 1000 * (p + 1)),
            values: vec![vec![0.1 * (p + 1) as f64; 3]; 4],
        })
        .collect();
    let figure = SmallMultiples::new("Lens over steps", rows, cols, panels)
        .axes("layer (0 = embeddings)", "position (token role)")
        .quantity("MRR")
        .annotate(Annotate::Never);
    let size = figure.default_size();
    let path = dir.join("small_multiples.png");
    figure.save(&path, size).unwrap();
    assert_valid_png(&path, size);
    let img = load_png(&path);
    let layout = figure.layout(size);
    assert_eq!(layout.panels.len(), 3);
    assert_eq!(
        pixel(&img, figure.cell(&layout, 0, 2, 1).center()),
        ColorMap::Sequential.bottom()
    );
    assert_eq!(
        pixel(&img, figure.cell(&layout, 2, 0, 0).center()),
        ColorMap::Sequential.top()
    );
}

#[test]
fn attention_grid_draws_every_head_of_every_layer() {
    let dir = scratch_dir("attention_grid");
    let roles = vec!["h".to_string(), "r1".to_string(), "r2".to_string()];
    let pattern = vec![
        vec![1.0, f64::NAN, f64::NAN],
        vec![0.3, 0.7, f64::NAN],
        vec![0.0, 0.5, 0.5],
    ];
    let grid = AttentionGrid {
        title: "Attention patterns, step 1000, example 0".to_string(),
        layer_labels: labels("block ", 2),
        head_labels: labels("head ", 3),
        query_labels: roles.clone(),
        key_labels: roles,
        patterns: vec![vec![pattern; 3]; 2],
        annotate: Annotate::Never,
    };
    let size = grid.default_size();
    let path = dir.join("attention.png");
    grid.save(&path, size).unwrap();
    assert_valid_png(&path, size);
    let img = load_png(&path);
    let layout = grid.layout(size);
    assert_eq!(
        pixel(&img, grid.cell(&layout, 1, 2, 0, 0).center()),
        ColorMap::Sequential.top()
    );
    assert_eq!(
        pixel(&img, grid.cell(&layout, 1, 2, 2, 0).center()),
        ColorMap::Sequential.bottom()
    );
    assert_eq!(
        pixel(&img, grid.cell(&layout, 0, 0, 0, 2).center()),
        NO_DATA
    );
}

#[test]
fn log_x_line_chart_with_marker_is_a_valid_png() {
    let dir = scratch_dir("line_chart");
    let steps: [f64; 5] = [0.0, 100.0, 1000.0, 5000.0, 20000.0];
    let chart = LineChart::new(
        "Accuracy per split",
        "training step (log scale)",
        "accuracy",
    )
    .x_scale(AxisScale::Log)
    .y_range(0.0, 1.0)
    .series(Series::new(
        "train_inferred",
        steps.iter().map(|&s| (s, (s / 20000.0).sqrt())).collect(),
        plot::style::palette_color(0),
    ))
    .series(
        Series::new(
            "test_inferred_iid",
            vec![(100.0, 0.0), (1000.0, f64::NAN), (20000.0, 0.9)],
            plot::style::palette_color(1),
        )
        .dashed(),
    )
    .marker(5000.0, "train saturated");
    let size = chart.default_size();
    let path = dir.join("line.png");
    chart.save(&path, size).unwrap();
    assert_valid_png(&path, size);
}

#[test]
fn line_chart_without_drawable_points_is_an_error() {
    let chart = LineChart::new("Nothing", "step", "value")
        .x_scale(AxisScale::Log)
        .series(Series::new(
            "zeros",
            vec![(0.0, 1.0), (5.0, f64::NAN)],
            plot::style::palette_color(0),
        ));
    let err = chart
        .save(&scratch_dir("line_empty").join("empty.png"), (600, 400))
        .unwrap_err();
    assert!(matches!(err, PlotError::InvalidFigure(_)), "{err}");
}

#[test]
fn bar_chart_is_a_valid_png() {
    let dir = scratch_dir("bar_chart");
    let bars = vec![
        ("embed".to_string(), 0.2),
        ("attn_out.0".to_string(), -1.5),
        ("mlp_out.0".to_string(), 3.0),
    ];
    let chart = BarChart::new("DLA", "contribution to logit difference", "component", bars);
    let size = chart.default_size();
    let path = dir.join("bars.png");
    chart.save(&path, size).unwrap();
    assert_valid_png(&path, size);
}

/// A PNG that cannot be written for lack of space fails with the operating system's words, not
/// the bitmap backend's debug form (`IoError(Os { code: 28, … })`). `/dev/full` (Linux) refuses
/// every write with ENOSPC; the figure goes there through a `.png` symlink.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_reported_in_words() {
    let path = scratch_dir("full_disk").join("full.png");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let heatmap = layer_by_role(vec![vec![0.1, 0.5, 0.9]; 3]);
    let err = heatmap.save(&path, heatmap.default_size()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PlotError::WritePng { .. }), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(
        !text.contains("IoError") && !text.contains("Os {"),
        "{text}"
    );
}
