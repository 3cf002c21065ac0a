//! The fast paths of the one forward pass, each equal to the plain hooked run on small random
//! models (max abs diff ≤ 1e-5): suffix runs from cached keys and values (`run_suffix`,
//! `suffix_states`) and the loss-row outputs of the last layer (`hidden_at`), in evaluation and in
//! training mode at dropout 0.

use crate::common::{assert_close, random_model, tiny_config, tokens};
use model::{Checkpoint, HookPoint, KeyValues, RunRequest};
use tch::{Kind, Tensor};

const TOL: f64 = 1e-5;

/// A random model at dropout 0 with a plain or a looped schedule.
fn model(schedule: Vec<usize>, seed: i64) -> Checkpoint {
    let mut cfg = tiny_config();
    cfg.schedule = schedule;
    cfg.dropout = 0.0;
    random_model(cfg, seed)
}

/// A base run's `resid_pre` at every layer and a patched stream entering layer `layer` that
/// agrees with it before `p` (random states from `p` on).
/// Shapes: → base states `n_layer` × `[B, T, d]`, patched `[B, T, d]`.
fn patched_stream(ckpt: &Checkpoint, layer: usize, p: i64) -> (Vec<Tensor>, Tensor) {
    let n_layer = ckpt.model.config().n_layer();
    let req = RunRequest::capture((0..n_layer).map(HookPoint::ResidPre));
    let base = ckpt.model.run(&tokens(4, 7, 50, 21), &req).unwrap();
    let states: Vec<Tensor> = (0..n_layer)
        .map(|l| base.cache[&HookPoint::ResidPre(l)].shallow_clone())
        .collect();
    tch::manual_seed(22);
    let other = Tensor::randn([4, 7, 32], (Kind::Float, tch::Device::Cpu));
    let t = other.size()[1];
    let patched = Tensor::cat(
        &[states[layer].narrow(1, 0, p), other.narrow(1, p, t - p)],
        1,
    );
    (states, patched)
}

/// The base run's keys and values of positions `0..p` for every layer from `layer`.
fn prefix(ckpt: &Checkpoint, states: &[Tensor], layer: usize, p: i64) -> Vec<KeyValues> {
    (layer..states.len())
        .map(|l| {
            ckpt.model
                .key_values(l, &states[l].narrow(1, 0, p))
                .unwrap()
        })
        .collect()
}

#[test]
fn suffix_run_equals_run_from() {
    for schedule in [vec![0, 1, 2], vec![0, 1, 2, 1]] {
        let ckpt = model(schedule.clone(), 31);
        let n_layer = schedule.len();
        for layer in 0..n_layer {
            for p in [0, 3, 6] {
                let (states, patched) = tch::no_grad(|| patched_stream(&ckpt, layer, p));
                let last = HookPoint::ResidPost(n_layer - 1);
                let req = RunRequest::capture([last]);
                let full = ckpt.model.run_from(layer, &patched, &req).unwrap();
                let kv = prefix(&ckpt, &states, layer, p);
                let suffix = patched.narrow(1, p, 7 - p);
                let got = ckpt.model.run_suffix(layer, &suffix, &kv).unwrap();
                assert_close(
                    &got,
                    &full.cache[&last].select(1, -1),
                    TOL,
                    &format!("run_suffix = run_from at the last position (max abs diff <= 1e-5), schedule {schedule:?}, layer {layer}, P {p}"),
                );
            }
        }
    }
}

#[test]
fn suffix_states_equal_run_from_resid_states() {
    let ckpt = model(vec![0, 1, 2, 1], 32);
    let n_layer = 4;
    for layer in 0..n_layer {
        for p in [0, 2, 5] {
            let (states, patched) = tch::no_grad(|| patched_stream(&ckpt, layer, p));
            let hooks: Vec<HookPoint> = (layer..n_layer)
                .map(HookPoint::ResidPre)
                .chain([HookPoint::ResidPost(n_layer - 1)])
                .collect();
            let req = RunRequest::capture(hooks.clone());
            let full = ckpt.model.run_from(layer, &patched, &req).unwrap();
            let kv = prefix(&ckpt, &states, layer, p);
            let suffix = patched.narrow(1, p, 7 - p);
            let got = ckpt.model.suffix_states(layer, &suffix, &kv).unwrap();
            assert_eq!(
                got.len(),
                hooks.len(),
                "one state per layer and the final one"
            );
            for (state, hook) in got.iter().zip(&hooks) {
                assert_close(
                    state,
                    &full.cache[hook].narrow(1, p, 7 - p),
                    TOL,
                    &format!("suffix_states = run_from's {hook} (max abs diff <= 1e-5), layer {layer}, P {p}"),
                );
            }
        }
    }
}

/// `hidden_at` in evaluation and in training mode (dropout 0) equals the plain hooked run's final
/// residual state gathered at the positions, and `hidden_t` gathered.
#[test]
fn loss_row_outputs_equal_the_plain_run() {
    let ckpt = model(vec![0, 1, 2, 1], 33);
    let toks = tokens(3, 6, 50, 34);
    let positions = Tensor::from_slice(&[5i64, 2, 0, 4, 4, 1]).view([3, 2]);
    let index = positions.unsqueeze(-1).expand([-1, -1, 32], false);
    let last = HookPoint::ResidPost(3);
    for train in [false, true] {
        let req = RunRequest {
            train,
            ..RunRequest::capture([last])
        };
        let plain = ckpt.model.run(&toks, &req).unwrap().cache[&last].gather(1, &index, false);
        let hidden = ckpt.model.hidden_t(&toks, train).gather(1, &index, false);
        let at = ckpt.model.hidden_at(&toks, &positions, train).unwrap();
        assert_eq!(at.size(), vec![3, 2, 32]);
        let what = |other: &str| {
            format!("hidden_at (train {train}) = {other} gathered (max abs diff <= 1e-5)")
        };
        assert_close(&at, &plain, TOL, &what("the hooked run's resid_post"));
        assert_close(&at, &hidden, TOL, &what("hidden_t"));
    }
}
