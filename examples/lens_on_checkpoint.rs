//! The logit lens on a checkpoint with the token-level core: where in depth does the model know
//! the bridge entity of a two-hop question, and where the answer?
//!
//! ```sh
//! cargo run --release -p grokscope --example lens_on_checkpoint            # trains a miniature run first
//! cargo run --release -p grokscope --example lens_on_checkpoint -- checkpoints/RUN/step-N/model.safetensors
//! ```
//!
//! A checkpoint of a grokscope run finds its dataset through the run's `config.json`; the probe
//! prompts are the first 200 inferred training questions, read through the token strings.

#[path = "common/miniature.rs"]
mod miniature;

use interp::load::open_for_prompts;
use interp::metric::{Metric, TokenSets};
use interp::tokens::{lens, PromptBatch};
use interp::{LnMode, Net};
use tch::Tensor;

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(1);
    let scratch = miniature::scratch("lens")?;
    let checkpoint = match std::env::args().nth(1) {
        Some(path) => path.into(),
        None => miniature::miniature_checkpoint(&scratch)?,
    };
    let opened = open_for_prompts(&checkpoint, None, tch::Device::Cpu)?;
    let data_dir = interp::load::resolve_data_dir(&checkpoint, None)?;
    let data = tasks::Dataset::load(&data_dir)?;
    let questions: Vec<&tasks::Example> = data
        .test
        .iter()
        .filter(|e| e.split == "train_inferred")
        .take(200)
        .collect();
    let net = Net::new(&opened.checkpoint.model);
    println!(
        "logit lens of {} on {} two-hop questions (reciprocal rank)",
        checkpoint.display(),
        questions.len()
    );
    // The bridge entity b1 = r1(h) read at the r1 position, and the answer at the last one.
    let bridge: Vec<Vec<i64>> = questions
        .iter()
        .map(|e| Ok(vec![i64::from(tasks::roles(&data, e)?["b1"])]))
        .collect::<anyhow::Result<_>>()?;
    let answer: Vec<Vec<i64>> = questions
        .iter()
        .map(|e| vec![i64::from(e.answer)])
        .collect();
    for (name, sets, position) in [("bridge b1 @ r1", bridge, 1), ("answer @ r2", answer, 2)] {
        let prompts: Vec<i64> = questions
            .iter()
            .flat_map(|e| e.prompt().iter().map(|&t| i64::from(t)))
            .collect();
        let clean = Tensor::from_slice(&prompts).view([questions.len() as i64, -1]);
        let sets = TokenSets::from_rows(&sets, &vec![Vec::new(); questions.len()])?;
        let batch = PromptBatch::new(clean, None, Some(vec![position; questions.len()]), sets)?;
        let values = lens(
            &net,
            &batch,
            &Metric::ReciprocalRank,
            LnMode::Recompute,
            None,
        )?;
        let row: Vec<String> = values
            .means()
            .iter()
            .map(|(l, v)| format!("L{l} {v:.3}"))
            .collect();
        println!("  {name:<16} {}", row.join("  "));
    }
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}
