//! End-to-end tests of `--prompts FILE.jsonl` on `lens`, `patch`, `attribute`, `dla` and
//! `cache`: the token-level core reproduces the task-level analyses on the same examples, and
//! bad prompt files fail with one line and exit 2, writing nothing.

mod common;

use common::{run_err, run_ok, s, scratch, train_miniature};
use std::collections::BTreeMap;
use std::path::Path;

/// The sampled prompts a task-level command wrote to `examples.jsonl`, as a prompt file: clean
/// tokens as strings, the answer as an id, the corrupted tokens of `corruption` when given.
fn prompts_from_examples(examples: &Path, corruption: Option<&str>, out: &Path) {
    let text = std::fs::read_to_string(examples).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut p = serde_json::json!({"clean": e["text"], "answer": e["gold"]});
            if let Some(c) = corruption {
                p["corrupted"] = e["corruptions"][c]["tokens"].clone();
            }
            p.to_string()
        })
        .collect();
    std::fs::write(out, lines.join("\n")).unwrap();
}

/// `(column values…) → value` of a CSV's rows whose `metric` column is `metric`.
fn csv_values(path: &Path, keys: &[&str], filter: &[(&str, &str)]) -> BTreeMap<Vec<String>, f64> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name} in {header:?}"))
    };
    let mut out = BTreeMap::new();
    for record in reader.records() {
        let r = record.unwrap();
        if filter.iter().all(|(k, v)| &r[col(k)] == *v) {
            let key = keys.iter().map(|k| r[col(k)].to_string()).collect();
            out.insert(key, r[col("value")].parse().unwrap());
        }
    }
    out
}

/// Runs `grokscope --threads 1 COMMAND --checkpoint CKPT --out OUT REST…` and returns its stdout.
fn run_on(command: &str, ckpt: &Path, out: &Path, rest: &[&str]) -> String {
    let head = [
        "--threads",
        "1",
        command,
        "--checkpoint",
        s(ckpt),
        "--out",
        s(out),
    ];
    run_ok(&[&head[..], rest].concat())
}

#[test]
fn prompt_lens_and_patch_reproduce_the_task_analyses_on_the_same_examples() {
    let dir = scratch("prompts-agree");
    let ckpt = train_miniature(&dir);
    let task = dir.join("task");
    run_on(
        "lens",
        &ckpt,
        &task,
        &["--size", "20", "--target", "answer@last"],
    );
    let prompts = dir.join("lens.jsonl");
    prompts_from_examples(&task.join("examples.jsonl"), None, &prompts);
    let mine = dir.join("mine");
    run_on("lens", &ckpt, &mine, &["--prompts", s(&prompts)]);
    let want = csv_values(
        &task.join("lens.csv"),
        &["layer"],
        &[("target", "answer"), ("metric", "mrr")],
    );
    let got = csv_values(
        &mine.join("prompt_lens.csv"),
        &["layer"],
        &[("prompt", "mean")],
    );
    assert_eq!(want.len(), 3);
    for (layer, w) in &want {
        assert!(
            (got[layer] - w).abs() < 1e-6,
            "layer {layer:?}: prompt lens {} vs task lens {w}",
            got[layer]
        );
    }

    run_on(
        "patch",
        &ckpt,
        &task,
        &[
            "--size",
            "20",
            "--corruption",
            "h",
            "--direction",
            "noising",
            "--positions",
            "each",
        ],
    );
    prompts_from_examples(&task.join("examples.jsonl"), Some("h"), &prompts);
    let args = [
        "--prompts",
        s(&prompts),
        "--metric",
        "rank",
        "--direction",
        "noising",
        "--positions",
        "each",
    ];
    run_on("patch", &ckpt, &mine, &args);
    let want = csv_values(
        &task.join("patch.csv"),
        &["layer", "position"],
        &[("metric", "mean_rank")],
    );
    let got = csv_values(
        &mine.join("prompt_patch.csv"),
        &["target"],
        &[("prompt", "mean")],
    );
    let roles = ["h", "r1", "r2"];
    assert_eq!(want.len(), 3 * 3);
    for (key, w) in &want {
        let layer: usize = key[0].parse().unwrap();
        let pos = roles.iter().position(|r| *r == key[1]).unwrap();
        let hook = if layer < 2 {
            format!("blocks.{layer}.hook_resid_pre")
        } else {
            "blocks.1.hook_resid_post".into()
        };
        let g = got[&vec![format!("{hook}@{pos}")]];
        assert!(
            (g - w).abs() < 1e-9,
            "layer {layer} {}: prompt patch {g} vs task patch {w}",
            key[1]
        );
    }
}

#[test]
fn every_prompt_command_writes_its_csv_and_dla_parts_sum_to_the_total() {
    let dir = scratch("prompts-all");
    let ckpt = train_miniature(&dir);
    let prompts = dir.join("p.jsonl");
    std::fs::write(&prompts, concat!(
        "{\"clean\": [\"<e_0>\", \"<r_7>\", \"<r_2>\"], \"corrupted\": [\"<e_1>\", \"<r_7>\", \"<r_2>\"], \"answer\": \"<e_5>\", \"alternative\": \"<e_9>\"}\n",
        "{\"clean\": \"<e_3> <r_1> <r_4>\", \"corrupted\": \"<e_3> <r_5> <r_4>\", \"answer\": [\"<e_8>\", \"<e_11>\"]}\n",
    )).unwrap();
    let out = dir.join("out");
    let on_prompts = |command: &str, rest: &[&str]| {
        run_on(
            command,
            &ckpt,
            &out,
            &[rest, &["--prompts", s(&prompts)]].concat(),
        )
    };
    let stdout = on_prompts("attribute", &["--hook", "blocks.*.hook_resid_pre"]);
    assert!(stdout.contains("Spearman with exact patching"), "{stdout}");
    let rows = std::fs::read_to_string(out.join("prompt_attribution.csv")).unwrap();
    assert_eq!(
        rows.lines().count(),
        1 + 2 * 3,
        "two hooks at three positions: {rows}"
    );
    let pattern_patch = ["--hook", "blocks.1.attn.hook_pattern", "--positions", "all"];
    on_prompts("patch", &pattern_patch);
    let patched = csv_values(
        &out.join("prompt_patch.csv"),
        &["direction", "target"],
        &[("prompt", "mean")],
    );
    assert_eq!(
        patched.len(),
        2 * (2 + 4),
        "clean, corrupted and 4 heads per direction: {patched:?}"
    );
    on_prompts("patch", &[&pattern_patch[..], &["--naive"]].concat());
    let naive = csv_values(
        &out.join("prompt_patch.csv"),
        &["direction", "target"],
        &[("prompt", "mean")],
    );
    assert_eq!(
        naive.keys().collect::<Vec<_>>(),
        patched.keys().collect::<Vec<_>>()
    );
    for (key, value) in &naive {
        let batched = patched[key];
        assert!(
            (value - batched).abs() < 1e-4,
            "{key:?}: naive {value}, batched {batched}"
        );
    }
    // With ln_final's scale frozen the logit difference is linear in the final state, so
    // attribution patching there is exact.
    let cached = [
        "--ln-mode",
        "cached-scale",
        "--hook",
        "blocks.1.hook_resid_post",
    ];
    on_prompts("attribute", &cached);
    let rows = std::fs::read_to_string(out.join("prompt_attribution.csv")).unwrap();
    let header: Vec<&str> = rows.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (attribution, exact) = (column("attribution"), column("exact"));
    for line in rows.lines().skip(1) {
        let fields: Vec<f64> = line
            .split(',')
            .map(|f| f.parse().unwrap_or(f64::NAN))
            .collect();
        let (a, e) = (fields[attribution], fields[exact]);
        assert!(
            (a - e).abs() < 1e-5 * e.abs().max(1.0),
            "attribution {a} vs exact {e}: {line}"
        );
    }
    on_prompts("dla", &[]);
    let parts = csv_values(
        &out.join("prompt_dla.csv"),
        &["component"],
        &[("prompt", "mean")],
    );
    let total = parts[&vec!["total".to_string()]];
    let sum: f64 = parts
        .iter()
        .filter(|(k, _)| k[0] != "total")
        .map(|(_, v)| v)
        .sum();
    assert!(
        (sum - total).abs() < 1e-4,
        "DLA parts sum to {sum}, logit difference {total}"
    );
    let file = dir.join("cache.safetensors");
    let stdout = run_ok(&[
        "cache",
        "--checkpoint",
        s(&ckpt),
        "--out",
        s(&file),
        "--prompts",
        s(&prompts),
        "--hooks",
        "blocks.*.hook_resid_post",
    ]);
    assert!(
        stdout.contains("blocks.1.hook_resid_post         [2, 3, 32]"),
        "{stdout}"
    );
}

#[test]
fn bad_prompt_files_fail_with_one_line_and_write_nothing() {
    let dir = scratch("prompts-bad");
    let ckpt = train_miniature(&dir);
    let prompts = dir.join("bad.jsonl");
    let out = dir.join("out");
    for (line, why) in [
        (
            "{\"clean\": [\"<e_0>\", \"<r_7>\"], \"answer\": \"<e_999>\"}",
            "unknown token",
        ),
        (
            "{\"clean\": [\"<e_0>\"], \"answer\": 100000}",
            "outside the model",
        ),
        (
            "{\"clean\": [\"<e_0>\"], \"answer\": \"<e_1>\"}",
            "needs corrupted tokens",
        ),
    ] {
        std::fs::write(&prompts, line).unwrap();
        let err = run_err(&[
            "patch",
            "--checkpoint",
            s(&ckpt),
            "--out",
            s(&out),
            "--prompts",
            s(&prompts),
        ]);
        assert!(err.contains(why), "{line}: {err}");
        assert!(!out.exists(), "{line}: nothing is written");
    }
    let err = run_err(&[
        "lens",
        "--checkpoint",
        s(&ckpt),
        "--out",
        s(&out),
        "--prompts",
        s(&prompts),
        "--metric",
        "nonsense",
    ]);
    assert!(err.contains("metric"), "{err}");
    let usage = common::run(&[
        "lens",
        "--checkpoint",
        s(&ckpt),
        "--out",
        s(&out),
        "--metric",
        "prob",
    ]);
    assert_eq!(usage.status.code(), Some(2), "--metric needs --prompts");
    assert!(common::stderr(&usage).contains("--prompts"));
    let alone = dir.join("alone.safetensors");
    std::fs::copy(&ckpt, &alone).unwrap();
    std::fs::write(
        &prompts,
        "{\"clean\": [\"<e_0>\", \"<r_7>\"], \"answer\": \"<e_5>\"}",
    )
    .unwrap();
    let err = run_err(&[
        "lens",
        "--checkpoint",
        s(&alone),
        "--out",
        s(&out),
        "--prompts",
        s(&prompts),
    ]);
    assert!(
        err.contains("--data"),
        "a checkpoint without its run folder needs --data or ids: {err}"
    );
    std::fs::write(&prompts, "{\"clean\": [1, 45], \"answer\": 6}").unwrap();
    run_ok(&[
        "lens",
        "--checkpoint",
        s(&alone),
        "--out",
        s(&out),
        "--prompts",
        s(&prompts),
    ]);
    assert!(out.join("prompt_lens.csv").exists());
}
