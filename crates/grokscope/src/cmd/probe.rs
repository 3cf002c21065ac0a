//! `grokscope probe`: linear probes per (layer, position) on one checkpoint or every checkpoint of
//! a run, next to the logit lens's accuracy of the same target (docs/interp.md, "Probes and DLA").

use crate::cmd::args::{for_each_checkpoint, SourceArgs};
use crate::device::Ctx;
use anyhow::Result;
use interp::linear_probe::{
    default_probe_targets, linear_probes, FitOptions, LinearProbeOptions, LinearProbeResult,
};
use interp::output::{write_csv, write_json, LensRow};
use interp::PromptSample;
use serde_json::json;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct ProbeCmdArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Number of sampled prompts drawn at random from the split (0 = the whole split).
    #[arg(long, default_value_t = 3000)]
    pub size: usize,
    /// Role whose token the probes decode (repeatable): e.g. b1 (bridge entity), r2, v1, v2,
    /// label (comparison label), answer [default: the paper's targets of the task].
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Positions to probe, comma-separated (names such as h,r1,r2 or last) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub positions: Option<Vec<String>>,
    /// Layers, comma-separated (0 = embeddings … L = last block output) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<usize>>,
    /// Fraction of each class's examples held out for scoring.
    #[arg(long, default_value_t = 0.25)]
    pub holdout: f64,
    /// How the probes are fitted: `logistic` (multinomial logistic regression, full-batch Adam) or
    /// `ridge` (closed-form least squares to the one-hot labels; seconds at paper size on a CPU).
    #[arg(long, default_value = "logistic")]
    pub solver: String,
    /// Full-batch Adam iterations (logistic solver).
    #[arg(long, default_value_t = FitOptions::default().iterations)]
    pub iterations: usize,
    /// Adam learning rate (logistic solver).
    #[arg(long, default_value_t = FitOptions::default().lr)]
    pub lr: f64,
    /// L2 penalty λ (on standardised features).
    #[arg(long, default_value_t = FitOptions::default().l2)]
    pub l2: f64,
}

/// Checks the fitting options: a positive, finite learning rate, a non-negative finite L2
/// penalty, at least one iteration, a held-out fraction strictly between 0 and 1.
fn check_fit_options(args: &ProbeCmdArgs) -> Result<()> {
    if !(args.lr.is_finite() && args.lr > 0.0) {
        anyhow::bail!("--lr must be a positive number, got {}", args.lr);
    }
    if !(args.l2.is_finite() && args.l2 >= 0.0) {
        anyhow::bail!("--l2 must be zero or a positive number, got {}", args.l2);
    }
    if !(args.holdout > 0.0 && args.holdout < 1.0) {
        anyhow::bail!(
            "--holdout must be a fraction strictly between 0 and 1, got {}",
            args.holdout
        );
    }
    crate::cmd::check_positive("--iterations", args.iterations)
}

/// Runs `grokscope probe`: writes `probe.csv`, `probe_summary.json` and `examples.jsonl` and
/// prints the held-out accuracy per layer and position.
pub fn run(args: ProbeCmdArgs, ctx: &Ctx) -> Result<()> {
    check_fit_options(&args)?;
    let source = args.source.resolve()?;
    let probe = args.source.sample(&source.data, args.size)?;
    let targets = checked_targets(&args, &probe)?;
    let opts = linear_probe_options(&args)?;
    let out = &source.out;
    let _lock = crate::cmd::lock_output(out)?;
    let mut rows: Vec<LensRow> = Vec::new();
    let mut steps = Vec::new();
    let mut target_info = Vec::new();
    for_each_checkpoint(&source, &probe, ctx, |step, path, net| {
        let result = linear_probes(
            net,
            &probe,
            &targets,
            args.positions.as_deref(),
            args.layers.as_deref(),
            &opts,
        )?;
        print_result(path, step, &probe, &result);
        if target_info.is_empty() {
            target_info = target_summaries(&result);
        }
        steps.push(json!({
            "step": step,
            "checkpoint": path,
            "forward_seconds": result.forward_seconds,
            "fit_seconds": result.fit_seconds,
        }));
        rows.extend(result.rows(step));
        write_csv(&out.join("probe.csv"), &rows)?;
        Ok(())
    })?;
    probe.write_jsonl(&out.join("examples.jsonl"), &source.data.vocab)?;
    write_summary(out, &source.data.dir, &probe, &opts, &target_info, &steps)?;
    println!(
        "wrote probe.csv, probe_summary.json and examples.jsonl to {}",
        out.display()
    );
    Ok(())
}

/// The targets asked for (the prompt sample's defaults when none), each checked against the probe
/// set, and the asked-for positions checked too.
fn checked_targets(args: &ProbeCmdArgs, probe: &PromptSample) -> Result<Vec<String>> {
    let targets = if args.targets.is_empty() {
        default_probe_targets(probe)
    } else {
        args.targets.clone()
    };
    for t in &targets {
        if t != interp::lens::ANSWER {
            probe.check_role(t)?;
        }
    }
    for p in args.positions.iter().flatten() {
        probe.position(p)?;
    }
    Ok(targets)
}

/// The fitting and sampling options of the command line.
fn linear_probe_options(args: &ProbeCmdArgs) -> Result<LinearProbeOptions> {
    Ok(LinearProbeOptions {
        fit: FitOptions {
            solver: args.solver.parse()?,
            iterations: args.iterations,
            lr: args.lr,
            l2: args.l2,
        },
        holdout: args.holdout,
        seed: args.source.seed,
        max_rows: args.source.read.max_rows,
    })
}

/// Writes `probe_summary.json`: the sample, the fitting options, the targets and the per-step
/// timings.
fn write_summary(
    out: &Path,
    data_dir: &Path,
    probe: &PromptSample,
    opts: &LinearProbeOptions,
    targets: &[serde_json::Value],
    steps: &[serde_json::Value],
) -> Result<()> {
    write_json(
        &out.join("probe_summary.json"),
        &crate::cmd::sample_summary(
            data_dir,
            probe,
            json!({
                "holdout": opts.holdout,
                "solver": opts.fit.solver.to_string(),
                "iterations": opts.fit.iterations,
                "lr": opts.fit.lr,
                "l2": opts.fit.l2,
                "lens": "recompute",
                "targets": targets,
                "checkpoints": steps,
            }),
        ),
    )?;
    Ok(())
}

/// Prints one checkpoint's probe timings and, per target, held-out probe accuracy / lens top-1 per
/// layer and position.
fn print_result(path: &Path, step: u64, probe: &PromptSample, result: &LinearProbeResult) {
    println!(
        "linear probes of {} at step {} on {} {} examples: forward {:.2} s, fit {:.2} s",
        path.display(),
        step,
        probe.examples.len(),
        probe.spec.split,
        result.forward_seconds,
        result.fit_seconds
    );
    for t in &result.targets {
        println!(
            "  target {} ({} classes, {} train / {} held out, majority baseline {:.3}): \
             held-out probe accuracy / lens top-1 per layer",
            t.role,
            t.classes.len(),
            t.n_train(),
            t.n_held_out(),
            t.chance
        );
        let mut layers: Vec<usize> = result.cells.iter().map(|c| c.layer).collect();
        layers.dedup();
        for layer in layers {
            let cells: Vec<String> = result
                .cells
                .iter()
                .filter(|c| c.layer == layer && c.target == t.role)
                .map(|c| format!("{}:{:.2}/{:.2}", c.position, c.probe_acc, c.lens_acc))
                .collect();
            println!("    layer {layer:>2}  {}", cells.join("  "));
        }
    }
}

/// The `targets` entries of `probe_summary.json`: classes, split sizes and majority baseline.
fn target_summaries(result: &LinearProbeResult) -> Vec<serde_json::Value> {
    result
        .targets
        .iter()
        .map(|t| {
            json!({
                "role": t.role,
                "classes": t.classes.len(),
                "train": t.n_train(),
                "held_out": t.n_held_out(),
                "majority_baseline": t.chance,
            })
        })
        .collect()
}
