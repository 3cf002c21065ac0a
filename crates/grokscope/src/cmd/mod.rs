//! One module per subcommand.

pub mod args;
pub mod attribute;
pub mod cache;
pub mod chart;
pub mod circuit;
pub mod data;
pub mod demo;
pub mod dla;
pub mod doctor;
pub mod edges;
pub mod eval;
pub mod export_hf;
pub mod import_hf;
pub mod lens;
pub mod patch;
pub mod path_patch;
pub mod plot;
pub mod probe;
pub mod prompts;
pub mod report;
pub mod surgery;
pub mod sweep;
pub mod trace;
pub mod trace_edges;
pub mod train;
pub mod tuned_lens;
pub mod verify;

/// Process exit code for an error: 2 for bad input and every other failure the user can fix.
pub fn exit_code(_err: &anyhow::Error) -> i32 {
    2
}

/// An error as the one line the user sees: its chain of causes joined by `: `, each cause once
/// (a cause whose text is already part of the line is left out), newlines as spaces.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// A command's summary JSON: where its prompt sample came from (`data_dir`, `split`,
/// `probe_size`, `seed`) with the command's own `fields` (an object) added. serde_json keeps
/// keys sorted, so the order of the two parts does not show in the file.
pub fn sample_summary(
    data_dir: &std::path::Path,
    probe: &interp::PromptSample,
    fields: serde_json::Value,
) -> serde_json::Value {
    let mut summary = serde_json::json!({
        "data_dir": data_dir,
        "split": probe.spec.split,
        "probe_size": probe.examples.len(),
        "seed": probe.spec.seed,
    });
    if let (Some(map), serde_json::Value::Object(extra)) = (summary.as_object_mut(), fields) {
        map.extend(extra);
    }
    summary
}

/// Takes the lock of the output folder `dir` (creating it) for a command that writes several
/// files there, and removes the temporary files that killed runs left in it. The lock is held
/// until the returned value is dropped.
pub fn lock_output(dir: &std::path::Path) -> anyhow::Result<::train::lock::FolderLock> {
    let lock = ::train::lock::FolderLock::acquire(dir)?;
    ::train::lock::remove_stale_temps(dir, "")?;
    Ok(lock)
}

/// Checks that a count option (`--max-rows`, `--iterations`, ...) is at least 1.
pub fn check_positive(option: &str, value: usize) -> anyhow::Result<()> {
    if value == 0 {
        anyhow::bail!("{option} must be at least 1");
    }
    Ok(())
}
