//! Learning-rate and checkpoint schedules.

use train::{learning_rate, CheckpointSchedule, LrShape};

#[test]
fn warmup_then_constant_as_huggingface() {
    let lr = |i| learning_rate(1e-3, LrShape::Constant, 200, 1000, i);
    assert_eq!(lr(0), 0.0);
    assert!((lr(100) - 5e-4).abs() < 1e-15);
    assert_eq!(lr(200), 1e-3);
    assert_eq!(lr(999), 1e-3);
    assert_eq!(learning_rate(1e-3, LrShape::Constant, 0, 10, 0), 1e-3);
}

#[test]
fn cosine_decays_to_zero_at_the_last_step() {
    let lr = |i| learning_rate(1.0, LrShape::Cosine, 100, 1100, i);
    assert_eq!(lr(50), 0.5);
    assert_eq!(lr(100), 1.0);
    assert!((lr(600) - 0.5).abs() < 1e-12);
    assert!(lr(1100).abs() < 1e-12);
    assert!(lr(2000) >= 0.0);
}

#[test]
fn paper_schedule_is_dense_then_sparse() {
    let steps = CheckpointSchedule::Paper.steps(160_000);
    assert_eq!(&steps[..3], &[2000, 4000, 6000]);
    assert!(steps.contains(&40_000));
    assert!(!steps.contains(&42_000));
    assert_eq!(
        &steps[steps.len() - 4..],
        &[50_000, 100_000, 150_000, 160_000]
    );
    assert_eq!(steps.len(), 20 + 3 + 1);
}

#[test]
fn every_log_and_explicit_schedules_include_the_last_step() {
    let p = |s: &str| s.parse::<CheckpointSchedule>().unwrap();
    assert_eq!(p("every:300").steps(1000), vec![300, 600, 900, 1000]);
    assert_eq!(p("steps:5,1,7,50").steps(10), vec![1, 5, 7, 10]);
    let log = p("log:5").steps(10_000);
    assert_eq!(log, vec![1, 10, 100, 1000, 10_000]);
    let log = p("log:12").steps(3000);
    assert!(log.len() >= 10 && log.len() <= 12, "{log:?}");
    assert!(log.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*log.last().unwrap(), 3000);
    assert_eq!(p("paper").steps(100), vec![100]);
}

#[test]
fn schedules_round_trip_and_reject_bad_strings() {
    for s in ["paper", "every:10", "log:12", "steps:1,2,30"] {
        assert_eq!(s.parse::<CheckpointSchedule>().unwrap().to_string(), s);
    }
    for bad in [
        "",
        "every",
        "every:0",
        "every:x",
        "log:1",
        "steps:",
        "steps:1,,2",
        "daily",
    ] {
        let err = bad.parse::<CheckpointSchedule>().unwrap_err().to_string();
        assert!(err.contains("checkpoints"), "{bad}: {err}");
    }
}
