//! Shared and looped schedules: hook layer index = schedule position.

use crate::common::*;
use model::{surgery, GptConfig, HookPoint, RunRequest, SurgeryOp};

#[test]
fn schedule_helpers() {
    assert_eq!(model::plain_schedule(3), vec![0, 1, 2]);
    assert_eq!(model::shared_schedule(4, 2), vec![0, 1, 2, 3, 0, 1, 2, 3]);
    assert_eq!(model::looped_schedule(3), vec![0, 0, 0]);
    let cfg = GptConfig::new(10, 8, 16, 2, 4);
    assert!(cfg.is_plain() && cfg.n_layer() == 4);
    let shared = cfg.clone().shared(4, 2);
    assert_eq!(
        (shared.n_blocks, shared.n_layer(), shared.is_plain()),
        (4, 8, false)
    );
    let looped = cfg.looped(5);
    assert_eq!((looped.n_blocks, looped.schedule.clone()), (1, vec![0; 5]));
}

/// A shared or looped model, its unshared (plain) copy made by surgery: the same function, and
/// every hook at layer l of one equals hook l of the other.
fn check_against_unshared(cfg: GptConfig, seed: i64) {
    let ckpt = random_model(cfg.clone(), seed);
    let n = cfg.n_layer();
    let toks = tokens(2, 6, 50, seed + 1);
    let out = ckpt.model.run(&toks, &capture_all(n)).unwrap();
    assert_eq!(
        out.cache.len(),
        HookPoint::all(n).len(),
        "one set of hooks per schedule position"
    );
    assert!(ckpt
        .model
        .run(&toks, &RunRequest::capture([HookPoint::ResidPost(n)]))
        .is_err());
    let plain = surgery::apply(&ckpt, &SurgeryOp::Unshare).unwrap();
    assert!(plain.config.is_plain());
    assert_eq!(plain.config.n_blocks, n);
    let plain_out = plain.model.run(&toks, &capture_all(n)).unwrap();
    assert_exact(&out.logits, &plain_out.logits, "logits");
    for (hook, value) in &out.cache {
        assert_exact(value, &plain_out.cache[hook], &hook.to_string());
    }
    for layer in 0..n {
        let block = ckpt.model.block_at(layer).unwrap();
        assert!(block
            .mlp
            .c_fc
            .weight
            .equal(&ckpt.model.blocks[cfg.schedule[layer]].mlp.c_fc.weight));
    }
}

#[test]
fn shared_schedule_runs_and_hooks_follow_schedule_positions() {
    let cfg = tiny_config().shared(2, 2);
    check_against_unshared(cfg.clone(), 41);
    let ckpt = random_model(cfg, 43);
    let toks = tokens(1, 5, 50, 44);
    let out = ckpt.model.run(&toks, &capture_all(4)).unwrap();
    let b0 = &ckpt.model.blocks[0];
    let q0 = b0
        .attn
        .c_attn
        .forward(&b0.ln_1.forward(&out.cache[&HookPoint::ResidPre(2)]))
        .narrow(-1, 0, 32)
        .view([1, 5, 4, 8]);
    assert_close(
        &q0,
        &out.cache[&HookPoint::Q(2)],
        1e-6,
        "layer 2 applies block 0",
    );
}

#[test]
fn looped_schedule_runs_and_hooks_follow_schedule_positions() {
    let cfg = tiny_config().looped(4);
    check_against_unshared(cfg.clone(), 45);
    let ckpt = random_model(cfg, 47);
    let toks = tokens(2, 5, 50, 48);
    let full = ckpt.model.run(&toks, &capture_all(4)).unwrap();
    let out = ckpt
        .model
        .run_from(
            3,
            &full.cache[&HookPoint::ResidPre(3)],
            &RunRequest::default(),
        )
        .unwrap();
    assert_exact(&out.logits, &full.logits, "run_from(3) of a looped model");
    assert!(
        max_diff(
            &full.cache[&HookPoint::ResidPost(0)],
            &full.cache[&HookPoint::ResidPost(3)]
        ) > 1e-3
    );
}
