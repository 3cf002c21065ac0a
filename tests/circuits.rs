//! End-to-end tests of `grokscope circuit` and `grokscope path-patch` on a miniature checkpoint:
//! the outputs agree with each other (circuit sizes, ranks, the faithfulness curve's ends, the
//! corrupted run), the prompt-file mode reproduces the probe-set mode on the same examples, and
//! bad input fails with one line and exit 2, writing nothing.

mod common;

use common::{run_err, run_ok, s, scratch, train_miniature};
use std::collections::BTreeMap;
use std::path::Path;

/// The rows of a CSV file as maps from column name to value.
fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    common::read_csv(path).1
}

fn num(row: &BTreeMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?}", row[col]))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn circuit_outputs_agree_with_each_other_and_with_path_patching() {
    let dir = scratch("circuit-cli");
    let ckpt = train_miniature(&dir);
    let out = dir.join("circuit");
    let base = ["--threads", "1"];
    let probe = [
        "--checkpoint",
        s(&ckpt),
        "--size",
        "24",
        "--corruption",
        "h",
    ];
    run_ok(&[&base[..], &["circuit", "--out", s(&out)], &probe[..]].concat());
    let summary = json(&out.join("circuit.json"));
    let edges = read_csv(&out.join("edges.csv"));
    assert_eq!(edges.len() as u64, summary["edges_total"].as_u64().unwrap());
    let kept = summary["circuit"]["edges_kept"].as_u64().unwrap() as usize;
    let in_circuit: Vec<&BTreeMap<String, String>> =
        edges.iter().filter(|e| e["in_circuit"] == "true").collect();
    assert_eq!(in_circuit.len(), kept);
    assert!(in_circuit.iter().all(|e| num(e, "rank") as usize <= kept));
    assert!(edges.iter().all(|e| !e["exact"].is_empty()));
    assert_eq!(summary["circuit_edges"].as_array().unwrap().len(), kept);
    let positions: std::collections::BTreeSet<&str> =
        edges.iter().map(|e| e["position"].as_str()).collect();
    assert_eq!(positions, ["h", "r1", "r2"].into_iter().collect());
    let curve = read_csv(&out.join("faithfulness.csv"));
    let (first, last) = (&curve[0], &curve[curve.len() - 1]);
    assert_eq!(num(first, "edges_kept"), 0.0);
    assert!(num(first, "recovered").abs() < 1e-4, "{first:?}");
    assert_eq!(num(last, "edges_kept") as usize, edges.len());
    assert!((num(last, "recovered") - 1.0).abs() < 1e-4, "{last:?}");
    assert!(summary["circuit"]["recovered"].as_f64().unwrap() >= 0.8);
    assert!(summary["agreement"]["spearman"].as_f64().unwrap() > 0.0);
    for png in ["circuit.png", "faithfulness.png"] {
        assert!(
            std::fs::metadata(out.join(png)).unwrap().len() > 1000,
            "{png}"
        );
    }

    // The input patched into every receiver is the corrupted run.
    let paths = dir.join("paths");
    let receivers = [
        "--receiver",
        "a*.h*<*>",
        "--receiver",
        "m*",
        "--receiver",
        "logits",
    ];
    run_ok(
        &[
            &base[..],
            &[
                "path-patch",
                "--out",
                s(&paths),
                "--sender",
                "input",
                "--sender",
                "a0.h0",
            ],
            &receivers[..],
            &probe[..],
        ]
        .concat(),
    );
    let rows = read_csv(&paths.join("path_patch.csv"));
    assert_eq!(rows.len(), 2);
    let corrupted = summary["corrupted_metric"].as_f64().unwrap();
    assert!(
        (num(&rows[0], "patched") - corrupted).abs() < 1e-4,
        "{rows:?}"
    );
    assert!((num(&rows[0], "base") - summary["clean_metric"].as_f64().unwrap()).abs() < 1e-9);
}

#[test]
fn a_prompt_file_reproduces_the_probe_set_edges() {
    let dir = scratch("circuit-prompts");
    let ckpt = train_miniature(&dir);
    let task = dir.join("task");
    let base = [
        "--threads",
        "1",
        "circuit",
        "--checkpoint",
        s(&ckpt),
        "--no-exact",
    ];
    run_ok(
        &[
            &base[..],
            &["--out", s(&task), "--size", "12", "--corruption", "r1"],
        ]
        .concat(),
    );
    let lines: Vec<String> = std::fs::read_to_string(task.join("examples.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::json!({
                "clean": e["text"],
                "corrupted": e["corruptions"]["r1"]["tokens"],
                "answer": e["gold"],
            })
            .to_string()
        })
        .collect();
    let file = dir.join("prompts.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let from_file = dir.join("file");
    run_ok(&[&base[..], &["--out", s(&from_file), "--prompts", s(&file)]].concat());
    let (a, b) = (
        read_csv(&task.join("edges.csv")),
        read_csv(&from_file.join("edges.csv")),
    );
    assert_eq!(a.len(), b.len());
    let names = ["h", "r1", "r2"];
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x["sender"], &x["receiver"]),
            (&y["sender"], &y["receiver"])
        );
        assert_eq!(
            x["position"],
            names[y["position"].parse::<usize>().unwrap()]
        );
        assert!(
            (num(x, "score") - num(y, "score")).abs() < 1e-9,
            "{x:?} {y:?}"
        );
    }
}

#[test]
fn bad_input_fails_with_one_line_and_writes_nothing() {
    let dir = scratch("circuit-bad");
    let ckpt = train_miniature(&dir);
    let out = dir.join("out");
    let base = [
        "--threads",
        "1",
        "--checkpoint",
        s(&ckpt),
        "--out",
        s(&out),
        "--size",
        "8",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["circuit", "--target", "1.5"], "--target"),
        (vec!["circuit", "--method", "eap-ig:0"], "edge method"),
        (
            vec!["circuit", "--corruption", "noise:h"],
            "corrupted tokens",
        ),
        (vec!["circuit", "--corruption", "zz"], "zz"),
        (vec!["circuit", "--layers", "1"], "--layers"),
        (vec!["path-patch", "--receiver", "a9.h0<q>"], "a9.h0<q>"),
        (vec!["path-patch", "--sender", "a0.x1"], "a0.x1"),
        (
            vec!["path-patch", "--sender", "m1", "--receiver", "a0.h0<q>"],
            "no sender",
        ),
        (vec!["path-patch", "--position", "r9"], "r9"),
    ];
    for (args, needle) in cases {
        let (cmd, rest) = args.split_first().unwrap();
        let all: Vec<&str> = [&base[..1], &base[1..2], &[*cmd], &base[2..], rest].concat();
        let err = run_err(&all);
        assert!(err.contains(needle), "{args:?}: {err}");
        let written = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
        assert_eq!(written, 0, "{args:?} wrote into {out:?}");
    }
}
