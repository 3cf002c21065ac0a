//! The token-level analysis core against explicit tensor code on a tiny random model: patching
//! against one unbatched forward per target, the lens against the model's output, attribution
//! against gradients taken through `run_from`, DLA against the logit difference, the metrics
//! against hand-computed values, and prompt files.

use common::{batch, tiny_model};
use interp::metric::{Metric, TokenSets};
use interp::tokens::prompts::{batch_of, read_prompts};
use interp::tokens::{
    attribute, dla, head_targets, lens, lens_readings, patch, resid_targets, Direction,
    LensOptions, LensReading, PatchOptions, PatchTarget, PromptBatch,
};
use interp::{LnMode, Net, SweepMode};
use model::{Edit, HookPoint, Intervention, RunRequest};
use std::sync::Arc;

mod common;
use tch::{Kind, Tensor};

/// Options of a batched patch in `direction` with forwards of at most `max_rows` rows.
fn opts(direction: Direction, max_rows: usize) -> PatchOptions {
    PatchOptions {
        max_rows,
        ..PatchOptions::new(direction)
    }
}

fn metrics() -> Vec<Metric> {
    vec![
        Metric::LogitDiff,
        Metric::Prob,
        Metric::Rank,
        Metric::ReciprocalRank,
        Metric::KlToClean,
    ]
}

/// Per-row metric of one unbatched forward of row `r` of `tokens` with `ivs`, read at the row's
/// answer position.
fn reference_run(
    net: &Net,
    batch: &PromptBatch,
    tokens: &Tensor,
    r: i64,
    ivs: Vec<Intervention>,
    metric: &Metric,
) -> f64 {
    let req = RunRequest {
        interventions: ivs,
        ..RunRequest::default()
    };
    let at = batch.answer_pos[r as usize];
    let logits = net
        .gpt
        .run(&tokens.narrow(0, r, 1), &req)
        .unwrap()
        .logits
        .select(1, at);
    let clean = net
        .gpt
        .run(&batch.clean.narrow(0, r, 1), &RunRequest::default())
        .unwrap()
        .logits
        .select(1, at);
    let sets = batch.sets.narrow(r, 1);
    metric
        .per_row(&logits, &sets, Some(&clean))
        .unwrap()
        .double_value(&[0])
}

/// The replacement of target `t`'s activation in row `r` by the source run's, as one
/// intervention of a full forward.
fn reference_intervention(
    src: &std::collections::BTreeMap<HookPoint, Tensor>,
    t: &PatchTarget,
    r: i64,
) -> Intervention {
    let pos = Tensor::from_slice(&t.positions);
    let pattern = matches!(t.hook, HookPoint::Pattern(_));
    let part = src[&t.hook]
        .narrow(0, r, 1)
        .index_select(if pattern { 2 } else { 1 }, &pos);
    let mut iv = Intervention::new(
        t.hook,
        Edit::Replace(match t.head {
            Some(h) => part.narrow(if pattern { 1 } else { 2 }, h, 1),
            None => part,
        }),
    )
    .positions(t.positions.clone());
    if let Some(h) = t.head {
        iv = iv.heads(vec![h]);
    }
    iv
}

/// Targets of every path of the patching engine: residual states (suffix path, or patched
/// inputs at per-row answer positions), the final state, heads, a pattern, an MLP output and
/// the token embeddings (a run from the tokens).
fn engine_targets() -> Vec<PatchTarget> {
    let mut targets = resid_targets(2, &[0, 1, 2, 3]);
    targets.extend(head_targets(2, 2, &[1, 3]));
    let one = |hook, positions: Vec<i64>, head| PatchTarget {
        hook,
        positions,
        head,
    };
    targets.push(one(HookPoint::Pattern(1), vec![3], Some(1)));
    targets.push(one(HookPoint::MlpOut(0), vec![1, 2], None));
    targets.push(one(HookPoint::ResidPost(1), vec![1, 2, 3], None));
    targets.push(one(HookPoint::Embed, vec![1], None));
    targets
}

#[test]
fn batched_patching_equals_one_forward_per_target_and_prompt() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let shared = batch();
    let mut per_row = batch();
    per_row.answer_pos = vec![3, 2, 1];
    let targets = engine_targets();
    for batch in [shared, per_row] {
        for metric in metrics() {
            for direction in [Direction::Noising, Direction::Denoising] {
                let got = tch::no_grad(|| {
                    patch(&net, &batch, &targets, &metric, &opts(direction, 7)).unwrap()
                });
                let (base, source) = batch.base_and_source(direction, "test").unwrap();
                let src = tch::no_grad(|| {
                    let mut hooks = HookPoint::all(2);
                    hooks.push(HookPoint::Embed);
                    net.gpt
                        .run(source, &RunRequest::capture(hooks))
                        .unwrap()
                        .cache
                });
                for (i, t) in targets.iter().enumerate() {
                    for r in 0..3 {
                        let iv = reference_intervention(&src, t, r);
                        let want = tch::no_grad(|| {
                            reference_run(&net, &batch, base, r, vec![iv], &metric)
                        });
                        let have = got.values[[i, r as usize]];
                        let at = &batch.answer_pos;
                        assert!(
                            (have - want).abs() < 1e-4,
                            "{metric} {direction} {t} row {r} (answer at {at:?}): batched {have} vs reference {want}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn cached_scale_patching_agrees_with_its_naive_loop() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let mut batch = batch();
    batch.answer_pos = vec![3, 2, 1];
    let targets = engine_targets();
    for direction in [Direction::Noising, Direction::Denoising] {
        let cached = PatchOptions {
            ln_mode: LnMode::CachedScale,
            ..opts(direction, 5)
        };
        let naive = PatchOptions {
            mode: SweepMode::Naive,
            ..cached.clone()
        };
        let metric = Metric::LogitDiff;
        let batched = tch::no_grad(|| patch(&net, &batch, &targets, &metric, &cached).unwrap());
        let reference = tch::no_grad(|| patch(&net, &batch, &targets, &metric, &naive).unwrap());
        let off = (&batched.values - &reference.values)
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(off < 1e-4, "{direction}: batched and naive differ by {off}");
        let recomputed = patch(&net, &batch, &targets, &metric, &opts(direction, 5)).unwrap();
        let moved = (&batched.values - &recomputed.values)
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(
            moved > 1e-4,
            "{direction}: the cached scale changes the readout"
        );
    }
}

#[test]
fn patch_targets_outside_the_prompts_or_the_model_are_errors() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let batch = batch();
    let target = |hook, positions: Vec<i64>, head| PatchTarget {
        hook,
        positions,
        head,
    };
    for (bad, why) in [
        (
            target(HookPoint::ResidPre(1), vec![4], None),
            "positions must be in 0..4",
        ),
        (
            target(HookPoint::ResidPre(1), vec![], None),
            "positions must be in 0..4",
        ),
        (target(HookPoint::Z(2), vec![1], Some(0)), "layers 0..2"),
        (target(HookPoint::Z(1), vec![1], Some(2)), "heads 0..2"),
        (target(HookPoint::MlpOut(0), vec![1], Some(0)), "no heads"),
    ] {
        let err = patch(
            &net,
            &batch,
            &[bad],
            &Metric::LogitDiff,
            &opts(Direction::Noising, 8),
        )
        .expect_err("a bad target is refused");
        assert!(err.to_string().contains(why), "{err}");
    }
}

#[test]
fn patching_everything_at_the_embeddings_gives_the_source_run() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let batch = batch();
    let all = PatchTarget {
        hook: HookPoint::ResidPre(0),
        positions: vec![0, 1, 2, 3],
        head: None,
    };
    let unchanged = PatchTarget {
        hook: HookPoint::ResidPre(0),
        positions: vec![0, 3],
        head: None,
    };
    let targets = [all, unchanged];
    let noised = patch(
        &net,
        &batch,
        &targets,
        &Metric::LogitDiff,
        &opts(Direction::Noising, 64),
    )
    .unwrap();
    let denoised = patch(
        &net,
        &batch,
        &targets,
        &Metric::LogitDiff,
        &opts(Direction::Denoising, 64),
    )
    .unwrap();
    for r in 0..3 {
        assert!(
            (noised.values[[0, r]] - noised.corrupted[r]).abs() < 1e-5,
            "noising all positions = corrupted run"
        );
        assert!(
            (denoised.values[[0, r]] - denoised.clean[r]).abs() < 1e-5,
            "denoising all positions = clean run"
        );
        assert!(
            (noised.values[[1, r]] - noised.clean[r]).abs() < 1e-5,
            "positions the corruption leaves alone change nothing"
        );
    }
    let restored = patch(
        &net,
        &batch,
        &targets,
        &Metric::Restoration(Box::new(Metric::LogitDiff)),
        &opts(Direction::Denoising, 64),
    )
    .unwrap();
    let summary = restored.summary();
    assert!(
        (summary[0].1 - 1.0).abs() < 1e-4,
        "full restoration is 1, got {}",
        summary[0].1
    );
    assert!(
        summary[1].1.abs() < 1e-4,
        "no restoration is 0, got {}",
        summary[1].1
    );
}

#[test]
fn lens_at_the_last_layer_is_the_model_and_kl_to_it_vanishes() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let batch = batch();
    for metric in metrics() {
        let values = lens(&net, &batch, &metric, LnMode::Recompute, None).unwrap();
        assert_eq!(values.layers, [0, 1, 2]);
        let logits = net
            .gpt
            .run(&batch.clean, &RunRequest::default())
            .unwrap()
            .logits
            .select(1, 3);
        let want = metric.per_row(&logits, &batch.sets, Some(&logits)).unwrap();
        for r in 0..3 {
            let got = values.values[[2, r]];
            assert!(
                (got - want.double_value(&[r as i64])).abs() < 1e-4,
                "{metric} row {r}"
            );
        }
    }
    let kl = lens(
        &net,
        &batch,
        &Metric::KlToClean,
        LnMode::Recompute,
        Some(&[0, 2]),
    )
    .unwrap();
    assert!(
        kl.values[[1, 0]].abs() < 1e-6 && kl.values[[0, 0]] > 1e-3,
        "KL is 0 at the output only"
    );
}

#[test]
fn attribution_is_the_gradient_through_run_from_times_the_difference() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let batch = batch();
    let metric = Metric::LogitDiff;
    let got = attribute(
        &net,
        &batch,
        &[HookPoint::ResidPre(1)],
        &metric,
        &opts(Direction::Noising, 2),
    )
    .unwrap();
    let scores = &got.scores[0];
    assert_eq!(scores.size(), [3, 4]);
    let capture = RunRequest::capture([HookPoint::ResidPre(1)]);
    let base = net.gpt.run(&batch.clean, &capture).unwrap().cache[&HookPoint::ResidPre(1)].detach();
    let src = net
        .gpt
        .run(batch.corrupted.as_ref().unwrap(), &capture)
        .unwrap()
        .cache[&HookPoint::ResidPre(1)]
        .detach();
    let x = base.copy().set_requires_grad(true);
    let logits = net
        .gpt
        .run_from(1, &x, &RunRequest::default())
        .unwrap()
        .logits
        .select(1, 3);
    let total = metric
        .per_row(&logits, &batch.sets, None)
        .unwrap()
        .sum(Kind::Double);
    let grad = Tensor::run_backward(&[total], &[&x], false, false)
        .pop()
        .unwrap();
    let want = (grad * (src - base)).sum_dim_intlist(-1, false, Kind::Double);
    let diff = (scores - want).abs().max().double_value(&[]);
    assert!(
        diff < 1e-6,
        "attribution off the explicit gradient by {diff}"
    );
    assert!(
        scores.double_value(&[0, 0]).abs() < 1e-7,
        "position 0 is never corrupted"
    );
    let z = attribute(
        &net,
        &batch,
        &[HookPoint::Z(0), HookPoint::Pattern(1)],
        &metric,
        &opts(Direction::Denoising, 64),
    )
    .unwrap();
    assert_eq!(z.scores[0].size(), [3, 4, 2]);
    assert_eq!(z.summary().len(), 4 * 2 + 4 * 2);
    // resid_pre[0] = hook_embed + hook_pos_embed, and both runs share the position embeddings.
    let inputs = [
        HookPoint::ResidPre(0),
        HookPoint::Embed,
        HookPoint::PosEmbed,
    ];
    let noising = opts(Direction::Noising, 2);
    let at_input = attribute(&net, &batch, &inputs, &metric, &noising).unwrap();
    let resid0 = &at_input.scores[0];
    assert!(
        resid0.abs().max().double_value(&[]) > 1e-6,
        "the corrupted tokens matter"
    );
    let embed_off = (&at_input.scores[1] - resid0).abs().max().double_value(&[]);
    assert!(
        embed_off < 1e-6,
        "hook_embed's scores are resid_pre[0]'s (off by {embed_off})"
    );
    let pos = at_input.scores[2].abs().max().double_value(&[]);
    assert!(pos == 0.0, "position embeddings never differ, got {pos}");
}

#[test]
fn dla_components_sum_to_the_logit_difference() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let batch = batch();
    let values = dla(&net, &batch, &Metric::LogitDiff, 2).unwrap();
    assert_eq!(values.components.len(), 2 + 2 * 2 + 1 + 2 * (2 + 1));
    assert_eq!(values.components[7].to_string(), "head.0.0");
    let logits = net
        .gpt
        .run(&batch.clean, &RunRequest::default())
        .unwrap()
        .logits
        .select(1, 3);
    let want = Metric::LogitDiff
        .per_row(&logits, &batch.sets, None)
        .unwrap();
    for r in 0..3 {
        let w = want.double_value(&[r as i64]);
        assert!(
            (values.logit_diff[r] - w).abs() < 1e-4,
            "row {r}: the model's logit difference {} not {w}",
            values.logit_diff[r]
        );
    }
    assert!(
        values.max_residual() < 1e-4,
        "parts miss the logit difference by {}",
        values.max_residual()
    );
    assert!(
        dla(&net, &batch, &Metric::Prob, 8).is_err(),
        "DLA refuses a non-linear metric"
    );
}

/// Prompts read at different positions (the gather path) get the values each gets alone (the
/// shared-position path).
#[test]
fn dla_at_per_row_positions_equals_each_prompt_alone() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let b = batch();
    let positions = vec![3, 1, 2];
    let mixed = PromptBatch::new(
        b.clean.shallow_clone(),
        None,
        Some(positions.clone()),
        b.sets.narrow(0, 3),
    )
    .unwrap();
    let together = dla(&net, &mixed, &Metric::LogitDiff, 8).unwrap();
    for (r, &p) in positions.iter().enumerate() {
        let one = PromptBatch::new(
            b.clean.narrow(0, r as i64, 1),
            None,
            Some(vec![p]),
            b.sets.narrow(r as i64, 1),
        )
        .unwrap();
        let alone = dla(&net, &one, &Metric::LogitDiff, 8).unwrap();
        for (a, t) in alone.values.row(0).iter().zip(together.values.row(r)) {
            assert!((a - t).abs() < 1e-9, "row {r}: {a} alone, {t} together");
        }
        let (a, t) = (alone.logit_diff[0], together.logit_diff[r]);
        assert!(
            (a - t).abs() < 1e-5,
            "row {r}: logit difference {a} alone, {t} together"
        );
    }
}

#[test]
fn built_in_metrics_match_hand_computed_values() {
    let logits = Tensor::from_slice(&[2.0f32, 1.0, 0.0, 1.0, 0.0, 3.0, 0.0, 3.0]).view([2, 4]);
    let sets = TokenSets::from_rows(&[vec![1, 3], vec![1]], &[vec![0], vec![2, 3]]).unwrap();
    let v = |m: Metric| {
        let t = m
            .per_row(&logits, &sets, Some(&logits.zeros_like()))
            .unwrap();
        [t.double_value(&[0]), t.double_value(&[1])]
    };
    assert_eq!(v(Metric::LogitDiff), [1.0 - 2.0, 3.0 - 1.5]);
    assert_eq!(
        v(Metric::Rank),
        [1.0, 0.0],
        "best-ranked answer, ties do not count"
    );
    assert_eq!(v(Metric::ReciprocalRank), [0.5, 1.0]);
    assert_eq!(v(Metric::RecallAtK(1))[0], 0.0, "token 0 alone is on top");
    assert_eq!(v(Metric::RecallAtK(3)), [1.0, 1.0]);
    assert_eq!(v(Metric::RecallAtK(4)), [1.0, 1.0]);
    assert!(Metric::RecallAtK(5).per_row(&logits, &sets, None).is_err());
    assert_eq!(
        "recall@3".parse::<Metric>().unwrap().to_string(),
        "recall_at_3"
    );
    assert!("recall@0".parse::<Metric>().is_err());
    let z0 = (2f64.exp() + 2.0 * 1f64.exp() + 1.0).ln();
    let p = v(Metric::Prob);
    assert!((p[0] - 2.0 * (1.0 - z0).exp()).abs() < 1e-6);
    let kl = v(Metric::KlToClean);
    assert!(
        kl[0] > 0.0 && kl[1] > 0.0,
        "KL to a uniform clean run is positive"
    );
    let margin = Metric::custom(
        "margin",
        Arc::new(|l: &Tensor, s: &TokenSets| {
            l.gather(1, &s.first_answer().unsqueeze(1), false)
                .squeeze_dim(1)
        }),
    );
    assert_eq!(v(margin.clone()), [1.0, 3.0]);
    assert_eq!(margin.to_string(), "margin");
    assert_eq!(
        "restoration".parse::<Metric>().unwrap().to_string(),
        "restoration_logit_diff"
    );
    assert!("nonsense".parse::<Metric>().is_err());
}

#[test]
fn prompt_files_read_strings_ids_sets_and_pad_shorter_prompts() {
    let dir = std::env::temp_dir().join(format!("grokscope-prompts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.jsonl");
    std::fs::write(&file, concat!(
        "{\"clean\": [\"a\", \"b\", \"c\"], \"corrupted\": \"x b c\", \"answer\": \"d\", \"alternative\": [\"x\", 2]}\n",
        "\n",
        "{\"clean\": [0, 1], \"corrupted\": [3, 1], \"answer\": [\"c\", \"d\"]}\n",
    )).unwrap();
    let vocab = ["a", "b", "c", "d", "x"];
    let lookup = |s: &str| vocab.iter().position(|v| *v == s).map(|i| i as i64);
    let prompts = read_prompts(&file, &lookup).unwrap();
    assert_eq!(prompts[0].corrupted, Some(vec![4, 1, 2]));
    assert_eq!(prompts[0].alternative, vec![4, 2]);
    assert_eq!(prompts[1].answer, vec![2, 3]);
    let batch = batch_of(&prompts).unwrap();
    assert_eq!(
        Vec::<i64>::try_from(batch.clean.view([-1])).unwrap(),
        [0, 1, 2, 0, 1, 1]
    );
    assert_eq!(batch.answer_pos, [2, 1]);
    for (line, why) in [
        ("{\"clean\": [\"a\"], \"answer\": \"zz\"}", "unknown token"),
        (
            "{\"clean\": [\"a\", \"b\"], \"corrupted\": [\"a\"], \"answer\": \"a\"}",
            "corrupted has 1 tokens",
        ),
        ("{\"clean\": [\"a\"]}", "no \"answer\""),
        (
            "{\"clean\": [\"a\"], \"answer\": \"a\", \"answer_pos\": 4}",
            "answer_pos",
        ),
        ("not json", "expected"),
    ] {
        std::fs::write(&file, line).unwrap();
        let err = read_prompts(&file, &lookup).unwrap_err().to_string();
        assert!(
            err.contains(why) && err.contains("p.jsonl:1"),
            "{line}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_alternatives_are_the_corrupted_runs_best_other_token() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let clean = Tensor::from_slice(&[1i64, 4, 7, 2, 3, 5, 8, 2]).view([2, 4]);
    let corrupted = Tensor::from_slice(&[1i64, 11, 7, 2, 3, 12, 8, 2]).view([2, 4]);
    let sets = TokenSets::from_rows(&[vec![10], vec![15]], &[vec![], vec![3]]).unwrap();
    let mut batch = PromptBatch::new(clean, Some(corrupted.shallow_clone()), None, sets).unwrap();
    assert_eq!(batch.fill_alternatives(&net).unwrap(), 1);
    let logits = net
        .gpt
        .run(&corrupted, &RunRequest::default())
        .unwrap()
        .logits
        .select(1, 3);
    let mut row = Vec::<f32>::try_from(logits.get(0)).unwrap();
    row[10] = f32::NEG_INFINITY;
    let best = row
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0 as i64;
    assert_eq!(batch.sets.alternative.int64_value(&[0, 0]), best);
    assert_eq!(
        batch.sets.alternative.int64_value(&[1, 0]),
        3,
        "given alternatives stay"
    );
    assert!(!batch.sets.lacks_alternatives());
}

/// Readings at several positions in one pass equal one lens call per position, and readings that
/// do not fit the prompts are refused.
#[test]
fn lens_readings_equal_one_lens_per_position_and_check_their_shape() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let b = batch();
    let reading = |p: i64| LensReading {
        positions: vec![p; 3],
        sets: b.sets.narrow(0, 3),
        metric: Metric::ReciprocalRank,
    };
    let opts = LensOptions {
        max_rows: 2,
        ..LensOptions::default()
    };
    let (layers, values) = lens_readings(&net, &b.clean, &[reading(1), reading(3)], &opts).unwrap();
    assert_eq!(layers, [0, 1, 2]);
    for (i, p) in [1i64, 3].into_iter().enumerate() {
        let one = PromptBatch::new(
            b.clean.shallow_clone(),
            None,
            Some(vec![p; 3]),
            b.sets.narrow(0, 3),
        )
        .unwrap();
        let alone = lens(&net, &one, &Metric::ReciprocalRank, LnMode::Recompute, None).unwrap();
        for (a, t) in alone.values.iter().zip(values[i].iter()) {
            assert!(
                (a - t).abs() < 1e-6,
                "position {p}: {a} alone, {t} read together"
            );
        }
    }
    let short = LensReading {
        positions: vec![1; 2],
        ..reading(1)
    };
    assert!(lens_readings(&net, &b.clean, &[short], &opts).is_err());
    assert!(lens_readings(&net, &b.clean, &[reading(4)], &opts).is_err());
}
