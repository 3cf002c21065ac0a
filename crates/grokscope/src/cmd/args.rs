//! Command-line arguments shared by the analysis commands: how a checkpoint is read
//! ([`ReadArgs`]), the sample of prompts ([`SampleArgs`]: `lens`, `patch`, `attribute`,
//! `tuned-lens`, `trace`), one checkpoint with its prompt sample ([`AnalysisArgs`]), the
//! checkpoints of a run ([`SourceArgs`]: `probe`, `dla`), what `patch` and `attribute` share
//! ([`PatchingArgs`]) and list parsing ([`parse_all`]).

use crate::device::Ctx;
use anyhow::Result;
use interp::load::{
    check_compatible, check_trained_on, checkpoint_step, describe_rank_universe, list_checkpoints,
    load_fitted, open, resolve_data_dir, Opened,
};
use interp::{InterpError, Net, PromptSample, SampleSpec};
use model::token_map::RankOver;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// How a checkpoint is read, shared by every analysis command: the batch bound, the rows ranks
/// are taken over, and whether other data than the training data is allowed.
#[derive(clap::Args, Debug)]
pub struct ReadArgs {
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

impl ReadArgs {
    /// Errors unless `--max-rows` is at least 1.
    pub fn check(&self) -> Result<()> {
        crate::cmd::check_positive("--max-rows", self.max_rows)
    }

    /// Checks the options, loads the checkpoint and its dataset (`data`, or the run's), checks
    /// that the checkpoint was trained on it (unless `--allow-other-data`).
    pub fn open(&self, checkpoint: &Path, data: Option<&Path>, ctx: &Ctx) -> Result<Opened> {
        self.check()?;
        Ok(open(
            checkpoint,
            data,
            self.allow_other_data,
            ctx.device,
            self.rank_over,
        )?)
    }
}

/// The sample of prompts an analysis runs on: a random draw from a split, or listed examples.
#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// Split the sampled prompts come from (a test.json type, or train / valid).
    #[arg(long, default_value = "train_inferred")]
    pub split: String,
    /// Number of sampled prompts drawn at random from the split (0 = the whole split).
    #[arg(long, default_value_t = 300)]
    pub size: usize,
    /// File of example indices into the split (a JSON array or whitespace-separated), used
    /// instead of a random draw: e.g. the paper's scripts' 300 (README).
    #[arg(long, value_name = "FILE", conflicts_with = "size")]
    pub examples: Option<PathBuf>,
    /// Seed of the prompt sample, the corruptions and the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SampleArgs {
    /// The probe specification (reads the `--examples` file).
    pub fn spec(&self) -> Result<SampleSpec> {
        let indices = self.examples.as_deref().map(interp::read_example_indices);
        Ok(SampleSpec {
            split: self.split.clone(),
            size: (self.size > 0).then_some(self.size),
            seed: self.seed,
            indices: indices.transpose()?,
        })
    }
}

/// Options shared by `lens`, `patch` and `attribute`: the checkpoint, its dataset, the prompt sample.
#[derive(clap::Args, Debug)]
pub struct AnalysisArgs {
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
    #[command(flatten)]
    pub read: ReadArgs,
}

impl AnalysisArgs {
    /// Checks the options, loads the checkpoint and the dataset, and checks that the checkpoint
    /// was trained on that dataset (unless `--allow-other-data`).
    pub fn open(&self, ctx: &Ctx) -> Result<Opened> {
        let opened = self
            .read
            .open(&self.checkpoint, self.data.as_deref(), ctx)?;
        println!(
            "{}",
            describe_rank_universe(&opened.checkpoint, opened.rank_over)
        );
        Ok(opened)
    }

    /// Builds the prompt sample and checks that the checkpoint can read it.
    pub fn sample(
        &self,
        opened: &Opened,
        corruptions: &[interp::CorruptionSpec],
    ) -> Result<PromptSample> {
        let sample = PromptSample::build(&opened.data, &self.sample.spec()?, corruptions)?;
        check_compatible(&opened.checkpoint, &opened.data, sample.seq_len())?;
        Ok(sample)
    }

    /// Builds the prompt sample with `corruptions`, or with the task's default corruptions when none
    /// are given.
    pub fn corrupted_sample(
        &self,
        opened: &Opened,
        corruptions: Vec<interp::CorruptionSpec>,
    ) -> Result<PromptSample> {
        let corruptions = if corruptions.is_empty() {
            interp::default_corruptions(opened.data.kind)
        } else {
            corruptions
        };
        self.sample(opened, &corruptions)
    }

    /// Checks the requested layers against the model.
    pub fn check_layers(&self, net: &Net) -> Result<()> {
        for &l in self.layers.iter().flatten() {
            net.check_layer(l)?;
        }
        Ok(())
    }
}

/// Which checkpoints an analysis reads, its dataset, prompt sample and output folder; shared by
/// `probe` and `dla`.
#[derive(clap::Args, Debug)]
pub struct SourceArgs {
    /// Checkpoint file, e.g. checkpoints/RUN/step-N/model.safetensors.
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    pub checkpoint: Option<PathBuf>,
    /// Run folder: analyse every checkpoint RUN/step-N/model.safetensors (or those of --steps).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// With --run: the steps to analyse, comma-separated [default: every checkpoint].
    #[arg(long, value_delimiter = ',', requires = "run")]
    pub steps: Option<Vec<u64>>,
    /// Dataset folder [default: data_dir of RUN/config.json].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder [default with --run: notebooks-out/<run name>/].
    #[arg(long, required_unless_present = "run")]
    pub out: Option<PathBuf>,
    /// Split the sampled prompts come from (a test.json type, or train / valid).
    #[arg(long, default_value = "train_inferred")]
    pub split: String,
    /// Seed of the prompt sample (and of the probes' train/held-out split).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// The resolved checkpoints, dataset and output folder of [`SourceArgs`].
pub struct Source {
    /// Checkpoint files in step order.
    pub checkpoints: Vec<PathBuf>,
    pub data: tasks::Dataset,
    /// `data`'s fingerprint, checked against each checkpoint's.
    pub fingerprint: String,
    pub allow_other_data: bool,
    pub out: PathBuf,
    /// Rows ranks are taken over (`None`: each checkpoint's default).
    pub rank_over: Option<RankOver>,
}

impl SourceArgs {
    /// Checks the options, lists the checkpoints, loads the dataset and picks the output folder.
    pub fn resolve(&self) -> Result<Source> {
        self.read.check()?;
        let (checkpoints, out) = match (&self.checkpoint, &self.run) {
            (Some(file), _) => (vec![file.clone()], self.out.clone()),
            (None, Some(run)) => {
                let all = list_checkpoints(run)?;
                let files = match &self.steps {
                    None => all.into_iter().map(|(_, f)| f).collect(),
                    Some(steps) => steps
                        .iter()
                        .map(|s| {
                            all.iter()
                                .find(|(step, _)| step == s)
                                .map(|(_, f)| f.clone())
                                .ok_or_else(|| InterpError::UnknownStep {
                                    run: run.clone(),
                                    step: *s,
                                    available: all
                                        .iter()
                                        .map(|(s, _)| s.to_string())
                                        .collect::<Vec<_>>()
                                        .join(", "),
                                })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                };
                (
                    files,
                    Some(self.out.clone().unwrap_or_else(|| default_out(run))),
                )
            }
            (None, None) => anyhow::bail!("give --checkpoint FILE or --run DIR"),
        };
        let out = out.ok_or_else(|| anyhow::anyhow!("give --out DIR"))?;
        let first = checkpoints
            .first()
            .ok_or_else(|| anyhow::anyhow!("no checkpoint to analyse"))?;
        let data = tasks::Dataset::load(&resolve_data_dir(first, self.data.as_deref())?)?;
        Ok(Source {
            checkpoints,
            fingerprint: data.fingerprint(),
            data,
            allow_other_data: self.read.allow_other_data,
            out,
            rank_over: self.read.rank_over,
        })
    }

    /// The prompt sample of `size` examples (0 = the whole split).
    pub fn sample(&self, data: &tasks::Dataset, size: usize) -> Result<PromptSample> {
        let spec = SampleSpec {
            split: self.split.clone(),
            size: (size > 0).then_some(size),
            seed: self.seed,
            indices: None,
        };
        Ok(PromptSample::build(data, &spec, &[])?)
    }
}

/// `notebooks-out/<run folder name>`, where `trace` and `plot` look for a run's analyses.
fn default_out(run: &Path) -> PathBuf {
    let name = run
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_os_string()))
        .or_else(|| run.file_name().map(|n| n.to_os_string()))
        .unwrap_or_else(|| "run".into());
    PathBuf::from("notebooks-out").join(name)
}

/// Loads each checkpoint of `source` in turn, checks it against the prompt sample and the data it
/// was trained on, and calls `f(step, checkpoint file, model)`; prints the rank universe of the
/// first.
pub fn for_each_checkpoint(
    source: &Source,
    sample: &PromptSample,
    ctx: &Ctx,
    mut f: impl FnMut(u64, &Path, &Net) -> Result<()>,
) -> Result<()> {
    for (i, path) in source.checkpoints.iter().enumerate() {
        let (ckpt, rank_over) = load_fitted(path, &source.data, ctx.device, source.rank_over)?;
        if i == 0 {
            println!("{}", describe_rank_universe(&ckpt, rank_over));
        }
        check_compatible(&ckpt, &source.data, sample.seq_len())?;
        check_trained_on(
            path,
            &ckpt.metadata,
            &source.data,
            &source.fingerprint,
            source.allow_other_data,
        )?;
        let step = checkpoint_step(path, &ckpt.metadata);
        f(step, path, &Net::new(&ckpt.model))?;
    }
    Ok(())
}

/// Parses a list of `FromStr` values given on the command line.
pub fn parse_all<T: FromStr<Err = interp::InterpError>>(values: &[String]) -> Result<Vec<T>> {
    Ok(values
        .iter()
        .map(|v| T::from_str(v))
        .collect::<Result<Vec<T>, _>>()?)
}

/// The arguments `patch` and `attribute` share: one checkpoint with its prompt sample, the
/// corruptions, the position sets, and the prompt-file mode with the hooks it patches.
#[derive(clap::Args, Debug)]
pub struct PatchingArgs {
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Corruption (repeatable): a role replaced by the paper's same-type rule (h, r1, r2 / a, e1,
    /// e2) or Gaussian noise on positions, noise:POS[+POS…] [default: the paper's roles].
    #[arg(long = "corruption")]
    pub corruptions: Vec<String>,
    /// Position sets, comma-separated: each (every position alone), corrupted (the positions the
    /// corruption changes), all (every position at once).
    #[arg(long, value_delimiter = ',', default_value = "each,corrupted")]
    pub positions: Vec<String>,
    /// With --prompts: hooks, TransformerLens names or globs (repeatable), e.g.
    /// `blocks.*.attn.hook_pattern`, instead of --component's [default: the --component hooks].
    #[arg(long = "hook", requires = "prompts")]
    pub hooks: Vec<String>,
    #[command(flatten)]
    pub prompts: crate::cmd::prompts::PromptArgs,
}

impl PatchingArgs {
    /// The `--corruption`s, parsed.
    pub fn corruptions(&self) -> Result<Vec<interp::CorruptionSpec>> {
        parse_all(&self.corruptions)
    }

    /// The cells to patch: `components` with the `--positions` sets at the `--layer`s.
    pub fn grid(&self, components: Vec<interp::ComponentKind>) -> Result<interp::CellGrid> {
        Ok(interp::CellGrid {
            components,
            positions: parse_all(&self.positions)?,
            layers: self.analysis.layers.clone(),
        })
    }

    /// The prompt file's session (`--prompts`, scored by the logit difference unless `--metric`
    /// says otherwise); `None` without `--prompts`.
    pub fn prompt_session(&self, ctx: &Ctx) -> Result<Option<crate::cmd::prompts::PromptSession>> {
        self.prompts
            .session_for(&self.analysis, ctx, interp::metric::Metric::LogitDiff)
    }

    /// The hooks a prompt-file run patches: `--hook`, else the hooks of `components` at
    /// `--layer` (every layer without it).
    pub fn session_hooks(
        &self,
        session: &crate::cmd::prompts::PromptSession,
        components: &[interp::ComponentKind],
    ) -> Result<Vec<model::HookPoint>> {
        session.hooks(&self.hooks, components, self.analysis.layers.as_deref())
    }

    /// Opens the checkpoint, draws its prompt sample with `corruptions` (the task's defaults
    /// when empty) and checks `--layer` against the model.
    pub fn open_corrupted(
        &self,
        ctx: &Ctx,
        corruptions: Vec<interp::CorruptionSpec>,
    ) -> Result<(Opened, PromptSample)> {
        let opened = self.analysis.open(ctx)?;
        let probe = self.analysis.corrupted_sample(&opened, corruptions)?;
        self.analysis
            .check_layers(&Net::new(&opened.checkpoint.model))?;
        Ok((opened, probe))
    }
}
