//! What `circuit` and `path-patch` share: the checkpoint and the prompt batch of an edge-level
//! analysis, from a prompt sample with one token corruption (the task preset) or from a prompt file
//! (`--prompts`), with the metric and the readout.

use crate::cmd::args::AnalysisArgs;
use crate::cmd::prompts::PromptArgs;
use crate::device::Ctx;
use anyhow::Result;
use interp::circuit::EdgeRuns;
use interp::metric::Metric;
use interp::tokens::PromptBatch;
use interp::{CorruptionSpec, Direction, LnMode, Net, PromptSample};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The options of an edge-level analysis.
#[derive(clap::Args, Debug)]
pub struct EdgeArgs {
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// The corruption whose effect the edges carry: a role replaced by the paper's rule
    /// [default: the task's first corruption, h for composition, a for comparison].
    #[arg(long)]
    pub corruption: Option<String>,
    /// The metric at the answer position: logit-diff (answer against the corrupted run's best
    /// other token), prob, rank, reciprocal-rank, recall@K, kl, restoration[:METRIC].
    #[arg(long, default_value = "logit-diff")]
    pub metric: String,
    /// Readout: recompute (the model's logits) or cached-scale (ln_final with the base run's
    /// scale, linear in the final residual stream).
    #[arg(long, default_value = "recompute")]
    pub ln_mode: String,
    /// Analyse the prompts of this JSONL file instead of a prompt sample (see `lens --help`).
    #[arg(long, value_name = "FILE.jsonl")]
    pub prompts: Option<PathBuf>,
}

/// A checkpoint with the prompt batch, metric and readout of an edge-level analysis.
pub struct EdgeSession {
    pub checkpoint: model::Checkpoint,
    /// The checkpoint file and its training step.
    pub path: PathBuf,
    pub step: u64,
    pub batch: PromptBatch,
    pub metric: Metric,
    pub ln_mode: LnMode,
    /// Names of the `T` positions (role names for a prompt sample, indices for a prompt file).
    pub position_names: Vec<String>,
    /// Where the prompts come from, for reports.
    pub source: String,
    /// The prompt sample and its dataset, for `examples.jsonl` (task preset only).
    task: Option<(PromptSample, tasks::Dataset)>,
    pub out: PathBuf,
}

impl EdgeArgs {
    /// Loads the checkpoint and builds the batch; checks every option first.
    pub fn session(&self, ctx: &Ctx) -> Result<EdgeSession> {
        crate::cmd::check_positive("--max-rows", self.analysis.read.max_rows)?;
        let metric = Metric::from_str(&self.metric)?;
        let ln_mode = LnMode::from_str(&self.ln_mode)?;
        let corruption = self
            .corruption
            .as_deref()
            .map(CorruptionSpec::from_str)
            .transpose()?;
        if self.analysis.layers.is_some() {
            anyhow::bail!("--layers does not apply: edge analyses cover every layer");
        }
        let mut session = match &self.prompts {
            Some(_) => self.prompt_session(ctx, metric, ln_mode)?,
            None => self.task_session(ctx, metric, ln_mode, corruption)?,
        };
        if session.metric.needs_alternatives() {
            let net = Net::new(&session.checkpoint.model);
            session.batch.fill_alternatives(&net)?;
        }
        session.batch.corrupted("edge analyses")?;
        Ok(session)
    }

    fn prompt_session(&self, ctx: &Ctx, metric: Metric, ln_mode: LnMode) -> Result<EdgeSession> {
        if self.corruption.is_some() {
            anyhow::bail!(
                "--corruption does not apply to --prompts: the file gives the corrupted tokens"
            );
        }
        let args = PromptArgs {
            prompts: self.prompts.clone(),
            metric: Some(self.metric.clone()),
        };
        let Some(session) = args.session_for(&self.analysis, ctx, metric.clone())? else {
            anyhow::bail!("no prompt file");
        };
        let t = session.batch.clean.size()[1];
        Ok(EdgeSession {
            checkpoint: session.model.checkpoint,
            path: session.model.path,
            step: session.model.step,
            source: format!(
                "prompts {}",
                self.prompts
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<String>()
            ),
            batch: session.batch,
            metric,
            ln_mode,
            position_names: (0..t).map(|p| p.to_string()).collect(),
            task: None,
            out: self.analysis.out.clone(),
        })
    }

    fn task_session(
        &self,
        ctx: &Ctx,
        metric: Metric,
        ln_mode: LnMode,
        corruption: Option<CorruptionSpec>,
    ) -> Result<EdgeSession> {
        let opened = self.analysis.open(ctx)?;
        let corruption = match corruption {
            Some(c) => c,
            None => interp::default_corruptions(opened.data.kind).remove(0),
        };
        let probe = self
            .analysis
            .sample(&opened, std::slice::from_ref(&corruption))?;
        let (batch, _) = probe.prompt_batch(&corruption)?;
        Ok(EdgeSession {
            source: format!(
                "{} examples of {} corrupted at {corruption}",
                batch.len(),
                probe.spec.split
            ),
            position_names: probe.positions.clone(),
            checkpoint: opened.checkpoint,
            path: opened.path,
            step: opened.step,
            batch,
            metric,
            ln_mode,
            task: Some((probe, opened.data)),
            out: self.analysis.out.clone(),
        })
    }
}

impl EdgeSession {
    /// The model under analysis.
    pub fn net(&self) -> Net<'_> {
        Net::new(&self.checkpoint.model)
    }

    /// The base and source runs of `direction`.
    pub fn runs<'n, 'g>(
        &'n self,
        net: &'n Net<'g>,
        direction: Direction,
    ) -> Result<EdgeRuns<'n, 'g>> {
        Ok(EdgeRuns::new(
            net,
            &self.batch,
            direction,
            &self.metric,
            self.ln_mode,
        )?)
    }

    /// The name of position `p`.
    pub fn position_name(&self, p: Option<i64>) -> String {
        match p {
            Some(p) => self.position_names[p as usize].clone(),
            None => "all".into(),
        }
    }

    /// Writes `examples.jsonl` (the sampled prompts, task preset only) to the output folder.
    pub fn write_examples(&self, out: &Path) -> Result<()> {
        if let Some((probe, data)) = &self.task {
            probe.write_jsonl(&out.join("examples.jsonl"), &data.vocab)?;
        }
        Ok(())
    }

    /// The line that opens a command's report.
    pub fn describe(&self, analysis: &str) -> String {
        format!(
            "{analysis} of {} at step {} on {}, metric {}, readout {}",
            self.path.display(),
            self.step,
            self.source,
            self.metric,
            self.ln_mode
        )
    }
}
