//! Paper-format reading and writing: round trips, determinism, the committed fixture, and one
//! clear error for each kind of bad input.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use tasks::{CompositionParams, Dataset, Example, TaskError, TaskKind, TaskSpec};

const FILES: [&str; 5] = [
    "train.json",
    "valid.json",
    "test.json",
    "vocab.json",
    "dataset.json",
];

/// The bytes of every file of a dataset folder (absent files as None).
fn contents(dir: &Path) -> Vec<Option<Vec<u8>>> {
    FILES.iter().map(|f| fs::read(dir.join(f)).ok()).collect()
}

#[test]
fn write_read_write_gives_the_same_bytes() {
    for (name, spec) in [
        ("composition", small_composition(2)),
        ("composition3", small_composition(3)),
        ("comparison", small_comparison()),
        ("complex", small_complex()),
    ] {
        let root = scratch(&format!("round-trip-{name}"));
        let ds = Dataset::generate(&spec, 1).unwrap();
        ds.write(&root.join("a")).unwrap();
        let loaded = Dataset::load(&root.join("a")).unwrap();
        assert_eq!(loaded.kind, ds.kind);
        assert_eq!(loaded.train, ds.train);
        assert_eq!(loaded.test, ds.test);
        assert_eq!(loaded.manifest, ds.manifest);
        loaded.write(&root.join("b")).unwrap();
        let first = contents(&root.join("a"));
        assert!(
            first.iter().all(Option::is_some),
            "{name}: a file is missing"
        );
        assert_eq!(first, contents(&root.join("b")), "{name}");
    }
}

#[test]
fn same_seed_same_bytes_different_seed_different_data() {
    for (name, spec) in [
        ("composition", small_composition(2)),
        ("comparison", small_comparison()),
        ("complex", small_complex()),
    ] {
        let root = scratch(&format!("determinism-{name}"));
        Dataset::generate(&spec, 4)
            .unwrap()
            .write(&root.join("a"))
            .unwrap();
        // A second run on one thread: the data must not depend on scheduling either.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| Dataset::generate(&spec, 4))
            .unwrap()
            .write(&root.join("b"))
            .unwrap();
        Dataset::generate(&spec, 5)
            .unwrap()
            .write(&root.join("c"))
            .unwrap();
        let a = contents(&root.join("a"));
        assert_eq!(a, contents(&root.join("b")), "{name}");
        let c = contents(&root.join("c"));
        assert_ne!(
            a[0], c[0],
            "{name}: train.json is the same for another seed"
        );
    }
}

#[test]
fn paper_format_fixture_loads_and_writes_back_unchanged() {
    let ds = Dataset::load(&fixture()).unwrap();
    assert_eq!(ds.kind, TaskKind::Composition { hops: 2 });
    assert!(ds.manifest.is_none());
    assert_eq!(ds.vocab.len(), 1 + 5 + 3 + 6);
    assert_eq!((ds.train.len(), ds.valid.len(), ds.test.len()), (16, 1, 8));
    assert!(ds.train.iter().all(|ex| ex.split == "train"));
    assert_eq!(ds.valid[0].split, "valid");
    let splits: Vec<(String, usize)> = ds
        .splits()
        .into_iter()
        .map(|(s, examples)| (s, examples.len()))
        .collect();
    assert_eq!(
        splits,
        [
            ("id_atomic".to_string(), 2),
            ("ood_atomic".to_string(), 2),
            ("test_inferred_iid".to_string(), 1),
            ("test_inferred_ood".to_string(), 1),
            ("train_inferred".to_string(), 2),
        ]
    );
    assert_eq!(ds.max_len(), 5);
    let id = |t: &str| ds.vocab.id(t).unwrap();
    assert_eq!(ds.facts.len(), 10);
    assert_eq!(ds.facts.tail(id("<e_0>"), id("<r_0>")), Some(id("<e_1>")));
    assert_eq!(
        ds.facts.bridges(id("<e_3>"), &[id("<r_1>"), id("<r_1>")]),
        Some(vec![id("<e_4>")])
    );
    assert!(ds.facts.is_id(id("<e_0>"), id("<r_0>")));
    assert!(!ds.facts.is_id(id("<e_3>"), id("<r_1>")));
    let inferred = &ds.train[10];
    assert_eq!(
        ds.vocab.decode(&inferred.tokens),
        "<e_0><r_0><r_0><e_3></a>"
    );
    assert_eq!(inferred.loss_positions, vec![2, 3]);

    let out = scratch("fixture-copy").join("copy");
    ds.write(&out).unwrap();
    for file in ["train.json", "valid.json", "test.json", "vocab.json"] {
        assert_eq!(
            fs::read(out.join(file)).unwrap(),
            fs::read(fixture().join(file)).unwrap(),
            "{file}"
        );
    }
    assert!(!out.join("dataset.json").exists());
}

/// A copy of the fixture with `file` rewritten by `edit`; returns the load error's message.
fn load_error(name: &str, file: &str, edit: impl Fn(String) -> String) -> String {
    let dir = scratch(name);
    for f in ["train.json", "valid.json", "test.json", "vocab.json"] {
        let text = fs::read_to_string(fixture().join(f)).unwrap();
        let text = if f == file { edit(text) } else { text };
        fs::write(dir.join(f), text).unwrap();
    }
    Dataset::load(&dir).unwrap_err().to_string()
}

#[test]
fn malformed_json_names_the_file_and_position() {
    let err = load_error("bad-json", "train.json", |t| t[..t.len() - 20].to_string());
    assert!(err.contains("train.json: malformed JSON"), "{err}");
    assert!(err.contains("line 1 column"), "{err}");
    let err = load_error("bad-shape", "valid.json", |_| "{\"input_text\": 1}".into());
    assert!(err.contains("valid.json: malformed JSON"), "{err}");
}

#[test]
fn unknown_token_names_the_file_and_record() {
    let err = load_error("bad-token", "test.json", |t| {
        t.replacen("<e_2><r_2>", "<e_2><r_9>", 2)
    });
    assert!(err.contains("test.json: record 2:"), "{err}");
    assert!(err.contains("unknown token `<r_9>`"), "{err}");
}

#[test]
fn conflicting_tails_name_both_records() {
    let err = load_error("bad-tails", "train.json", |t| {
        t.replacen(
            "[",
            "[{\"input_text\": \"<e_1><r_2>\", \"target_text\": \"<e_1><r_2><e_0></a>\"}, ",
            1,
        )
    });
    assert!(err.contains("train.json: record 5:"), "{err}");
    assert!(
        err.contains("two different tails for (<e_1>, <r_2>)"),
        "{err}"
    );
    assert!(err.contains("train.json record 1"), "{err}");
}

#[test]
fn inconsistent_answers_and_wrong_shapes_are_named() {
    let err = load_error("bad-answer", "test.json", |t| {
        t.replace("<e_2><r_1><r_1><e_2></a>", "<e_2><r_1><r_1><e_4></a>")
    });
    assert!(err.contains("test.json: record 7: answer `<e_4>`"), "{err}");
    let err = load_error("bad-record", "valid.json", |t| {
        t.replace("<e_1></a>", "<e_1>")
    });
    assert!(err.contains("valid.json: record 1:"), "{err}");
    assert!(err.contains("composition record"), "{err}");
}

fn param_error(params: CompositionParams) -> String {
    match Dataset::generate(&TaskSpec::Composition(params), 0) {
        Err(err @ TaskError::Param { .. }) => err.to_string(),
        other => panic!("expected a parameter error, got {other:?}"),
    }
}

#[test]
fn bad_parameters_name_the_flag() {
    let TaskSpec::Composition(small) = small_composition(2) else {
        unreachable!()
    };
    let err = param_error(CompositionParams {
        phi: 100.0,
        ..small.clone()
    });
    assert!(err.starts_with("--phi: 100 needs"), "{err}");
    assert!(err.contains("largest phi here"), "{err}");
    let err = param_error(CompositionParams {
        out_degree: 30,
        ..small.clone()
    });
    assert!(
        err.starts_with("--out-degree: 30 is larger than --relations 20"),
        "{err}"
    );
    let err = param_error(CompositionParams {
        entities: 0,
        ..small.clone()
    });
    assert!(err.starts_with("--entities: must be at least 1"), "{err}");
    let err = param_error(CompositionParams {
        hops: 5,
        ..small.clone()
    });
    assert!(err.starts_with("--hops"), "{err}");
    for shorter in [vec![3], vec![1], vec![2, 2]] {
        let err = param_error(CompositionParams {
            hops: 3,
            shorter_hops: shorter,
            ..small.clone()
        });
        assert!(err.starts_with("--shorter-hops"), "{err}");
    }
}

/// Names of the entries of `dir`.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn output_folder_with_another_dataset_is_left_alone() {
    let root = scratch("occupied");
    let out = root.join("data");
    let spec = small_composition(2);
    Dataset::generate(&spec, 0).unwrap().write(&out).unwrap();
    let before = contents(&out);

    // The same dataset again replaces it.
    Dataset::generate(&spec, 0).unwrap().write(&out).unwrap();
    assert_eq!(contents(&out), before);

    // Another seed is a different dataset: refused, nothing changed, nothing left behind.
    let err = Dataset::generate(&spec, 1)
        .unwrap()
        .write(&out)
        .unwrap_err();
    assert!(matches!(err, TaskError::OutputOccupied { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("already holds a different dataset"),
        "{err}"
    );
    assert_eq!(contents(&out), before);
    assert_eq!(entries(&root), ["data"]);

    // A folder of other files is refused too.
    let other = root.join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("notes.txt"), "mine").unwrap();
    let err = Dataset::generate(&spec, 0)
        .unwrap()
        .write(&other)
        .unwrap_err();
    assert!(err.to_string().contains("holds no dataset.json"), "{err}");
    assert_eq!(entries(&other), ["notes.txt"]);
    assert_eq!(entries(&root), ["data", "other"]);
}

#[test]
fn manifest_that_disagrees_with_the_files_is_an_error() {
    let dir = scratch("manifest").join("ds");
    Dataset::generate(&small_comparison(), 0)
        .unwrap()
        .write(&dir)
        .unwrap();
    let manifest = fs::read_to_string(dir.join("dataset.json")).unwrap();
    let edited = manifest.replacen("\"vocab_size\": ", "\"vocab_size\": 1", 1);
    fs::write(dir.join("dataset.json"), edited).unwrap();
    let err = Dataset::load(&dir).unwrap_err().to_string();
    assert!(err.contains("dataset.json: vocab_size"), "{err}");
}

#[test]
fn shorter_hops_add_the_shorter_datasets_queries_over_the_same_graph() {
    let TaskSpec::Composition(three) = small_composition(3) else {
        unreachable!()
    };
    let three = CompositionParams { phi: 3.0, ..three };
    let two = CompositionParams {
        hops: 2,
        ..three.clone()
    };
    let mixed = CompositionParams {
        shorter_hops: vec![2],
        ..three.clone()
    };
    let generate =
        |p: &CompositionParams| Dataset::generate(&TaskSpec::Composition(p.clone()), 4).unwrap();
    let (three_ds, two_ds, mixed_ds) = (generate(&three), generate(&two), generate(&mixed));
    let key = |ex: &Example| (ex.split.clone(), ex.tokens.clone());
    let queries = |ds: &Dataset, suffix: &str| -> Vec<_> {
        let of = |examples: &[Example]| -> Vec<_> {
            let inferred = examples.iter().filter(|ex| ex.prompt_len > 2);
            inferred
                .map(|ex| (format!("{}{suffix}", ex.split), ex.tokens.clone()))
                .collect()
        };
        [of(&ds.train), of(&ds.test)].concat()
    };
    // The 3-hop files unchanged, then the 2-hop queries (atomic facts once), test splits renamed.
    let n_three = three_ds.train.len();
    assert_eq!(
        mixed_ds.train[..n_three]
            .iter()
            .map(key)
            .collect::<Vec<_>>(),
        three_ds.train.iter().map(key).collect::<Vec<_>>()
    );
    let added_train = mixed_ds.train[n_three..].iter().map(key);
    let added_test = mixed_ds.test[three_ds.test.len()..].iter().map(key);
    let two_queries = queries(&two_ds, "");
    let (two_train, two_test) =
        two_queries.split_at(two_ds.train.iter().filter(|ex| ex.prompt_len > 2).count());
    assert_eq!(added_train.collect::<Vec<_>>(), two_train);
    let renamed: Vec<_> = two_test
        .iter()
        .map(|(s, t)| (format!("{s}_2hop"), t.clone()))
        .collect();
    assert_eq!(added_test.collect::<Vec<_>>(), renamed);
    assert!(
        renamed.iter().any(|(s, _)| s == "test_inferred_iid_2hop"),
        "{renamed:?}"
    );
    // Written and read back: a 3-hop dataset whose 2-hop answers follow the same atomic facts.
    let dir = scratch("shorter-hops");
    mixed_ds.write(&dir).unwrap();
    let loaded = Dataset::load(&dir).unwrap();
    assert_eq!(loaded.kind, TaskKind::Composition { hops: 3 });
    assert_eq!(loaded.train.len(), mixed_ds.train.len());
    assert_eq!(
        TaskSpec::Composition(mixed).name(),
        "composition3+2.60.12.3.0"
    );
}
