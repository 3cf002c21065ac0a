//! Helpers shared by the end-to-end tests of the `grokscope` command line (each test file is its
//! own crate and uses only some of them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test, built by cargo for this test target.
pub fn grokscope() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grokscope"));
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Runs the binary with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    grokscope()
        .args(args)
        .output()
        .expect("the grokscope binary runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the binary with `args` and returns its stdout; fails the test when it fails.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "grokscope {} failed: {}",
        args.join(" "),
        stderr(&out)
    );
    stdout(&out)
}

/// Runs the binary with `args`, which must fail with exit code 2 and one line on stderr; returns
/// that line.
pub fn run_err(args: &[&str]) -> String {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "grokscope {args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

/// A fresh empty folder under the target directory for one test's outputs.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A path as a command-line argument.
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Writes a miniature composition dataset (40 entities, 8 relations, out-degree 4, φ 2, 10% ID
/// test) with `seed` to `out`.
pub fn make_data(out: &Path, seed: &str) {
    let sizes = [
        "--entities",
        "40",
        "--relations",
        "8",
        "--out-degree",
        "4",
        "--phi",
        "2",
    ];
    let rest = ["--id-test-ratio", "0.1", "--seed", seed, "--out", s(out)];
    run_ok(&[&["data", "composition"][..], &sizes[..], &rest[..]].concat());
}

/// Trains the miniature checkpoint of tests/golden.rs (2 layers, 60 steps) in `dir/run`, its data in
/// `dir/data`, and returns its `model.safetensors`.
pub fn train_miniature(dir: &Path) -> PathBuf {
    train_miniature_run(dir, "steps:60").join("step-60/model.safetensors")
}

/// Trains the miniature run (2 layers, d_model 32, 60 steps, evaluated every 30) in `dir/run`
/// with its data in `dir/data` and the checkpoints `checkpoints` (a `checkpoints=` value such as
/// `steps:30,60`); returns the run folder.
pub fn train_miniature_run(dir: &Path, checkpoints: &str) -> PathBuf {
    let data = dir.join("data");
    let run_dir = dir.join("run");
    make_data(&data, "1");
    let checkpoints = format!("checkpoints={checkpoints}");
    let sets = [
        "steps=60",
        "eval_every=30",
        &checkpoints,
        "d_model=32",
        "d_mlp=64",
        "n_layer=2",
        "batch_size=64",
        "warmup_steps=10",
    ];
    run_ok(&tiny_train_args(&data, &run_dir, &sets));
    run_dir
}

/// The arguments of a small CPU training run: `--threads 1 train --preset tiny-composition --data
/// DATA --out OUT --quiet`, then `--set ITEM` for each of `sets`.
pub fn tiny_train_args<'a>(data: &'a Path, out: &'a Path, sets: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--threads", "1", "train", "--preset", "tiny-composition"];
    args.extend(["--data", s(data), "--out", s(out), "--quiet"]);
    for set in sets {
        args.extend(["--set", *set]);
    }
    args
}

/// A CSV file's header and its rows as column → value maps.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<std::collections::BTreeMap<String, String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            header
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect();
    (header, rows)
}
