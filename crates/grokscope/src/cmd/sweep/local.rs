//! `grokscope sweep run`: the points on this machine, N at a time, each with its share of the
//! threads; every run resumes where it stopped and is traced once trained.
//!
//! Each stage of a point runs as `grokscope sweep task` in a child process — the very command a
//! Slurm array task runs — with its output in the point's `train.log` / `trace.log`. Separate
//! processes keep concurrent runs deterministic: libtorch's random generator is global to a
//! process, so two runs initialised in one process would interleave their draws
//! (docs/sweeps.md).

use super::plan::{PointEntry, Sweep};
use super::point::{self, clear_failure, is_traced, is_trained, last_error, record_failure};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tch::Device;

/// Runs every point: `jobs` (≥ 1) at a time with `threads / jobs` libtorch threads each. Fails
/// (after every point had its turn) when any point failed.
pub fn run_all(sweep: &Sweep, jobs: usize, threads: usize, device: Device) -> Result<()> {
    point::ensure_datasets(sweep)?;
    let per_run = (threads / jobs).max(1);
    let stop = train::stop_on_signals()?;
    let points = &sweep.manifest.points;
    println!(
        "sweep {}: {} points, {jobs} at a time, {per_run} threads each",
        sweep.dir.display(),
        points.len()
    );
    let runner = Runner {
        sweep,
        threads: per_run,
        device,
        stop: &stop,
    };
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(points.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= points.len() || stop.load(Ordering::SeqCst) {
                    break;
                }
                if !runner.turn(&points[i]) {
                    failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(points[i].name.clone());
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    if stop.load(Ordering::SeqCst) {
        println!("interrupted: run the same command again to resume");
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} points failed: {} (see their error.txt; sweep.csv lists them)",
            failed.len(),
            points.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// What every point's turn shares.
struct Runner<'a> {
    sweep: &'a Sweep,
    threads: usize,
    device: Device,
    stop: &'a AtomicBool,
}

impl Runner<'_> {
    /// One point's turn: train unless trained, trace unless traced, one progress line. Returns
    /// false when the point failed.
    fn turn(&self, p: &PointEntry) -> bool {
        let start = Instant::now();
        let mut done = Vec::new();
        let result = (|| -> Result<bool> {
            for (stage, finished) in [
                ("train", is_trained as fn(&Sweep, &PointEntry) -> bool),
                ("trace", is_traced),
            ] {
                if finished(self.sweep, p) {
                    continue;
                }
                self.stage(p, stage)?;
                if !finished(self.sweep, p) {
                    return Ok(false);
                }
                done.push(if stage == "train" {
                    "trained"
                } else {
                    "traced"
                });
            }
            Ok(true)
        })();
        let label = format!("[{}] {}", p.name, p.label());
        match result {
            Ok(true) if done.is_empty() => println!("{label}: already done"),
            Ok(true) => println!(
                "{label}: {} ({:.1} s)",
                done.join(", "),
                start.elapsed().as_secs_f64()
            ),
            Ok(false) => println!("{label}: interrupted (checkpoint written; run again to resume)"),
            Err(err) => {
                println!("{label}: failed: {err:#}");
                return false;
            }
        }
        true
    }

    /// Runs `grokscope sweep task DIR --stage STAGE --index I` for the point, its output appended
    /// to the point's `STAGE.log`; forwards one SIGTERM to it when this process is asked to stop.
    fn stage(&self, p: &PointEntry, stage: &str) -> Result<()> {
        clear_failure(self.sweep, p);
        let log_path = self.sweep.point_dir(p).join(format!("{stage}.log"));
        let log = File::options().create(true).append(true).open(&log_path)?;
        let exe = std::env::current_exe().context("cannot locate the grokscope binary")?;
        let device = if self.device.is_cuda() { "cuda" } else { "cpu" };
        let mut child = Command::new(exe)
            .args([
                "--device",
                device,
                "--threads",
                &self.threads.to_string(),
                "sweep",
                "task",
            ])
            .arg(&self.sweep.dir)
            .args(["--stage", stage, "--index", &p.index.to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("cannot start grokscope sweep task")?;
        let status = wait_forwarding(&mut child, self.stop)?;
        if status.success() {
            return Ok(());
        }
        let message = last_error(self.sweep, p).unwrap_or_else(|| {
            let message = format!(
                "{stage} task exited with {status}; see {}",
                log_path.display()
            );
            record_failure(self.sweep, p, &message);
            message
        });
        bail!("{message}")
    }
}

/// Sends SIGTERM to process `pid`.
fn terminate(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) only sends a signal; the pid is our child's, which we have not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// Waits for `child`, sending it one SIGTERM (checkpoint and stop) once `stop` is set.
fn wait_forwarding(child: &mut std::process::Child, stop: &AtomicBool) -> Result<ExitStatus> {
    let mut forwarded = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if stop.load(Ordering::SeqCst) && !forwarded {
            terminate(child.id());
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
