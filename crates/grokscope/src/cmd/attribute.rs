//! `grokscope attribute`: attribution patching against exact patching on one checkpoint
//! (docs/interp.md).

use crate::cmd::args::{parse_all, PatchingArgs};
use crate::cmd::prompts::PromptSession;
use crate::device::Ctx;
use anyhow::Result;
use interp::metric::Metric;
use interp::output::{write_csv, write_json};
use interp::patch::Direction;
use interp::tokens::{PatchOptions, PatchTarget};
use interp::{attribution_patching, AttributionOptions, LnMode, Net};
use serde_json::json;
use std::str::FromStr;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct AttributeArgs {
    #[command(flatten)]
    pub patching: PatchingArgs,
    /// denoising (gradient at the corrupted run, clean activations patched in) or noising.
    #[arg(long, default_value = "denoising")]
    pub direction: String,
    /// Granularities, comma-separated: resid, attn_out, mlp_out, heads.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "resid,attn_out,mlp_out,heads"
    )]
    pub component: Vec<String>,
    /// Readout of the logit-difference metric: recompute (the model's logits) or cached-scale
    /// (ln_final with the base run's scale: linear in the final state).
    #[arg(long, default_value = "recompute")]
    pub ln_mode: String,
}

/// Runs `grokscope attribute`: writes `attribution.csv`, `attribution_summary.json` and
/// `examples.jsonl` and prints the rank correlation with exact patching.
pub fn run(args: AttributeArgs, ctx: &Ctx) -> Result<()> {
    let corruptions = args.patching.corruptions()?;
    let direction = Direction::from_str(&args.direction)?;
    let grid = args.patching.grid(parse_all(&args.component)?)?;
    let ln_mode = LnMode::from_str(&args.ln_mode)?;
    let opts = PatchOptions {
        ln_mode,
        max_rows: args.patching.analysis.read.max_rows,
        ..PatchOptions::new(direction)
    };
    if let Some(session) = args.patching.prompt_session(ctx)? {
        let hooks = args.patching.session_hooks(&session, &grid.components)?;
        return run_on_prompts(&session, &hooks, &opts);
    }
    let (opened, probe) = args.patching.open_corrupted(ctx, corruptions)?;
    let net = Net::new(&opened.checkpoint.model);
    let opts = AttributionOptions {
        direction,
        grid,
        ln_mode,
        max_rows: opts.max_rows,
    };
    let started = Instant::now();
    let result = attribution_patching(&net, &probe, &opts)?;
    let summary = Summary {
        opened: &opened,
        probe: &probe,
        opts: &opts,
        seconds: started.elapsed().as_secs_f64(),
    };
    summary.write(&args.patching.analysis.out, &result)
}

/// What `attribution_summary.json` records besides the result.
struct Summary<'a> {
    opened: &'a interp::load::Opened,
    probe: &'a interp::PromptSample,
    opts: &'a AttributionOptions,
    seconds: f64,
}

impl Summary<'_> {
    /// Writes `examples.jsonl`, `attribution.csv` and `attribution_summary.json` of `result` to
    /// `out` and prints the agreements.
    fn write(&self, out: &std::path::Path, result: &interp::AttributionResult) -> Result<()> {
        let agreements = result.agreements();
        let (opened, probe) = (self.opened, self.probe);
        let _lock = crate::cmd::lock_output(out)?;
        probe.write_jsonl(&out.join("examples.jsonl"), &opened.data.vocab)?;
        write_csv(&out.join("attribution.csv"), &result.rows(opened.step))?;
        write_json(
            &out.join("attribution_summary.json"),
            &self.json(result, &agreements),
        )?;
        println!(
            "attribution patching ({}, {}) of {} at step {}: {} cells, {} examples, {:.2} s",
            self.opts.direction,
            self.opts.ln_mode,
            opened.path.display(),
            opened.step,
            result.cells.len(),
            probe.examples.len(),
            self.seconds
        );
        print_agreements(&agreements);
        println!(
            "wrote attribution.csv, attribution_summary.json and examples.jsonl to {}",
            out.display()
        );
        Ok(())
    }

    /// The summary of `result` with its agreements.
    fn json(
        &self,
        result: &interp::AttributionResult,
        agreements: &std::collections::BTreeMap<String, interp::attribution::Agreement>,
    ) -> serde_json::Value {
        let (opened, probe) = (self.opened, self.probe);
        let fields = json!({
            "checkpoint": opened.path,
            "step": opened.step,
            "direction": self.opts.direction.to_string(),
            "ln_mode": self.opts.ln_mode.to_string(),
            "metric": "logit_diff_delta",
            "cells": result.cells.len(),
            "seconds": self.seconds,
            "noise_scale": result.noise_scale,
            "baselines": result.baselines,
            "agreement": agreements,
        });
        crate::cmd::sample_summary(&opened.data.dir, probe, fields)
    }
}

/// Prints each group's rank and linear correlation between attribution and exact patching.
fn print_agreements(
    agreements: &std::collections::BTreeMap<String, interp::attribution::Agreement>,
) {
    for (key, a) in agreements {
        let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
        println!(
            "  {key:<22} Spearman {:>6}  Pearson {:>6}  ({} cells)",
            fmt(a.spearman),
            fmt(a.pearson),
            a.cells
        );
    }
}

/// One row of `prompt_attribution.csv`: a hook at one position (and head), its attribution
/// estimate and the exact patching effect (both the change of the metric's mean over prompts).
#[derive(serde::Serialize)]
struct PromptAttributionRow {
    step: u64,
    direction: String,
    hook: String,
    position: i64,
    head: String,
    metric: String,
    attribution: f64,
    exact: f64,
}

/// `grokscope attribute --prompts`: attribution patching of every position (and head) of the
/// hooks, beside exact patching of each, written to `prompt_attribution.csv`; prints their
/// Spearman correlation.
fn run_on_prompts(
    session: &PromptSession,
    hooks: &[model::HookPoint],
    opts: &PatchOptions,
) -> Result<()> {
    let net = session.net();
    let metric = &session.metric;
    let direction = opts.direction;
    let started = Instant::now();
    let estimate = interp::tokens::attribute(&net, &session.batch, hooks, metric, opts)?;
    let attribution_seconds = started.elapsed().as_secs_f64();
    let cells = estimate.summary();
    let targets: Vec<PatchTarget> = cells
        .iter()
        .map(|&(hook, position, head, _)| PatchTarget {
            hook,
            positions: vec![position],
            head,
        })
        .collect();
    let exact = interp::tokens::patch(
        &net,
        &session.batch,
        &targets,
        metric.per_row_metric(),
        opts,
    )?;
    let base = exact_base(&exact, direction, metric)?;
    let rows: Vec<PromptAttributionRow> = cells
        .iter()
        .zip(exact.summary())
        .map(
            |(&(hook, position, head, attribution), (_, patched))| PromptAttributionRow {
                step: session.model.step,
                direction: direction.to_string(),
                hook: hook.to_string(),
                position,
                head: head.map_or(String::new(), |h| h.to_string()),
                metric: metric.to_string(),
                attribution,
                exact: (patched - base.0) / base.1,
            },
        )
        .collect();
    let (a, e): (Vec<f64>, Vec<f64>) = rows.iter().map(|r| (r.attribution, r.exact)).unzip();
    let spearman = util::stats::spearman(&a, &e);
    println!("{} ({direction})", session.describe("attribution patching"));
    println!(
        "  {} cells: attribution {attribution_seconds:.3} s, exact {:.3} s; Spearman with exact patching {}",
        rows.len(),
        started.elapsed().as_secs_f64() - attribution_seconds,
        spearman.map_or("n/a".into(), |s| format!("{s:.3}"))
    );
    session.write("prompt_attribution.csv", &rows)
}

/// The base run's mean metric and the divisor of a change (clean − corrupted for a
/// restoration, else 1): what turns an exact patched mean into the change attribution estimates.
fn exact_base(
    exact: &interp::tokens::PatchValues,
    direction: Direction,
    metric: &Metric,
) -> Result<(f64, f64)> {
    let mean = |v: &[f64]| util::stats::mean(v.iter().copied());
    let (clean, corrupted) = (mean(&exact.clean), mean(&exact.corrupted));
    let base = match direction {
        Direction::Noising => clean,
        Direction::Denoising => corrupted,
    };
    let scale = match metric {
        Metric::Restoration(_) if (clean - corrupted).abs() > 1e-9 => clean - corrupted,
        Metric::Restoration(_) => {
            anyhow::bail!("clean and corrupted runs agree: nothing to restore")
        }
        _ => 1.0,
    };
    Ok((base, scale))
}
