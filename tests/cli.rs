//! End-to-end tests of the `grokscope` command line: each runs the real binary.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The binary under test, built by cargo for this test target.
fn grokscope() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grokscope"));
    cmd.env("NO_COLOR", "1");
    cmd
}

fn run(args: &[&str]) -> Output {
    grokscope()
        .args(args)
        .output()
        .expect("the grokscope binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh empty folder under the target directory for one test's outputs.
#[allow(dead_code)]
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
    assert!(text.contains("libtorch    2.11.0"), "{text}");
    assert!(text.contains("device      cpu"), "{text}");
    assert!(text.contains("threads     2"), "{text}");
    assert!(text.contains("matmul      ok"), "{text}");
}

#[test]
fn bad_global_options_fail_with_one_line() {
    let out = run(&["--threads", "0", "doctor"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).trim(), "error: --threads must be at least 1");
    let out = run(&["--device", "tpu", "doctor"]);
    assert_eq!(out.status.code(), Some(2));
}
