//! Benchmark of the batched causal-tracing sweep against the naive per-example loop.
//!
//! `cargo run --release -p interp --example bench_patch -- [tiny|paper] [EXAMPLES] [NAIVE_EXAMPLES]`
//!
//! The paper's pass: residual noising at each corruption's own position (h, r1, r2), layers
//! 1..L−1, on EXAMPLES (default 300) `train_inferred` examples of a generated composition dataset,
//! with a random model of the preset's size (tiny: 4 layers × 128; paper: 8 layers × 768, 12 heads,
//! vocabulary padded to the paper's 2,207 task tokens + pad). The naive loop runs on NAIVE_EXAMPLES
//! (default 30) examples and is extrapolated linearly to EXAMPLES (its cost is linear in them);
//! both results are compared value for value on those examples.

use interp::patch::patch_sweep;
use interp::{
    CellGrid, ComponentKind, CorruptionSpec, Direction, Net, PositionChoice, PromptSample,
    SampleSpec, SweepMode, SweepOptions,
};
use model::{Checkpoint, GptConfig};
use std::time::Instant;
use tasks::{CompositionParams, Dataset, TaskSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let preset = args.get(1).map_or("tiny", String::as_str);
    let n: usize = args.get(2).map_or(Ok(300), |s| s.parse())?;
    let n_naive: usize = args.get(3).map_or(Ok(30), |s| s.parse())?;
    let (n_layer, d_model, n_head, vocab) = match preset {
        "paper" => (8, 768, 12, 2207),
        _ => (4, 128, 4, 0),
    };
    let spec = TaskSpec::Composition(CompositionParams {
        entities: 200,
        relations: 20,
        out_degree: 10,
        phi: 9.0,
        test_size: n.max(300),
        ..CompositionParams::default()
    });
    let ds = Dataset::generate(&spec, 0)?;
    let cfg = GptConfig::new(vocab.max(ds.vocab.len()), 16, d_model, n_head, n_layer);
    let cfg = GptConfig {
        dropout: 0.0,
        ..cfg
    };
    tch::manual_seed(0);
    let ckpt = Checkpoint::new(cfg, tch::Device::Cpu)?;
    let net = Net::new(&ckpt.model);
    let corruptions: Vec<CorruptionSpec> = ["h", "r1", "r2"]
        .iter()
        .map(|c| c.parse())
        .collect::<Result<_, _>>()?;
    let probe_of = |size| {
        PromptSample::build(
            &ds,
            &SampleSpec {
                split: "train_inferred".into(),
                size: Some(size),
                seed: 0,
                indices: None,
            },
            &corruptions,
        )
    };
    let probe = probe_of(n)?;
    let mut opts = SweepOptions {
        directions: vec![Direction::Noising],
        grid: CellGrid {
            components: vec![ComponentKind::Resid],
            positions: vec![PositionChoice::Corrupted],
            layers: Some((1..n_layer).collect()),
        },
        ..SweepOptions::default()
    };
    println!(
        "{preset}: {n_layer} layers × {d_model}, vocab {}, {} threads; {} examples × {} layers × 3 corruptions",
        net.vocab_size(),
        tch::get_num_threads(),
        probe.examples.len(),
        n_layer - 1
    );
    let t = Instant::now();
    let batched = patch_sweep(&net, &probe, &opts)?;
    let batched_s = t.elapsed().as_secs_f64();
    println!("batched: {batched_s:.3} s ({} cells)", batched.cells.len());

    let small = probe_of(n_naive)?;
    opts.mode = SweepMode::Naive;
    let t = Instant::now();
    let naive = patch_sweep(&net, &small, &opts)?;
    let naive_s = t.elapsed().as_secs_f64();
    let naive_full = naive_s * probe.examples.len() as f64 / small.examples.len() as f64;
    println!(
        "naive: {naive_s:.3} s on {} examples → {naive_full:.1} s for {} (extrapolated); speed-up {:.1}×",
        small.examples.len(),
        probe.examples.len(),
        naive_full / batched_s
    );
    opts.mode = SweepMode::Batched;
    let check = patch_sweep(&net, &small, &opts)?;
    let same = check
        .cells
        .iter()
        .zip(&naive.cells)
        .all(|(a, b)| a.outcomes.rank == b.outcomes.rank);
    println!("batched = naive on those examples: {same}");
    Ok(())
}
