//! `grokscope sweep`: many runs from one `sweep.toml` (docs/sweeps.md) — plan the points, run
//! them here (`run`) or as Slurm job arrays (`slurm`), follow them (`status`), and compare them
//! in one table and figure set (`collect`).

mod answers;
mod collect;
mod figures;
mod local;
mod plan;
mod point;
mod seeds;
mod signal_figures;
mod signals;
mod slurm;
mod spec;

use crate::device::Ctx;
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use plan::Sweep;
use std::path::PathBuf;

/// Arguments of `grokscope sweep`.
#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub command: SweepCommand,
}

/// The sweep subcommands.
#[derive(Subcommand, Debug)]
pub enum SweepCommand {
    /// Expand a sweep file into one folder per point and a sweep.json manifest.
    Plan {
        /// The sweep file (see sweeps/*.toml).
        file: PathBuf,
        /// Sweep folder to create.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Run every point on this machine (resumable), then trace each finished run.
    Run {
        /// A planned sweep folder.
        dir: PathBuf,
        /// Points run at once; the threads are divided between them.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
    /// Write Slurm batch scripts (data job, training and trace arrays, collect job); --submit
    /// submits them with sbatch.
    Slurm {
        /// A planned sweep folder.
        dir: PathBuf,
        #[command(flatten)]
        opts: slurm::SlurmOptions,
        /// Submit the scripts with sbatch (otherwise only write them).
        #[arg(long)]
        submit: bool,
    },
    /// Each point's state: done, running, failed (with the last error line) or pending.
    Status {
        /// A planned sweep folder.
        dir: PathBuf,
    },
    /// Write sweep.csv, the sweep's figures and index.html.
    Collect {
        /// A planned sweep folder.
        dir: PathBuf,
    },
    /// Which measures announce grokking: each signal's lead over test ID ≥ 0.5 and 0.9 per point,
    /// and its mean and spread (signals/signals.csv, signals_summary.csv and figures).
    Signals {
        /// A sweep folder with trained and traced points.
        dir: PathBuf,
    },
    /// One stage of one point, as a Slurm task runs it.
    #[command(hide = true)]
    Task {
        /// A planned sweep folder.
        dir: PathBuf,
        #[arg(long, value_enum)]
        stage: Stage,
        /// Point index (the array task id).
        #[arg(long, default_value_t = 0)]
        index: usize,
    },
}

/// A stage of a Slurm task.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Stage {
    Data,
    Train,
    Trace,
}

/// Runs `grokscope sweep`.
pub fn run(args: SweepArgs, ctx: &Ctx) -> Result<()> {
    match args.command {
        SweepCommand::Plan { file, out } => {
            let sweep = plan::plan(&file, &out)?;
            let m = &sweep.manifest;
            println!(
                "planned {} points ({} datasets) into {}",
                m.points.len(),
                m.datasets.len(),
                sweep.dir.display()
            );
            Ok(())
        }
        SweepCommand::Run { dir, jobs } => {
            if jobs == 0 {
                anyhow::bail!("--jobs must be at least 1");
            }
            let sweep = Sweep::open(&dir)?;
            let ran = local::run_all(&sweep, jobs, ctx.threads, ctx.device);
            collect_all(&sweep)?;
            ran
        }
        SweepCommand::Slurm { dir, opts, submit } => slurm_cmd(&dir, &opts, submit),
        SweepCommand::Status { dir } => status(&Sweep::open(&dir)?),
        SweepCommand::Collect { dir } => collect_all(&Sweep::open(&dir)?),
        SweepCommand::Signals { dir } => signals_cmd(&Sweep::open(&dir)?, ctx),
        SweepCommand::Task { dir, stage, index } => task(&Sweep::open(&dir)?, stage, index, ctx),
    }
}

/// `sweep slurm`: checks, writes the scripts, and submits them when asked.
fn slurm_cmd(dir: &std::path::Path, opts: &slurm::SlurmOptions, submit: bool) -> Result<()> {
    let sweep = Sweep::open(dir)?;
    if submit {
        slurm::require_sbatch()?;
    }
    let scripts = slurm::write_scripts(&sweep, opts)?;
    println!(
        "wrote {}/{{data,train,trace,collect}}.sbatch and submit.sh",
        scripts.display()
    );
    if !submit {
        println!("submit with: bash {}/submit.sh", scripts.display());
        return Ok(());
    }
    let jobs = slurm::submit(&scripts)?;
    for stage in slurm::stage_names() {
        let id = jobs.get(stage).map_or("?", String::as_str);
        println!("submitted {stage}: job {id}");
    }
    Ok(())
}

/// `sweep status`: one line per point and a count per state.
fn status(sweep: &Sweep) -> Result<()> {
    let jobs = slurm::read_jobs(&sweep.dir.join("slurm"))?;
    let states = slurm::job_states(&jobs);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for p in &sweep.manifest.points {
        let state = slurm::point_state(sweep, p, &jobs, &states);
        let word = state
            .split([':', ' '])
            .next()
            .unwrap_or_default()
            .to_string();
        *counts.entry(word).or_default() += 1;
        println!("{}  {:<40}  {state}", p.name, p.label());
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "{} points: {}",
        sweep.manifest.points.len(),
        summary.join(", ")
    );
    Ok(())
}

/// `sweep collect`: sweep.csv, figures, index.html; lists the points that are not done.
fn collect_all(sweep: &Sweep) -> Result<()> {
    let points = collect::gather(sweep);
    let (header, rows) = collect::table(sweep, &points);
    collect::write_csv(&sweep.dir.join("sweep.csv"), &header, &rows)?;
    if let Some((seed_header, seed_rows)) = seeds::seed_table(&header, &rows) {
        collect::write_csv(&sweep.dir.join("seeds.csv"), &seed_header, &seed_rows)?;
    }
    let figures = figures::draw(sweep, &points, &header, &rows, &sweep.dir.join("figures"))?;
    let index = figures::write_index(sweep, &figures, &header, &rows)?;
    for c in points.iter().filter(|c| c.status != "done") {
        let why = c
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        println!(
            "{} ({}) is {}{why}",
            c.entry.name,
            c.entry.label(),
            c.status
        );
    }
    println!(
        "wrote {} ({} rows), {} figures, {}",
        sweep.dir.join("sweep.csv").display(),
        rows.len(),
        figures.len(),
        index.display()
    );
    Ok(())
}

/// `sweep signals`: scores every done point's answers, measures its signals and writes the
/// tables and figures under `DIR/signals/`.
fn signals_cmd(sweep: &Sweep, ctx: &Ctx) -> Result<()> {
    let mut points = Vec::new();
    let mut answers = Vec::new();
    for p in &sweep.manifest.points {
        if !(point::is_trained(sweep, p) && point::is_traced(sweep, p)) {
            println!(
                "{} ({}) is not trained and traced: left out",
                p.name,
                p.label()
            );
            continue;
        }
        let rows = answers::point_answers(sweep, p, ctx.device)?;
        points.push(signals::read_point(sweep, p, &rows)?);
        answers.push(rows);
    }
    if points.is_empty() {
        anyhow::bail!(
            "{}: no point is trained and traced yet",
            sweep.dir.display()
        );
    }
    let out = sweep.dir.join("signals");
    std::fs::create_dir_all(&out)?;
    let summary = signals::write_tables(&out, &points)?;
    let figures = signal_figures::draw(&points, &answers, &summary, &out)?;
    println!(
        "wrote signals.csv, signals_summary.csv ({} rows) and {} figures to {}",
        summary.len(),
        figures.len(),
        out.display()
    );
    Ok(())
}

/// `sweep task`: one stage of one point; a failure is also recorded in the point's error.txt.
fn task(sweep: &Sweep, stage: Stage, index: usize, ctx: &Ctx) -> Result<()> {
    if stage == Stage::Data {
        return point::ensure_datasets(sweep);
    }
    let p = sweep.point(index)?;
    point::clear_failure(sweep, p);
    let result = match stage {
        Stage::Train => train_task(sweep, p, ctx),
        _ => point::trace_point(sweep, p, ctx.device),
    };
    if let Err(err) = &result {
        let name = if stage == Stage::Train {
            "train"
        } else {
            "trace"
        };
        point::record_failure(sweep, p, &format!("{name} task: {err:#}"));
    }
    result
}

/// Trains one point; when stopped by SIGTERM (checkpoint written) inside Slurm, requeues itself.
fn train_task(sweep: &Sweep, p: &plan::PointEntry, ctx: &Ctx) -> Result<()> {
    if point::is_trained(sweep, p) {
        println!("{} already trained", p.name);
        return Ok(());
    }
    let summary = point::train_point(sweep, p, ctx.device, train::stop_on_signals()?)?;
    if summary.interrupted {
        println!(
            "{}: interrupted at step {} (checkpoint written)",
            p.name, summary.step
        );
        if slurm::requeue_self()? {
            println!(
                "{}: requeued; the next run resumes from step {}",
                p.name, summary.step
            );
        }
    } else {
        println!("{}: trained to step {}", p.name, summary.step);
    }
    Ok(())
}
