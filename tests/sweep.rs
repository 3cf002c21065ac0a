//! End-to-end tests of `grokscope sweep` on `sweeps/smoke.toml`: planning, the local runner,
//! collect, the generated Slurm scripts, bad input — and, when a Slurm cluster answers (`just
//! slurm-up`; CI starts one), the same sweep through real job arrays with a task preempted by
//! SIGTERM, which must end with the same weights and the same sweep.csv as the local run.

mod common;

use common::{s, scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The smoke sweep file.
fn smoke() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sweeps/smoke.toml")
}

fn grokscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grokscope"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the grokscope binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs grokscope and returns its stdout; fails the test when it fails.
fn ok(args: &[&str]) -> String {
    let out = grokscope(args);
    assert!(
        out.status.success(),
        "grokscope {} failed:\n{}\n{}",
        args.join(" "),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Plans the smoke sweep into `dir/name`.
fn plan_smoke(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    ok(&["sweep", "plan", s(&smoke()), "--out", s(&out)]);
    out
}

/// sweep.csv as (header, rows).
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

#[test]
fn plan_writes_points_and_shares_data() {
    let dir = scratch("sweep_plan");
    let out = plan_smoke(&dir, "sw");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    let points = manifest["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    assert_eq!(
        manifest["datasets"].as_array().unwrap().len(),
        2,
        "2 φ values, 2 datasets"
    );
    let mut seen = Vec::new();
    for p in points {
        let name = p["name"].as_str().unwrap();
        let folder = out.join("points").join(name);
        for file in ["point.json", "train.json", "data.json"] {
            assert!(folder.join(file).is_file(), "{name} lacks {file}");
        }
        let train: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("train.json")).unwrap()).unwrap();
        let phi = &p["values"]["dataset.params.phi"];
        assert_eq!(&train["dataset"]["params"]["phi"], phi);
        assert_eq!(train["seed"], p["values"]["seed"]);
        assert_eq!(train["n_layer"], 2, "[base.set] applies");
        seen.push((
            phi.to_string(),
            p["values"]["seed"].to_string(),
            p["data"].clone(),
        ));
    }
    assert_eq!(seen[0].2, seen[1].2, "same φ, same dataset folder");
    assert_ne!(seen[0].2, seen[2].2);
    // Planning the same file again keeps the folder; another file is refused.
    ok(&["sweep", "plan", s(&smoke()), "--out", s(&out)]);
    let other = dir.join("other.toml");
    let text_other = std::fs::read_to_string(smoke())
        .unwrap()
        .replace("seed = [0, 1]", "seed = [0, 2]");
    std::fs::write(&other, text_other).unwrap();
    let res = grokscope(&["sweep", "plan", s(&other), "--out", s(&out)]);
    assert_eq!(res.status.code(), Some(2));
    assert!(
        text(&res.stderr).contains("planned from another file"),
        "{}",
        text(&res.stderr)
    );
}

#[test]
fn bad_sweep_files_fail_with_one_line_and_write_nothing() {
    let dir = scratch("sweep_bad");
    let base = "[base]\npreset = \"tiny-composition\"\n";
    let cases = [
        (
            "unknown_table",
            format!("{base}[grids]\nseed = [0]\n"),
            "unknown field `grids`",
        ),
        (
            "unknown_key",
            format!("{base}[grid]\nlearning_rate = [1e-3]\n"),
            "unknown config key \"learning_rate\"",
        ),
        (
            "unknown_data_key",
            format!("{base}[grid]\n\"dataset.params.nodes\" = [10]\n"),
            "dataset.params.nodes",
        ),
        (
            "empty_axis",
            format!("{base}[grid]\nseed = []\n"),
            "axis seed has no values",
        ),
        (
            "not_sweepable",
            format!("{base}[grid]\npreset = [\"tiny-comparison\"]\n"),
            "preset is not sweepable",
        ),
        (
            "bad_value",
            format!("{base}[grid]\nlr = [-1.0]\n"),
            "lr = -1",
        ),
        (
            "ragged_zip",
            format!("{base}[[zip]]\nlr = [1e-3, 2e-3]\nseed = [0]\n"),
            "[[zip]]",
        ),
    ];
    for (name, body, expected) in cases {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, body).unwrap();
        let out = dir.join(name);
        let res = grokscope(&["sweep", "plan", s(&file), "--out", s(&out)]);
        let err = text(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line, got {err}");
        assert!(err.contains(expected), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(!out.exists(), "{name}: nothing may be written");
    }
    let res = grokscope(&["sweep", "run", s(&dir.join("nowhere"))]);
    assert_eq!(res.status.code(), Some(2));
    assert!(text(&res.stderr).contains("not a planned sweep folder"));
}

#[test]
fn slurm_submit_without_sbatch_is_one_error_and_writes_nothing() {
    let dir = scratch("sweep_no_sbatch");
    let out = plan_smoke(&dir, "sw");
    let res = Command::new(env!("CARGO_BIN_EXE_grokscope"))
        .args(["sweep", "slurm", s(&out), "--submit"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(
        text(&res.stderr).contains("sbatch not found"),
        "{}",
        text(&res.stderr)
    );
    assert!(!out.join("slurm").exists());
}

#[test]
fn slurm_scripts_have_the_array_signal_requeue_and_dependencies() {
    let dir = scratch("sweep_slurm_scripts");
    let out = plan_smoke(&dir, "sw");
    ok(&[
        "sweep",
        "slurm",
        s(&out),
        "--partition",
        "short",
        "--time",
        "0:30:00",
        "--max-parallel",
        "3",
        "--gpus-per-task",
        "1",
        "--cpus-per-task",
        "2",
    ]);
    let read = |name: &str| std::fs::read_to_string(out.join("slurm").join(name)).unwrap();
    let train = read("train.sbatch");
    for line in [
        "#SBATCH --array=0-3%3",
        "#SBATCH --signal=B:TERM@120",
        "#SBATCH --requeue",
        "#SBATCH --partition=short",
        "#SBATCH --time=0:30:00",
        "#SBATCH --gpus-per-task=1",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --open-mode=append",
        "--stage train --index \"$SLURM_ARRAY_TASK_ID\"",
    ] {
        assert!(train.contains(line), "train.sbatch lacks {line}:\n{train}");
    }
    assert!(
        train.contains(&format!("exec '{}'", env!("CARGO_BIN_EXE_grokscope"))),
        "{train}"
    );
    let trace = read("trace.sbatch");
    assert!(
        trace.contains("#SBATCH --array=0-3%3") && trace.contains("--stage trace"),
        "{trace}"
    );
    assert!(!trace.contains("--requeue"));
    assert!(read("data.sbatch").contains("--stage data"));
    assert!(read("collect.sbatch").contains("sweep collect"));
    check_submit_script(&out.join("slurm"));
}

/// submit.sh submits the four stages in order with their dependencies; every script is bash.
fn check_submit_script(slurm: &Path) {
    let submit = std::fs::read_to_string(slurm.join("submit.sh")).unwrap();
    let order: Vec<usize> = [
        "sbatch --parsable data.sbatch",
        "--dependency=afterok:$prev train.sbatch",
        "--dependency=aftercorr:$prev trace.sbatch",
        "--dependency=afterany:$prev collect.sbatch",
    ]
    .iter()
    .map(|needle| {
        submit
            .find(needle)
            .unwrap_or_else(|| panic!("submit.sh lacks {needle}:\n{submit}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "stages out of order:\n{submit}"
    );
    for name in [
        "data.sbatch",
        "train.sbatch",
        "trace.sbatch",
        "collect.sbatch",
        "submit.sh",
    ] {
        let status = Command::new("bash")
            .arg("-n")
            .arg(slurm.join(name))
            .status()
            .unwrap();
        assert!(status.success(), "{name} is not valid bash");
    }
}

/// metrics.csv of a run as (header, rows).
fn metrics(run: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    read_csv(&run.join("metrics.csv"))
}

/// Number of evaluation rows in a run's metrics.csv so far.
fn eval_rows(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.csv"))
        .map_or(0, |t| t.lines().count().saturating_sub(1))
}

/// Checks a done row of sweep.csv against its run's metrics.csv: final values, the milestone
/// steps (first evaluation with accuracy ≥ 0.9) and the best OOD accuracy.
fn check_row_against_metrics(header: &[String], row: &[String], run: &Path) {
    let cell = |name: &str| row[header.iter().position(|h| h == name).unwrap()].clone();
    let (mh, mrows) = metrics(run);
    let col = |name: &str| mh.iter().position(|h| h == name).unwrap();
    let last = mrows.last().unwrap();
    assert_eq!(cell("final_step"), last[col("step")]);
    assert_eq!(cell("final_train_acc"), last[col("train_inferred_acc")]);
    assert_eq!(
        cell("final_test_id_acc"),
        last[col("test_inferred_iid_acc")]
    );
    assert_eq!(
        cell("final_test_ood_acc"),
        last[col("test_inferred_ood_acc")]
    );
    let first_at = |name: &str| {
        mrows
            .iter()
            .find(|r| r[col(name)].parse::<f64>().unwrap() >= 0.9)
            .map_or(String::new(), |r| r[col("step")].clone())
    };
    assert_eq!(cell("step_train_acc_0.9"), first_at("train_inferred_acc"));
    assert_eq!(
        cell("step_test_id_acc_0.9"),
        first_at("test_inferred_iid_acc")
    );
    let best = mrows
        .iter()
        .map(|r| r[col("test_inferred_ood_acc")].parse::<f64>().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(cell("best_test_ood_acc").parse::<f64>().unwrap(), best);
}

/// Starts training point `index` as a Slurm task would, stops it with SIGTERM once it has
/// evaluated twice, and checks that it wrote a checkpoint and said so.
fn interrupt_training(sweep: &Path, index: usize) {
    let run = sweep.join(format!("points/p{index:03}/run"));
    let child = Command::new(env!("CARGO_BIN_EXE_grokscope"))
        .args([
            "--threads",
            "1",
            "sweep",
            "task",
            s(sweep),
            "--stage",
            "train",
            "--index",
        ])
        .arg(index.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while eval_rows(&run) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "training never evaluated"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) only sends a signal to our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("interrupted at step"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn local_run_resumes_isolates_failures_and_collects() {
    let dir = scratch("sweep_local");
    let sw = plan_smoke(&dir, "sw");
    ok(&["sweep", "task", s(&sw), "--stage", "data"]);
    interrupt_training(&sw, 0);
    // A point that fails at run time does not stop the others.
    let p3 = sw.join("points/p003/train.json");
    let good = std::fs::read_to_string(&p3).unwrap();
    std::fs::write(&p3, good.replace("\"n_layer\": 2", "\"n_layer\": 0")).unwrap();
    let res = grokscope(&["sweep", "run", s(&sw), "--jobs", "2"]);
    let (stdout, stderr) = (text(&res.stdout), text(&res.stderr));
    assert_eq!(res.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("1 of 4 points failed: p003"), "{stderr}");
    assert!(
        stdout.contains("p003 (dataset.params.phi=4.0 seed=1) is failed: train task:"),
        "{stdout}"
    );
    let log = std::fs::read_to_string(sw.join("points/p000/train.log")).unwrap();
    assert!(log.contains("resuming from"), "p000 did not resume:\n{log}");

    check_collected_with_p003_failed(&sw);

    // Fixed and run again: finished points are skipped, the failed one runs.
    std::fs::write(&p3, good).unwrap();
    let stdout = ok(&["sweep", "run", s(&sw), "--jobs", "2"]);
    for p in ["p000", "p001", "p002"] {
        assert!(
            stdout.contains(&format!("[{p}]"))
                && stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("[{p}]")) && l.ends_with("already done")),
            "{stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("[p003]") && l.contains("trained, traced")),
        "{stdout}"
    );
    assert!(ok(&["sweep", "status", s(&sw)]).contains("4 points: 4 done"));
}

/// sweep.csv, the figures and index.html after a run where p003 failed and the others finished.
fn check_collected_with_p003_failed(sw: &Path) {
    let (header, rows) = read_csv(&sw.join("sweep.csv"));
    assert_eq!(
        &header[..4],
        ["point", "dataset.params.phi", "seed", "status"]
    );
    let expected = [
        ("p000", "2.0", "0"),
        ("p001", "2.0", "1"),
        ("p002", "4.0", "0"),
        ("p003", "4.0", "1"),
    ];
    assert_eq!(rows.len(), 4);
    for (row, (name, phi, seed)) in rows.iter().zip(expected) {
        assert_eq!(&row[..3], [name, phi, seed]);
        if name == "p003" {
            assert_eq!(row[3], "failed");
            assert!(row.last().unwrap().contains("n_layer = 0"), "{row:?}");
            continue;
        }
        assert_eq!(row[3], "done", "{row:?}");
        check_row_against_metrics(&header, row, &sw.join(format!("points/{name}/run")));
    }
    assert!(
        header.iter().any(|h| h.starts_with("lens_"))
            && header.contains(&"saturation_step".to_string())
    );
    for fig in ["curve_train.png", "curve_test_id.png", "curve_test_ood.png"] {
        assert!(sw.join("figures").join(fig).is_file(), "{fig} missing");
    }
    let index = std::fs::read_to_string(sw.join("index.html")).unwrap();
    for p in ["p000", "p001", "p002"] {
        let link = format!("points/{p}/trace/index.html");
        assert!(index.contains(&link) && sw.join(&link).is_file(), "{link}");
    }
    assert!(!index.contains("points/p003/trace/index.html"));
}

/// Why the Slurm test cannot run here, or `None` when a cluster answers with a usable node.
fn no_cluster() -> Option<String> {
    let out = Command::new("sinfo").args(["-h", "-o", "%T"]).output();
    match out {
        Err(e) => Some(format!("sinfo cannot run ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "sinfo failed ({})",
            text(&o.stderr).trim().lines().last().unwrap_or_default()
        )),
        Ok(o) => {
            let states = text(&o.stdout);
            let usable = states.lines().any(|l| {
                ["idle", "mixed", "allocated"]
                    .iter()
                    .any(|s| l.starts_with(s))
            });
            (!usable).then(|| format!("no usable node (sinfo says {:?})", states.trim()))
        }
    }
}

/// The job ids `sweep slurm --submit` recorded, by stage.
fn jobs(sweep: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(sweep.join("slurm/jobs.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `squeue` lines `ID STATE` of the given jobs, array tasks one per line.
fn queued(ids: &str) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i %T", "-j", ids])
        .output()
        .unwrap();
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Cancels the test's jobs if it ends early.
struct CancelOnDrop(String);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("scancel").args(self.0.split(',')).status();
    }
}

/// Waits for a training task to be mid-run (between its 2nd and 5th evaluation, steps 100–250 of
/// 400, so that it cannot finish before the signal lands), sends its batch shell (grokscope itself) SIGTERM as
/// a preemption would, and makes the requeued task eligible at once (Slurm delays requeued jobs
/// by about two minutes). Returns the task's point index.
fn preempt_one_task(sw: &Path, train: &str) -> usize {
    let start = Instant::now();
    let index = loop {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no training task ever ran"
        );
        let mid_run = (0..4).find(|i| {
            let run = sw.join(format!("points/p{i:03}/run"));
            (2..=5).contains(&eval_rows(&run)) && !run.join("step-400").exists()
        });
        if let Some(i) = mid_run {
            break i;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let task = format!("{train}_{index}");
    // scancel keeps retrying while the job it signalled is being requeued: do not wait for it.
    let _ = Command::new("timeout")
        .args(["10", "scancel", "--batch", "--signal=TERM", &task])
        .spawn();
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "task {task} was never requeued"
        );
        if queued(train)
            .iter()
            .any(|(id, state)| *id == task && state == "PENDING")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = Command::new("scontrol")
        .args(["update", &format!("JobId={task}"), "StartTime=now"])
        .status()
        .unwrap();
    assert!(status.success());
    index
}

/// Waits (up to 10 minutes) until none of the jobs is queued or running.
fn wait_until_gone(ids: &str) {
    let start = Instant::now();
    while !queued(ids).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "jobs still queued: {:?}",
            queued(ids)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn slurm_sweep_end_to_end_matches_the_local_run() {
    if let Some(why) = no_cluster() {
        eprintln!("SKIP slurm_sweep_end_to_end_matches_the_local_run: {why}; `just slurm-up` starts a one-node cluster");
        return;
    }
    let dir = scratch("sweep_slurm");
    let sw = plan_smoke(&dir, "slurm");
    ok(&[
        "sweep",
        "slurm",
        s(&sw),
        "--max-parallel",
        "2",
        "--time",
        "0:20:00",
        "--submit",
    ]);
    let jobs = jobs(&sw);
    let ids = jobs
        .iter()
        .map(|(_, id)| id.clone())
        .collect::<Vec<_>>()
        .join(",");
    let _cancel = CancelOnDrop(ids.clone());
    let train = &jobs.iter().find(|(k, _)| k == "train").unwrap().1;
    let preempted = preempt_one_task(&sw, train);
    wait_until_gone(&ids);
    let log = std::fs::read_to_string(sw.join(format!("slurm/logs/train-{train}_{preempted}.out")))
        .unwrap();
    assert!(
        log.contains("interrupted at step") && log.contains("requeued"),
        "{log}"
    );
    assert!(log.contains("resuming from"), "{log}");
    assert!(ok(&["sweep", "status", s(&sw)]).contains("4 points: 4 done"));

    let local = plan_smoke(&dir, "local");
    ok(&["sweep", "run", s(&local), "--jobs", "2"]);
    let slurm_csv = std::fs::read_to_string(sw.join("sweep.csv")).unwrap();
    assert_eq!(
        slurm_csv,
        std::fs::read_to_string(local.join("sweep.csv")).unwrap()
    );
    for i in 0..4 {
        let weights = |root: &Path| {
            std::fs::read(root.join(format!("points/p{i:03}/run/step-400/model.safetensors")))
                .unwrap()
        };
        assert!(
            weights(&sw) == weights(&local),
            "p{i:03}: Slurm and local weights differ"
        );
    }
}
