//! `grokscope tuned-lens`: trains the tuned lens (one affine translator per layer, KL to the final
//! distribution) on a checkpoint's residual streams, saves it, and compares it with the logit lens
//! on the prompt sample (docs/interp.md).

use crate::cmd::args::AnalysisArgs;
use crate::device::Ctx;
use anyhow::{bail, Result};
use interp::lens::default_targets;
use interp::output::write_csv;
use interp::tokens::LensOptions;
use interp::tuned_lens::{train_tuned_lens, TunedLensOptions, TunedLensReport};
use interp::{logit_lens, Net, PromptSample, SampleSpec};
use serde::Serialize;
use std::path::Path;

/// Train a tuned lens on a checkpoint and compare it with the logit lens.
#[derive(clap::Args, Debug)]
pub struct TunedLensArgs {
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Examples of the probe split whose residual streams (every position) train the translators,
    /// drawn with --seed + 1.
    #[arg(long, default_value_t = 1000)]
    pub fit_size: usize,
    /// Adam steps (all layers' translators together).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Rows (example × position) per step.
    #[arg(long, default_value_t = 1024)]
    pub batch: usize,
}

/// A row of `tuned_lens_fit.csv`: the KL from the final distribution per layer.
#[derive(Serialize)]
struct FitRow {
    layer: usize,
    kl_logit_lens: f64,
    kl_tuned_lens: f64,
}

/// Runs `grokscope tuned-lens`: writes `tuned_lens.safetensors`, `tuned_lens_fit.csv`,
/// `lens.csv` (logit lens), `tuned_lens.csv` and `lens_vs_tuned_<target>.png` to `--out`.
pub fn run(args: TunedLensArgs, ctx: &Ctx) -> Result<()> {
    let opts = TunedLensOptions {
        steps: args.steps,
        lr: args.lr,
        batch: args.batch,
        seed: args.analysis.sample.seed as i64,
    };
    if args.fit_size == 0
        || opts.steps == 0
        || opts.batch == 0
        || opts.lr.is_nan()
        || opts.lr <= 0.0
    {
        bail!("--fit-size, --steps and --batch must be at least 1 and --lr positive");
    }
    let opened = args.analysis.open(ctx)?;
    let probe = args.analysis.sample(&opened, &[])?;
    let fit_spec = SampleSpec {
        size: Some(args.fit_size),
        seed: args.analysis.sample.seed + 1,
        indices: None,
        ..args.analysis.sample.spec()?
    };
    let fit = PromptSample::build(&opened.data, &fit_spec, &[])?;
    let net = Net::new(&opened.checkpoint.model);
    let fit_tokens = fit.clean_tokens(net.device());
    let (tuned, report) = train_tuned_lens(&net, &fit_tokens, &opts)?;
    let targets = default_targets(&probe);
    let max_rows = args.analysis.read.max_rows;
    let [logit, tuned_result] = [None, Some(&tuned)].map(|translators| {
        let opts = LensOptions {
            max_rows,
            tuned: translators,
            ..LensOptions::default()
        };
        logit_lens(&net, &probe, &targets, &opts)
    });
    let (logit, tuned_result) = (logit?, tuned_result?);
    let out = &args.analysis.out;
    std::fs::create_dir_all(out)?;
    let _lock = crate::cmd::lock_output(out)?;
    tuned.save(&out.join("tuned_lens.safetensors"))?;
    write_csv(&out.join("tuned_lens_fit.csv"), &fit_rows(&report))?;
    write_csv(&out.join("lens.csv"), &logit.rows(opened.step))?;
    write_csv(&out.join("tuned_lens.csv"), &tuned_result.rows(opened.step))?;
    let figures =
        plot::figures::lens_comparison(&out.join("lens.csv"), &out.join("tuned_lens.csv"), out)?;
    print_summary(&report, out, figures.len());
    Ok(())
}

fn fit_rows(report: &TunedLensReport) -> Vec<FitRow> {
    (report.kl_before.iter().zip(&report.kl_after).enumerate())
        .map(|(layer, (&before, &after))| FitRow {
            layer,
            kl_logit_lens: before,
            kl_tuned_lens: after,
        })
        .collect()
}

fn print_summary(report: &TunedLensReport, out: &Path, n_figures: usize) {
    println!("layer  KL(final || logit lens)  KL(final || tuned lens)   (nats)");
    for row in fit_rows(report) {
        println!(
            "{:>5}  {:>23.4}  {:>23.4}",
            row.layer, row.kl_logit_lens, row.kl_tuned_lens
        );
    }
    println!(
        "wrote tuned_lens.safetensors, tuned_lens_fit.csv, lens.csv, tuned_lens.csv and {n_figures} figure(s) to {}",
        out.display()
    );
}
