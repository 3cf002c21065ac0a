//! index.html references every figure by an existing relative path and shows the key numbers.

mod common;

use common::{fixture, scratch_dir};
use plot::data::Metrics;
use plot::figures::{FigureOptions, RunInputs};
use plot::report::KeyNumbers;
use plot::{draw_run, write_report};

/// The values of every `src="…"` attribute.
fn image_sources(html: &str) -> Vec<String> {
    html.split("src=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn report_references_existing_pngs_by_relative_paths() {
    let out = scratch_dir("report");
    let inputs = RunInputs::discover(&fixture("run"), &fixture("analysis")).unwrap();
    let figures = draw_run(&inputs, &out, &FigureOptions::default()).unwrap();
    let index = write_report(&inputs, &out, &figures).unwrap();
    assert_eq!(index, out.join("index.html"));
    let html = std::fs::read_to_string(&index).unwrap();
    let sources = image_sources(&html);
    assert_eq!(sources.len(), figures.len());
    for src in &sources {
        assert!(
            !src.starts_with('/') && !src.contains(':'),
            "{src} is not relative"
        );
        assert!(src.ends_with(".png"), "{src}");
        assert!(
            out.join(src).is_file(),
            "{src} does not exist next to index.html"
        );
    }
    for figure in &figures {
        let caption = figure.caption.replace('\'', "&#39;");
        assert!(
            html.contains(&caption),
            "caption missing: {}",
            figure.caption
        );
    }
    assert!(!html.contains("<script"));
    assert!(html.contains("Training saturated"));
    assert!(html.contains("test_inferred_iid</code> first ≥ 0.9"));
    assert!(html.contains("config.json"));
}

#[test]
fn report_in_another_folder_climbs_to_the_figures() {
    let root = scratch_dir("report_elsewhere");
    let figures_dir = root.join("figures");
    let report_dir = root.join("report");
    let inputs = RunInputs::discover(&fixture("run"), &fixture("analysis")).unwrap();
    let figures = plot::figures::training_curves(&inputs.metrics, None, &figures_dir).unwrap();
    let index = write_report(&inputs, &report_dir, &figures).unwrap();
    let html = std::fs::read_to_string(&index).unwrap();
    for src in image_sources(&html) {
        assert!(src.starts_with("../figures/"), "{src}");
        assert!(report_dir.join(&src).is_file(), "{src}");
    }
}

#[test]
fn key_numbers_of_the_fixture_run() {
    let metrics = Metrics::read(&fixture("run/metrics.csv")).unwrap();
    let numbers = KeyNumbers::from_metrics(&metrics);
    assert_eq!(numbers.last_step, 100000);
    assert_eq!(numbers.saturation.as_ref().map(|s| s.step), Some(10000));
    assert_eq!(numbers.test_id_reached, Some(100000));
    assert_eq!(numbers.final_accuracy.len(), 5);
    assert_eq!(numbers.final_accuracy[0].0, "train_inferred");
    let at_saturation = numbers.weight_norm_at_saturation.unwrap();
    let (last_step, last_norm) = numbers.weight_norm_last.unwrap();
    assert_eq!(last_step, 100000);
    assert!(last_norm < at_saturation);
}
