//! `grokscope train`: train (or resume) a run folder from a preset or a config file.

use crate::device::Ctx;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use train::{TrainConfig, TrainOptions, PRESETS};

/// Train a model the paper's way; re-running the same command resumes the run folder.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Built-in preset: paper-composition, paper-comparison, paper-complex, paper-sharing,
    /// tiny-composition, tiny-comparison.
    #[arg(long, conflicts_with = "config")]
    pub preset: Option<String>,
    /// Config file (.toml or .json); it may name a `preset` and change only some keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Dataset folder in the paper's format (default: the preset's dataset, generated under
    /// --data-root and reused when already there).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Where preset datasets are generated and cached.
    #[arg(long, value_name = "DIR", default_value = "data")]
    pub data_root: PathBuf,
    /// Run folder (default: checkpoints/<preset or config file name>).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: Option<PathBuf>,
    /// Override a config key, e.g. --set steps=5000 --set lr=1e-3 --set dataset.params.phi=7.2
    /// --set schedule=[0,1,2,3,0,1,2,3] --set checkpoints=log:12 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Plain log lines instead of a progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the resolved config as JSON and exit without training.
    #[arg(long)]
    pub print_config: bool,
}

pub fn run(args: TrainArgs, ctx: &Ctx) -> Result<()> {
    let (mut cfg, name) = match (&args.preset, &args.config) {
        (Some(preset), None) => (TrainConfig::preset(preset)?, preset.clone()),
        (None, Some(path)) => {
            let cfg = TrainConfig::from_file(path)?;
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            (cfg, stem.unwrap_or_else(|| "run".into()))
        }
        _ => bail!(
            "give --preset NAME ({}) or --config FILE",
            PRESETS.join(", ")
        ),
    };
    cfg.apply_overrides(&args.set)?;
    if let Some(dir) = &args.data {
        if !dir.is_dir() {
            bail!("--data {}: no such dataset folder", dir.display());
        }
        cfg.data_dir = Some(dir.clone());
        cfg.dataset = None;
    }
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&cfg)?);
        return Ok(());
    }
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("checkpoints").join(name));
    let opts = TrainOptions {
        device: ctx.device,
        quiet: args.quiet,
        data_root: args.data_root,
        stop: train::stop_on_signals()?,
        observer: None,
    };
    let summary = train::train(cfg, &out, &opts)
        .with_context(|| format!("training run {}", out.display()))?;
    if summary.interrupted {
        println!(
            "stopped at step {} (checkpoint written); resume with the same command",
            summary.step
        );
    } else {
        println!("done: step {} in {}", summary.step, out.display());
    }
    if summary.step > summary.start_step {
        println!(
            "{} in training steps; {:.0} s wall in all (evaluation and checkpoints included)",
            train::progress::fmt_rate(summary.train_steps_per_sec),
            summary.wall_secs
        );
    }
    for m in &summary.last_eval {
        println!(
            "{:<24} acc {:.4}  loss {:.4}  p {:.4}  (n={})",
            m.name, m.acc, m.loss, m.p, m.n
        );
    }
    Ok(())
}
