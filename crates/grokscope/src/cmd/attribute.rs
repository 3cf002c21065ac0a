//! `grokscope attribute`: attribution patching against exact patching on one checkpoint
//! (docs/interp.md).

use crate::cmd::args::{parse_all, ProbeArgs};
use crate::device::Ctx;
use anyhow::Result;
use interp::output::{write_csv, write_json};
use interp::patch::Direction;
use interp::{
    attribution_patching, AttributionOptions, ComponentKind, CorruptionSpec, LnMode, Net,
    PositionChoice,
};
use serde_json::json;
use std::str::FromStr;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct AttributeArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// Corruption (repeatable): a role (paper's same-type replacement) or noise:POS[+POS…]
    /// [default: the paper's roles].
    #[arg(long = "corruption")]
    pub corruptions: Vec<String>,
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
    /// Position sets, comma-separated: each, corrupted, all.
    #[arg(long, value_delimiter = ',', default_value = "each,corrupted")]
    pub positions: Vec<String>,
    /// Readout of the logit-difference metric: recompute (the model's logits) or cached-scale
    /// (ln_final with the base run's scale: linear in the final state).
    #[arg(long, default_value = "recompute")]
    pub ln_mode: String,
}

/// Runs `grokscope attribute`: writes `attribution.csv`, `attribution_summary.json` and
/// `examples.jsonl` and prints the rank correlation with exact patching.
pub fn run(args: AttributeArgs, ctx: &Ctx) -> Result<()> {
    let corruptions_given: Vec<CorruptionSpec> = parse_all(&args.corruptions)?;
    let direction = Direction::from_str(&args.direction)?;
    let components: Vec<ComponentKind> = parse_all(&args.component)?;
    let positions: Vec<PositionChoice> = parse_all(&args.positions)?;
    let ln_mode = LnMode::from_str(&args.ln_mode)?;
    let opened = args.probe.open(ctx)?;
    let probe = args.probe.corrupted_probe(&opened, corruptions_given)?;
    let net = Net::new(&opened.checkpoint.model);
    args.probe.check_layers(&net)?;
    let opts = AttributionOptions {
        direction,
        components,
        positions,
        layers: args.probe.layers.clone(),
        ln_mode,
        max_rows: args.probe.max_rows,
    };
    let started = Instant::now();
    let result = attribution_patching(&net, &probe, &opts)?;
    let seconds = started.elapsed().as_secs_f64();
    let agreements = result.agreements();

    let out = &args.probe.out;
    let _lock = crate::cmd::lock_output(out)?;
    probe.write_jsonl(&out.join("examples.jsonl"), &opened.data.vocab)?;
    write_csv(&out.join("attribution.csv"), &result.rows(opened.step))?;
    write_json(
        &out.join("attribution_summary.json"),
        &json!({
            "checkpoint": opened.path,
            "step": opened.step,
            "data_dir": opened.data.dir,
            "split": probe.spec.split,
            "probe_size": probe.examples.len(),
            "seed": probe.spec.seed,
            "direction": direction.to_string(),
            "ln_mode": ln_mode.to_string(),
            "metric": "logit_diff_delta",
            "cells": result.cells.len(),
            "seconds": seconds,
            "noise_scale": result.noise_scale,
            "baselines": result.baselines,
            "agreement": agreements,
        }),
    )?;
    println!(
        "attribution patching ({direction}, {ln_mode}) of {} at step {}: {} cells, {} examples, {seconds:.2} s",
        opened.path.display(),
        opened.step,
        result.cells.len(),
        probe.examples.len()
    );
    for (key, a) in &agreements {
        let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
        println!(
            "  {key:<22} Spearman {:>6}  Pearson {:>6}  ({} cells)",
            fmt(a.spearman),
            fmt(a.pearson),
            a.cells
        );
    }
    println!(
        "wrote attribution.csv, attribution_summary.json and examples.jsonl to {}",
        out.display()
    );
    Ok(())
}
