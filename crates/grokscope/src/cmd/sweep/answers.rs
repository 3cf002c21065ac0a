//! Right and wrong answers on the test ID split at every checkpoint of a point's run, for `sweep
//! signals`: the test loss split into the loss on the examples the model answers correctly and on
//! those it gets wrong, which shows whether a rising test loss comes from confident wrong answers.
//! Cached in `points/<p>/answers.csv`.

use super::collect::write_csv;
use super::plan::{PointEntry, Sweep};
use anyhow::{Context, Result};
use interp::load::{list_checkpoints, load_fitted};
use serde::Deserialize;
use std::path::PathBuf;
use tch::Device;
use train::metrics::fmt_value;
use train::tensors::EvalSplit;
use train::{eval, Precision};
use util::stats::mean;

/// The split whose answers are scored (in-distribution inferred facts held out from training).
const SPLIT: &str = "test_inferred_iid";
/// Examples per forward pass.
const BATCH: usize = 1024;

/// One checkpoint's answers on the test ID split: a row of answers.csv.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AnswerRow {
    pub step: u64,
    /// Examples scored.
    pub n: usize,
    /// Fraction answered correctly (argmax = gold).
    pub acc: f64,
    /// Mean cross-entropy of the gold answer over all examples (nats).
    pub loss: f64,
    /// Mean cross-entropy of the gold answer over the correct examples (nats; NaN for none).
    pub loss_correct: f64,
    /// Mean cross-entropy of the gold answer over the wrong examples (nats; NaN for none).
    pub loss_wrong: f64,
}

/// Header of answers.csv.
const HEADER: [&str; 6] = ["step", "n", "acc", "loss", "loss_correct", "loss_wrong"];

/// Where a point's answers are cached.
fn answers_csv(sweep: &Sweep, p: &PointEntry) -> PathBuf {
    sweep.point_dir(p).join("answers.csv")
}

/// Splits per-example `(correct, gold probability)` into an [`AnswerRow`].
pub fn score(step: u64, examples: &[(bool, f64)]) -> AnswerRow {
    let nll = |keep: bool| {
        mean(
            examples
                .iter()
                .filter(|(c, _)| *c == keep)
                .map(|(_, p)| -p.max(f64::MIN_POSITIVE).ln()),
        )
    };
    let correct = examples.iter().filter(|(c, _)| *c).count();
    AnswerRow {
        step,
        n: examples.len(),
        acc: correct as f64 / examples.len().max(1) as f64,
        loss: mean(examples.iter().map(|(_, p)| -p.max(f64::MIN_POSITIVE).ln())),
        loss_correct: nll(true),
        loss_wrong: nll(false),
    }
}

/// The point's answers at every checkpoint: read from answers.csv when it covers the run's
/// checkpoints, else computed (each checkpoint loaded and scored) and written there.
pub fn point_answers(sweep: &Sweep, p: &PointEntry, device: Device) -> Result<Vec<AnswerRow>> {
    let run = sweep.run_dir(p);
    let checkpoints = list_checkpoints(&run)?;
    let path = answers_csv(sweep, p);
    if let Ok(rows) = read(&path) {
        let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
        if steps == checkpoints.iter().map(|(s, _)| *s).collect::<Vec<_>>() {
            return Ok(rows);
        }
    }
    let data = tasks::Dataset::load(&sweep.dir.join(&p.data))?;
    let examples = data
        .splits()
        .into_iter()
        .find(|(name, _)| name == SPLIT)
        .map(|(_, ex)| ex)
        .with_context(|| format!("{}: no {SPLIT} split", p.data))?;
    let split = EvalSplit::new(SPLIT, &examples, data.vocab.pad_id(), device)?;
    let mut rows = Vec::new();
    for (step, file) in &checkpoints {
        let (ckpt, _) = load_fitted(file, &data, device, None)?;
        let preds = eval::predict(&ckpt.model, &split, BATCH, Precision::Fp32)?;
        let scored: Vec<(bool, f64)> = preds
            .iter()
            .zip(&examples)
            .map(|(pr, ex)| (pr.pred == i64::from(ex.answer), pr.gold_prob))
            .collect();
        rows.push(score(*step, &scored));
    }
    write(&path, &rows)?;
    Ok(rows)
}

/// Reads answers.csv.
fn read(path: &std::path::Path) -> Result<Vec<AnswerRow>> {
    let mut r = csv::Reader::from_path(path)?;
    Ok(r.deserialize().collect::<Result<Vec<AnswerRow>, _>>()?)
}

/// Writes answers.csv.
fn write(path: &std::path::Path, rows: &[AnswerRow]) -> Result<()> {
    let header: Vec<String> = HEADER.iter().map(|s| s.to_string()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.step.to_string(),
                r.n.to_string(),
                fmt_value(r.acc),
                fmt_value(r.loss),
                fmt_value(r.loss_correct),
                fmt_value(r.loss_wrong),
            ]
        })
        .collect();
    write_csv(path, &header, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_splits_the_loss_into_right_and_wrong_answers() {
        // Two right answers at p = 1 and 1/e, two wrong at p = e^-4 and e^-2.
        let e = std::f64::consts::E;
        let row = score(
            100,
            &[
                (true, 1.0),
                (true, 1.0 / e),
                (false, e.powi(-4)),
                (false, e.powi(-2)),
            ],
        );
        assert_eq!((row.step, row.n, row.acc), (100, 4, 0.5));
        assert!((row.loss_correct - 0.5).abs() < 1e-12);
        assert!((row.loss_wrong - 3.0).abs() < 1e-12);
        assert!((row.loss - 1.75).abs() < 1e-12);
        assert!(score(0, &[(true, 0.5)]).loss_wrong.is_nan());
    }

    #[test]
    fn answers_csv_round_trips() {
        let dir = std::env::temp_dir().join(format!("answers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("answers.csv");
        let rows = vec![
            score(100, &[(true, 0.5), (false, 0.25)]),
            score(200, &[(true, 1.0)]),
        ];
        write(&path, &rows).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[1].step, back[1].n), (200, 1));
        assert!((back[0].loss_wrong - 4f64.ln()).abs() < 1e-6);
        assert!(back[1].loss_wrong.is_nan());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
