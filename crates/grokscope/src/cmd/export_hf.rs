//! `grokscope export-hf`: write a checkpoint as a Hugging Face GPT-2 folder.

use crate::cmd::surgery::checkpoint_file;
use crate::device::Ctx;
use anyhow::{bail, Result};
use clap::Args;
use model::{export_hf, Checkpoint};
use std::path::PathBuf;
use tch::Device;

/// Write config.json + model.safetensors that `transformers.GPT2LMHeadModel.from_pretrained(DIR)`
/// loads offline. Only plain schedules (0..n) can be exported: run `grokscope surgery --unshare`
/// first for shared or looped models.
#[derive(Args, Debug)]
pub struct ExportHfArgs {
    /// The checkpoint: a model.safetensors file or a folder holding one.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Output folder (created).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite config.json and model.safetensors in --out if they exist.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: ExportHfArgs, _ctx: &Ctx) -> Result<()> {
    for name in ["config.json", "model.safetensors"] {
        if args.out.join(name).exists() && !args.force {
            bail!(
                "{} already exists (use --force to overwrite)",
                args.out.join(name).display()
            );
        }
    }
    let ckpt = Checkpoint::load(checkpoint_file(&args.checkpoint), Device::Cpu)?;
    export_hf(&ckpt, &args.out)?;
    let cfg = &ckpt.config;
    println!(
        "wrote {} (GPT-2: {} layers, d_model {}, {} heads, vocabulary {})",
        args.out.display(),
        cfg.n_layer(),
        cfg.d_model,
        cfg.n_head,
        cfg.vocab_size
    );
    Ok(())
}
