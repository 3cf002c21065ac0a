//! `sweep.toml`: a base configuration and the axes swept over it, expanded into points.
//!
//! A sweep key is a `grokscope train --set` key (`lr`, `seed`, `dataset.params.phi`,
//! `dataset.seed`, …): every value is applied with [`TrainConfig::apply_overrides`], so a key is
//! sweepable exactly when `--set` accepts it, and the dataset parameters are checked by the same
//! generator parameter parser `grokscope data` fills.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use train::{DatasetSpec, TrainConfig};

/// `--set` keys a sweep may not vary: the preset is the base's, the data folders are the sweep's.
const NOT_SWEEPABLE: [&str; 3] = ["preset", "data_dir", "dataset"];

/// The parsed `sweep.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// What every point starts from.
    pub base: Base,
    /// One axis per key (dotted keys may be written quoted or as nested tables); the points are
    /// the product of all axes.
    #[serde(default)]
    pub grid: serde_json::Map<String, Value>,
    /// Axes whose keys move together: `[[zip]]` tables of equally long lists.
    #[serde(default)]
    pub zip: Vec<serde_json::Map<String, Value>>,
    /// How each finished run is traced.
    #[serde(default)]
    pub trace: TraceSettings,
}

/// `[base]`: a preset or a config file, and `--set` overrides (data parameters included).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// Built-in preset (`grokscope train --preset`).
    pub preset: Option<String>,
    /// Config file (`grokscope train --config`), relative to the sweep file.
    pub config: Option<PathBuf>,
    /// `--set` overrides applied to every point, e.g. `steps = 300`, `"dataset.params.phi" = 9`.
    #[serde(default)]
    pub set: serde_json::Map<String, Value>,
}

/// `[trace]`: the prompt sample of `grokscope trace` for every run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSettings {
    /// Split the sampled prompts come from.
    #[serde(default = "default_split")]
    pub split: String,
    /// Number of sampled prompts.
    #[serde(default = "default_size")]
    pub size: usize,
    /// Seed of the prompt sample and the corruptions.
    #[serde(default)]
    pub seed: u64,
}

fn default_split() -> String {
    "train_inferred".into()
}

fn default_size() -> usize {
    300
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            split: default_split(),
            size: default_size(),
            seed: 0,
        }
    }
}

/// One axis: the keys it sets and, per position on the axis, one value per key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub keys: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

/// One point of the sweep, fully resolved.
#[derive(Clone, Debug)]
pub struct Point {
    /// `(key, value)` of every axis key, in axis order.
    pub values: Vec<(String, Value)>,
    /// The resolved training configuration (its `dataset` is the point's generator spec).
    pub config: TrainConfig,
}

impl SweepFile {
    /// Reads and parses a sweep file (unknown tables or keys are errors).
    pub fn read(path: &Path) -> Result<(SweepFile, String)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read sweep file {}", path.display()))?;
        let file: SweepFile = toml::from_str(&text)
            .map_err(|e| anyhow!("{}: {}", path.display(), e.message().trim()))?;
        Ok((file, text))
    }

    /// The axes: each `[grid]` key, then each `[[zip]]` table; every one checked non-empty.
    pub fn axes(&self) -> Result<Vec<Axis>> {
        let mut axes = Vec::new();
        for (key, values) in lists(&self.grid, "[grid]")? {
            let values = values.into_iter().map(|v| vec![v]).collect();
            axes.push(Axis {
                keys: vec![key],
                values,
            });
        }
        for table in &self.zip {
            axes.push(zip_axis(&lists(table, "[[zip]]")?)?);
        }
        for axis in &axes {
            if axis.values.is_empty() {
                bail!("axis {} has no values", axis.keys.join("+"));
            }
            for key in &axis.keys {
                if NOT_SWEEPABLE.contains(&key.as_str()) {
                    bail!("{key} is not sweepable (the base names the preset; the sweep owns the data folders)");
                }
            }
        }
        Ok(axes)
    }

    /// Every point: the product of the axes (the first axis outermost), each resolved and
    /// validated by the training config's own parser.
    pub fn points(&self, sweep_file: &Path) -> Result<Vec<Point>> {
        let base = self.base_config(sweep_file)?;
        let axes = self.axes()?;
        let mut points = Vec::new();
        for combo in product(&axes) {
            let values: Vec<(String, Value)> = combo;
            let overrides: Vec<String> = values.iter().map(|(k, v)| set_arg(k, v)).collect();
            let mut config = base.clone();
            config
                .apply_overrides(&overrides)
                .with_context(|| format!("sweep point {}", describe(&values)))?;
            if config.dataset.is_none() {
                bail!("the base has no dataset generator: a sweep needs a preset or config with a `dataset` table");
            }
            points.push(Point { values, config });
        }
        Ok(points)
    }

    /// The base configuration: preset or config file, then the `[base.set]` overrides.
    fn base_config(&self, sweep_file: &Path) -> Result<TrainConfig> {
        let mut cfg = match (&self.base.preset, &self.base.config) {
            (Some(name), None) => TrainConfig::preset(name)?,
            (None, Some(file)) => {
                let dir = sweep_file.parent().unwrap_or(Path::new("."));
                TrainConfig::from_file(&dir.join(file))?
            }
            _ => bail!("[base] needs exactly one of preset = NAME or config = FILE"),
        };
        let set = flatten(&self.base.set);
        if let Some(key) = set.keys().find(|k| NOT_SWEEPABLE.contains(&k.as_str())) {
            bail!("[base.set] {key}: not settable in a sweep (the sweep owns the data folders)");
        }
        let overrides: Vec<String> = set.iter().map(|(k, v)| set_arg(k, v)).collect();
        cfg.apply_overrides(&overrides).context("[base.set]")?;
        Ok(cfg)
    }
}

/// A table's leaves under dotted keys: `{dataset = {params = {phi = 9}}}` → `dataset.params.phi`.
fn flatten(table: &serde_json::Map<String, Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (key, value) in table {
        match value {
            Value::Object(inner) => {
                for (k, v) in flatten(inner) {
                    out.insert(format!("{key}.{k}"), v);
                }
            }
            other => {
                out.insert(key.clone(), other.clone());
            }
        }
    }
    out
}

/// A table of axes: every leaf must be a list of values.
fn lists(
    table: &serde_json::Map<String, Value>,
    what: &str,
) -> Result<BTreeMap<String, Vec<Value>>> {
    flatten(table)
        .into_iter()
        .map(|(key, value)| match value {
            Value::Array(list) => Ok((key, list)),
            other => bail!("{what} {key} = {other}: expected a list of values"),
        })
        .collect()
}

/// A `[[zip]]` table as one axis; its lists must have one length.
fn zip_axis(table: &BTreeMap<String, Vec<Value>>) -> Result<Axis> {
    let keys: Vec<String> = table.keys().cloned().collect();
    if keys.is_empty() {
        bail!("a [[zip]] table has no keys");
    }
    let len = table[&keys[0]].len();
    if let Some((key, list)) = table.iter().find(|(_, list)| list.len() != len) {
        bail!(
            "[[zip]] {}: {key} has {} values, {} has {len}",
            keys.join("+"),
            list.len(),
            keys[0]
        );
    }
    let values = (0..len)
        .map(|i| keys.iter().map(|k| table[k][i].clone()).collect())
        .collect();
    Ok(Axis { keys, values })
}

/// The cartesian product of the axes, each element the `(key, value)` list of one point.
fn product(axes: &[Axis]) -> Vec<Vec<(String, Value)>> {
    let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for axis in axes {
        combos = combos
            .into_iter()
            .flat_map(|prefix| {
                axis.values.iter().map(move |vals| {
                    let mut c = prefix.clone();
                    c.extend(axis.keys.iter().cloned().zip(vals.iter().cloned()));
                    c
                })
            })
            .collect();
    }
    combos
}

/// `key=value` as `grokscope train --set` takes it (the value as JSON text).
pub fn set_arg(key: &str, value: &Value) -> String {
    format!("{key}={value}")
}

/// `key=value key=value` for messages and legends (strings without quotes).
pub fn describe(values: &[(String, Value)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value as plain text: strings without quotes, everything else as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Folder name (under the sweep's `data/`) of a dataset spec: its generator name and a hash of
/// the whole spec, so that equal specs share one folder and different ones never collide.
pub fn data_folder(spec: &DatasetSpec) -> String {
    let json = serde_json::to_string(spec).unwrap_or_default();
    format!(
        "{}-{:08x}",
        spec.name(),
        util::hash::fnv1a(json.as_bytes()) as u32
    )
}
