//! Presets, config files and `--set` overrides, including every kind of bad input.

use train::{BlockSchedule, CheckpointSchedule, TrainConfig, PRESETS};

fn preset(name: &str) -> TrainConfig {
    TrainConfig::preset(name).unwrap()
}

/// Writes `text` to a scratch file `name` and reads it as a config file.
fn from_file_text(name: &str, text: &str) -> train::Result<TrainConfig> {
    let dir = std::env::temp_dir().join(format!("train-config-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let cfg = TrainConfig::from_file(&file);
    std::fs::remove_dir_all(&dir).unwrap();
    cfg
}

fn set_err(cfg: &TrainConfig, item: &str) -> String {
    let mut cfg = cfg.clone();
    match cfg.apply_overrides(&[item.to_string()]) {
        Ok(()) => panic!("--set {item} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_preset_is_valid() {
    for name in PRESETS {
        let cfg = preset(name);
        cfg.validate().unwrap();
        assert_eq!(cfg.preset.as_deref(), Some(name));
        assert!(cfg.dataset.is_some(), "{name}");
    }
    let sharing = preset("paper-sharing");
    assert_eq!(sharing.blocks(), vec![0, 1, 2, 3, 0, 1, 2, 3]);
    assert_eq!(sharing.weight_decay, 0.3);
    let paper = preset("paper-composition");
    assert_eq!(
        (paper.n_layer, paper.d_model, paper.n_head, paper.batch_size),
        (8, 768, 12, 512)
    );
    assert_eq!(
        (
            paper.lr,
            paper.weight_decay,
            paper.warmup_steps,
            paper.steps
        ),
        (1e-4, 0.1, 2000, 1_500_000)
    );
    assert_eq!(paper.checkpoints, CheckpointSchedule::Paper);
    let err = TrainConfig::preset("tiny").unwrap_err().to_string();
    assert!(
        err.contains("unknown preset") && err.contains("tiny-composition"),
        "{err}"
    );
}

#[test]
fn overrides_change_typed_values() {
    let mut cfg = preset("tiny-composition");
    let items = [
        "steps=123",
        "batch_size=64",
        "lr=5e-4",
        "weight_decay=1.0",
        "warmup_steps=7",
        "seed=9",
        "n_layer=2",
        "d_model=64",
        "n_head=2",
        "d_mlp=256",
        "dropout=0.1",
        "eval_every=10",
        "schedule=repeat:3",
        "checkpoints=log:12",
        "lr_schedule=cosine",
        "dataset.params.phi=7.2",
        "dataset.seed=3",
    ];
    cfg.apply_overrides(&items.map(String::from)).unwrap();
    assert_eq!(
        (cfg.steps, cfg.batch_size, cfg.lr, cfg.weight_decay),
        (123, 64, 5e-4, 1.0)
    );
    assert_eq!(
        (cfg.warmup_steps, cfg.seed, cfg.n_layer, cfg.d_model),
        (7, 9, 2, 64)
    );
    assert_eq!(
        (cfg.n_head, cfg.d_mlp, cfg.dropout, cfg.eval_every),
        (2, 256, 0.1, 10)
    );
    assert_eq!(cfg.schedule, BlockSchedule::Repeat(3));
    assert_eq!(cfg.blocks(), vec![0, 1, 0, 1, 0, 1]);
    assert_eq!(cfg.checkpoints, CheckpointSchedule::Log(12));
    let spec = cfg.dataset.as_ref().unwrap();
    assert_eq!(spec.seed, 3);
    assert!(serde_json::to_string(spec).unwrap().contains("\"phi\":7.2"));

    cfg.apply_overrides(&["n_layer=4".into(), "schedule=[0,1,2,3,0,1,2,3]".into()])
        .unwrap();
    assert_eq!(cfg.blocks(), vec![0, 1, 2, 3, 0, 1, 2, 3]);
    cfg.apply_overrides(&["n_layer=1".into(), "schedule=repeat:6".into()])
        .unwrap();
    assert_eq!(cfg.blocks(), vec![0; 6]);
}

#[test]
fn bad_overrides_name_the_key() {
    let cfg = preset("tiny-composition");
    let cases = [
        ("stepz=10", "unknown config key \"stepz\""),
        (
            "dataset.params.phy=1",
            "unknown config key \"dataset.params.phy\"",
        ),
        ("steps", "expected key=value"),
        ("batch_size=abc", "batch_size"),
        ("batch_size=0", "batch_size = 0"),
        ("batch_size=-3", "batch_size"),
        ("lr=-1", "lr = -1"),
        ("lr=0", "lr = 0"),
        ("weight_decay=-0.1", "weight_decay"),
        ("dropout=1.5", "dropout"),
        ("d_model=130", "not a multiple of n_head"),
        ("schedule=[0,1,7]", "block 7"),
        ("schedule=[0,1]", "never uses block 2"),
        ("schedule=loop", "schedule"),
        ("checkpoints=every:0", "checkpoints"),
        ("lr_schedule=linear", "lr_schedule"),
        ("precision=fp8", "precision"),
        ("dataset.params.ood_ratio=2", "ood-ratio"),
        ("steps=1.5", "steps"),
    ];
    for (item, want) in cases {
        let err = set_err(&cfg, item);
        assert!(err.contains(want), "--set {item}: {err:?} lacks {want:?}");
        assert!(
            !err.contains('\n'),
            "--set {item}: multi-line error {err:?}"
        );
    }
}

#[test]
fn config_files_in_toml_and_json() {
    let dir = std::env::temp_dir().join(format!("train-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let toml = dir.join("a.toml");
    std::fs::write(
        &toml,
        "preset = \"tiny-comparison\"\nsteps = 77\n[dataset.params]\nphi = 3.6\n",
    )
    .unwrap();
    let cfg = TrainConfig::from_file(&toml).unwrap();
    assert_eq!(cfg.steps, 77);
    assert_eq!(cfg.n_layer, 4);
    assert!(serde_json::to_string(&cfg.dataset)
        .unwrap()
        .contains("\"phi\":3.6"));

    let full = dir.join("full.json");
    std::fs::write(
        &full,
        serde_json::to_string_pretty(&preset("tiny-composition")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        TrainConfig::from_file(&full).unwrap(),
        preset("tiny-composition")
    );
    let mut no_preset = preset("tiny-composition");
    no_preset.preset = None;
    std::fs::write(&full, serde_json::to_string(&no_preset).unwrap()).unwrap();
    assert_eq!(TrainConfig::from_file(&full).unwrap(), no_preset);

    let bad = [
        (
            "b.toml",
            "preset = \"tiny-comparison\"\nstepz = 3\n",
            "stepz",
        ),
        (
            "c.toml",
            "preset = \"tiny-comparison\"\n[dataset.params]\nphy = 1\n",
            "dataset.params.phy",
        ),
        (
            "d.toml",
            "preset = \"tiny-comparison\"\nbatch_size = \"big\"\n",
            "batch_size",
        ),
        (
            "e.toml",
            "preset = \"tiny-comparison\"\nbatch_size = 0\n",
            "batch_size = 0",
        ),
        ("f.toml", "preset = \"nope\"\n", "unknown preset"),
        ("g.toml", "steps = [", "g.toml"),
        ("h.json", "{\"steps\": 3}", "missing field"),
    ];
    for (name, text, want) in bad {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let err = TrainConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
    }
    let missing = TrainConfig::from_file(&dir.join("absent.toml"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("absent.toml"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resumable_keys_do_not_change_the_trajectory() {
    let a = preset("tiny-composition");
    let mut b = a.clone();
    b.apply_overrides(&[
        "steps=99999".into(),
        "eval_every=7".into(),
        "checkpoints=every:5".into(),
    ])
    .unwrap();
    assert_eq!(a.trajectory_hash(), b.trajectory_hash());
    assert!(a.trajectory_differences(&b).is_empty());
    b.apply_overrides(&["lr=1e-3".into()]).unwrap();
    assert_ne!(a.trajectory_hash(), b.trajectory_hash());
    let diffs = b.trajectory_differences(&a);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(
        diffs[0].starts_with("lr was 0.002 and is now 0.001"),
        "{diffs:?}"
    );
    let mut c = a.clone();
    c.apply_overrides(&["lr_schedule=cosine".into()]).unwrap();
    let mut d = c.clone();
    d.apply_overrides(&["steps=10".into()]).unwrap();
    assert_ne!(
        c.trajectory_hash(),
        d.trajectory_hash(),
        "cosine depends on steps"
    );
}

#[test]
fn extra_vocab_rows_is_optional_and_changes_the_trajectory() {
    let plain = preset("tiny-composition");
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("extra_vocab_rows"), "{json}");
    let mut wide = plain.clone();
    wide.apply_overrides(&["extra_vocab_rows=50257".into()])
        .unwrap();
    assert_eq!(wide.extra_vocab_rows, Some(50257));
    let diffs = wide.trajectory_differences(&plain);
    assert_eq!(
        diffs,
        ["extra_vocab_rows was unset and is now 50257".to_string()]
    );
    let err = set_err(&plain, "extra_vocab_rows=-1");
    assert!(err.contains("extra_vocab_rows"), "{err}");
    let text = "preset = \"tiny-composition\"\nextra_vocab_rows = 12\n";
    assert_eq!(
        from_file_text("rows.toml", text).unwrap().extra_vocab_rows,
        Some(12)
    );
}

#[test]
fn shorter_hops_can_be_set_on_the_composition_generator() {
    let mut cfg = preset("tiny-composition");
    cfg.apply_overrides(&[
        "dataset.params.hops=3".into(),
        "dataset.params.shorter_hops=[2]".into(),
    ])
    .unwrap();
    let json = serde_json::to_string(&cfg.dataset).unwrap();
    assert!(json.contains("\"shorter_hops\":[2]"), "{json}");
    assert!(!serde_json::to_string(&preset("tiny-composition").dataset)
        .unwrap()
        .contains("shorter_hops"));
    let err = set_err(
        &preset("tiny-composition"),
        "dataset.params.shorter_hops=[3]",
    );
    assert!(err.contains("shorter-hops"), "{err}");
    // A config file naming a preset may add it too (what `sweep plan` writes for each point).
    let text = serde_json::to_string(&cfg).unwrap();
    assert_eq!(from_file_text("mixed.json", &text).unwrap(), cfg);
}
