//! Safetensors checkpoints with Hugging Face GPT-2 names and layout, the grokscope config as JSON
//! in the file's metadata, atomic writes and loads that name every bad tensor.

use crate::config::GptConfig;
use crate::error::{ModelError, Result};
use crate::gpt::Gpt;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// Metadata key holding the grokscope [`GptConfig`] as JSON.
pub const CONFIG_KEY: &str = "grokscope_config";

/// Metadata key holding the fingerprint of the data a checkpoint was trained on (16 hex digits,
/// `tasks::Dataset::fingerprint`), so that a lone model file still names its data.
pub const DATA_FINGERPRINT_KEY: &str = "data_fingerprint";

/// A model loaded from (or ready to be saved to) a checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The model's configuration.
    pub config: GptConfig,
    /// The parameters (names as in the file).
    pub vs: nn::VarStore,
    /// The model built on `vs`.
    pub model: Gpt,
    /// The file's other metadata entries (everything except the config and `format`).
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// A freshly initialised model on `device`, with empty metadata.
    pub fn new(config: GptConfig, device: Device) -> Result<Checkpoint> {
        let vs = nn::VarStore::new(device);
        let model = Gpt::new(&vs.root(), &config)?;
        Ok(Checkpoint {
            config,
            vs,
            model,
            metadata: BTreeMap::new(),
        })
    }

    /// Writes the parameters of `vs` (built by [`Gpt::new`] for `cfg`) to `path` as safetensors,
    /// with `cfg` as JSON under [`CONFIG_KEY`], `format = pt`, and `extra_metadata`. Shared
    /// blocks are stored once (`transformer.h.{block}`, not per layer). The write is atomic: a
    /// temporary file in the same folder, fsync, rename. Creates the parent folder.
    pub fn save(
        path: impl AsRef<Path>,
        vs: &nn::VarStore,
        cfg: &GptConfig,
        extra_metadata: &BTreeMap<String, String>,
    ) -> Result<()> {
        let path = path.as_ref();
        cfg.validate()?;
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let shapes: BTreeMap<String, Vec<i64>> =
            vars.iter().map(|(n, t)| (n.clone(), t.size())).collect();
        check_tensors(&param_shapes(cfg), &shapes, path)?;
        let mut metadata = extra_metadata.clone();
        let json = serde_json::to_string(cfg).map_err(|e| ModelError::Config(e.to_string()))?;
        metadata.insert(CONFIG_KEY.to_string(), json);
        metadata.insert("format".to_string(), "pt".to_string());
        let vars: Vec<(String, Tensor)> = vars.into_iter().collect();
        write_safetensors(path, &vars, &metadata).map(|_| ())
    }

    /// [`Checkpoint::save`] of this checkpoint's parameters, config and metadata.
    pub fn save_to(&self, path: impl AsRef<Path>) -> Result<()> {
        Checkpoint::save(path, &self.vs, &self.config, &self.metadata)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`] onto `device`. Errors name the file and
    /// every missing, unexpected, mis-shaped or non-finite tensor; float16/bfloat16/float64
    /// tensors are converted to the model's float32.
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Checkpoint> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let (tensors, mut metadata) = parse_safetensors(&bytes, path)?;
        check_finite(&tensors, path)?;
        let json = metadata.remove(CONFIG_KEY).ok_or_else(|| {
            ModelError::checkpoint(
                path,
                format!(
                    "no `{CONFIG_KEY}` entry in the safetensors metadata: not a grokscope checkpoint \
                     (for a Hugging Face GPT-2 folder use `grokscope import-hf`)"
                ),
            )
        })?;
        metadata.remove("format");
        let config: GptConfig = serde_json::from_str(&json).map_err(|e| {
            ModelError::checkpoint(path, format!("bad `{CONFIG_KEY}` metadata: {e}"))
        })?;
        config
            .validate()
            .map_err(|e| ModelError::checkpoint(path, e.to_string()))?;
        let shapes = tensors
            .iter()
            .map(|(name, view)| (name.clone(), shape_of(view)))
            .collect();
        let get = |name: &str| match tensors.get(name) {
            Some(view) => tensor_from_view(view, name, path),
            None => Err(ModelError::MissingTensors {
                path: path.to_path_buf(),
                names: vec![name.to_string()],
            }),
        };
        Checkpoint::from_source(config, &shapes, get, path, device, metadata)
    }

    /// Builds a checkpoint for `config` on `device` whose parameters come from a source holding
    /// tensors of the given `shapes`; `get` returns the tensor of one name. Checks names and shapes
    /// first (errors name the `source` and the tensors).
    pub(crate) fn from_source(
        config: GptConfig,
        shapes: &BTreeMap<String, Vec<i64>>,
        mut get: impl FnMut(&str) -> Result<Tensor>,
        source: &Path,
        device: Device,
        metadata: BTreeMap<String, String>,
    ) -> Result<Checkpoint> {
        check_tensors(&param_shapes(&config), shapes, source)?;
        let ckpt = Checkpoint::new(config, device)?;
        let _no_grad = tch::no_grad_guard();
        for (name, mut var) in ckpt.vs.variables() {
            let value = get(&name)?;
            var.f_copy_(&value.f_to_kind(var.kind())?)?;
        }
        Ok(Checkpoint { metadata, ..ckpt })
    }
}

/// Every parameter name of a model with config `cfg` and its shape, e.g.
/// `transformer.h.0.attn.c_attn.weight → [d_model, 3·d_model]` (Conv1D layout `[in, out]`).
pub fn param_shapes(cfg: &GptConfig) -> BTreeMap<String, Vec<i64>> {
    let (v, n, d, m) = (
        cfg.vocab_size as i64,
        cfg.n_ctx as i64,
        cfg.d_model as i64,
        cfg.d_mlp as i64,
    );
    let mut shapes = BTreeMap::new();
    let mut add = |name: String, shape: &[i64]| shapes.insert(name, shape.to_vec());
    add("transformer.wte.weight".into(), &[v, d]);
    add("transformer.wpe.weight".into(), &[n, d]);
    add("transformer.ln_f.weight".into(), &[d]);
    add("transformer.ln_f.bias".into(), &[d]);
    for i in 0..cfg.n_blocks {
        let p = format!("transformer.h.{i}");
        for ln in ["ln_1", "ln_2"] {
            add(format!("{p}.{ln}.weight"), &[d]);
            add(format!("{p}.{ln}.bias"), &[d]);
        }
        add(format!("{p}.attn.c_attn.weight"), &[d, 3 * d]);
        add(format!("{p}.attn.c_attn.bias"), &[3 * d]);
        add(format!("{p}.attn.c_proj.weight"), &[d, d]);
        add(format!("{p}.attn.c_proj.bias"), &[d]);
        add(format!("{p}.mlp.c_fc.weight"), &[d, m]);
        add(format!("{p}.mlp.c_fc.bias"), &[m]);
        add(format!("{p}.mlp.c_proj.weight"), &[m, d]);
        add(format!("{p}.mlp.c_proj.bias"), &[d]);
    }
    shapes
}

/// Compares the tensors `found` in `source` with the `expected` ones: missing, then unexpected,
/// then mis-shaped tensors are errors that name them.
pub(crate) fn check_tensors(
    expected: &BTreeMap<String, Vec<i64>>,
    found: &BTreeMap<String, Vec<i64>>,
    source: &Path,
) -> Result<()> {
    let missing: Vec<String> = expected
        .keys()
        .filter(|n| !found.contains_key(*n))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(ModelError::MissingTensors {
            path: source.to_path_buf(),
            names: missing,
        });
    }
    let extra: Vec<String> = found
        .keys()
        .filter(|n| !expected.contains_key(*n))
        .cloned()
        .collect();
    if !extra.is_empty() {
        return Err(ModelError::ExtraTensors {
            path: source.to_path_buf(),
            names: extra,
        });
    }
    for (name, shape) in expected {
        if found[name] != *shape {
            return Err(ModelError::ShapeMismatch {
                path: source.to_path_buf(),
                name: name.clone(),
                expected: shape.clone(),
                found: found[name].clone(),
            });
        }
    }
    Ok(())
}

/// A safetensors file's tensor views and metadata.
type Parsed<'a> = (
    BTreeMap<String, safetensors::tensor::TensorView<'a>>,
    BTreeMap<String, String>,
);

/// Parses safetensors `bytes` read from `path`.
pub(crate) fn parse_safetensors<'a>(bytes: &'a [u8], path: &Path) -> Result<Parsed<'a>> {
    let bad = |e: safetensors::SafeTensorError| {
        ModelError::checkpoint(path, format!("not a valid safetensors file: {e}"))
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(bad)?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let file = SafeTensors::deserialize(bytes).map_err(bad)?;
    let tensors = file.tensors().into_iter().collect();
    Ok((tensors, metadata))
}

/// Checks that every floating-point tensor of a safetensors file holds only finite values (no NaN,
/// no ±inf); an error names the file and the first bad tensor.
pub fn check_finite_file(path: &Path) -> Result<()> {
    let bytes = fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let (tensors, _) = parse_safetensors(&bytes, path)?;
    check_finite(&tensors, path)
}

/// [`check_finite_file`] on parsed views.
fn check_finite(
    tensors: &BTreeMap<String, safetensors::tensor::TensorView<'_>>,
    path: &Path,
) -> Result<()> {
    let bad = tensors.iter().find(|(_, view)| {
        let data = view.data();
        match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .any(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
            Dtype::F64 => data
                .chunks_exact(8)
                .any(|b| !f64::from_le_bytes(b.try_into().unwrap_or([0; 8])).is_finite()),
            // Exponent bits all ones: inf or NaN.
            Dtype::F16 => data
                .chunks_exact(2)
                .any(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 == 0x7c00),
            Dtype::BF16 => data
                .chunks_exact(2)
                .any(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7f80 == 0x7f80),
            _ => false,
        }
    });
    match bad {
        Some((name, _)) => Err(ModelError::checkpoint(
            path,
            format!(
                "tensor `{name}` holds NaN or infinite values; the file is damaged or training \
                 diverged: use an earlier checkpoint (`grokscope verify RUN` lists the good ones)"
            ),
        )),
        None => Ok(()),
    }
}

/// The shape of a safetensors view as i64.
pub(crate) fn shape_of(view: &safetensors::tensor::TensorView<'_>) -> Vec<i64> {
    view.shape().iter().map(|&s| s as i64).collect()
}

/// A CPU tensor with the contents of a floating-point safetensors view.
pub(crate) fn tensor_from_view(
    view: &safetensors::tensor::TensorView<'_>,
    name: &str,
    path: &Path,
) -> Result<Tensor> {
    let kind = match view.dtype() {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        other => {
            return Err(ModelError::checkpoint(
                path,
                format!("tensor `{name}` has dtype {other:?}, expected a float type"),
            ))
        }
    };
    Ok(Tensor::f_from_data_size(
        view.data(),
        &shape_of(view),
        kind,
    )?)
}

/// The safetensors dtype name of a tensor kind, or `None` for kinds the format cannot hold.
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

/// Writes named tensors and string metadata as a safetensors file at `path`, atomically (8-byte
/// little-endian header length, JSON header padded with spaces to a multiple of 8, then the raw
/// little-endian data in the order given). The header's keys are sorted, so the same tensors and
/// metadata always give the same bytes. Returns the file size in bytes.
/// Errors: a repeated or reserved name, a kind safetensors cannot hold, IO.
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
    for (name, tensor) in tensors {
        let kind = tensor.kind();
        let dtype = dtype_name(kind).ok_or_else(|| {
            ModelError::Input(format!("cannot save tensor `{name}` of kind {kind:?}"))
        })?;
        let host = tensor
            .f_detach()?
            .f_to_device(Device::Cpu)?
            .f_contiguous()?;
        let numel = host.numel();
        let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
        host.f_copy_data_u8(&mut bytes, numel)?;
        let entry = serde_json::json!({
            "dtype": dtype,
            "shape": host.size(),
            "data_offsets": [offset, offset + bytes.len()],
        });
        if name == "__metadata__" || header.insert(name.clone(), entry).is_some() {
            return Err(ModelError::Input(format!(
                "cannot save tensor `{name}`: the name is used twice (or is reserved)"
            )));
        }
        offset += bytes.len();
        data.push(bytes);
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| ModelError::Input(e.to_string()))?;
    json.resize(json.len().div_ceil(8) * 8, b' ');
    util::fs::atomically(path, |tmp| {
        let mut out = std::io::BufWriter::new(File::create(tmp)?);
        out.write_all(&(json.len() as u64).to_le_bytes())?;
        out.write_all(&json)?;
        for bytes in &data {
            out.write_all(bytes)?;
        }
        out.flush()
    })
    .map_err(|e| ModelError::io(path, e))?;
    Ok((8 + json.len() + offset) as u64)
}
