//! Golden outputs: `lens.csv`, `patch.csv`, `state_effect.csv`, `attribution.csv` and `dla.csv` of a miniature
//! checkpoint, compared with the copies in `tests/golden/`, so a refactor of the analysis core can
//! prove that it changed no result.
//!
//! The miniature run (data seed 1, 2 layers, d 32, 60 steps, one thread) is deterministic. On a
//! CPU with the same vector extensions as the one that recorded the files (`tests/golden/cpu.txt`)
//! the outputs must be byte-identical; elsewhere libtorch may take other kernels, so the numbers
//! must agree to 1e-5 (relative) and every other field exactly.
//!
//! Re-record after an intended change of results: `GROKSCOPE_RECORD_GOLDEN=1 cargo test --release
//! --test golden`, and say why in the commit.

mod common;

use common::{run_ok, s, scratch, train_miniature};
use std::path::{Path, PathBuf};

/// The analysis outputs under test, as (command, files it writes).
const OUTPUTS: [(&str, &[&str]); 4] = [
    ("lens", &["lens.csv"]),
    ("patch", &["patch.csv", "state_effect.csv"]),
    ("attribute", &["attribution.csv"]),
    ("dla", &["dla.csv"]),
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// The CPU's vector extensions that decide libtorch's kernels, as one line.
fn cpu_kernels() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let mut wanted: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| f.starts_with("avx") || *f == "fma" || *f == "amx_bf16")
        .collect();
    wanted.sort_unstable();
    wanted.join(" ")
}

/// Every field equal, except numbers, which may differ by `1e-5` relative.
fn assert_close(name: &str, got: &str, want: &str) {
    let (got_lines, want_lines): (Vec<_>, Vec<_>) = (got.lines().collect(), want.lines().collect());
    assert_eq!(got_lines.len(), want_lines.len(), "{name}: line count");
    for (row, (g, w)) in got_lines.iter().zip(&want_lines).enumerate() {
        for (gf, wf) in g.split(',').zip(w.split(',')) {
            let same = match (gf.parse::<f64>(), wf.parse::<f64>()) {
                (Ok(a), Ok(b)) => (a - b).abs() <= 1e-5 * b.abs().max(1.0) || a == b,
                _ => gf == wf,
            };
            assert!(same, "{name} line {}: {g} != {w}", row + 1);
        }
    }
}

#[test]
fn analysis_outputs_match_the_golden_files() {
    let dir = scratch("golden");
    let checkpoint = train_miniature(&dir);
    let record = std::env::var_os("GROKSCOPE_RECORD_GOLDEN").is_some();
    let golden = golden_dir();
    let same_cpu = std::fs::read_to_string(golden.join("cpu.txt"))
        .is_ok_and(|recorded| recorded.trim() == cpu_kernels());
    for (command, files) in OUTPUTS {
        let out = dir.join(command);
        let args = ["--threads", "1", command, "--checkpoint", s(&checkpoint)];
        run_ok(&[&args[..], &["--size", "40", "--out", s(&out)]].concat());
        for file in files {
            let got = std::fs::read_to_string(out.join(file)).unwrap();
            if record {
                std::fs::write(golden.join(file), &got).unwrap();
            } else {
                compare(file, &got, &golden, same_cpu);
            }
        }
    }
    if record {
        std::fs::write(golden.join("cpu.txt"), cpu_kernels() + "\n").unwrap();
    }
}

/// `got` against `tests/golden/<file>`: byte-identical on the recording CPU (`same_cpu`), else
/// close ([`assert_close`]).
fn compare(file: &str, got: &str, golden: &Path, same_cpu: bool) {
    let want = std::fs::read_to_string(golden.join(file)).unwrap();
    if same_cpu {
        assert!(
            got == want,
            "{file} is not byte-identical to tests/golden/{file}"
        );
    } else {
        assert_close(file, got, &want);
    }
}
