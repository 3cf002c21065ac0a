//! `grokscope verify`: check every checkpoint of a run folder and say what to do about bad ones.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use train::checkpoint::{self, StepCheck};

/// Check a run's checkpoints: every file present, content hashes as recorded, weights finite, a
/// metrics.csv row for each scheduled one.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Run folder, e.g. checkpoints/<run>.
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
}

/// Runs `grokscope verify`: one line per checkpoint on stdout; an error (exit 2) naming the bad
/// steps and the repair when any is bad.
pub fn run(args: &VerifyArgs) -> Result<()> {
    let run = &args.run;
    let config = run.join("config.json");
    if !config.is_file() {
        bail!(
            "{} is not a grokscope run folder (no config.json)",
            run.display()
        );
    }
    let cfg = train::TrainConfig::from_file(&config)?;
    // Checkpoints written on a stop signal have no metrics row; scheduled ones always do.
    let scheduled: BTreeSet<u64> = cfg.checkpoints.steps(cfg.steps).into_iter().collect();
    let steps = step_folders(run)?;
    let logged = metrics_steps(&run.join("metrics.csv"));
    let mut bad = Vec::new();
    for &step in &steps {
        let dir = checkpoint::step_dir(run, step);
        let verdict = match checkpoint::verify_step(&dir, step) {
            StepCheck::Bad(problem) => Err(problem),
            StepCheck::Good { .. } if scheduled.contains(&step) && !logged.contains(&step) => {
                Err("metrics.csv has no row for this step (the log was cut short)".to_string())
            }
            StepCheck::Good { hashed: true } => Ok("ok (hashes match, weights finite)"),
            StepCheck::Good { hashed: false } => Ok("ok (no hash recorded; weights finite)"),
        };
        match verdict {
            Ok(text) => println!("step-{step:<8} {text}"),
            Err(problem) => {
                println!("step-{step:<8} BAD: {problem}");
                bad.push(step);
            }
        }
    }
    if steps.is_empty() {
        println!("no checkpoints in {}", run.display());
    }
    let Some(&first_bad) = bad.first() else {
        println!("{} checkpoints, all good", steps.len());
        return Ok(());
    };
    let names: Vec<String> = bad.iter().map(|s| format!("step-{s}")).collect();
    bail!(
        "{} of {} checkpoints in {} are bad ({}): delete step-{first_bad} and every later step \
         folder, then run the same `grokscope train` command again to redo them",
        bad.len(),
        steps.len(),
        run.display(),
        names.join(", ")
    )
}

/// Steps of every `step-<n>` folder of `run`, complete or not, ascending.
fn step_folders(run: &Path) -> Result<Vec<u64>> {
    let mut steps = Vec::new();
    let read_err = || format!("cannot read the folder {}", run.display());
    for entry in std::fs::read_dir(run).with_context(read_err)? {
        let entry = entry.with_context(read_err)?;
        let step = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("step-")?.parse::<u64>().ok());
        if let Some(step) = step.filter(|_| entry.path().is_dir()) {
            steps.push(step);
        }
    }
    steps.sort_unstable();
    Ok(steps)
}

/// Steps of the complete rows of a metrics.csv (first column); empty when it cannot be read.
fn metrics_steps(path: &Path) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let columns = lines.next().map_or(0, |h| h.split(',').count());
    lines
        .filter(|l| l.split(',').count() == columns)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect()
}
