//! Training configuration: one serde struct, named presets, config files (TOML or JSON) and
//! `--set key=value` overrides, validated in one place.

use crate::error::{io_err, Result, TrainError};
use crate::schedule::{CheckpointSchedule, LrShape};
use crate::DatasetSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Everything that defines a training run. Written, resolved, to `RUN_DIR/config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Preset this configuration started from (a config file may name one and override keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Dataset generated (and cached under the data root) when no dataset folder is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetSpec>,
    /// Dataset folder actually used; filled in (absolute) when the run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,

    /// Start from this checkpoint's weights instead of a random initialisation (e.g. a model
    /// made by `grokscope surgery`); it must describe the configured model (sizes, vocabulary,
    /// blocks and schedule). The optimiser starts fresh. A resumed run restores its own
    /// checkpoint instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,

    /// Embedding and softmax rows added after the task's tokens that no example ever uses (unset
    /// or 0: the task's tokens only). The paper trains GPT-2's 50,257 BPE rows around its task
    /// tokens: `extra_vocab_rows = 50257` reproduces that softmax. Rows `0..V` stay the dataset's
    /// tokens, and the checkpoints record that map (`token_rows` metadata), so the analyses rank
    /// over every row as the paper's scripts do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_vocab_rows: Option<usize>,

    /// Distinct transformer blocks (parameter sets).
    pub n_layer: usize,
    /// Order in which the blocks are applied: `plain`, `repeat:K` or an explicit list.
    pub schedule: BlockSchedule,
    /// Residual stream width.
    pub d_model: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// MLP hidden width.
    pub d_mlp: usize,
    /// Dropout probability (embeddings, attention, residual outputs), training only.
    pub dropout: f64,

    /// Optimiser updates in the whole run.
    pub steps: u64,
    /// Training examples per update.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Learning-rate shape after warm-up: `constant` or `cosine`.
    pub lr_schedule: LrShape,
    /// Linear warm-up steps (the rate of update i < warmup is `lr · i / warmup`).
    pub warmup_steps: u64,
    /// AdamW decoupled weight decay on every parameter except LayerNorms and biases.
    pub weight_decay: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Maximum global gradient L2 norm.
    pub grad_clip: f64,
    /// Seed of the initialisation, the batch order and dropout.
    pub seed: u64,

    /// Evaluate every N steps (and at every checkpoint).
    pub eval_every: u64,
    /// Examples per evaluation batch.
    pub eval_batch_size: usize,
    /// Update the progress display every N steps (the only other host reads of the loop).
    pub log_every: u64,
    /// When to write checkpoints: `paper`, `every:N`, `log:N` or `steps:a,b,c`.
    pub checkpoints: CheckpointSchedule,
    /// `fp32`, or `bf16` autocast (CUDA only).
    pub precision: Precision,
}

/// Blocks applied in order, relative to `n_layer` distinct blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockSchedule {
    /// `0, 1, …, n_layer − 1`.
    Plain,
    /// `0..n_layer` applied K times in sequence (the paper's sharing: n_layer 4, `repeat:2`;
    /// one block looped 6 times: n_layer 1, `repeat:6`).
    Repeat(usize),
    /// Any list of block indices below `n_layer`, every block used at least once.
    List(Vec<usize>),
}

impl BlockSchedule {
    /// The block indices applied in order, for `n_layer` distinct blocks.
    pub fn blocks(&self, n_layer: usize) -> Vec<usize> {
        match self {
            BlockSchedule::Plain => (0..n_layer).collect(),
            BlockSchedule::Repeat(k) => (0..*k).flat_map(|_| 0..n_layer).collect(),
            BlockSchedule::List(list) => list.clone(),
        }
    }
}

impl Serialize for BlockSchedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            BlockSchedule::Plain => s.serialize_str("plain"),
            BlockSchedule::Repeat(k) => s.collect_str(&format_args!("repeat:{k}")),
            BlockSchedule::List(list) => list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for BlockSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            List(Vec<usize>),
        }
        let bad = |s: &str| {
            serde::de::Error::custom(format!(
                "schedule {s:?}: expected \"plain\", \"repeat:K\" or a list of block indices"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::List(list) => Ok(BlockSchedule::List(list)),
            Raw::Name(s) if s == "plain" => Ok(BlockSchedule::Plain),
            Raw::Name(s) => match s.strip_prefix("repeat:").map(str::parse::<usize>) {
                Some(Ok(k)) if k >= 1 => Ok(BlockSchedule::Repeat(k)),
                _ => Err(bad(&s)),
            },
        }
    }
}

/// Numeric precision of the forward and backward passes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    Fp32,
    /// bf16 autocast around the forward pass on CUDA; weights, optimiser state and loss in f32.
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// Names of the built-in presets.
pub const PRESETS: [&str; 6] = [
    "paper-composition",
    "paper-comparison",
    "paper-complex",
    "paper-sharing",
    "tiny-composition",
    "tiny-comparison",
];

/// Keys that may differ when a run is resumed: they do not change the weights of any step that
/// both runs reach (`steps` only while the learning rate does not depend on it).
const RESUMABLE_KEYS: [&str; 6] = [
    "preset",
    "steps",
    "eval_every",
    "eval_batch_size",
    "log_every",
    "checkpoints",
];

impl TrainConfig {
    /// The built-in preset `name`.
    pub fn preset(name: &str) -> Result<TrainConfig> {
        let paper = |dataset: DatasetSpec| paper_config(name, dataset);
        let tiny = |dataset: DatasetSpec| tiny_config(name, dataset);
        Ok(match name {
            "paper-composition" => paper(DatasetSpec::paper_composition(7.2)),
            "paper-comparison" => paper(DatasetSpec::paper_comparison()),
            "paper-complex" => paper(DatasetSpec::paper_complex()),
            "paper-sharing" => TrainConfig {
                n_layer: 4,
                schedule: BlockSchedule::List(vec![0, 1, 2, 3, 0, 1, 2, 3]),
                weight_decay: 0.3,
                ..paper(DatasetSpec::paper_composition(12.6))
            },
            "tiny-composition" => TrainConfig {
                steps: 4500,
                lr: 2e-3,
                weight_decay: 0.6,
                checkpoints: "steps:200,500,800,1000,1200,1400,1600,2000,2500,3000,3500,4000"
                    .parse()?,
                ..tiny(DatasetSpec::tiny_composition())
            },
            "tiny-comparison" => TrainConfig {
                steps: 2500,
                lr: 1e-3,
                weight_decay: 1.0,
                checkpoints: "steps:100,200,300,400,500,600,800,1000,1300,1600,2000".parse()?,
                ..tiny(DatasetSpec::tiny_comparison())
            },
            _ => {
                return Err(TrainError::Config(format!(
                    "unknown preset {name:?} (known: {})",
                    PRESETS.join(", ")
                )))
            }
        })
    }

    /// Reads a config file (`.toml`, or JSON otherwise). A file that names a `preset` needs only
    /// the keys it changes; one without must give every key.
    pub fn from_file(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let parse_err = |msg: String| TrainError::Parse {
            path: path.to_path_buf(),
            msg,
        };
        let value: Value = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| parse_err(e.message().to_string()))?
        } else {
            serde_json::from_str(&text).map_err(|e| parse_err(e.to_string()))?
        };
        if !value.is_object() {
            return Err(parse_err("expected a table of settings".into()));
        }
        let file = value;
        let cfg = match file.get("preset") {
            Some(Value::String(name)) => {
                let mut base = serde_json::to_value(TrainConfig::preset(name)?)
                    .map_err(|e| TrainError::Config(e.to_string()))?;
                merge(&mut base, file.clone(), "")?;
                from_value(base)?
            }
            Some(other) => return Err(parse_err(format!("preset = {other}: expected a name"))),
            None => from_value(file.clone())?,
        };
        let known = serde_json::to_value(&cfg).map_err(|e| TrainError::Config(e.to_string()))?;
        if let Some(key) = first_unknown_key(&file, &known, "") {
            return Err(parse_err(format!("unknown config key {key:?}")));
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies `key=value` overrides in order. Keys are the config's field names, and
    /// `dataset.params.<name>`, `dataset.seed`, `dataset.generator` for the dataset generator. Values are parsed as JSON where possible (numbers, booleans,
    /// lists such as `[0,1,2,3,0,1,2,3]`) and taken as strings otherwise.
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<()> {
        let mut value =
            serde_json::to_value(&*self).map_err(|e| TrainError::Config(e.to_string()))?;
        for item in overrides {
            let (key, raw) = item
                .split_once('=')
                .ok_or_else(|| TrainError::Config(format!("--set {item:?}: expected key=value")))?;
            let (key, raw) = (key.trim(), raw.trim());
            let parsed = serde_json::from_str::<Value>(raw).unwrap_or(Value::String(raw.into()));
            add_optional_key(&mut value, key);
            let current = lookup(&value, key).ok_or_else(|| unknown_key(key, &value))?;
            let new = match (current, parsed) {
                (Value::String(_), Value::Number(_) | Value::Bool(_)) => Value::String(raw.into()),
                (_, v) => v,
            };
            set(&mut value, key, new)?;
            *self = from_value(value.clone()).map_err(|e| {
                let msg = e.to_string();
                let msg = msg.trim_start_matches("config: ");
                let msg = msg.strip_prefix(&format!("{key}: ")).unwrap_or(msg);
                TrainError::Config(format!("--set {key}={raw}: {msg}"))
            })?;
        }
        self.validate()
    }

    /// Checks every value's range and the consistency of the model sizes.
    pub fn validate(&self) -> Result<()> {
        self.validate_sizes_and_counts()?;
        self.validate_optimiser()?;
        model::check_schedule(&self.schedule.blocks(self.n_layer), self.n_layer)
            .map_err(TrainError::Config)?;
        if let Some(spec) = &self.dataset {
            spec.validate()?;
        }
        Ok(())
    }

    /// Model sizes, batch sizes and step counts are at least 1, `log:N` checkpoints fit in the
    /// run and the heads divide `d_model`.
    fn validate_sizes_and_counts(&self) -> Result<()> {
        let fail = |msg: String| Err(TrainError::Config(msg));
        let positive_usize = [
            ("n_layer", self.n_layer),
            ("d_model", self.d_model),
            ("n_head", self.n_head),
            ("d_mlp", self.d_mlp),
            ("batch_size", self.batch_size),
            ("eval_batch_size", self.eval_batch_size),
        ];
        for (key, v) in positive_usize {
            if v == 0 {
                return fail(format!("{key} = 0: must be at least 1"));
            }
        }
        for (key, v) in [
            ("steps", self.steps),
            ("eval_every", self.eval_every),
            ("log_every", self.log_every),
        ] {
            if v == 0 {
                return fail(format!("{key} = 0: must be at least 1"));
            }
        }
        if let CheckpointSchedule::Log(n) = self.checkpoints {
            if n > self.steps {
                return fail(format!(
                    "checkpoints = log:{n} asks for more checkpoints than the run's {} steps; \
                     use at most log:{}",
                    self.steps, self.steps
                ));
            }
        }
        if !self.d_model.is_multiple_of(self.n_head) {
            return fail(format!(
                "d_model = {} is not a multiple of n_head = {}",
                self.d_model, self.n_head
            ));
        }
        Ok(())
    }

    /// The optimiser's and dropout's hyperparameters are in range.
    fn validate_optimiser(&self) -> Result<()> {
        let fail = |msg: String| Err(TrainError::Config(msg));
        let finite_positive = [
            ("lr", self.lr),
            ("eps", self.eps),
            ("grad_clip", self.grad_clip),
        ];
        for (key, v) in finite_positive {
            if !(v.is_finite() && v > 0.0) {
                return fail(format!("{key} = {v}: must be a positive number"));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return fail(format!("weight_decay = {}: must be ≥ 0", self.weight_decay));
        }
        if self.lr * self.weight_decay >= 1.0 {
            return fail(format!(
                "lr · weight_decay = {} ≥ 1 would flip the sign of the weights each step",
                self.lr * self.weight_decay
            ));
        }
        for (key, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return fail(format!("{key} = {v}: must be in [0, 1)"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(format!("dropout = {}: must be in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Hash of every setting that determines the weights at a given step (all keys except
    /// `RESUMABLE_KEYS`, the dataset folder and generator — the data is fingerprinted
    /// separately — and `steps` unless the schedule is cosine), as 16 hex digits.
    pub fn trajectory_hash(&self) -> String {
        format!(
            "{:016x}",
            util::hash::fnv1a(self.trajectory_value().to_string().as_bytes())
        )
    }

    /// Keys whose values differ between `self` and `other` in a way that changes the weights.
    pub fn trajectory_differences(&self, other: &TrainConfig) -> Vec<String> {
        let (Value::Object(a), Value::Object(b)) =
            (self.trajectory_value(), other.trajectory_value())
        else {
            return Vec::new();
        };
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| {
                let show = |v: Option<&Value>| v.map_or("unset".into(), Value::to_string);
                format!("{k} was {} and is now {}", show(b.get(k)), show(a.get(k)))
            })
            .collect()
    }

    fn trajectory_value(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            for key in RESUMABLE_KEYS.iter().chain(&["data_dir", "dataset"]) {
                if *key == "steps" && self.lr_schedule == LrShape::Cosine {
                    continue;
                }
                map.remove(*key);
            }
        }
        value
    }

    /// The block indices applied in order.
    pub fn blocks(&self) -> Vec<usize> {
        self.schedule.blocks(self.n_layer)
    }

    /// The optimiser's hyper-parameters other than the learning rate.
    pub fn adamw_params(&self) -> crate::AdamWParams {
        crate::AdamWParams {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }

    /// The model this config trains on `ds`: its vocabulary plus `extra_vocab_rows`, its longest
    /// sequence, this config's sizes, schedule and dropout, LayerNorm ε 1e-5.
    pub fn gpt_config(&self, ds: &tasks::Dataset) -> model::GptConfig {
        model::GptConfig {
            vocab_size: ds.vocab.len() + self.extra_vocab_rows.unwrap_or(0),
            n_ctx: ds.max_len(),
            d_model: self.d_model,
            n_head: self.n_head,
            d_mlp: self.d_mlp,
            n_blocks: self.n_layer,
            schedule: self.blocks(),
            dropout: self.dropout,
            ln_eps: 1e-5,
        }
    }
}

impl FromStr for TrainConfig {
    type Err = TrainError;

    /// A preset by name.
    fn from_str(name: &str) -> Result<TrainConfig> {
        TrainConfig::preset(name)
    }
}

/// The optional keys (dotted paths) `--set` and config files may add: absent from a config that
/// does not use them.
const OPTIONAL_KEYS: [&str; 3] = ["init", "extra_vocab_rows", "dataset.params.shorter_hops"];

/// True if a config file may add key `key` of table `path` (dotted) to a preset's config.
fn may_add(path: &str, key: &str) -> bool {
    let full = if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    };
    ["data_dir", "dataset"].contains(&full.as_str()) || OPTIONAL_KEYS.contains(&full.as_str())
}

/// Makes room for optional key `key` in `value` (a null placeholder that `set` then replaces),
/// when its parent table exists.
fn add_optional_key(value: &mut Value, key: &str) {
    if !OPTIONAL_KEYS.contains(&key) {
        return;
    }
    let (parent, last) = key.rsplit_once('.').unwrap_or(("", key));
    let mut table = Some(value);
    for part in parent.split('.').filter(|p| !p.is_empty()) {
        table = table.and_then(|t| t.as_object_mut()?.get_mut(part));
    }
    if let Some(Value::Object(map)) = table {
        map.entry(last).or_insert(Value::Null);
    }
}

/// Deserialises a config; the error names the offending key (`batch_size: invalid type …`).
fn from_value(value: Value) -> Result<TrainConfig> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match path.as_str() {
            "." | "" => TrainError::Config(format!("config: {inner}")),
            _ => TrainError::Config(format!("config: {path}: {inner}")),
        }
    })
}

fn lookup<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.')
        .try_fold(value, |v, part| v.as_object()?.get(part))
}

fn unknown_key(key: &str, value: &Value) -> TrainError {
    let known = |v: &Value| {
        v.as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
    };
    let (parent, _) = key.rsplit_once('.').unwrap_or(("", key));
    let scope = if parent.is_empty() {
        Some(value)
    } else {
        lookup(value, parent)
    };
    match scope.and_then(known) {
        Some(list) => TrainError::Config(format!("unknown config key {key:?} (known: {list})")),
        None => TrainError::Config(format!("unknown config key {key:?}")),
    }
}

fn set(value: &mut Value, key: &str, new: Value) -> Result<()> {
    let mut cur = value;
    for part in key.split('.') {
        cur = cur
            .as_object_mut()
            .and_then(|m| m.get_mut(part))
            .ok_or_else(|| TrainError::Config(format!("unknown config key {key:?}")))?;
    }
    *cur = new;
    Ok(())
}

/// Deep-merges `patch` into `base`: tables merge key by key, other values replace. Every key of
/// `patch` must exist in `base` (`path` is the dotted prefix, for the error message).
fn merge(base: &mut Value, patch: Value, path: &str) -> Result<()> {
    match (base, patch) {
        (Value::Object(dst), Value::Object(src)) => {
            for (k, v) in src {
                let full = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match dst.get_mut(&k) {
                    Some(slot) => merge(slot, v, &full)?,
                    None if may_add(path, &k) => {
                        dst.insert(k, v);
                    }
                    None => return Err(TrainError::Config(format!("unknown config key {full:?}"))),
                }
            }
            Ok(())
        }
        (slot, v) => {
            *slot = v;
            Ok(())
        }
    }
}

/// The first dotted key of `file` that does not appear in `known` (serde ignores unknown keys
/// inside flattened tables, so they are checked here).
fn first_unknown_key(file: &Value, known: &Value, path: &str) -> Option<String> {
    let (Value::Object(f), Value::Object(k)) = (file, known) else {
        return None;
    };
    f.iter().find_map(|(key, v)| {
        let full = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match k.get(key) {
            None => Some(full),
            Some(known) => first_unknown_key(v, known, &full),
        }
    })
}

/// The paper's model and optimiser settings (8 layers, d_model 768, 1.5M steps) on `dataset`,
/// as preset `name`.
fn paper_config(name: &str, dataset: DatasetSpec) -> TrainConfig {
    TrainConfig {
        preset: Some(name.to_string()),
        dataset: Some(dataset),
        data_dir: None,
        init: None,
        extra_vocab_rows: None,
        n_layer: 8,
        schedule: BlockSchedule::Plain,
        d_model: 768,
        n_head: 12,
        d_mlp: 3072,
        dropout: 0.1,
        steps: 1_500_000,
        batch_size: 512,
        lr: 1e-4,
        lr_schedule: LrShape::Constant,
        warmup_steps: 2000,
        weight_decay: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        grad_clip: 1.0,
        seed: 42,
        eval_every: 2000,
        eval_batch_size: 1024,
        log_every: 100,
        checkpoints: CheckpointSchedule::Paper,
        precision: Precision::Fp32,
    }
}

/// A small, fast variant of [`paper_config`] (4 layers, d_model 128, no dropout) on `dataset`,
/// as preset `name`.
fn tiny_config(name: &str, dataset: DatasetSpec) -> TrainConfig {
    TrainConfig {
        n_layer: 4,
        d_model: 128,
        n_head: 4,
        d_mlp: 512,
        dropout: 0.0,
        warmup_steps: 200,
        eval_every: 100,
        log_every: 10,
        ..paper_config(name, dataset)
    }
}
