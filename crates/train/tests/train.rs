//! End-to-end training on a minute dataset: determinism, exact resume (after a stop flag, a
//! SIGTERM and a SIGKILL at a random moment), the answer-only loss, evaluation, NaN handling and
//! refused resumes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use train::shards::Team;
use train::tensors::{EvalSplit, TrainTensors};
use train::{
    checkpoint, eval, AdamW, AdamWParams, Precision, TrainConfig, TrainError, TrainOptions,
};

/// libtorch's global RNG and thread count are process-wide: one training at a time.
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    guard
}

/// A fresh folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("train-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// tiny-composition shrunk to a minute dataset (≈ 350 training examples) and model.
fn tiny_cfg(extra: &[&str]) -> TrainConfig {
    let mut cfg = TrainConfig::preset("tiny-composition").unwrap();
    let base = [
        "dataset.params.entities=30",
        "dataset.params.relations=6",
        "dataset.params.out_degree=3",
        "dataset.params.phi=2.0",
        "dataset.params.id_test_ratio=0.1",
        "dataset.params.test_size=40",
        "n_layer=2",
        "d_model=32",
        "n_head=2",
        "d_mlp=64",
        "batch_size=32",
        "steps=60",
        "warmup_steps=5",
        "lr=3e-3",
        "eval_every=10",
        "eval_batch_size=64",
        "log_every=5",
        "checkpoints=every:20",
    ];
    let items: Vec<String> = base.iter().chain(extra).map(|s| s.to_string()).collect();
    cfg.apply_overrides(&items).unwrap();
    cfg
}

fn opts(data_root: &Path) -> TrainOptions {
    TrainOptions {
        quiet: true,
        data_root: data_root.to_path_buf(),
        ..TrainOptions::new(Device::Cpu)
    }
}

/// Every file of a run folder (config.json aside), relative path → bytes.
fn run_files(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![run.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != "config.json" {
                let rel = path
                    .strip_prefix(run)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `b` holds the same files as `a`, byte for byte, plus the checkpoints `extra` that `a` lacks
/// (written when `b` was interrupted).
fn assert_same_run(a: &Path, b: &Path, extra: &[u64]) {
    let scheduled = checkpoint::list(a).unwrap();
    let extra: Vec<String> = extra
        .iter()
        .filter(|s| !scheduled.contains(s))
        .map(|s| format!("step-{s}/"))
        .collect();
    let fa = run_files(a);
    let fb: Vec<_> = run_files(b)
        .into_iter()
        .filter(|(n, _)| !extra.iter().any(|e| n.starts_with(e)))
        .collect();
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&fa),
        names(&fb),
        "different files in {} and {}",
        a.display(),
        b.display()
    );
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        if name.ends_with(".csv") {
            assert_eq!(
                String::from_utf8_lossy(x),
                String::from_utf8_lossy(y),
                "{name} differs"
            );
        }
        if name.ends_with("model.safetensors") {
            assert_same_safetensors(name, x, y);
        } else {
            assert!(
                x == y,
                "{name} differs between {} and {}",
                a.display(),
                b.display()
            );
        }
    }
}

/// The tensor bytes of two safetensors files are identical and their headers hold the same
/// entries. (The model crate writes the `__metadata__` map in hash order, so the header's key
/// order may differ between two writes of the same model; the weights may not.)
fn assert_same_safetensors(name: &str, x: &[u8], y: &[u8]) {
    let split = |b: &[u8]| {
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
        (header, b[8 + n..].to_vec())
    };
    let ((hx, dx), (hy, dy)) = (split(x), split(y));
    assert!(dx == dy, "{name}: tensor bytes differ");
    assert_eq!(hx, hy, "{name}: headers differ");
}

/// Trains `cfg` into `run` from scratch to the end.
fn full_run(cfg: &TrainConfig, run: &Path, data_root: &Path) -> f64 {
    let started = Instant::now();
    let summary = train::train(cfg.clone(), run, &opts(data_root)).unwrap();
    assert_eq!(summary.step, cfg.steps);
    assert!(!summary.interrupted);
    started.elapsed().as_secs_f64()
}

#[test]
fn same_run_twice_gives_identical_files() {
    let _g = lock();
    let root = scratch("twice");
    let cfg = tiny_cfg(&[]);
    full_run(&cfg, &root.join("a"), &root.join("data"));
    full_run(&cfg, &root.join("b"), &root.join("data"));
    assert_same_run(&root.join("a"), &root.join("b"), &[]);

    let metrics = std::fs::read_to_string(root.join("a/metrics.csv")).unwrap();
    let header = metrics.lines().next().unwrap();
    assert!(
        header.starts_with("step,epoch,lr,train_loss,grad_norm,weight_norm,"),
        "{header}"
    );
    for split in [
        "train_inferred",
        "test_inferred_iid",
        "test_inferred_ood",
        "id_atomic",
        "ood_atomic",
    ] {
        for m in ["acc", "loss", "p"] {
            assert!(
                header.contains(&format!("{split}_{m}")),
                "{header} lacks {split}_{m}"
            );
        }
    }
    let steps: Vec<&str> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(steps, ["10", "20", "30", "40", "50", "60"]);
    let norms = std::fs::read_to_string(root.join("a/layer_norms.csv")).unwrap();
    assert!(
        norms.starts_with("step,component,norm\n10,block.0,"),
        "{norms}"
    );
    assert!(norms.contains("\n60,embed,"), "{norms}");
    assert_eq!(checkpoint::list(&root.join("a")).unwrap(), vec![20, 40, 60]);

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("a/config.json")).unwrap())
            .unwrap();
    let data_dir = PathBuf::from(config["data_dir"].as_str().unwrap());
    assert!(
        data_dir.is_absolute() && data_dir.join("train.json").is_file(),
        "{data_dir:?}"
    );
    assert_eq!(config["steps"], 60);
}

#[test]
fn stop_flag_checkpoints_and_resume_is_exact() {
    let _g = lock();
    let root = scratch("stop");
    let data = root.join("data");
    let cfg = tiny_cfg(&["steps=150"]);
    let duration = full_run(&cfg, &root.join("ref"), &data);

    let run = root.join("stopped");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let delay = Duration::from_secs_f64(duration * random_fraction());
    let setter = std::thread::spawn(move || {
        std::thread::sleep(delay);
        flag.store(true, Ordering::SeqCst);
    });
    let first = train::train(
        cfg.clone(),
        &run,
        &TrainOptions {
            stop,
            ..opts(&data)
        },
    )
    .unwrap();
    setter.join().unwrap();
    eprintln!("stopped at step {} of {}", first.step, cfg.steps);
    if first.interrupted {
        assert!(checkpoint::list(&run).unwrap().contains(&first.step));
    }
    let second = train::train(cfg.clone(), &run, &opts(&data)).unwrap();
    assert_eq!(second.start_step, first.step);
    assert_eq!(second.step, cfg.steps);
    assert_same_run(&root.join("ref"), &run, &[first.step]);
}

#[test]
fn longer_steps_extend_a_finished_run_exactly() {
    let _g = lock();
    let root = scratch("extend");
    let data = root.join("data");
    full_run(&tiny_cfg(&["steps=80"]), &root.join("ref"), &data);
    let run = root.join("ext");
    full_run(&tiny_cfg(&["steps=40"]), &run, &data);
    let summary = train::train(tiny_cfg(&["steps=80"]), &run, &opts(&data)).unwrap();
    assert_eq!((summary.start_step, summary.step), (40, 80));
    assert_same_run(&root.join("ref"), &run, &[]);
    let again = train::train(tiny_cfg(&["steps=80"]), &run, &opts(&data)).unwrap();
    assert_eq!(
        (again.start_step, again.step),
        (80, 80),
        "a finished run is left as it is"
    );
}

/// With two threads a step runs as two data-parallel shards ([`train::shards::Team`]): runs
/// still repeat and resume bit for bit, and follow the one-pass (one thread) trajectory up to
/// float rounding.
#[test]
fn data_parallel_runs_repeat_and_resume_exactly() {
    let _g = lock();
    tch::set_num_threads(2);
    let root = scratch("sharded");
    let data = root.join("data");
    let cfg = tiny_cfg(&["steps=40"]);
    full_run(&cfg, &root.join("a"), &data);
    full_run(&cfg, &root.join("b"), &data);
    assert_same_run(&root.join("a"), &root.join("b"), &[]);
    let run = root.join("resumed");
    full_run(&tiny_cfg(&["steps=20"]), &run, &data);
    let summary = train::train(cfg.clone(), &run, &opts(&data)).unwrap();
    assert_eq!((summary.start_step, summary.step), (20, 40));
    assert_same_run(&root.join("a"), &run, &[]);

    tch::set_num_threads(1);
    full_run(&cfg, &root.join("whole"), &data);
    let weights = |run: &str| {
        let file = root.join(run).join("step-40/model.safetensors");
        let mut named = Tensor::read_safetensors(&file).unwrap();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    };
    let (sharded, whole) = (weights("a"), weights("whole"));
    let mut largest = 0.0f64;
    for ((name, x), (_, y)) in sharded.iter().zip(&whole) {
        let diff = (x - y).abs().max().double_value(&[]);
        assert!(
            diff < 1e-3,
            "{name}: sharded and one-pass weights differ by {diff}"
        );
        largest = largest.max(diff);
    }
    eprintln!("largest weight difference after 40 steps: {largest:e}");
    assert!(largest > 0.0, "two threads must run the sharded step");
}

/// Entry point of the child processes of the signal tests (skipped in a normal test run).
#[test]
#[ignore]
fn child_process_trains() {
    let (Ok(run), Ok(data)) = (
        std::env::var("TRAIN_CHILD_RUN"),
        std::env::var("TRAIN_CHILD_DATA"),
    ) else {
        return;
    };
    tch::set_num_threads(1);
    let cfg = tiny_cfg(&["steps=300"]);
    let stop = train::stop_on_signals().unwrap();
    let summary = train::train(
        cfg,
        Path::new(&run),
        &TrainOptions {
            stop,
            ..opts(Path::new(&data))
        },
    )
    .unwrap();
    eprintln!(
        "child stopped at step {} (interrupted: {})",
        summary.step, summary.interrupted
    );
}

fn spawn_child(run: &Path, data: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_trains",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TRAIN_CHILD_RUN", run)
        .env("TRAIN_CHILD_DATA", data)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A pseudo-random fraction in [0.1, 0.9) from the clock (the moment of the interruption).
fn random_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    0.1 + 0.8 * f64::from(nanos % 1_000_000) / 1e6
}

#[test]
fn sigkill_at_a_random_moment_then_resume_is_exact() {
    let _g = lock();
    let root = scratch("sigkill");
    let data = root.join("data");
    let cfg = tiny_cfg(&["steps=300"]);
    full_run(&cfg, &root.join("ref"), &data);

    // How long a child takes from spawn to the end, then a child killed at a random moment of that.
    let probe_start = Instant::now();
    assert!(spawn_child(&root.join("probe"), &data)
        .wait()
        .unwrap()
        .success());
    let child_duration = probe_start.elapsed().as_secs_f64();
    let run = root.join("killed");
    let mut child = spawn_child(&run, &data);
    std::thread::sleep(Duration::from_secs_f64(child_duration * random_fraction()));
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = checkpoint::list(&run).unwrap();
    eprintln!("killed after checkpoints {kept:?}");
    let resumed = train::train(cfg.clone(), &run, &opts(&data)).unwrap();
    assert_eq!(resumed.start_step, kept.last().copied().unwrap_or(0));
    assert_same_run(&root.join("ref"), &run, &[]);
}

#[test]
fn sigterm_writes_a_checkpoint_and_exits_cleanly() {
    let _g = lock();
    let root = scratch("sigterm");
    let data = root.join("data");
    let cfg = tiny_cfg(&["steps=300"]);
    let duration = full_run(&cfg, &root.join("ref"), &data);

    let run = root.join("terminated");
    let mut child = spawn_child(&run, &data);
    let started = Instant::now();
    while !run.join("config.json").exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_secs_f64(duration * random_fraction() * 0.5));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "the child did not exit cleanly after SIGTERM: {exit:?}"
    );
    let kept = checkpoint::list(&run).unwrap();
    eprintln!("terminated with checkpoints {kept:?}");
    let stopped = *kept.last().unwrap();
    let resumed = train::train(cfg, &run, &opts(&data)).unwrap();
    assert_eq!(resumed.start_step, stopped);
    assert_same_run(&root.join("ref"), &run, &[stopped]);
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let _g = lock();
    let root = scratch("nan");
    let cfg = tiny_cfg(&[
        "lr=1e30",
        "weight_decay=0",
        "warmup_steps=0",
        "log_every=1",
        "checkpoints=every:1",
    ]);
    let run = root.join("run");
    let err = train::train(cfg, &run, &opts(&root.join("data"))).unwrap_err();
    let TrainError::NonFinite { at, last_good, .. } = err else {
        panic!("expected a non-finite loss error, got {err}");
    };
    let msg = err.to_string();
    let kept = checkpoint::list(&run).unwrap();
    assert_eq!(kept.last().copied(), last_good, "{msg}");
    assert!(
        kept.iter().all(|&s| s < at),
        "a checkpoint was written at or after the bad step: {kept:?}"
    );
    match last_good {
        Some(step) => assert!(msg.contains(&format!("last good checkpoint is step {step}"))),
        None => assert!(msg.contains("no good checkpoint yet"), "{msg}"),
    }
}

/// A loss that goes bad before the first checkpoint names no checkpoint (there is none).
#[test]
fn non_finite_loss_before_any_checkpoint_says_there_is_none() {
    let _g = lock();
    let root = scratch("nan-early");
    let cfg = tiny_cfg(&[
        "lr=1e30",
        "weight_decay=0",
        "warmup_steps=0",
        "log_every=1",
        "checkpoints=steps:60",
    ]);
    let run = root.join("run");
    let err = train::train(cfg, &run, &opts(&root.join("data"))).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            TrainError::NonFinite {
                last_good: None,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("no good checkpoint yet"), "{msg}");
    assert!(!msg.contains("step 0"), "{msg}");
    assert!(checkpoint::list(&run).unwrap().is_empty());
}

#[test]
fn resume_with_other_settings_or_data_is_refused() {
    let _g = lock();
    let root = scratch("mismatch");
    let data = root.join("data");
    let run = root.join("run");
    full_run(&tiny_cfg(&["steps=20"]), &run, &data);
    let before = run_files(&run);

    let err = train::train(tiny_cfg(&["steps=20", "lr=1e-3"]), &run, &opts(&data))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lr was 0.003 and is now 0.001"), "{err}");
    let err = train::train(tiny_cfg(&["steps=20", "d_model=48"]), &run, &opts(&data))
        .unwrap_err()
        .to_string();
    assert!(err.contains("d_model"), "{err}");
    let err = train::train(
        tiny_cfg(&["steps=20", "dataset.params.entities=31"]),
        &run,
        &opts(&data),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("different data"), "{err}");
    assert_eq!(
        run_files(&run),
        before,
        "a refused resume changed the run folder"
    );

    let other = root.join("not-a-run");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let err = train::train(tiny_cfg(&[]), &other, &opts(&data))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a grokscope run folder"), "{err}");
    let err = train::train(tiny_cfg(&[]), Path::new("/proc/no-such/run"), &opts(&data))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/proc/no-such/run"), "{err}");
}

fn tiny_dataset(root: &Path) -> tasks::Dataset {
    let mut cfg = tiny_cfg(&[]);
    train::dataset::prepare(&mut cfg, &root.join("data"), true).unwrap()
}

/// The small model of the loss, evaluation and shard tests, initialised with `seed`.
fn small_gpt(ds: &tasks::Dataset, seed: i64) -> (model::Gpt, tch::nn::VarStore) {
    tch::manual_seed(seed);
    let gcfg = model::GptConfig {
        dropout: 0.0,
        d_mlp: 64,
        ..model::GptConfig::new(ds.vocab.len(), 8, 32, 2, 2)
    };
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let gpt = model::Gpt::new(&vs.root(), &gcfg).unwrap();
    (gpt, vs)
}

#[test]
fn loss_counts_only_the_answer_positions() {
    let _g = lock();
    let root = scratch("loss");
    let ds = tiny_dataset(&root);
    let (gpt, _vs) = small_gpt(&ds, 1);

    let examples: Vec<tasks::Example> = ds.train.iter().take(16).cloned().collect();
    let data = TrainTensors::new(&examples, 0, Device::Cpu).unwrap();
    let loss = train::answer_loss(
        &gpt,
        &data.tokens,
        &data.positions,
        &data.targets,
        Precision::Fp32,
    )
    .unwrap();

    // The same loss from the full logits with every non-loss label ignored (Hugging Face style).
    let logits = gpt.forward_t(&data.tokens, true);
    let (b, t) = (data.tokens.size()[0], data.tokens.size()[1]);
    let mut labels = vec![-100i64; (b * t) as usize];
    for (i, ex) in examples.iter().enumerate() {
        for &p in &ex.loss_positions {
            labels[i * t as usize + p] = i64::from(ex.tokens[p + 1]);
        }
    }
    let labels = Tensor::from_slice(&labels);
    let reference = logits
        .view([-1, ds.vocab.len() as i64])
        .cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Mean, -100, 0.0);
    let diff = (&loss - &reference).abs().double_value(&[]);
    assert!(
        diff < 1e-5,
        "gathered loss {loss:?} vs full-logit loss {reference:?}"
    );

    // A token that only a non-loss position would predict (here one appended after `</a>`)
    // changes nothing; a prompt token changes the loss.
    let mut trailing = examples.clone();
    for ex in &mut trailing {
        ex.tokens.push(ex.tokens[0]);
    }
    let data2 = TrainTensors::new(&trailing, 0, Device::Cpu).unwrap();
    assert!(data2.tokens.equal(&data.tokens) && data2.targets.equal(&data.targets));
    let mut other = trailing.clone();
    for ex in &mut other {
        let last = ex.tokens.len() - 1;
        ex.tokens[last] = ex.tokens[1];
    }
    let data3 = TrainTensors::new(&other, 0, Device::Cpu).unwrap();
    let loss3 = train::answer_loss(
        &gpt,
        &data3.tokens,
        &data3.positions,
        &data3.targets,
        Precision::Fp32,
    )
    .unwrap();
    assert_eq!(loss3.double_value(&[]), loss.double_value(&[]));
    let mut prompt = examples.clone();
    prompt[0].tokens[0] = prompt[1].tokens[0] % (ds.vocab.len() as u32 - 1) + 1;
    let data4 = TrainTensors::new(&prompt, 0, Device::Cpu).unwrap();
    let loss4 = train::answer_loss(
        &gpt,
        &data4.tokens,
        &data4.positions,
        &data4.targets,
        Precision::Fp32,
    )
    .unwrap();
    if prompt[0].tokens[0] != examples[0].tokens[0] {
        assert_ne!(loss4.double_value(&[]), loss.double_value(&[]));
    }
}

#[test]
fn evaluation_matches_a_direct_computation() {
    let _g = lock();
    let root = scratch("eval");
    let ds = tiny_dataset(&root);
    let (gpt, _vs) = small_gpt(&ds, 2);
    let splits = EvalSplit::all(&ds, Device::Cpu).unwrap();
    let names: Vec<&str> = splits.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id_atomic",
            "ood_atomic",
            "test_inferred_iid",
            "test_inferred_ood",
            "train_inferred"
        ]
    );
    let metrics = eval::evaluate(&gpt, &splits, 7, Precision::Fp32).unwrap();
    for (split, m) in splits.iter().zip(&metrics) {
        let examples = &ds
            .splits()
            .into_iter()
            .find(|(n, _)| *n == split.name)
            .unwrap()
            .1;
        let (mut correct, mut loss, mut p) = (0usize, 0.0, 0.0);
        for ex in examples {
            let prompt: Vec<i64> = ex.tokens[..=ex.answer_pos]
                .iter()
                .map(|&t| i64::from(t))
                .collect();
            let logits = gpt.forward_t(&Tensor::from_slice(&prompt).view([1, -1]), false);
            let last = logits.get(0).get(ex.answer_pos as i64);
            let logp = last.log_softmax(-1, Kind::Double);
            let gold = logp.double_value(&[i64::from(ex.answer)]);
            correct += usize::from(last.argmax(0, false).int64_value(&[]) == i64::from(ex.answer));
            loss -= gold;
            p += gold.exp();
        }
        let n = examples.len() as f64;
        assert_eq!(m.n, examples.len());
        assert!((m.acc - correct as f64 / n).abs() < 1e-9, "{}: acc", m.name);
        assert!(
            (m.loss - loss / n).abs() < 1e-4,
            "{}: loss {} vs {}",
            m.name,
            m.loss,
            loss / n
        );
        assert!((m.p - p / n).abs() < 1e-5, "{}: p", m.name);

        let preds = eval::predict(&gpt, split, 5, Precision::Fp32).unwrap();
        let hits = preds
            .iter()
            .zip(examples.iter())
            .filter(|(pr, ex)| pr.pred == i64::from(ex.answer))
            .count();
        assert_eq!(hits, correct);
        assert!(preds
            .iter()
            .all(|pr| pr.gold_rank >= 0 && (0.0..=1.0).contains(&pr.gold_prob)));
    }
}

/// The data-parallel step's shards ([`train::shards::Team`]) add up to the whole batch.
#[test]
fn shard_gradients_add_up_to_the_whole_batch_gradients() {
    let _g = lock();
    let root = scratch("shard-gradients");
    let ds = tiny_dataset(&root);
    let (gpt, vs) = small_gpt(&ds, 3);
    // 37 examples: uneven shards.
    let examples: Vec<tasks::Example> = ds.train.iter().take(37).cloned().collect();
    let data = TrainTensors::new(&examples, ds.vocab.pad_id(), Device::Cpu).unwrap();
    let mut opt = AdamW::new(vs.variables(), model::is_decayed, AdamWParams::default());
    let params = opt.params();
    let batch = [&data.tokens, &data.positions, &data.targets];

    let whole = train::answer_loss(&gpt, batch[0], batch[1], batch[2], Precision::Fp32).unwrap();
    let expected = Tensor::run_backward(&[&whole], &params, false, false);
    for threads in [2, 3, 5] {
        let (loss, grads) = Team::new(threads, Device::Cpu)
            .expect("libtorch runs on libgomp on Linux")
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

/// The staging folder of a preset dataset whose generation was killed (`.NAME.tmp-PID`, PID
/// gone) is removed when the next training run generates that dataset.
#[test]
fn a_killed_dataset_generation_leaves_nothing_behind() {
    let _g = lock();
    let root = scratch("stale-staging");
    let data = root.join("data");
    let cfg = tiny_cfg(&["steps=20"]);
    let name = cfg.dataset.as_ref().unwrap().name();
    // Above Linux's largest pid (2^22): no process has it.
    let staging = data.join(format!(".{name}.tmp-2000000000"));
    std::fs::create_dir_all(staging.join("partial")).unwrap();
    train::train(cfg, &root.join("run"), &opts(&data)).unwrap();
    assert!(!staging.exists(), "{} stayed", staging.display());
    assert!(data.join(&name).join("train.json").is_file());
}
