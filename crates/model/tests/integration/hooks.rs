//! Hook names, hook invariants, interventions and request validation.

use crate::common::*;
use model::{Edit, HookPoint, Intervention, LogitPositions, ModelError, RunRequest};
use std::collections::BTreeSet;
use tch::{Kind, Tensor};

#[test]
fn hook_names_print_and_parse_as_transformer_lens() {
    let cases = [
        (HookPoint::Embed, "hook_embed"),
        (HookPoint::PosEmbed, "hook_pos_embed"),
        (HookPoint::ResidPre(0), "blocks.0.hook_resid_pre"),
        (HookPoint::ResidMid(1), "blocks.1.hook_resid_mid"),
        (HookPoint::ResidPost(2), "blocks.2.hook_resid_post"),
        (HookPoint::AttnOut(3), "blocks.3.hook_attn_out"),
        (HookPoint::MlpOut(4), "blocks.4.hook_mlp_out"),
        (HookPoint::Q(5), "blocks.5.attn.hook_q"),
        (HookPoint::K(6), "blocks.6.attn.hook_k"),
        (HookPoint::V(7), "blocks.7.attn.hook_v"),
        (HookPoint::Z(8), "blocks.8.attn.hook_z"),
        (HookPoint::AttnScores(9), "blocks.9.attn.hook_attn_scores"),
        (HookPoint::Pattern(10), "blocks.10.attn.hook_pattern"),
        (HookPoint::Result(11), "blocks.11.attn.hook_result"),
        (HookPoint::MlpPre(12), "blocks.12.mlp.hook_pre"),
        (HookPoint::MlpPost(13), "blocks.13.mlp.hook_post"),
        (HookPoint::Ln1Scale(14), "blocks.14.ln1.hook_scale"),
        (HookPoint::Ln2Scale(15), "blocks.15.ln2.hook_scale"),
        (HookPoint::LnFinalScale, "ln_final.hook_scale"),
    ];
    for (hook, name) in cases {
        assert_eq!(hook.to_string(), name);
        assert_eq!(name.parse::<HookPoint>().unwrap(), hook);
    }
    let all = HookPoint::all(3);
    assert_eq!(all.len(), 2 + 3 * 20 + 1);
    for hook in &all {
        assert_eq!(hook.to_string().parse::<HookPoint>().unwrap(), *hook);
    }
    let distinct: BTreeSet<HookPoint> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len());
}

#[test]
fn unknown_hook_names_are_clear_errors() {
    for name in [
        "blocks.0.hook_resid_nope",
        "blocks.x.hook_resid_pre",
        "hook_resid_pre",
        "blocks.1",
        "",
        "ln_final",
    ] {
        let err = name.parse::<HookPoint>().unwrap_err();
        assert!(
            matches!(err, ModelError::UnknownHook { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
    }
    let err = "blocks.0.attn.hook_qq"
        .parse::<HookPoint>()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attn.hook_q"),
        "the error lists the known hooks: {err}"
    );
}

#[test]
fn glob_patterns_select_hooks() {
    let posts = HookPoint::matching("blocks.*.hook_resid_post", 3).unwrap();
    assert_eq!(
        posts,
        vec![
            HookPoint::ResidPost(0),
            HookPoint::ResidPost(1),
            HookPoint::ResidPost(2)
        ]
    );
    let attn = HookPoint::matching("blocks.1.attn.hook_*", 3).unwrap();
    assert_eq!(attn.len(), 7);
    assert!(attn.iter().all(|h| h.layer() == Some(1)));
    assert_eq!(
        HookPoint::matching("*", 2).unwrap(),
        vec![HookPoint::Embed, HookPoint::PosEmbed]
    );
    assert!(model::glob_match(
        "blocks.*.ln?.hook_scale",
        "blocks.0.ln?.hook_scale"
    ));
    assert!(!model::glob_match(
        "blocks.*.hook_resid_post",
        "blocks.0.attn.hook_resid_post"
    ));
    assert!(HookPoint::matching("blocks.*.hook_nothing", 3).is_err());
}

#[test]
fn residual_stream_invariants_hold() {
    let ckpt = random_model(tiny_config(), 1);
    let n = ckpt.config.n_layer();
    let toks = tokens(3, 7, 50, 2);
    let out = ckpt.model.run(&toks, &capture_all(n)).unwrap();
    let c = &out.cache;
    assert_close(
        &(&c[&HookPoint::Embed] + &c[&HookPoint::PosEmbed]),
        &c[&HookPoint::ResidPre(0)],
        1e-6,
        "embed",
    );
    for l in 0..n {
        let (pre, mid, post) = (
            &c[&HookPoint::ResidPre(l)],
            &c[&HookPoint::ResidMid(l)],
            &c[&HookPoint::ResidPost(l)],
        );
        assert_close(
            &(pre + &c[&HookPoint::AttnOut(l)]),
            mid,
            1e-6,
            "resid_mid = resid_pre + attn_out",
        );
        assert_close(
            &(mid + &c[&HookPoint::MlpOut(l)]),
            post,
            1e-6,
            "resid_post = resid_mid + mlp_out",
        );
        if l + 1 < n {
            assert_exact(
                post,
                &c[&HookPoint::ResidPre(l + 1)],
                "resid_pre[l+1] = resid_post[l]",
            );
        }
    }
    let last = &c[&HookPoint::ResidPost(n - 1)];
    assert_exact(
        &ckpt.model.unembed(last),
        &out.logits,
        "unembed(ln_final(resid_post[L-1])) = logits",
    );
    assert_exact(
        &ckpt.model.hidden_t(&toks, false),
        last,
        "hidden_t = resid_post[L-1]",
    );
    assert_eq!(c[&HookPoint::Q(0)].size(), vec![3, 7, 4, 8]);
    assert_eq!(c[&HookPoint::Pattern(0)].size(), vec![3, 4, 7, 7]);
    assert_eq!(c[&HookPoint::Result(0)].size(), vec![3, 7, 4, 32]);
    assert_eq!(c[&HookPoint::MlpPre(0)].size(), vec![3, 7, 64]);
    assert_eq!(c[&HookPoint::Ln1Scale(0)].size(), vec![3, 7, 1]);
    assert_eq!(out.logits.size(), vec![3, 7, 50]);
}

#[test]
fn attention_hooks_are_consistent() {
    let ckpt = random_model(tiny_config(), 3);
    let toks = tokens(2, 6, 50, 4);
    let l = 1;
    let out = ckpt.model.run(&toks, &capture_all(3)).unwrap();
    let c = &out.cache;
    let pattern = &c[&HookPoint::Pattern(l)];
    let row_sums = pattern.sum_dim_intlist(-1, false, Kind::Float);
    assert_close(&row_sums, &row_sums.ones_like(), 1e-6, "rows sum to 1");
    assert_eq!(
        pattern.triu(1).abs().max().double_value(&[]),
        0.0,
        "causal: no attention to the future"
    );
    let scores = &c[&HookPoint::AttnScores(l)];
    assert_exact(
        &scores.softmax(-1, Kind::Float),
        pattern,
        "pattern = softmax(scores)",
    );
    let q = c[&HookPoint::Q(l)].transpose(1, 2);
    let k = c[&HookPoint::K(l)].transpose(1, 2);
    let expected = (q.matmul(&k.transpose(-2, -1)) / 8f64.sqrt()).tril(0);
    assert_close(
        &scores.tril(0),
        &expected,
        1e-5,
        "scores = q·k/sqrt(d_head)",
    );
    let z = pattern
        .matmul(&c[&HookPoint::V(l)].transpose(1, 2))
        .transpose(1, 2);
    assert_close(&z, &c[&HookPoint::Z(l)], 1e-6, "z = pattern · v");
    let x = &c[&HookPoint::ResidPre(l)];
    let centred = x - x.mean_dim(-1, true, Kind::Float);
    let scale = (centred.square().mean_dim(-1, true, Kind::Float) + 1e-5).sqrt();
    assert_close(&scale, &c[&HookPoint::Ln1Scale(l)], 1e-6, "ln1 scale");
}

#[test]
fn head_results_plus_bias_sum_to_attn_out() {
    let ckpt = random_model(tiny_config(), 5);
    let toks = tokens(2, 5, 50, 6);
    for l in 0..3 {
        let plain = ckpt
            .model
            .run(&toks, &RunRequest::capture([HookPoint::AttnOut(l)]))
            .unwrap();
        let heads = ckpt
            .model
            .run(&toks, &RunRequest::capture([HookPoint::Result(l)]))
            .unwrap();
        let bias = &ckpt.model.block_at(l).unwrap().attn.c_proj.bias;
        let summed =
            heads.cache[&HookPoint::Result(l)].sum_dim_intlist(2, false, Kind::Float) + bias;
        assert_close(
            &summed,
            &plain.cache[&HookPoint::AttnOut(l)],
            1e-5,
            "sum of head results + bias",
        );
    }
}

#[test]
fn capturing_changes_no_output() {
    let ckpt = random_model(tiny_config(), 7);
    let toks = tokens(4, 9, 50, 8);
    let plain = ckpt.model.run(&toks, &RunRequest::default()).unwrap();
    let all = ckpt.model.run(&toks, &capture_all(3)).unwrap();
    assert_exact(&plain.logits, &all.logits, "capture all hooks");
    assert!(plain.cache.is_empty());
    assert_eq!(all.cache.len(), HookPoint::all(3).len());
    assert_exact(
        &ckpt.model.forward_t(&toks, false),
        &plain.logits,
        "forward_t = run",
    );
    assert_exact(
        &ckpt.model.f_forward_t(&toks, false).unwrap(),
        &plain.logits,
        "f_forward_t = run",
    );
}

#[test]
fn replacing_an_activation_with_itself_changes_nothing() {
    let ckpt = random_model(tiny_config(), 9);
    let toks = tokens(3, 6, 50, 10);
    let clean = ckpt.model.run(&toks, &capture_all(3)).unwrap();
    for hook in HookPoint::all(3) {
        let value = clean.cache[&hook].copy();
        let req = RunRequest::intervene([Intervention::new(hook, Edit::Replace(value))]);
        let out = ckpt.model.run(&toks, &req).unwrap();
        assert_close(
            &out.logits,
            &clean.logits,
            1e-5,
            &format!("self-patch {hook}"),
        );
        let value = clean.cache[&hook].copy();
        let part = Intervention::new(hook, Edit::Replace(value.narrow(0, 1, 1))).rows([1]);
        let req = RunRequest::intervene([part]);
        let out = ckpt.model.run(&toks, &req).unwrap();
        assert_close(
            &out.logits,
            &clean.logits,
            1e-5,
            &format!("self-patch row 1 of {hook}"),
        );
    }
    let pre = clean.cache[&HookPoint::ResidPre(1)].copy();
    let iv = Intervention::new(HookPoint::ResidPre(1), Edit::Replace(pre.narrow(1, 2, 2)))
        .positions([2, 3]);
    let out = ckpt.model.run(&toks, &RunRequest::intervene([iv])).unwrap();
    assert_exact(
        &out.logits,
        &clean.logits,
        "self-patch of resid_pre at positions 2, 3",
    );
}

#[test]
fn an_intervention_on_one_row_leaves_the_others_untouched() {
    let ckpt = random_model(tiny_config(), 11);
    let toks = tokens(4, 6, 50, 12);
    let clean = ckpt.model.run(&toks, &RunRequest::default()).unwrap();
    let edits = [
        Intervention::new(HookPoint::ResidPre(1), Edit::Zero)
            .rows([2])
            .positions([1]),
        Intervention::new(HookPoint::Pattern(0), Edit::Scale(0.5))
            .rows([2])
            .heads([1, 3]),
        Intervention::new(
            HookPoint::Z(2),
            Edit::Add(Tensor::ones([1, 6, 1, 8], (Kind::Float, tch::Device::Cpu))),
        )
        .rows([2])
        .heads([0]),
        Intervention::new(HookPoint::MlpPost(1), Edit::Zero).rows([2]),
        Intervention::new(HookPoint::Ln2Scale(0), Edit::Scale(2.0)).rows([2]),
    ];
    for iv in edits {
        let name = iv.hook.to_string();
        let out = ckpt.model.run(&toks, &RunRequest::intervene([iv])).unwrap();
        for row in [0, 1, 3] {
            assert_exact(
                &out.logits.get(row),
                &clean.logits.get(row),
                &format!("{name}: row {row}"),
            );
        }
        assert!(
            max_diff(&out.logits.get(2), &clean.logits.get(2)) > 1e-4,
            "{name}: row 2 changed"
        );
    }
}

#[test]
fn rows_of_one_batch_carry_different_interventions() {
    let ckpt = random_model(tiny_config(), 13);
    let clean = tokens(1, 5, 50, 14);
    let corrupt = tokens(1, 5, 50, 15);
    let corrupt_run = ckpt.model.run(&corrupt, &capture_all(3)).unwrap();
    let patches = [(0usize, 0i64), (1, 2), (2, 4), (1, 0)];
    let batch = clean.repeat([patches.len() as i64, 1]);
    let interventions = patches
        .iter()
        .enumerate()
        .map(|(row, &(layer, pos))| {
            let value = corrupt_run.cache[&HookPoint::ResidPre(layer)].narrow(1, pos, 1);
            Intervention::new(HookPoint::ResidPre(layer), Edit::Replace(value))
                .rows([row as i64])
                .positions([pos])
        })
        .collect();
    let batched = ckpt
        .model
        .run(
            &batch,
            &RunRequest {
                interventions,
                ..Default::default()
            },
        )
        .unwrap();
    for (row, &(layer, pos)) in patches.iter().enumerate() {
        let value = corrupt_run.cache[&HookPoint::ResidPre(layer)].narrow(1, pos, 1);
        let iv =
            Intervention::new(HookPoint::ResidPre(layer), Edit::Replace(value)).positions([pos]);
        let single = ckpt
            .model
            .run(&clean, &RunRequest::intervene([iv]))
            .unwrap();
        assert_close(
            &batched.logits.narrow(0, row as i64, 1),
            &single.logits,
            1e-5,
            &format!("row {row}"),
        );
    }
}

#[test]
fn run_from_a_cached_residual_equals_the_full_run() {
    let ckpt = random_model(tiny_config(), 17);
    let toks = tokens(3, 8, 50, 18);
    let full = ckpt.model.run(&toks, &capture_all(3)).unwrap();
    for layer in 0..=3 {
        let start = if layer < 3 {
            &full.cache[&HookPoint::ResidPre(layer)]
        } else {
            &full.cache[&HookPoint::ResidPost(2)]
        };
        let req = RunRequest::capture(
            HookPoint::all(3)
                .into_iter()
                .filter(|h| h.layer().is_some_and(|l| l >= layer)),
        );
        let out = ckpt.model.run_from(layer, start, &req).unwrap();
        assert_exact(&out.logits, &full.logits, &format!("run_from({layer})"));
        for (hook, value) in &out.cache {
            assert_exact(
                value,
                &full.cache[hook],
                &format!("run_from({layer}) {hook}"),
            );
        }
    }
}

#[test]
fn edits_do_what_they_say() {
    let ckpt = random_model(tiny_config(), 19);
    let toks = tokens(2, 5, 50, 20);
    let hooks = [
        HookPoint::ResidPre(1),
        HookPoint::ResidMid(1),
        HookPoint::AttnOut(1),
        HookPoint::ResidPost(1),
    ];
    let run = |ivs: Vec<Intervention>| {
        ckpt.model
            .run(
                &toks,
                &RunRequest {
                    capture: hooks.into_iter().collect(),
                    interventions: ivs,
                    ..Default::default()
                },
            )
            .unwrap()
    };
    let zeroed = run(vec![Intervention::new(HookPoint::AttnOut(1), Edit::Zero)]);
    assert_exact(
        &zeroed.cache[&HookPoint::ResidMid(1)],
        &zeroed.cache[&HookPoint::ResidPre(1)],
        "zeroed attn_out",
    );
    let scaled = run(vec![Intervention::new(
        HookPoint::AttnOut(1),
        Edit::Scale(0.0),
    )]);
    assert_exact(&scaled.logits, &zeroed.logits, "scale 0 = zero");
    let clean = run(vec![]);
    let v = Tensor::randn([32], (Kind::Float, tch::Device::Cpu));
    let added = run(vec![Intervention::new(
        HookPoint::ResidPost(1),
        Edit::Add(v.shallow_clone()),
    )
    .positions([3])]);
    let delta = &added.cache[&HookPoint::ResidPost(1)] - &clean.cache[&HookPoint::ResidPost(1)];
    assert_close(
        &delta.select(1, 3),
        &v.expand([2, 32], false),
        1e-5,
        "added at position 3",
    );
    assert_eq!(
        delta.narrow(1, 0, 3).abs().max().double_value(&[]),
        0.0,
        "nothing added elsewhere"
    );
    let twice = run(vec![
        Intervention::new(HookPoint::AttnOut(1), Edit::Scale(2.0)),
        Intervention::new(HookPoint::AttnOut(1), Edit::Scale(0.5)),
    ]);
    assert_close(
        &twice.logits,
        &clean.logits,
        1e-5,
        "edits on one hook apply in order",
    );
    let head_z = ckpt
        .model
        .run(
            &toks,
            &RunRequest::intervene([Intervention::new(HookPoint::Z(0), Edit::Zero).heads([2])]),
        )
        .unwrap();
    let head_r = ckpt
        .model
        .run(
            &toks,
            &RunRequest::intervene(
                [Intervention::new(HookPoint::Result(0), Edit::Zero).heads([2])],
            ),
        )
        .unwrap();
    assert_close(
        &head_z.logits,
        &head_r.logits,
        1e-5,
        "zeroing a head's z = zeroing its result",
    );
}

#[test]
fn logit_positions_select_positions() {
    let ckpt = random_model(tiny_config(), 21);
    let toks = tokens(3, 6, 50, 22);
    let all = ckpt
        .model
        .run(&toks, &RunRequest::default())
        .unwrap()
        .logits;
    let at = RunRequest {
        logit_positions: LogitPositions::At(vec![4, 1]),
        ..Default::default()
    };
    let out = ckpt.model.run(&toks, &at).unwrap().logits;
    assert_eq!(out.size(), vec![3, 2, 50]);
    assert_close(&out.select(1, 0), &all.select(1, 4), 1e-6, "position 4");
    assert_close(&out.select(1, 1), &all.select(1, 1), 1e-6, "position 1");
    let per_row = RunRequest {
        logit_positions: LogitPositions::PerRow(vec![5, 0, 2]),
        ..Default::default()
    };
    let out = ckpt.model.run(&toks, &per_row).unwrap().logits;
    assert_eq!(out.size(), vec![3, 1, 50]);
    for (row, pos) in [(0, 5), (1, 0), (2, 2)] {
        assert_close(
            &out.get(row).get(0),
            &all.get(row).get(pos),
            1e-6,
            "per-row position",
        );
    }
}

#[test]
fn dropout_only_in_training() {
    let ckpt = random_model(tiny_config(), 23);
    let toks = tokens(2, 6, 50, 24);
    let a = ckpt.model.forward_t(&toks, true);
    let b = ckpt.model.forward_t(&toks, true);
    assert!(max_diff(&a, &b) > 1e-4, "dropout is active in training");
    let train = ckpt
        .model
        .run(
            &toks,
            &RunRequest {
                train: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(max_diff(&train.logits, &ckpt.model.forward_t(&toks, false)) > 1e-4);
    assert_exact(
        &ckpt.model.forward_t(&toks, false),
        &ckpt.model.forward_t(&toks, false),
        "eval is deterministic",
    );
}

#[test]
fn cached_activations_keep_the_graph_for_attribution() {
    let ckpt = random_model(tiny_config(), 25);
    let toks = tokens(2, 5, 50, 26);
    let out = ckpt
        .model
        .run(
            &toks,
            &RunRequest::capture([HookPoint::ResidPre(1), HookPoint::AttnOut(2)]),
        )
        .unwrap();
    let metric = out.logits.select(1, 4).select(1, 7).sum(Kind::Float);
    let acts = [
        &out.cache[&HookPoint::ResidPre(1)],
        &out.cache[&HookPoint::AttnOut(2)],
    ];
    let grads = Tensor::run_backward(&[metric], &acts, false, false);
    assert_eq!(grads[0].size(), vec![2, 5, 32]);
    assert!(grads[0].abs().max().double_value(&[]) > 0.0);
    assert_eq!(
        grads[1].narrow(1, 0, 4).abs().max().double_value(&[]),
        0.0,
        "only position 4 matters"
    );
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let ckpt = random_model(tiny_config(), 27);
    let m = &ckpt.model;
    let toks = tokens(2, 5, 50, 28);
    let too_big = Tensor::from_slice(&[1i64, 50, 3]).view([1, 3]);
    assert!(matches!(
        m.run(&too_big, &RunRequest::default()),
        Err(ModelError::TokenOutOfRange {
            id: 50,
            vocab_size: 50
        })
    ));
    let negative = Tensor::from_slice(&[1i64, -1]).view([1, 2]);
    assert!(matches!(
        m.run(&negative, &RunRequest::default()),
        Err(ModelError::TokenOutOfRange { id: -1, .. })
    ));
    assert!(matches!(
        m.f_forward_t(&too_big, false),
        Err(ModelError::TokenOutOfRange { .. })
    ));
    let long = tokens(1, 17, 50, 29);
    let err = m.run(&long, &RunRequest::default()).unwrap_err();
    assert!(
        matches!(err, ModelError::SequenceTooLong { len: 17, n_ctx: 16 }),
        "{err}"
    );
    assert!(
        m.run(&Tensor::from_slice(&[1i64, 2]), &RunRequest::default())
            .is_err(),
        "1-D tokens"
    );
    assert!(
        m.run(&toks.to_kind(Kind::Float), &RunRequest::default())
            .is_err(),
        "float tokens"
    );
    let cases: Vec<(RunRequest, &str)> = vec![
        (
            RunRequest::capture([HookPoint::ResidPre(3)]),
            "only 3 layers",
        ),
        (
            RunRequest::intervene([Intervention::new(HookPoint::MlpOut(0), Edit::Zero).rows([2])]),
            "row index 2",
        ),
        (
            RunRequest::intervene([
                Intervention::new(HookPoint::MlpOut(0), Edit::Zero).positions([5])
            ]),
            "position index 5",
        ),
        (
            RunRequest::intervene([Intervention::new(HookPoint::Q(0), Edit::Zero).heads([4])]),
            "head index 4",
        ),
        (
            RunRequest::intervene([Intervention::new(HookPoint::MlpOut(0), Edit::Zero).heads([0])]),
            "per-head",
        ),
        (
            RunRequest::intervene([
                Intervention::new(HookPoint::MlpOut(0), Edit::Zero).rows([1, 1])
            ]),
            "duplicates",
        ),
        (
            RunRequest::intervene([Intervention::new(
                HookPoint::ResidPre(1),
                Edit::Replace(Tensor::zeros([2, 5, 31], (Kind::Float, tch::Device::Cpu))),
            )]),
            "does not broadcast",
        ),
        (
            RunRequest {
                logit_positions: LogitPositions::At(vec![5]),
                ..Default::default()
            },
            "position 5",
        ),
        (
            RunRequest {
                logit_positions: LogitPositions::PerRow(vec![0]),
                ..Default::default()
            },
            "1 positions given for a batch of 2",
        ),
    ];
    for (req, needle) in cases {
        let err = m.run(&toks, &req).unwrap_err().to_string();
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
    let resid = Tensor::zeros([2, 5, 32], (Kind::Float, tch::Device::Cpu));
    let err = m
        .run_from(2, &resid, &RunRequest::capture([HookPoint::ResidPost(1)]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("blocks.1.hook_resid_post") && err.contains("starts at layer 2"),
        "{err}"
    );
    let err = m
        .run_from(1, &resid, &RunRequest::capture([HookPoint::Embed]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("hook_embed"), "{err}");
    assert!(
        m.run_from(4, &resid, &RunRequest::default()).is_err(),
        "layer beyond n_layer"
    );
    assert!(
        m.run_from(0, &resid.narrow(2, 0, 30), &RunRequest::default())
            .is_err(),
        "wrong width"
    );
    let ok = m
        .run_from(3, &resid, &RunRequest::capture([HookPoint::LnFinalScale]))
        .unwrap();
    assert_eq!(ok.logits.size(), vec![2, 5, 50]);
}

/// The training path `hidden_at` (last layer at the loss positions only) equals the full forward
/// pass gathered at those positions, values and gradients, also with a looped block schedule
/// and different positions per row (3 rows with positions 0…5, and 120 random rows).
#[test]
fn hidden_at_equals_the_full_pass_at_the_positions() {
    let mut cfg = tiny_config();
    cfg.schedule = vec![0, 1, 2, 1];
    cfg.dropout = 0.0;
    let ckpt = random_model(cfg, 7);
    let plain = Tensor::from_slice(&[0i64, 5, 2, 3, 3, 1, 5, 4, 0]).view([3, 3]);
    tch::manual_seed(9);
    let shared = Tensor::randint_low(1, 6, [120, 2], (Kind::Int64, tch::Device::Cpu));
    for positions in [plain, shared] {
        let rows = positions.size()[0];
        let toks = tokens(rows, 6, 50, 8);
        let index = positions.unsqueeze(-1).expand([-1, -1, 32], false);
        let grads = |hidden: Tensor| -> (Tensor, Vec<Tensor>) {
            let weights = Tensor::linspace(-1.0, 1.0, 32, (Kind::Float, tch::Device::Cpu));
            let vars: Vec<Tensor> = ckpt.vs.trainable_variables();
            for v in &vars {
                let mut g = v.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
            (&hidden * &weights).sum(Kind::Float).backward();
            let grads = vars.iter().map(|v| v.grad()).filter(Tensor::defined);
            (hidden.detach(), grads.map(|g| g.copy()).collect())
        };
        let (full, full_grads) = grads(ckpt.model.hidden_t(&toks, false).gather(1, &index, false));
        let (at, at_grads) = grads(ckpt.model.hidden_at(&toks, &positions, true).unwrap());
        assert_eq!(at.size(), vec![rows, positions.size()[1], 32]);
        assert_close(&at, &full, 1e-5, "hidden_at = hidden_t gathered");
        assert_eq!(at_grads.len(), full_grads.len());
        for (a, f) in at_grads.iter().zip(&full_grads) {
            let scale = f.abs().max().double_value(&[]).max(1.0);
            assert_close(
                a,
                f,
                1e-6 * scale,
                "gradient of hidden_at = gradient of the full pass",
            );
        }
    }
}

/// `run_suffix` (positions `P..` recomputed against the base run's keys and values of `0..P`,
/// the last layer at the last row only) equals `run_from` on the whole patched stream at the last
/// position, and `suffix_states` equals its residual states at `P..` entering every layer: every
/// start layer, every split point, a looped schedule, positions `P..` replaced.
#[test]
fn run_suffix_equals_run_from_at_the_last_position() {
    let mut cfg = tiny_config();
    cfg.schedule = vec![0, 1, 2, 1];
    cfg.dropout = 0.0;
    let ckpt = random_model(cfg, 11);
    let m = &ckpt.model;
    let n_layer = 4;
    let (b, t) = (5, 6);
    let base = tch::no_grad(|| {
        let req = RunRequest::capture((0..n_layer).map(HookPoint::ResidPre));
        m.run(&tokens(b, t, 50, 3), &req).unwrap()
    });
    tch::manual_seed(4);
    let other = Tensor::randn([b, t, 32], (Kind::Float, tch::Device::Cpu));
    for layer in 0..=n_layer {
        let resid = if layer < n_layer {
            base.cache[&HookPoint::ResidPre(layer)].shallow_clone()
        } else {
            m.run_from(
                0,
                &base.cache[&HookPoint::ResidPre(0)],
                &RunRequest::capture([HookPoint::ResidPost(n_layer - 1)]),
            )
            .unwrap()
            .cache[&HookPoint::ResidPost(n_layer - 1)]
                .shallow_clone()
        };
        for p in 0..t {
            let patched = Tensor::cat(&[resid.narrow(1, 0, p), other.narrow(1, p, t - p)], 1);
            let expect = if layer < n_layer {
                let last = HookPoint::ResidPost(n_layer - 1);
                m.run_from(layer, &patched, &RunRequest::capture([last]))
                    .unwrap()
                    .cache[&last]
                    .select(1, t - 1)
            } else {
                patched.select(1, t - 1)
            };
            let prefix: Vec<_> = (layer..n_layer)
                .map(|l| {
                    let states = &base.cache[&HookPoint::ResidPre(l)];
                    m.key_values(l, &states.narrow(1, 0, p)).unwrap()
                })
                .collect();
            let got = m
                .run_suffix(layer, &other.narrow(1, p, t - p), &prefix)
                .unwrap();
            assert_eq!(got.size(), vec![b, 32]);
            assert_close(
                &got,
                &expect,
                1e-5,
                &format!("run_suffix from layer {layer}, P = {p}"),
            );
            let states = m
                .suffix_states(layer, &other.narrow(1, p, t - p), &prefix)
                .unwrap();
            assert_eq!(states.len(), n_layer - layer + 1);
            if layer < n_layer {
                let hooks: Vec<HookPoint> = (layer..n_layer)
                    .map(HookPoint::ResidPre)
                    .chain([HookPoint::ResidPost(n_layer - 1)])
                    .collect();
                let req = RunRequest::capture(hooks.clone());
                let full = m.run_from(layer, &patched, &req).unwrap();
                for (state, hook) in states.iter().zip(&hooks) {
                    assert_close(
                        state,
                        &full.cache[hook].narrow(1, p, t - p),
                        1e-5,
                        &format!("suffix_states from layer {layer}, P = {p}, {hook}"),
                    );
                }
            }
        }
    }
    let kv = |l: usize| m.key_values(l, &other.narrow(1, 0, 2)).unwrap();
    let suffix = other.narrow(1, 2, 4);
    assert!(
        m.run_suffix(1, &suffix, &[kv(1), kv(2)]).is_err(),
        "too few prefix entries"
    );
    assert!(m.run_suffix(5, &suffix, &[]).is_err(), "beyond the layers");
    assert!(
        m.run_suffix(3, &suffix.narrow(0, 0, 2), &[kv(3)]).is_err(),
        "batch mismatch"
    );
    assert!(m.key_values(4, &other).is_err(), "no layer 4");
}
