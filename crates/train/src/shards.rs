//! Data-parallel training steps on the CPU.
//!
//! At the tiny presets' sizes (a `[2048, 128]` activation) libtorch's intra-op threading keeps
//! its second thread idle for a large part of each step: small ops run on one thread, every
//! parallel op ends in a barrier, and the dispatcher and autograd bookkeeping are serial. Instead,
//! the batch is cut into one shard per thread and each thread runs its shard's forward and
//! backward pass alone, inside one OpenMP parallel region of libtorch's own thread team (libgomp's
//! `GOMP_parallel`, the entry point `#pragma omp parallel` compiles to). Inside a parallel region
//! libtorch and MKL run every op on the calling thread. Each shard's gradients come back from
//! autograd (not accumulated into `.grad`) and are summed in shard order, so a step depends only
//! on the number of shards, never on which thread ran which shard: sharded runs are deterministic.
//! What this gains is measured with `examples/profile_step.rs` (docs/training.md).

use crate::config::Precision;
use crate::error::{Result, TrainError};
use crate::tensors::IGNORE;
use crate::trainer::answer_cross_entropy;
use model::Gpt;
use std::sync::Mutex;
use tch::{Device, Kind, Reduction, Tensor};

/// One shard's loss (detached) and its gradients in `params` order.
type ShardResult = Result<(Tensor, Vec<Tensor>)>;

/// libtorch's OpenMP thread team, run as `threads` workers that each take whole tasks.
pub struct Team {
    threads: usize,
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    parallel: gomp::Parallel,
}

impl Team {
    /// The team for `threads` threads; `None` when `threads < 2`, on devices other than the CPU,
    /// or when the process has no libgomp (libtorch built with another threading library).
    pub fn new(threads: usize, device: Device) -> Option<Team> {
        if threads < 2 || device != Device::Cpu {
            return None;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        return gomp::Parallel::find().map(|parallel| Team { threads, parallel });
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        None
    }

    /// Number of threads (and of shards per batch).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `task(i)` for every `i < tasks`, spread over the team; each task runs on one thread
    /// with every libtorch op of it serial. A panic in a task is raised again here.
    pub fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        self.parallel.run(self.threads, tasks, task);
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        (0..tasks).for_each(task);
    }

    /// The summed answer loss of `model` on a batch divided by the batch's number of loss
    /// positions (= the batch's mean answer loss, detached) and its gradients with respect to
    /// `params`: one list per shard, in `params` order, undefined where a shard does not reach
    /// the parameter. Shards are consecutive rows, one per thread. Shapes as in
    /// [`crate::answer_loss`].
    pub fn answer_gradients(
        &self,
        model: &Gpt,
        params: &[Tensor],
        batch: [&Tensor; 3],
        precision: Precision,
    ) -> Result<(Tensor, Vec<Vec<Tensor>>)> {
        let [tokens, positions, targets] = batch;
        let counted = targets.ne(IGNORE).sum(Kind::Int64).int64_value(&[]).max(1) as f64;
        let [tokens, positions, targets] =
            [tokens, positions, targets].map(|t| t.chunk(self.threads as i64, 0));
        let inputs: Vec<Mutex<Option<[Tensor; 3]>>> = (tokens.into_iter().zip(positions))
            .zip(targets)
            .map(|((a, b), c)| Mutex::new(Some([a, b, c])))
            .collect();
        let outputs: Vec<Mutex<Option<ShardResult>>> =
            inputs.iter().map(|_| Mutex::new(None)).collect();
        let shared = ReadOnly((model, params));
        let shard = |i: usize| {
            let (model, params) = *shared.get();
            let taken = inputs[i].lock().map(|mut slot| slot.take());
            let Ok(Some([tokens, positions, targets])) = taken else {
                return;
            };
            let sum = answer_cross_entropy(
                model,
                &tokens,
                &positions,
                &targets,
                precision,
                Reduction::Sum,
            );
            let result = sum.and_then(|sum| {
                let loss = sum / counted;
                let grads = Tensor::f_run_backward(&[&loss], params, false, false)?;
                Ok((loss.detach(), grads))
            });
            if let Ok(mut slot) = outputs[i].lock() {
                *slot = Some(result);
            }
        };
        self.run(inputs.len(), &shard);
        let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
        let mut grads = Vec::with_capacity(outputs.len());
        for output in outputs {
            let done = output.into_inner().ok().flatten();
            let (shard_loss, shard_grads) = done.ok_or_else(|| {
                TrainError::Config("a training shard did not run (OpenMP team)".into())
            })??;
            loss += shard_loss;
            grads.push(shard_grads);
        }
        Ok((loss, grads))
    }
}

/// Shares read-only tensors with the team's threads. tch's `Tensor` is not `Sync` because
/// in-place ops through a shared handle would race; the tasks only read these tensors (forward
/// passes and `autograd::grad`, which libtorch supports from many threads at once on the same
/// parameters: each task builds its own graph, nothing accumulates into `.grad`).
struct ReadOnly<T>(T);

// SAFETY: see the type's documentation; the wrapped tensors are only read while shared.
unsafe impl<T> Sync for ReadOnly<T> {}

impl<T> ReadOnly<T> {
    fn get(&self) -> &T {
        &self.0
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod gomp {
    use std::ffi::{c_uint, c_void};
    use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// `void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags)`:
    /// runs `fn(data)` on every thread of a new team (the caller included); libgomp's ABI since
    /// GCC 4.9.
    type GompParallel =
        unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);

    pub(super) struct Parallel(GompParallel);

    struct Job<'a> {
        next: AtomicUsize,
        tasks: usize,
        task: &'a (dyn Fn(usize) + Sync),
        panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    }

    impl Parallel {
        /// libgomp's `GOMP_parallel` among the loaded objects (libtorch's own libgomp).
        pub(super) fn find() -> Option<Parallel> {
            // SAFETY: dlsym only looks the name up in the objects already loaded.
            let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"GOMP_parallel".as_ptr()) };
            if symbol.is_null() {
                return None;
            }
            // SAFETY: the symbol is libgomp's GOMP_parallel, whose signature is `GompParallel`.
            Some(Parallel(unsafe {
                std::mem::transmute::<*mut c_void, GompParallel>(symbol)
            }))
        }

        pub(super) fn run(&self, threads: usize, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
            let job = Job {
                next: AtomicUsize::new(0),
                tasks,
                task,
                panic: Mutex::new(None),
            };
            let data = &job as *const Job as *mut c_void;
            // SAFETY: `run_tasks` reads `data` as the `Job` above, which outlives the call
            // (GOMP_parallel returns when every thread of the team has finished).
            unsafe { (self.0)(run_tasks, data, threads as c_uint, 0) };
            let panic = job.panic.into_inner().unwrap_or_else(|e| e.into_inner());
            if let Some(payload) = panic {
                resume_unwind(payload);
            }
        }
    }

    /// Every thread of the team takes the next task until none is left (a team may get fewer
    /// threads than asked for). Panics are caught: they must not unwind into C.
    extern "C" fn run_tasks(data: *mut c_void) {
        // SAFETY: `data` is the `Job` passed by `Parallel::run`, alive for the whole region.
        let job = unsafe { &*(data as *const Job) };
        loop {
            let i = job.next.fetch_add(1, Ordering::Relaxed);
            if i >= job.tasks {
                return;
            }
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (job.task)(i))) {
                let mut slot = job.panic.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(payload);
            }
        }
    }
}
