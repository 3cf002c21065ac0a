//! End-to-end reliability tests (docs/reliability.md): concurrent writers, checkpoints paired with
//! the wrong data, options checked before any write, damaged checkpoints, temporaries left by
//! killed runs, failed figure commands and error texts. Each runs the real binary on a miniature
//! run trained once per test process.

mod common;

use common::{grokscope, make_data, run, run_ok, s, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A pid no process can have (above Linux's largest, 2^22), for temporaries of a dead writer.
const DEAD_PID: u32 = 2_000_000_000;

/// Runs `args` like [`run`], but kills the process and fails the test when it is still running
/// after `limit` (for inputs that used to hang).
fn run_within(args: &[&str], limit: Duration) -> Output {
    let mut child = grokscope()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the grokscope binary runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("grokscope {} still ran after {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs `args`, expects bad-input handling (exit 2, one `error:` line, no panic) and returns the
/// line.
fn run_bad(args: &[&str]) -> String {
    expect_bad(run(args), args)
}

/// Checks the bad-input handling of `out`, the output of `args`, and returns its error line.
fn expect_bad(out: Output, args: &[&str]) -> String {
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

/// A fresh empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("reliability")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `grokscope train` arguments of a miniature run of `steps` steps on `data` into `out`.
fn train_args(data: &Path, out: &Path, steps: u64) -> Vec<String> {
    let mut args: Vec<String> = ["--threads", "1", "train", "--preset", "tiny-composition"]
        .map(String::from)
        .into();
    args.extend(["--data", s(data), "--out", s(out), "--quiet"].map(String::from));
    for set in [
        format!("steps={steps}"),
        "eval_every=20".into(),
        format!("checkpoints=every:{}", steps / 2),
        "d_model=32".into(),
        "d_mlp=64".into(),
        "n_layer=2".into(),
        "batch_size=64".into(),
        "warmup_steps=5".into(),
    ] {
        args.extend(["--set".to_string(), set]);
    }
    args
}

/// The shared miniature: two datasets of the same shape (seeds 1 and 2, so the same vocabulary
/// size but other facts) and a 40-step run on the first with checkpoints at steps 20 and 40.
struct Fixture {
    data: PathBuf,
    other_data: PathBuf,
    run: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = scratch("fixture");
        let f = Fixture {
            data: dir.join("data"),
            other_data: dir.join("other-data"),
            run: dir.join("run"),
        };
        make_data(&f.data, "1");
        make_data(&f.other_data, "2");
        let args = train_args(&f.data, &f.run, 40);
        run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        f
    })
}

/// A copy of the fixture's run folder (for tests that damage it).
fn copy_run(to: &Path) -> PathBuf {
    let run = to.join("run");
    let status = Command::new("cp")
        .args(["-r", s(&fixture().run), s(&run)])
        .status()
        .unwrap();
    assert!(status.success());
    run
}

/// Names of the files directly in `dir` with extension `ext`.
fn files_with_ext(dir: &Path, ext: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(ext))
                .collect()
        })
        .unwrap_or_default()
}

/// Two `grokscope train` processes on one run folder at once, three times: one trains, the other
/// stops at once with an error naming the first's pid (or, started after the first finished,
/// finds the run complete); the run folder is complete and consistent every time, and the two
/// really did collide at least once.
#[test]
fn concurrent_trains_on_one_run_folder_never_corrupt_it() {
    let f = fixture();
    let dir = scratch("concurrent");
    let mut collisions = 0;
    for attempt in 0..3 {
        let out = dir.join(format!("run-{attempt}"));
        let args = train_args(&f.data, &out, 200);
        let spawn = || {
            grokscope()
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let pids = [a.id(), b.id()];
        let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let mut trained = 0;
        for (i, output) in outputs.iter().enumerate() {
            if output.status.success() {
                trained += 1;
                continue;
            }
            let err = stderr(output);
            assert_eq!(output.status.code(), Some(2), "{err}");
            let holder = format!("is in use by grokscope process {}", pids[1 - i]);
            assert!(err.contains(&holder), "attempt {attempt}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            collisions += 1;
        }
        assert!(trained >= 1, "attempt {attempt}: neither process trained");
        let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        assert_eq!(metrics.lines().count(), 1 + 200 / 20, "{metrics}");
        let verified = run_ok(&["verify", s(&out)]);
        assert!(verified.contains("2 checkpoints, all good"), "{verified}");
        assert!(
            !out.join(".grokscope.lock").exists(),
            "the lock file stayed"
        );
    }
    assert!(
        collisions >= 1,
        "the two processes never ran at the same time"
    );
}

/// A lock file left by a dead process does not block; a live holder blocks `trace` with its pid
/// named, and nothing is written.
#[test]
fn stale_locks_never_block_and_live_ones_name_their_holder() {
    let f = fixture();
    let dir = scratch("locks");
    let out = dir.join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join(".grokscope.lock"), DEAD_PID.to_string()).unwrap();
    let args = train_args(&f.data, &out, 20);
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.join("step-20/model.safetensors").is_file());

    let analysis = dir.join("analysis");
    let _held = train::lock::FolderLock::acquire(&analysis).unwrap();
    let err = run_bad(&[
        "trace",
        "--run",
        s(&f.run),
        "--out",
        s(&analysis),
        "--quiet",
    ]);
    let holder = format!("is in use by grokscope process {}", std::process::id());
    assert!(err.contains(&holder), "{err}");
    assert_eq!(
        std::fs::read_dir(&analysis).unwrap().count(),
        1,
        "only the lock file may be there"
    );
}

#[test]
fn absurd_thread_counts_are_refused_at_once() {
    let args = ["--threads", "100000", "doctor"];
    let err = expect_bad(run_within(&args, Duration::from_secs(20)), &args);
    assert!(err.contains("--threads 100000 is too many"), "{err}");
}

/// A checkpoint paired with another dataset of the same vocabulary size is refused by every
/// command that pairs them, unless `--allow-other-data` says it is deliberate.
#[test]
fn a_checkpoint_on_other_data_is_refused_unless_allowed() {
    let f = fixture();
    let dir = scratch("other-data");
    let ckpt = f.run.join("step-40/model.safetensors");
    let other = s(&f.other_data);
    let out = dir.join("out");
    let cases: [&[&str]; 5] = [
        &["eval", "--checkpoint", s(&ckpt), "--data", other],
        &[
            "lens",
            "--checkpoint",
            s(&ckpt),
            "--data",
            other,
            "--out",
            s(&out),
        ],
        &[
            "probe",
            "--run",
            s(&f.run),
            "--data",
            other,
            "--out",
            s(&out),
        ],
        &[
            "dla",
            "--checkpoint",
            s(&ckpt),
            "--data",
            other,
            "--out",
            s(&out),
        ],
        &[
            "trace",
            "--run",
            s(&f.run),
            "--data",
            other,
            "--out",
            s(&out),
            "--quiet",
        ],
    ];
    for args in cases {
        let err = run_bad(args);
        assert!(err.contains("was trained on other data"), "{args:?}: {err}");
        assert!(err.contains("--allow-other-data"), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    let printed = run_ok(&[
        "eval",
        "--checkpoint",
        s(&ckpt),
        "--data",
        other,
        "--allow-other-data",
    ]);
    assert!(printed.contains("train_inferred"), "{printed}");
    run_ok(&["eval", "--checkpoint", s(&ckpt), "--data", s(&f.data)]);
}

/// Bad options fail before any file is written: another command's output in the same folder
/// stays as it was, and no folder is created.
#[test]
fn options_are_checked_before_anything_is_written() {
    let f = fixture();
    let dir = scratch("options");
    let out = dir.join("shared");
    std::fs::create_dir_all(&out).unwrap();
    let other_output = out.join("examples.jsonl");
    std::fs::write(&other_output, "another command's output\n").unwrap();
    let ckpt = f.run.join("step-40/model.safetensors");
    let fresh = dir.join("fresh");
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "probe",
                "--checkpoint",
                s(&ckpt),
                "--out",
                s(&out),
                "--layers",
                "50",
            ],
            "layer 50",
        ),
        (
            &[
                "probe",
                "--checkpoint",
                s(&ckpt),
                "--out",
                s(&out),
                "--lr=-1",
            ],
            "--lr must be a positive number",
        ),
        (
            &[
                "lens",
                "--checkpoint",
                s(&ckpt),
                "--out",
                s(&out),
                "--max-rows",
                "0",
            ],
            "--max-rows must be at least 1",
        ),
        (
            &[
                "trace",
                "--run",
                s(&f.run),
                "--out",
                s(&fresh),
                "--key-layer",
                "50",
                "--quiet",
            ],
            "layer 50 is out of range",
        ),
        (
            &[
                "trace",
                "--run",
                s(&f.run),
                "--out",
                s(&fresh),
                "--max-rows",
                "0",
            ],
            "--max-rows must be at least 1",
        ),
        (
            &[
                "dla",
                "--checkpoint",
                s(&ckpt),
                "--out",
                s(&fresh),
                "--max-rows",
                "0",
            ],
            "--max-rows must be at least 1",
        ),
    ];
    for (args, expected) in cases {
        let err = run_bad(args);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(
            std::fs::read_to_string(&other_output).unwrap(),
            "another command's output\n",
            "{args:?} overwrote examples.jsonl"
        );
        assert!(!fresh.exists(), "{args:?} created {}", fresh.display());
    }
}

/// A checkpoint schedule asking for more checkpoints than steps fails at once, writing nothing.
#[test]
fn checkpoint_schedules_are_bounded_by_the_step_count() {
    let f = fixture();
    let out = scratch("schedule").join("run");
    let mut args = train_args(&f.data, &out, 40);
    args.extend(["--set".into(), "checkpoints=log:1000000000".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = expect_bad(run_within(&args, Duration::from_secs(20)), &args);
    assert!(
        err.contains("more checkpoints than the run's 40 steps"),
        "{err}"
    );
    assert!(!out.exists());
}

/// The line of `text` starting with `prefix` (empty if none).
fn line_of<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(prefix)).unwrap_or("")
}

/// Byte offset of the first tensor's data in a safetensors file (8-byte header length + header).
fn data_offset(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// A flipped bit inside a tensor is found by `verify` through the recorded hash; NaN weights are
/// refused when loading; a checkpoint without recorded hashes still loads and verifies.
#[test]
fn damaged_checkpoints_are_detected() {
    let dir = scratch("damaged");
    let run_dir = copy_run(&dir);
    let printed = run_ok(&["verify", s(&run_dir)]);
    assert!(
        printed.contains("ok (hashes match, weights finite)"),
        "{printed}"
    );

    let model = run_dir.join("step-20/model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let at = data_offset(&model) + 100;
    bytes[at] ^= 0x01;
    std::fs::write(&model, &bytes).unwrap();
    assert_verify_condemns(&run_dir, "step-20", "BAD: model.safetensors has changed");

    // NaN in the weights, in a checkpoint that records no hashes (as older ones do).
    let state = run_dir.join("step-40/state.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("hashes");
    std::fs::write(&state, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let model = run_dir.join("step-40/model.safetensors");
    let printed = run(&["verify", s(&run_dir)]);
    assert!(
        line_of(&stdout(&printed), "step-40 ").contains("ok (no hash recorded; weights finite)"),
        "{}",
        stdout(&printed)
    );
    let mut bytes = std::fs::read(&model).unwrap();
    let at = data_offset(&model);
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&model, &bytes).unwrap();
    let data = fixture().data.clone();
    let err = run_bad(&["eval", "--checkpoint", s(&model), "--data", s(&data)]);
    assert!(err.contains("holds NaN or infinite values"), "{err}");
}

/// `grokscope verify RUN` exits 2, says `why` on the line of checkpoint folder `step` and tells
/// to delete that folder.
fn assert_verify_condemns(run_dir: &Path, step: &str, why: &str) {
    let out = run(&["verify", s(run_dir)]);
    assert_eq!(out.status.code(), Some(2));
    let printed = stdout(&out);
    assert!(
        line_of(&printed, &format!("{step} ")).contains(why),
        "{printed}"
    );
    assert!(
        stderr(&out).contains(&format!("delete {step}")),
        "{}",
        stderr(&out)
    );
}

/// A `metrics.csv` cut short (as two writers used to leave it) is found by `verify`, and doing
/// what it says (delete the step folders it names, run the same `train` again) repairs the run.
#[test]
fn a_cut_short_log_is_found_and_repaired_as_verify_says() {
    let dir = scratch("cut-short");
    let run_dir = copy_run(&dir);
    let metrics = run_dir.join("metrics.csv");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("40,")).collect();
    std::fs::write(&metrics, kept.join("\n") + "\n").unwrap();
    assert_verify_condemns(&run_dir, "step-40", "BAD: metrics.csv has no row");

    std::fs::remove_dir_all(run_dir.join("step-40")).unwrap();
    let args = train_args(&fixture().data, &run_dir, 40);
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let printed = run_ok(&["verify", s(&run_dir)]);
    assert!(printed.contains("2 checkpoints, all good"), "{printed}");
    assert_eq!(std::fs::read_to_string(&metrics).unwrap(), text);
}

/// Temporaries of killed `data` and `trace` runs are removed by the next run of the command.
#[test]
fn temporaries_of_killed_runs_are_removed_by_the_next_run() {
    let f = fixture();
    let dir = scratch("temporaries");
    let staging = dir.join(format!(".d.tmp-{DEAD_PID}"));
    std::fs::create_dir_all(staging.join("inner")).unwrap();
    make_data(&dir.join("d"), "1");
    assert!(!staging.exists(), "the data staging folder stayed");

    let out = dir.join("analysis");
    let top = out.join(format!(".lens.csv.tmp-{DEAD_PID}"));
    let nested = out.join(format!("steps/step-20/.patch.csv.tmp-{DEAD_PID}"));
    std::fs::create_dir_all(nested.parent().unwrap()).unwrap();
    std::fs::write(&top, "partial").unwrap();
    std::fs::write(&nested, "partial").unwrap();
    run_ok(&[
        "--threads",
        "1",
        "trace",
        "--run",
        s(&f.run),
        "--out",
        s(&out),
        "--size",
        "20",
        "--quiet",
    ]);
    assert!(
        !top.exists() && !nested.exists(),
        "trace temporaries stayed"
    );
    assert!(out.join("trace.json").is_file());
}

/// `plot` and `report` on a malformed CSV fail and leave no figure behind.
#[test]
fn failed_figure_commands_leave_no_output() {
    let f = fixture();
    let dir = scratch("figures");
    let analysis = dir.join("analysis");
    std::fs::create_dir_all(&analysis).unwrap();
    std::fs::write(analysis.join("lens.csv"), "step,layer\nnot-a-number,1\n").unwrap();
    for command in ["plot", "report"] {
        let out = run(&[command, "--run", s(&f.run), "--analysis", s(&analysis)]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(files_with_ext(&analysis, ".png").is_empty(), "{command}");
        assert!(files_with_ext(&analysis, ".html").is_empty(), "{command}");
        let names: Vec<String> = std::fs::read_dir(&analysis)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["lens.csv"], "{command} left {names:?}");
    }
}

/// Error lines state their cause once, and a full disk reads as one.
#[test]
fn errors_state_their_cause_once() {
    let f = fixture();
    let err = run_bad(&[
        "eval",
        "--checkpoint",
        "/nonexistent/model.safetensors",
        "--data",
        s(&f.data),
    ]);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    assert!(err.contains("/nonexistent/model.safetensors"), "{err}");
    let err = run_bad(&["train", "--config", "/nonexistent/run.toml"]);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    assert!(err.contains("/nonexistent/run.toml"), "{err}");

    let ckpt = f.run.join("step-40/model.safetensors");
    let out = run(&[
        "eval",
        "--checkpoint",
        s(&ckpt),
        "--data",
        s(&f.data),
        "--out",
        "/dev/full",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains("IoError") && !err.contains("Os {"), "{err}");
}
