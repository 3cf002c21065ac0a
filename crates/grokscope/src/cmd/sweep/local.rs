//! `grokscope sweep run`: the points on this machine, N at a time, each with its share of the
//! threads; every run resumes where it stopped and is traced once trained.

use super::plan::{PointEntry, Sweep};
use super::point::{self, clear_failure, is_trained, is_traced, record_failure};
use anyhow::{bail, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tch::Device;

/// How one point's turn ended.
enum Outcome {
    /// Trained and traced (now or before); the text says what was done now.
    Done(String),
    /// Stopped by Ctrl-C/SIGTERM with a checkpoint written.
    Interrupted(u64),
}

/// Runs every point: `jobs` at a time with `threads / jobs` libtorch threads each. Fails (after
/// all points had their turn) when any point failed.
pub fn run_all(sweep: &Sweep, jobs: usize, threads: usize, device: Device) -> Result<()> {
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    point::ensure_datasets(sweep)?;
    let per_run = (threads / jobs).max(1);
    let stop = train::stop_on_signals()?;
    let points = &sweep.manifest.points;
    println!(
        "sweep {}: {} points, {jobs} at a time, {per_run} threads each",
        sweep.dir.display(),
        points.len()
    );
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(points.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= points.len() || stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(err) = turn(sweep, &points[i], per_run, device, &stop) {
                    failed.lock().unwrap_or_else(|e| e.into_inner()).push(points[i].name.clone());
                    println!("[{}] {} failed: {err}", points[i].name, points[i].label());
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    if stop.load(Ordering::SeqCst) {
        println!("interrupted: run the same command again to resume");
    }
    if !failed.is_empty() {
        bail!("{} of {} points failed: {} (see their error.txt; `grokscope sweep collect` lists them)", failed.len(), points.len(), failed.join(", "));
    }
    Ok(())
}

/// One point's turn: its outcome printed as one progress line, a failure recorded in its
/// `error.txt` (panics included) and returned as a one-line message.
fn turn(
    sweep: &Sweep,
    p: &PointEntry,
    threads: usize,
    device: Device,
    stop: &Arc<AtomicBool>,
) -> Result<(), String> {
    let start = Instant::now();
    clear_failure(sweep, p);
    let result = catch_unwind(AssertUnwindSafe(|| {
        tch::set_num_threads(threads as i32);
        run_point(sweep, p, device, stop)
    }));
    let message = match result {
        Ok(Ok(Outcome::Done(what))) => {
            println!("[{}] {}: {what} ({:.1} s)", p.name, p.label(), start.elapsed().as_secs_f64());
            return Ok(());
        }
        Ok(Ok(Outcome::Interrupted(step))) => {
            println!("[{}] {}: interrupted at step {step} (checkpoint written)", p.name, p.label());
            return Ok(());
        }
        Ok(Err(err)) => format!("{err:#}"),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .map_or_else(|| "panicked".to_string(), |m| format!("panicked: {m}")),
    };
    record_failure(sweep, p, &message);
    Err(message.lines().last().unwrap_or_default().to_string())
}

/// Trains (unless finished) and traces (unless traced) one point.
fn run_point(sweep: &Sweep, p: &PointEntry, device: Device, stop: &Arc<AtomicBool>) -> Result<Outcome> {
    let mut done = Vec::new();
    if !is_trained(sweep, p) {
        let summary = point::train_point(sweep, p, device, Arc::clone(stop))?;
        if summary.interrupted {
            return Ok(Outcome::Interrupted(summary.step));
        }
        done.push(format!("trained steps {}..{}", summary.start_step, summary.step));
    }
    if !is_traced(sweep, p) {
        point::trace_point(sweep, p, device)?;
        done.push("traced".to_string());
    }
    if done.is_empty() {
        done.push("already done".to_string());
    }
    Ok(Outcome::Done(done.join(", ")))
}
