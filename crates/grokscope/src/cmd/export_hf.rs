//! `grokscope export-hf`: write a checkpoint as a Hugging Face GPT-2 folder.

use crate::cmd::surgery::checkpoint_file;
use crate::device::Ctx;
use anyhow::{bail, Result};
use clap::Args;
use interp::load::resolve_data_dir;
use model::{export_hf, Checkpoint, HfLayout};
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
    /// Row layout: task (the checkpoint's own rows) or paper (GPT-2's 50,257 rows, then the task
    /// tokens, padded to a multiple of 8, with the paper's tokenizer files).
    #[arg(long, value_enum, default_value_t = Layout::Task)]
    pub layout: Layout,
    /// Dataset whose token names the paper layout writes [default: data_dir of RUN/config.json].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// Row layouts of `--layout`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    Task,
    Paper,
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
    let file = checkpoint_file(&args.checkpoint);
    let ckpt = Checkpoint::load(&file, Device::Cpu)?;
    let layout = match args.layout {
        Layout::Task => HfLayout::Task,
        Layout::Paper => {
            let data = tasks::Dataset::load(&resolve_data_dir(&file, args.data.as_deref())?)?;
            let tokens = data.vocab.tokens().into_iter().map(String::from).collect();
            HfLayout::Paper { tokens }
        }
    };
    export_hf(&ckpt, &args.out, &layout)?;
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
