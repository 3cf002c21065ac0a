//! `grokscope demo`: the paper's story end to end on a CPU — data, training of the two tiny presets,
//! tracing over their checkpoints, figures, reports — then a summary that checks the paper's
//! phenomena and exits non-zero when one fails to appear.
//!
//! Each stage runs this same binary as a child process with the ordinary subcommands, so the demo
//! is exactly what a user could type, shows their progress bars, and reuses finished work: training
//! resumes (a finished run returns at once), `trace` skips traced checkpoints.

use crate::device::Ctx;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Folder of the demo's training runs.
    #[arg(long, default_value = "checkpoints/demo")]
    pub runs: PathBuf,
    /// Folder of the demo's analysis outputs and index.html.
    #[arg(long, default_value = "notebooks-out/demo")]
    pub out: PathBuf,
    /// Extra `--set key=value` overrides for both training runs (e.g. steps=500 for a quick look;
    /// the phenomenon checks are then unlikely to pass).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// One phenomenon check: what the paper says, what was measured, and whether it held.
struct Check {
    claim: String,
    measured: String,
    ok: Option<bool>,
}

pub fn run(args: &DemoArgs, ctx: &Ctx) -> Result<()> {
    let started = std::time::Instant::now();
    let mut checks = Vec::new();
    for task in ["composition", "comparison"] {
        let run_dir = args.runs.join(task);
        let out_dir = args.out.join(task);
        stage(&format!("train tiny-{task}"));
        let preset = format!("tiny-{task}");
        let run_str = run_dir.to_string_lossy().into_owned();
        let mut train = vec!["train", "--preset", &preset, "--out", &run_str];
        for s in &args.set {
            train.extend(["--set", s]);
        }
        child(ctx, &train)?;
        stage(&format!("trace tiny-{task} over its checkpoints"));
        let out_str = out_dir.to_string_lossy().into_owned();
        child(ctx, &["trace", "--run", &run_str, "--out", &out_str])?;
        stage(&format!("figures and report for tiny-{task}"));
        child(ctx, &["report", "--run", &run_str, "--out", &out_str])?;
        let metrics = read_metrics(&run_dir.join("metrics.csv"))?;
        if task == "composition" {
            checks.extend(composition_checks(&metrics, &out_dir)?);
        } else {
            checks.extend(comparison_checks(&metrics));
        }
    }
    write_index(&args.out, &checks)?;
    print_summary(&checks, started.elapsed().as_secs_f64(), &args.out);
    if checks.iter().any(|c| c.ok == Some(false)) {
        bail!("a phenomenon of the paper did not appear (see the summary above)");
    }
    Ok(())
}

fn stage(name: &str) {
    println!("\n== demo: {name}");
}

/// Runs this binary with the demo's global options and `args`; fails if the child fails.
fn child(ctx: &Ctx, args: &[&str]) -> Result<()> {
    let exe = std::env::current_exe().context("locating the grokscope binary")?;
    let device = match ctx.device {
        tch::Device::Cuda(_) => "cuda",
        _ => "cpu",
    };
    let threads = ctx.threads.to_string();
    let status = Command::new(exe)
        .args(["--device", device, "--threads", &threads])
        .args(args)
        .status()
        .with_context(|| format!("starting grokscope {}", args.join(" ")))?;
    if !status.success() {
        bail!("grokscope {} failed", args.join(" "));
    }
    Ok(())
}

/// metrics.csv as one map of column → value per evaluation row.
type Metrics = Vec<BTreeMap<String, f64>>;

fn read_metrics(path: &Path) -> Result<Metrics> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header = reader.headers()?.clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        let row = header
            .iter()
            .zip(record.iter())
            .filter_map(|(k, v)| v.parse::<f64>().ok().map(|v| (k.to_string(), v)))
            .collect();
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("{}: no evaluation rows", path.display());
    }
    Ok(rows)
}

fn col(row: &BTreeMap<String, f64>, name: &str) -> f64 {
    row.get(name).copied().unwrap_or(f64::NAN)
}

fn composition_checks(metrics: &Metrics, trace_dir: &Path) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    // Memorised: training accuracy ≥ 0.9. At this scale it then plateaus noisily at 0.95–0.98
    // (cpu-scale.md), so a 0.95 threshold lands anywhere on the plateau: two runs of the same
    // preset that differ only in float rounding crossed it 100 steps apart, with test ID 0.45
    // and 0.50 there, on the same memorisation curve.
    let memorised = metrics.iter().find(|r| col(r, "train_inferred_acc") >= 0.9);
    let claim = "composition: train ≥ 0.9 (memorised) while test ID ≤ 0.5";
    checks.push(match memorised {
        Some(r) => Check {
            claim: claim.into(),
            measured: format!(
                "train {:.3} at step {} with test ID {:.3}",
                col(r, "train_inferred_acc"),
                col(r, "step"),
                col(r, "test_inferred_iid_acc")
            ),
            ok: Some(col(r, "test_inferred_iid_acc") <= 0.5),
        },
        None => Check {
            claim: claim.into(),
            measured: "training accuracy never reached 0.9".into(),
            ok: Some(false),
        },
    });
    let memorised_step = memorised.map(|r| col(r, "step")).unwrap_or(f64::INFINITY);
    let later = metrics
        .iter()
        .find(|r| col(r, "step") > memorised_step && col(r, "test_inferred_iid_acc") >= 0.9);
    checks.push(Check {
        claim: "composition: test ID later ≥ 0.9 (grokking)".into(),
        measured: match later {
            Some(r) => format!(
                "test ID {:.3} at step {}",
                col(r, "test_inferred_iid_acc"),
                col(r, "step")
            ),
            None => format!(
                "best test ID {:.3}",
                max_of(metrics, "test_inferred_iid_acc")
            ),
        },
        ok: Some(later.is_some()),
    });
    let ood_max = max_of(metrics, "test_inferred_ood_acc");
    checks.push(Check {
        claim: "composition: test OOD ≤ 0.1 throughout".into(),
        measured: format!("max test OOD {ood_max:.3}"),
        ok: Some(ood_max <= 0.1),
    });
    let summary = trace_summary(trace_dir)?;
    checks.extend(lens_checks(&summary, trace_dir)?);
    checks.push(causal_check(&summary));
    Ok(checks)
}

fn comparison_checks(metrics: &Metrics) -> Vec<Check> {
    let last = metrics
        .last()
        .map(|r| col(r, "test_inferred_ood_acc"))
        .unwrap_or(f64::NAN);
    let best = max_of(metrics, "test_inferred_ood_acc");
    vec![
        Check {
            claim: "comparison: test OOD ≥ 0.7 at the end (prior ≈ 0.48)".into(),
            measured: format!("final test OOD {last:.3} (best {best:.3})"),
            ok: Some(last >= 0.7),
        },
        Check {
            claim: "comparison: test OOD ≥ 0.9 (the paper's late climb)".into(),
            measured: format!("final test OOD {last:.3}"),
            ok: if last >= 0.9 { Some(true) } else { None },
        },
    ]
}

fn max_of(metrics: &Metrics, name: &str) -> f64 {
    metrics
        .iter()
        .map(|r| col(r, name))
        .filter(|v| v.is_finite())
        .fold(f64::NAN, f64::max)
}

/// lens.csv MRR rows: (target, position, layer, step) → value.
fn read_lens_mrr(path: &Path) -> Result<BTreeMap<(String, String, usize, u64), f64>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = BTreeMap::new();
    for record in reader.deserialize::<(u64, usize, String, String, String, f64)>() {
        let (step, layer, position, target, metric, value) =
            record.with_context(|| format!("reading {}", path.display()))?;
        if metric == "mrr" {
            out.insert((target, position, layer, step), value);
        }
    }
    Ok(out)
}

fn trace_summary(trace_dir: &Path) -> Result<interp::TraceSummary> {
    let path = trace_dir.join("trace.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The logit-lens checks: the bridge entity at r1 in the middle layer L/2 after grokking
/// (MRR ≥ 0.8; the top layers decode it by construction, cpu-scale.md), and r2 at r2 rising from
/// ≤ 0.1 at saturation to ≥ 0.3 at the end in the middle layer (1..L−1) where it rises most.
fn lens_checks(summary: &interp::TraceSummary, trace_dir: &Path) -> Result<Vec<Check>> {
    let mrr = read_lens_mrr(&trace_dir.join("lens.csv"))?;
    let (start, end) = (summary.saturation.step, summary.last_step);
    let middle = 1..summary.n_layer;
    let get = |t: &str, p: &str, l: usize, s: u64| {
        mrr.get(&(t.to_string(), p.to_string(), l, s)).copied()
    };
    let centre = (summary.n_layer / 2).max(1);
    let bridge = get("b1", "r1", centre, end).map(|v| (centre, v));
    let rise = middle
        .filter_map(|l| Some((l, get("r2", "r2", l, start)?, get("r2", "r2", l, end)?)))
        .max_by(|a, b| (a.2 - a.1).total_cmp(&(b.2 - b.1)));
    Ok(vec![
        Check {
            claim:
                "lens: bridge entity decodable at r1 in a middle layer after grokking (MRR ≥ 0.8)"
                    .into(),
            measured: bridge.map_or("no lens rows for b1 at r1".into(), |(l, v)| {
                format!("MRR {v:.3} at layer {l}, step {end}")
            }),
            ok: Some(bridge.is_some_and(|(_, v)| v >= 0.8)),
        },
        Check {
            claim: "lens: MRR of r2 at r2 rises from ≤ 0.1 at saturation to ≥ 0.3 (Fig. 4c)".into(),
            measured: rise.map_or("no lens rows for r2 at r2".into(), |(l, a, b)| {
                format!("layer {l}: {a:.3} at step {start} → {b:.3} at step {end}")
            }),
            ok: Some(rise.is_some_and(|(_, a, b)| a <= 0.1 && b >= 0.3)),
        },
    ])
}

/// The causal strength of the middle-layer r1 state at saturation and at the end, side by side.
fn causal_check(summary: &interp::TraceSummary) -> Check {
    let key = summary.causal.iter().find(|k| k.corruption == "r1");
    match key.and_then(|k| Some((k.layer, k.start?, k.end?))) {
        Some((layer, a, b)) => Check {
            claim: format!(
                "tracing: causal strength of S[{layer}, r1] grows during grokking (paper)"
            ),
            measured: format!(
                "{a:.3} at step {} → {b:.3} at step {}{}",
                summary.saturation.step,
                summary.last_step,
                if b > a {
                    ""
                } else {
                    " — it does NOT grow at this scale"
                }
            ),
            ok: if b > a { Some(true) } else { None },
        },
        None => Check {
            claim: "tracing: causal strength of the middle-layer r1 state".into(),
            measured: "not in trace.json".into(),
            ok: None,
        },
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "info",
    }
}

fn print_summary(checks: &[Check], seconds: f64, out: &Path) {
    println!("\n== demo summary ({:.1} min)", seconds / 60.0);
    let width = checks
        .iter()
        .map(|c| c.claim.chars().count())
        .max()
        .unwrap_or(0);
    for c in checks {
        println!("{:<4}  {:<width$}  {}", verdict(c.ok), c.claim, c.measured);
    }
    println!("\nreport: {}", out.join("index.html").display());
}

/// notebooks-out/demo/index.html: the checks and links to each run's report.
fn write_index(out: &Path, checks: &[Check]) -> Result<()> {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>grokscope demo</title>\
         <style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:4px 10px;\
         border-bottom:1px solid #ddd;text-align:left}.NO{color:#b00}.yes{color:#070}</style></head><body>\
         <h1>grokscope demo: grokked transformers on a CPU</h1>\
         <p>Two tiny models trained far past overfitting: two-hop composition and attribute comparison.\
         Reports: <a href=\"composition/index.html\">composition</a> · \
         <a href=\"comparison/index.html\">comparison</a>.</p>\
         <table><tr><th>holds</th><th>the paper's phenomenon</th><th>measured</th></tr>",
    );
    for c in checks {
        let v = verdict(c.ok);
        let _ = write!(
            html,
            "<tr><td class=\"{v}\">{v}</td><td>{}</td><td>{}</td></tr>",
            c.claim, c.measured
        );
    }
    html.push_str("</table>");
    for task in ["composition", "comparison"] {
        let _ = write!(
            html,
            "<h2>{task}</h2><iframe src=\"{task}/index.html\" style=\"width:100%;height:900px;border:0\"></iframe>"
        );
    }
    html.push_str("</body></html>\n");
    util::fs::write_atomic(&out.join("index.html"), html.as_bytes())?;
    Ok(())
}
