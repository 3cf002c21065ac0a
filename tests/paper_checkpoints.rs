//! The paper's released-checkpoint layout end to end: a grokscope run exported with
//! `export-hf --layout paper` (GPT-2's 50,257 rows, the task tokens, padding, tokenizer files) is
//! analysed like the original — identical eval, lens and patch under `--rank-over task`, and lens
//! ranks over all rows equal to a recomputation with `transformers`; `trace --run` reads a folder
//! of `checkpoint-<step>` folders; bad tokenizer files and configs are one-line errors.

mod common;

use common::{run_err, run_ok, s, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tiny composition dataset and a 2-layer run of 40 steps on it: (data, checkpoint file).
fn tiny_run(dir: &Path, entities: &str) -> (PathBuf, PathBuf) {
    let (data, run) = (dir.join(format!("data-{entities}")), dir.join("run"));
    let data_args = [
        "data",
        "composition",
        "--entities",
        entities,
        "--relations",
        "8",
    ];
    let rest = [
        "--out-degree",
        "4",
        "--phi",
        "2",
        "--seed",
        "1",
        "--out",
        s(&data),
    ];
    run_ok(&[&data_args[..], &rest[..]].concat());
    if entities == "40" {
        let sets = [
            "steps=40",
            "eval_every=20",
            "checkpoints=steps:20,40",
            "d_model=32",
            "d_mlp=64",
            "n_layer=2",
            "batch_size=64",
            "warmup_steps=10",
        ];
        let mut args = vec!["train", "--preset", "tiny-composition", "--quiet"];
        args.extend(["--data", s(&data), "--out", s(&run)]);
        sets.iter().for_each(|kv| args.extend(["--set", kv]));
        run_ok(&args);
    }
    (data, run.join("step-40/model.safetensors"))
}

/// `lens` and `patch` of `checkpoint` on `data` into `out`, with extra arguments.
fn analyse(checkpoint: &Path, data: &Path, out: &Path, extra: &[&str]) {
    for command in ["lens", "patch"] {
        let dir = out.join(command);
        let base = [command, "--checkpoint", s(checkpoint), "--data", s(data)];
        let rest = ["--out", s(&dir), "--size", "40", "--seed", "3"];
        run_ok(&[&base[..], &rest[..], extra].concat());
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The per-split lines of `eval`'s table.
fn eval_table(checkpoint: &Path, data: &Path, extra: &[&str]) -> Vec<String> {
    let base = ["eval", "--checkpoint", s(checkpoint), "--data", s(data)];
    let out = run_ok(&[&base[..], extra].concat());
    out.lines()
        .filter(|l| !l.starts_with("ranks over"))
        .map(String::from)
        .collect()
}

/// `grokscope export-hf` of `ckpt` into `folder` in the layout of the paper's released runs.
fn export_paper_layout(ckpt: &Path, folder: &Path) {
    let args = ["export-hf", "--checkpoint", s(ckpt), "--out", s(folder)];
    run_ok(&[&args[..], &["--layout", "paper"]].concat());
}

#[test]
fn the_paper_layout_is_analysed_like_the_original() {
    let dir = scratch("paper-layout");
    let (data, ckpt) = tiny_run(&dir, "40");
    let paper_run = dir.join("paper-run");
    let folder = paper_run.join("checkpoint-40");
    export_paper_layout(&ckpt, &folder);
    let config: serde_json::Value =
        serde_json::from_str(&read(&folder.join("config.json"))).unwrap();
    let tokens: Vec<String> = serde_json::from_str(&read(&data.join("vocab.json"))).unwrap();
    let rows = (50_257 + tokens.len()).div_ceil(8) * 8;
    assert_eq!(config["vocab_size"], rows);
    assert_eq!(config["eos_token_id"], 50_256);
    let added: serde_json::Value =
        serde_json::from_str(&read(&folder.join("added_tokens.json"))).unwrap();
    assert_eq!(added[&tokens[0]], 50_257);
    assert_eq!(added[&tokens[tokens.len() - 1]], 50_257 + tokens.len() - 1);

    assert_eq!(
        eval_table(&ckpt, &data, &[]),
        eval_table(&folder, &data, &["--rank-over", "task"])
    );
    analyse(&ckpt, &data, &dir.join("original"), &[]);
    analyse(
        &folder,
        &data,
        &dir.join("paper-task"),
        &["--rank-over", "task"],
    );
    for file in ["lens/lens.csv", "patch/patch.csv"] {
        let original = read(&dir.join("original").join(file));
        let paper = read(&dir.join("paper-task").join(file));
        assert_eq!(original, paper, "{file} differs under --rank-over task");
    }

    analyse(&folder, &data, &dir.join("paper-all"), &[]);
    let report = transformers_lens(&folder, &dir.join("paper-all/lens"), &data);
    assert!(report.contains("OK"), "{report}");

    let trace_out = dir.join("trace");
    run_ok(&[
        "trace",
        "--run",
        s(&paper_run),
        "--data",
        s(&data),
        "--out",
        s(&trace_out),
        "--size",
        "20",
        "--quiet",
    ]);
    let trace: serde_json::Value =
        serde_json::from_str(&read(&trace_out.join("trace.json"))).unwrap();
    assert_eq!(trace["last_step"], 40, "{trace}");
}

/// Recomputes the lens of `lens_dir` (its examples.jsonl) with `transformers` over every row of the
/// exported model and compares MRR and top-1 per (layer, position, target) with its lens.csv.
fn transformers_lens(model_dir: &Path, lens_dir: &Path, data: &Path) -> String {
    let python = model::hf::python_path();
    let out = Command::new(&python)
        .arg("-c")
        .arg(LENS_REFERENCE)
        .arg(model_dir)
        .arg(lens_dir)
        .arg(data)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the project's Python runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The paper's lens (ln_f on every hidden state but the last, which has it; logits over every row
/// of the tied embedding; 0-based rank = number of rows scoring higher), as a reference.
const LENS_REFERENCE: &str = r#"
import csv, json, sys, torch
from transformers import GPT2LMHeadModel
model = GPT2LMHeadModel.from_pretrained(sys.argv[1]).eval()
added = json.load(open(sys.argv[1] + "/added_tokens.json"))
examples = [json.loads(l) for l in open(sys.argv[2] + "/examples.jsonl")]
names = json.load(open(sys.argv[3] + "/vocab.json"))
def row(task_id):
    return 50256 if task_id == 0 else added[names[task_id - 1]]
positions = {"h": 0, "r1": 1, "r2": 2}
want = {}
for r in csv.DictReader(open(sys.argv[2] + "/lens.csv")):
    if r["metric"] in ("mrr", "top1"):
        want[(int(r["layer"]), r["position"], r["target"], r["metric"])] = float(r["value"])
ids = torch.tensor([[row(t) for t in e["tokens"]] for e in examples])
with torch.no_grad():
    hidden = model(ids, output_hidden_states=True).hidden_states
n = len(hidden) - 1
worst = 0.0
for (layer, pos, target, metric), value in want.items():
    h = hidden[layer] if layer == n else model.transformer.ln_f(hidden[layer])
    logits = h[:, positions[pos]] @ model.transformer.wte.weight.T
    gold = torch.tensor([row(e["gold"] if target == "answer" else e["roles"][target]) for e in examples])
    score = logits.gather(1, gold[:, None])
    rank = (logits > score).sum(1).double()
    got = (1 / (rank + 1)).mean().item() if metric == "mrr" else (rank == 0).double().mean().item()
    worst = max(worst, abs(got - value))
print(f"{len(want)} lens values, max |diff| {worst:.2e}")
print("OK" if worst < 1e-6 and len(want) > 0 else "FAIL")
"#;

#[test]
fn bad_tokenizer_files_and_configs_are_one_line_errors() {
    let dir = scratch("paper-errors");
    let (data, ckpt) = tiny_run(&dir, "40");
    let folder = dir.join("exported");
    export_paper_layout(&ckpt, &folder);
    let lens = |folder: &Path, data: &Path| {
        let args = [
            "lens",
            "--checkpoint",
            s(folder),
            "--data",
            s(data),
            "--out",
        ];
        run_err(&[&args[..], &[s(&dir.join("lens-out"))]].concat())
    };

    let (other_data, _) = tiny_run(&dir, "41");
    let err = lens(&folder, &other_data);
    assert!(
        err.contains("is not in the checkpoint's vocabulary"),
        "{err}"
    );

    let added_path = folder.join("added_tokens.json");
    let original = read(&added_path);
    let mut added: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&original).unwrap();
    let (a, b) = ("<e_0>".to_string(), "<e_1>".to_string());
    let (ra, rb) = (added[&a].clone(), added[&b].clone());
    added.insert(a, rb);
    added.insert(b, ra);
    std::fs::write(&added_path, serde_json::to_string(&added).unwrap()).unwrap();
    let err = lens(&folder, &data);
    assert!(
        err.contains("disagrees with the dataset's vocab.json"),
        "{err}"
    );
    std::fs::write(&added_path, original).unwrap();

    let config_path = folder.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&read(&config_path)).unwrap();
    config["rotary_dim"] = serde_json::json!(16);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = run_err(&[
        "import-hf",
        s(&folder),
        "--out",
        s(&dir.join("x.safetensors")),
    ]);
    assert!(err.contains("unknown option `rotary_dim`"), "{err}");

    let empty = dir.join("run-without-weights/checkpoint-10");
    std::fs::create_dir_all(&empty).unwrap();
    config.as_object_mut().unwrap().remove("rotary_dim");
    std::fs::write(empty.join("config.json"), config.to_string()).unwrap();
    let err = lens(&empty, &data);
    assert!(
        err.contains("no model.safetensors or pytorch_model.bin"),
        "{err}"
    );
    assert!(!dir.join("lens-out").exists(), "a failed lens wrote output");
}

#[test]
fn an_examples_file_fixes_the_probe_set() {
    let dir = scratch("examples-file");
    let (data, ckpt) = tiny_run(&dir, "40");
    let list = dir.join("examples.json");
    std::fs::write(&list, "[5, 2, 9]\n").unwrap();
    let out = dir.join("lens");
    let base = [
        "lens",
        "--checkpoint",
        s(&ckpt),
        "--data",
        s(&data),
        "--out",
        s(&out),
    ];
    run_ok(&[&base[..], &["--examples", s(&list)]].concat());
    let chosen: Vec<u64> = read(&out.join("examples.jsonl"))
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(chosen, vec![5, 2, 9]);

    let other = dir.join("lens-bad");
    let bad = [
        "lens",
        "--checkpoint",
        s(&ckpt),
        "--data",
        s(&data),
        "--out",
        s(&other),
    ];
    for (text, expected) in [
        ("[5, 100000]", "split `train_inferred` has"),
        ("[5, 5]", "listed twice"),
        ("five", "`five` is not an example index"),
        ("", "no example index"),
    ] {
        std::fs::write(&list, text).unwrap();
        let err = run_err(&[&bad[..], &["--examples", s(&list)]].concat());
        assert!(err.contains(expected), "{text:?}: {err}");
    }
    assert!(!other.exists(), "a refused lens wrote output");
}
