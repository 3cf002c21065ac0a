//! Hugging Face GPT-2 folders: export (`config.json` + `model.safetensors`, loadable by
//! `transformers.GPT2LMHeadModel.from_pretrained`) and import (`model.safetensors`, or
//! `pytorch_model.bin` converted through Python because libtorch cannot read Python pickles).

use crate::config::{shared_schedule, GptConfig};
use crate::error::{ModelError, Result};
use crate::model_file::{
    parse_safetensors, shape_of, tensor_from_view, write_safetensors, Checkpoint, CONFIG_KEY,
};
use crate::token_map::{TokenMap, GPT2_BASE_VOCAB, GPT2_EOS, TOKEN_ROWS_KEY};
use safetensors::tensor::TensorView;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Tensor};

/// Metadata key recording the folder a checkpoint was imported from.
pub const IMPORTED_FROM_KEY: &str = "imported_from";

/// The Python interpreter with torch and transformers: `$GROKSCOPE_PYTHON` if set, else
/// `$HOME/.cache/grokscope/venv/bin/python` (installed by `just setup`).
pub fn python_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GROKSCOPE_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/grokscope/venv/bin/python")
}

/// How the rows of an exported embedding are laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HfLayout {
    /// The checkpoint's own rows (the task's tokens, `<pad>` = 0 as bos/eos/pad).
    Task,
    /// The paper's: GPT-2's 50,257 rows, then the task's tokens (`tokens`, in the checkpoint's id
    /// order with `<pad>` first) from row 50,257 on, padded to a multiple of 8; `<pad>` is GPT-2's
    /// `<|endoftext|>` (50256). The BPE and padding rows are N(0, 0.02) draws (seed 0).
    Paper { tokens: Vec<String> },
}

impl HfLayout {
    /// Rows of the exported embedding, and the row of each of the checkpoint's token ids.
    fn rows(&self, vocab_size: usize) -> Result<(i64, Vec<i64>)> {
        match self {
            HfLayout::Task => Ok((vocab_size as i64, (0..vocab_size as i64).collect())),
            HfLayout::Paper { tokens } if tokens.len() != vocab_size || tokens.is_empty() => {
                Err(ModelError::Export(format!(
                    "the paper layout needs one token name per row: {} names for {vocab_size} rows",
                    tokens.len()
                )))
            }
            HfLayout::Paper { tokens } => {
                let added = tokens.len() as i64 - 1;
                let rows = std::iter::once(GPT2_EOS).chain((0..added).map(|k| GPT2_BASE_VOCAB + k));
                Ok(((GPT2_BASE_VOCAB + added + 7) / 8 * 8, rows.collect()))
            }
        }
    }

    /// The id of bos, eos and pad.
    fn special_id(&self) -> i64 {
        match self {
            HfLayout::Task => 0,
            HfLayout::Paper { .. } => GPT2_EOS,
        }
    }
}

/// The `config.json` of a Hugging Face `GPT2LMHeadModel` equivalent to `cfg` with `vocab_size`
/// rows and `special` as bos/eos/pad (plain schedules only).
pub fn hf_config(cfg: &GptConfig, vocab_size: i64, special: i64) -> Result<Value> {
    if !cfg.is_plain() {
        return Err(ModelError::Export(format!(
            "the schedule {:?} over {} blocks is not plain 0..n: Hugging Face GPT-2 cannot express shared, \
             repeated or reordered blocks; run `grokscope surgery --unshare` first to give every layer its \
             own copy of its block",
            cfg.schedule, cfg.n_blocks
        )));
    }
    Ok(json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": vocab_size,
        "n_positions": cfg.n_ctx,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layer(),
        "n_head": cfg.n_head,
        "n_inner": cfg.d_mlp,
        "activation_function": "gelu_new",
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": cfg.ln_eps,
        "initializer_range": crate::INIT_STD,
        "scale_attn_weights": true,
        "scale_attn_by_inverse_layer_idx": false,
        "reorder_and_upcast_attn": false,
        "tie_word_embeddings": true,
        "use_cache": true,
        "bos_token_id": special,
        "eos_token_id": special,
        "pad_token_id": special,
        "torch_dtype": "float32",
    }))
}

/// Writes `dir/config.json` and `dir/model.safetensors` (HF names, Conv1D layout, `format = pt`,
/// the grokscope config in the metadata; `lm_head.weight` is omitted because it is tied to
/// `transformer.wte.weight`) with the embedding rows laid out as `layout` says; the paper layout
/// adds its tokenizer files (`added_tokens.json`, `special_tokens_map.json`,
/// `tokenizer_config.json`). Refuses non-plain schedules. Creates `dir`.
pub fn export_hf(ckpt: &Checkpoint, dir: &Path, layout: &HfLayout) -> Result<()> {
    let (vocab_size, rows) = layout.rows(ckpt.config.vocab_size)?;
    let config = hf_config(&ckpt.config, vocab_size, layout.special_id())?;
    let text =
        serde_json::to_string_pretty(&config).map_err(|e| ModelError::Export(e.to_string()))?;
    let path = dir.join("config.json");
    util::fs::write_atomic(&path, text.as_bytes()).map_err(|e| ModelError::io(&path, e))?;
    let mut tensors: BTreeMap<String, Tensor> = ckpt.vs.variables().into_iter().collect();
    if let HfLayout::Paper { tokens } = layout {
        let wte = &tensors["transformer.wte.weight"];
        tensors.insert(
            "transformer.wte.weight".into(),
            laid_out(wte, vocab_size, &rows)?,
        );
        write_paper_tokenizer(dir, tokens, &rows)?;
    }
    let tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
    let mut grokscope = ckpt.config.clone();
    grokscope.vocab_size = vocab_size as usize;
    let grokscope =
        serde_json::to_string(&grokscope).map_err(|e| ModelError::Export(e.to_string()))?;
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        (CONFIG_KEY.to_string(), grokscope),
    ]);
    write_safetensors(&dir.join("model.safetensors"), &tensors, &metadata).map(|_| ())
}

/// An embedding of `vocab_size` rows holding `wte`'s row `i` at `rows[i]` and N(0, 0.02) draws
/// (seed 0) everywhere else. Shapes: wte `[V, d]` → `[vocab_size, d]`.
fn laid_out(wte: &Tensor, vocab_size: i64, rows: &[i64]) -> Result<Tensor> {
    tch::manual_seed(0);
    let d = wte.size()[1];
    let filler = Tensor::randn([vocab_size, d], (wte.kind(), wte.device())) * crate::INIT_STD;
    let index = Tensor::from_slice(rows).to_device(wte.device());
    Ok(filler.f_index_copy(0, &index, &wte.detach())?)
}

/// The paper's tokenizer files for the task tokens `tokens` (`<pad>` first) at `rows`.
fn write_paper_tokenizer(dir: &Path, tokens: &[String], rows: &[i64]) -> Result<()> {
    let added: serde_json::Map<String, Value> = tokens
        .iter()
        .zip(rows)
        .skip(1)
        .map(|(t, &r)| (t.clone(), json!(r)))
        .collect();
    let eos = "<|endoftext|>";
    let files = [
        ("added_tokens.json", Value::Object(added)),
        (
            "special_tokens_map.json",
            json!({"bos_token": eos, "eos_token": eos, "unk_token": eos, "pad_token": eos}),
        ),
        (
            "tokenizer_config.json",
            json!({"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024,
                   "add_prefix_space": false, "bos_token": eos, "eos_token": eos,
                   "unk_token": eos, "pad_token": eos}),
        ),
    ];
    for (name, value) in files {
        let text =
            serde_json::to_string_pretty(&value).map_err(|e| ModelError::Export(e.to_string()))?;
        let path = dir.join(name);
        util::fs::write_atomic(&path, text.as_bytes()).map_err(|e| ModelError::io(&path, e))?;
    }
    Ok(())
}

/// The grokscope config of an HF GPT-2 `config.json` (read from `path`). Accepts `gelu_new` and
/// `gelu_pytorch_tanh`; refuses other activations and attention variants grokscope does not
/// implement. The paper's `add_recurrence` flag (with `recur_step`, default 2) becomes a shared
/// schedule. Dropout is `resid_pdrop`.
pub fn config_from_hf(config: &Value, path: &Path) -> Result<GptConfig> {
    let bad = |msg: String| ModelError::checkpoint(path, msg);
    check_known_keys(config, path)?;
    let size = |key: &str| -> Result<Option<usize>> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|x| Some(x as usize))
                .ok_or_else(|| bad(format!("`{key}` = {v} is not a size"))),
        }
    };
    let required = |key: &str| size(key)?.ok_or_else(|| bad(format!("config.json has no `{key}`")));
    check_supported(config, path)?;
    let flag = |key: &str| config.get(key).and_then(Value::as_bool);
    let d_model = required("n_embd")?;
    let n_layer = required("n_layer")?;
    let n_ctx = match size("n_positions")? {
        Some(n) => n,
        None => required("n_ctx")?,
    };
    let mut cfg = GptConfig::new(
        required("vocab_size")?,
        n_ctx,
        d_model,
        required("n_head")?,
        n_layer,
    );
    cfg.d_mlp = size("n_inner")?.unwrap_or(4 * d_model);
    if let Some(eps) = config.get("layer_norm_epsilon").and_then(Value::as_f64) {
        cfg.ln_eps = eps;
    }
    if let Some(p) = config.get("resid_pdrop").and_then(Value::as_f64) {
        cfg.dropout = p;
    }
    if flag("add_recurrence") == Some(true) {
        let repeats = size("recur_step")?.unwrap_or(2);
        cfg.schedule = shared_schedule(n_layer, repeats);
    }
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    Ok(cfg)
}

/// Refuses what grokscope does not implement: another `model_type`, an activation other than
/// `gelu_new` / `gelu_pytorch_tanh`, unscaled or layer-scaled attention.
fn check_supported(config: &Value, path: &Path) -> Result<()> {
    let bad = |msg: String| Err(ModelError::checkpoint(path, msg));
    if let Some(t) = config.get("model_type").and_then(Value::as_str) {
        if t != "gpt2" {
            return bad(format!("model_type is `{t}`, only `gpt2` can be imported"));
        }
    }
    let activation = config
        .get("activation_function")
        .and_then(Value::as_str)
        .unwrap_or("gelu_new");
    if !matches!(activation, "gelu_new" | "gelu_pytorch_tanh") {
        return bad(format!(
            "activation_function `{activation}` is not supported (grokscope uses gelu_new)"
        ));
    }
    let flag = |key: &str| config.get(key).and_then(Value::as_bool);
    if flag("scale_attn_weights") == Some(false) {
        return bad("scale_attn_weights = false is not supported".into());
    }
    if flag("scale_attn_by_inverse_layer_idx") == Some(true) {
        return bad("scale_attn_by_inverse_layer_idx = true is not supported".into());
    }
    Ok(())
}

/// `config.json` keys of `transformers`' `GPT2Config` and `PretrainedConfig` that grokscope reads
/// or that do not change the computation of a GPT-2 forward pass.
const KNOWN_HF_KEYS: &[&str] = &[
    "_name_or_path",
    "activation_function",
    "architectures",
    "attn_pdrop",
    "bos_token_id",
    "embd_pdrop",
    "eos_token_id",
    "gradient_checkpointing",
    "initializer_range",
    "layer_norm_epsilon",
    "model_type",
    "n_ctx",
    "n_embd",
    "n_head",
    "n_inner",
    "n_layer",
    "n_positions",
    "pad_token_id",
    "reorder_and_upcast_attn",
    "resid_pdrop",
    "scale_attn_by_inverse_layer_idx",
    "scale_attn_weights",
    "summary_activation",
    "summary_first_dropout",
    "summary_proj_to_labels",
    "summary_type",
    "summary_use_proj",
    "task_specific_params",
    "tie_word_embeddings",
    "torch_dtype",
    "transformers_version",
    "use_cache",
    "vocab_size",
    // PretrainedConfig's generic entries (saved by various transformers versions); none changes a
    // forward pass, except `add_cross_attention` and `is_encoder_decoder`, which must be off.
    "add_cross_attention",
    "chunk_size_feed_forward",
    "decoder_start_token_id",
    "dtype",
    "finetuning_task",
    "id2label",
    "is_decoder",
    "is_encoder_decoder",
    "label2id",
    "output_attentions",
    "output_hidden_states",
    "prefix",
    "problem_type",
    "pruned_heads",
    "return_dict",
    "sep_token_id",
    "tf_legacy_loss",
    "tokenizer_class",
    "torchscript",
    "use_bfloat16",
    // The paper's fork: every block run `recur_step` times (default 2); `re_embed` must be off.
    "add_recurrence",
    "recur_step",
    "re_embed",
];

/// An error naming the first `config.json` key grokscope does not know (it could change the
/// computation), and a `re_embed`, `add_cross_attention` or `is_encoder_decoder` switched on.
fn check_known_keys(config: &Value, path: &Path) -> Result<()> {
    let Some(keys) = config.as_object() else {
        return Err(ModelError::checkpoint(
            path,
            "config.json is not a JSON object",
        ));
    };
    if let Some(key) = keys.keys().find(|k| !KNOWN_HF_KEYS.contains(&k.as_str())) {
        return Err(ModelError::checkpoint(
            path,
            format!("unknown option `{key}`: grokscope cannot tell whether it changes the model, so it refuses to guess"),
        ));
    }
    for flag in ["re_embed", "add_cross_attention", "is_encoder_decoder"] {
        if keys.get(flag).and_then(Value::as_bool) == Some(true) {
            return Err(ModelError::checkpoint(
                path,
                format!("{flag} = true is not supported"),
            ));
        }
    }
    Ok(())
}

/// Reads a Hugging Face GPT-2 folder (`config.json` plus `model.safetensors` or
/// `pytorch_model.bin`) onto `device`, e.g. the paper's released checkpoints with their 52k-row
/// vocabulary. Names with or without the `transformer.` prefix are accepted; the attention mask
/// buffers (`attn.bias`, `attn.masked_bias`) are ignored; `lm_head.weight`, if present, must equal
/// `transformer.wte.weight` (tied). `pytorch_model.bin` is converted to safetensors by running
/// [`python_path`] with torch, because libtorch cannot read Python pickles.
///
/// A folder with `added_tokens.json`, or one imported with `dataset_tokens` (the dataset's
/// `vocab.json` order, without `<pad>`) and a vocabulary of GPT-2's size or more, gets a
/// [`TokenMap`] in its metadata: the paper's layout of GPT-2 rows, then task tokens (see
/// [`crate::token_map`]).
pub fn import_hf(
    dir: &Path,
    device: Device,
    dataset_tokens: Option<&[String]>,
) -> Result<Checkpoint> {
    let config_path = dir.join("config.json");
    let text = fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::checkpoint(&config_path, format!("invalid JSON: {e}")))?;
    let config = config_from_hf(&json, &config_path)?;
    let has_added = dir.join("added_tokens.json").is_file();
    let token_map =
        if has_added || (dataset_tokens.is_some() && config.vocab_size as i64 >= GPT2_BASE_VOCAB) {
            Some(TokenMap::from_hf_folder(dir, &json, dataset_tokens)?)
        } else {
            None
        };
    let (weights, _converted) = weights_file(dir)?;
    let bytes = fs::read(&weights).map_err(|e| ModelError::io(&weights, e))?;
    let (views, _) = parse_safetensors(&bytes, &weights)?;
    let mut tensors = BTreeMap::new();
    let mut lm_head = None;
    for (name, view) in views {
        let short = name.strip_prefix("transformer.").unwrap_or(&name);
        let parts: Vec<&str> = short.split('.').collect();
        if matches!(parts.as_slice(), ["h", _, "attn", "bias" | "masked_bias"]) {
            continue;
        }
        if short == "lm_head.weight" {
            lm_head = Some(view);
        } else {
            tensors.insert(format!("transformer.{short}"), view);
        }
    }
    if let (Some(head), Some(wte)) = (&lm_head, tensors.get("transformer.wte.weight")) {
        check_tied(head, wte, &weights)?;
    }
    let shapes = tensors
        .iter()
        .map(|(name, view)| (name.clone(), shape_of(view)))
        .collect();
    let get = |name: &str| match tensors.get(name) {
        Some(view) => tensor_from_view(view, name, &weights),
        None => Err(ModelError::MissingTensors {
            path: weights.clone(),
            names: vec![name.to_string()],
        }),
    };
    let mut metadata = BTreeMap::from([(IMPORTED_FROM_KEY.to_string(), dir.display().to_string())]);
    if let Some(map) = token_map {
        metadata.insert(TOKEN_ROWS_KEY.to_string(), map.to_metadata());
    }
    Checkpoint::from_source(config, &shapes, get, &weights, device, metadata)
}

/// A temporary safetensors file converted from a `pytorch_model.bin`; deleted on drop.
struct Converted(PathBuf);

impl Drop for Converted {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Python program: load a torch.save'd state dict (argv[1]) with `weights_only=True` and save its
/// floating-point tensors as float32 safetensors (argv[2]).
const CONVERT_BIN: &str = r#"
import sys, torch
from safetensors.torch import save_file
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
    sd = sd["state_dict"]
out = {k: v.detach().to(torch.float32).contiguous().clone()
       for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point()}
save_file(out, sys.argv[2], metadata={"format": "pt"})
"#;

/// Converts `bin` to a temporary safetensors file with the Python at [`python_path`].
/// The folder's weights: `model.safetensors`, else `pytorch_model.bin` converted to a temporary
/// safetensors file (removed when the returned [`Converted`] is dropped).
fn weights_file(dir: &Path) -> Result<(PathBuf, Option<Converted>)> {
    let safetensors = dir.join("model.safetensors");
    let bin = dir.join("pytorch_model.bin");
    if safetensors.is_file() {
        Ok((safetensors, None))
    } else if bin.is_file() {
        let converted = convert_bin(&bin)?;
        Ok((converted.0.clone(), Some(converted)))
    } else if dir.join("model.safetensors.index.json").is_file() {
        Err(ModelError::checkpoint(
            dir,
            "sharded checkpoints (model.safetensors.index.json) are not supported",
        ))
    } else {
        Err(ModelError::checkpoint(
            dir,
            "no model.safetensors or pytorch_model.bin in this folder",
        ))
    }
}

/// Refuses an `lm_head.weight` that is not the token embedding (untied output embeddings).
fn check_tied(head: &TensorView<'_>, wte: &TensorView<'_>, weights: &Path) -> Result<()> {
    let (head, wte) = (
        tensor_from_view(head, "lm_head.weight", weights)?,
        tensor_from_view(wte, "wte", weights)?,
    );
    if head.size() != wte.size() || !head.f_equal(&wte.to_kind(head.kind()))? {
        return Err(ModelError::checkpoint(
            weights,
            "lm_head.weight differs from transformer.wte.weight: untied output embeddings are not supported",
        ));
    }
    Ok(())
}

fn convert_bin(bin: &Path) -> Result<Converted> {
    let python = python_path();
    let out = std::env::temp_dir().join(format!(
        "grokscope-import-{}-{}.safetensors",
        std::process::id(),
        unique()
    ));
    let converted = Converted(out.clone());
    let result = Command::new(&python).arg("-c").arg(CONVERT_BIN).arg(bin).arg(&out).output().map_err(|e| {
        ModelError::checkpoint(
            bin,
            format!(
                "reading pytorch_model.bin needs Python with torch and safetensors, but {} could not be run ({e}); \
                 set GROKSCOPE_PYTHON or run `just setup`",
                python.display()
            ),
        )
    })?;
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(ModelError::checkpoint(
            bin,
            format!("conversion with {} failed: {last}", python.display()),
        ));
    }
    Ok(converted)
}

/// A number distinct for every call in this process.
fn unique() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
