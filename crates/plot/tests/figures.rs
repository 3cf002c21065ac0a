//! Figures drawn from the fixture CSV files, and clear errors for bad files.

mod common;

use std::path::Path;

use common::{fixture, grey_variance, load_png, scratch_dir};
use plot::data::{read_attention, read_lens, read_patch, Metrics};
use plot::figures::{training_curves, FigureOptions, RunInputs, Section};
use plot::{draw_run, PlotError};

fn fixture_inputs() -> RunInputs {
    RunInputs::discover(&fixture("run"), &fixture("analysis")).unwrap()
}

fn names(figures: &[plot::Figure]) -> Vec<String> {
    figures
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_figure_of_the_fixture_run_is_a_non_blank_png() {
    let out = scratch_dir("draw_run");
    let figures = draw_run(&fixture_inputs(), &out, &FigureOptions::default()).unwrap();
    let names = names(&figures);
    for expected in [
        "training_accuracy.png",
        "training_loss.png",
        "training_weight_norm.png",
        "training_gold_prob.png",
        "lens_b_mrr_step100000.png",
        "lens_b_mrr_over_steps.png",
        "lens_b_mrr_by_layer.png",
        "lens_r2_mrr_by_layer.png",
        "patch_noising_r1_step100000.png",
        "patch_heads_noising_r1_step100000.png",
        "patch_denoising_h_step100000.png",
        "circuit_noising_step10000_and_step100000.png",
        "circuit_change_noising_step10000_to_step100000.png",
        "circuit_noising_over_steps.png",
        "attribution_denoising_h_logit_diff_step100000.png",
        "dla_step100000.png",
        "dla_heads_step100000.png",
        "dla_over_training.png",
        "probe_b_accuracy_step100000.png",
        "attention_step100000_example0.png",
        "attention_step100000_example1.png",
        "attention_step100000_mean.png",
        "attention_from_r2_over_steps.png",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    for figure in &figures {
        assert!(figure.path.starts_with(&out));
        let img = load_png(&figure.path);
        assert!(
            img.width() >= 300 && img.height() >= 250,
            "{}",
            figure.path.display()
        );
        assert!(
            grey_variance(&img) > 100.0,
            "{} is blank",
            figure.path.display()
        );
        assert!(!figure.caption.is_empty());
    }
    assert!(figures.iter().any(|f| f.section == Section::Attention));
}

#[test]
fn training_curves_mark_saturation_at_099() {
    let out = scratch_dir("training_099");
    let figures = training_curves(&fixture("run/metrics.csv"), None, &out).unwrap();
    assert_eq!(figures.len(), 4);
    let accuracy = &figures[0];
    assert!(
        accuracy.caption.contains("step 10000"),
        "{}",
        accuracy.caption
    );
    assert!(accuracy.caption.contains("≥ 0.99"), "{}", accuracy.caption);
}

#[test]
fn training_curves_fall_back_to_095_and_say_so() {
    let metrics = Metrics::read(&fixture("saturation95/metrics.csv")).unwrap();
    let saturation = metrics.saturation().unwrap();
    assert_eq!((saturation.step, saturation.threshold), (20000, 0.95));
    let out = scratch_dir("training_095");
    let figures = training_curves(&fixture("saturation95/metrics.csv"), None, &out).unwrap();
    let caption = &figures[0].caption;
    assert!(caption.contains("≥ 0.95"), "{caption}");
    assert!(caption.contains("never reached 0.99"), "{caption}");
}

#[test]
fn the_circuit_change_defaults_to_saturation_versus_last_step() {
    let out = scratch_dir("circuit_default");
    let figures = draw_run(&fixture_inputs(), &out, &FigureOptions::default()).unwrap();
    let change = figures
        .iter()
        .find(|f| names(std::slice::from_ref(f))[0].starts_with("circuit_change_noising"))
        .unwrap();
    assert!(
        change.caption.contains("from step 10000"),
        "{}",
        change.caption
    );
    assert!(
        change.caption.contains("to step 100000"),
        "{}",
        change.caption
    );
}

#[test]
fn chosen_steps_are_used() {
    let out = scratch_dir("chosen_steps");
    let options = FigureOptions {
        step: Some(2000),
        change_from: Some(2000),
        change_to: Some(10000),
        saturation: None,
    };
    let figures = draw_run(&fixture_inputs(), &out, &options).unwrap();
    let names = names(&figures);
    assert!(
        names.iter().any(|n| n == "lens_b_mrr_step2000.png"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n == "circuit_change_noising_step2000_to_step10000.png"),
        "{names:?}"
    );
}

fn assert_error_names(err: PlotError, file: &str, words: &[&str]) {
    let message = err.to_string();
    assert!(message.contains(file), "{message:?} should name {file}");
    for word in words {
        assert!(message.contains(word), "{message:?} should mention {word}");
    }
}

#[test]
fn a_missing_metrics_column_is_named() {
    let err = Metrics::read(&fixture("bad/metrics_no_weight_norm.csv")).unwrap_err();
    assert!(matches!(err, PlotError::MissingColumn { .. }), "{err}");
    assert_error_names(err, "metrics_no_weight_norm.csv", &["`weight_norm`"]);
}

#[test]
fn a_short_row_is_reported_with_its_line() {
    let err = Metrics::read(&fixture("bad/metrics_short_row.csv")).unwrap_err();
    assert!(matches!(err, PlotError::BadRow { line: 3, .. }), "{err}");
    assert_error_names(err, "metrics_short_row.csv", &["line 3"]);
}

#[test]
fn a_malformed_lens_value_is_named_with_line_and_column() {
    let err = read_lens(&fixture("bad/lens_bad_layer.csv")).unwrap_err();
    assert!(matches!(err, PlotError::BadValue { line: 4, .. }), "{err}");
    assert_error_names(err, "lens_bad_layer.csv", &["line 4", "`layer`", "five"]);
}

#[test]
fn a_missing_patch_column_is_named() {
    let err = read_patch(&fixture("bad/patch_no_value.csv")).unwrap_err();
    assert_error_names(err, "patch_no_value.csv", &["missing column `value`"]);
}

#[test]
fn a_malformed_attention_weight_is_named() {
    let err = read_attention(&fixture("bad/attention_bad_value.csv")).unwrap_err();
    assert_error_names(err, "attention_bad_value.csv", &["`value`", "high"]);
}

#[test]
fn a_bad_analysis_file_fails_the_whole_drawing_with_its_name() {
    let analysis = scratch_dir("bad_analysis");
    std::fs::copy(fixture("bad/lens_bad_layer.csv"), analysis.join("lens.csv")).unwrap();
    let inputs = RunInputs::discover(&fixture("run"), &analysis).unwrap();
    let err = draw_run(&inputs, &analysis, &FigureOptions::default()).unwrap_err();
    assert_error_names(err, "lens.csv", &["`layer`"]);
}

#[test]
fn a_run_folder_without_metrics_is_an_error() {
    let err = RunInputs::discover(&fixture("analysis"), Path::new("nowhere")).unwrap_err();
    assert_error_names(err, "metrics.csv", &["not found"]);
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let err = read_lens(&fixture("analysis/absent.csv")).unwrap_err();
    assert!(matches!(err, PlotError::Io { .. }), "{err}");
    assert_error_names(err, "absent.csv", &[]);
}
