//! Tests of the interpretability crate on tiny random models and tiny generated datasets.

mod common;

use common::{comparison, composition, config, random_model, scale_all_but_ln, tempdir};
use interp::lens::{default_targets, logit_lens, TargetSpec, ANSWER};
use interp::patch::{patch_sweep, Component, Direction, PatchResult};
use interp::stats::Outcomes;
use interp::tokens::LensOptions;
use interp::{
    attribution_patching, AttributionOptions, CellGrid, ComponentKind, CorruptionSpec, InterpError,
    LnMode, Net, PositionChoice, PromptSample, SampleSpec, SweepMode, SweepOptions,
};
use model::{Checkpoint, HookPoint, RunRequest};
use std::path::Path;
use tasks::{CompositionParams, Dataset, TaskSpec};
use tch::{Device, Kind, Tensor};

/// Lens options: `ln_mode`, every layer, batches of `max_rows`, no tuned lens.
fn lens_opts(ln_mode: LnMode, max_rows: usize) -> LensOptions<'static> {
    LensOptions {
        ln_mode,
        max_rows,
        ..LensOptions::default()
    }
}

/// A random 3-layer model whose non-LayerNorm weights are scaled ×6 so that its predictions are
/// peaked.
fn tiny_model(vocab_size: usize, seed: i64) -> Checkpoint {
    random_model(config(vocab_size, 3), seed, scale_all_but_ln(6.0))
}

fn probe(ds: &Dataset, corruptions: &[&str], size: usize) -> PromptSample {
    let specs: Vec<CorruptionSpec> = corruptions.iter().map(|c| c.parse().unwrap()).collect();
    let spec = SampleSpec {
        split: "train_inferred".into(),
        size: Some(size),
        seed: 7,
        indices: None,
    };
    PromptSample::build(ds, &spec, &specs).unwrap()
}

/// `size` prompts of `split` (seed 0) with the task's default corruptions.
fn default_sample(ds: &Dataset, split: &str, size: usize) -> PromptSample {
    let spec = SampleSpec {
        split: split.into(),
        size: Some(size),
        seed: 0,
        indices: None,
    };
    PromptSample::build(ds, &spec, &interp::default_corruptions(ds.kind)).unwrap()
}

fn assert_same(a: &Outcomes, b: &Outcomes, what: &str) {
    assert_eq!(a.rank, b.rank, "{what}: ranks differ");
    for (x, y) in a.ld.iter().zip(&b.ld) {
        assert!(
            (x - y).abs() < 1e-4 * (1.0 + x.abs()),
            "{what}: logit diff {x} vs {y}"
        );
    }
    for (x, y) in a.prob.iter().zip(&b.prob) {
        assert!((x - y).abs() < 1e-5, "{what}: prob {x} vs {y}");
    }
}

fn all_components() -> Vec<ComponentKind> {
    vec![
        ComponentKind::Resid,
        ComponentKind::AttnOut,
        ComponentKind::MlpOut,
        ComponentKind::Heads,
    ]
}

#[test]
fn probe_set_follows_the_paper_rules_and_is_seeded() {
    let ds = composition();
    let p = probe(&ds, &["h", "r1", "r2", "noise:h+r1"], 20);
    assert_eq!(p.positions, vec!["h", "r1", "r2"]);
    assert_eq!(p.examples.len(), 20);
    for e in &p.examples {
        let b1 = e.roles["b1"];
        assert_eq!(ds.facts.tail(e.roles["h"], e.roles["r1"]), Some(b1));
        assert_eq!(ds.facts.tail(b1, e.roles["r2"]), Some(e.gold));
        for (name, c) in &e.corruptions {
            assert_eq!(c.tokens.len(), e.tokens.len(), "{name}");
            if let Some(pos) = ["h", "r1", "r2"].iter().position(|r| r == name) {
                assert_eq!(c.positions, vec![pos]);
                let changed: Vec<usize> = (0..3).filter(|&i| c.tokens[i] != e.tokens[i]).collect();
                assert_eq!(changed, vec![pos]);
                let t = ds
                    .facts
                    .chain(c.tokens[0], &c.tokens[1..])
                    .and_then(|c| c.last().copied());
                assert_ne!(
                    t,
                    Some(e.gold),
                    "{name}: the corruption must change the answer"
                );
            }
        }
        let noise = &e.corruptions["noise:h+r1"];
        assert_eq!(noise.positions, vec![0, 1]);
        assert_eq!(noise.tokens, e.tokens);
        assert!(noise.noise_seed.is_some());
    }
    let again = probe(&ds, &["h", "r1", "r2", "noise:h+r1"], 20);
    assert_eq!(p.examples, again.examples);
}

#[test]
fn examples_jsonl_holds_everything_to_recompute() {
    let ds = composition();
    let p = probe(&ds, &["r1", "noise:r2"], 5);
    let dir = tempdir("jsonl");
    let path = dir.join("examples.jsonl");
    p.write_jsonl(&path, &ds.vocab).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for (line, e) in lines.iter().zip(&p.examples) {
        assert_eq!(line["index"], e.index);
        assert_eq!(line["gold"], e.gold);
        assert_eq!(line["roles"]["b1"], e.roles["b1"]);
        assert_eq!(line["tokens"].as_array().unwrap().len(), 3);
        assert_eq!(
            line["corruptions"]["r1"]["tokens"][1],
            e.corruptions["r1"].tokens[1]
        );
        assert_eq!(
            line["corruptions"]["noise:r2"]["noise_seed"],
            e.corruptions["noise:r2"].noise_seed.unwrap()
        );
        assert_eq!(line["corruptions"]["noise:r2"]["positions"][0], 2);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn patching_clean_into_clean_changes_nothing() {
    let ds = composition();
    let ckpt = tiny_model(ds.vocab.len(), 1);
    let net = Net::new(&ckpt.model);
    let mut p = probe(&ds, &["r1"], 12);
    for e in &mut p.examples {
        if let Some(c) = e.corruptions.get_mut("r1") {
            c.tokens = e.tokens.clone();
        }
    }
    let opts = SweepOptions {
        grid: CellGrid {
            components: all_components(),
            positions: vec![PositionChoice::Each, PositionChoice::All],
            layers: None,
        },
        ..SweepOptions::default()
    };
    let r = patch_sweep(&net, &p, &opts).unwrap();
    let base = &r.baselines[0];
    assert_same(&base.clean, &base.corrupted, "baselines");
    assert!(!r.cells.is_empty());
    for c in &r.cells {
        assert_same(&c.outcomes, &base.clean, &format!("{:?}", c.cell));
    }
}

#[test]
fn patching_every_position_at_layer_0_reproduces_the_other_run() {
    let ds = composition();
    let ckpt = tiny_model(ds.vocab.len(), 2);
    let net = Net::new(&ckpt.model);
    let p = probe(&ds, &["h", "r2", "noise:h+r1+r2"], 16);
    let opts = SweepOptions {
        grid: CellGrid {
            positions: vec![PositionChoice::All],
            layers: Some(vec![0]),
            ..CellGrid::default()
        },
        ..SweepOptions::default()
    };
    let r = patch_sweep(&net, &p, &opts).unwrap();
    assert!(r.noise_scale.unwrap() > 0.0);
    for b in &r.baselines {
        assert_ne!(
            b.clean.rank, b.corrupted.rank,
            "{}: corruption had no effect",
            b.corruption
        );
        for c in r.cells.iter().filter(|c| c.cell.corruption == b.corruption) {
            assert_eq!(c.cell.position, "all");
            let expect = match c.cell.direction {
                Direction::Noising => &b.corrupted,
                Direction::Denoising => &b.clean,
            };
            assert_same(&c.outcomes, expect, &format!("{:?}", c.cell));
        }
    }
}

#[test]
fn lens_at_the_last_layer_is_the_model_prediction() {
    let ds = composition();
    let ckpt = tiny_model(ds.vocab.len(), 3);
    let net = Net::new(&ckpt.model);
    let p = probe(&ds, &[], 25);
    let l = net.n_layer();
    let targets = vec![TargetSpec {
        role: ANSWER.into(),
        position: "last".into(),
    }];
    for mode in [LnMode::Recompute, LnMode::CachedScale] {
        let lens = logit_lens(&net, &p, &targets, &lens_opts(mode, 7)).unwrap();
        let t = &lens.targets[0];
        let tokens = Tensor::from_slice(
            &p.examples
                .iter()
                .flat_map(|e| e.tokens.iter().map(|&x| x as i64))
                .collect::<Vec<_>>(),
        )
        .view([p.examples.len() as i64, 3]);
        let logits = tch::no_grad(|| ckpt.model.forward_t(&tokens, false)).select(1, 2);
        for (i, e) in p.examples.iter().enumerate() {
            let row = logits.get(i as i64);
            let gold = row.double_value(&[e.gold as i64]);
            let rank = row.gt(gold).sum(Kind::Int64).int64_value(&[]);
            assert_eq!(t.values[[l, i]] as i64, rank, "{mode}: example {i}");
        }
    }
}

/// GPT-2 written out with explicit tensor operations on the checkpoint's parameters: every
/// residual state `0..=L`, each `[B, T, d]`, and every layer's attention pattern
/// `softmax(QKᵀ/√d_head)` under the causal mask, each `[B, H, T, T]`.
struct Explicit {
    states: Vec<Tensor>,
    patterns: Vec<Tensor>,
}

fn explicit_forward(ckpt: &Checkpoint, tokens: &Tensor) -> Explicit {
    let vars = ckpt.vs.variables();
    let v = |n: &str| vars[n].shallow_clone();
    let cfg = &ckpt.config;
    let (b, t) = tokens.size2().unwrap();
    let (d, h) = (cfg.d_model as i64, cfg.n_head as i64);
    let dh = d / h;
    let ln = |x: &Tensor, w: &Tensor, bias: &Tensor| {
        let mu = x.mean_dim(-1, true, Kind::Float);
        let var = (x - &mu).square().mean_dim(-1, true, Kind::Float);
        (x - mu) / (var + cfg.ln_eps).sqrt() * w + bias
    };
    let wte = v("transformer.wte.weight");
    let mut x = wte.index_select(0, &tokens.view(-1)).view([b, t, d])
        + v("transformer.wpe.weight").narrow(0, 0, t);
    let mut states = vec![x.shallow_clone()];
    let mut patterns = Vec::new();
    let mask = Tensor::ones([t, t], (Kind::Bool, Device::Cpu)).tril(0);
    for &blk in &cfg.schedule {
        let p = |n: &str| v(&format!("transformer.h.{blk}.{n}"));
        let a = ln(&x, &p("ln_1.weight"), &p("ln_1.bias"));
        let qkv = a.matmul(&p("attn.c_attn.weight")) + p("attn.c_attn.bias");
        let split = |i: i64| {
            qkv.narrow(2, i * d, d)
                .view([b, t, h, dh])
                .permute([0, 2, 1, 3])
        };
        let (q, k, vv) = (split(0), split(1), split(2));
        let scores = q.matmul(&k.transpose(2, 3)) / (dh as f64).sqrt();
        let scores = scores.masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
        let pattern = scores.softmax(-1, Kind::Float);
        let z = pattern.matmul(&vv).permute([0, 2, 1, 3]).reshape([b, t, d]);
        x = &x + z.matmul(&p("attn.c_proj.weight")) + p("attn.c_proj.bias");
        let m = ln(&x, &p("ln_2.weight"), &p("ln_2.bias"));
        let pre = m.matmul(&p("mlp.c_fc.weight")) + p("mlp.c_fc.bias");
        let gelu = &pre
            * 0.5
            * (((&pre + pre.pow_tensor_scalar(3.0) * 0.044715)
                * (2.0 / std::f64::consts::PI).sqrt())
            .tanh()
                + 1.0);
        x = &x + gelu.matmul(&p("mlp.c_proj.weight")) + p("mlp.c_proj.bias");
        states.push(x.shallow_clone());
        patterns.push(pattern);
    }
    Explicit { states, patterns }
}

/// Attention patterns on a tiny random model (captured in chunks): every row sums to 1 over the
/// keys with zero weight on future keys, the mean and the first examples equal softmax(QKᵀ/√d)
/// under the causal mask computed from the weights, and attention.csv rows hold exactly the keys
/// up to each query, the mean first.
#[test]
fn attention_patterns_equal_explicit_softmax_and_rows_sum_to_one() {
    let ds = composition();
    let ckpt = tiny_model(ds.vocab.len(), 13);
    let net = Net::new(&ckpt.model);
    let p = probe(&ds, &[], 10);
    let att = interp::attention_patterns(&net, &p, 3).unwrap();
    let (l, h, t) = (3, 4, 3);
    assert_eq!(att.mean.size(), [l, h, t, t]);
    assert_eq!(att.examples.size(), [4, l, h, t, t]);
    let explicit = tch::no_grad(|| explicit_forward(&ckpt, &p.clean_tokens(Device::Cpu))).patterns;
    let explicit = Tensor::stack(&explicit, 1).to_kind(Kind::Double);
    let max_diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
    assert!(max_diff(&att.mean, &explicit.mean_dim(0, false, Kind::Double)) < 1e-5);
    assert!(max_diff(&att.examples, &explicit.narrow(0, 0, 4)) < 1e-5);
    for pattern in [&att.mean, &att.examples] {
        let sums = pattern.sum_dim_intlist(-1, false, Kind::Double);
        assert!(max_diff(&sums, &sums.ones_like()) < 1e-6, "rows sum to 1");
        assert_eq!(
            pattern.triu(1).abs().max().double_value(&[]),
            0.0,
            "future keys"
        );
    }
    let spread = att.examples.std(false).double_value(&[]);
    assert!(spread > 0.05, "patterns are not uniform ({spread})");

    let rows = att.rows(7).unwrap();
    assert_eq!(rows.len(), 5 * (l * h * t * (t + 1) / 2) as usize);
    assert_eq!(rows[0].example, interp::attention::MEAN_EXAMPLE);
    let mut sums = std::collections::BTreeMap::<_, f64>::new();
    for r in &rows {
        assert_eq!(r.step, 7);
        let (q, k) = (p.position(&r.query).unwrap(), p.position(&r.key).unwrap());
        assert!(k <= q, "future key {} of query {}", r.key, r.query);
        *sums
            .entry((r.example.clone(), r.layer, r.head, q))
            .or_default() += r.value;
    }
    let examples: std::collections::BTreeSet<_> = sums.keys().map(|k| k.0.clone()).collect();
    assert_eq!(
        examples.into_iter().collect::<Vec<_>>(),
        ["0", "1", "2", "3", "mean"]
    );
    assert!(sums.values().all(|s| (s - 1.0).abs() < 1e-6), "{sums:?}");
    let first = rows
        .iter()
        .find(|r| r.example == "2" && r.layer == 1 && r.head == 3);
    let want = explicit
        .get(2)
        .get(1)
        .get(3)
        .get(0)
        .get(0)
        .double_value(&[]);
    assert!((first.unwrap().value - want).abs() < 1e-6);
}

#[test]
fn lens_ranks_agree_with_explicit_tensor_code() {
    let ds = composition();
    let ckpt = tiny_model(ds.vocab.len(), 4);
    let net = Net::new(&ckpt.model);
    let p = probe(&ds, &[], 30);
    let targets = default_targets(&p);
    let names: Vec<String> = targets.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["b1@r1", "r2@r2", "answer@last"]);
    let tokens = Tensor::from_slice(
        &p.examples
            .iter()
            .flat_map(|e| e.tokens.iter().map(|&x| x as i64))
            .collect::<Vec<_>>(),
    )
    .view([p.examples.len() as i64, 3]);
    let states = tch::no_grad(|| explicit_forward(&ckpt, &tokens)).states;
    let vars = ckpt.vs.variables();
    let (w, b, wte) = (
        &vars["transformer.ln_f.weight"],
        &vars["transformer.ln_f.bias"],
        &vars["transformer.wte.weight"],
    );
    let l_final = states.len() - 1;
    for mode in [LnMode::Recompute, LnMode::CachedScale] {
        let lens = logit_lens(&net, &p, &targets, &lens_opts(mode, 11)).unwrap();
        for t in &lens.targets {
            for (li, &layer) in t.layers.iter().enumerate() {
                let x = states[layer].select(1, t.pos as i64);
                let mu = x.mean_dim(-1, true, Kind::Float);
                let centred = &x - &mu;
                let scale = match mode {
                    LnMode::Recompute => {
                        (centred.square().mean_dim(-1, true, Kind::Float) + 1e-5).sqrt()
                    }
                    LnMode::CachedScale => {
                        let f = states[l_final].select(1, t.pos as i64);
                        let fc = &f - f.mean_dim(-1, true, Kind::Float);
                        (fc.square().mean_dim(-1, true, Kind::Float) + 1e-5).sqrt()
                    }
                };
                let logits = (centred / scale * w + b).matmul(&wte.tr());
                let order = logits.argsort(1, true);
                for (i, e) in p.examples.iter().enumerate() {
                    let token = if t.spec.role == ANSWER {
                        e.gold
                    } else {
                        e.roles[&t.spec.role]
                    } as i64;
                    let row: Vec<i64> = Vec::try_from(&order.get(i as i64)).unwrap();
                    let rank = row.iter().position(|&id| id == token).unwrap() as f64;
                    assert_eq!(
                        t.values[[li, i]],
                        rank,
                        "{mode} {} layer {layer} example {i}",
                        t.spec
                    );
                }
                let expected_mrr = (0..p.examples.len())
                    .map(|i| 1.0 / (t.values[[li, i]] + 1.0))
                    .sum::<f64>()
                    / p.examples.len() as f64;
                assert!((t.mrr(layer).unwrap() - expected_mrr).abs() < 1e-12);
            }
        }
    }
    let clean = tch::no_grad(|| {
        ckpt.model
            .run(&tokens, &RunRequest::capture([HookPoint::ResidPost(2)]))
            .unwrap()
    });
    assert!(clean.cache[&HookPoint::ResidPost(2)].allclose(&states[3], 1e-4, 1e-4, false));
}

fn compare_sweeps(batched: &PatchResult, naive: &PatchResult) {
    assert_eq!(batched.cells.len(), naive.cells.len());
    for (b, n) in batched.baselines.iter().zip(&naive.baselines) {
        assert_eq!(b.alt, n.alt);
        assert_same(&b.clean, &n.clean, "clean");
        assert_same(&b.corrupted, &n.corrupted, "corrupted");
    }
    for (b, n) in batched.cells.iter().zip(&naive.cells) {
        assert_eq!(b.cell, n.cell);
        assert_same(&b.outcomes, &n.outcomes, &format!("{:?}", b.cell));
    }
}

#[test]
fn batched_sweep_equals_the_naive_loop() {
    let ds = composition();
    let ckpt = tiny_model(ds.vocab.len(), 5);
    let net = Net::new(&ckpt.model);
    let p = probe(&ds, &["h", "noise:r1+r2"], 5);
    let mut opts = SweepOptions {
        grid: CellGrid {
            components: all_components(),
            positions: vec![
                PositionChoice::Each,
                PositionChoice::Corrupted,
                PositionChoice::All,
            ],
            layers: None,
        },
        max_rows: 7,
        ..SweepOptions::default()
    };
    let batched = patch_sweep(&net, &p, &opts).unwrap();
    opts.mode = SweepMode::Naive;
    let naive = patch_sweep(&net, &p, &opts).unwrap();
    compare_sweeps(&batched, &naive);
    let heads = batched
        .cells
        .iter()
        .filter(|c| matches!(c.cell.component, Component::Head(_)))
        .count();
    // position sets: h → h, r1, r2, all; noise:r1+r2 → the same plus r1+r2
    assert_eq!(
        heads,
        2 * 3 * 4 * (4 + 5),
        "directions × layers × heads × position sets"
    );
    let moved = batched
        .cells
        .iter()
        .filter(|c| c.outcomes.rank != batched.baselines[0].clean.rank)
        .count();
    assert!(moved > 0, "some patches must change the prediction");

    opts.ln_mode = LnMode::CachedScale;
    opts.grid.components = vec![ComponentKind::Resid, ComponentKind::Heads];
    let naive = patch_sweep(&net, &p, &opts).unwrap();
    opts.mode = SweepMode::Batched;
    let batched = patch_sweep(&net, &p, &opts).unwrap();
    compare_sweeps(&batched, &naive);
}

#[test]
fn comparison_targets_corruptions_and_sweep() {
    let ds = comparison();
    let ckpt = tiny_model(ds.vocab.len(), 6);
    let net = Net::new(&ckpt.model);
    let p = probe(&ds, &["a", "e1", "e2"], 12);
    assert_eq!(p.positions, vec!["a", "q", "e1", "mask", "e2"]);
    let names: Vec<String> = default_targets(&p)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        names,
        [
            "v1@e1",
            "v2@e2",
            "label0@a",
            "label1@a",
            "label2@a",
            "labels@a",
            "answer@last"
        ]
    );
    for e in &p.examples {
        assert!([e.roles["label0"], e.roles["label1"], e.roles["label2"]].contains(&e.gold));
        assert_eq!(e.corruptions["e1"].positions, vec![2, 3]);
        assert_eq!(e.corruptions["a"].positions, vec![0, 1]);
    }
    let lens = logit_lens(
        &net,
        &p,
        &default_targets(&p),
        &lens_opts(LnMode::Recompute, 64),
    )
    .unwrap();
    let rows = lens.rows(9);
    assert!(rows
        .iter()
        .any(|r| r.target == "labels" && r.metric == "recall3" && (0.0..=1.0).contains(&r.value)));
    let labels = lens.get("labels", "a").unwrap();
    for (li, row) in labels.values.rows().into_iter().enumerate() {
        for (i, &recall) in row.iter().enumerate() {
            let in_top3 = ["label0", "label1", "label2"]
                .iter()
                .filter(|r| lens.get(r, "a").unwrap().values[[li, i]] < 3.0)
                .count();
            assert_eq!(recall, in_top3 as f64 / 3.0, "layer row {li} example {i}");
        }
    }
    let opts = SweepOptions {
        grid: CellGrid {
            positions: vec![PositionChoice::Corrupted],
            ..CellGrid::default()
        },
        directions: vec![Direction::Noising],
        ..SweepOptions::default()
    };
    let r = patch_sweep(&net, &p, &opts).unwrap();
    let cells: Vec<String> = r
        .cells
        .iter()
        .filter(|c| c.cell.layer == 0)
        .map(|c| format!("{}:{}", c.cell.corruption, c.cell.position))
        .collect();
    assert_eq!(cells, ["a:a+q", "e1:e1+mask", "e2:e2"]);
    let csv_rows = r.rows(9);
    assert!(csv_rows
        .iter()
        .all(|row| row.step == 9 && row.direction == "noising"));
}

#[test]
fn three_hops_and_complex_tasks_have_their_targets_and_corruptions() {
    let spec = TaskSpec::Composition(CompositionParams {
        entities: 30,
        relations: 6,
        out_degree: 3,
        hops: 3,
        phi: 2.0,
        test_size: 20,
        ..CompositionParams::default()
    });
    let ds = Dataset::generate(&spec, 1).unwrap();
    let p = default_sample(&ds, "train_inferred", 10);
    assert_eq!(p.positions, ["h", "r1", "r2", "r3"]);
    let names: Vec<String> = default_targets(&p)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(names, ["b1@r1", "b2@r2", "r3@r3", "answer@last"]);
    let ckpt = tiny_model(ds.vocab.len(), 12);
    let net = Net::new(&ckpt.model);
    let opts = SweepOptions {
        grid: CellGrid {
            positions: vec![PositionChoice::Corrupted],
            ..CellGrid::default()
        },
        ..SweepOptions::default()
    };
    let r = patch_sweep(&net, &p, &opts).unwrap();
    let corruptions: Vec<&str> = r.baselines.iter().map(|b| b.corruption.as_str()).collect();
    assert_eq!(corruptions, ["h", "r1", "r2", "r3"]);

    let spec = TaskSpec::Complex(tasks::ComplexParams {
        entities: 30,
        attributes: 3,
        values: 6,
        train_fraction: 0.3,
        test_size: 20,
        hard_per_label: 2,
        ..tasks::ComplexParams::default()
    });
    let ds = Dataset::generate(&spec, 2).unwrap();
    let p = default_sample(&ds, "train_inferred_topleft", 10);
    assert_eq!(p.positions, ["a", "q", "e1", "mask", "e2", "q_end", "open"]);
    let ckpt = tiny_model(ds.vocab.len(), 13);
    let net = Net::new(&ckpt.model);
    let lens = logit_lens(
        &net,
        &p,
        &default_targets(&p),
        &lens_opts(LnMode::Recompute, 64),
    )
    .unwrap();
    assert!(lens.get("v1", "e1").is_some() && lens.get(ANSWER, "open").is_some());
    assert!(patch_sweep(&net, &p, &opts).is_ok());
}

#[test]
fn attribution_is_exact_where_the_metric_is_linear() {
    let ds = composition();
    let ckpt = tiny_model(ds.vocab.len(), 7);
    let net = Net::new(&ckpt.model);
    let p = probe(&ds, &["r1", "noise:h"], 10);
    for direction in [Direction::Denoising, Direction::Noising] {
        let opts = AttributionOptions {
            direction,
            grid: CellGrid {
                components: vec![ComponentKind::Resid],
                positions: vec![PositionChoice::Each],
                layers: Some(vec![net.n_layer()]),
            },
            ln_mode: LnMode::CachedScale,
            max_rows: 4,
        };
        let r = attribution_patching(&net, &p, &opts).unwrap();
        assert_eq!(r.cells.len(), 2 * 3);
        for c in &r.cells {
            for (x, y) in c.exact.iter().zip(&c.attribution) {
                assert!(
                    (x - y).abs() < 1e-3 * (1.0 + x.abs()),
                    "{:?}: exact {x} vs attribution {y}",
                    c.cell
                );
            }
            if c.cell.position != "r2" {
                assert!(
                    c.exact.iter().all(|x| x.abs() < 1e-5),
                    "only the answer position matters at layer L"
                );
            }
        }
        assert!(r
            .cells
            .iter()
            .any(|c| c.exact.iter().any(|x| x.abs() > 1e-2)));
    }
}

#[test]
fn attribution_over_the_whole_grid_reports_agreement() {
    let ds = composition();
    let ckpt = tiny_model(ds.vocab.len(), 8);
    let net = Net::new(&ckpt.model);
    let p = probe(&ds, &["h", "r2"], 10);
    let r = attribution_patching(&net, &p, &AttributionOptions::default()).unwrap();
    // 2 corruptions × (resid 4 layers + attn/mlp 3 layers each + heads 3 layers × 4) × 3 positions
    assert_eq!(r.cells.len(), 2 * (4 + 3 + 3 + 12) * 3);
    let agreements = r.agreements();
    let all = &agreements["all"];
    assert_eq!(all.cells, r.cells.len());
    assert!(all.spearman.unwrap() > 0.3, "{all:?}");
    let rows = r.rows(5);
    assert_eq!(
        rows.iter()
            .filter(|row| row.method.as_deref() == Some("exact") && row.metric == "logit_diff_delta")
            .count(),
        r.cells.len()
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let ds = composition();
    let spec = |split: &str| SampleSpec {
        split: split.into(),
        size: Some(5),
        seed: 0,
        indices: None,
    };
    let err = PromptSample::build(&ds, &spec("nope"), &[]).unwrap_err();
    assert!(matches!(err, InterpError::UnknownSplit { .. }), "{err}");
    let err =
        PromptSample::build(&ds, &spec("train_inferred"), &["e1".parse().unwrap()]).unwrap_err();
    assert!(matches!(err, InterpError::UnknownRole { .. }), "{err}");
    assert!(err.to_string().contains("h, r1, r2"), "{err}");
    let err = PromptSample::build(&ds, &spec("train_inferred"), &["noise:e9".parse().unwrap()])
        .unwrap_err();
    assert!(matches!(err, InterpError::UnknownPosition { .. }), "{err}");
    assert!("noise:".parse::<CorruptionSpec>().is_err());
    assert!("b1".parse::<TargetSpec>().is_err());

    let p = probe(&ds, &[], 5);
    let ckpt = tiny_model(ds.vocab.len(), 9);
    let net = Net::new(&ckpt.model);
    let bad_role = vec!["zz@r1".parse::<TargetSpec>().unwrap()];
    let err = logit_lens(&net, &p, &bad_role, &lens_opts(LnMode::Recompute, 8)).unwrap_err();
    assert!(matches!(err, InterpError::UnknownRole { .. }), "{err}");
    let bad_pos = vec!["b1@e2".parse::<TargetSpec>().unwrap()];
    let err = logit_lens(&net, &p, &bad_pos, &lens_opts(LnMode::Recompute, 8)).unwrap_err();
    assert!(matches!(err, InterpError::UnknownPosition { .. }), "{err}");
    let err = logit_lens(
        &net,
        &p,
        &default_targets(&p),
        &LensOptions {
            layers: Some(&[4]),
            ..lens_opts(LnMode::Recompute, 8)
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, InterpError::LayerOutOfRange { layer: 4, max: 3 }),
        "{err}"
    );
    let opts = SweepOptions {
        grid: CellGrid {
            layers: Some(vec![9]),
            ..CellGrid::default()
        },
        ..SweepOptions::default()
    };
    let p2 = probe(&ds, &["h"], 5);
    assert!(matches!(
        patch_sweep(&net, &p2, &opts),
        Err(InterpError::LayerOutOfRange { .. })
    ));

    for size in [ds.vocab.len() - 3, ds.vocab.len() + 3] {
        let other = tiny_model(size, 9);
        let err = interp::load::check_compatible(&other, &ds, 3).unwrap_err();
        assert!(matches!(err, InterpError::VocabMismatch { .. }), "{err}");
    }
    let err = interp::load::check_compatible(&ckpt, &ds, 9).unwrap_err();
    assert!(matches!(err, InterpError::ContextTooShort { .. }), "{err}");

    let empty = tempdir("empty-run");
    let err = interp::load::list_checkpoints(&empty).unwrap_err();
    assert!(matches!(err, InterpError::NoCheckpoints(_)), "{err}");
    let err =
        interp::load::resolve_data_dir(&empty.join("step-1/model.safetensors"), None).unwrap_err();
    assert!(matches!(err, InterpError::NoDataDir { .. }), "{err}");
    std::fs::remove_dir_all(&empty).unwrap();
}

fn write_run(run: &Path, ds: &Dataset, data_dir: &Path) {
    ds.write(data_dir).unwrap();
    for (i, step) in [10u64, 20, 30].iter().enumerate() {
        let ckpt = tiny_model(ds.vocab.len(), 20 + i as i64);
        let dir = run.join(format!("step-{step}"));
        std::fs::create_dir_all(&dir).unwrap();
        ckpt.save_to(dir.join("model.safetensors")).unwrap();
    }
    std::fs::write(
        run.join("config.json"),
        serde_json::json!({ "data_dir": data_dir }).to_string(),
    )
    .unwrap();
    std::fs::write(
        run.join("metrics.csv"),
        "step,epoch,train_inferred_acc\n10,0,0.5\n15,0,0.96\n20,1,0.97\n30,2,0.98\n",
    )
    .unwrap();
}

#[test]
fn trace_over_a_run_skips_done_checkpoints() {
    let ds = composition();
    let root = tempdir("trace");
    let run = root.join("run");
    write_run(&run, &ds, &root.join("data"));
    let out = root.join("out");
    let opts = interp::TraceOptions {
        sample: SampleSpec {
            split: "train_inferred".into(),
            size: Some(8),
            seed: 1,
            indices: None,
        },
        progress: false,
        ..interp::TraceOptions::default()
    };
    let s = interp::trace(&run, &out, &opts).unwrap();
    assert_eq!(s.steps, vec![10, 20, 30]);
    assert_eq!(s.computed_steps, vec![10, 20, 30]);
    assert_eq!(s.saturation.step, 20);
    assert_eq!(s.saturation.threshold, Some(0.95));
    assert_eq!(s.last_step, 30);
    assert_eq!(s.key_layer, 2);
    assert!(s
        .lens
        .iter()
        .any(|k| k.target == "b1" && k.metric == "mrr" && k.values.len() == 3));
    for f in [
        "examples.jsonl",
        "lens.csv",
        "patch.csv",
        "state_effect.csv",
        "attention.csv",
        "circuit_change.csv",
        "trace.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let attention: Vec<interp::output::AttentionRow> =
        interp::output::read_csv(&out.join("attention.csv")).unwrap();
    let steps: std::collections::BTreeSet<u64> = attention.iter().map(|r| r.step).collect();
    assert_eq!(steps.into_iter().collect::<Vec<_>>(), vec![10, 20, 30]);
    assert!(attention
        .iter()
        .any(|r| r.step == 30 && r.example == "mean"));
    let change: Vec<interp::output::CircuitChangeRow> =
        interp::output::read_csv(&out.join("circuit_change.csv")).unwrap();
    assert_eq!(change.len(), 3 * 4, "three corruptions × layers 0..=3");
    assert!(change
        .iter()
        .all(|r| (r.delta - (r.end - r.start)).abs() < 1e-12));
    let lens: Vec<interp::output::LensRow> =
        interp::output::read_csv(&out.join("lens.csv")).unwrap();
    let steps: std::collections::BTreeSet<u64> = lens.iter().map(|r| r.step).collect();
    assert_eq!(steps.into_iter().collect::<Vec<_>>(), vec![10, 20, 30]);

    let again = interp::trace(&run, &out, &opts).unwrap();
    assert!(again.computed_steps.is_empty());
    let lens_again: Vec<interp::output::LensRow> =
        interp::output::read_csv(&out.join("lens.csv")).unwrap();
    assert_eq!(lens, lens_again);
    let only = interp::TraceOptions {
        steps: Some(vec![10]),
        ..opts.clone()
    };
    let s = interp::trace(&run, &out, &only).unwrap();
    assert_eq!(
        s.steps,
        vec![10, 20, 30],
        "saturation and last checkpoints are always traced"
    );
    let bad = interp::TraceOptions {
        steps: Some(vec![11]),
        ..opts
    };
    assert!(matches!(
        interp::trace(&run, &out, &bad),
        Err(InterpError::UnknownStep { .. })
    ));
    std::fs::remove_dir_all(&root).unwrap();
}

/// The corrupted run computed from the first corrupted position on (against the clean run's keys
/// and values) equals the full corrupted run: every residual state and the answer logits, for a
/// token corruption and a noise corruption, in chunks; a corruption of position 0 runs in full.
#[test]
fn corrupted_run_from_the_first_changed_position_equals_the_full_run() {
    use interp::corruption::{noise_scale, CorruptionInputs};
    use interp::net::Want;
    use interp::states::States;
    let ds = composition();
    let ckpt = tiny_model(ds.vocab.len(), 8);
    let net = Net::new(&ckpt.model);
    let p = probe(&ds, &["r2", "noise:r1+r2", "h"], 9);
    let nu = noise_scale(&net, &p);
    let ap = p.answer_pos;
    tch::no_grad(|| {
        for name in ["r2", "noise:r1+r2", "h"] {
            let ci = CorruptionInputs::new(&net, &p, name, nu).unwrap();
            let clean = States::compute(&net, &ci.clean, None, Want::default(), ap, 4).unwrap();
            let full = States::compute(
                &net,
                &ci.corrupted,
                ci.noise.as_ref(),
                Want::default(),
                ap,
                4,
            )
            .unwrap();
            let fast = ci
                .corrupted_states(&net, &clean, Want::default(), ap, 4)
                .unwrap();
            assert_eq!(fast.resid.len(), full.resid.len());
            for (l, (a, b)) in fast.resid.iter().zip(&full.resid).enumerate() {
                assert!(a.allclose(b, 1e-5, 1e-5, false), "{name}: state {l}");
            }
            assert!(
                fast.logits.allclose(&full.logits, 1e-4, 1e-4, false),
                "{name}: logits"
            );
            let first = *ci.positions.iter().min().unwrap() as i64;
            let before = |s: &States| s.resid[2].narrow(1, 0, first);
            assert!(
                before(&fast).equal(&before(&clean)),
                "{name}: states before the corruption are the clean run's"
            );
        }
    });
}

#[test]
fn tuned_lens_with_identity_translators_is_the_logit_lens_and_training_lowers_kl() {
    use interp::tuned_lens::{train_tuned_lens, TunedLens, TunedLensOptions};
    let ds = composition();
    let ckpt = tiny_model(ds.vocab.len(), 4);
    let net = Net::new(&ckpt.model);
    let p = probe(&ds, &[], 30);
    let targets = default_targets(&p);
    let identity = TunedLens::identity(net.n_layer(), net.d_model(), net.device());
    for mode in [LnMode::Recompute, LnMode::CachedScale] {
        let plain = logit_lens(&net, &p, &targets, &lens_opts(mode, 16)).unwrap();
        let tuned = logit_lens(
            &net,
            &p,
            &targets,
            &LensOptions {
                tuned: Some(&identity),
                ..lens_opts(mode, 16)
            },
        )
        .unwrap();
        assert_eq!(plain.rows(0), tuned.rows(0), "{mode:?}");
    }

    let tokens =
        interp::states::tokens_tensor(p.examples.iter().map(|e| e.tokens.as_slice()), net.device());
    let opts = TunedLensOptions {
        steps: 150,
        lr: 3e-3,
        batch: 64,
        seed: 1,
    };
    let (lens, report) = train_tuned_lens(&net, &tokens, &opts).unwrap();
    assert_eq!(report.kl_before.len(), net.n_layer());
    for (l, (before, after)) in report.kl_before.iter().zip(&report.kl_after).enumerate() {
        assert!(after < before, "layer {l}: KL {before} → {after}");
    }
    let dir = tempdir("tuned-lens");
    let path = dir.join("tuned_lens.safetensors");
    lens.save(&path).unwrap();
    let back = TunedLens::load(&path, net.n_layer(), net.d_model(), net.device()).unwrap();
    let x = Tensor::randn([5, net.d_model()], (tch::Kind::Float, net.device()));
    for l in 0..=net.n_layer() {
        assert_eq!(lens.translate(l, &x), back.translate(l, &x), "layer {l}");
    }
    let err = TunedLens::load(&path, net.n_layer() + 1, net.d_model(), net.device());
    assert!(err.is_err(), "a lens for another depth must be refused");
    let bad = TunedLensOptions { steps: 0, ..opts };
    assert!(train_tuned_lens(&net, &tokens, &bad).is_err());
}
