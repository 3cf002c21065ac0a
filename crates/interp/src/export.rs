//! Activation export: the activations of requested hooks on a probe set, written to a
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
use crate::net::{logits_at, Net};
use crate::probe::ProbeSet;
use crate::states::tokens_tensor;
use model::{HookPoint, RunRequest};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::Path;
use tch::{Device, Kind, Tensor};

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

/// Runs the probe set's inputs through the model in chunks of at most `max_rows` rows and
/// returns the activations of `hooks` on the CPU, in the order given, each with the batch axis
/// first (`[N, ...]`, the shapes of [`model::hooks`]).
pub fn capture(
    net: &Net,
    probe: &ProbeSet,
    hooks: &[HookPoint],
    max_rows: usize,
) -> Result<Vec<(HookPoint, Tensor)>> {
    let tokens = tokens_tensor(
        probe.examples.iter().map(|e| e.tokens.as_slice()),
        net.device(),
    );
    let n = tokens.size()[0];
    let step = max_rows.max(1) as i64;
    let mut parts: Vec<Vec<Tensor>> = hooks.iter().map(|_| Vec::new()).collect();
    tch::no_grad(|| -> Result<()> {
        let mut start = 0;
        while start < n {
            let m = step.min(n - start);
            let mut req = RunRequest::capture(hooks.iter().copied());
            req.logit_positions = logits_at(probe.answer_pos);
            let mut out = net.run(&tokens.narrow(0, start, m), &req)?;
            for (hook, chunks) in hooks.iter().zip(parts.iter_mut()) {
                let t = out.cache.remove(hook).ok_or_else(|| InterpError::BadSpec {
                    what: "hook",
                    value: hook.to_string(),
                    reason: "the model did not return a requested activation".into(),
                })?;
                chunks.push(t.to_device(Device::Cpu).contiguous());
            }
            start += m;
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

/// Captures `hooks` on the probe set (see [`capture`]) and writes them with the tokens, gold
/// answers, example indices and role ids to the safetensors file `path` (layout in the module
/// documentation). `metadata` is merged into the file's `__metadata__`.
pub fn export_activations(
    net: &Net,
    probe: &ProbeSet,
    hooks: &[HookPoint],
    path: &Path,
    metadata: &BTreeMap<String, String>,
    max_rows: usize,
) -> Result<ExportSummary> {
    let mut tensors: Vec<(String, Tensor)> = capture(net, probe, hooks, max_rows)?
        .into_iter()
        .map(|(h, t)| (h.to_string(), t))
        .collect();
    let ids = |f: &dyn Fn(&crate::probe::ProbeExample) -> i64| {
        Tensor::from_slice(&probe.examples.iter().map(f).collect::<Vec<i64>>())
    };
    tensors.push((
        "tokens".into(),
        tokens_tensor(
            probe.examples.iter().map(|e| e.tokens.as_slice()),
            Device::Cpu,
        ),
    ));
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
    let bytes = write_safetensors(path, &tensors, &meta)?;
    Ok(ExportSummary {
        tensors: tensors.iter().map(|(n, t)| (n.clone(), t.size())).collect(),
        examples: probe.examples.len(),
        bytes,
    })
}

/// The safetensors dtype name of a tensor kind.
fn dtype_name(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Bool => "BOOL",
        Kind::Uint8 => "U8",
        Kind::Int8 => "I8",
        Kind::Int16 => "I16",
        Kind::Int => "I32",
        Kind::Int64 => "I64",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Float => "F32",
        Kind::Double => "F64",
        _ => return None,
    })
}

/// Writes named tensors and string metadata as a safetensors file (8-byte little-endian header
/// length, JSON header padded with spaces to a multiple of 8, then the raw little-endian data in
/// the order given). The file is written to a temporary name next to `path`, synced and renamed,
/// so a reader never sees a partial file. Returns the file size in bytes.
/// Errors: duplicate names, a tensor kind safetensors cannot hold, IO.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<u64> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut offset = 0usize;
    let mut data = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let kind = t.kind();
        let dtype = dtype_name(kind).ok_or_else(|| {
            InterpError::spec(
                "tensor",
                name.as_str(),
                format!("safetensors cannot hold tensors of kind {kind:?}"),
            )
        })?;
        let t = t.to_device(Device::Cpu).contiguous();
        let len = t.numel() * kind.elt_size_in_bytes();
        let entry = serde_json::json!({
            "dtype": dtype,
            "shape": t.size(),
            "data_offsets": [offset, offset + len],
        });
        if name == "__metadata__" || header.insert(name.clone(), entry).is_some() {
            return Err(InterpError::spec(
                "tensor",
                name.as_str(),
                "the name is used twice (or is reserved)",
            ));
        }
        offset += len;
        data.push(t);
    }
    let mut json = serde_json::to_vec(&header).map_err(|source| InterpError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    json.resize(json.len().div_ceil(8) * 8, b' ');

    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir).map_err(|e| InterpError::io(dir, e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::result::Result<(), InterpError> {
        let file = fs::File::create(&tmp).map_err(|e| InterpError::io(&tmp, e))?;
        let mut w = std::io::BufWriter::new(file);
        let io = |e| InterpError::io(&tmp, e);
        w.write_all(&(json.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(&json).map_err(io)?;
        let mut buf = Vec::new();
        for t in &data {
            let numel = t.numel();
            buf.resize(numel * t.kind().elt_size_in_bytes(), 0);
            t.f_copy_data_u8(&mut buf, numel)?;
            w.write_all(&buf).map_err(io)?;
        }
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| InterpError::io(path, e))?;
    Ok((8 + json.len() + offset) as u64)
}
