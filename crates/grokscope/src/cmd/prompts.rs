//! `--prompts FILE.jsonl` and `--metric` of `lens`, `patch`, `attribute`, `dla` and `cache`: the
//! token-level core ([`interp::tokens`]) on a user's own prompts, with no dataset or prompt sample
//! (docs/interp.md, "Your own prompts"). Each command writes `prompt_<analysis>.csv`.

use crate::device::Ctx;
use anyhow::{bail, Result};
use interp::load::{open_for_prompts, PromptModel, TokenLookup};
use interp::metric::Metric;
use interp::output::write_csv;
use interp::tokens::prompts::{batch_of, read_prompts};
use interp::tokens::{PatchTarget, PromptBatch};
use interp::{ComponentKind, Net};
use model::HookPoint;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The prompt-file options.
#[derive(clap::Args, Debug, Default)]
pub struct PromptArgs {
    /// Analyse the prompts of this JSONL file instead of a prompt sample (per line `clean`, optional
    /// `corrupted`, `answer`, optional `alternative` and `answer_pos`; tokens as the model's token
    /// strings or ids): no dataset needed. The prompt-sample options are then not used.
    #[arg(long, value_name = "FILE.jsonl")]
    pub prompts: Option<PathBuf>,
    /// With --prompts, the metric: logit-diff, prob, rank, reciprocal-rank, recall@K, kl,
    /// restoration (of the logit difference) or restoration:METRIC [default: reciprocal-rank for
    /// the lens, logit-diff otherwise].
    #[arg(long, requires = "prompts")]
    pub metric: Option<String>,
}

/// A checkpoint with the prompts and the metric of a prompt-mode command.
pub struct PromptSession {
    pub model: PromptModel,
    pub batch: PromptBatch,
    pub metric: Metric,
    pub out: PathBuf,
}

impl PromptSession {
    /// The model under analysis.
    pub fn net(&self) -> Net<'_> {
        Net::new(&self.model.checkpoint.model)
    }

    /// Takes the output folder's lock and writes `rows` to `out/name`.
    pub fn write<T: Serialize>(&self, name: &str, rows: &[T]) -> Result<()> {
        let _lock = crate::cmd::lock_output(&self.out)?;
        write_csv(&self.out.join(name), rows)?;
        println!("wrote {}", self.out.join(name).display());
        Ok(())
    }

    /// The hooks a prompt-mode `patch` or `attribute` covers: the `--hook` patterns, else the
    /// `--component` hooks at `layers` (`None` = every layer).
    pub fn hooks(
        &self,
        patterns: &[String],
        components: &[ComponentKind],
        layers: Option<&[usize]>,
    ) -> Result<Vec<HookPoint>> {
        let net = self.net();
        let layers = net.layers_or_all(layers)?;
        if !patterns.is_empty() {
            return Ok(interp::resolve_hooks(patterns, net.n_layer())?);
        }
        Ok(components
            .iter()
            .flat_map(|&kind| component_hooks(&net, kind, &layers))
            .collect())
    }

    /// The line that opens a command's report.
    pub fn describe(&self, analysis: &str) -> String {
        format!(
            "{analysis} of {} at step {} on {} prompts, metric {}",
            self.model.path.display(),
            self.model.step,
            self.batch.len(),
            self.metric
        )
    }
}

impl PromptArgs {
    /// The session of `--prompts`, or `None` without it. Reads the checkpoint and its token
    /// lookup, the prompts and the metric (`default` without `--metric`), checks the prompts
    /// against the model and fills missing alternatives when the metric reads them.
    pub fn session(
        &self,
        checkpoint: &Path,
        data: Option<&Path>,
        out: &Path,
        ctx: &Ctx,
        default: Metric,
    ) -> Result<Option<PromptSession>> {
        let Some(file) = &self.prompts else {
            return Ok(None);
        };
        let metric = match &self.metric {
            Some(m) => m.parse::<Metric>()?,
            None => default,
        };
        let model = open_for_prompts(checkpoint, data, ctx.device)?;
        let lookup = |token: &str| model.lookup.row(token);
        let prompts = read_prompts(file, &lookup).map_err(|e| match model.lookup {
            TokenLookup::IdsOnly => anyhow::anyhow!("{e} (no vocabulary found for the checkpoint: give --data DIR with its vocab.json, or token ids)"),
            _ => e.into(),
        })?;
        let mut batch = batch_of(&prompts)?;
        model.checkpoint.model.check_tokens(&batch.clean)?;
        if let Some(c) = &batch.corrupted {
            model.checkpoint.model.check_tokens(c)?;
        }
        check_answer_ids(&batch, model.checkpoint.config.vocab_size)?;
        if metric.needs_alternatives() {
            let net = Net::new(&model.checkpoint.model);
            batch.fill_alternatives(&net)?;
        }
        Ok(Some(PromptSession {
            model,
            batch,
            metric,
            out: out.to_path_buf(),
        }))
    }
}

impl PromptArgs {
    /// [`PromptArgs::session`] with the checkpoint, dataset and output folder of a prompt-sample
    /// command's arguments.
    pub fn session_for(
        &self,
        analysis: &crate::cmd::args::AnalysisArgs,
        ctx: &Ctx,
        default: Metric,
    ) -> Result<Option<PromptSession>> {
        self.session(
            &analysis.checkpoint,
            analysis.data.as_deref(),
            &analysis.out,
            ctx,
            default,
        )
    }
}

/// Every answer and alternative id is a row of the model's vocabulary.
fn check_answer_ids(batch: &PromptBatch, vocab_size: usize) -> Result<()> {
    for (what, ids) in [
        ("answer", &batch.sets.answer),
        ("alternative", &batch.sets.alternative),
    ] {
        if ids.numel() > 0 {
            let max = ids.max().int64_value(&[]);
            if max >= vocab_size as i64 {
                bail!("{what} token id {max} is outside the model's {vocab_size} rows");
            }
        }
    }
    Ok(())
}

/// Positions a patching or attribution target list covers: `each` (every position alone),
/// `all` (all at once) and `corrupted` (those where some prompt's corrupted tokens differ).
pub fn position_sets(batch: &PromptBatch, choices: &[interp::PositionChoice]) -> Vec<Vec<i64>> {
    let t = batch.clean.size()[1];
    let mut sets: Vec<Vec<i64>> = Vec::new();
    for choice in choices {
        let candidates = match choice {
            interp::PositionChoice::Each => (0..t).map(|p| vec![p]).collect(),
            interp::PositionChoice::All => vec![(0..t).collect()],
            interp::PositionChoice::Corrupted => vec![corrupted_positions(batch)],
        };
        for set in candidates {
            if !set.is_empty() && !sets.contains(&set) {
                sets.push(set);
            }
        }
    }
    sets
}

/// Positions where any prompt's corrupted token differs from its clean one.
fn corrupted_positions(batch: &PromptBatch) -> Vec<i64> {
    let Some(c) = &batch.corrupted else {
        return Vec::new();
    };
    let differs = c.ne_tensor(&batch.clean).any_dim(0, false);
    (0..differs.size()[0])
        .filter(|&p| differs.int64_value(&[p]) != 0)
        .collect()
}

/// The hooks of a granularity at `layers` (residual layers `0..=L`; others `0..L`).
fn component_hooks(net: &Net, kind: ComponentKind, layers: &[usize]) -> Vec<HookPoint> {
    let l = net.n_layer();
    layers
        .iter()
        .filter(|&&layer| kind == ComponentKind::Resid || layer < l)
        .map(|&layer| match kind {
            ComponentKind::Resid => net.resid_hook(layer),
            ComponentKind::AttnOut => HookPoint::AttnOut(layer),
            ComponentKind::MlpOut => HookPoint::MlpOut(layer),
            ComponentKind::Heads => HookPoint::Z(layer),
        })
        .collect()
}

/// Patching targets of `hooks` at each position set; per-head hooks get one target per head.
pub fn targets_of(hooks: &[HookPoint], sets: &[Vec<i64>], n_head: usize) -> Vec<PatchTarget> {
    let mut targets = Vec::new();
    for &hook in hooks {
        for positions in sets {
            let heads: Vec<Option<i64>> = if hook.is_per_head() {
                (0..n_head as i64).map(Some).collect()
            } else {
                vec![None]
            };
            for head in heads {
                targets.push(PatchTarget {
                    hook,
                    positions: positions.clone(),
                    head,
                });
            }
        }
    }
    targets
}
