//! A miniature two-hop composition run for the examples: a small knowledge graph, a 2-layer
//! model trained for a few hundred steps (seconds on a CPU), the way `grokscope train` does it.

use std::path::{Path, PathBuf};
use tasks::{CompositionParams, Dataset, TaskSpec};
use train::{TrainConfig, TrainOptions};

/// Writes the miniature dataset to `dir/data`. Returns it.
pub fn miniature_data(dir: &Path) -> anyhow::Result<Dataset> {
    let spec = TaskSpec::Composition(CompositionParams {
        entities: 40,
        relations: 8,
        out_degree: 4,
        phi: 3.0,
        ..CompositionParams::default()
    });
    let data = Dataset::generate(&spec, 1)?;
    data.write(&dir.join("data"))?;
    Ok(Dataset::load(&dir.join("data"))?)
}

/// The training configuration of the miniature run: the tiny-composition preset, shortened.
pub fn miniature_config(dir: &Path, steps: u64) -> anyhow::Result<TrainConfig> {
    let mut cfg = TrainConfig::preset("tiny-composition")?;
    let sets = [
        format!("steps={steps}"),
        "eval_every=100".into(),
        format!("checkpoints=steps:{steps}"),
        "n_layer=2".into(),
        "d_model=64".into(),
        "d_mlp=256".into(),
        "warmup_steps=50".into(),
    ];
    cfg.apply_overrides(&sets)?;
    cfg.data_dir = Some(dir.join("data"));
    Ok(cfg)
}

/// Trains the miniature run in `dir/run` (data in `dir/data`) and returns its last checkpoint.
#[allow(dead_code)] // examples/train_with_hook.rs trains with its own options
pub fn miniature_checkpoint(dir: &Path) -> anyhow::Result<PathBuf> {
    miniature_data(dir)?;
    let steps = 400;
    let opts = TrainOptions {
        quiet: true,
        ..TrainOptions::new(tch::Device::Cpu)
    };
    train::train(miniature_config(dir, steps)?, &dir.join("run"), &opts)?;
    Ok(dir.join(format!("run/step-{steps}/model.safetensors")))
}

/// A fresh scratch folder for one example.
pub fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("grokscope-example-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
