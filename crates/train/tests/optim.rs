//! AdamW against a hand computation, and which parameters get weight decay.

use model::{Gpt, GptConfig};
use tch::{nn, Device, Kind, Tensor};
use train::{AdamW, AdamWParams};

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap()
}

/// Two scalar parameters, `w.weight` (decayed) and `b.bias` (not), loss `w² + 3·b`, three updates
/// with different learning rates, against the AdamW formula written out in f64.
#[test]
fn adamw_matches_hand_computation_on_two_parameters() {
    let hp = AdamWParams {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let w = Tensor::from_slice(&[1.5f32]).set_requires_grad(true);
    let b = Tensor::from_slice(&[-0.5f32]).set_requires_grad(true);
    let params = vec![
        ("w.weight".to_string(), w.shallow_clone()),
        ("b.bias".to_string(), b.shallow_clone()),
    ];
    let mut opt = AdamW::new(params, |name| name.ends_with(".weight"), hp);
    assert_eq!(opt.decayed_names(), vec!["w.weight"]);

    let (mut hw, mut hb) = (1.5f64, -0.5f64);
    let (mut mw, mut vw, mut mb, mut vb) = (0.0, 0.0, 0.0, 0.0);
    for (t, lr) in [(1, 0.01), (2, 0.02), (3, 0.05)] {
        opt.zero_grad();
        let loss = (&w * &w).sum(Kind::Float) + b.sum(Kind::Float) * 3.0;
        loss.backward();
        opt.step(lr);

        let t = f64::from(t);
        let (gw, gb) = (2.0 * hw, 3.0);
        hw *= 1.0 - lr * hp.weight_decay;
        mw = 0.9 * mw + 0.1 * gw;
        vw = 0.999 * vw + 0.001 * gw * gw;
        mb = 0.9 * mb + 0.1 * gb;
        vb = 0.999 * vb + 0.001 * gb * gb;
        let (c1, c2) = (1.0 - 0.9f64.powf(t), 1.0 - 0.999f64.powf(t));
        hw -= lr / c1 * mw / (vw.sqrt() / c2.sqrt() + 1e-8);
        hb -= lr / c1 * mb / (vb.sqrt() / c2.sqrt() + 1e-8);

        let (gotw, gotb) = (values(&w)[0], values(&b)[0]);
        assert!((gotw - hw).abs() < 1e-6, "step {t}: w = {gotw}, hand {hw}");
        assert!((gotb - hb).abs() < 1e-6, "step {t}: b = {gotb}, hand {hb}");
    }
    assert_eq!(opt.step_count(), 3);
    let state = opt.state_tensors();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["m.b.bias", "v.b.bias", "m.w.weight", "v.w.weight"]);
    assert!((values(&state[2].1)[0] - mw).abs() < 1e-6);
    assert!((values(&state[3].1)[0] - vw).abs() < 1e-6);
}

/// Clipping scales the gradients to the maximum norm and returns the norm before clipping.
#[test]
fn clipping_bounds_the_global_norm() {
    let a = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
    let b = Tensor::from_slice(&[4.0f32]).set_requires_grad(true);
    let params = vec![
        ("a".to_string(), a.shallow_clone()),
        ("b".to_string(), b.shallow_clone()),
    ];
    let mut opt = AdamW::new(params, |_| true, AdamWParams::default());
    // grads: d/da (a²/2) = 3, d/db (b²/2) = 4 → norm 5
    ((&a * &a).sum(Kind::Float) * 0.5 + (&b * &b).sum(Kind::Float) * 0.5).backward();
    let norm = opt.clip_grad_norm(1.0).double_value(&[]);
    assert!((norm - 5.0).abs() < 1e-6);
    let clipped = opt.grad_norm().double_value(&[]);
    assert!((clipped - 1.0).abs() < 1e-5, "{clipped}");
    assert!((values(&a.grad())[0] - 0.6).abs() < 1e-5);
}

/// With zero gradients an update is pure decay: every weight of the model except the LayerNorm
/// weights shrinks by exactly (1 − lr·wd), the embeddings included; LayerNorms and biases do not
/// move.
#[test]
fn weight_decay_skips_layernorms_and_biases() {
    tch::manual_seed(0);
    let cfg = GptConfig {
        dropout: 0.0,
        d_mlp: 32,
        ..GptConfig::new(11, 6, 16, 2, 2)
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let gpt = Gpt::new(&vs.root(), &cfg).unwrap();
    let before: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    let hp = AdamWParams {
        weight_decay: 0.5,
        ..AdamWParams::default()
    };
    let mut opt = AdamW::new(vs.variables(), model::is_decayed, hp);
    let tokens = Tensor::from_slice(&[1i64, 2, 3, 4]).view([1, 4]);
    (gpt.forward_t(&tokens, false).sum(Kind::Float) * 0.0).backward();
    opt.step(0.1);

    let after = vs.variables();
    let mut decayed = Vec::new();
    for (name, old) in &before {
        let new = &after[name];
        let is_ln = name.split('.').any(|p| p.starts_with("ln_"));
        let is_bias = name.ends_with(".bias");
        if is_ln || is_bias {
            assert!(new.equal(old), "{name} moved");
        } else {
            let expected = old * 0.95;
            let diff = (new - expected).abs().max().double_value(&[]);
            assert!(
                diff < 1e-7,
                "{name} not decayed by exactly 0.95 (max diff {diff})"
            );
            decayed.push(name.clone());
        }
    }
    decayed.sort();
    let mut listed: Vec<String> = opt.decayed_names().iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(decayed, listed);
    assert!(listed.contains(&"transformer.wte.weight".to_string()));
    assert!(listed.contains(&"transformer.wpe.weight".to_string()));
    assert_eq!(listed.len(), 2 + 4 * cfg.n_blocks, "{listed:?}");
}

/// A parameter without a gradient keeps its value and its moments through an update (as in
/// PyTorch), while the others move; the variables are views of the optimiser's flat buffer, so
/// the caller's tensors see the update.
#[test]
fn parameters_without_gradients_are_left_untouched() {
    let used = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
    let unused = Tensor::from_slice(&[0.5f32, 0.25, 4.0]).set_requires_grad(true);
    let params = vec![
        ("used.weight".to_string(), used.shallow_clone()),
        ("unused.weight".to_string(), unused.shallow_clone()),
    ];
    let hp = AdamWParams {
        weight_decay: 0.5,
        ..AdamWParams::default()
    };
    let mut opt = AdamW::new(params, |_| true, hp);
    (&used * &used).sum(Kind::Float).backward();
    opt.step(0.1);
    assert_eq!(values(&unused), vec![0.5, 0.25, 4.0]);
    let moved = values(&used);
    assert!(moved[0] < 1.0 && moved[1] > -2.0, "{moved:?}");
    for (name, moment) in opt.state_tensors() {
        let zero = values(&moment).iter().all(|&x| x == 0.0);
        assert_eq!(
            zero,
            name.contains("unused"),
            "{name}: {:?}",
            values(&moment)
        );
    }
}
