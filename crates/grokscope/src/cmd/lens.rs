//! `grokscope lens`: the logit lens on one checkpoint (paper-spec §5; docs/interp.md).

use crate::cmd::args::{parse_all, AnalysisArgs};
use crate::cmd::prompts::{PromptArgs, PromptSession};
use crate::device::Ctx;
use anyhow::Result;
use interp::lens::{all_targets, default_targets, logit_lens, TargetSpec};
use interp::metric::Metric;
use interp::output::write_csv;
use interp::tokens::LensOptions;
use interp::tuned_lens::TunedLens;
use interp::{LnMode, Net};
use std::str::FromStr;

#[derive(clap::Args, Debug)]
pub struct LensArgs {
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Lens target ROLE@POSITION (repeatable), e.g. b1@r1, r2@r2, v1@e1, labels@a, answer@last
    /// [default: the paper's targets of the task].
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Every role (and the answer) at every position.
    #[arg(long, conflicts_with = "targets")]
    pub all_targets: bool,
    /// How ln_final is applied to intermediate states: recompute (default; the paper) or
    /// cached-scale (the final stream's scale, no recentring of early layers' norm).
    #[arg(long, default_value = "recompute")]
    pub ln_mode: String,
    /// Translators written by `grokscope tuned-lens` (tuned_lens.safetensors): read the tuned
    /// lens instead of the logit lens.
    #[arg(long, value_name = "FILE")]
    pub tuned_lens: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub prompts: PromptArgs,
}

/// Runs `grokscope lens`: writes `lens.csv` and `examples.jsonl` to `--out` and prints the MRR of
/// every target per layer.
pub fn run(args: LensArgs, ctx: &Ctx) -> Result<()> {
    let ln_mode = LnMode::from_str(&args.ln_mode)?;
    let analysis_args = &args.analysis;
    if let Some(session) = args
        .prompts
        .session_for(analysis_args, ctx, Metric::ReciprocalRank)?
    {
        return run_on_prompts(&session, ln_mode, analysis_args.layers.as_deref());
    }
    let targets_given: Vec<TargetSpec> = parse_all(&args.targets)?;
    let opened = args.analysis.open(ctx)?;
    let probe = args.analysis.sample(&opened, &[])?;
    let targets = if args.all_targets {
        all_targets(&probe)
    } else if targets_given.is_empty() {
        default_targets(&probe)
    } else {
        targets_given
    };
    let net = Net::new(&opened.checkpoint.model);
    args.analysis.check_layers(&net)?;
    let tuned = match &args.tuned_lens {
        Some(path) => Some(TunedLens::load(
            path,
            net.n_layer(),
            net.d_model(),
            net.device(),
        )?),
        None => None,
    };
    let started = std::time::Instant::now();
    let opts = LensOptions {
        ln_mode,
        layers: args.analysis.layers.as_deref(),
        max_rows: args.analysis.read.max_rows,
        tuned: tuned.as_ref(),
    };
    let lens = logit_lens(&net, &probe, &targets, &opts)?;
    let seconds = started.elapsed().as_secs_f64();
    let out = &args.analysis.out;
    let _lock = crate::cmd::lock_output(out)?;
    probe.write_jsonl(&out.join("examples.jsonl"), &opened.data.vocab)?;
    write_csv(&out.join("lens.csv"), &lens.rows(opened.step))?;
    println!(
        "logit lens ({ln_mode}) of {} at step {} on {} {} examples (in {seconds:.3} s)",
        opened.path.display(),
        opened.step,
        probe.examples.len(),
        probe.spec.split
    );
    print_targets(&lens);
    println!(
        "wrote {} and examples.jsonl",
        out.join("lens.csv").display()
    );
    Ok(())
}

/// Prints each target's metric per layer (MRR, or Recall@3 for the comparison labels).
fn print_targets(lens: &interp::LensResult) {
    for t in &lens.targets {
        let values: Vec<String> = t
            .layers
            .iter()
            .map(|&l| {
                let v = t.metrics(l).first().map(|m| m.1).unwrap_or(f64::NAN);
                format!("{l}:{v:.3}")
            })
            .collect();
        let metric = if t.spec.role == interp::lens::LABELS {
            "recall@3"
        } else {
            "MRR"
        };
        println!(
            "  {:>8} @ {:<5} {metric:>8}  {}",
            t.spec.role,
            t.position,
            values.join(" ")
        );
    }
}

/// One row of `prompt_lens.csv`: the metric of one prompt (or their `mean`) at one layer.
#[derive(serde::Serialize)]
struct PromptLensRow {
    step: u64,
    layer: usize,
    prompt: String,
    metric: String,
    value: f64,
}

/// `grokscope lens --prompts`: the lens of every layer at each prompt's answer position, written
/// to `prompt_lens.csv` (per prompt and the mean).
fn run_on_prompts(
    session: &PromptSession,
    ln_mode: LnMode,
    layers: Option<&[usize]>,
) -> Result<()> {
    let net = session.net();
    let result = interp::tokens::lens(&net, &session.batch, &session.metric, ln_mode, layers)?;
    println!("{} ({ln_mode})", session.describe("logit lens"));
    let metric = session.metric.to_string();
    let mut rows = Vec::new();
    for ((layer, mean), values) in result.means().into_iter().zip(result.values.rows()) {
        println!("  layer {layer:>2}  {metric} {mean:.4}");
        let per_prompt = values.iter().enumerate().map(|(i, &v)| (i.to_string(), v));
        for (prompt, value) in std::iter::once(("mean".to_string(), mean)).chain(per_prompt) {
            rows.push(PromptLensRow {
                step: session.model.step,
                layer,
                prompt,
                metric: metric.clone(),
                value,
            });
        }
    }
    session.write("prompt_lens.csv", &rows)
}
