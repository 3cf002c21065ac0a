//! Where the time of one training step goes: runs the step of [`train::train`] phase by phase on a
//! preset's model and data (CPU ops are synchronous, so wall-clock per phase is exact) and prints
//! milliseconds per phase, averaged over the timed steps.
//!
//! `cargo run --release -p train --example profile_step -- [PRESET] [STEPS] [THREADS] [MODE]`
//! (defaults: tiny-composition 100 2 sharded). MODE `sharded` is the trainer's data-parallel step
//! ([`train::shards::Team`], forward and backward timed together as one phase); `whole` runs the
//! batch as one pass with libtorch's intra-op threads. The dataset is generated under `data/` if
//! missing.

use std::path::Path;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};
use train::tensors::TrainTensors;
use train::{answer_loss, AdamW, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let preset = args.first().map_or("tiny-composition", String::as_str);
    let steps: usize = args.get(1).map_or(Ok(100), |s| s.parse())?;
    let threads: i32 = args.get(2).map_or(Ok(2), |s| s.parse())?;
    if steps == 0 {
        return Err("STEPS must be at least 1".into());
    }
    let sharded = match args.get(3).map_or("sharded", String::as_str) {
        "sharded" => true,
        "whole" => false,
        other => return Err(format!("MODE must be sharded or whole, not {other:?}").into()),
    };
    tch::set_num_threads(threads);
    train::allocator::keep_freed_memory();

    let mut cfg = TrainConfig::preset(preset)?;
    let ds = train::dataset::prepare(&mut cfg, Path::new("data"), true)?;
    let device = Device::Cpu;
    let data = TrainTensors::new(&ds.train, ds.vocab.pad_id(), device)?;
    let gpt_cfg = cfg.gpt_config(&ds);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let gpt = model::Gpt::new(&vs.root(), &gpt_cfg)?;
    let mut opt = AdamW::new(vs.variables(), model::is_decayed, cfg.adamw_params());
    let team = train::shards::Team::new(threads as usize, device).filter(|_| sharded);
    let params = opt.params();
    let bs = cfg.batch_size as i64;
    println!(
        "{preset}: {} examples, batch {bs}, tokens [{}], {} threads, {}",
        data.len,
        data.tokens
            .size()
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        threads,
        if team.is_some() {
            "sharded"
        } else {
            "whole batch"
        }
    );

    let [pass, grads] = match team {
        Some(_) => ["shards fwd+bwd", "sum shard grads"],
        None => ["forward+loss", "backward"],
    };
    let phases = ["batch", "zero_grad", pass, grads, "clip", "adamw"];
    let mut ms = [0.0f64; 6];
    let mut step_ms = Vec::with_capacity(steps);
    let warmup = 10;
    for step in 0..warmup + steps {
        let mut times = [0.0f64; 6];
        let mut mark = Instant::now();
        let mut lap = |i: usize| {
            times[i] = mark.elapsed().as_secs_f64() * 1e3;
            mark = Instant::now();
        };
        let rows = Tensor::randint(data.len as i64, [bs], (Kind::Int64, device));
        let tokens = data.tokens.index_select(0, &rows);
        let positions = data.positions.index_select(0, &rows);
        let targets = data.targets.index_select(0, &rows);
        lap(0);
        opt.zero_grad();
        lap(1);
        match &team {
            Some(team) => {
                let batch = [&tokens, &positions, &targets];
                let (_, grads) = team.answer_gradients(&gpt, &params, batch, cfg.precision)?;
                lap(2);
                opt.set_grads(&grads)?;
            }
            None => {
                let loss = answer_loss(&gpt, &tokens, &positions, &targets, cfg.precision)?;
                lap(2);
                loss.backward();
            }
        }
        lap(3);
        let _ = opt.clip_grad_norm(cfg.grad_clip);
        lap(4);
        opt.step(cfg.lr);
        lap(5);
        if step >= warmup {
            step_ms.push(times.iter().sum::<f64>());
            for (acc, t) in ms.iter_mut().zip(times) {
                *acc += t / steps as f64;
            }
        }
    }
    let total: f64 = ms.iter().sum();
    for (name, t) in phases.iter().zip(ms) {
        println!("{name:>14}  {t:7.2} ms  {:5.1}%", 100.0 * t / total);
    }
    println!(
        "{:>14}  {total:7.2} ms  ({:.1} steps/s)",
        "step",
        1e3 / total
    );
    step_ms.sort_by(f64::total_cmp);
    println!(
        "{:>14}  {:7.2} ms",
        "median step",
        step_ms[step_ms.len() / 2]
    );
    Ok(())
}
