//! The data-parallel step ([`train::shards::Team`]): shard gradients add up to the whole batch's,
//! every task runs exactly once, and a panicking task is reported to the caller.

use std::sync::atomic::{AtomicUsize, Ordering};
use tch::{Device, Kind, Tensor};
use train::data::TrainTensors;
use train::shards::Team;
use train::{AdamW, AdamWParams, Precision, TrainConfig};

fn team(threads: usize) -> Team {
    Team::new(threads, Device::Cpu).expect("libtorch runs on libgomp on Linux")
}

#[test]
fn teams_need_two_threads_and_the_cpu() {
    assert!(Team::new(1, Device::Cpu).is_none());
    assert!(Team::new(2, Device::Cuda(0)).is_none());
    assert_eq!(team(3).threads(), 3);
}

#[test]
fn every_task_runs_once_and_a_panic_reaches_the_caller() {
    for (threads, tasks) in [(2, 2), (2, 7), (3, 1), (4, 0)] {
        let runs: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
        team(threads).run(tasks, &|i| {
            runs[i].fetch_add(1, Ordering::SeqCst);
        });
        assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
    }
    let done = AtomicUsize::new(0);
    let result = std::panic::catch_unwind(|| {
        team(2).run(5, &|i| {
            assert_ne!(i, 3, "task 3 fails");
            done.fetch_add(1, Ordering::SeqCst);
        })
    });
    let message = result.unwrap_err();
    let message = message.downcast_ref::<String>().map_or("", String::as_str);
    assert!(message.contains("task 3 fails"), "{message}");
    assert_eq!(done.load(Ordering::SeqCst), 4, "the other tasks still ran");
}

/// A small model and a batch of 37 examples of a minute composition dataset (uneven shards).
fn setup() -> (model::Gpt, tch::nn::VarStore, TrainTensors) {
    let mut cfg = TrainConfig::preset("tiny-composition").unwrap();
    cfg.apply_overrides(
        &[
            "dataset.params.entities=30",
            "dataset.params.relations=6",
            "dataset.params.out_degree=3",
            "dataset.params.phi=2.0",
            "dataset.params.test_size=40",
        ]
        .map(String::from),
    )
    .unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shards-data");
    let ds = train::dataset::prepare(&mut cfg, &root, true).unwrap();
    let examples: Vec<tasks::Example> = ds.train.iter().take(37).cloned().collect();
    let data = TrainTensors::new(&examples, ds.vocab.pad_id(), Device::Cpu).unwrap();
    tch::manual_seed(3);
    let gcfg = model::GptConfig {
        dropout: 0.0,
        d_mlp: 64,
        ..model::GptConfig::new(ds.vocab.len(), 8, 32, 2, 2)
    };
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let gpt = model::Gpt::new(&vs.root(), &gcfg).unwrap();
    (gpt, vs, data)
}

#[test]
fn shard_gradients_add_up_to_the_whole_batch_gradients() {
    let (gpt, vs, data) = setup();
    let mut opt = AdamW::new(vs.variables(), model::is_decayed, AdamWParams::default());
    let params = opt.params();
    let batch = [&data.tokens, &data.positions, &data.targets];

    let whole = train::answer_loss(&gpt, batch[0], batch[1], batch[2], Precision::Fp32).unwrap();
    let expected = Tensor::run_backward(&[&whole], &params, false, false);
    for threads in [2, 3, 5] {
        let (loss, grads) = team(threads)
            .answer_gradients(&gpt, &params, batch, Precision::Fp32)
            .unwrap();
        assert_eq!(grads.len(), threads);
        let diff = (&loss - &whole).abs().double_value(&[]);
        assert!(diff < 1e-6, "{threads} shards: loss {loss:?} vs {whole:?}");
        for (i, want) in expected.iter().enumerate() {
            let got = grads
                .iter()
                .map(|g| &g[i])
                .filter(|g| g.defined())
                .fold(want.zeros_like(), |acc, g| acc + g);
            let scale = want.abs().max().double_value(&[]).max(1e-3);
            let err = (&got - want).abs().max().double_value(&[]);
            assert!(
                err <= 1e-5 * scale,
                "{threads} shards, parameter {i}: error {err}"
            );
        }
        opt.set_grads(&grads).unwrap();
        let norm = opt.grad_norm().double_value(&[]);
        let want_norm = expected
            .iter()
            .map(|g| g.square().sum(Kind::Double).double_value(&[]))
            .sum::<f64>()
            .sqrt();
        assert!(
            (norm - want_norm).abs() <= 1e-5 * want_norm,
            "{norm} vs {want_norm}"
        );
    }
    let short: Vec<Vec<Tensor>> = vec![params[1..].iter().map(Tensor::zeros_like).collect()];
    let err = opt.set_grads(&short).unwrap_err().to_string();
    assert!(err.contains("gradients for"), "{err}");
}
