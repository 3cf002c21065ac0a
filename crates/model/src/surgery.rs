//! Layer surgery: duplicate, insert, remove or reorder the layers of a checkpoint's block schedule
//! and build the resulting model.
//!
//! The result is always in canonical form: blocks are renumbered in order of first use, so a
//! schedule that applies every block once becomes the plain `0..n` (exportable to Hugging Face),
//! and blocks no longer used are dropped.

use crate::config::GptConfig;
use crate::error::{ModelError, Result};
use crate::model_file::{param_shapes, Checkpoint};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use tch::Tensor;

/// Metadata key listing the surgery operations applied to a checkpoint, `; `-separated.
pub const SURGERY_KEY: &str = "grokscope_surgery";

/// One operation on the schedule. Layers are schedule positions; blocks are parameter blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SurgeryOp {
    /// Replace the schedule by this list of existing block ids (e.g. `[0, 1, 1, 2, 3]`).
    Schedule(Vec<usize>),
    /// Apply layer `layer`'s block a second time right after it. With `materialize` the second
    /// application is a new block holding a copy of the parameters (they can then diverge).
    Duplicate { layer: usize, materialize: bool },
    /// Insert block `block` at schedule position `at` (`0..=n_layer`); `materialize` as above.
    Insert {
        at: usize,
        block: usize,
        materialize: bool,
    },
    /// Remove layer `layer`; a block no longer used is dropped.
    Remove { layer: usize },
    /// New layer `i` = old layer `order[i]`; `order` is a permutation of `0..n_layer`.
    Reorder(Vec<usize>),
    /// Give every layer its own copy of its block: shared and looped schedules become plain.
    Unshare,
}

impl fmt::Display for SurgeryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        let copy = |m: bool| if m { " (materialized)" } else { "" };
        match self {
            SurgeryOp::Schedule(s) => write!(f, "schedule {}", list(s)),
            SurgeryOp::Duplicate { layer, materialize } => {
                write!(f, "duplicate layer {layer}{}", copy(*materialize))
            }
            SurgeryOp::Insert {
                at,
                block,
                materialize,
            } => {
                write!(f, "insert block {block} at {at}{}", copy(*materialize))
            }
            SurgeryOp::Remove { layer } => write!(f, "remove layer {layer}"),
            SurgeryOp::Reorder(order) => write!(f, "reorder {}", list(order)),
            SurgeryOp::Unshare => write!(f, "unshare"),
        }
    }
}

/// The outcome of an operation: the new config, and for each new block the old block whose
/// parameters it starts from.
#[derive(Clone, Debug, PartialEq)]
pub struct SurgeryPlan {
    /// The new configuration (canonical schedule).
    pub config: GptConfig,
    /// `sources[j]` = old block copied into new block `j`.
    pub sources: Vec<usize>,
}

/// A layer of the new schedule before renumbering.
#[derive(Copy, Clone)]
enum Slot {
    /// The old block, shared with every other use of it.
    Shared(usize),
    /// A new block holding a copy of the old block.
    Fresh(usize),
}

/// Computes the new config of `op` applied to `cfg`, without touching parameters.
pub fn plan(cfg: &GptConfig, op: &SurgeryOp) -> Result<SurgeryPlan> {
    let slots = new_slots(cfg, op)?;
    let (sources, schedule) = renumber(&slots);
    let config = cfg.clone().with_schedule(sources.len(), schedule);
    config.validate()?;
    Ok(SurgeryPlan { config, sources })
}

impl Slot {
    /// A use of old block `b`: a fresh copy when `materialize`, else shared.
    fn of(b: usize, materialize: bool) -> Slot {
        if materialize {
            Slot::Fresh(b)
        } else {
            Slot::Shared(b)
        }
    }
}

/// The layers of the schedule after `op`, in order. Errors: a layer, block or position that does
/// not exist, an empty schedule, removing the only layer, a reorder that is no permutation.
fn new_slots(cfg: &GptConfig, op: &SurgeryOp) -> Result<Vec<Slot>> {
    let err = |msg: String| Err(ModelError::Surgery(msg));
    let n = cfg.n_layer();
    let sched = &cfg.schedule;
    let mut slots: Vec<Slot> = sched.iter().map(|&b| Slot::Shared(b)).collect();
    match op {
        SurgeryOp::Schedule(new) => {
            if new.is_empty() {
                return err("the new schedule is empty".into());
            }
            for &b in new {
                check_block(cfg, b)?;
            }
            slots = new.iter().map(|&b| Slot::Shared(b)).collect();
        }
        SurgeryOp::Duplicate { layer, materialize } => {
            check_layer(cfg, *layer)?;
            slots.insert(layer + 1, Slot::of(sched[*layer], *materialize));
        }
        SurgeryOp::Insert {
            at,
            block,
            materialize,
        } => {
            if *at > n {
                return err(format!(
                    "insert position {at} is beyond the end of the {n}-layer schedule"
                ));
            }
            check_block(cfg, *block)?;
            slots.insert(*at, Slot::of(*block, *materialize));
        }
        SurgeryOp::Remove { layer } => {
            check_layer(cfg, *layer)?;
            if n == 1 {
                return err("cannot remove the only layer".into());
            }
            slots.remove(*layer);
        }
        SurgeryOp::Reorder(order) => {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            if sorted != (0..n).collect::<Vec<_>>() {
                return err(format!(
                    "reorder {order:?} is not a permutation of the {n} layers 0..{n}"
                ));
            }
            slots = order.iter().map(|&l| slots[l]).collect();
        }
        SurgeryOp::Unshare => {
            slots = sched.iter().map(|&b| Slot::Fresh(b)).collect();
        }
    }
    Ok(slots)
}

/// Errors unless layer `l` is in `cfg`'s schedule.
fn check_layer(cfg: &GptConfig, l: usize) -> Result<()> {
    let n = cfg.n_layer();
    if l < n {
        Ok(())
    } else {
        Err(ModelError::Surgery(format!(
            "layer {l} does not exist: the schedule {:?} has {n} layers",
            cfg.schedule
        )))
    }
}

/// Errors unless block `b` is one of `cfg`'s blocks.
fn check_block(cfg: &GptConfig, b: usize) -> Result<()> {
    if b < cfg.n_blocks {
        Ok(())
    } else {
        Err(ModelError::Surgery(format!(
            "block {b} does not exist: the model has {} blocks",
            cfg.n_blocks
        )))
    }
}

/// Numbers the new blocks in order of first use: `(sources, schedule)`, with `sources[j]` the old
/// block that new block `j` copies and `schedule` the new block of every layer. Every use of a
/// shared old block maps to one new block; every fresh slot gets its own.
fn renumber(slots: &[Slot]) -> (Vec<usize>, Vec<usize>) {
    let mut sources = Vec::new();
    let mut shared_ids: HashMap<usize, usize> = HashMap::new();
    let schedule = slots
        .iter()
        .map(|slot| match *slot {
            Slot::Shared(b) => *shared_ids.entry(b).or_insert_with(|| {
                sources.push(b);
                sources.len() - 1
            }),
            Slot::Fresh(b) => {
                sources.push(b);
                sources.len() - 1
            }
        })
        .collect();
    (sources, schedule)
}

/// Applies `op` to `ckpt`: a new checkpoint on the same device whose blocks are copies of the
/// old ones as [`plan`] says (embeddings and `ln_f` copied unchanged), with the operation
/// appended to the [`SURGERY_KEY`] metadata.
pub fn apply(ckpt: &Checkpoint, op: &SurgeryOp) -> Result<Checkpoint> {
    let plan = plan(&ckpt.config, op)?;
    let old = ckpt.vs.variables();
    let mut source: BTreeMap<String, Tensor> = BTreeMap::new();
    for name in param_shapes(&plan.config).into_keys() {
        let old_name = match name
            .strip_prefix("transformer.h.")
            .and_then(|rest| rest.split_once('.'))
        {
            Some((block, rest)) => {
                let old_block = block
                    .parse::<usize>()
                    .ok()
                    .and_then(|j| plan.sources.get(j))
                    .copied();
                old_block.map(|b| format!("transformer.h.{b}.{rest}"))
            }
            None => Some(name.clone()),
        };
        if let Some(tensor) = old_name.and_then(|n| old.get(&n)) {
            source.insert(name, tensor.shallow_clone());
        }
    }
    let shapes = source.iter().map(|(n, t)| (n.clone(), t.size())).collect();
    let mut metadata = ckpt.metadata.clone();
    let history = match metadata.get(SURGERY_KEY) {
        Some(h) if !h.is_empty() => format!("{h}; {op}"),
        _ => op.to_string(),
    };
    metadata.insert(SURGERY_KEY.to_string(), history);
    let get = |name: &str| {
        source
            .get(name)
            .map(Tensor::shallow_clone)
            .ok_or_else(|| ModelError::Surgery(format!("no source for `{name}`")))
    };
    let origin = std::path::Path::new("<surgery>");
    Checkpoint::from_source(
        plan.config,
        &shapes,
        get,
        origin,
        ckpt.vs.device(),
        metadata,
    )
}
