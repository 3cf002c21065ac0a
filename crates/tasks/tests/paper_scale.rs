//! Paper-scale generation timings (ignored by default; run one at a time so that the peak
//! memory reported is that test's own):
//! `cargo test -p tasks --release --test paper_scale -- --ignored --nocapture --test-threads 1 NAME`

mod common;

use std::time::Instant;
use tasks::{ComparisonParams, ComplexParams, CompositionParams, Dataset, TaskSpec};

/// Peak resident memory of this process so far, in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Generates `spec`, writes it, loads it back; prints the times and returns generate+write.
fn time(name: &str, spec: TaskSpec) -> f64 {
    let dir = common::scratch(name).join("out");
    let start = Instant::now();
    let ds = Dataset::generate(&spec, 0).unwrap();
    let generated = start.elapsed().as_secs_f64();
    ds.write(&dir).unwrap();
    let total = start.elapsed().as_secs_f64();
    drop(ds);
    let start = Instant::now();
    let loaded = Dataset::load(&dir).unwrap();
    let load = start.elapsed().as_secs_f64();
    println!(
        "{name}: generate {generated:.2} s, generate+write {total:.2} s, load {load:.2} s, \
         {} train / {} valid / {} test examples, peak RSS {:.0} MiB",
        loaded.train.len(),
        loaded.valid.len(),
        loaded.test.len(),
        peak_rss_mib()
    );
    let _ = std::fs::remove_dir_all(dir);
    total
}

#[test]
#[ignore]
fn paper_composition_phi_18() {
    let spec = TaskSpec::Composition(CompositionParams {
        phi: 18.0,
        ..Default::default()
    });
    assert!(time("composition", spec) < 15.0);
}

#[test]
#[ignore]
fn paper_comparison_phi_12_6() {
    let spec = TaskSpec::Comparison(ComparisonParams {
        phi: 12.6,
        ..Default::default()
    });
    assert!(time("comparison", spec) < 30.0);
    assert!(peak_rss_mib() < 2048.0);
}

#[test]
#[ignore]
fn paper_complex() {
    time("complex", TaskSpec::Complex(ComplexParams::default()));
}

#[test]
#[ignore]
fn paper_composition_three_hops_phi_18() {
    let spec = TaskSpec::Composition(CompositionParams {
        hops: 3,
        phi: 18.0,
        ..Default::default()
    });
    time("composition3", spec);
}
