//! Command-line arguments shared by the analysis commands: the sample of prompts
//! ([`SampleArgs`]: `lens`, `patch`, `attribute`, `tuned-lens`, `trace`), the checkpoint and
//! probe set of one-checkpoint analyses ([`ProbeArgs`]) and list parsing ([`parse_all`]).

use crate::device::Ctx;
use anyhow::Result;
use interp::load::{check_compatible, describe_rank_universe, open, Opened};
use interp::{Net, ProbeSet, ProbeSpec};
use model::token_map::RankOver;
use std::path::PathBuf;
use std::str::FromStr;

/// The sample of prompts an analysis runs on: a random draw from a split, or listed examples.
#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// Split the probe examples come from (a test.json type, or train / valid).
    #[arg(long, default_value = "train_inferred")]
    pub split: String,
    /// Number of probe examples drawn at random from the split (0 = the whole split).
    #[arg(long, default_value_t = 300)]
    pub size: usize,
    /// File of example indices into the split (a JSON array or whitespace-separated), used
    /// instead of a random draw: e.g. the paper's scripts' 300 (README).
    #[arg(long, value_name = "FILE", conflicts_with = "size")]
    pub examples: Option<PathBuf>,
    /// Seed of the probe sample, the corruptions and the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SampleArgs {
    /// The probe specification (reads the `--examples` file).
    pub fn spec(&self) -> Result<ProbeSpec> {
        let indices = self.examples.as_deref().map(interp::read_example_indices);
        Ok(ProbeSpec {
            split: self.split.clone(),
            size: (self.size > 0).then_some(self.size),
            seed: self.seed,
            indices: indices.transpose()?,
        })
    }
}

/// Options shared by `lens`, `patch` and `attribute`: the checkpoint, its dataset, the probe set.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Checkpoint file, e.g. checkpoints/RUN/step-N/model.safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset folder [default: data_dir of RUN/config.json when the checkpoint is RUN/step-N/…].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Layers, comma-separated (0 = embeddings … L = last block output) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<usize>>,
    /// Largest batch of one forward pass (bounds memory).
    #[arg(long, default_value_t = 2048)]
    pub max_rows: usize,
    /// Rows ranks are taken over: all (every row of the unembedding, the paper's scripts) or task
    /// (the task's tokens) [default: all for checkpoints with a token map, such as the paper's;
    /// grokscope's own have only the task's rows].
    #[arg(long, value_name = "all|task")]
    pub rank_over: Option<RankOver>,
    /// Analyse on a dataset other than the one the checkpoint was trained on (a transfer
    /// experiment; the vocabulary size must still match).
    #[arg(long)]
    pub allow_other_data: bool,
}

impl ProbeArgs {
    /// Checks the options, loads the checkpoint and the dataset, and checks that the checkpoint
    /// was trained on that dataset (unless `--allow-other-data`).
    pub fn open(&self, ctx: &Ctx) -> Result<Opened> {
        crate::cmd::check_positive("--max-rows", self.max_rows)?;
        let opened = open(
            &self.checkpoint,
            self.data.as_deref(),
            self.allow_other_data,
            ctx.device,
            self.rank_over,
        )?;
        println!(
            "{}",
            describe_rank_universe(&opened.checkpoint, opened.rank_over)
        );
        Ok(opened)
    }

    /// Builds the probe set and checks that the checkpoint can read it.
    pub fn probe(
        &self,
        opened: &Opened,
        corruptions: &[interp::CorruptionSpec],
    ) -> Result<ProbeSet> {
        let probe = ProbeSet::build(&opened.data, &self.sample.spec()?, corruptions)?;
        check_compatible(&opened.checkpoint, &opened.data, probe.seq_len())?;
        Ok(probe)
    }

    /// Builds the probe set with `corruptions`, or with the task's default corruptions when none
    /// are given.
    pub fn corrupted_probe(
        &self,
        opened: &Opened,
        corruptions: Vec<interp::CorruptionSpec>,
    ) -> Result<ProbeSet> {
        let corruptions = if corruptions.is_empty() {
            interp::default_corruptions(opened.data.kind)
        } else {
            corruptions
        };
        self.probe(opened, &corruptions)
    }

    /// Checks the requested layers against the model.
    pub fn check_layers(&self, net: &Net) -> Result<()> {
        for &l in self.layers.iter().flatten() {
            net.check_layer(l)?;
        }
        Ok(())
    }
}

/// Parses a list of `FromStr` values given on the command line.
pub fn parse_all<T: FromStr<Err = interp::InterpError>>(values: &[String]) -> Result<Vec<T>> {
    Ok(values
        .iter()
        .map(|v| T::from_str(v))
        .collect::<Result<Vec<T>, _>>()?)
}
