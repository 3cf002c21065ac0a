//! Tests of activation export, linear probes and direct logit attribution on synthetic features,
//! tiny random models and tiny generated datasets.

mod common;

use common::{comparison, composition, composition_with, config, random_model, tempdir};
use interp::dla::{direct_logit_attribution, DlaComponent};
use interp::export::{export_activations, resolve_hooks, ROLE_PREFIX};
use interp::linear_probe::{
    default_probe_targets, fit_probes, linear_probes, stratified_split, FitOptions,
    LinearProbeOptions, Solver, TargetLabels,
};
use interp::{InterpError, Net, PromptSample, SampleSpec};
use model::{Checkpoint, GptConfig, RunRequest};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tasks::{CompositionParams, Dataset, TaskSpec};
use tch::{Device, Kind, Tensor};

/// A random model whose weights (and biases) are scaled up so that every component matters.
fn tiny_model(vocab_size: usize, n_layer: usize, seed: i64) -> Checkpoint {
    random_model(config(vocab_size, n_layer), seed, |name, t| {
        let noise = t.randn_like() * 0.3;
        let _ = t.f_mul_scalar_(6.0).unwrap();
        if name.ends_with("bias") {
            let _ = t.f_add_(&noise).unwrap();
        }
    })
}

fn probe_set(ds: &Dataset, size: Option<usize>) -> PromptSample {
    let spec = SampleSpec {
        split: "train_inferred".into(),
        size,
        seed: 7,
        indices: None,
    };
    PromptSample::build(ds, &spec, &[]).unwrap()
}

/// Features `[N, d]` with class `y` planted along a random direction per class (margin 8 in
/// standard-normal noise), plus the labels.
fn planted(n: usize, d: i64, classes: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<usize> = (0..n).map(|_| rng.gen_range(0..classes)).collect();
    tch::manual_seed(seed as i64);
    let (q, _) = Tensor::linalg_qr(
        &Tensor::randn([d, classes as i64], (Kind::Float, Device::Cpu)),
        "reduced",
    );
    let onehot = Tensor::from_slice(&labels.iter().map(|&c| c as i64).collect::<Vec<_>>())
        .one_hot(classes as i64)
        .to_kind(Kind::Float);
    let x = Tensor::randn([n as i64, d], (Kind::Float, Device::Cpu)) + onehot.matmul(&q.tr()) * 8.0;
    (x, labels)
}

/// Rows `[.., N, d]` → (train, held-out) by a held-out flag per row (axis `axis`).
fn split_rows(x: &Tensor, held: &[bool], axis: i64) -> (Tensor, Tensor) {
    let pick = |h: bool| {
        let rows: Vec<i64> = (0..held.len() as i64)
            .filter(|&i| held[i as usize] == h)
            .collect();
        x.index_select(axis, &Tensor::from_slice(&rows))
    };
    (pick(false), pick(true))
}

fn ids(labels: &[usize]) -> Tensor {
    Tensor::from_slice(&labels.iter().map(|&c| c as i64).collect::<Vec<_>>())
}

/// Both solvers: a planted feature is decoded exactly, shuffled labels stay at chance.
#[test]
fn a_probe_recovers_a_planted_feature_and_stays_at_chance_on_shuffled_labels() {
    for solver in [Solver::Logistic, Solver::Ridge] {
        planted_feature_and_shuffled_labels(solver);
    }
}

fn planted_feature_and_shuffled_labels(solver: Solver) {
    let (n, d) = (400, 48);
    let (x4, y4) = planted(n, d, 4, 1);
    let mut shuffled = y4.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    rand::seq::SliceRandom::shuffle(shuffled.as_mut_slice(), &mut rng);
    let held = stratified_split(&y4, 0.25, 11);
    let k = held.iter().filter(|&&b| b).count();
    assert!((90..=110).contains(&k), "held out {k} of {n}");
    // Two probes in one batch: the planted labels and the same labels shuffled.
    let x = Tensor::stack(&[x4.shallow_clone(), x4.shallow_clone()], 0);
    let y = Tensor::stack(&[ids(&y4), ids(&shuffled)], 0);
    let (x_train, x_test) = split_rows(&x, &held, 1);
    let (y_train, y_test) = split_rows(&y, &held, 1);
    let opts = FitOptions {
        solver,
        ..FitOptions::default()
    };
    let fit = fit_probes(&x_train, &y_train, &x_test, &y_test, 4, &opts).unwrap();
    assert_eq!(
        fit.held_out_acc[0], 1.0,
        "{solver:?}, planted feature: {fit:?}"
    );
    let chance = fit.held_out_acc[1];
    assert!(
        (0.1..0.4).contains(&chance),
        "{solver:?}: shuffled labels must stay near chance 0.25, got {chance}"
    );

    // One label vector shared by every probe of the batch, six classes.
    let (x6, y6) = planted(n, d, 6, 2);
    let held = stratified_split(&y6, 0.25, 12);
    let x = Tensor::stack(&[x6.shallow_clone(), x6 * 2.0 + 5.0], 0);
    let (x_train, x_test) = split_rows(&x, &held, 1);
    let (y_train, y_test) = split_rows(&ids(&y6), &held, 0);
    let fit = fit_probes(&x_train, &y_train, &x_test, &y_test, 6, &opts).unwrap();
    assert_eq!(
        fit.held_out_acc,
        vec![1.0, 1.0],
        "{solver:?}, standardised features: {fit:?}"
    );
    assert_eq!(fit.train_acc, vec![1.0, 1.0]);

    let err = fit_probes(&x_train, &y_train, &x_test, &y_test, 5, &opts).unwrap_err();
    assert!(err.to_string().contains("class index"), "{err}");
    let err = fit_probes(&x_train, &y_test, &x_test, &y_test, 6, &opts).unwrap_err();
    assert!(matches!(err, InterpError::BadSpec { .. }), "{err}");
}

/// The ridge solver's accuracies equal an independent f64 computation with an explicit one-hot
/// matrix and a dense solve, on weakly separable data (accuracies well below 1) and for a small
/// and a large penalty.
#[test]
fn ridge_probe_matches_a_dense_f64_solution() {
    let (n, d, classes) = (300usize, 20i64, 5usize);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let labels: Vec<usize> = (0..n).map(|_| rng.gen_range(0..classes)).collect();
    tch::manual_seed(9);
    let centres = Tensor::randn([classes as i64, d], (Kind::Float, Device::Cpu)) * 0.4;
    let x = Tensor::randn([n as i64, d], (Kind::Float, Device::Cpu)) * 1.5
        + 3.0
        + centres.index_select(0, &ids(&labels));
    let held = stratified_split(&labels, 0.3, 4);
    let (x_train, x_test) = split_rows(&x, &held, 0);
    let (y_train, y_test) = split_rows(&ids(&labels), &held, 0);
    for l2 in [1e-3, 3.0] {
        let opts = FitOptions {
            solver: Solver::Ridge,
            l2,
            ..FitOptions::default()
        };
        let fit = fit_probes(
            &x_train.unsqueeze(0),
            &y_train,
            &x_test.unsqueeze(0),
            &y_test,
            classes,
            &opts,
        )
        .unwrap();

        let xt = x_train.to_kind(Kind::Double);
        let mean = xt.mean_dim(0, true, Kind::Double);
        let std = xt.std_dim(0, false, true);
        let standard = |x: &Tensor| (x.to_kind(Kind::Double) - &mean) / &std;
        let xs = standard(&x_train);
        let onehot = y_train.one_hot(classes as i64).to_kind(Kind::Double);
        let rows = xs.size()[0] as f64;
        let gram = xs.tr().matmul(&xs) / rows + Tensor::eye(d, (Kind::Double, Device::Cpu)) * l2;
        let w = Tensor::linalg_solve(&gram, &(xs.tr().matmul(&onehot) / rows), true);
        let b = onehot.mean_dim(0, true, Kind::Double);
        let acc = |x: &Tensor, y: &Tensor| {
            let pred = (standard(x).matmul(&w) + &b).argmax(-1, false);
            pred.eq_tensor(y)
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[])
        };
        let (want_test, want_train) = (acc(&x_test, &y_test), acc(&x_train, &y_train));
        assert!(
            want_test < 0.9 && want_test > 0.3,
            "l2 {l2}: data too easy or too hard: {want_test}"
        );
        // Same predictions: accuracies equal up to the f32 mean of the hits.
        assert!(
            (fit.held_out_acc[0] - want_test).abs() < 1e-6,
            "l2 {l2}: {fit:?} vs {want_test}"
        );
        assert!(
            (fit.train_acc[0] - want_train).abs() < 1e-6,
            "l2 {l2}: {fit:?} vs {want_train}"
        );
    }
}

#[test]
fn stratified_split_keeps_every_held_out_class_in_training() {
    let labels: Vec<usize> = (0..50).map(|i| i % 7).chain([100]).collect();
    let held = stratified_split(&labels, 0.3, 5);
    assert_eq!(held, stratified_split(&labels, 0.3, 5), "seeded");
    for c in [0usize, 1, 2, 3, 4, 5, 6, 100] {
        let rows: Vec<bool> = labels
            .iter()
            .zip(&held)
            .filter(|(&l, _)| l == c)
            .map(|(_, &h)| h)
            .collect();
        assert!(rows.iter().any(|h| !h), "class {c} has training rows");
    }
    assert!(!held[50], "a single-example class is only trained on");
}

#[test]
fn probes_on_a_model_decode_the_input_tokens_and_match_the_lens() {
    let ds = composition_with(300);
    let probe = probe_set(&ds, None);
    assert!(probe.examples.len() >= 200, "{}", probe.examples.len());
    let ckpt = tiny_model(ds.vocab.len(), 3, 4);
    let net = Net::new(&ckpt.model);
    assert_eq!(default_probe_targets(&probe), vec!["b1", "r2"]);
    let targets: Vec<String> = ["h", "r2", "b1", "answer"].map(String::from).to_vec();
    let opts = LinearProbeOptions {
        max_rows: 64,
        ..LinearProbeOptions::default()
    };
    let r = linear_probes(&net, &probe, &targets, None, None, &opts).unwrap();
    assert_eq!(
        r.cells.len(),
        4 * 4 * 3,
        "layers 0..=3 × targets × positions"
    );
    let rows = r.rows(5);
    assert_eq!(rows.len(), 2 * r.cells.len());
    assert!(rows
        .iter()
        .all(|row| row.step == 5 && (0.0..=1.0).contains(&row.value)));
    // At layer 0 the residual stream at position p is embed(token_p) + pos_embed(p): the token
    // there is linearly decodable exactly.
    assert_eq!(
        r.get(0, "h", "h").unwrap().probe_acc,
        1.0,
        "{:?}",
        r.get(0, "h", "h")
    );
    assert_eq!(r.get(0, "r2", "r2").unwrap().probe_acc, 1.0);
    // The lens at the last layer and position is the model's own prediction.
    let answer = r.targets.iter().find(|t| t.role == "answer").unwrap();
    let tokens = probe.clean_tokens(Device::Cpu);
    let top1 = tch::no_grad(|| ckpt.model.forward_t(&tokens, false))
        .select(1, probe.answer_pos as i64)
        .argmax(-1, false);
    let top1 = Vec::<i64>::try_from(&top1).unwrap();
    let (mut hits, mut n) = (0, 0);
    for (i, e) in probe.examples.iter().enumerate() {
        if answer.held_out[i] {
            n += 1;
            hits += usize::from(top1[i] == i64::from(e.gold));
        }
    }
    let lens = r.get(3, "r2", "answer").unwrap().lens_acc;
    assert!(
        (lens - hits as f64 / n as f64).abs() < 1e-6,
        "{lens} vs {hits}/{n}"
    );

    let only = linear_probes(
        &net,
        &probe,
        &targets[..1],
        Some(&["r1".to_string()]),
        Some(&[1, 2]),
        &opts,
    )
    .unwrap();
    assert_eq!(only.cells.len(), 2);
    assert!(only
        .cells
        .iter()
        .all(|c| c.position == "r1" && c.target == "h"));
}

#[test]
fn dla_parts_add_up_to_the_logit_difference() {
    for (ds, n_layer) in [(composition(), 3), (comparison(), 2)] {
        let probe = probe_set(&ds, Some(24));
        let ckpt = tiny_model(ds.vocab.len(), n_layer, 8);
        let net = Net::new(&ckpt.model);
        // The prompt's second token is a relation / the comparison's question: never an answer.
        for alternative in [None, Some(probe.examples[0].tokens[1])] {
            let r = direct_logit_attribution(&net, &probe, alternative, 5).unwrap();
            assert_eq!(
                r.dla.components.len(),
                2 + 2 * n_layer + 1 + n_layer * (4 + 1)
            );
            assert!(
                r.dla.max_residual() < 1e-4,
                "residual {}",
                r.dla.max_residual()
            );
            let col = |c: DlaComponent| r.dla.components.iter().position(|x| *x == c).unwrap();
            for (i, e) in probe.examples.iter().enumerate() {
                let row = r.dla.values.row(i);
                let layer_sum: f64 = r
                    .dla
                    .components
                    .iter()
                    .zip(row)
                    .filter(|(c, _)| c.in_layer_view())
                    .map(|(_, v)| v)
                    .sum();
                assert!((layer_sum - r.dla.logit_diff[i]).abs() < 1e-4);
                for l in 0..n_layer {
                    let heads: f64 = (0..4).map(|h| row[col(DlaComponent::Head(l, h))]).sum();
                    let bias = row[col(DlaComponent::AttnBias(l))];
                    let attn = row[col(DlaComponent::AttnOut(l))];
                    assert!(
                        (heads + bias - attn).abs() < 1e-5 * (1.0 + attn.abs()),
                        "layer {l}: heads {heads} + bias {bias} vs attn_out {attn}"
                    );
                    assert!(bias.abs() > 1e-6, "the bias term is exercised");
                }
                assert_ne!(r.alt[i], e.gold);
            }
            // The logit difference is the model's own.
            let tokens = probe.clean_tokens(Device::Cpu);
            let logits = tch::no_grad(|| ckpt.model.forward_t(&tokens, false))
                .select(1, probe.answer_pos as i64);
            for (i, e) in probe.examples.iter().enumerate() {
                let ld = logits.double_value(&[i as i64, i64::from(e.gold)])
                    - logits.double_value(&[i as i64, i64::from(r.alt[i])]);
                assert!(
                    (ld - r.dla.logit_diff[i]).abs() < 1e-4,
                    "{ld} vs {}",
                    r.dla.logit_diff[i]
                );
            }
            let rows = r.rows(3);
            assert_eq!(
                rows.len(),
                r.dla.components.len() - n_layer,
                "no attn_bias rows"
            );
            assert!(rows
                .iter()
                .all(|row| !row.component.starts_with("attn_bias")));
            let bars: f64 = rows
                .iter()
                .filter(|row| !row.component.starts_with("head"))
                .map(|row| row.value)
                .sum();
            assert!(
                (bars - r.dla.mean_logit_diff()).abs() < 1e-4,
                "the bars sum to the logit diff"
            );
            assert_eq!(rows[0].component, "embed");
            assert!(rows.iter().any(|row| row.component == "head.1.3"));
            assert!(rows.iter().any(|row| row.component == "ln_final.bias"));
        }
    }
}

#[test]
fn exported_activations_equal_the_models_cache() {
    let ds = comparison();
    let probe = probe_set(&ds, Some(19));
    let ckpt = tiny_model(ds.vocab.len(), 2, 2);
    let net = Net::new(&ckpt.model);
    let patterns: Vec<String> = [
        "blocks.*.hook_resid_post",
        "hook_pos_embed",
        "blocks.1.attn.hook_pattern",
        "ln_final.hook_scale",
        "blocks.0.hook_resid_post",
    ]
    .map(String::from)
    .to_vec();
    let hooks = resolve_hooks(&patterns, 2).unwrap();
    let order: Vec<String> = hooks.iter().map(ToString::to_string).collect();
    assert_eq!(
        order,
        [
            "hook_pos_embed",
            "blocks.0.hook_resid_post",
            "blocks.1.attn.hook_pattern",
            "blocks.1.hook_resid_post",
            "ln_final.hook_scale"
        ],
        "forward order, duplicates merged"
    );
    let dir = tempdir("export");
    let path = dir.join("acts.safetensors");
    let meta = BTreeMap::from([("step".to_string(), "12".to_string())]);
    let summary = export_activations(&net, &probe, &hooks, &path, &meta, 4).unwrap();
    assert_eq!(summary.examples, 19);
    assert_eq!(summary.bytes, std::fs::metadata(&path).unwrap().len());

    let read: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .collect();
    let tokens = probe.clean_tokens(Device::Cpu);
    let out = tch::no_grad(|| {
        net.gpt
            .run(&tokens, &RunRequest::capture(hooks.iter().copied()))
    })
    .unwrap();
    for hook in &hooks {
        let got = &read[&hook.to_string()];
        let want = &out.cache[hook];
        assert_eq!(got.size(), want.size(), "{hook}");
        assert_eq!(got.kind(), Kind::Float, "{hook}");
        assert!(
            got.equal(&want.contiguous()),
            "{hook}: exported values differ from the cache"
        );
    }
    assert!(read["tokens"].equal(&tokens));
    assert_eq!(read["tokens"].kind(), Kind::Int64);
    let gold: Vec<i64> = probe.examples.iter().map(|e| i64::from(e.gold)).collect();
    assert!(read["gold"].equal(&Tensor::from_slice(&gold)));
    for role in ["a", "e1", "e2", "v1", "v2", "label"] {
        let ids: Vec<i64> = probe
            .examples
            .iter()
            .map(|e| i64::from(e.roles[role]))
            .collect();
        let t = &read[&format!("{ROLE_PREFIX}{role}")];
        assert_eq!(t.size(), [19]);
        assert!(t.equal(&Tensor::from_slice(&ids)), "role {role}");
    }
    let header = header_json(&path);
    let meta = &header["__metadata__"];
    assert_eq!(meta["positions"], probe.positions.join(","));
    assert_eq!(meta["step"], "12");
    assert_eq!(meta["hooks"], order.join(","));
    assert_eq!(meta["format"], interp::export::FORMAT);
}

fn header_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(len % 8, 0, "header padded to 8 bytes");
    serde_json::from_slice(&bytes[8..8 + len]).unwrap()
}

/// The Python interpreter of the reference environment: `$GROKSCOPE_PYTHON`, else
/// `~/.cache/grokscope/venv/bin/python` (installed by `just setup`).
fn python() -> PathBuf {
    let python = model::hf::python_path();
    assert!(
        python.is_file(),
        "no Python interpreter at {} (run `just setup`, or set GROKSCOPE_PYTHON to a Python with \
         numpy and safetensors)",
        python.display()
    );
    python
}

#[test]
fn python_safetensors_numpy_reads_the_export() {
    let ds = composition();
    let probe = probe_set(&ds, Some(11));
    let ckpt = tiny_model(ds.vocab.len(), 3, 6);
    let net = Net::new(&ckpt.model);
    let hooks = resolve_hooks(
        &[
            "blocks.*.hook_resid_pre".to_string(),
            "blocks.2.attn.hook_z".to_string(),
        ],
        3,
    )
    .unwrap();
    let dir = tempdir("python");
    let path = dir.join("acts.safetensors");
    export_activations(&net, &probe, &hooks, &path, &BTreeMap::new(), 64).unwrap();
    let script = r#"
import json, sys
from safetensors import safe_open
from safetensors.numpy import load_file
d = load_file(sys.argv[1])
with safe_open(sys.argv[1], framework="numpy") as f:
    meta = f.metadata()
print(json.dumps({
    "shapes": {k: list(v.shape) for k, v in d.items()},
    "dtypes": {k: str(v.dtype) for k, v in d.items()},
    "sum": float(d["blocks.2.hook_resid_pre"].astype("float64").sum()),
    "b1": d["role.b1"].tolist(),
    "positions": meta["positions"],
}))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["shapes"]["blocks.2.hook_resid_pre"],
        serde_json::json!([11, 3, 32])
    );
    assert_eq!(
        v["shapes"]["blocks.2.attn.hook_z"],
        serde_json::json!([11, 3, 4, 8])
    );
    assert_eq!(v["shapes"]["tokens"], serde_json::json!([11, 3]));
    assert_eq!(v["dtypes"]["blocks.0.hook_resid_pre"], "float32");
    assert_eq!(v["dtypes"]["role.h"], "int64");
    assert_eq!(v["positions"], "h,r1,r2");
    let b1: Vec<u32> = probe.examples.iter().map(|e| e.roles["b1"]).collect();
    assert_eq!(v["b1"], serde_json::json!(b1));
    let read: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .collect();
    let sum = read["blocks.2.hook_resid_pre"]
        .to_kind(Kind::Double)
        .sum(Kind::Double)
        .double_value(&[]);
    assert!((sum - v["sum"].as_f64().unwrap()).abs() < 1e-9 * (1.0 + sum.abs()));
}

#[test]
fn bad_input_gives_clear_errors() {
    let ds = composition();
    let probe = probe_set(&ds, Some(30));
    let ckpt = tiny_model(ds.vocab.len(), 3, 1);
    let net = Net::new(&ckpt.model);

    let err = resolve_hooks(&["blocks.*.hook_nothing".to_string()], 3).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("blocks.*.hook_nothing") && !msg.contains('\n'),
        "{msg}"
    );
    let err = resolve_hooks(&["blocks.7.hook_resid_pre".to_string()], 3).unwrap_err();
    assert!(err.to_string().contains("blocks.7.hook_resid_pre"), "{err}");
    assert!(resolve_hooks(&[], 3).is_err());

    let opts = LinearProbeOptions::default();
    let err = linear_probes(&net, &probe, &["v1".to_string()], None, None, &opts).unwrap_err();
    assert!(matches!(err, InterpError::UnknownRole { .. }), "{err}");
    assert!(err.to_string().contains("b1"), "lists the roles: {err}");
    let err = TargetLabels::new(&probe, "labels", 0.25, 0).unwrap_err();
    assert!(err.to_string().contains("label"), "{err}");
    let pos = ["e1".to_string()];
    let err = linear_probes(&net, &probe, &["h".to_string()], Some(&pos), None, &opts).unwrap_err();
    assert!(matches!(err, InterpError::UnknownPosition { .. }), "{err}");
    let err = linear_probes(&net, &probe, &["h".to_string()], None, Some(&[4]), &opts).unwrap_err();
    assert!(
        matches!(err, InterpError::LayerOutOfRange { layer: 4, max: 3 }),
        "{err}"
    );
    let half = LinearProbeOptions {
        holdout: 1.0,
        ..LinearProbeOptions::default()
    };
    assert!(linear_probes(&net, &probe, &["h".to_string()], None, None, &half).is_err());
    let tiny = probe_set(&ds, Some(1));
    let err = linear_probes(&net, &tiny, &["h".to_string()], None, None, &opts).unwrap_err();
    assert!(err.to_string().contains("no held-out examples"), "{err}");

    let err = direct_logit_attribution(&net, &probe, Some(ds.vocab.len() as u32), 8).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
}

/// Timing at paper size on a random-init model (8 layers × 768, 12 heads; 3000 train_inferred
/// examples of the paper's composition dataset), on CUDA when available:
/// `cargo test -p interp --release --test probes_dla -- --ignored --nocapture paper_size`.
/// `GROKSCOPE_BENCH_ITERS` sets the Adam iterations (default: [`FitOptions::default`]),
/// `GROKSCOPE_BENCH_SOLVER` the solver (`logistic` or `ridge`).
#[test]
#[ignore]
fn paper_size_probe_and_dla_timing() {
    let device = Device::cuda_if_available();
    let started = Instant::now();
    let ds = Dataset::generate(&TaskSpec::Composition(CompositionParams::default()), 0).unwrap();
    let probe = probe_set(&ds, Some(3000));
    println!(
        "dataset and prompt sample: {:.2} s, vocab {}",
        started.elapsed().as_secs_f64(),
        ds.vocab.len()
    );
    tch::manual_seed(0);
    let cfg = GptConfig {
        dropout: 0.0,
        ..GptConfig::new(ds.vocab.len(), 8, 768, 12, 8)
    };
    let ckpt = Checkpoint::new(cfg, device).unwrap();
    let net = Net::new(&ckpt.model);
    let iterations = std::env::var("GROKSCOPE_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(FitOptions::default().iterations);
    let solver: Solver = std::env::var("GROKSCOPE_BENCH_SOLVER")
        .map_or(Ok(Solver::Logistic), |s| s.parse())
        .unwrap();
    let opts = LinearProbeOptions {
        fit: FitOptions {
            solver,
            iterations,
            ..FitOptions::default()
        },
        ..LinearProbeOptions::default()
    };
    let targets = default_probe_targets(&probe);
    let started = Instant::now();
    let r = linear_probes(&net, &probe, &targets, None, None, &opts).unwrap();
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    println!(
        "probes on {device:?}: {} cells ({} targets × 9 layers × 3 positions), {solver:?}, \
         {iterations} iterations: forward + lens {:.2} s, fit {:.2} s, total {:.2} s",
        r.cells.len(),
        targets.len(),
        r.forward_seconds,
        r.fit_seconds,
        started.elapsed().as_secs_f64()
    );
    for t in &r.targets {
        println!(
            "  {}: {} classes, {} train / {} held out",
            t.role,
            t.classes.len(),
            t.n_train(),
            t.n_held_out()
        );
    }
    let started = Instant::now();
    let dla = direct_logit_attribution(&net, &probe, None, 2048).unwrap();
    println!(
        "dla on {device:?}: {} components × {} examples in {:.2} s (residual {:.1e})",
        dla.dla.components.len(),
        dla.dla.logit_diff.len(),
        started.elapsed().as_secs_f64(),
        dla.dla.max_residual()
    );
}
