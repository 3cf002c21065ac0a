//! `grokscope surgery`: duplicate, insert, remove or reorder the layers of a checkpoint's block
//! schedule and save the result as a new checkpoint.

use crate::device::Ctx;
use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use model::surgery::{self, SurgeryOp};
use model::Checkpoint;
use std::path::{Path, PathBuf};
use tch::Device;

/// Change the layers of a checkpoint. Layers are schedule positions (0-based), blocks are
/// parameter blocks (`transformer.h.{block}`). Examples: `--duplicate 2`, `--duplicate 2
/// --materialize`, `--insert 0:3`, `--remove 3`, `--reorder 3,2,1,0`, `--schedule 0,1,1,2,3`,
/// `--unshare`. The result is renumbered so blocks appear in order of first use.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("op").required(true).args(["schedule", "duplicate", "insert", "remove", "reorder", "unshare"])))]
#[command(group(ArgGroup::new("copyable").args(["duplicate", "insert"])))]
pub struct SurgeryArgs {
    /// The checkpoint: a model.safetensors file or a folder holding one.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Where to write the new checkpoint (a .safetensors file).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace the schedule by this list of existing blocks, e.g. `0,1,1,2,3`.
    #[arg(long, value_name = "BLOCKS", value_delimiter = ',', num_args = 1..)]
    pub schedule: Option<Vec<usize>>,
    /// Apply layer LAYER's block a second time, right after it.
    #[arg(long, value_name = "LAYER")]
    pub duplicate: Option<usize>,
    /// Insert block BLOCK at schedule position POS (0 = first, n_layer = last), written POS:BLOCK.
    #[arg(long, value_name = "POS:BLOCK", value_parser = parse_insert)]
    pub insert: Option<(usize, usize)>,
    /// Remove layer LAYER.
    #[arg(long, value_name = "LAYER")]
    pub remove: Option<usize>,
    /// New order of the layers: new layer i = old layer ORDER[i], e.g. `3,2,1,0`.
    #[arg(long, value_name = "ORDER", value_delimiter = ',', num_args = 1..)]
    pub reorder: Option<Vec<usize>>,
    /// Give every layer its own copy of its block (shared or looped schedules become plain,
    /// e.g. before `export-hf`).
    #[arg(long)]
    pub unshare: bool,
    /// With --duplicate or --insert: the new layer gets its own copy of the block (free to
    /// diverge when trained further) instead of sharing the parameters.
    #[arg(long, requires = "copyable")]
    pub materialize: bool,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Parses `POS:BLOCK`.
fn parse_insert(text: &str) -> std::result::Result<(usize, usize), String> {
    let (pos, block) = text
        .split_once(':')
        .ok_or_else(|| format!("expected POS:BLOCK, e.g. 0:3, got `{text}`"))?;
    let number = |s: &str, what: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("{what} `{s}` is not a non-negative integer"))
    };
    Ok((number(pos, "position")?, number(block, "block")?))
}

impl SurgeryArgs {
    /// The operation the flags describe.
    fn op(&self) -> Result<SurgeryOp> {
        let materialize = self.materialize;
        Ok(if let Some(schedule) = &self.schedule {
            SurgeryOp::Schedule(schedule.clone())
        } else if let Some(layer) = self.duplicate {
            SurgeryOp::Duplicate { layer, materialize }
        } else if let Some((at, block)) = self.insert {
            SurgeryOp::Insert {
                at,
                block,
                materialize,
            }
        } else if let Some(layer) = self.remove {
            SurgeryOp::Remove { layer }
        } else if let Some(order) = &self.reorder {
            SurgeryOp::Reorder(order.clone())
        } else if self.unshare {
            SurgeryOp::Unshare
        } else {
            bail!("no operation given: use one of --schedule, --duplicate, --insert, --remove, --reorder, --unshare")
        })
    }
}

/// A checkpoint argument: the file itself, or `model.safetensors` inside a folder.
pub fn checkpoint_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("model.safetensors")
    } else {
        path.to_path_buf()
    }
}

pub fn run(args: SurgeryArgs, _ctx: &Ctx) -> Result<()> {
    let op = args.op()?;
    if args.out.exists() && !args.force {
        bail!(
            "{} already exists (use --force to overwrite)",
            args.out.display()
        );
    }
    let path = checkpoint_file(&args.checkpoint);
    let ckpt = Checkpoint::load(&path, Device::Cpu)?;
    let result =
        surgery::apply(&ckpt, &op).with_context(|| format!("{op} on {}", path.display()))?;
    result.save_to(&args.out)?;
    println!("{op}");
    println!(
        "before  schedule {:?} over {} blocks",
        ckpt.config.schedule, ckpt.config.n_blocks
    );
    println!(
        "after   schedule {:?} over {} blocks",
        result.config.schedule, result.config.n_blocks
    );
    println!("wrote   {}", args.out.display());
    Ok(())
}
