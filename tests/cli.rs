//! End-to-end tests of the `grokscope` command line: each runs the real binary.

mod common;

use common::{make_data, run, run_ok, scratch, stderr, stdout};

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("grokscope {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["--help"]);
    assert!(out.status.success());
    for word in ["doctor", "--device", "--threads"] {
        assert!(stdout(&out).contains(word), "--help lacks {word}");
    }
}

#[test]
fn doctor_runs_libtorch_on_cpu() {
    let out = run(&["--device", "cpu", "--threads", "2", "doctor"]);
    assert!(out.status.success(), "doctor failed: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("libtorch     2.11.0\n"), "{text}");
    assert!(text.contains("device       cpu\n"), "{text}");
    assert!(text.contains("threads      2\n"), "{text}");
    assert!(text.contains("matmul       ok"), "{text}");
}

#[test]
fn bad_global_options_fail_with_one_line() {
    let out = run(&["--threads", "0", "doctor"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).trim(), "error: --threads must be at least 1");
    let out = run(&["--device", "tpu", "doctor"]);
    assert_eq!(out.status.code(), Some(2));
}

fn assert_nonempty(path: &std::path::Path) {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(len > 0, "{} is missing or empty", path.display());
}

#[test]
fn data_bad_input_exits_2_with_one_line() {
    let dir = scratch("data-bad");
    let out_dir = dir.join("d");
    let out = run(&[
        "data",
        "composition",
        "--entities",
        "20",
        "--relations",
        "5",
        "--out-degree",
        "6",
        "--phi",
        "1",
        "--seed",
        "0",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("out-degree"), "{}", stderr(&out));
    assert!(!out_dir.exists(), "a failed run left {}", out_dir.display());
    let sizes = ["--entities", "20", "--relations", "5", "--out-degree", "3"];
    let out = run(&[
        &["data", "composition"][..],
        &sizes,
        &[
            "--hops",
            "2",
            "--shorter-hops",
            "2",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    ]
    .concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("--shorter-hops"), "{}", stderr(&out));
    assert!(!out_dir.exists(), "a failed run left {}", out_dir.display());
}

/// The whole pipeline in miniature through the CLI: data → train → trace → plot → report, then
/// every output file is checked.
#[test]
fn miniature_pipeline_end_to_end() {
    let dir = scratch("pipeline");
    let data = dir.join("data");
    let run_dir = dir.join("run");
    let analysis = dir.join("analysis");
    let (data_s, run_s, an_s) = (
        data.to_str().unwrap(),
        run_dir.to_str().unwrap(),
        analysis.to_str().unwrap(),
    );
    make_data(&data, "1");
    for file in [
        "train.json",
        "valid.json",
        "test.json",
        "vocab.json",
        "dataset.json",
    ] {
        assert_nonempty(&data.join(file));
    }
    let train = [
        "--threads",
        "2",
        "train",
        "--preset",
        "tiny-composition",
        "--data",
        data_s,
        "--out",
        run_s,
        "--quiet",
        "--set",
        "steps=60",
        "--set",
        "eval_every=20",
        "--set",
        "checkpoints=steps:20,40,60",
        "--set",
        "d_model=32",
        "--set",
        "d_mlp=64",
        "--set",
        "n_layer=2",
        "--set",
        "batch_size=64",
        "--set",
        "warmup_steps=10",
    ];
    run_ok(&train);
    for step in [20, 40, 60] {
        assert_nonempty(&run_dir.join(format!("step-{step}/model.safetensors")));
    }
    let metrics = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 3, "{metrics}");
    assert!(metrics
        .lines()
        .next()
        .unwrap()
        .contains("test_inferred_iid_acc"));
    let again = run_ok(&train);
    assert!(
        !again.contains("steps/s training"),
        "a finished run trained again: {again}"
    );

    run_ok(&[
        "--threads",
        "2",
        "trace",
        "--run",
        run_s,
        "--out",
        an_s,
        "--size",
        "20",
        "--quiet",
    ]);
    for file in [
        "lens.csv",
        "patch.csv",
        "attention.csv",
        "trace.json",
        "examples.jsonl",
    ] {
        assert_nonempty(&analysis.join(file));
    }
    let attention = std::fs::read_to_string(analysis.join("attention.csv")).unwrap();
    assert!(attention.starts_with("step,example,layer,head,query,key,value"));
    for step in ["20,mean,", "60,mean,", "60,0,"] {
        assert!(attention.lines().any(|l| l.starts_with(step)), "{step}");
    }
    let lens = std::fs::read_to_string(analysis.join("lens.csv")).unwrap();
    assert!(
        lens.starts_with("step,layer,position,target,metric,value"),
        "{lens}"
    );
    for step in ["20,", "40,", "60,"] {
        assert!(
            lens.lines().any(|l| l.starts_with(step)),
            "lens.csv lacks step {step}"
        );
    }
    let patch = std::fs::read_to_string(analysis.join("patch.csv")).unwrap();
    assert!(patch.starts_with("step,corruption,direction,component,layer,position,metric,value"));

    let ckpt = run_dir.join("step-60/model.safetensors");
    let ckpt_s = ckpt.to_str().unwrap();
    probes_dla_and_cache(&dir, run_s, ckpt_s, an_s);
    tuned_lens(&dir, ckpt_s);

    run_ok(&["report", "--run", run_s, "--out", an_s]);
    let html = std::fs::read_to_string(analysis.join("index.html")).unwrap();
    let pngs: Vec<_> = std::fs::read_dir(&analysis)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    let names: Vec<String> = pngs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for prefix in [
        "training_accuracy",
        "lens_b1_mrr",
        "lens_r2_mrr",
        "patch_noising_r1",
        "circuit_change",
        "attention_step60_mean",
        "attention_step60_example0",
        "attention_from_r2_over_steps",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "no {prefix}* figure in {names:?}"
        );
    }
    for png in &pngs {
        let bytes = std::fs::read(png).unwrap();
        assert_eq!(
            &bytes[..8],
            b"\x89PNG\r\n\x1a\n",
            "{} is not a PNG",
            png.display()
        );
        let name = png.file_name().unwrap().to_str().unwrap();
        assert!(html.contains(name), "index.html does not show {name}");
    }
}

/// `probe` (both solvers, over a run), `dla` and `cache` on the miniature run: outputs exist and
/// hold what they say; bad input exits 2 with one line.
fn probes_dla_and_cache(dir: &std::path::Path, run_s: &str, ckpt_s: &str, an_s: &str) {
    for solver in ["logistic", "ridge"] {
        let printed = run_ok(&[
            "--threads",
            "2",
            "probe",
            "--run",
            run_s,
            "--out",
            an_s,
            "--size",
            "60",
            "--target",
            "b1",
            "--solver",
            solver,
            "--iterations",
            "20",
        ]);
        assert!(printed.contains("target b1"), "{printed}");
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(std::path::Path::new(an_s).join("probe_summary.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(summary["solver"], solver);
        let csv = std::fs::read_to_string(std::path::Path::new(an_s).join("probe.csv")).unwrap();
        for step in ["20,", "40,", "60,"] {
            assert!(
                csv.lines()
                    .any(|l| l.starts_with(step) && l.contains(",probe_acc,")),
                "probe.csv lacks step {step}"
            );
        }
    }
    let printed = run_ok(&["dla", "--checkpoint", ckpt_s, "--out", an_s, "--size", "30"]);
    assert!(printed.contains("mlp_out"), "{printed}");
    assert_nonempty(&std::path::Path::new(an_s).join("dla.csv"));
    let acts = dir.join("acts.safetensors");
    run_ok(&[
        "cache",
        "--checkpoint",
        ckpt_s,
        "--hooks",
        "blocks.*.hook_resid_post",
        "--limit",
        "10",
        "--out",
        acts.to_str().unwrap(),
    ]);
    assert_nonempty(&acts);

    let bad: [&[&str]; 4] = [
        &[
            "probe",
            "--checkpoint",
            ckpt_s,
            "--out",
            an_s,
            "--target",
            "nope",
        ],
        &[
            "probe",
            "--checkpoint",
            ckpt_s,
            "--out",
            an_s,
            "--solver",
            "newton",
        ],
        &[
            "cache",
            "--checkpoint",
            ckpt_s,
            "--hooks",
            "blocks.*.hook_nope",
            "--out",
            an_s,
        ],
        &[
            "dla",
            "--checkpoint",
            ckpt_s,
            "--out",
            an_s,
            "--alternative",
            "<no such token>",
        ],
    ];
    for args in bad {
        let out = run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// `tuned-lens` on the miniature run's last checkpoint: the translators lower the KL from the
/// final distribution at every layer, `lens --tuned-lens` reads them back to the same numbers, and
/// the comparison figure is drawn.
fn tuned_lens(dir: &std::path::Path, ckpt_s: &str) {
    let out = dir.join("tuned");
    let out_s = out.to_str().unwrap();
    let base = [
        "--threads",
        "2",
        "tuned-lens",
        "--checkpoint",
        ckpt_s,
        "--out",
        out_s,
    ];
    run_ok(
        &[
            &base[..],
            &["--size", "20", "--fit-size", "200", "--steps", "150"],
        ]
        .concat(),
    );
    let fit = std::fs::read_to_string(out.join("tuned_lens_fit.csv")).unwrap();
    assert!(
        fit.starts_with("layer,kl_logit_lens,kl_tuned_lens"),
        "{fit}"
    );
    for line in fit.lines().skip(1) {
        let kl: Vec<f64> = line
            .split(',')
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(kl[1] < kl[0], "the tuned lens did not lower the KL: {line}");
    }
    assert_nonempty(&out.join("lens_vs_tuned_b1.png"));
    let again = dir.join("tuned-again");
    let lens_args = [
        "--threads",
        "2",
        "lens",
        "--checkpoint",
        ckpt_s,
        "--size",
        "20",
    ];
    let file = out.join("tuned_lens.safetensors");
    let extra = [
        "--out",
        again.to_str().unwrap(),
        "--tuned-lens",
        file.to_str().unwrap(),
    ];
    run_ok(&[&lens_args[..], &extra[..]].concat());
    assert_eq!(
        std::fs::read_to_string(again.join("lens.csv")).unwrap(),
        std::fs::read_to_string(out.join("tuned_lens.csv")).unwrap()
    );
    let bad = [&base[..], &["--steps", "0"]].concat();
    let out_bad = run(&bad);
    assert_eq!(out_bad.status.code(), Some(2));
}

/// The last row of a run's `metrics.csv` as column → value, without the step bookkeeping columns.
fn last_eval(run: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let last: Vec<&str> = lines.last().unwrap().split(',').collect();
    header
        .iter()
        .zip(last)
        .filter(|(h, _)| !["step", "epoch", "lr", "train_loss", "grad_norm"].contains(h))
        .map(|(h, v)| (h.to_string(), v.to_string()))
        .collect()
}

#[test]
fn training_starts_from_a_checkpoint_with_init() {
    let dir = scratch("train-init");
    let ckpt = common::train_miniature(&dir);
    let data = dir.join("data");
    let sizes = ["d_model=32", "d_mlp=64", "batch_size=64", "warmup_steps=0"];
    let init = format!("init={}", ckpt.display());
    let train = |out: &std::path::Path, extra: &[&str]| {
        let sets: Vec<&str> = sizes
            .iter()
            .chain(extra)
            .copied()
            .chain([init.as_str()])
            .collect();
        run(&common::tiny_train_args(&data, out, &sets))
    };
    // With a learning rate of 1e-30 (every update below the weights' float resolution) the weights
    // stay the checkpoint's: the evaluation at step 1 is the source run's at its last step.
    let still = dir.join("still");
    let extra = [
        "n_layer=2",
        "lr=1e-30",
        "steps=1",
        "eval_every=1",
        "checkpoints=steps:1",
    ];
    let out = train(&still, &extra);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(last_eval(&still), last_eval(&dir.join("run")));
    let config = std::fs::read_to_string(still.join("config.json")).unwrap();
    assert!(config.contains("\"init\""), "{config}");
    // A checkpoint of another shape is refused before anything is written.
    let other = dir.join("other");
    let out = train(&other, &["n_layer=3", "steps=1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("init") && err.contains("3 blocks"), "{err}");
    assert!(!other.exists(), "the refused run wrote {other:?}");
}

#[test]
fn training_with_extra_vocab_rows_keeps_the_task_rows_and_ranks_over_all() {
    let dir = scratch("train-extra-rows");
    let data = dir.join("data");
    make_data(&data, "1");
    let run_dir = dir.join("run");
    let sets = [
        "extra_vocab_rows=300",
        "steps=20",
        "eval_every=20",
        "checkpoints=steps:20",
        "d_model=32",
        "d_mlp=64",
        "n_layer=2",
        "batch_size=64",
    ];
    run_ok(&common::tiny_train_args(&data, &run_dir, &sets));
    let config = std::fs::read_to_string(run_dir.join("config.json")).unwrap();
    assert!(config.contains("\"extra_vocab_rows\": 300"), "{config}");
    // The task's tokens keep rows 0..V, recorded in the metadata; 300 rows follow them.
    let ckpt_path = run_dir.join("step-20/model.safetensors");
    let ckpt = model::Checkpoint::load(&ckpt_path, tch::Device::Cpu).unwrap();
    let map = ckpt.metadata[model::token_map::TOKEN_ROWS_KEY].clone();
    let rows: std::collections::BTreeMap<String, i64> = serde_json::from_str(&map).unwrap();
    let tokens: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(data.join("vocab.json")).unwrap()).unwrap();
    let mut taken: Vec<i64> = rows.values().copied().collect();
    taken.sort_unstable();
    assert_eq!(taken, (0..rows.len() as i64).collect::<Vec<_>>());
    assert!(tokens.iter().all(|t| rows.contains_key(t)), "{rows:?}");
    assert_eq!(ckpt.config.vocab_size, rows.len() + 300);
    // The analyses read it and rank over every row, the unused ones included.
    let lens_dir = dir.join("lens");
    let ckpt_s = ckpt_path.to_str().unwrap();
    let (data_s, lens_s) = (data.to_str().unwrap(), lens_dir.to_str().unwrap());
    run_ok(&[
        "lens",
        "--checkpoint",
        ckpt_s,
        "--data",
        data_s,
        "--out",
        lens_s,
    ]);
    let (_, lens) = common::read_csv(&lens_dir.join("lens.csv"));
    let worst = lens
        .iter()
        .filter(|r| r["metric"] == "mean_rank")
        .map(|r| r["value"].parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    assert!(
        worst > rows.len() as f64 && worst <= ckpt.config.vocab_size as f64,
        "{worst}"
    );
}

#[test]
fn chart_draws_any_csv_and_refuses_bad_columns() {
    let dir = scratch("chart");
    let csv = dir.join("loops.csv");
    let rows = "seed,loops,split,acc\n1,1,a,0.1\n2,1,a,0.3\n1,2,a,0.5\n1,1,b,0.9\n";
    std::fs::write(&csv, rows).unwrap();
    let png = dir.join("out/loops.png");
    let (csv_s, png_s) = (csv.to_str().unwrap(), png.to_str().unwrap());
    let base = ["chart", "--csv", csv_s, "--x", "loops", "--y", "acc"];
    let out = run_ok(
        &[
            &base[..],
            &["--series", "split", "--y-range", "0,1", "--out", png_s],
        ]
        .concat(),
    );
    assert!(out.contains("(2 lines)"), "{out}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..4], b"\x89PNG");
    let bad = dir.join("bad.png");
    let bad_s = bad.to_str().unwrap();
    for extra in [
        &["--series", "nope"][..],
        &["--where", "split=z"],
        &["--y-range", "1,0"],
    ] {
        let out = run(&[&base[..], extra, &["--out", bad_s]].concat());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
        assert!(!bad.exists(), "{extra:?} wrote {bad:?}");
    }
}
