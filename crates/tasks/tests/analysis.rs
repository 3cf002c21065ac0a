//! Roles, position names and the paper's corruption rules.

mod common;

use common::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tasks::{corrupt, position_names, roles, Dataset, TaskKind};

#[test]
fn position_names_follow_the_prompt_layout() {
    let composition = TaskKind::Composition { hops: 3 };
    assert_eq!(position_names(composition, 4), ["h", "r1", "r2", "r3"]);
    assert_eq!(position_names(composition, 2), ["h", "r1"]);
    assert_eq!(
        position_names(TaskKind::Comparison, 5),
        ["a", "q", "e1", "mask", "e2"]
    );
    assert_eq!(
        position_names(TaskKind::Complex, 6),
        ["a", "q", "e1", "mask", "e2", "q_end"]
    );
    assert_eq!(position_names(TaskKind::Comparison, 3), ["p0", "p1", "p2"]);
}

#[test]
fn roles_of_fixture_examples() {
    let ds = Dataset::load(&fixture()).unwrap();
    let name = |r: &std::collections::BTreeMap<String, u32>| -> Vec<(String, String)> {
        r.iter()
            .map(|(k, &v)| (k.clone(), ds.vocab.token(v).to_string()))
            .collect()
    };
    let inferred = roles(&ds, &ds.train[10]).unwrap();
    let expected = [
        ("b1", "<e_1>"),
        ("h", "<e_0>"),
        ("r1", "<r_0>"),
        ("r2", "<r_0>"),
        ("t", "<e_3>"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(name(&inferred), expected);
    let atomic = roles(&ds, &ds.train[0]).unwrap();
    assert_eq!(atomic.keys().collect::<Vec<_>>(), ["h", "r1", "t"]);
}

#[test]
fn composition_corruptions_change_the_answer() {
    for hops in [2, 3] {
        let ds = Dataset::generate(&small_composition(hops), 3).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut made = 0;
        let role_names: Vec<String> = position_names(ds.kind, hops + 1);
        for ex in probes(&ds, "train_inferred").into_iter().take(50) {
            let r = roles(&ds, ex).unwrap();
            assert_eq!(r.len(), 2 * hops + 1);
            for (position, role) in role_names.iter().enumerate() {
                let Some(c) = corrupt(&ds, &ds.facts, ex, role, &mut rng) else {
                    continue;
                };
                made += 1;
                assert_eq!(c.patch_positions, [position]);
                assert_eq!(c.tokens.len(), ex.tokens.len());
                for (i, (&a, &b)) in c.tokens.iter().zip(&ex.tokens).enumerate() {
                    assert_eq!(a != b, i == position, "{role}: position {i}");
                }
                assert_ne!(c.answer, Some(ex.answer), "{role} keeps the answer");
                let replaced = c.tokens[position];
                if role == "h" {
                    assert!(ds.facts.id_heads().contains(&replaced));
                } else {
                    let from = ds
                        .facts
                        .follow(ex.tokens[0], &ex.tokens[1..position])
                        .unwrap();
                    assert!(ds.facts.id_edges(from).iter().any(|&(r, _)| r == replaced));
                }
            }
        }
        assert!(made > 50 * hops, "only {made} corruptions for {hops} hops");
    }
}

#[test]
fn comparison_corruptions_follow_the_paper() {
    let ds = Dataset::generate(&small_comparison(), 3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut made = 0;
    for ex in probes(&ds, "train_inferred").into_iter().take(60) {
        let r = roles(&ds, ex).unwrap();
        assert_eq!(r["label"], ex.answer);
        for (role, positions) in [("e1", vec![2, 3]), ("e2", vec![4]), ("a", vec![0, 1])] {
            let Some(c) = corrupt(&ds, &ds.facts, ex, role, &mut rng) else {
                continue;
            };
            made += 1;
            assert_eq!(c.patch_positions, positions);
            if role != "a" {
                assert!(c.answer.is_some());
                assert_ne!(c.answer, Some(ex.answer), "{role} keeps the label");
                let replaced = c.tokens[positions[0]];
                assert!(ds.facts.is_id(replaced, ex.tokens[0]));
            } else {
                assert_ne!(c.tokens[0], ex.tokens[0]);
            }
        }
        assert!(corrupt(&ds, &ds.facts, ex, "h", &mut rng).is_none());
    }
    assert!(made > 150, "only {made} corruptions");
}

#[test]
fn corruption_is_deterministic_given_the_rng() {
    let ds = Dataset::generate(&small_composition(2), 3).unwrap();
    let ex = probes(&ds, "train_inferred")[0];
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        ["h", "r1", "r2"].map(|role| corrupt(&ds, &ds.facts, ex, role, &mut rng))
    };
    assert_eq!(run(1), run(1));
    let atomic = probes(&ds, "id_atomic")[0];
    assert!(corrupt(
        &ds,
        &ds.facts,
        atomic,
        "h",
        &mut ChaCha8Rng::seed_from_u64(0)
    )
    .is_none());
}

#[test]
fn corruptible_roles_and_lens_readings_follow_the_paper() {
    let three = TaskKind::Composition { hops: 3 };
    assert_eq!(tasks::corruptible_roles(three), ["h", "r1", "r2", "r3"]);
    assert_eq!(
        tasks::corruptible_roles(TaskKind::Comparison),
        ["a", "e1", "e2"]
    );
    let pairs = |v: Vec<(String, String)>| -> Vec<String> {
        v.into_iter().map(|(r, p)| format!("{r}@{p}")).collect()
    };
    assert_eq!(
        pairs(tasks::lens_readings(three)),
        ["b1@r1", "b2@r2", "r3@r3"]
    );
    assert_eq!(
        pairs(tasks::lens_readings(TaskKind::Complex)),
        ["v1@e1", "v2@e2", "label0@a", "label1@a", "label2@a"]
    );
}
