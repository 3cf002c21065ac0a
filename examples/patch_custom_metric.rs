//! An activation-patching sweep with a metric of one's own: how much of the answer's probability
//! *margin* over the best other token does each residual state at each position carry?
//!
//! ```sh
//! cargo run --release -p grokscope --example patch_custom_metric
//! ```
//!
//! The corrupted prompt swaps the head entity for another; denoising patches each clean residual
//! state into the corrupted run and measures the user metric, a closure over the answer logits.

#[path = "common/miniature.rs"]
mod miniature;

use interp::metric::{Metric, TokenSets};
use interp::tokens::{patch, resid_targets, Direction, PatchOptions, PromptBatch};
use interp::Net;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Probability of the answer minus the largest probability of any other token, per row.
fn probability_margin() -> Metric {
    Metric::custom(
        "prob_margin",
        Arc::new(|logits: &Tensor, sets: &TokenSets| {
            let p = logits.softmax(1, Kind::Float);
            let answer = sets.first_answer().unsqueeze(1);
            let p_answer = p.gather(1, &answer, false).squeeze_dim(1);
            let others = p.scatter_value(1, &answer, 0.0).amax([1], false);
            p_answer - others
        }),
    )
}

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(1);
    let dir = miniature::scratch("patch")?;
    let checkpoint = miniature::miniature_checkpoint(&dir)?;
    let data = tasks::Dataset::load(&dir.join("data"))?;
    let ckpt = model::Checkpoint::load(&checkpoint, tch::Device::Cpu)?;
    let net = Net::new(&ckpt.model);
    let questions: Vec<&tasks::Example> = data
        .test
        .iter()
        .filter(|e| e.split == "train_inferred")
        .take(100)
        .collect();
    let n = questions.len();
    let ids = |e: &tasks::Example| {
        e.prompt()
            .iter()
            .map(|&t| i64::from(t))
            .collect::<Vec<i64>>()
    };
    let clean: Vec<i64> = questions.iter().flat_map(|e| ids(e)).collect();
    // Corrupt the head entity: the next question's head (a different entity, the same type).
    let corrupted: Vec<i64> = (0..n)
        .flat_map(|i| {
            let mut row = ids(questions[i]);
            row[0] = ids(questions[(i + 1) % n])[0];
            row
        })
        .collect();
    let answers: Vec<Vec<i64>> = questions
        .iter()
        .map(|e| vec![i64::from(e.answer)])
        .collect();
    let sets = TokenSets::from_rows(&answers, &vec![Vec::new(); n])?;
    let shape = [n as i64, 3];
    let batch = PromptBatch::new(
        Tensor::from_slice(&clean).view(shape),
        Some(Tensor::from_slice(&corrupted).view(shape)),
        None,
        sets,
    )?;
    let metric = probability_margin();
    let result = patch(
        &net,
        &batch,
        &resid_targets(net.n_layer(), &[0, 1, 2]),
        &metric,
        &PatchOptions::new(Direction::Denoising),
    )?;
    let mean = |v: &[f64]| util::stats::mean(v.iter().copied());
    println!(
        "denoising patch of {} questions, metric {metric}: clean {:.3}, corrupted {:.3}",
        n,
        mean(&result.clean),
        mean(&result.corrupted)
    );
    println!("  {:<28} {:>8} {:>8} {:>8}", "state", "h", "r1", "r2");
    for (layer, cells) in result.summary().chunks(3).enumerate() {
        let values: Vec<String> = cells.iter().map(|(_, v)| format!("{v:>8.3}")).collect();
        println!("  residual entering layer {layer:<4} {}", values.join(" "));
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
