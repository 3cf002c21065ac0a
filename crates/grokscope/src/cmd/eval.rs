//! `grokscope eval`: score a checkpoint on a dataset's test splits, per example and per split.

use crate::device::Ctx;
use anyhow::{bail, Context, Result};
use clap::Args;
use interp::load::{describe_rank_universe, load_fitted};
use model::token_map::RankOver;
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use tasks::Dataset;
use train::tensors::EvalSplit;
use train::{eval, Precision};

/// Evaluate a checkpoint on every split of a dataset's test.json (or one split).
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A model.safetensors file, or a checkpoint folder (step-<n>) holding one.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Dataset folder in the paper's format.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Only this split (a test.json `type`).
    #[arg(long, value_name = "NAME")]
    pub split: Option<String>,
    /// Write one JSON line per example: input tokens, gold, prediction, gold probability and rank.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    /// Rows the prediction is taken over: all or task [default: all for checkpoints with a token
    /// map, such as the paper's].
    #[arg(long, value_name = "all|task")]
    pub rank_over: Option<RankOver>,
    /// Evaluate on a dataset other than the one the checkpoint was trained on (a transfer
    /// experiment; the vocabulary size must still match).
    #[arg(long)]
    pub allow_other_data: bool,
}

/// One line of the predictions file.
#[derive(Serialize)]
struct PredictionLine<'a> {
    split: &'a str,
    index: usize,
    input: String,
    input_ids: &'a [u32],
    gold: &'a str,
    pred: &'a str,
    correct: bool,
    gold_prob: f64,
    /// 1-based (1 = the top token), as this file format has always written it: the
    /// conversion from the workspace's 0-based [`model::gold_rank`] happens here only.
    gold_rank: i64,
}

/// Runs `grokscope eval`: accuracy per split, and every prediction as JSON lines with `--out`.
pub fn run(args: EvalArgs, ctx: &Ctx) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let path = args.checkpoint.clone();
    let ds = Dataset::load(&args.data)?;
    let (ckpt, rank_over) = load_fitted(&path, &ds, ctx.device, args.rank_over)?;
    println!("{}", describe_rank_universe(&ckpt, rank_over));
    interp::load::check_trained_on(
        &path,
        &ckpt.metadata,
        &ds,
        &ds.fingerprint(),
        args.allow_other_data,
    )?;
    let groups = selected_splits(&ds, &args)?;
    let mut writer = match &args.out {
        Some(out) => Some(BufWriter::new(
            std::fs::File::create(out)
                .with_context(|| format!("cannot write {}", out.display()))?,
        )),
        None => None,
    };
    println!("{:<24} {:>6} {:>8}", "split", "n", "acc");
    for (name, examples) in &groups {
        let split = EvalSplit::new(name, examples, ds.vocab.pad_id(), ctx.device)?;
        if split.len == 0 {
            continue;
        }
        ckpt.model.check_tokens(&split.tokens)?;
        let preds = eval::predict(&ckpt.model, &split, args.batch_size, Precision::Fp32)?;
        let correct = preds
            .iter()
            .zip(examples)
            .filter(|(p, ex)| p.pred == i64::from(ex.answer))
            .count();
        println!(
            "{name:<24} {:>6} {:>8.4}",
            split.len,
            correct as f64 / split.len as f64
        );
        if let Some(w) = writer.as_mut() {
            write_predictions(w, &ds, name, &preds, examples)?;
        }
    }
    if let (Some(mut w), Some(out)) = (writer, &args.out) {
        w.flush()
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("predictions written to {}", out.display());
    }
    Ok(())
}

/// The dataset's splits, or only `--split` (an error lists the splits when it is unknown).
fn selected_splits<'d>(
    ds: &'d Dataset,
    args: &EvalArgs,
) -> Result<Vec<(String, Vec<&'d tasks::Example>)>> {
    let mut groups = ds.splits();
    if let Some(name) = &args.split {
        let known: Vec<String> = groups.iter().map(|(n, _)| n.clone()).collect();
        groups.retain(|(n, _)| n == name);
        if groups.is_empty() {
            bail!(
                "no split {name:?} in {} (splits: {})",
                args.data.display(),
                known.join(", ")
            );
        }
    }
    Ok(groups)
}

/// One JSON line per prediction of split `name`.
fn write_predictions(
    w: &mut impl Write,
    ds: &Dataset,
    name: &str,
    preds: &[eval::Prediction],
    examples: &[&tasks::Example],
) -> Result<()> {
    for (index, (p, ex)) in preds.iter().zip(examples).enumerate() {
        let input_ids = &ex.tokens[..=ex.answer_pos];
        let pred_id = u32::try_from(p.pred)
            .ok()
            .filter(|&id| (id as usize) < ds.vocab.len());
        let line = PredictionLine {
            split: name,
            index,
            input: ds.vocab.decode(input_ids),
            input_ids,
            gold: ds.vocab.token(ex.answer),
            pred: pred_id.map_or("?", |id| ds.vocab.token(id)),
            correct: p.pred == i64::from(ex.answer),
            gold_prob: p.gold_prob,
            gold_rank: p.gold_rank + 1,
        };
        serde_json::to_writer(&mut *w, &line)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}
