//! `grokscope cache`: export the activations of chosen hooks on a prompt sample to a safetensors file
//! for Python (docs/interp.md, "Probes and DLA").

use crate::cmd::prompts::{PromptArgs, PromptSession};
use crate::device::Ctx;
use anyhow::Result;
use interp::export::{export_activations, resolve_hooks};
use interp::load::check_compatible;
use interp::{Net, PromptSample, SampleSpec};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CacheArgs {
    /// Checkpoint file, e.g. checkpoints/RUN/step-N/model.safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset folder [default: data_dir of RUN/config.json when the checkpoint is RUN/step-N/…].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Hooks to export: TransformerLens names or glob patterns (`*` = any run of characters
    /// other than `.`), e.g. `blocks.*.hook_resid_post` `ln_final.hook_scale`.
    #[arg(long, num_args = 1.., required = true)]
    pub hooks: Vec<String>,
    /// Split the sampled prompts come from (a test.json type, or train / valid).
    #[arg(long, default_value = "train_inferred")]
    pub split: String,
    /// Number of examples drawn at random from the split (0 = the whole split, in file order).
    #[arg(long, visible_alias = "size", default_value_t = 300)]
    pub limit: usize,
    /// Seed of the sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub read: crate::cmd::args::ReadArgs,
    /// Cache the prompts of this JSONL file (the format of `lens --prompts`) instead of a probe
    /// set: no dataset needed; the file gets `tokens`, `answer_pos`, `answer` and, when given,
    /// `corrupted` beside the hooks.
    #[arg(long, value_name = "FILE.jsonl")]
    pub prompts: Option<PathBuf>,
}

/// Runs `grokscope cache`: writes the safetensors file and prints its tensors.
pub fn run(args: CacheArgs, ctx: &Ctx) -> Result<()> {
    args.read.check()?;
    if let Some(session) = prompt_session(&args, ctx)? {
        return run_on_prompts(&session, &args.hooks, &args.out);
    }
    let opened = args
        .read
        .open(&args.checkpoint, args.data.as_deref(), ctx)?;
    let net = Net::new(&opened.checkpoint.model);
    let hooks = resolve_hooks(&args.hooks, net.n_layer())?;
    let spec = SampleSpec {
        split: args.split.clone(),
        size: (args.limit > 0).then_some(args.limit),
        seed: args.seed,
        indices: None,
    };
    let probe = PromptSample::build(&opened.data, &spec, &[])?;
    check_compatible(&opened.checkpoint, &opened.data, probe.seq_len())?;
    let metadata = BTreeMap::from([
        ("checkpoint".to_string(), opened.path.display().to_string()),
        ("step".to_string(), opened.step.to_string()),
        (
            "data_dir".to_string(),
            opened.data.dir.display().to_string(),
        ),
        ("task".to_string(), opened.data.kind.name().to_string()),
    ]);
    let summary = export_activations(
        &net,
        &probe,
        &hooks,
        &args.out,
        &metadata,
        args.read.max_rows,
    )?;
    println!(
        "cached {} hooks of {} at step {} on {} {} examples (positions {})",
        hooks.len(),
        opened.path.display(),
        opened.step,
        summary.examples,
        probe.spec.split,
        probe.positions.join(",")
    );
    for (name, shape) in &summary.tensors {
        println!("  {name:<32} {shape:?}");
    }
    println!(
        "wrote {} ({:.1} MiB)",
        args.out.display(),
        summary.bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// The session of `cache --prompts`, or `None` without it (the metric is not used: the file
/// holds activations, not scores).
fn prompt_session(args: &CacheArgs, ctx: &Ctx) -> Result<Option<PromptSession>> {
    let prompt_args = PromptArgs {
        prompts: args.prompts.clone(),
        metric: None,
    };
    let out_dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let unused = interp::metric::Metric::Prob;
    prompt_args.session(&args.checkpoint, args.data.as_deref(), out_dir, ctx, unused)
}

/// `grokscope cache --prompts`: the hooks' activations on the prompts, with their tokens, answer
/// positions and answers, in one safetensors file.
fn run_on_prompts(
    session: &PromptSession,
    patterns: &[String],
    out: &std::path::Path,
) -> Result<()> {
    let net = session.net();
    let hooks = resolve_hooks(patterns, net.n_layer())?;
    let batch = &session.batch;
    let req = model::RunRequest::capture(hooks.iter().copied());
    let cache = tch::no_grad(|| net.gpt.run(&batch.clean, &req))?.cache;
    let mut tensors: Vec<(String, tch::Tensor)> = cache
        .into_iter()
        .map(|(h, t)| (h.to_string(), t.to_device(tch::Device::Cpu)))
        .collect();
    tensors.push(("tokens".into(), batch.clean.shallow_clone()));
    if let Some(c) = &batch.corrupted {
        tensors.push(("corrupted".into(), c.shallow_clone()));
    }
    tensors.push((
        "answer_pos".into(),
        tch::Tensor::from_slice(&batch.answer_pos),
    ));
    tensors.push(("answer".into(), batch.sets.answer.shallow_clone()));
    let hook_names: Vec<String> = hooks.iter().map(ToString::to_string).collect();
    let metadata = BTreeMap::from([
        (
            "checkpoint".to_string(),
            session.model.path.display().to_string(),
        ),
        ("step".to_string(), session.model.step.to_string()),
        ("hooks".to_string(), hook_names.join(",")),
        (
            "format".to_string(),
            "grokscope-prompt-activations-v1".to_string(),
        ),
    ]);
    let bytes = model::write_safetensors(out, &tensors, &metadata)?;
    println!(
        "cached {} hooks of {} prompts of {}",
        hooks.len(),
        batch.len(),
        session.model.path.display()
    );
    for (name, t) in &tensors {
        println!("  {name:<32} {:?}", t.size());
    }
    println!(
        "wrote {} ({:.1} MiB)",
        out.display(),
        bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
