//! End-to-end test of `grokscope trace --edges` on a miniature run with two checkpoints: the
//! edge and circuit files over steps agree with each other, the circuit change between the
//! saturation and the last checkpoint matches the circuits there, the charts are drawn, and bad
//! edge options fail with one line and exit 2, writing none of the edge files.

mod common;

use common::{read_csv, run_err, run_ok, s, scratch};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The files `trace --edges` writes.
const EDGE_FILES: [&str; 6] = [
    "edges_over_steps.csv",
    "circuits_over_steps.csv",
    "edge_changes.csv",
    "edge_scores.png",
    "circuit_saturation.png",
    "circuit_end.png",
];

/// An edge's name: sender, receiver, position.
fn key(row: &BTreeMap<String, String>) -> (String, String, String) {
    (
        row["sender"].clone(),
        row["receiver"].clone(),
        row["position"].clone(),
    )
}

/// Checks edges_over_steps.csv against circuits_over_steps.csv; returns per step the edges in
/// the circuit.
fn check_steps(out: &Path) -> BTreeMap<String, BTreeSet<(String, String, String)>> {
    let (header, edges) = read_csv(&out.join("edges_over_steps.csv"));
    let expected = "step,sender,receiver,position,score,rank,in_circuit";
    assert_eq!(header.join(","), expected);
    let (header, circuits) = read_csv(&out.join("circuits_over_steps.csv"));
    let expected = "step,edges_kept,recovered,metric,clean,corrupted";
    assert_eq!(header.join(","), expected);
    assert_eq!(circuits.len(), 2, "{circuits:?}");
    let mut all: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
    let mut kept: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
    for row in &edges {
        all.entry(row["step"].clone()).or_default().insert(key(row));
        if row["in_circuit"] == "true" {
            kept.entry(row["step"].clone())
                .or_default()
                .insert(key(row));
        }
    }
    let sets: Vec<_> = all.values().collect();
    assert_eq!(sets.len(), 2);
    assert!(
        sets[0] == sets[1] && !sets[0].is_empty(),
        "edge sets differ"
    );
    for c in &circuits {
        let n = kept.get(&c["step"]).map_or(0, BTreeSet::len);
        assert_eq!(c["edges_kept"].parse::<usize>().unwrap(), n, "{c:?}");
    }
    kept
}

#[test]
fn trace_edges_over_checkpoints() {
    let dir = scratch("trace_edges");
    let run_dir = common::train_miniature_run(&dir, "steps:30,60");
    let out = dir.join("trace");
    let base = [
        "--threads",
        "2",
        "trace",
        "--run",
        s(&run_dir),
        "--size",
        "20",
    ];
    let out_s = s(&out);
    let stdout = run_ok(&[&base[..], &["--out", out_s, "--quiet", "--edges"]].concat());
    assert!(
        stdout.contains("step 30:") && stdout.contains("step 60:"),
        "{stdout}"
    );
    let kept = check_steps(&out);
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trace.json")).unwrap()).unwrap();
    let sat = trace["saturation"]["step"].to_string();
    let last = trace["last_step"].to_string();
    let empty = BTreeSet::new();
    let (at_sat, at_end) = (
        kept.get(&sat).unwrap_or(&empty),
        kept.get(&last).unwrap_or(&empty),
    );
    let (header, changes) = read_csv(&out.join("edge_changes.csv"));
    let expected = "sender,receiver,position,status,score_at_saturation,score_at_end";
    assert_eq!(header.join(","), expected);
    for c in &changes {
        let k = key(c);
        let status = match (at_sat.contains(&k), at_end.contains(&k)) {
            (true, true) => "kept",
            (true, false) => "vanishes",
            (false, true) => "appears",
            (false, false) => panic!("{c:?} is in neither circuit"),
        };
        assert_eq!(c["status"], status, "{c:?}");
    }
    assert_eq!(changes.len(), at_sat.union(at_end).count());
    for file in EDGE_FILES.iter().filter(|f| f.ends_with(".png")) {
        assert!(
            std::fs::metadata(out.join(file)).unwrap().len() > 0,
            "{file}"
        );
    }

    for bad in ["noise:h", "zz"] {
        let fresh = dir.join(format!("bad-{bad}"));
        let args = ["--out", s(&fresh), "--edges", "--edge-corruption", bad];
        let err = run_err(&[&base[..], &args[..]].concat());
        assert!(err.contains("--edge-corruption"), "{err}");
        for file in EDGE_FILES {
            assert!(!fresh.join(file).exists(), "{bad}: {file} was written");
        }
    }
}
