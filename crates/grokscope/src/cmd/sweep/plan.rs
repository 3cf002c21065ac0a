//! `grokscope sweep plan`: one folder per point and the `sweep.json` manifest.
//!
//! Layout of a sweep folder:
//! - `sweep.json` (the manifest), `sweep.toml` (a copy of the file it was planned from);
//! - `data/<name>-<hash>/`: one dataset per distinct generator spec, shared by its points;
//! - `points/pNNN/`: `point.json` (axis values), `train.json` (resolved config), `data.json`
//!   (generator spec); `run/` (the run folder), `trace/` (trace output and the run's report),
//!   `error.txt` (the last failure, if any).

use super::spec::{data_folder, describe, Axis, SweepFile, TraceSettings};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use train::{DatasetSpec, TrainConfig};

/// Manifest format version.
const VERSION: u32 = 1;

/// `sweep.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The sweep file it was planned from (absolute) and the FNV-1a hash of its text.
    pub source: PathBuf,
    pub source_hash: String,
    pub axes: Vec<Axis>,
    pub trace: TraceSettings,
    /// The distinct datasets, in order of first use.
    pub datasets: Vec<DataEntry>,
    pub points: Vec<PointEntry>,
}

/// One dataset of the sweep: its folder (relative to the sweep folder) and generator spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataEntry {
    pub folder: String,
    pub spec: DatasetSpec,
}

/// One point in the manifest (also its `point.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointEntry {
    pub index: usize,
    /// Folder name under `points/`.
    pub name: String,
    /// Axis key → value.
    pub values: serde_json::Map<String, Value>,
    /// Dataset folder relative to the sweep folder.
    pub data: String,
    /// Total training steps.
    pub steps: u64,
}

impl PointEntry {
    /// `key=value …` of the point's axis values.
    pub fn label(&self) -> String {
        let pairs: Vec<(String, Value)> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        describe(&pairs)
    }
}

/// A planned sweep folder.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Sweep {
    /// Opens a planned sweep folder (its `sweep.json`).
    pub fn open(dir: &Path) -> Result<Sweep> {
        let path = dir.join("sweep.json");
        let bytes = std::fs::read(&path).with_context(|| {
            format!("{}: not a planned sweep folder (no sweep.json; run `grokscope sweep plan FILE --out {}`)", dir.display(), dir.display())
        })?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a sweep manifest", path.display()))?;
        if manifest.version != VERSION {
            bail!(
                "{}: manifest version {} (this grokscope reads {VERSION})",
                path.display(),
                manifest.version
            );
        }
        let dir = std::path::absolute(dir)?;
        Ok(Sweep { dir, manifest })
    }

    /// Folder of point `p`.
    pub fn point_dir(&self, p: &PointEntry) -> PathBuf {
        self.dir.join("points").join(&p.name)
    }

    /// Run folder of point `p`.
    pub fn run_dir(&self, p: &PointEntry) -> PathBuf {
        self.point_dir(p).join("run")
    }

    /// Trace (and report) folder of point `p`.
    pub fn trace_dir(&self, p: &PointEntry) -> PathBuf {
        self.point_dir(p).join("trace")
    }

    /// The point with array index `index`.
    pub fn point(&self, index: usize) -> Result<&PointEntry> {
        self.manifest.points.get(index).with_context(|| {
            format!(
                "no point {index}: the sweep has {} points",
                self.manifest.points.len()
            )
        })
    }
}

/// Plans `file` into `out`. Everything is resolved and checked before anything is written;
/// planning the same file again into the same folder is a no-op that keeps its runs.
pub fn plan(file: &Path, out: &Path) -> Result<Sweep> {
    let (sweep_file, text) = SweepFile::read(file)?;
    let points = sweep_file.points(file)?;
    let source = std::path::absolute(file)?;
    let source_hash = format!("{:016x}", util::hash::fnv1a(text.as_bytes()));
    check_out_folder(out, &source_hash)?;
    let mut datasets: Vec<DataEntry> = Vec::new();
    let mut entries = Vec::new();
    let mut files = Vec::new();
    for (index, point) in points.iter().enumerate() {
        let spec = point
            .config
            .dataset
            .clone()
            .expect("points() checks the dataset");
        let data = format!("data/{}", data_folder(&spec));
        if !datasets.iter().any(|d| d.folder == data) {
            datasets.push(DataEntry {
                folder: data.clone(),
                spec: spec.clone(),
            });
        }
        let entry = PointEntry {
            index,
            name: format!("p{index:03}"),
            values: point.values.iter().cloned().collect(),
            data,
            steps: point.config.steps,
        };
        files.push((entry.clone(), point.config.clone(), spec));
        entries.push(entry);
    }
    let manifest = Manifest {
        version: VERSION,
        source,
        source_hash,
        axes: sweep_file.axes()?,
        trace: sweep_file.trace.clone(),
        datasets,
        points: entries,
    };
    write_all(out, &manifest, &text, &files)?;
    Sweep::open(out)
}

/// Refuses an output folder that holds anything but a sweep planned from this very file.
fn check_out_folder(out: &Path, source_hash: &str) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.join("sweep.json").is_file() {
        if std::fs::read_dir(out)?.next().is_some() {
            bail!(
                "{} exists and is not a sweep folder; plan into a new folder",
                out.display()
            );
        }
        return Ok(());
    }
    let existing = Sweep::open(out)?;
    if existing.manifest.source_hash != source_hash {
        bail!(
            "{} was planned from another file ({}, hash {}); plan into a new folder",
            out.display(),
            existing.manifest.source.display(),
            existing.manifest.source_hash
        );
    }
    Ok(())
}

/// Writes the manifest, the copy of the sweep file and every point's files.
fn write_all(
    out: &Path,
    manifest: &Manifest,
    text: &str,
    files: &[(PointEntry, TrainConfig, DatasetSpec)],
) -> Result<()> {
    let write = |path: PathBuf, bytes: &[u8]| -> Result<()> {
        util::fs::write_atomic(&path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))
    };
    for (entry, config, spec) in files {
        let dir = out.join("points").join(&entry.name);
        write(dir.join("point.json"), &pretty(entry)?)?;
        write(dir.join("train.json"), &pretty(config)?)?;
        write(dir.join("data.json"), &pretty(spec)?)?;
    }
    write(out.join("sweep.toml"), text.as_bytes())?;
    write(out.join("sweep.json"), &pretty(manifest)?)
}

/// Pretty JSON with a final newline.
pub fn pretty<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}
