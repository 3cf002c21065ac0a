//! `grokscope import-hf`: read a Hugging Face GPT-2 folder into a grokscope checkpoint.

use crate::device::Ctx;
use anyhow::{bail, Result};
use clap::Args;
use model::import_hf;
use std::path::PathBuf;
use tch::Device;

/// Read a Hugging Face GPT-2 folder (config.json + model.safetensors or pytorch_model.bin), e.g.
/// one of the paper's released checkpoints, and save it as a grokscope checkpoint.
/// pytorch_model.bin is converted through the project's Python (torch), because libtorch cannot
/// read Python pickles; set GROKSCOPE_PYTHON to use another interpreter.
#[derive(Args, Debug)]
pub struct ImportHfArgs {
    /// The Hugging Face folder.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to write the checkpoint [default: DIR/grokscope.safetensors].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// The dataset the model was trained on: without added_tokens.json in DIR its vocab.json order
    /// places the task tokens after GPT-2's 50,257 rows; with it, both must agree.
    #[arg(long, value_name = "DATASET")]
    pub data: Option<PathBuf>,
}

pub fn run(args: ImportHfArgs, _ctx: &Ctx) -> Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join("grokscope.safetensors"));
    if out.exists() && !args.force {
        bail!(
            "{} already exists (use --force to overwrite)",
            out.display()
        );
    }
    let data = args.data.as_deref().map(tasks::Dataset::load).transpose()?;
    let tokens = data.as_ref().map(|d| d.vocab.file_tokens());
    let ckpt = import_hf(&args.dir, Device::Cpu, tokens)?;
    ckpt.save_to(&out)?;
    let cfg = &ckpt.config;
    println!(
        "imported {}: schedule {:?} over {} blocks, d_model {}, {} heads, d_mlp {}, vocabulary {}, n_ctx {}",
        args.dir.display(),
        cfg.schedule,
        cfg.n_blocks,
        cfg.d_model,
        cfg.n_head,
        cfg.d_mlp,
        cfg.vocab_size,
        cfg.n_ctx
    );
    if ckpt.metadata.contains_key(model::token_map::TOKEN_ROWS_KEY) {
        println!("token map: the task tokens' rows recorded (from added_tokens.json or --data); analyses rank over all rows by default");
    }
    println!("wrote {}", out.display());
    Ok(())
}
