//! `grokscope sweep slurm` and `sweep status`: Slurm batch scripts for a planned sweep (a data
//! job, a training job array, a trace job array, a collect job), their submission with `sbatch`,
//! and the state of every point from `squeue`/`sacct` and the run folders.

use super::plan::{PointEntry, Sweep};
use super::point::{is_traced, is_trained, last_error};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Options of the generated scripts.
#[derive(clap::Args, Clone, Debug)]
pub struct SlurmOptions {
    /// Partition (default: the cluster's default partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per task, in Slurm's format (e.g. 2:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// Array tasks running at once.
    #[arg(long, default_value_t = 8)]
    pub max_parallel: usize,
    /// GPUs per training and trace task.
    #[arg(long, default_value_t = 0)]
    pub gpus_per_task: usize,
    /// CPUs (and libtorch threads) per task.
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
}

/// The stages, in submission order: (name, array job, dependency on the previous job).
const STAGES: [(&str, bool, &str); 4] = [
    ("data", false, ""),
    ("train", true, "afterok"),
    ("trace", true, "aftercorr"),
    ("collect", false, "afterany"),
];

/// The stage names in submission order.
pub fn stage_names() -> impl Iterator<Item = &'static str> {
    STAGES.iter().map(|(name, _, _)| *name)
}

/// Writes `slurm/{data,train,trace,collect}.sbatch` and `slurm/submit.sh`; returns the folder.
pub fn write_scripts(sweep: &Sweep, opts: &SlurmOptions) -> Result<PathBuf> {
    if opts.max_parallel == 0 || opts.cpus_per_task == 0 {
        bail!("--max-parallel and --cpus-per-task must be at least 1");
    }
    let exe = std::env::current_exe().context("cannot locate the grokscope binary")?;
    let dir = sweep.dir.join("slurm");
    std::fs::create_dir_all(dir.join("logs"))?;
    for (stage, array, _) in STAGES {
        let text = script(sweep, opts, &exe, stage, array);
        std::fs::write(dir.join(format!("{stage}.sbatch")), text)?;
    }
    std::fs::write(dir.join("submit.sh"), submit_script(&dir))?;
    Ok(dir)
}

/// One stage's batch script.
fn script(sweep: &Sweep, opts: &SlurmOptions, exe: &Path, stage: &str, array: bool) -> String {
    let n = sweep.manifest.points.len();
    let name = sweep
        .dir
        .file_name()
        .map_or("sweep".into(), |n| n.to_string_lossy().into_owned());
    let log = if array { "%A_%a" } else { "%j" };
    let mut s = String::from("#!/bin/bash\n");
    let mut sb = |line: String| {
        let _ = writeln!(s, "#SBATCH {line}");
    };
    sb(format!("--job-name=gs-{name}-{stage}"));
    sb(format!(
        "--output={}/slurm/logs/{stage}-{log}.out",
        sweep.dir.display()
    ));
    sb("--open-mode=append".into());
    sb("--kill-on-invalid-dep=yes".into());
    sb(format!("--cpus-per-task={}", opts.cpus_per_task));
    if let Some(p) = &opts.partition {
        sb(format!("--partition={p}"));
    }
    if let Some(t) = &opts.time {
        sb(format!("--time={t}"));
    }
    if array {
        sb(format!(
            "--array=0-{}%{}",
            n.saturating_sub(1),
            opts.max_parallel
        ));
        if opts.gpus_per_task > 0 {
            sb(format!("--gpus-per-task={}", opts.gpus_per_task));
        }
    }
    if stage == "train" {
        sb("--signal=B:TERM@120".into());
        sb("--requeue".into());
    }
    let exe = shell_quote(&exe.display().to_string());
    let dir = shell_quote(&sweep.dir.display().to_string());
    let command = match stage {
        "collect" => format!("sweep collect {dir}"),
        "data" => format!("sweep task {dir} --stage data"),
        _ => format!("sweep task {dir} --stage {stage} --index \"$SLURM_ARRAY_TASK_ID\""),
    };
    let _ = write!(
        s,
        "# grokscope is the batch shell itself (exec), so the SIGTERM of --signal=B:TERM@120 or of\n\
         # `scancel --batch --signal=TERM` reaches it: training then checkpoints and requeues itself.\n\
         exec {exe} --threads \"${{SLURM_CPUS_PER_TASK:-{}}}\" {command}\n",
        opts.cpus_per_task
    );
    s
}

/// `submit.sh`: submits the four stages chained by their dependencies, writing `jobs.env`.
fn submit_script(dir: &Path) -> String {
    let mut s = format!(
        "#!/bin/bash\n# Submits the sweep's jobs in order; each waits on the one before.\nset -euo pipefail\ncd {}\nprev=\n: > jobs.env\n",
        shell_quote(&dir.display().to_string())
    );
    for (stage, _, dep) in STAGES {
        let dependency = if dep.is_empty() {
            String::new()
        } else {
            format!("--dependency={dep}:$prev ")
        };
        let _ = writeln!(s, "prev=$(sbatch --parsable {dependency}{stage}.sbatch | cut -d';' -f1)\necho \"{stage}=$prev\" >> jobs.env");
    }
    s.push_str("cat jobs.env\n");
    s
}

/// Quotes `text` for bash.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Fails with one clear line when `sbatch` cannot be run.
pub fn require_sbatch() -> Result<()> {
    match Command::new("sbatch").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!("sbatch not found or not working: install Slurm's client tools (or run `grokscope sweep slurm` without --submit and submit slurm/submit.sh on the cluster)"),
    }
}

/// Runs `submit.sh`; returns the job ids by stage.
pub fn submit(dir: &Path) -> Result<BTreeMap<String, String>> {
    let out = Command::new("bash")
        .arg(dir.join("submit.sh"))
        .output()
        .context("cannot run bash")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "sbatch failed: {}",
            err.lines().last().unwrap_or("(no message)")
        );
    }
    read_jobs(dir)
}

/// The job ids written by `submit.sh` (`slurm/jobs.env`), empty when never submitted.
pub fn read_jobs(dir: &Path) -> Result<BTreeMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(dir.join("jobs.env")) else {
        return Ok(BTreeMap::new());
    };
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Slurm's view of the sweep's jobs: `"<job>_<task>"` or `"<job>"` → state, from `squeue`
/// (queued and running) and, where accounting answers, `sacct` (finished too).
pub fn job_states(jobs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut states = BTreeMap::new();
    if jobs.is_empty() {
        return states;
    }
    let ids = jobs.values().cloned().collect::<Vec<_>>().join(",");
    let sacct = Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "JobID,State", "-j", &ids])
        .output();
    let squeue = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i|%T", "-j", &ids])
        .output();
    for out in [sacct, squeue]
        .into_iter()
        .flatten()
        .filter(|o| o.status.success())
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((id, state)) = line.split_once('|') {
                let state = state.split_whitespace().next().unwrap_or_default();
                states.insert(id.trim().to_string(), state.to_string());
            }
        }
    }
    states
}

/// One point's state for `sweep status`: `done`, `failed: LINE`, `running (STAGE)`, `trained`
/// (waiting for its trace) or `pending`.
pub fn point_state(
    sweep: &Sweep,
    p: &PointEntry,
    jobs: &BTreeMap<String, String>,
    states: &BTreeMap<String, String>,
) -> String {
    if is_trained(sweep, p) && is_traced(sweep, p) {
        return "done".into();
    }
    let task_state = |stage: &str| {
        jobs.get(stage)
            .and_then(|id| states.get(&format!("{id}_{}", p.index)))
            .cloned()
    };
    for stage in ["trace", "train"] {
        if task_state(stage).as_deref() == Some("RUNNING") {
            return format!("running ({stage})");
        }
    }
    if let Some(err) = last_error(sweep, p) {
        return format!("failed: {err}");
    }
    for stage in ["train", "trace"] {
        if let Some(s) = task_state(stage).filter(|s| {
            [
                "FAILED",
                "TIMEOUT",
                "OUT_OF_MEMORY",
                "NODE_FAIL",
                "CANCELLED",
            ]
            .contains(&s.as_str())
        }) {
            return format!(
                "failed: {stage} task {s}{}",
                log_tail(sweep, stage, &jobs[stage], p.index)
            );
        }
    }
    if is_trained(sweep, p) {
        return "trained".into();
    }
    "pending".into()
}

/// `; last log line: …` of a task's Slurm log, when it has one.
fn log_tail(sweep: &Sweep, stage: &str, job: &str, index: usize) -> String {
    let path = sweep
        .dir
        .join("slurm/logs")
        .join(format!("{stage}-{job}_{index}.out"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!("; last log line: {l}"))
        })
        .unwrap_or_default()
}

/// Asks Slurm to requeue the array task (or job) this process runs in; a no-op outside Slurm.
pub fn requeue_self() -> Result<bool> {
    let Ok(job) = std::env::var("SLURM_JOB_ID") else {
        return Ok(false);
    };
    let id = match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
    ) {
        (Ok(array), Ok(task)) => format!("{array}_{task}"),
        _ => job,
    };
    let status = Command::new("scontrol")
        .args(["requeue", &id])
        .status()
        .context("cannot run scontrol")?;
    if !status.success() {
        bail!("scontrol requeue {id} failed ({status})");
    }
    Ok(true)
}
