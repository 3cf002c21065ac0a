//! The training loop.
//!
//! The whole training set lives on the device ([`TrainTensors`]). Each epoch is a seeded
//! permutation; a batch is `index_select` of consecutive permutation entries; the last layer and the
//! unembedding run at the loss positions only; the loss is the mean
//! cross-entropy of those positions. On the CPU with several threads and no dropout, a step is
//! data-parallel: one shard of the batch per thread ([`Team`]). AdamW ([`AdamW`]), global-norm
//! clipping, linear warm-up. The loop reads the device only every `log_every` steps (one scalar)
//! and at evaluations.

use crate::amp::with_precision;
use crate::checkpoint::{self, RngInfo, RunState};
use crate::config::TrainConfig;
use crate::dataset;
use crate::error::{io_err, Result, TrainError};
use crate::eval::{self, SplitMetrics};
use crate::lock::{FolderLock, LOCK_FILE};
use crate::metrics::{fmt_value, CsvLog};
use crate::optim::AdamW;
use crate::progress::Progress;
use crate::schedule::learning_rate;
use crate::shards::Team;
use crate::tensors::{self, EvalSplit, TrainTensors, IGNORE};
use model::{Checkpoint, Gpt, GptConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tasks::Dataset;
use tch::{nn, Device, Kind, Reduction, Tensor};
use util::seed::mix;

/// How to run (not part of the run's identity).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Device for the model and data.
    pub device: Device,
    /// Plain log lines instead of a progress bar.
    pub quiet: bool,
    /// Folder under which preset datasets are generated and cached (`data/`).
    pub data_root: PathBuf,
    /// Set (e.g. by a signal handler) to stop after the current step with a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Called after every evaluation with the step and the model (e.g. to record a statistic
    /// of hooked activations, see `examples/train_with_hook.rs`); an error stops the run.
    pub observer: Option<EvalObserver>,
}

/// What an [`EvalObserver`] calls: the step just evaluated and the model.
pub type ObserveFn = dyn Fn(u64, &Gpt) -> Result<()> + Send + Sync;

/// A function called with the step and the model after each evaluation of a run.
#[derive(Clone)]
pub struct EvalObserver(pub Arc<ObserveFn>);

impl std::fmt::Debug for EvalObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvalObserver")
    }
}

impl TrainOptions {
    /// Defaults: the given device, a progress bar, `data/`, no stop flag set.
    pub fn new(device: Device) -> TrainOptions {
        TrainOptions {
            device,
            quiet: false,
            data_root: PathBuf::from("data"),
            stop: Arc::new(AtomicBool::new(false)),
            observer: None,
        }
    }
}

/// How a call to [`train`] ended.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Step the call started from (0, or the resumed checkpoint).
    pub start_step: u64,
    /// Step reached.
    pub step: u64,
    /// True when stopped by the stop flag (a checkpoint was written at `step`).
    pub interrupted: bool,
    /// Optimiser steps per second, evaluation and checkpoint time excluded, and the first step of
    /// the call too when there were others (it pays for the allocator's warm-up).
    pub train_steps_per_sec: f64,
    /// Wall-clock seconds of the call.
    pub wall_secs: f64,
    /// Metrics of the last evaluation of this call (empty if none ran).
    pub last_eval: Vec<SplitMetrics>,
}

/// Running sums of the training loss and gradient norm since the last evaluation (device
/// tensors, so accumulating them needs no host read). Saved with checkpoints.
struct Running {
    loss_sum: Tensor,
    grad_norm_sum: Tensor,
    count: u64,
}

impl Running {
    fn new(device: Device) -> Running {
        Running {
            loss_sum: Tensor::zeros([], (Kind::Double, device)),
            grad_norm_sum: Tensor::zeros([], (Kind::Double, device)),
            count: 0,
        }
    }

    fn add(&mut self, loss: &Tensor, grad_norm: &Tensor) {
        self.loss_sum += loss.to_kind(Kind::Double);
        self.grad_norm_sum += grad_norm.to_kind(Kind::Double);
        self.count += 1;
    }

    /// (mean loss, mean gradient norm) since the last reset; one host read.
    fn means(&self) -> Result<(f64, f64)> {
        let n = self.count.max(1) as f64;
        let sums = Vec::<f64>::try_from(
            Tensor::stack(&[&self.loss_sum, &self.grad_norm_sum], 0).to_device(Device::Cpu),
        )?;
        Ok((sums[0] / n, sums[1] / n))
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        vec![
            ("acc.loss_sum".into(), self.loss_sum.shallow_clone()),
            (
                "acc.grad_norm_sum".into(),
                self.grad_norm_sum.shallow_clone(),
            ),
            ("acc.count".into(), Tensor::from(self.count as i64)),
        ]
    }

    fn load(&mut self, tensors: &mut BTreeMap<String, Tensor>, device: Device) -> Result<()> {
        let mut take = |name: &str| {
            tensors.remove(name).ok_or_else(|| {
                TrainError::Checkpoint(format!("optimizer state lacks tensor {name}"))
            })
        };
        self.loss_sum = take("acc.loss_sum")?
            .to_kind(Kind::Double)
            .to_device(device);
        self.grad_norm_sum = take("acc.grad_norm_sum")?
            .to_kind(Kind::Double)
            .to_device(device);
        self.count = u64::try_from(take("acc.count")?.f_int64_value(&[])?).unwrap_or(0);
        Ok(())
    }
}

/// Everything one run holds.
struct Trainer {
    cfg: TrainConfig,
    opts: TrainOptions,
    run_dir: PathBuf,
    gpt_cfg: GptConfig,
    vs: nn::VarStore,
    model: Gpt,
    opt: AdamW,
    data: TrainTensors,
    splits: Vec<EvalSplit>,
    steps_per_epoch: u64,
    data_fingerprint: String,
    /// Metadata of every checkpoint besides its step ([`run_metadata`]).
    checkpoint_metadata: BTreeMap<String, String>,
    running: Running,
    metrics: CsvLog,
    layer_norms: CsvLog,
    progress: Progress,
    /// layer_norms.csv component of each decayed parameter, in the optimiser's order.
    components: Vec<String>,
    /// Data-parallel steps on the CPU: one shard of each batch per intra-op thread. Not with
    /// dropout (libtorch's one generator, drawn from by every thread, would make the masks depend
    /// on the threads' timing).
    sharding: Option<Sharding>,
    /// The run folder's lock, held while the trainer lives: one writer per run.
    _lock: FolderLock,
}

/// A [`Team`] and the parameters its shards differentiate, in [`AdamW::set_grads`] order.
struct Sharding {
    team: Team,
    params: Vec<Tensor>,
}

/// Trains (or resumes) the run in `run_dir` with `cfg`: prepares the dataset, checks an existing
/// run folder against `cfg`, continues from its latest complete checkpoint, evaluates, logs and
/// checkpoints until `cfg.steps` or until `opts.stop` is set.
pub fn train(mut cfg: TrainConfig, run_dir: &Path, opts: &TrainOptions) -> Result<RunSummary> {
    let started = Instant::now();
    cfg.validate()?;
    if cfg.precision == crate::config::Precision::Bf16 && !opts.device.is_cuda() {
        return Err(TrainError::Config(
            "precision = bf16 needs a CUDA device (CPU training is fp32)".into(),
        ));
    }
    let ds = dataset::prepare(&mut cfg, &opts.data_root, opts.quiet)?;
    let mut trainer = Trainer::new(cfg, ds, run_dir, opts)?;
    let start_step = trainer.opt.step_count();
    let result = trainer.run();
    trainer.progress.finish();
    let (step, interrupted, [first_secs, train_secs], last_eval) = result?;
    let (steps, secs) = match step - start_step {
        n if n >= 2 => (n - 1, train_secs - first_secs),
        n => (n, train_secs),
    };
    let summary = RunSummary {
        run_dir: run_dir.to_path_buf(),
        start_step,
        step,
        interrupted,
        train_steps_per_sec: steps as f64 / secs.max(1e-9),
        wall_secs: started.elapsed().as_secs_f64(),
        last_eval,
    };
    Ok(summary)
}

impl Trainer {
    /// Sets up the run in `run_dir`: model (fresh from `cfg.seed`, from `cfg.init`, or restored
    /// from the latest checkpoint), optimiser, data on the device, logs and progress display.
    fn new(
        mut cfg: TrainConfig,
        ds: Dataset,
        run_dir: &Path,
        opts: &TrainOptions,
    ) -> Result<Trainer> {
        let device = opts.device;
        let data_fingerprint = ds.fingerprint();
        let gpt_cfg = cfg.gpt_config(&ds);
        gpt_cfg.validate()?;
        let init = cfg
            .init
            .as_deref()
            .map(|path| initial_weights(path, &gpt_cfg, device))
            .transpose()?;
        let (lock, resume) = open_run_dir(run_dir, &mut cfg, &data_fingerprint)?;

        // A resumed run restores its checkpoint instead of the initial weights.
        let start_weights = init.as_ref().filter(|_| resume.is_none()).map(|c| &c.vs);
        let (vs, model) = build_model(&cfg, &gpt_cfg, start_weights, device)?;
        let opt = AdamW::new(vs.variables(), model::is_decayed, cfg.adamw_params());
        let components = opt
            .decayed_names()
            .iter()
            .map(|n| component_of(n))
            .collect();
        let (data, splits) = load_tensors(&ds, &model, device)?;
        let steps_per_epoch = tensors::steps_per_epoch(data.len, cfg.batch_size);
        let resume_step = resume.unwrap_or(0);
        let (metrics, layer_norms) = open_logs(run_dir, &splits, resume_step)?;
        let progress = Progress::new(resume_step, cfg.steps, opts.quiet);
        let sharding = sharding(&cfg, &opt, device);
        let checkpoint_metadata = run_metadata(&cfg, &ds, &data_fingerprint);
        let mut trainer = Trainer {
            running: Running::new(device),
            cfg,
            opts: opts.clone(),
            run_dir: run_dir.to_path_buf(),
            gpt_cfg,
            vs,
            model,
            opt,
            data,
            splits,
            steps_per_epoch,
            data_fingerprint,
            checkpoint_metadata,
            metrics,
            layer_norms,
            progress,
            components,
            sharding,
            _lock: lock,
        };
        trainer.announce(&ds);
        if let Some(step) = resume {
            trainer.restore(step)?;
        }
        Ok(trainer)
    }

    /// The loop. Returns (step reached, interrupted, [seconds of the first training step, seconds
    /// of all training steps], last eval).
    fn run(&mut self) -> Result<(u64, bool, [f64; 2], Vec<SplitMetrics>)> {
        let total = self.cfg.steps;
        let checkpoints: BTreeSet<u64> = self.cfg.checkpoints.steps(total).into_iter().collect();
        let start_step = self.opt.step_count();
        let mut step = start_step;
        // A resumed run starts from a checkpoint; a fresh one has none yet.
        let mut last_checkpoint = (step > 0).then_some(step);
        let mut last_log = step;
        let mut train_secs = 0.0;
        let mut first_secs = 0.0;
        let mut last_eval = Vec::new();
        let mut perm: Option<(u64, Tensor)> = None;
        if step >= total {
            self.progress
                .println(&format!("run already complete at step {step}"));
        }
        while step < total {
            if self.opts.stop.load(Ordering::SeqCst) {
                self.save_checkpoint(step)?;
                self.progress.println(&format!(
                    "interrupted: checkpoint written at step {step}; run the same command again to resume"
                ));
                return Ok((step, true, [first_secs, train_secs], last_eval));
            }
            let t0 = Instant::now();
            let epoch = step / self.steps_per_epoch;
            let order = self.epoch_order(perm.take(), epoch);
            let lr = self.lr_at(step);
            let (loss, grad_norm) =
                self.train_step(&order, step % self.steps_per_epoch, lr, step)?;
            perm = Some((epoch, order));
            self.running.add(&loss, &grad_norm);
            step += 1;
            let secs = t0.elapsed().as_secs_f64();
            if step == start_step + 1 {
                first_secs = secs;
            }
            train_secs += secs;

            if step.is_multiple_of(self.cfg.log_every) {
                self.log_loss(&loss, last_log, step, last_checkpoint)?;
                last_log = step;
            }
            let is_checkpoint = checkpoints.contains(&step);
            if step.is_multiple_of(self.cfg.eval_every) || is_checkpoint {
                last_eval = self.evaluate_and_log(step, lr, last_checkpoint, is_checkpoint)?;
                last_log = step;
            }
            if is_checkpoint {
                self.save_checkpoint(step)?;
                last_checkpoint = Some(step);
            }
        }
        Ok((step, false, [first_secs, train_secs], last_eval))
    }

    /// The example order of `epoch`: `cached` when it is that epoch's, else a new permutation.
    fn epoch_order(&self, cached: Option<(u64, Tensor)>, epoch: u64) -> Tensor {
        match cached {
            Some((e, order)) if e == epoch => order,
            _ => tensors::epoch_permutation(self.data.len, self.cfg.seed, epoch, self.opts.device),
        }
    }

    /// Shows the training loss (a 0-dim tensor) reached at `step` in the progress display, after
    /// checking that it is finite (see [`Trainer::check_finite`]).
    fn log_loss(
        &mut self,
        loss: &Tensor,
        last_log: u64,
        step: u64,
        last_checkpoint: Option<u64>,
    ) -> Result<()> {
        let value = loss
            .to_device(Device::Cpu)
            .to_kind(Kind::Double)
            .double_value(&[]);
        self.check_finite(value, last_log, step, last_checkpoint)?;
        self.progress.tick(step, value);
        Ok(())
    }

    /// One optimiser update on batch `batch` of the epoch whose permutation is `order`.
    /// Returns the (detached) loss and the gradient norm before clipping, both 0-dim tensors.
    fn train_step(
        &mut self,
        order: &Tensor,
        batch: u64,
        lr: f64,
        step: u64,
    ) -> Result<(Tensor, Tensor)> {
        tch::manual_seed(mix(self.cfg.seed, step) as i64);
        let bs = self.cfg.batch_size as i64;
        let start = batch as i64 * bs;
        let len = bs.min(self.data.len as i64 - start);
        let rows = order.narrow(0, start, len);
        let tokens = self.data.tokens.index_select(0, &rows); // [B, T]
        let positions = self.data.positions.index_select(0, &rows); // [B, K]
        let targets = self.data.targets.index_select(0, &rows); // [B, K]
        self.opt.zero_grad();
        let loss = match &self.sharding {
            Some(Sharding { team, params }) => {
                let batch = [&tokens, &positions, &targets];
                let (loss, grads) =
                    team.answer_gradients(&self.model, params, batch, self.cfg.precision)?;
                self.opt.set_grads(&grads)?;
                loss
            }
            None => {
                let loss = answer_loss(
                    &self.model,
                    &tokens,
                    &positions,
                    &targets,
                    self.cfg.precision,
                )?;
                loss.backward();
                loss
            }
        };
        let grad_norm = self.opt.clip_grad_norm(self.cfg.grad_clip);
        self.opt.step(lr);
        Ok((loss.detach(), grad_norm))
    }

    /// Learning rate of update `step` (0-based).
    fn lr_at(&self, step: u64) -> f64 {
        let c = &self.cfg;
        learning_rate(c.lr, c.lr_schedule, c.warmup_steps, c.steps, step)
    }

    fn check_finite(&self, value: f64, after: u64, at: u64, last_good: Option<u64>) -> Result<()> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(TrainError::NonFinite {
                value,
                after,
                at,
                last_good,
            })
        }
    }

    /// Evaluates every split, appends a metrics.csv row and the layer_norms.csv rows, resets the
    /// running sums. Errors (without writing) if the running loss is not finite.
    fn evaluate_and_log(
        &mut self,
        step: u64,
        lr: f64,
        last_checkpoint: Option<u64>,
        checkpoint: bool,
    ) -> Result<Vec<SplitMetrics>> {
        let (train_loss, grad_norm) = self.running.means()?;
        self.check_finite(train_loss, step - self.running.count, step, last_checkpoint)?;
        let metrics = eval::evaluate(
            &self.model,
            &self.splits,
            self.cfg.eval_batch_size,
            self.cfg.precision,
        )?;
        let weight_norm = tch::no_grad(|| self.opt.weight_norm()).double_value(&[]);
        let epoch = step as f64 / self.steps_per_epoch as f64;
        let mut row = vec![
            step.to_string(),
            format!("{epoch:.4}"),
            fmt_value(lr),
            fmt_value(train_loss),
            fmt_value(grad_norm),
            fmt_value(weight_norm),
        ];
        for m in &metrics {
            row.extend([fmt_value(m.acc), fmt_value(m.loss), fmt_value(m.p)]);
        }
        self.metrics.row(&row)?;
        let mut by_component: BTreeMap<&str, f64> = BTreeMap::new();
        let squares = tch::no_grad(|| self.opt.decayed_sq_norms());
        for ((_, sq), component) in squares.iter().zip(&self.components) {
            *by_component.entry(component).or_default() += sq.double_value(&[]);
        }
        for (component, sq) in by_component {
            let fields = [
                step.to_string(),
                component.to_string(),
                fmt_value(sq.sqrt()),
            ];
            self.layer_norms.row(&fields)?;
        }
        self.running = Running::new(self.opts.device);
        self.progress
            .eval(step, epoch, train_loss, &metrics, checkpoint);
        if let Some(EvalObserver(observe)) = &self.opts.observer {
            observe(step, &self.model)?;
        }
        Ok(metrics)
    }

    /// Writes `step-<step>/` (model, optimiser state with running sums, state.json) atomically.
    fn save_checkpoint(&self, step: u64) -> Result<()> {
        let state = RunState {
            step,
            epoch: step / self.steps_per_epoch,
            batch_in_epoch: step % self.steps_per_epoch,
            steps_per_epoch: self.steps_per_epoch,
            rng: RngInfo {
                seed: self.cfg.seed,
                permutation: "ChaCha8 shuffle seeded with mix(seed, epoch)".into(),
                dropout: "tch::manual_seed(mix(seed, step)) before each update".into(),
            },
            config_hash: self.cfg.trajectory_hash(),
            data_fingerprint: self.data_fingerprint.clone(),
            threads: tch::get_num_threads().max(1) as usize,
            device: device_name(self.opts.device),
            hashes: BTreeMap::new(),
        };
        let mut metadata = self.checkpoint_metadata.clone();
        metadata.insert("step".to_string(), step.to_string());
        checkpoint::write(&self.run_dir, &state, |dir| {
            Checkpoint::save(
                dir.join(checkpoint::MODEL_FILE),
                &self.vs,
                &self.gpt_cfg,
                &metadata,
            )?;
            let mut tensors = self.opt.state_tensors();
            tensors.extend(self.running.tensors());
            let path = dir.join(checkpoint::OPTIMIZER_FILE);
            model::write_safetensors(&path, &tensors, &BTreeMap::new())?;
            Ok(())
        })?;
        Ok(())
    }

    /// Loads the weights, optimiser state and running sums of checkpoint `step`.
    fn restore(&mut self, step: u64) -> Result<()> {
        let dir = checkpoint::step_dir(&self.run_dir, step);
        let state = checkpoint::read_state(&dir)?;
        if state.data_fingerprint != self.data_fingerprint {
            return Err(TrainError::Mismatch(format!(
                "{} was trained on different data (fingerprint {}, the dataset now gives {}); \
                 use the original dataset or a new run folder",
                dir.display(),
                state.data_fingerprint,
                self.data_fingerprint
            )));
        }
        if state.steps_per_epoch != self.steps_per_epoch || state.step != step {
            return Err(TrainError::Checkpoint(format!(
                "{}: state.json says step {} with {} steps per epoch, expected step {step} with {}",
                dir.display(),
                state.step,
                state.steps_per_epoch,
                self.steps_per_epoch
            )));
        }
        let threads = tch::get_num_threads().max(1) as usize;
        if state.threads != threads && !self.opts.device.is_cuda() {
            self.progress.println(&format!(
                "note: the checkpoint was written with {} threads, this process uses {threads}; \
                 results will not be bit-identical to an uninterrupted run",
                state.threads
            ));
        }
        let loaded = Checkpoint::load(dir.join(checkpoint::MODEL_FILE), self.opts.device)?;
        if loaded.config != self.gpt_cfg {
            return Err(TrainError::Mismatch(format!(
                "{}: the checkpoint's model {:?} differs from this run's {:?}",
                dir.display(),
                loaded.config,
                self.gpt_cfg
            )));
        }
        self.vs.copy(&loaded.vs)?;
        let path = dir.join(checkpoint::OPTIMIZER_FILE);
        let mut tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?
            .into_iter()
            .map(|(n, t)| (n, t.to_device(self.opts.device)))
            .collect();
        self.running.load(&mut tensors, self.opts.device)?;
        self.opt.load_state(tensors.into_iter().collect(), step)?;
        self.progress
            .println(&format!("resuming from {}", dir.display()));
        Ok(())
    }

    fn announce(&self, ds: &Dataset) {
        let params: i64 = self
            .vs
            .variables()
            .values()
            .map(Tensor::numel)
            .map(|n| n as i64)
            .sum();
        self.progress.println(&format!(
            "data {} ({} train examples, {} steps/epoch, splits {}); model {} params, schedule {:?}; \
             {} on {} with {} threads{}",
            ds.dir.display(),
            self.data.len,
            self.steps_per_epoch,
            self.splits.iter().map(|s| format!("{}:{}", s.name, s.len)).collect::<Vec<_>>().join(" "),
            params,
            self.gpt_cfg.schedule,
            self.cfg.precision,
            device_name(self.opts.device),
            tch::get_num_threads(),
            match &self.sharding {
                Some(s) => format!(" (data-parallel: {} shards per batch)", s.team.threads()),
                None => String::new(),
            }
        ));
    }
}

/// Mean cross-entropy of the next-token predictions at the loss positions only: the last layer
/// runs only at those positions ([`Gpt::hidden_at`]) and only their logits are computed. Padded slots (target [`IGNORE`]) do not count.
/// Shapes: tokens `[B, T]`, positions `[B, K]`, targets `[B, K]` (all i64) → 0-dim f32.
pub fn answer_loss(
    model: &Gpt,
    tokens: &Tensor,
    positions: &Tensor,
    targets: &Tensor,
    precision: crate::config::Precision,
) -> Result<Tensor> {
    answer_cross_entropy(
        model,
        tokens,
        positions,
        targets,
        precision,
        Reduction::Mean,
    )
}

/// The cross-entropy of the next-token predictions at the loss positions, reduced by `reduction`
/// ([`answer_loss`] takes the mean; data-parallel shards take the sum, which adds up over shards).
pub(crate) fn answer_cross_entropy(
    model: &Gpt,
    tokens: &Tensor,
    positions: &Tensor,
    targets: &Tensor,
    precision: crate::config::Precision,
    reduction: Reduction,
) -> Result<Tensor> {
    let logits = with_precision(precision, tokens.device(), || -> Result<Tensor> {
        let hidden = model.hidden_at(tokens, positions, true)?; // [B, K, d]
        Ok(model.unembed(&hidden)) // [B, K, V]
    })?;
    let vocab = logits.size()[2];
    Ok(logits
        .to_kind(Kind::Float)
        .view([-1, vocab])
        .f_cross_entropy_loss::<Tensor>(&targets.view([-1]), None, reduction, IGNORE, 0.0)?)
}

/// The metadata every checkpoint of a run on `ds` carries besides its step: the data fingerprint
/// and, when the model has `extra_vocab_rows`, the rows of the task's tokens (row `i` = token `i`),
/// which tells the analyses to rank over every row ([`model::token_map`]).
fn run_metadata(
    cfg: &TrainConfig,
    ds: &Dataset,
    data_fingerprint: &str,
) -> BTreeMap<String, String> {
    let mut metadata = BTreeMap::from([(
        model::DATA_FINGERPRINT_KEY.to_string(),
        data_fingerprint.to_string(),
    )]);
    if cfg.extra_vocab_rows.unwrap_or(0) > 0 {
        let rows = ds.vocab.tokens().into_iter().zip(0..);
        let map = model::token_map::TokenMap::new(rows.map(|(t, r)| (t.to_string(), r)).collect());
        metadata.insert(
            model::token_map::TOKEN_ROWS_KEY.to_string(),
            map.to_metadata(),
        );
    }
    metadata
}

/// The model's variables and modules, initialised from `cfg.seed`, then overwritten with
/// `start_weights` when given.
fn build_model(
    cfg: &TrainConfig,
    gpt_cfg: &GptConfig,
    start_weights: Option<&nn::VarStore>,
    device: Device,
) -> Result<(nn::VarStore, Gpt)> {
    tch::manual_seed(cfg.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let model = Gpt::new(&vs.root(), gpt_cfg)?;
    if let Some(weights) = start_weights {
        vs.copy(weights)?;
    }
    Ok((vs, model))
}

/// The training set and every evaluation split on `device`, with their tokens checked against
/// `model`'s vocabulary and context.
fn load_tensors(
    ds: &Dataset,
    model: &Gpt,
    device: Device,
) -> Result<(TrainTensors, Vec<EvalSplit>)> {
    let data = TrainTensors::new(&ds.train, ds.vocab.pad_id(), device)?;
    model.check_tokens(&data.tokens)?;
    let splits = EvalSplit::all(ds, device)?;
    for split in splits.iter().filter(|s| s.len > 0) {
        model.check_tokens(&split.tokens)?;
    }
    Ok((data, splits))
}

/// Opens `metrics.csv` (step, epoch, lr, train loss, norms, then acc/loss/p per split) and
/// `layer_norms.csv` for appending, keeping only rows up to `resume_step` (none when 0).
fn open_logs(run_dir: &Path, splits: &[EvalSplit], resume_step: u64) -> Result<(CsvLog, CsvLog)> {
    let mut header: Vec<String> = util::csv::METRICS_COLUMNS.map(String::from).into();
    for split in splits {
        for m in ["acc", "loss", "p"] {
            header.push(format!("{}_{m}", split.name));
        }
    }
    let metrics = CsvLog::open(&run_dir.join("metrics.csv"), &header, resume_step)?;
    let ln_header = ["step", "component", "norm"].map(String::from);
    let layer_norms = CsvLog::open(&run_dir.join("layer_norms.csv"), &ln_header, resume_step)?;
    Ok((metrics, layer_norms))
}

/// A thread team that shards each training step, for runs without dropout; `None` with dropout
/// or when [`Team::new`] gives none (one thread, not the CPU, or no libgomp).
fn sharding(cfg: &TrainConfig, opt: &AdamW, device: Device) -> Option<Sharding> {
    let team = if cfg.dropout == 0.0 {
        Team::new(tch::get_num_threads() as usize, device)
    } else {
        None
    };
    team.map(|team| Sharding {
        team,
        params: opt.params(),
    })
}

/// Checks or creates the run folder and takes its lock. Returns the lock and the step of the
/// latest complete checkpoint to resume from (`None` for a fresh run). Writes the resolved config
/// to `config.json`.
/// The checkpoint a run starts from (`init`), checked to describe the configured model (every
/// size and the schedule; dropout may differ).
fn initial_weights(path: &Path, gpt_cfg: &GptConfig, device: Device) -> Result<Checkpoint> {
    let ckpt = Checkpoint::load(path, device)?;
    let theirs = GptConfig {
        dropout: gpt_cfg.dropout,
        ..ckpt.config.clone()
    };
    if theirs != *gpt_cfg {
        let describe = |c: &GptConfig| {
            format!(
                "vocab {}, n_ctx {}, d_model {}, {} heads, d_mlp {}, {} blocks, schedule {:?}",
                c.vocab_size, c.n_ctx, c.d_model, c.n_head, c.d_mlp, c.n_blocks, c.schedule
            )
        };
        return Err(TrainError::Config(format!(
            "init {}: the checkpoint's model ({}) is not the configured one ({}): set n_layer, \
             schedule and the sizes to match",
            path.display(),
            describe(&theirs),
            describe(gpt_cfg)
        )));
    }
    Ok(ckpt)
}

fn open_run_dir(
    run_dir: &Path,
    cfg: &mut TrainConfig,
    fingerprint: &str,
) -> Result<(FolderLock, Option<u64>)> {
    let config_path = run_dir.join("config.json");
    let lock = FolderLock::acquire(run_dir)?;
    if !config_path.is_file() {
        let mut entries = std::fs::read_dir(run_dir).map_err(io_err(run_dir))?;
        if entries.any(|e| !matches!(e, Ok(e) if e.file_name() == LOCK_FILE)) {
            return Err(TrainError::Mismatch(format!(
                "{} exists and is not a grokscope run folder (no config.json); choose another --out",
                run_dir.display()
            )));
        }
    }
    let mut resume = None;
    if config_path.is_file() {
        let old = TrainConfig::from_file(&config_path)?;
        let diffs = cfg.trajectory_differences(&old);
        if !diffs.is_empty() {
            return Err(TrainError::Mismatch(format!(
                "{} was started with other settings: {}; use a new --out folder or the original settings",
                run_dir.display(),
                diffs.join("; ")
            )));
        }
        checkpoint::remove_partial(run_dir)?;
        resume = checkpoint::list(run_dir)?.last().copied();
        if let Some(step) = resume {
            let state = checkpoint::read_state(&checkpoint::step_dir(run_dir, step))?;
            if state.config_hash != cfg.trajectory_hash() {
                return Err(TrainError::Mismatch(format!(
                    "checkpoint step-{step} in {} was written with other settings (config hash {}, now {})",
                    run_dir.display(),
                    state.config_hash,
                    cfg.trajectory_hash()
                )));
            }
            if state.data_fingerprint != fingerprint {
                return Err(TrainError::Mismatch(format!(
                    "checkpoint step-{step} in {} was trained on different data (its vocabulary or \
                     examples differ from {}); use the original dataset or a new run folder",
                    run_dir.display(),
                    cfg.data_dir.as_deref().unwrap_or(Path::new("?")).display()
                )));
            }
        }
    }
    let json = serde_json::to_string_pretty(&*cfg)
        .map_err(|e| TrainError::Config(format!("cannot serialise the config: {e}")))?;
    util::fs::write_atomic(&config_path, format!("{json}\n").as_bytes())
        .map_err(io_err(&config_path))?;
    Ok((lock, resume))
}

/// layer_norms.csv component of a parameter: `embed` for wte/wpe, `block.{i}` for
/// `transformer.h.{i}.…`, otherwise the parameter name.
fn component_of(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["transformer", "wte" | "wpe", ..] => "embed".into(),
        ["transformer", "h", i, ..] => format!("block.{i}"),
        _ => name.to_string(),
    }
}

/// `cpu`, `cuda:0`, ...
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
