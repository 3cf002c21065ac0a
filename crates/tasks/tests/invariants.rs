//! Split invariants of generated data, checked against an independent reading of the records.

mod common;

use common::*;
use std::collections::{HashMap, HashSet, VecDeque};
use tasks::{Dataset, Example, TaskKind, TaskSpec};

/// Checks a composition dataset with `hops` hops against the paper's rules.
fn check_composition(hops: usize) {
    let spec = small_composition(hops);
    let TaskSpec::Composition(p) = &spec else {
        unreachable!()
    };
    let ds = Dataset::generate(&spec, 11).unwrap();
    assert_eq!(ds.kind, TaskKind::Composition { hops });
    let train: Vec<&Example> = ds.train.iter().collect();
    let atomic = atomic_map(&ds, &train, 2, (0, 1));
    let id = atomic_keys(&ds, "id_atomic", (0, 1));
    let ood = atomic_keys(&ds, "ood_atomic", (0, 1));

    // The graph: out-degree distinct relations per head; OOD facts are round(ratio · facts).
    assert_eq!(atomic.len(), p.entities * p.out_degree);
    assert_eq!(id.len() + ood.len(), atomic.len());
    assert!(id.is_disjoint(&ood));
    assert_eq!(
        ood.len(),
        (p.ood_ratio * atomic.len() as f64).round() as usize
    );
    // Every OOD atomic fact is in train.json.
    assert!(ood.iter().all(|k| atomic.contains_key(k)));

    let follow = |prompt: &[String]| -> (Vec<(String, String)>, String) {
        let mut entity = prompt[0].clone();
        let mut hops_taken = Vec::new();
        for r in &prompt[1..] {
            let key = (entity.clone(), r.clone());
            entity = atomic[&key].clone();
            hops_taken.push(key);
        }
        (hops_taken, entity)
    };
    // Every answer follows from the atomic facts; the hops of each split have the right status.
    let mut train_prompts = HashSet::new();
    let mut train_inferred = 0;
    for (file, examples) in [
        ("train", &ds.train),
        ("valid", &ds.valid),
        ("test", &ds.test),
    ] {
        for ex in examples.iter().filter(|ex| ex.prompt_len > 2) {
            assert_eq!(ex.prompt_len, hops + 1);
            let (prompt, answer) = text(&ds, ex);
            let (chain, tail) = follow(&prompt);
            assert_eq!(tail, answer, "{file}: {prompt:?}");
            let split = if file == "valid" {
                "test_inferred_ood"
            } else {
                &ex.split
            };
            match split {
                "train" | "train_inferred" | "test_inferred_iid" => {
                    assert!(chain.iter().all(|k| id.contains(k)), "{split} {prompt:?}")
                }
                "test_inferred_ood" => {
                    assert!(chain.iter().all(|k| ood.contains(k)), "{prompt:?}")
                }
                other => panic!("unexpected split {other}"),
            }
            if file == "train" {
                train_prompts.insert(prompt);
                train_inferred += 1;
            }
        }
    }
    // phi is exact, and the sample has no repeats.
    assert_eq!(train_inferred, (p.phi * id.len() as f64).round() as usize);
    assert_eq!(train_prompts.len(), train_inferred);
    // No test query is trained on, and the valid set is the OOD test set.
    for ex in ds.test.iter().chain(&ds.valid) {
        if ex.split.starts_with("test_inferred") || ex.split == "valid" {
            assert!(!train_prompts.contains(&text(&ds, ex).0));
        }
    }
    let valid: Vec<_> = ds.valid.iter().map(|ex| ex.tokens.clone()).collect();
    let ood_tests: Vec<_> = probes(&ds, "test_inferred_ood")
        .iter()
        .map(|ex| ex.tokens.clone())
        .collect();
    assert_eq!(valid, ood_tests);
    // Every all-OOD chain is an OOD test query (test_size covers them all).
    let mut by_head: HashMap<&String, Vec<(&String, &String)>> = HashMap::new();
    for ((h, r), t) in &atomic {
        by_head.entry(h).or_default().push((r, t));
    }
    let mut all_ood_chains = 0usize;
    let mut stack: Vec<(String, usize)> = atomic.keys().map(|(h, _)| (h.clone(), 0)).collect();
    stack.sort();
    stack.dedup();
    while let Some((entity, depth)) = stack.pop() {
        if depth == hops {
            all_ood_chains += 1;
            continue;
        }
        for (r, t) in by_head.get(&entity).into_iter().flatten() {
            if ood.contains(&(entity.clone(), (*r).clone())) {
                stack.push(((*t).clone(), depth + 1));
            }
        }
    }
    assert_eq!(all_ood_chains, ood_tests.len());
    assert!(!probes(&ds, "test_inferred_iid").is_empty());
}

#[test]
fn composition_two_hop_splits_follow_the_paper() {
    check_composition(2);
}

#[test]
fn composition_three_hop_splits_follow_the_paper() {
    check_composition(3);
}

#[test]
fn composition_four_hops_generate() {
    let ds = Dataset::generate(&small_composition(4), 2).unwrap();
    assert_eq!(ds.kind, TaskKind::Composition { hops: 4 });
    assert!(ds.train.iter().any(|ex| ex.prompt_len == 5));
}

/// Label index (0 <, 1 =, 2 >) of a label token `<attr_k_l>`, checked against attribute `a`.
fn label_of(token: &str, attribute: &str) -> u32 {
    let stem = attribute.trim_end_matches('>');
    let rest = token
        .strip_prefix(stem)
        .and_then(|r| r.strip_prefix('_'))
        .and_then(|r| r.strip_suffix('>'))
        .unwrap_or_else(|| panic!("{token} is not a label of {attribute}"));
    rest.parse().unwrap()
}

fn number(value: &str) -> i64 {
    value.trim_matches(['<', '>']).parse().unwrap()
}

fn expected_label(values: &HashMap<(String, String), String>, a: &str, e1: &str, e2: &str) -> u32 {
    let v1 = number(&values[&(e1.to_string(), a.to_string())]);
    let v2 = number(&values[&(e2.to_string(), a.to_string())]);
    match v1.cmp(&v2) {
        std::cmp::Ordering::Less => 0,
        std::cmp::Ordering::Equal => 1,
        std::cmp::Ordering::Greater => 2,
    }
}

#[test]
fn comparison_splits_and_labels_follow_the_paper() {
    let spec = small_comparison();
    let TaskSpec::Comparison(p) = &spec else {
        unreachable!()
    };
    let ds = Dataset::generate(&spec, 5).unwrap();
    let train: Vec<&Example> = ds.train.iter().collect();
    let values = atomic_map(&ds, &train, 2, (0, 1));
    let id = atomic_keys(&ds, "id_atomic", (0, 1));
    let ood = atomic_keys(&ds, "ood_atomic", (0, 1));
    assert_eq!(values.len(), p.entities * p.attributes);
    assert!(ood.iter().all(|k| values.contains_key(k)));
    let n_ood = (p.ood_ratio * p.entities as f64).round() as usize;
    assert_eq!(ood.len(), n_ood * p.attributes);

    let mut train_prompts = HashSet::new();
    for ex in ds.train.iter().chain(&ds.valid).chain(&ds.test) {
        if ex.prompt_len == 2 {
            continue;
        }
        let (prompt, answer) = text(&ds, ex);
        let (a, e1, e2) = (&prompt[0], &prompt[2], &prompt[4]);
        assert_eq!(
            label_of(&answer, a),
            expected_label(&values, a, e1, e2),
            "{prompt:?}"
        );
        let status = |e: &String| id.contains(&(e.clone(), a.clone()));
        match ex.split.as_str() {
            "train_inferred" | "test_inferred_iid" => assert!(status(e1) && status(e2)),
            "test_inferred_ood" => assert!(!status(e1) && !status(e2)),
            other => panic!("unexpected split {other}"),
        }
    }
    let mut train_inferred = 0;
    for ex in ds.train.iter().filter(|ex| ex.split == "train_inferred") {
        train_prompts.insert(text(&ds, ex).0);
        train_inferred += 1;
    }
    // phi is exact, and the sample has no repeats.
    assert_eq!(train_inferred, (p.phi * id.len() as f64).round() as usize);
    assert_eq!(train_prompts.len(), train_inferred);
    for ex in ds
        .test
        .iter()
        .filter(|ex| ex.split.starts_with("test_inferred"))
    {
        assert!(!train_prompts.contains(&text(&ds, ex).0));
    }
    assert_eq!(
        probes(&ds, "test_inferred_ood").len(),
        p.attributes * n_ood * (n_ood - 1)
    );
}

/// Labels provable by paths in a graph whose edge u → v states value(u) ≥ value(v), for the
/// ordered pair (e1, e2): 2 if only e1 reaches e2, 0 if only e2 reaches e1, 1 if both.
fn provable(edges: &HashMap<String, Vec<String>>, e1: &str, e2: &str) -> Option<u32> {
    let reaches = |from: &str, to: &str| {
        let mut seen = HashSet::from([from.to_string()]);
        let mut queue = VecDeque::from([from.to_string()]);
        while let Some(u) = queue.pop_front() {
            if u == to {
                return true;
            }
            for v in edges.get(&u).into_iter().flatten() {
                if seen.insert(v.clone()) {
                    queue.push_back(v.clone());
                }
            }
        }
        false
    };
    match (reaches(e1, e2), reaches(e2, e1)) {
        (true, true) => Some(1),
        (true, false) => Some(2),
        (false, true) => Some(0),
        (false, false) => None,
    }
}

fn add_edge(edges: &mut HashMap<String, Vec<String>>, e1: &str, e2: &str, label: u32) {
    if label >= 1 {
        edges
            .entry(e1.to_string())
            .or_default()
            .push(e2.to_string());
    }
    if label <= 1 {
        edges
            .entry(e2.to_string())
            .or_default()
            .push(e1.to_string());
    }
}

#[test]
fn complex_splits_and_hard_queries_follow_the_paper() {
    let ds = Dataset::generate(&small_complex(), 9).unwrap();
    assert_eq!(ds.kind, TaskKind::Complex);
    let all: Vec<&Example> = ds.train.iter().chain(&ds.test).collect();
    let values = atomic_map(&ds, &all, 5, (1, 2));
    let id = atomic_keys(&ds, "id_atomic", (1, 2));
    let ood = atomic_keys(&ds, "ood_atomic", (1, 2));
    // OOD atomic facts are not trained on; ID ones all are.
    let trained: Vec<&Example> = ds.train.iter().collect();
    let train_atomic = atomic_map(&ds, &trained, 5, (1, 2));
    assert_eq!(train_atomic.len(), id.len());
    assert!(ood.iter().all(|k| !train_atomic.contains_key(k)));

    let attributes: HashSet<String> = id.iter().map(|(_, a)| a.clone()).collect();
    let mut hard_seen = 0;
    for attribute in &attributes {
        let is_id = |e: &str| id.contains(&(e.to_string(), attribute.clone()));
        let mut inferred_only: HashMap<String, Vec<String>> = HashMap::new();
        let mut with_values: HashMap<String, Vec<String>> = HashMap::new();
        for ex in &ds.train {
            let (prompt, answer) = text(&ds, ex);
            if prompt.len() != 6 || &prompt[0] != attribute {
                continue;
            }
            let (e1, e2) = (&prompt[2], &prompt[4]);
            let label = label_of(&answer, attribute);
            assert_eq!(label, expected_label(&values, attribute, e1, e2));
            match ex.split.as_str() {
                "train_inferred_topleft" => assert!(is_id(e1) && is_id(e2)),
                "train_inferred_cross" => {
                    assert!(is_id(e1) != is_id(e2));
                    add_edge(&mut with_values, e1, e2, label);
                }
                other => panic!("unexpected split {other}"),
            }
            add_edge(&mut inferred_only, e1, e2, label);
        }
        let id_entities: Vec<&String> = id
            .iter()
            .filter(|(_, a)| a == attribute)
            .map(|(e, _)| e)
            .collect();
        for x in &id_entities {
            for y in &id_entities {
                if x != y && expected_label(&values, attribute, x, y) >= 1 {
                    with_values
                        .entry((*x).clone())
                        .or_default()
                        .push((*y).clone());
                }
            }
        }
        for ex in probes(&ds, "test_hard") {
            let (prompt, answer) = text(&ds, ex);
            if &prompt[0] != attribute {
                continue;
            }
            let (e1, e2) = (&prompt[2], &prompt[4]);
            assert!(!is_id(e1) && !is_id(e2));
            let label = label_of(&answer, attribute);
            assert_eq!(label, expected_label(&values, attribute, e1, e2));
            assert_eq!(provable(&with_values, e1, e2), Some(label), "{prompt:?}");
            assert_ne!(provable(&inferred_only, e1, e2), Some(label), "{prompt:?}");
            hard_seen += 1;
        }
    }
    let hard = probes(&ds, "test_hard");
    assert_eq!(hard_seen, hard.len());
    let labels: HashSet<u32> = hard
        .iter()
        .map(|ex| {
            let (prompt, answer) = text(&ds, ex);
            label_of(&answer, &prompt[0])
        })
        .collect();
    assert_eq!(labels.len(), 3, "every label has hard queries");
}
