//! The cache helpers against the model's own activations: decompositions sum to the residual
//! stream, the cached-scale LayerNorm reproduces ln_final, logit attributions sum to the logit
//! difference, head results sum to the attention output.

mod common;

use common::{config, random_model};
use interp::{ActivationCache, Net};
use model::{Checkpoint, HookPoint};
use tch::{Device, Kind, Tensor};

/// A random 3-layer model with peaked predictions (weights scaled up, LayerNorms ×1.3, biases
/// shifted by noise).
fn tiny_model() -> Checkpoint {
    random_model(config(23, 3), 11, |name, t| {
        let _ = t
            .f_mul_scalar_(if name.contains("ln_") { 1.3 } else { 6.0 })
            .unwrap();
        if name.contains("bias") {
            let _ = t
                .f_add_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.1))
                .unwrap();
        }
    })
}

fn tokens() -> Tensor {
    Tensor::from_slice(&[1i64, 5, 9, 2, 7, 3, 0, 4, 22, 11, 6, 8, 13, 10, 19, 2]).view([2, 8])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn decomposition_sums_to_the_residual_stream_at_every_layer() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let cache = ActivationCache::run(&net, &tokens()).unwrap();
    for layer in 0..=3 {
        let parts = cache.decompose_resid(Some(layer)).unwrap();
        assert_eq!(parts.labels.len(), 2 + 2 * layer, "labels at layer {layer}");
        let resid = cache.get(net.resid_hook(layer)).unwrap();
        let sum = parts.stack.sum_dim_intlist(0, false, Kind::Float);
        let diff = max_diff(&sum, resid);
        assert!(diff < 1e-4, "layer {layer}: decomposition off by {diff}");
    }
    let all = cache.decompose_resid(None).unwrap();
    assert_eq!(
        all.labels,
        [
            "embed",
            "pos_embed",
            "0_attn_out",
            "0_mlp_out",
            "1_attn_out",
            "1_mlp_out",
            "2_attn_out",
            "2_mlp_out"
        ]
    );
}

#[test]
fn accumulated_resid_lists_every_layer_then_the_final_stream() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let cache = ActivationCache::run(&net, &tokens()).unwrap();
    let acc = cache.accumulated_resid(None).unwrap();
    assert_eq!(acc.labels, ["0_pre", "1_pre", "2_pre", "final_post"]);
    let embed = cache.get(HookPoint::Embed).unwrap() + cache.get(HookPoint::PosEmbed).unwrap();
    assert!(max_diff(&acc.get("0_pre").unwrap(), &embed) < 1e-6);
    let last = cache.get(HookPoint::ResidPost(2)).unwrap();
    assert_eq!(max_diff(&acc.get("final_post").unwrap(), last), 0.0);
    assert_eq!(
        cache.accumulated_resid(Some(2)).unwrap().labels,
        ["0_pre", "1_pre"]
    );
    assert!(
        cache.accumulated_resid(Some(4)).is_err(),
        "layer beyond the model"
    );
}

#[test]
fn apply_ln_to_stack_of_the_final_stream_equals_ln_final() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let cache = ActivationCache::run(&net, &tokens()).unwrap();
    let acc = cache.accumulated_resid(None).unwrap();
    let normed = cache.apply_ln_to_stack(&acc, None).unwrap();
    let final_resid = cache.get(HookPoint::ResidPost(2)).unwrap();
    let expected = ckpt.model.ln_final(final_resid);
    let got = normed.get("final_post").unwrap() + cache.ln_bias(None).unwrap();
    let diff = max_diff(&got, &expected);
    assert!(diff < 1e-4, "cached-scale ln_final off by {diff}");
    // The decomposition normalised the same way sums to the same output.
    let parts = cache
        .apply_ln_to_stack(&cache.decompose_resid(None).unwrap(), None)
        .unwrap();
    let sum = parts.stack.sum_dim_intlist(0, false, Kind::Float) + cache.ln_bias(None).unwrap();
    assert!(max_diff(&sum, &expected) < 1e-4);
    // At an inner layer the reader is that block's ln_1.
    let inner = cache
        .apply_ln_to_stack(&cache.decompose_resid(Some(1)).unwrap(), Some(1))
        .unwrap();
    let sum = inner.stack.sum_dim_intlist(0, false, Kind::Float) + cache.ln_bias(Some(1)).unwrap();
    let ln_1 = &ckpt.model.block_at(1).unwrap().ln_1;
    let diff = max_diff(
        &sum,
        &ln_1.forward(cache.get(HookPoint::ResidPre(1)).unwrap()),
    );
    assert!(diff < 1e-4, "ln_1 of layer 1 off by {diff}");
}

#[test]
fn logit_attributions_sum_to_the_logit_difference() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let cache = ActivationCache::run(&net, &tokens()).unwrap();
    let good = Tensor::from_slice(&[4i64, 17]);
    let bad = Tensor::from_slice(&[9i64, 1]);
    let parts = cache
        .apply_ln_to_stack(&cache.decompose_resid(None).unwrap(), None)
        .unwrap();
    for pos in [7i64, 3] {
        let attrs = cache
            .logit_attrs(&parts, &[pos, pos], &good, Some(&bad))
            .unwrap();
        assert_eq!(attrs.size(), [8, 2]);
        let bias = cache
            .ln_bias(None)
            .unwrap()
            .view([1, 1, 1, -1])
            .expand([1, 2, 8, 32], false);
        let bias_stack = interp::LabelledStack {
            labels: vec!["ln_final.bias".into()],
            stack: bias,
        };
        let bias_term = cache
            .logit_attrs(&bias_stack, &[pos, pos], &good, Some(&bad))
            .unwrap();
        let total = attrs.sum_dim_intlist(0, false, Kind::Float) + bias_term.squeeze_dim(0);
        let logits = cache.logits.select(1, pos);
        let expected = logits.gather(1, &good.unsqueeze(1), false).squeeze_dim(1)
            - logits.gather(1, &bad.unsqueeze(1), false).squeeze_dim(1);
        let diff = max_diff(&total, &expected);
        assert!(
            diff < 1e-3,
            "position {pos}: attributions off the logit difference by {diff}"
        );
    }
}

#[test]
fn head_results_with_the_output_bias_sum_to_the_attention_output() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let cache = ActivationCache::run(&net, &tokens()).unwrap();
    let heads = cache.stack_head_results(None, true).unwrap();
    assert_eq!(heads.labels.len(), 3 * 4 + 1);
    assert_eq!(heads.labels[5], "L1H1");
    for l in 0..3 {
        let sum = (0..4).fold(
            Tensor::zeros([2, 8, 32], (Kind::Float, Device::Cpu)),
            |acc, h| acc + heads.get(&format!("L{l}H{h}")).unwrap(),
        );
        let b_o = &ckpt.model.block_at(l).unwrap().attn.c_proj.bias;
        let diff = max_diff(&(sum + b_o), cache.get(HookPoint::AttnOut(l)).unwrap());
        assert!(diff < 1e-4, "layer {l}: heads + b_O off attn_out by {diff}");
    }
    let total = heads.stack.sum_dim_intlist(0, false, Kind::Float);
    assert!(
        max_diff(&total, cache.get(HookPoint::ResidPost(2)).unwrap()) < 1e-4,
        "with the remainder the stack sums to the stream"
    );
}
