//! `grokscope trace`: logit lens and causal tracing over every checkpoint of a run
//! (docs/interp.md).

use crate::cmd::args::{parse_all, SampleArgs};
use crate::device::Ctx;
use anyhow::Result;
use interp::{trace, CorruptionSpec, PositionChoice, TraceOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// Run folder holding step-N/model.safetensors (and config.json, metrics.csv).
    #[arg(long)]
    pub run: PathBuf,
    /// Output folder [default: notebooks-out/<run name>/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Steps to trace, comma-separated [default: every checkpoint]; the saturation checkpoint and
    /// the last one are always added.
    #[arg(long, value_delimiter = ',')]
    pub steps: Option<Vec<u64>>,
    /// Dataset folder [default: data_dir of RUN/config.json].
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Corruption (repeatable): a role or noise:POS[+POS…] [default: the paper's roles].
    #[arg(long = "corruption")]
    pub corruptions: Vec<String>,
    /// Position sets of the residual noising sweep: corrupted (the paper's cells), each, all.
    #[arg(long, value_delimiter = ',', default_value = "corrupted")]
    pub positions: Vec<String>,
    /// Layer of the key numbers in trace.json [default: round(5·L/8), the paper's layer 5 of 8].
    #[arg(long)]
    pub key_layer: Option<usize>,
    /// Recompute checkpoints that are already done.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub read: crate::cmd::args::ReadArgs,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub edge: crate::cmd::trace_edges::TraceEdgeArgs,
}

/// Removes the temporaries that killed runs left in the per-checkpoint folders `out/steps/*/`.
fn remove_stale_step_temps(out: &std::path::Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out.join("steps")) else {
        return Ok(());
    };
    for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        train::lock::remove_stale_temps(&dir, "")?;
    }
    Ok(())
}

/// Runs `grokscope trace` and prints the key numbers of `trace.json`.
pub fn run(args: TraceArgs, ctx: &Ctx) -> Result<()> {
    let opts = trace_options(&args, ctx)?;
    let out = output_folder(&args);
    let edge_plan = crate::cmd::trace_edges::plan(&args, ctx.device)?;
    let _lock = crate::cmd::lock_output(&out)?;
    remove_stale_step_temps(&out)?;
    match args.read.rank_over {
        Some(universe) => println!("ranks over: {universe} (--rank-over)"),
        None => println!(
            "ranks over: each checkpoint's default (all rows for checkpoints with a token map, such \
             as the paper's; the task's tokens otherwise)"
        ),
    }
    let s = trace(&args.run, &out, &opts)?;
    print_summary(&args, &s);
    println!(
        "wrote lens.csv, patch.csv, state_effect.csv, attention.csv, circuit_change.csv, trace.json to {}",
        out.display()
    );
    if let Some(plan) = &edge_plan {
        crate::cmd::trace_edges::run(plan, &s, &out)?;
    }
    Ok(())
}

/// The trace options of the arguments, checked.
fn trace_options(args: &TraceArgs, ctx: &Ctx) -> Result<TraceOptions> {
    let corruptions: Vec<CorruptionSpec> = parse_all(&args.corruptions)?;
    let positions: Vec<PositionChoice> = parse_all(&args.positions)?;
    args.read.check()?;
    Ok(TraceOptions {
        sample: args.sample.spec()?,
        steps: args.steps.clone(),
        corruptions: (!corruptions.is_empty()).then_some(corruptions),
        positions,
        data: args.data.clone(),
        key_layer: args.key_layer,
        force: args.force,
        allow_other_data: args.read.allow_other_data,
        max_rows: args.read.max_rows,
        device: ctx.device,
        progress: !args.quiet,
        rank_over: args.read.rank_over,
    })
}

/// `--out`, else `notebooks-out/<run folder name>`.
fn output_folder(args: &TraceArgs) -> PathBuf {
    args.out.clone().unwrap_or_else(|| {
        let name = args
            .run
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_os_string()))
            .or_else(|| args.run.file_name().map(|n| n.to_os_string()))
            .unwrap_or_else(|| "run".into());
        PathBuf::from("notebooks-out").join(name)
    })
}

/// Prints what was traced and the key numbers: saturation, lens and causal strengths.
fn print_summary(args: &TraceArgs, s: &interp::TraceSummary) {
    println!(
        "traced {} checkpoints of {} ({} computed now{}) on {} {} examples",
        s.steps.len(),
        args.run.display(),
        s.computed_steps.len(),
        s.seconds_per_checkpoint
            .map_or(String::new(), |t| format!(", {t:.2} s each")),
        s.probe_size,
        s.probe_split
    );
    println!(
        "  saturation: step {} ({}); last step {}",
        s.saturation.step, s.saturation.note, s.last_step
    );
    for k in &s.lens {
        if let (Some(first), Some(last)) = (k.values.first(), k.values.last()) {
            println!(
                "  lens {} @ {} layer {} {}: {:.3} at step {} -> {:.3} at step {}",
                k.target, k.position, k.layer, k.metric, first.1, first.0, last.1, last.0
            );
        }
    }
    for c in &s.causal {
        let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
        println!(
            "  causal strength S[{}, {}] ({}): {} at saturation -> {} at the end",
            c.layer,
            c.position,
            c.corruption,
            fmt(c.start),
            fmt(c.end)
        );
    }
}
