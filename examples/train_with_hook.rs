//! Training with a hook that records a per-layer statistic: after every evaluation, the mean
//! norm of the residual stream entering each layer at the answer position of a fixed batch of
//! questions, captured through the model's TransformerLens hook points, written to a CSV.
//!
//! ```sh
//! cargo run --release -p grokscope --example train_with_hook
//! ```

#[path = "common/miniature.rs"]
mod miniature;

use model::{HookPoint, RunRequest};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tch::{Kind, Tensor};
use train::{EvalObserver, TrainOptions};

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(1);
    let dir = miniature::scratch("hook")?;
    let data = miniature::miniature_data(&dir)?;
    let questions: Vec<i64> = data
        .test
        .iter()
        .filter(|e| e.split == "train_inferred")
        .take(64)
        .flat_map(|e| e.prompt().iter().map(|&t| i64::from(t)).collect::<Vec<_>>())
        .collect();
    let batch = Mutex::new(Tensor::from_slice(&questions).view([-1, 3]));
    let rows: Arc<Mutex<Vec<(u64, usize, f64)>>> = Arc::default();
    let recorded = Arc::clone(&rows);
    let observer = EvalObserver(Arc::new(move |step, gpt: &model::Gpt| {
        let n_layer = gpt.config().n_layer();
        let hooks = (0..n_layer)
            .map(HookPoint::ResidPre)
            .chain([HookPoint::ResidPost(n_layer - 1)]);
        let tokens = batch.lock().expect("the observer runs on one thread");
        let out = tch::no_grad(|| gpt.run(&tokens, &RunRequest::capture(hooks)))?;
        let mut rows = recorded.lock().expect("the observer runs on one thread");
        for (layer, resid) in out.cache.values().enumerate() {
            let norm = resid
                .select(1, 2)
                .norm_scalaropt_dim(2.0, [-1], false)
                .mean(Kind::Float);
            rows.push((step, layer, norm.double_value(&[])));
        }
        Ok(())
    }));
    let opts = TrainOptions {
        quiet: true,
        observer: Some(observer),
        ..TrainOptions::new(tch::Device::Cpu)
    };
    train::train(
        miniature::miniature_config(&dir, 400)?,
        &dir.join("run"),
        &opts,
    )?;
    let csv = dir.join("resid_norms.csv");
    let mut file = std::fs::File::create(&csv)?;
    writeln!(file, "step,layer,resid_norm")?;
    let rows = rows.lock().expect("training has finished");
    for (step, layer, norm) in rows.iter() {
        writeln!(file, "{step},{layer},{norm}")?;
    }
    println!("residual norm at the answer position per layer (the entering stream of layer l; l = L is the output):");
    for (step, layer, norm) in rows.iter().filter(|r| r.0 % 200 == 0 || r.0 == 100) {
        println!("  step {step:>4}  layer {layer}  {norm:.2}");
    }
    println!("wrote {}", csv.display());
    Ok(())
}
