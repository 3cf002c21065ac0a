//! The paper's training recipe for grokscope: presets and configs, AdamW written on tensors,
//! learning-rate and checkpoint schedules, the whole training set on the device, per-split
//! evaluation, `metrics.csv` / `layer_norms.csv`, atomic checkpoints and exact resume.
//!
//! ```
//! use tasks::{CompositionParams, Dataset, TaskSpec};
//! use train::{TrainConfig, TrainOptions};
//! let dir = std::env::temp_dir().join(format!("grokscope-train-doc-{}", std::process::id()));
//! let params = CompositionParams { entities: 40, relations: 8, out_degree: 4, phi: 3.0, ..Default::default() };
//! let spec = TaskSpec::Composition(params);
//! Dataset::generate(&spec, 0).unwrap().write(&dir.join("data")).unwrap();
//! let mut cfg = TrainConfig::preset("tiny-composition")?;
//! cfg.apply_overrides(&["steps=20".into(), "eval_every=10".into(), "checkpoints=steps:20".into()])?;
//! cfg.data_dir = Some(dir.join("data"));
//! let opts = TrainOptions { quiet: true, ..TrainOptions::new(tch::Device::Cpu) };
//! let summary = train::train(cfg, &dir.join("run"), &opts)?;
//! assert_eq!(summary.step, 20);
//! assert!(dir.join("run/step-20/model.safetensors").is_file());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), train::TrainError>(())
//! ```
//!
//! Entry points: [`TrainConfig`] (presets, files, `--set` overrides), [`train`] (run or resume a
//! run folder), [`eval::evaluate`] / [`eval::predict`] (score a model on a dataset's splits).

pub mod allocator;
pub mod amp;
pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod error;
pub mod eval;
pub mod lock;
pub mod metrics;
pub mod optim;
pub mod progress;
pub mod schedule;
pub mod shards;
pub mod tensors;
pub mod trainer;

pub use config::{BlockSchedule, Precision, TrainConfig, PRESETS};
pub use dataset::DatasetSpec;
pub use error::{Result, TrainError};
pub use optim::{AdamW, AdamWParams};
pub use schedule::{learning_rate, CheckpointSchedule, LrShape};
pub use trainer::{answer_loss, train, EvalObserver, RunSummary, TrainOptions};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// A flag set by Ctrl-C or SIGTERM, for [`TrainOptions::stop`]: the run then writes a checkpoint
/// and returns. A second signal exits the process at once (status 130). Installed once per
/// process; later calls return the same flag.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    static FLAG: OnceLock<std::result::Result<Arc<AtomicBool>, String>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = Arc::clone(&flag);
        ctrlc::set_handler(move || {
            if handler_flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        })
        .map(|()| flag)
        .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| TrainError::Config(format!("cannot install the Ctrl-C/SIGTERM handler: {e}")))
}
