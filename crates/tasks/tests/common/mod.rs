//! Helpers shared by the integration tests: small dataset specs, scratch folders, and an
//! independent reading of the atomic facts (so the checks do not trust the crate's `Facts`).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use tasks::{ComparisonParams, ComplexParams, CompositionParams, Dataset, Example, TaskSpec};

/// A fresh empty folder under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("tasks-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The committed paper-format fixture.
pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures/paper-format-composition")
}

/// Probe sets this large hold every candidate, so test.json lists all facts of each kind.
pub const ALL: usize = 1 << 30;

pub fn small_composition(hops: usize) -> TaskSpec {
    let base = CompositionParams {
        entities: 120,
        relations: 20,
        out_degree: 6,
        hops: 2,
        shorter_hops: Vec::new(),
        phi: 4.0,
        ood_ratio: 0.1,
        id_test_ratio: 0.05,
        test_size: ALL,
    };
    TaskSpec::Composition(match hops {
        2 => base,
        _ => CompositionParams {
            entities: 60,
            relations: 12,
            out_degree: 4,
            hops,
            phi: 8.0,
            ..base
        },
    })
}

pub fn small_comparison() -> TaskSpec {
    TaskSpec::Comparison(ComparisonParams {
        entities: 60,
        attributes: 3,
        values: 5,
        phi: 5.0,
        ood_ratio: 0.1,
        id_test_ratio: 0.1,
        test_size: ALL,
    })
}

pub fn small_complex() -> TaskSpec {
    TaskSpec::Complex(ComplexParams {
        entities: 80,
        attributes: 3,
        values: 8,
        train_fraction: 0.05,
        ood_ratio: 0.15,
        id_test_ratio: 0.1,
        test_size: ALL,
        hard_per_label: ALL,
    })
}

/// Token strings of an example: (prompt tokens, answer token).
pub fn text(ds: &Dataset, ex: &Example) -> (Vec<String>, String) {
    let prompt = ex
        .prompt()
        .iter()
        .map(|&t| ds.vocab.token(t).to_string())
        .collect();
    (prompt, ds.vocab.token(ex.answer).to_string())
}

/// Examples of test.json with split `split`.
pub fn probes<'a>(ds: &'a Dataset, split: &str) -> Vec<&'a Example> {
    ds.test.iter().filter(|ex| ex.split == split).collect()
}

/// Atomic facts (left, right) → object read from `examples`, by prompt length `atomic_len`
/// and the positions of left and right in the prompt.
pub fn atomic_map(
    ds: &Dataset,
    examples: &[&Example],
    atomic_len: usize,
    positions: (usize, usize),
) -> HashMap<(String, String), String> {
    let mut map = HashMap::new();
    for ex in examples.iter().filter(|ex| ex.prompt_len == atomic_len) {
        let (prompt, answer) = text(ds, ex);
        let key = (prompt[positions.0].clone(), prompt[positions.1].clone());
        if let Some(old) = map.insert(key.clone(), answer.clone()) {
            assert_eq!(old, answer, "two objects for {key:?}");
        }
    }
    map
}

/// (left, right) keys of the atomic probes of `split` in test.json.
pub fn atomic_keys(
    ds: &Dataset,
    split: &str,
    positions: (usize, usize),
) -> HashSet<(String, String)> {
    probes(ds, split)
        .iter()
        .map(|ex| {
            let (prompt, _) = text(ds, ex);
            (prompt[positions.0].clone(), prompt[positions.1].clone())
        })
        .collect()
}
