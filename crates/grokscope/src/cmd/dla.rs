//! `grokscope dla`: direct logit attribution of the answer to every component (embeddings, each
//! layer's attention and MLP, each head) on one checkpoint or every checkpoint of a run
//! (docs/interp.md, "Probes and DLA").

use crate::cmd::args::{for_each_checkpoint, SourceArgs};
use crate::cmd::prompts::{PromptArgs, PromptSession};
use crate::device::Ctx;
use anyhow::Result;
use interp::dla::{direct_logit_attribution, DlaComponent, DlaRow};
use interp::metric::Metric;
use interp::output::{write_csv, write_json};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct DlaArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Number of sampled prompts drawn at random from the split (0 = the whole split).
    #[arg(long, default_value_t = 300)]
    pub size: usize,
    /// Token the gold answer is compared with, e.g. `<e_12>` [default: each example's
    /// runner-up, the highest-logit token other than the gold answer].
    #[arg(long)]
    pub alternative: Option<String>,
    #[command(flatten)]
    pub prompts: PromptArgs,
}

/// Runs `grokscope dla`: writes `dla.csv` (mean over the sampled prompts per component and step;
/// the attention output biases go to `dla_summary.json`), `dla_summary.json` and
/// `examples.jsonl`, and prints the largest components.
pub fn run(args: DlaArgs, ctx: &Ctx) -> Result<()> {
    if let Some(session) = prompt_session(&args, ctx)? {
        return run_on_prompts(&session, args.source.read.max_rows);
    }
    let source = args.source.resolve()?;
    let probe = args.source.sample(&source.data, args.size)?;
    let alternative = args
        .alternative
        .as_deref()
        .map(|tok| source.data.vocab.id(tok))
        .transpose()?;
    let out = &source.out;
    let _lock = crate::cmd::lock_output(out)?;
    let mut rows: Vec<DlaRow> = Vec::new();
    let mut steps = Vec::new();
    for_each_checkpoint(&source, &probe, ctx, |step, path, net| {
        let result = direct_logit_attribution(net, &probe, alternative, args.source.read.max_rows)?;
        let means = result.dla.means();
        let total: f64 = means
            .iter()
            .filter(|(c, _)| c.in_layer_view())
            .map(|(_, v)| v)
            .sum();
        println!(
            "direct logit attribution of {} at step {} on {} {} examples: mean logit difference \
             {:.4} (gold vs {}), parts sum to {:.4} (largest per-example gap {:.1e})",
            path.display(),
            step,
            probe.examples.len(),
            probe.spec.split,
            result.dla.mean_logit_diff(),
            args.alternative.as_deref().unwrap_or("runner-up"),
            total,
            result.dla.max_residual()
        );
        print_largest(&means);
        steps.push(checkpoint_summary(step, path, &result, &means, total));
        rows.extend(result.rows(step));
        write_csv(&out.join("dla.csv"), &rows)?;
        Ok(())
    })?;
    probe.write_jsonl(&out.join("examples.jsonl"), &source.data.vocab)?;
    write_json(
        &out.join("dla_summary.json"),
        &crate::cmd::sample_summary(
            &source.data.dir,
            &probe,
            json!({
                "alternative": args.alternative.as_deref().unwrap_or("runner-up"),
                "ln": "cached final LayerNorm scale",
                "checkpoints": steps,
            }),
        ),
    )?;
    println!(
        "wrote dla.csv, dla_summary.json and examples.jsonl to {}",
        out.display()
    );
    Ok(())
}

/// The session of `dla --prompts` (which needs `--checkpoint` and `--out`), or `None` without it.
fn prompt_session(args: &DlaArgs, ctx: &Ctx) -> Result<Option<PromptSession>> {
    if args.prompts.prompts.is_none() {
        return Ok(None);
    }
    let (Some(checkpoint), Some(out)) = (&args.source.checkpoint, &args.source.out) else {
        anyhow::bail!("--prompts needs --checkpoint and --out (not --run)");
    };
    let data = args.source.data.as_deref();
    args.prompts
        .session(checkpoint, data, out, ctx, Metric::LogitDiff)
}

/// The `dla_summary.json` entry of one checkpoint.
fn checkpoint_summary(
    step: u64,
    path: &std::path::Path,
    result: &interp::DlaResult,
    means: &[(DlaComponent, f64)],
    total: f64,
) -> serde_json::Value {
    json!({
        "step": step,
        "checkpoint": path,
        "logit_diff": result.dla.mean_logit_diff(),
        "sum_of_parts": total,
        "max_residual": result.dla.max_residual(),
        "attn_bias": means
            .iter()
            .filter(|(c, _)| matches!(c, DlaComponent::AttnBias(_)))
            .map(|(c, v)| (c.to_string(), json!(v)))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
    })
}

/// Prints the six largest parts of the layer view and the largest head.
fn print_largest(means: &[(DlaComponent, f64)]) {
    let mut layer_view: Vec<&(DlaComponent, f64)> =
        means.iter().filter(|(c, _)| c.in_layer_view()).collect();
    layer_view.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    for (c, v) in layer_view.iter().take(6) {
        println!("  {:<14} {v:>9.4}", c.to_string());
    }
    let best_head = means
        .iter()
        .filter(|(c, _)| matches!(c, DlaComponent::Head(..)))
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
    if let Some((c, v)) = best_head {
        println!("  largest head: {c} {v:.4}");
    }
}

/// One row of `prompt_dla.csv`: a component's direct contribution to one prompt's logit
/// difference (or the `mean`); component `total` is the model's logit difference.
#[derive(serde::Serialize)]
struct PromptDlaRow {
    step: u64,
    component: String,
    prompt: String,
    value: f64,
}

/// `grokscope dla --prompts`: the logit difference of answer and alternative tokens split over
/// the head view's components (embeddings, heads, attention biases, MLPs and ln_final's bias,
/// named as in `dla.csv`), written to `prompt_dla.csv`.
fn run_on_prompts(session: &PromptSession, max_rows: usize) -> Result<()> {
    let net = session.net();
    let result = interp::tokens::dla(&net, &session.batch, &session.metric, max_rows)?;
    let step = session.model.step;
    let mean_diff = result.mean_logit_diff();
    println!(
        "{}: mean logit difference {mean_diff:.4} (parts miss it by at most {:.1e})",
        session.describe("direct logit attribution"),
        result.max_residual()
    );
    let row = |component: String, prompt: String, value: f64| PromptDlaRow {
        step,
        component,
        prompt,
        value,
    };
    let mut rows = vec![row("total".into(), "mean".into(), mean_diff)];
    for (i, &v) in result.logit_diff.iter().enumerate() {
        rows.push(row("total".into(), i.to_string(), v));
    }
    let means: Vec<(DlaComponent, f64)> = result
        .means()
        .into_iter()
        .filter(|(c, _)| c.in_head_view())
        .collect();
    for (c, mean) in &means {
        let column = result
            .components
            .iter()
            .position(|x| x == c)
            .unwrap_or_default();
        rows.push(row(c.to_string(), "mean".into(), *mean));
        for (i, &value) in result.values.column(column).iter().enumerate() {
            rows.push(row(c.to_string(), i.to_string(), value));
        }
    }
    let mut largest: Vec<&(DlaComponent, f64)> = means.iter().collect();
    largest.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    for (c, v) in largest.iter().take(8) {
        println!("  {:<14} {v:>9.4}", c.to_string());
    }
    session.write("prompt_dla.csv", &rows)
}
