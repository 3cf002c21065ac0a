//! Lens and causal tracing over every checkpoint of a training run, the circuit change between
//! the start of grokking and the end of training, and a summary for the demo.
//!
//! Files written to the output folder:
//! - `examples.jsonl` — the prompt sample (same for every checkpoint);
//! - `steps/step-N/{lens,patch,state_effect,attention}.csv` + `done.json` — per checkpoint; a
//!   checkpoint whose `done.json` matches the current options and checkpoint file is skipped on
//!   re-runs;
//! - `lens.csv`, `patch.csv`, `state_effect.csv`, `attention.csv` (see [`crate::attention`]) —
//!   all traced steps combined (rebuilt each run);
//! - `circuit_change.csv` — `corruption,layer,position,start,end,delta`: residual noising causal
//!   strength at the saturation checkpoint and at the last one;
//! - `trace.json` — [`TraceSummary`].

use crate::attention::attention_patterns;
use crate::effect::state_effect;
use crate::error::{InterpError, Result};
use crate::lens::{default_targets, logit_lens, TargetSpec, ANSWER, LABELS};
use crate::load::{
    check_compatible, check_trained_on, list_checkpoints, load_fitted, resolve_data_dir,
};
use crate::net::{LnMode, Net};
use crate::output::{
    read_csv, write_csv, write_json, AttentionRow, CircuitChangeRow, LensRow, PatchRow,
};
use crate::patch::{patch_sweep, CellGrid, Direction, PositionChoice, SweepMode, SweepOptions};
use crate::prompt_sample::{default_corruptions, CorruptionSpec, PromptSample, SampleSpec};
use crate::tokens::LensOptions;
use model::token_map::RankOver;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;
use util::stats::mean;

/// Options of [`trace`].
#[derive(Clone, Debug)]
pub struct TraceOptions {
    pub sample: SampleSpec,
    /// Steps to trace (`None`: every checkpoint). The saturation and the last checkpoint are
    /// always added, so the circuit change is defined.
    pub steps: Option<Vec<u64>>,
    /// Corruptions (`None`: the paper's, see [`default_corruptions`]).
    pub corruptions: Option<Vec<CorruptionSpec>>,
    /// Position sets of the residual noising sweep (default: the corrupted positions only, the
    /// paper's cells).
    pub positions: Vec<PositionChoice>,
    /// Dataset folder (`None`: `data_dir` of `RUN/config.json`).
    pub data: Option<PathBuf>,
    /// Layer of the key numbers in `trace.json` (`None`: [`key_layer`]).
    pub key_layer: Option<usize>,
    /// Recompute every checkpoint even if done.
    pub force: bool,
    /// Trace checkpoints on data other than the data they were trained on (same vocabulary size).
    pub allow_other_data: bool,
    pub max_rows: usize,
    pub device: tch::Device,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Rows ranks are taken over (`None`: each checkpoint's default).
    pub rank_over: Option<RankOver>,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            sample: SampleSpec::default(),
            steps: None,
            corruptions: None,
            positions: vec![PositionChoice::Corrupted],
            data: None,
            key_layer: None,
            force: false,
            allow_other_data: false,
            max_rows: 2048,
            device: tch::Device::Cpu,
            progress: true,
            rank_over: None,
        }
    }
}

/// The checkpoint where training accuracy saturates (the paper's "start of grokking").
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Saturation {
    pub step: u64,
    /// Accuracy threshold met (0.99, or the 0.95 fallback); `null` when neither was reached and
    /// the first checkpoint is used.
    pub threshold: Option<f64>,
    /// `train_inferred_acc` at that checkpoint (from metrics.csv), when known.
    pub train_inferred_acc: Option<f64>,
    /// How it was chosen, in words.
    pub note: String,
}

/// A lens key number: MRR (Recall@3 for `labels`) of a target at the key layer, per step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LensKey {
    pub target: String,
    pub position: String,
    pub layer: usize,
    /// `mrr`, or `recall3` for `labels`.
    pub metric: String,
    /// `(step, value)` for every traced step.
    pub values: Vec<(u64, f64)>,
}

/// A causal key number: residual noising causal strength of a corruption's own positions at the
/// key layer, at the saturation and the last checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CausalKey {
    pub corruption: String,
    pub position: String,
    pub layer: usize,
    pub start: Option<f64>,
    pub end: Option<f64>,
}

/// `trace.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TraceSummary {
    pub run: PathBuf,
    pub data_dir: PathBuf,
    pub n_layer: usize,
    /// Layer of the key numbers (the paper's layer 5 of 8, scaled to the model's depth).
    pub key_layer: usize,
    pub probe_split: String,
    pub probe_size: usize,
    pub probe_seed: u64,
    pub corruptions: Vec<String>,
    /// Traced steps, ascending.
    pub steps: Vec<u64>,
    /// Steps computed by this invocation (the others were already done).
    pub computed_steps: Vec<u64>,
    pub saturation: Saturation,
    pub last_step: u64,
    pub lens: Vec<LensKey>,
    pub causal: Vec<CausalKey>,
    /// Mean wall-clock seconds per computed checkpoint (`null` when none was computed).
    pub seconds_per_checkpoint: Option<f64>,
}

/// The default key layer: `round(5 L / 8)` clamped to `1..=L−1` (layer 5 for the paper's 8).
pub fn key_layer(n_layer: usize) -> usize {
    let k = (5 * n_layer + 4) / 8;
    k.clamp(
        1.min(n_layer),
        n_layer.saturating_sub(1).max(1.min(n_layer)),
    )
}

/// The fingerprint of a step's results: options plus the checkpoint file's size and mtime.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Done {
    options: String,
    checkpoint: String,
    checkpoint_len: u64,
    checkpoint_modified: u64,
}

fn done_for(options: &str, file: &Path) -> Result<Done> {
    let meta = fs::metadata(file).map_err(|e| InterpError::io(file, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(Done {
        options: options.to_string(),
        checkpoint: file.display().to_string(),
        checkpoint_len: meta.len(),
        checkpoint_modified: modified,
    })
}

/// `train_inferred_acc` per step from `RUN/metrics.csv` (empty when the file or column is absent).
fn train_accuracy(run: &Path) -> Result<BTreeMap<u64, f64>> {
    let path = run.join("metrics.csv");
    if !path.is_file() {
        return Ok(BTreeMap::new());
    }
    let csv_err = |source| InterpError::Csv {
        path: path.clone(),
        source,
    };
    let mut reader = csv::Reader::from_path(&path).map_err(csv_err)?;
    let headers = reader.headers().map_err(csv_err)?.clone();
    let (Some(step_col), Some(acc_col)) = (
        headers.iter().position(|h| h == "step"),
        headers.iter().position(|h| h == "train_inferred_acc"),
    ) else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let parse = |i: usize| record.get(i).and_then(|v| v.trim().parse::<f64>().ok());
        if let (Some(step), Some(acc)) = (parse(step_col), parse(acc_col)) {
            out.insert(step as u64, acc);
        }
    }
    Ok(out)
}

/// The first checkpoint whose training accuracy (the metrics row at its step, else the last row
/// before it) is ≥ 0.99, else ≥ 0.95 ([`util::saturation::first_saturated`]), else the first
/// checkpoint.
pub fn saturation(run: &Path, checkpoint_steps: &[u64]) -> Result<Saturation> {
    let acc = train_accuracy(run)?;
    let at = |step: u64| acc.range(..=step).next_back().map(|(_, &a)| a);
    let points = checkpoint_steps.iter().map(|&s| (s, at(s)));
    if let Some((step, threshold)) = util::saturation::first_saturated(points) {
        return Ok(Saturation {
            step,
            threshold: Some(threshold),
            train_inferred_acc: at(step),
            note: format!("first checkpoint with train_inferred_acc >= {threshold} in metrics.csv"),
        });
    }
    let step = checkpoint_steps.first().copied().unwrap_or(0);
    Ok(Saturation {
        step,
        threshold: None,
        train_inferred_acc: at(step),
        note: if acc.is_empty() {
            "no train_inferred_acc in metrics.csv: first checkpoint used".into()
        } else {
            "train_inferred_acc never reached 0.95: first checkpoint used".into()
        },
    })
}

/// The steps `opts` asks for (none named: every checkpoint of the run) and the steps of
/// `always`; an error names a step the run lacks.
fn requested_steps(
    run: &Path,
    all_steps: &[u64],
    opts: &TraceOptions,
    always: &[u64],
) -> Result<BTreeSet<u64>> {
    let Some(list) = opts.steps.as_deref() else {
        return Ok(all_steps.iter().copied().collect());
    };
    if let Some(s) = list.iter().find(|s| !all_steps.contains(s)) {
        return Err(InterpError::UnknownStep {
            run: run.to_path_buf(),
            step: *s,
            available: all_steps
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(list.iter().chain(always).copied().collect())
}

/// Concatenates the per-step CSVs of `steps` (under `steps_dir/step-N/`) into `out`'s lens.csv,
/// patch.csv, state_effect.csv and attention.csv; returns the lens and patch rows.
fn combine_step_csvs(
    steps_dir: &Path,
    steps: &[u64],
    out: &Path,
) -> Result<(Vec<LensRow>, Vec<PatchRow>)> {
    let mut lens_rows: Vec<LensRow> = Vec::new();
    let mut patch_rows: Vec<PatchRow> = Vec::new();
    let mut effect_rows: Vec<LensRow> = Vec::new();
    let mut attention_rows: Vec<AttentionRow> = Vec::new();
    for s in steps {
        let dir = steps_dir.join(format!("step-{s}"));
        lens_rows.extend(read_csv::<LensRow>(&dir.join("lens.csv"))?);
        patch_rows.extend(read_csv::<PatchRow>(&dir.join("patch.csv"))?);
        effect_rows.extend(read_csv::<LensRow>(&dir.join("state_effect.csv"))?);
        attention_rows.extend(read_csv::<AttentionRow>(&dir.join("attention.csv"))?);
    }
    write_csv(&out.join("lens.csv"), &lens_rows)?;
    write_csv(&out.join("patch.csv"), &patch_rows)?;
    write_csv(&out.join("state_effect.csv"), &effect_rows)?;
    write_csv(&out.join("attention.csv"), &attention_rows)?;

    Ok((lens_rows, patch_rows))
}

/// Checks, before any work or output, what can fail late: the `checkpoint` (the run's last) reads
/// the prompt sample, was trained on `data` (unless allowed otherwise) and has the requested key
/// layer.
fn preflight(
    checkpoint: &Path,
    data: &tasks::Dataset,
    fingerprint: &str,
    probe: &PromptSample,
    opts: &TraceOptions,
) -> Result<()> {
    let (ckpt, _) = load_fitted(checkpoint, data, tch::Device::Cpu, opts.rank_over)?;
    check_compatible(&ckpt, data, probe.seq_len())?;
    check_trained_on(
        checkpoint,
        &ckpt.metadata,
        data,
        fingerprint,
        opts.allow_other_data,
    )?;
    let n_layer = ckpt.config.n_layer();
    match opts.key_layer {
        Some(layer) if layer > n_layer => Err(InterpError::LayerOutOfRange {
            layer,
            max: n_layer,
        }),
        _ => Ok(()),
    }
}

/// What every checkpoint of one trace is analysed with.
struct TraceContext<'a> {
    data: &'a tasks::Dataset,
    data_fingerprint: String,
    probe: &'a PromptSample,
    targets: &'a [TargetSpec],
    sweep: SweepOptions,
    opts: &'a TraceOptions,
    /// Where each step's CSVs and `done.json` go (`steps/step-N/`).
    steps_dir: PathBuf,
    /// The options a finished step was computed with, as recorded in its `done.json`.
    fingerprint: String,
}

/// The options fingerprint recorded in each step's `done.json`: a step computed with other
/// options is computed again. It spells out each field rather than a type's `Debug` form, so
/// renaming a type does not invalidate finished steps.
fn options_fingerprint(
    opts: &TraceOptions,
    corruptions: &[CorruptionSpec],
    targets: &[TargetSpec],
    data_dir: &Path,
) -> String {
    format!(
        "v3 sample=split:{} size:{:?} seed:{} indices:{:?} corruptions={:?} targets={:?} \
         positions={:?} data={}",
        opts.sample.split,
        opts.sample.size,
        opts.sample.seed,
        opts.sample.indices,
        corruptions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        opts.positions,
        data_dir.display()
    )
}

/// Residual noising over the requested positions, every layer, batched (the trace's patching).
fn residual_noising(opts: &TraceOptions) -> SweepOptions {
    SweepOptions {
        directions: vec![Direction::Noising],
        grid: CellGrid {
            positions: opts.positions.clone(),
            ..CellGrid::default()
        },
        mode: SweepMode::Batched,
        max_rows: opts.max_rows,
        ln_mode: LnMode::Recompute,
    }
}

impl TraceContext<'_> {
    /// The checkpoints of `todo` whose `done.json` does not match this trace's options (all of
    /// them under `--force`).
    fn pending<'t>(&self, todo: &'t [(u64, PathBuf)]) -> Result<Vec<&'t (u64, PathBuf)>> {
        let mut pending = Vec::new();
        for checkpoint in todo {
            let done_path = self.step_dir(checkpoint.0).join("done.json");
            let expected = done_for(&self.fingerprint, &checkpoint.1)?;
            let done = !self.opts.force
                && fs::read_to_string(&done_path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Done>(&t).ok())
                    .is_some_and(|d| d == expected);
            if !done {
                pending.push(checkpoint);
            }
        }
        Ok(pending)
    }

    fn step_dir(&self, step: u64) -> PathBuf {
        self.steps_dir.join(format!("step-{step}"))
    }

    /// Lens, patching, state effect and attention of one checkpoint, written to its step folder
    /// with `done.json` last; returns the model's layer count.
    fn analyse_checkpoint(&self, step: u64, file: &Path) -> Result<usize> {
        let (data, probe, opts) = (self.data, self.probe, self.opts);
        let (ckpt, _) = load_fitted(file, data, opts.device, opts.rank_over)?;
        check_compatible(&ckpt, data, probe.seq_len())?;
        check_trained_on(
            file,
            &ckpt.metadata,
            data,
            &self.data_fingerprint,
            opts.allow_other_data,
        )?;
        let net = Net::new(&ckpt.model);
        let dir = self.step_dir(step);
        let lens_opts = LensOptions {
            max_rows: opts.max_rows,
            ..LensOptions::default()
        };
        let lens = logit_lens(&net, probe, self.targets, &lens_opts)?;
        write_csv(&dir.join("lens.csv"), &lens.rows(step))?;
        let patch = patch_sweep(&net, probe, &self.sweep)?;
        write_csv(&dir.join("patch.csv"), &patch.rows(step))?;
        let effect = state_effect(&net, probe, self.targets, step, opts.max_rows)?;
        write_csv(&dir.join("state_effect.csv"), &effect)?;
        let attention = attention_patterns(&net, probe, opts.max_rows)?;
        write_csv(&dir.join("attention.csv"), &attention.rows(step)?)?;
        write_json(&dir.join("done.json"), &done_for(&self.fingerprint, file)?)?;
        Ok(net.n_layer())
    }

    /// Analyses each pending checkpoint with a progress bar (when asked for); returns the layer
    /// count of the last one analysed and the seconds each took.
    fn analyse_pending(&self, pending: &[&(u64, PathBuf)]) -> Result<(Option<usize>, Vec<f64>)> {
        let bar = progress_bar(self.opts.progress, pending.len());
        let mut n_layer = None;
        let mut seconds = Vec::new();
        for (step, file) in pending {
            bar.set_message(format!("step {step}"));
            let started = Instant::now();
            n_layer = Some(self.analyse_checkpoint(*step, file)?);
            seconds.push(started.elapsed().as_secs_f64());
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok((n_layer, seconds))
    }
}

/// The checkpoint progress bar; hidden unless `visible`.
fn progress_bar(visible: bool, checkpoints: usize) -> indicatif::ProgressBar {
    let bar = if visible {
        indicatif::ProgressBar::new(checkpoints as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} trace [{bar:30}] {pos}/{len} checkpoints {msg} ({elapsed}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Causal strength of residual noising by (corruption, layer, position).
type StrengthByState = BTreeMap<(String, usize, String), f64>;

/// Causal strength of residual noising at `step`, by (corruption, layer, position).
fn causal_strength_at(patch_rows: &[PatchRow], step: u64) -> StrengthByState {
    patch_rows
        .iter()
        .filter(|r| {
            r.step == step
                && r.metric == "causal_strength"
                && r.direction == "noising"
                && r.component == "resid"
        })
        .map(|r| ((r.corruption.clone(), r.layer, r.position.clone()), r.value))
        .collect()
}

/// The change of each causal strength present at both ends.
fn circuit_change(start: &StrengthByState, end: &StrengthByState) -> Vec<CircuitChangeRow> {
    start
        .iter()
        .filter_map(|(k, &a)| {
            end.get(k).map(|&b| CircuitChangeRow {
                corruption: k.0.clone(),
                layer: k.1,
                position: k.2.clone(),
                start: a,
                end: b,
                delta: b - a,
            })
        })
        .collect()
}

/// Each non-answer target's key lens metric at layer `key` over `steps` (recall@3 for label
/// targets, MRR otherwise).
fn lens_keys(
    targets: &[TargetSpec],
    probe: &PromptSample,
    lens_rows: &[LensRow],
    steps: &[u64],
    key: usize,
) -> Vec<LensKey> {
    targets
        .iter()
        .filter(|t| t.role != ANSWER)
        .filter_map(|t| {
            let position = probe
                .position(&t.position)
                .ok()
                .map(|p| probe.positions[p].clone())?;
            let metric = if t.role == LABELS { "recall3" } else { "mrr" };
            let values = steps
                .iter()
                .filter_map(|&s| {
                    lens_rows
                        .iter()
                        .find(|r| {
                            r.step == s
                                && r.layer == key
                                && r.target == t.role
                                && r.position == position
                                && r.metric == metric
                        })
                        .map(|r| (s, r.value))
                })
                .collect();
            Some(LensKey {
                target: t.role.clone(),
                position,
                layer: key,
                metric: metric.to_string(),
                values,
            })
        })
        .collect()
}

/// Each corruption's causal strength at layer `key` at saturation (`start`) and at the end.
fn causal_keys(
    corruptions: &[CorruptionSpec],
    probe: &PromptSample,
    key: usize,
    start: &StrengthByState,
    end: &StrengthByState,
) -> Vec<CausalKey> {
    corruptions
        .iter()
        .filter_map(|c| {
            let name = c.to_string();
            let ci = probe
                .examples
                .iter()
                .find_map(|e| e.corruptions.get(&name))?;
            let position = probe.position_set_name(&ci.positions);
            let k = (name.clone(), key, position.clone());
            Some(CausalKey {
                corruption: name,
                position,
                layer: key,
                start: start.get(&k).copied(),
                end: end.get(&k).copied(),
            })
        })
        .collect()
}

/// The layer the summary reports: `--key-layer` or the default for `n_layer`, within range.
fn summary_layer(opts: &TraceOptions, n_layer: usize) -> Result<usize> {
    let key = opts.key_layer.unwrap_or_else(|| key_layer(n_layer));
    if key > n_layer {
        return Err(InterpError::LayerOutOfRange {
            layer: key,
            max: n_layer,
        });
    }
    Ok(key)
}

/// The corruptions asked for, or the task's defaults.
fn corruptions_to_trace(opts: &TraceOptions, kind: tasks::TaskKind) -> Vec<CorruptionSpec> {
    opts.corruptions
        .clone()
        .unwrap_or_else(|| default_corruptions(kind))
}

/// Writes `circuit_change.csv` (causal strength from saturation to the last step) and returns
/// the strengths at both ends.
fn write_circuit_change(
    out: &Path,
    patch_rows: &[PatchRow],
    saturation_step: u64,
    last_step: u64,
) -> Result<(StrengthByState, StrengthByState)> {
    let start = causal_strength_at(patch_rows, saturation_step);
    let end = causal_strength_at(patch_rows, last_step);
    write_csv(
        &out.join("circuit_change.csv"),
        &circuit_change(&start, &end),
    )?;
    Ok((start, end))
}

/// Runs the logit lens (recompute mode, the paper's targets) and residual noising patching on
/// checkpoints of `run`, writes the files listed in the module docs to `out`, and returns the
/// summary.
pub fn trace(run: &Path, out: &Path, opts: &TraceOptions) -> Result<TraceSummary> {
    let checkpoints = list_checkpoints(run)?;
    let all_steps: Vec<u64> = checkpoints.iter().map(|(s, _)| *s).collect();
    let data_dir = resolve_data_dir(&checkpoints[0].1, opts.data.as_deref())?;
    let data = tasks::Dataset::load(&data_dir)?;
    let sat = saturation(run, &all_steps)?;
    let last_step = *all_steps.last().unwrap_or(&0);
    let selected = requested_steps(run, &all_steps, opts, &[sat.step, last_step])?;
    let corruptions = corruptions_to_trace(opts, data.kind);
    let probe = PromptSample::build(&data, &opts.sample, &corruptions)?;
    let data_fingerprint = data.fingerprint();
    let last = &checkpoints[checkpoints.len() - 1].1;
    preflight(last, &data, &data_fingerprint, &probe, opts)?;
    probe.write_jsonl(&out.join("examples.jsonl"), &data.vocab)?;
    let targets = default_targets(&probe);
    let context = TraceContext {
        data: &data,
        data_fingerprint,
        probe: &probe,
        targets: &targets,
        sweep: residual_noising(opts),
        opts,
        steps_dir: out.join("steps"),
        fingerprint: options_fingerprint(opts, &corruptions, &targets, &data_dir),
    };
    let todo: Vec<(u64, PathBuf)> = checkpoints
        .into_iter()
        .filter(|(s, _)| selected.contains(s))
        .collect();
    let pending = context.pending(&todo)?;
    let (n_layer, seconds) = context.analyse_pending(&pending)?;

    let steps: Vec<u64> = todo.iter().map(|(s, _)| *s).collect();
    let (lens_rows, patch_rows) = combine_step_csvs(&context.steps_dir, &steps, out)?;
    let n_layer = n_layer.unwrap_or_else(|| lens_rows.iter().map(|r| r.layer).max().unwrap_or(0));
    let key = summary_layer(opts, n_layer)?;
    let (start, end) = write_circuit_change(out, &patch_rows, sat.step, last_step)?;

    let summary = TraceSummary {
        run: run.to_path_buf(),
        data_dir,
        n_layer,
        key_layer: key,
        probe_split: probe.spec.split.clone(),
        probe_size: probe.examples.len(),
        probe_seed: probe.spec.seed,
        corruptions: corruptions.iter().map(ToString::to_string).collect(),
        lens: lens_keys(&targets, &probe, &lens_rows, &steps, key),
        causal: causal_keys(&corruptions, &probe, key, &start, &end),
        steps,
        computed_steps: pending.iter().map(|(s, _)| *s).collect(),
        saturation: sat,
        last_step,
        seconds_per_checkpoint: (!seconds.is_empty()).then(|| mean(seconds.iter().copied())),
    };
    write_json(&out.join("trace.json"), &summary)?;
    Ok(summary)
}
