//! The dataset a run trains on: a given folder, or a preset's generated dataset cached under the
//! data root (reused when its manifest names the same generator, parameters and seed).

use crate::config::TrainConfig;
use crate::error::{io_err, Result, TrainError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tasks::{ComparisonParams, ComplexParams, CompositionParams, Dataset, Manifest, TaskSpec};

/// A generator, its parameters and its seed; in configs the `dataset` table:
/// `{ generator = "composition", params = { entities = 200, … }, seed = 0 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// Generator and parameters (the tasks crate's manifest format).
    #[serde(flatten)]
    pub task: TaskSpec,
    /// Seed of the generator.
    pub seed: u64,
}

impl DatasetSpec {
    /// The paper's composition dataset (2000 entities, 200 relations, out-degree 20) at `phi`.
    pub fn paper_composition(phi: f64) -> DatasetSpec {
        let params = CompositionParams {
            phi,
            ..CompositionParams::default()
        };
        DatasetSpec {
            task: TaskSpec::Composition(params),
            seed: 0,
        }
    }

    /// The paper's comparison dataset (1000 entities, 20 attributes, 20 values, φ 7.2).
    pub fn paper_comparison() -> DatasetSpec {
        DatasetSpec {
            task: TaskSpec::Comparison(ComparisonParams::default()),
            seed: 0,
        }
    }

    /// The paper's complex-reasoning dataset.
    pub fn paper_complex() -> DatasetSpec {
        DatasetSpec {
            task: TaskSpec::Complex(ComplexParams::default()),
            seed: 0,
        }
    }

    /// CPU-scale composition: 200 entities, 20 relations, out-degree 10, φ 9, 5% OOD atomic
    /// facts, 3% ID-test hold-out (so the ID test set has > 500 queries).
    pub fn tiny_composition() -> DatasetSpec {
        let params = CompositionParams {
            entities: 200,
            relations: 20,
            out_degree: 10,
            hops: 2,
            shorter_hops: Vec::new(),
            phi: 9.0,
            ood_ratio: 0.05,
            id_test_ratio: 0.03,
            test_size: 3000,
        };
        DatasetSpec {
            task: TaskSpec::Composition(params),
            seed: 0,
        }
    }

    /// CPU-scale comparison: 200 entities, 5 attributes, 20 values, 90/10 entity split per
    /// attribute, 10% ID-test hold-out, φ 12.6.
    pub fn tiny_comparison() -> DatasetSpec {
        let params = ComparisonParams {
            entities: 200,
            attributes: 5,
            values: 20,
            phi: 12.6,
            ood_ratio: 0.1,
            id_test_ratio: 0.1,
            test_size: 3000,
        };
        DatasetSpec {
            task: TaskSpec::Comparison(params),
            seed: 0,
        }
    }

    /// Folder name under the data root, e.g. `composition.200.20.9.0`.
    pub fn name(&self) -> String {
        self.task.name()
    }

    /// Checks the generator parameters.
    pub fn validate(&self) -> Result<()> {
        self.task
            .validate()
            .map_err(|e| TrainError::Config(format!("dataset: {e}")))
    }
}

/// Loads the run's dataset. With `cfg.data_dir` set, that folder is loaded; otherwise the spec's
/// dataset is generated under `data_root/<name>` (or reused if a matching one is there) and
/// `cfg.data_dir` is set to it. `cfg.data_dir` ends up absolute.
pub fn prepare(cfg: &mut TrainConfig, data_root: &Path, quiet: bool) -> Result<Dataset> {
    let dir =
        match (&cfg.data_dir, &cfg.dataset) {
            (Some(dir), _) => dir.clone(),
            (None, Some(spec)) => {
                let dir = data_root.join(spec.name());
                ensure_generated(spec, &dir, quiet)?;
                dir
            }
            (None, None) => return Err(TrainError::Config(
                "no dataset: give a dataset folder (--data) or a `dataset` generator in the config"
                    .into(),
            )),
        };
    let dir = std::path::absolute(&dir).map_err(io_err(&dir))?;
    let ds = Dataset::load(&dir)?;
    cfg.data_dir = Some(dir);
    Ok(ds)
}

/// Generates `spec` into `dir` unless `dir` already holds it (a `dataset.json` with the same
/// generator, parameters and seed).
fn ensure_generated(spec: &DatasetSpec, dir: &Path, quiet: bool) -> Result<()> {
    let manifest_path = dir.join("dataset.json");
    if manifest_path.is_file() {
        let bytes = std::fs::read(&manifest_path).map_err(io_err(&manifest_path))?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| TrainError::Parse {
            path: manifest_path.clone(),
            msg: e.to_string(),
        })?;
        if manifest.spec == spec.task && manifest.seed == spec.seed {
            return Ok(());
        }
        return Err(TrainError::Mismatch(format!(
            "{} holds a dataset generated with other parameters or seed; move it away or pass it \
             with --data",
            dir.display()
        )));
    }
    if !quiet {
        eprintln!("generating {} into {}", spec.name(), dir.display());
    }
    crate::lock::remove_stale_staging(dir)?;
    Dataset::generate(&spec.task, spec.seed)?.write(dir)?;
    Ok(())
}
