//! The stages of one point — its dataset, its training run, its trace and report — shared by the
//! local runner (`sweep run`) and the Slurm tasks (`sweep task`).

use super::plan::{PointEntry, Sweep};
use anyhow::{Context, Result};
use interp::{SampleSpec, TraceOptions};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tch::Device;
use train::{RunSummary, TrainConfig, TrainOptions};

/// Name of the file that holds a point's last failure.
pub const ERROR_FILE: &str = "error.txt";

/// Generates every dataset of the sweep that is not there yet (each distinct spec once).
pub fn ensure_datasets(sweep: &Sweep) -> Result<()> {
    for entry in &sweep.manifest.datasets {
        let dir = sweep.dir.join(&entry.folder);
        if dir.join("dataset.json").is_file() {
            continue;
        }
        let ds = tasks::Dataset::generate(&entry.spec.task, entry.spec.seed)
            .with_context(|| format!("generating {}", entry.folder))?;
        ds.write(&dir)
            .with_context(|| format!("writing {}", dir.display()))?;
        println!(
            "generated {} ({} train examples)",
            entry.folder,
            ds.train.len()
        );
    }
    Ok(())
}

/// True when the point's run has its final checkpoint.
pub fn is_trained(sweep: &Sweep, p: &PointEntry) -> bool {
    train::checkpoint::list(&sweep.run_dir(p))
        .ok()
        .and_then(|steps| steps.last().copied())
        == Some(p.steps)
}

/// True when the point's trace reaches its final checkpoint and its report is written.
pub fn is_traced(sweep: &Sweep, p: &PointEntry) -> bool {
    let dir = sweep.trace_dir(p);
    let summary = std::fs::read(dir.join("trace.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<interp::TraceSummary>(&b).ok());
    summary.is_some_and(|s| s.last_step == p.steps) && dir.join("index.html").is_file()
}

/// Trains (or resumes) the point's run on the sweep's shared dataset; plain log lines only.
pub fn train_point(
    sweep: &Sweep,
    p: &PointEntry,
    device: Device,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary> {
    let dir = sweep.point_dir(p);
    let mut cfg = TrainConfig::from_file(&dir.join("train.json"))?;
    cfg.data_dir = Some(sweep.dir.join(&p.data));
    let opts = TrainOptions {
        device,
        quiet: true,
        data_root: sweep.dir.join("data"),
        stop,
        observer: None,
    };
    let run = sweep.run_dir(p);
    train::train(cfg, &run, &opts).with_context(|| format!("training {}", run.display()))
}

/// Traces every checkpoint of the point's run (checkpoints already traced are kept) and writes
/// the run's figures and report into its trace folder.
pub fn trace_point(sweep: &Sweep, p: &PointEntry, device: Device) -> Result<()> {
    let settings = &sweep.manifest.trace;
    let out = sweep.trace_dir(p);
    let opts = TraceOptions {
        sample: SampleSpec {
            split: settings.split.clone(),
            size: (settings.size > 0).then_some(settings.size),
            seed: settings.seed,
            indices: None,
        },
        steps: None,
        corruptions: None,
        positions: vec![interp::PositionChoice::Corrupted],
        data: Some(sweep.dir.join(&p.data)),
        key_layer: None,
        force: false,
        max_rows: 2048,
        device,
        progress: false,
        rank_over: None,
        allow_other_data: false,
    };
    let run = sweep.run_dir(p);
    {
        // `draw` takes the folder's lock itself, so this one is released before it.
        let _lock = crate::cmd::lock_output(&out)?;
        interp::trace(&run, &out, &opts).with_context(|| format!("tracing {}", run.display()))?;
    }
    report(&run, &out)
}

/// The run's figures and `index.html`, drawn from its CSV files into `out`.
fn report(run: &Path, out: &Path) -> Result<()> {
    let args = crate::cmd::plot::PlotArgs {
        run: run.to_path_buf(),
        analysis: Some(out.to_path_buf()),
        out: Some(out.to_path_buf()),
        step: None,
        change_from: None,
        change_to: None,
    };
    let drawn = crate::cmd::plot::draw(&args)?;
    plot::write_report(&drawn.inputs, &drawn.out_dir, &drawn.figures)?;
    Ok(())
}

/// Records a point's failure in its `error.txt` (shown by `sweep status` and `sweep collect`).
pub fn record_failure(sweep: &Sweep, p: &PointEntry, err: &str) {
    let _ = std::fs::write(sweep.point_dir(p).join(ERROR_FILE), format!("{err}\n"));
}

/// Forgets a point's earlier failure before it runs again.
pub fn clear_failure(sweep: &Sweep, p: &PointEntry) {
    let _ = std::fs::remove_file(sweep.point_dir(p).join(ERROR_FILE));
}

/// The last line of the point's recorded failure, if any.
pub fn last_error(sweep: &Sweep, p: &PointEntry) -> Option<String> {
    let text = std::fs::read_to_string(sweep.point_dir(p).join(ERROR_FILE)).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string)
}
