//! Split inputs (`hook_q_input`, `hook_k_input`, `hook_v_input`, `hook_mlp_in`): the edges of
//! the residual stream into each head's query, key and value and into each MLP.

use crate::common::{assert_close, capture_all, random_model, tiny_config, tokens};
use model::{Edit, HookPoint, Intervention, ModelError, RunRequest};
use tch::{Kind, Tensor};

fn add(hook: HookPoint, delta: &Tensor) -> Intervention {
    Intervention::new(hook, Edit::Add(delta.shallow_clone()))
}

#[test]
fn split_inputs_change_no_output_and_capture_the_shared_input() {
    let ckpt = random_model(tiny_config(), 31);
    let toks = tokens(3, 7, 50, 32);
    let plain = ckpt.model.run(&toks, &capture_all(3)).unwrap();
    let split = RunRequest {
        split_inputs: true,
        ..capture_all(3)
    };
    let split = ckpt.model.run(&toks, &split).unwrap();
    assert_close(&split.logits, &plain.logits, 1e-5, "split run = plain run");
    for l in 0..3 {
        let pre = &plain.cache[&HookPoint::ResidPre(l)];
        for hook in [
            HookPoint::QInput(l),
            HookPoint::KInput(l),
            HookPoint::VInput(l),
        ] {
            assert_eq!(plain.cache[&hook].size(), [3, 7, 4, 32]);
            for h in 0..4 {
                assert!(
                    plain.cache[&hook].select(2, h).equal(pre),
                    "{hook} head {h}"
                );
            }
            assert_close(
                &split.cache[&hook],
                &plain.cache[&hook],
                1e-5,
                "split input",
            );
        }
        let mid = &plain.cache[&HookPoint::ResidMid(l)];
        assert!(plain.cache[&HookPoint::MlpIn(l)].equal(mid));
    }
}

#[test]
fn an_edit_of_one_head_query_input_matches_explicit_tensor_code() {
    let ckpt = random_model(tiny_config(), 33);
    let toks = tokens(2, 6, 50, 34);
    tch::manual_seed(35);
    let delta = Tensor::randn([2, 6, 1, 32], (Kind::Float, tch::Device::Cpu));
    let req = RunRequest {
        interventions: vec![add(HookPoint::QInput(1), &delta).heads(vec![2])],
        ..RunRequest::capture([HookPoint::Q(1), HookPoint::ResidPre(1)])
    };
    let out = ckpt.model.run(&toks, &req).unwrap();
    let plain = ckpt
        .model
        .run(&toks, &RunRequest::capture([HookPoint::Q(1)]))
        .unwrap();
    let block = ckpt.model.block_at(1).unwrap();
    let pre = &out.cache[&HookPoint::ResidPre(1)];
    let normed = (pre + delta.squeeze_dim(2)).layer_norm(
        [32],
        Some(&block.ln_1.weight),
        Some(&block.ln_1.bias),
        block.ln_1.eps,
        true,
    );
    let w_q = block.attn.c_attn.weight.narrow(1, 2 * 8, 8);
    let b_q = block.attn.c_attn.bias.narrow(0, 2 * 8, 8);
    let expected = normed.matmul(&w_q) + b_q;
    let q = &out.cache[&HookPoint::Q(1)];
    assert_close(&q.select(2, 2), &expected, 1e-5, "edited head's query");
    for h in [0, 1, 3] {
        assert_close(
            &q.select(2, h),
            &plain.cache[&HookPoint::Q(1)].select(2, h),
            1e-5,
            "other heads' queries",
        );
    }
}

#[test]
fn the_residual_edge_decomposes_into_split_inputs_and_the_stream() {
    let ckpt = random_model(tiny_config(), 36);
    let toks = tokens(2, 6, 50, 37);
    tch::manual_seed(38);
    let delta = Tensor::randn([2, 6, 32], (Kind::Float, tch::Device::Cpu)) * 0.5;
    let run = |ivs: Vec<Intervention>| {
        let req = RunRequest {
            interventions: ivs,
            ..RunRequest::default()
        };
        ckpt.model.run(&toks, &req).unwrap().logits
    };
    let per_head = delta.unsqueeze(2);
    let whole = run(vec![add(HookPoint::ResidPre(1), &delta)]);
    let split = run(vec![
        add(HookPoint::QInput(1), &per_head),
        add(HookPoint::KInput(1), &per_head),
        add(HookPoint::VInput(1), &per_head),
        add(HookPoint::ResidMid(1), &delta),
    ]);
    assert_close(&split, &whole, 1e-4, "resid_pre = q/k/v inputs + resid_mid");
    let whole = run(vec![add(HookPoint::ResidMid(2), &delta)]);
    let split = run(vec![
        add(HookPoint::MlpIn(2), &delta),
        add(HookPoint::ResidPost(2), &delta),
    ]);
    assert_close(&split, &whole, 1e-4, "resid_mid = mlp_in + resid_post");
}

#[test]
fn gradients_of_split_inputs_sum_to_the_residual_gradient() {
    let ckpt = random_model(tiny_config(), 39);
    let toks = tokens(2, 6, 50, 40);
    let l = 1;
    let req = RunRequest {
        split_inputs: true,
        ..RunRequest::capture([
            HookPoint::ResidPre(l),
            HookPoint::QInput(l),
            HookPoint::KInput(l),
            HookPoint::VInput(l),
            HookPoint::ResidMid(l),
        ])
    };
    let out = ckpt.model.run(&toks, &req).unwrap();
    let loss = out.logits.select(2, 7).sum(Kind::Float);
    let hooks: Vec<Tensor> = req
        .capture
        .iter()
        .map(|h| out.cache[h].shallow_clone())
        .collect();
    let grads = Tensor::run_backward(&[loss], &hooks, false, false);
    let grad = |hook: HookPoint| {
        let i = req.capture.iter().position(|&h| h == hook).unwrap();
        grads[i].shallow_clone()
    };
    let heads = |hook| grad(hook).sum_dim_intlist(2, false, Kind::Float);
    let sum = heads(HookPoint::QInput(l))
        + heads(HookPoint::KInput(l))
        + heads(HookPoint::VInput(l))
        + grad(HookPoint::ResidMid(l));
    assert_close(&sum, &grad(HookPoint::ResidPre(l)), 1e-5, "∂/∂resid_pre");
}

#[test]
fn ln1_scale_cannot_be_edited_with_split_inputs() {
    let ckpt = random_model(tiny_config(), 41);
    let toks = tokens(1, 4, 50, 42);
    let req = RunRequest {
        interventions: vec![Intervention::new(HookPoint::Ln1Scale(0), Edit::Scale(2.0))],
        split_inputs: true,
        ..RunRequest::default()
    };
    let err = ckpt.model.run(&toks, &req).unwrap_err();
    assert!(matches!(err, ModelError::Hook { .. }), "{err}");
}
