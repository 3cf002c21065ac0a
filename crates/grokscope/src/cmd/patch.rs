//! `grokscope patch`: activation patching (causal tracing) on one checkpoint (docs/interp.md).

use crate::cmd::args::{parse_all, PatchingArgs};
use crate::cmd::prompts::PromptSession;
use crate::device::Ctx;
use anyhow::Result;
use interp::lens::default_targets;
use interp::output::{write_csv, write_json};
use interp::patch::{Direction, PatchResult};
use interp::tokens::PatchOptions;
use interp::{patch_sweep, state_effect, CellGrid, Net, SweepMode, SweepOptions};
use serde_json::json;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct PatchArgs {
    #[command(flatten)]
    pub patching: PatchingArgs,
    /// Directions, comma-separated: noising (corrupted state into the clean run, the paper) and/or
    /// denoising (clean state into the corrupted run).
    #[arg(long, value_delimiter = ',', default_value = "noising,denoising")]
    pub direction: Vec<String>,
    /// Granularities, comma-separated: resid, attn_out, mlp_out, heads.
    #[arg(long, value_delimiter = ',', default_value = "resid")]
    pub component: Vec<String>,
    /// Use the naive reference loop (one full forward per example, layer and cell) instead of
    /// the batched sweep: for benchmarks and checks.
    #[arg(long)]
    pub naive: bool,
}

/// Runs `grokscope patch`: writes `patch.csv`, `state_effect.csv`, `patch_summary.json` and
/// `examples.jsonl` to `--out` and prints the residual causal-strength grid of each corruption.
pub fn run(args: PatchArgs, ctx: &Ctx) -> Result<()> {
    let corruptions = args.patching.corruptions()?;
    let directions: Vec<Direction> = parse_all(&args.direction)?;
    let grid = args.patching.grid(parse_all(&args.component)?)?;
    if let Some(session) = args.patching.prompt_session(ctx)? {
        return run_on_prompts(&session, &args, &directions, &grid);
    }
    let (opened, probe) = args.patching.open_corrupted(ctx, corruptions)?;
    let net = Net::new(&opened.checkpoint.model);
    let opts = SweepOptions {
        directions,
        grid,
        mode: sweep_mode(args.naive),
        max_rows: args.patching.analysis.read.max_rows,
        ..SweepOptions::default()
    };
    let started = Instant::now();
    let result = patch_sweep(&net, &probe, &opts)?;
    let seconds = started.elapsed().as_secs_f64();
    let targets = default_targets(&probe);
    let effect = state_effect(&net, &probe, &targets, opened.step, opts.max_rows)?;

    let out = &args.patching.analysis.out;
    let _lock = crate::cmd::lock_output(out)?;
    probe.write_jsonl(&out.join("examples.jsonl"), &opened.data.vocab)?;
    write_csv(&out.join("patch.csv"), &result.rows(opened.step))?;
    write_csv(&out.join("state_effect.csv"), &effect)?;
    write_json(
        &out.join("patch_summary.json"),
        &summary(&result, &opened, &probe, &opts, seconds),
    )?;

    println!(
        "activation patching of {} at step {} on {} {} examples ({} cells in {seconds:.2} s, {})",
        opened.path.display(),
        opened.step,
        probe.examples.len(),
        probe.spec.split,
        result.cells.len(),
        if args.naive { "naive loop" } else { "batched" }
    );
    print_grid(&result, net.n_layer());
    println!(
        "wrote patch.csv, state_effect.csv, patch_summary.json and examples.jsonl to {}",
        out.display()
    );
    Ok(())
}

/// The naive per-cell loop with `--naive`, else the batched sweep.
fn sweep_mode(naive: bool) -> SweepMode {
    match naive {
        true => SweepMode::Naive,
        false => SweepMode::Batched,
    }
}

fn summary(
    result: &PatchResult,
    opened: &interp::load::Opened,
    probe: &interp::PromptSample,
    opts: &SweepOptions,
    seconds: f64,
) -> serde_json::Value {
    let baselines: Vec<serde_json::Value> = result
        .baselines
        .iter()
        .map(|b| {
            json!({
                "corruption": b.corruption,
                "examples": b.examples.len(),
                "positions": probe.position_set_name(&b.positions),
                "clean": {"top1_not_gold": b.clean.causal_strength(), "mean_rank": b.clean.mean_rank(),
                          "gold_prob": b.clean.gold_prob(), "logit_diff": b.clean.logit_diff()},
                "corrupted": {"top1_not_gold": b.corrupted.causal_strength(), "mean_rank": b.corrupted.mean_rank(),
                              "gold_prob": b.corrupted.gold_prob(), "logit_diff": b.corrupted.logit_diff()},
            })
        })
        .collect();
    let fields = json!({
        "checkpoint": opened.path,
        "step": opened.step,
        "positions": probe.positions,
        "mode": format!("{:?}", opts.mode).to_lowercase(),
        "cells": result.cells.len(),
        "seconds": seconds,
        "noise_scale": result.noise_scale,
        "baselines": baselines,
    });
    crate::cmd::sample_summary(&opened.data.dir, probe, fields)
}

/// Prints, per corruption, the residual noising causal strength per layer and position set.
fn print_grid(result: &PatchResult, n_layer: usize) {
    for b in &result.baselines {
        println!(
            "  {}: {} examples; clean top-1 not gold {:.3}, corrupted {:.3}",
            b.corruption,
            b.examples.len(),
            b.clean.causal_strength(),
            b.corrupted.causal_strength()
        );
        let cells: Vec<_> = result
            .cells
            .iter()
            .filter(|c| {
                c.cell.corruption == b.corruption
                    && c.cell.direction == Direction::Noising
                    && c.cell.component == interp::patch::Component::Resid
            })
            .collect();
        let mut names: Vec<&str> = Vec::new();
        for c in &cells {
            if !names.contains(&c.cell.position.as_str()) {
                names.push(&c.cell.position);
            }
        }
        if names.is_empty() {
            continue;
        }
        println!(
            "    noising causal strength  layer {}",
            names.iter().map(|n| format!("{n:>8}")).collect::<String>()
        );
        for layer in 0..=n_layer {
            let row: Vec<String> = names
                .iter()
                .map(|n| {
                    cells
                        .iter()
                        .find(|c| c.cell.layer == layer && c.cell.position == *n)
                        .map_or(format!("{:>8}", "-"), |c| {
                            format!("{:>8.3}", c.outcomes.causal_strength())
                        })
                })
                .collect();
            if row.iter().any(|v| v.trim() != "-") {
                println!("    {:>30} {}", layer, row.join(""));
            }
        }
    }
}

/// One row of `prompt_patch.csv`: the metric of one prompt (or the reported `mean`, normalised
/// for a restoration) with one target patched; targets `clean` and `corrupted` are the unpatched
/// runs.
#[derive(serde::Serialize)]
struct PromptPatchRow {
    step: u64,
    direction: String,
    target: String,
    prompt: String,
    metric: String,
    value: f64,
}

/// The `prompt_patch.csv` rows of one direction: the clean and corrupted runs' means, then per
/// target its (normalised) mean and its per-prompt values.
fn direction_rows(
    session: &PromptSession,
    direction: Direction,
    result: &interp::tokens::PatchValues,
) -> Vec<PromptPatchRow> {
    let row = |target: &str, prompt: String, metric: String, value: f64| PromptPatchRow {
        step: session.model.step,
        direction: direction.to_string(),
        target: target.to_string(),
        prompt,
        metric,
        value,
    };
    let inner = session.metric.per_row_metric().to_string();
    let mut rows = Vec::new();
    for (name, values) in [("clean", &result.clean), ("corrupted", &result.corrupted)] {
        let mean = util::stats::mean(values.iter().copied());
        rows.push(row(name, "mean".into(), inner.clone(), mean));
    }
    for ((label, value), per_prompt) in result.summary().iter().zip(result.values.rows()) {
        rows.push(row(
            label,
            "mean".into(),
            session.metric.to_string(),
            *value,
        ));
        for (i, &v) in per_prompt.iter().enumerate() {
            rows.push(row(label, i.to_string(), inner.clone(), v));
        }
    }
    rows
}

/// `grokscope patch --prompts`: every target patched in each direction, written to
/// `prompt_patch.csv`; prints the targets with the largest effect.
fn run_on_prompts(
    session: &PromptSession,
    args: &PatchArgs,
    directions: &[Direction],
    grid: &CellGrid,
) -> Result<()> {
    let hooks = args.patching.session_hooks(session, &grid.components)?;
    let sets = crate::cmd::prompts::position_sets(&session.batch, &grid.positions);
    let targets = &crate::cmd::prompts::targets_of(&hooks, &sets, session.net().n_head());
    let max_rows = args.patching.analysis.read.max_rows;
    let net = session.net();
    let started = Instant::now();
    println!(
        "{}, {} targets",
        session.describe("activation patching"),
        targets.len()
    );
    let mut rows = Vec::new();
    for &direction in directions {
        let opts = PatchOptions {
            max_rows,
            mode: sweep_mode(args.naive),
            ..PatchOptions::new(direction)
        };
        let result = interp::tokens::patch(&net, &session.batch, targets, &session.metric, &opts)?;
        rows.extend(direction_rows(session, direction, &result));
        let mut summary = result.summary();
        summary.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        println!("  {direction}: largest |{}|", session.metric);
        for (label, value) in summary.iter().take(8) {
            println!("    {label:<40} {value:>9.4}");
        }
    }
    println!("  in {:.2} s", started.elapsed().as_secs_f64());
    session.write("prompt_patch.csv", &rows)
}
