//! Activation export: the activations of requested hooks on a prompt sample, written to a
//! safetensors file that Python reads directly (`safetensors.numpy.load_file`,
//! `safetensors.torch.load_file`).
//!
//! File layout (`N` examples, `T` input positions):
//! - one tensor per hook, named by its TransformerLens name (`blocks.3.hook_resid_post`), with the
//!   hook's own shape and the batch axis first (`[N, T, d_model]`, `[N, H, T, T]`, …), in the
//!   model's float kind;
//! - `tokens` `[N, T]` i64 — the model inputs; `gold` `[N]` i64 — the gold answer token;
//!   `index` `[N]` i64 — each example's index within its split;
//! - `role.<name>` `[N]` i64 — the token id of each role (`role.b1`, `role.v1`, `role.label`, …);
//! - `__metadata__`: `format`, `positions` (comma-separated position names), `answer_pos`,
//!   `hooks` (comma-separated, forward order), `roles`, `split`, `seed`, plus the caller's entries
//!   (checkpoint, step, data folder).

use crate::error::{InterpError, Result};
use crate::net::{logits_at, Net, Rows};
use crate::prompt_sample::PromptSample;
use model::{HookPoint, RunRequest};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tch::{Device, Tensor};

/// Prefix of the role tensors (`role.b1`).
pub const ROLE_PREFIX: &str = "role.";

/// Value of the `format` metadata entry.
pub const FORMAT: &str = "grokscope-activations-v1";

/// The hooks matched by TransformerLens names or glob patterns (`blocks.*.hook_resid_post`, see
/// [`model::glob_match`]) in a model with `n_layer` layers: their union in forward order.
/// Errors: no pattern, or a pattern that matches no hook (named in the message).
pub fn resolve_hooks(patterns: &[String], n_layer: usize) -> Result<Vec<HookPoint>> {
    if patterns.is_empty() {
        return Err(InterpError::spec(
            "hook list",
            "",
            "give at least one hook name or pattern, e.g. blocks.*.hook_resid_post",
        ));
    }
    let mut wanted = BTreeSet::new();
    for pattern in patterns {
        wanted.extend(HookPoint::matching(pattern.trim(), n_layer)?);
    }
    Ok(HookPoint::all(n_layer)
        .into_iter()
        .filter(|h| wanted.contains(h))
        .collect())
}

/// Runs the prompt sample's inputs through the model in chunks of at most `max_rows` rows and
/// returns the activations of `hooks` on the CPU, in the order given, each with the batch axis
/// first (`[N, ...]`, the shapes of [`model::hooks`]).
pub fn capture(
    net: &Net,
    probe: &PromptSample,
    hooks: &[HookPoint],
    max_rows: usize,
) -> Result<Vec<(HookPoint, Tensor)>> {
    let tokens = probe.clean_tokens(net.device());
    let mut parts: Vec<Vec<Tensor>> = hooks.iter().map(|_| Vec::new()).collect();
    tch::no_grad(|| -> Result<()> {
        for rows in Rows::chunks(tokens.size()[0], max_rows as i64) {
            let mut req = RunRequest::capture(hooks.iter().copied());
            req.logit_positions = logits_at(probe.answer_pos);
            let mut out = net.gpt.run(&rows.of(&tokens), &req)?;
            for (hook, chunks) in hooks.iter().zip(parts.iter_mut()) {
                let t = out.cache.remove(hook).ok_or_else(|| InterpError::BadSpec {
                    what: "hook",
                    value: hook.to_string(),
                    reason: "the model did not return a requested activation".into(),
                })?;
                chunks.push(t.to_device(Device::Cpu).contiguous());
            }
        }
        Ok(())
    })?;
    Ok(hooks
        .iter()
        .zip(parts)
        .map(|(hook, chunks)| (*hook, Tensor::cat(&chunks, 0)))
        .collect())
}

/// What [`export_activations`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportSummary {
    /// Every tensor written: name and shape, in file order.
    pub tensors: Vec<(String, Vec<i64>)>,
    /// Number of examples `N`.
    pub examples: usize,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// Captures `hooks` on the prompt sample (see [`capture`]) and writes them with the tokens, gold
/// answers, example indices and role ids to the safetensors file `path` (layout in the module
/// documentation). `metadata` is merged into the file's `__metadata__`.
pub fn export_activations(
    net: &Net,
    probe: &PromptSample,
    hooks: &[HookPoint],
    path: &Path,
    metadata: &BTreeMap<String, String>,
    max_rows: usize,
) -> Result<ExportSummary> {
    let mut tensors: Vec<(String, Tensor)> = capture(net, probe, hooks, max_rows)?
        .into_iter()
        .map(|(h, t)| (h.to_string(), t))
        .collect();
    let ids = |f: &dyn Fn(&crate::prompt_sample::SampledPrompt) -> i64| {
        Tensor::from_slice(&probe.examples.iter().map(f).collect::<Vec<i64>>())
    };
    tensors.push(("tokens".into(), probe.clean_tokens(Device::Cpu)));
    tensors.push(("gold".into(), ids(&|e| i64::from(e.gold))));
    tensors.push(("index".into(), ids(&|e| e.index as i64)));
    let roles = probe.role_names();
    for role in &roles {
        probe.check_role(role)?;
        tensors.push((
            format!("{ROLE_PREFIX}{role}"),
            ids(&|e| i64::from(e.roles[role])),
        ));
    }
    let mut meta = metadata.clone();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("positions".into(), probe.positions.join(","));
    meta.insert("answer_pos".into(), probe.answer_pos.to_string());
    meta.insert(
        "hooks".into(),
        hooks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    meta.insert("roles".into(), roles.join(","));
    meta.insert("split".into(), probe.spec.split.clone());
    meta.insert("seed".into(), probe.spec.seed.to_string());
    let bytes = model::write_safetensors(path, &tensors, &meta)?;
    Ok(ExportSummary {
        tensors: tensors.iter().map(|(n, t)| (n.clone(), t.size())).collect(),
        examples: probe.examples.len(),
        bytes,
    })
}
