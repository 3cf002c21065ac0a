//! Layer surgery: plans, parameter copies, outputs.

use crate::common::*;
use model::surgery::{self, SURGERY_KEY};
use model::{Checkpoint, GptConfig, HookPoint, RunRequest, SurgeryOp};
use tch::Device;

fn plan(schedule: Vec<usize>, n_blocks: usize, op: SurgeryOp) -> (Vec<usize>, Vec<usize>) {
    let cfg = tiny_config().with_schedule(n_blocks, schedule);
    let plan = surgery::plan(&cfg, &op).unwrap();
    (plan.config.schedule, plan.sources)
}

#[test]
fn plans_are_canonical() {
    let dup = |layer, materialize| SurgeryOp::Duplicate { layer, materialize };
    assert_eq!(
        plan(vec![0, 1, 2], 3, dup(1, false)),
        (vec![0, 1, 1, 2], vec![0, 1, 2])
    );
    assert_eq!(
        plan(vec![0, 1, 2], 3, dup(1, true)),
        (vec![0, 1, 2, 3], vec![0, 1, 1, 2])
    );
    assert_eq!(
        plan(vec![0, 1, 2], 3, SurgeryOp::Remove { layer: 1 }),
        (vec![0, 1], vec![0, 2])
    );
    assert_eq!(
        plan(vec![0, 1, 2], 3, SurgeryOp::Reorder(vec![2, 0, 1])),
        (vec![0, 1, 2], vec![2, 0, 1])
    );
    let insert = SurgeryOp::Insert {
        at: 0,
        block: 2,
        materialize: false,
    };
    assert_eq!(
        plan(vec![0, 1, 2], 3, insert),
        (vec![0, 1, 2, 0], vec![2, 0, 1])
    );
    let insert = SurgeryOp::Insert {
        at: 3,
        block: 0,
        materialize: true,
    };
    assert_eq!(
        plan(vec![0, 1, 2], 3, insert),
        (vec![0, 1, 2, 3], vec![0, 1, 2, 0])
    );
    assert_eq!(
        plan(vec![0, 1, 2], 3, SurgeryOp::Schedule(vec![0, 1, 1, 2])),
        (vec![0, 1, 1, 2], vec![0, 1, 2])
    );
    assert_eq!(
        plan(vec![0, 1, 2], 3, SurgeryOp::Schedule(vec![2, 2])),
        (vec![0, 0], vec![2])
    );
    assert_eq!(
        plan(vec![0, 1, 0, 1], 2, SurgeryOp::Unshare),
        (vec![0, 1, 2, 3], vec![0, 1, 0, 1])
    );
    assert_eq!(
        plan(vec![0, 1, 0, 1], 2, SurgeryOp::Remove { layer: 0 }),
        (vec![0, 1, 0], vec![1, 0])
    );
}

#[test]
fn impossible_operations_are_errors() {
    let cfg = tiny_config();
    let cases = [
        (
            SurgeryOp::Duplicate {
                layer: 3,
                materialize: false,
            },
            "layer 3 does not exist",
        ),
        (SurgeryOp::Remove { layer: 7 }, "layer 7 does not exist"),
        (
            SurgeryOp::Insert {
                at: 4,
                block: 0,
                materialize: false,
            },
            "insert position 4",
        ),
        (
            SurgeryOp::Insert {
                at: 0,
                block: 3,
                materialize: false,
            },
            "block 3 does not exist",
        ),
        (SurgeryOp::Schedule(vec![0, 9]), "block 9 does not exist"),
        (SurgeryOp::Schedule(vec![]), "empty"),
        (SurgeryOp::Reorder(vec![0, 0, 1]), "not a permutation"),
        (SurgeryOp::Reorder(vec![0, 1]), "not a permutation"),
    ];
    for (op, needle) in cases {
        let err = surgery::plan(&cfg, &op).unwrap_err().to_string();
        assert!(err.contains(needle), "{op}: expected `{needle}` in {err}");
    }
    let one = GptConfig::new(10, 8, 16, 2, 1);
    assert!(surgery::plan(&one, &SurgeryOp::Remove { layer: 0 })
        .unwrap_err()
        .to_string()
        .contains("only layer"));
}

#[test]
fn surgery_copies_parameters_and_keeps_the_function() {
    let ckpt = random_model(tiny_config(), 51);
    let toks = tokens(2, 6, 50, 52);
    let clean = ckpt.model.run(&toks, &capture_all(3)).unwrap();

    let same = surgery::apply(&ckpt, &SurgeryOp::Reorder(vec![0, 1, 2])).unwrap();
    assert_exact(
        &same.model.forward_t(&toks, false),
        &clean.logits,
        "identity reorder",
    );

    let dup = surgery::apply(
        &ckpt,
        &SurgeryOp::Duplicate {
            layer: 1,
            materialize: true,
        },
    )
    .unwrap();
    assert_eq!(dup.config.schedule, vec![0, 1, 2, 3]);
    let (old, new) = (ckpt.vs.variables(), dup.vs.variables());
    for (name, value) in &new {
        let source = name.replace("h.2.", "h.1.").replace("h.3.", "h.2.");
        assert_exact(value, &old[&source], name);
    }
    let out = dup
        .model
        .run(
            &toks,
            &RunRequest::capture([HookPoint::ResidPre(1), HookPoint::ResidPost(1)]),
        )
        .unwrap();
    assert_exact(
        &out.cache[&HookPoint::ResidPost(1)],
        &clean.cache[&HookPoint::ResidPost(1)],
        "layers before the copy unchanged",
    );
    assert_eq!(
        dup.metadata[SURGERY_KEY],
        "duplicate layer 1 (materialized)"
    );
    tch::no_grad(|| {
        let _ = dup.model.blocks[2].mlp.c_fc.bias.shallow_clone().fill_(1.0);
    });
    assert!(
        !dup.model.blocks[1]
            .mlp
            .c_fc
            .bias
            .equal(&dup.model.blocks[2].mlp.c_fc.bias),
        "materialized copies are distinct"
    );

    let cut = surgery::apply(&ckpt, &SurgeryOp::Remove { layer: 2 }).unwrap();
    assert_exact(
        &cut.model.forward_t(&toks, false),
        &ckpt.model.unembed(&clean.cache[&HookPoint::ResidPost(1)]),
        "remove the last layer",
    );

    let twice = surgery::apply(
        &cut,
        &SurgeryOp::Duplicate {
            layer: 0,
            materialize: false,
        },
    )
    .unwrap();
    assert_eq!(
        (twice.config.n_blocks, twice.config.schedule.clone()),
        (2, vec![0, 0, 1])
    );
    assert_eq!(
        twice.metadata[SURGERY_KEY],
        "remove layer 2; duplicate layer 0"
    );
    let path = temp_dir("surgery").join("model.safetensors");
    twice.save_to(&path).unwrap();
    let loaded = Checkpoint::load(&path, Device::Cpu).unwrap();
    assert_eq!(loaded.config, twice.config);
    assert_eq!(loaded.metadata, twice.metadata);
    assert_exact(
        &loaded.model.forward_t(&toks, false),
        &twice.model.forward_t(&toks, false),
        "saved surgery result",
    );
}
