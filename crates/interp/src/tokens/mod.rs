//! The analysis core on token batches: logit lens, activation patching, attribution patching and
//! direct logit attribution of any prompts, with any [`Metric`]. It knows token ids, hook points
//! and tensors, not tasks: the task-aware analyses ([`crate::lens`], [`crate::patch`], ...) read
//! prompt samples, and `grokscope lens|patch|attribute|dla --prompts FILE.jsonl` reads prompt files
//! ([`prompts`]) into a [`PromptBatch`].
//!
//! ```no_run
//! # fn demo(net: &interp::Net) -> interp::Result<()> {
//! use interp::metric::{Metric, TokenSets};
//! use interp::tokens::{patch, resid_targets, Direction, PatchOptions, PromptBatch};
//! use tch::Tensor;
//! let clean = Tensor::from_slice(&[3i64, 17, 9]).view([1, 3]);
//! let corrupted = Tensor::from_slice(&[5i64, 17, 9]).view([1, 3]);
//! let sets = TokenSets::from_rows(&[vec![12]], &[vec![4]])?;
//! let batch = PromptBatch::new(clean, Some(corrupted), None, sets)?;
//! let targets = resid_targets(net.n_layer(), &[0, 1, 2]);
//! let opts = PatchOptions::new(Direction::Denoising);
//! let result = patch(net, &batch, &targets, &Metric::LogitDiff, &opts)?;
//! for (label, value) in result.summary() {
//!     println!("{label}: {value:.3}");
//! }
//! # Ok(()) }
//! ```

mod attribution;
mod dla;
mod lens;
pub(crate) mod patch_runs;
mod patching;
pub mod prompts;

pub use crate::patch::Direction;
pub use attribution::{attribute, AttributionValues};
pub use dla::{dla, DlaComponent, DlaValues};
pub use lens::{lens, lens_readings, LensOptions, LensReading, LensValues};
pub use patching::{
    head_targets, hook_targets, patch, resid_targets, PatchOptions, PatchTarget, PatchValues,
};

use crate::error::{InterpError, Result};
use crate::metric::{Metric, TokenSets};
use crate::net::{Net, Rows};
use model::{LogitPositions, RunRequest};
use tch::{Kind, Tensor};

/// Prompts as token ids: the clean run, optionally a corrupted run of the same shape, the
/// position each row is read at, and the answer and alternative tokens the metric reads.
#[derive(Debug)]
pub struct PromptBatch {
    /// `[B, T]` i64.
    pub clean: Tensor,
    /// `[B, T]` i64, for patching and attribution.
    pub corrupted: Option<Tensor>,
    /// Per row the position whose logits the metric reads (`[B]` i64; default the last).
    pub answer_pos: Vec<i64>,
    /// Answer and alternative tokens per row.
    pub sets: TokenSets,
}

impl PromptBatch {
    /// Checks the shapes: `corrupted` like `clean`, one answer position in `0..T` and one token
    /// set row per prompt. `answer_pos = None` reads every row at its last position.
    pub fn new(
        clean: Tensor,
        corrupted: Option<Tensor>,
        answer_pos: Option<Vec<i64>>,
        sets: TokenSets,
    ) -> Result<PromptBatch> {
        let (b, t) = clean
            .size2()
            .map_err(|e| bad("clean tokens", e.to_string()))?;
        if let Some(c) = &corrupted {
            if c.size() != [b, t] {
                return Err(bad(
                    "corrupted tokens",
                    format!("shape {:?}, clean {:?}", c.size(), [b, t]),
                ));
            }
        }
        let answer_pos = answer_pos.unwrap_or_else(|| vec![t - 1; b as usize]);
        if answer_pos.len() as i64 != b || answer_pos.iter().any(|&p| p < 0 || p >= t) {
            return Err(bad(
                "answer positions",
                format!("need {b} positions in 0..{t}"),
            ));
        }
        if sets.answer.size()[0] != b {
            return Err(bad(
                "token sets",
                format!("{} rows for {b} prompts", sets.answer.size()[0]),
            ));
        }
        Ok(PromptBatch {
            clean: clean.to_kind(Kind::Int64),
            corrupted: corrupted.map(|c| c.to_kind(Kind::Int64)),
            answer_pos,
            sets,
        })
    }

    /// Number of prompts `B`.
    pub fn len(&self) -> usize {
        self.answer_pos.len()
    }

    /// True when the batch has no prompts.
    pub fn is_empty(&self) -> bool {
        self.answer_pos.is_empty()
    }

    /// The corrupted tokens, or an error naming the analysis that needs them.
    pub fn corrupted(&self, analysis: &str) -> Result<&Tensor> {
        self.corrupted.as_ref().ok_or_else(|| {
            bad(
                "prompts",
                format!("{analysis} needs corrupted tokens for every prompt"),
            )
        })
    }

    /// The base and source runs of a patching direction: noising patches the corrupted run's
    /// activations into the clean run, denoising the clean run's into the corrupted one.
    pub fn base_and_source(
        &self,
        direction: Direction,
        analysis: &str,
    ) -> Result<(&Tensor, &Tensor)> {
        let corrupted = self.corrupted(analysis)?;
        Ok(match direction {
            Direction::Noising => (&self.clean, corrupted),
            Direction::Denoising => (corrupted, &self.clean),
        })
    }
}

impl PromptBatch {
    /// Gives every row without alternative tokens one: the best non-answer token of the
    /// corrupted run (of the clean run when there is none), as the task analyses do. Returns how
    /// many rows were filled.
    pub fn fill_alternatives(&mut self, net: &Net) -> Result<usize> {
        let lacking = self.sets.alternative_mask.any_dim(1, false).logical_not();
        let filled = lacking.sum(Kind::Int64).int64_value(&[]) as usize;
        if filled == 0 {
            return Ok(0);
        }
        let run = self.corrupted.as_ref().unwrap_or(&self.clean);
        let first = self.sets.first_answer();
        let alt = best_other_tokens(net, run, &self.answer_pos, &first, self.len())?
            .to_device(tch::Device::Cpu)
            .unsqueeze(1);
        let sets = &mut self.sets;
        if sets.alternative.size()[1] == 0 {
            sets.alternative = alt;
            sets.alternative_mask = lacking.unsqueeze(1);
        } else {
            let lacking = lacking.unsqueeze(1);
            sets.alternative = alt
                .expand_as(&sets.alternative)
                .where_self(&lacking, &sets.alternative);
            let first = Tensor::zeros_like(&sets.alternative_mask).index_fill(
                1,
                &Tensor::from_slice(&[0i64]),
                1,
            );
            sets.alternative_mask = sets
                .alternative_mask
                .logical_or(&first.logical_and(&lacking));
        }
        Ok(filled)
    }
}

fn bad(what: &'static str, reason: String) -> InterpError {
    InterpError::spec(what, "prompt batch", reason)
}

/// The logits of `tokens` at each row's answer position. Shapes: tokens `[B, T]` → `[B, V]`.
pub(crate) fn answer_logits(net: &Net, tokens: &Tensor, answer_pos: &[i64]) -> Result<Tensor> {
    let req = RunRequest {
        logit_positions: AnswerPositions::new(answer_pos).logit_positions(),
        ..RunRequest::default()
    };
    Ok(net.gpt.run(tokens, &req)?.logits.squeeze_dim(1))
}

/// Per row the highest-logit token other than its first answer token at its answer position,
/// in chunks of at most `max_rows` rows: the alternative of a logit difference when none is
/// given. Shapes: tokens `[N, T]`, answer `[N]` → `[N]` i64.
pub(crate) fn best_other_tokens(
    net: &Net,
    tokens: &Tensor,
    answer_pos: &[i64],
    answer: &Tensor,
    max_rows: usize,
) -> Result<Tensor> {
    let parts = tch::no_grad(|| {
        Rows::chunks(answer_pos.len() as i64, max_rows as i64)
            .map(|rows| {
                let logits = answer_logits(net, &rows.of(tokens), &answer_pos[rows.range()])?;
                let answer = rows.of(answer).to_device(logits.device());
                Ok(crate::states::alt_tokens(&logits, &answer))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(Tensor::cat(&parts, 0))
}

/// The answer position of every prompt of a chunk: one shared position (read with `narrow`, the
/// common case) or one per row (read with `gather`).
pub(crate) struct AnswerPositions {
    /// `Ok(p)`: every row at `p`; `Err(rows)`: per row.
    shared: std::result::Result<i64, Vec<i64>>,
    /// Number of rows.
    n: usize,
}

impl AnswerPositions {
    pub(crate) fn new(rows: &[i64]) -> AnswerPositions {
        let shared = match rows.first() {
            Some(&p) if rows.iter().all(|&r| r == p) => Ok(p),
            _ => Err(rows.to_vec()),
        };
        AnswerPositions {
            shared,
            n: rows.len(),
        }
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The position every row shares, if they do.
    pub(crate) fn shared(&self) -> Option<i64> {
        self.shared.as_ref().ok().copied()
    }

    /// The positions of the chunk `rows`, repeated `k` times (variant-major).
    pub(crate) fn rows(&self, rows: crate::net::Rows, k: i64) -> AnswerPositions {
        let n = (rows.m * k) as usize;
        let shared = match &self.shared {
            Ok(p) => Ok(*p),
            Err(all) => {
                Err(all[rows.start as usize..(rows.start + rows.m) as usize].repeat(k as usize))
            }
        };
        AnswerPositions { shared, n }
    }

    /// `t` `[m, T, ...]` at each row's position, without the position axis: `[m, ...]`.
    pub(crate) fn pick(&self, t: &Tensor) -> Tensor {
        match &self.shared {
            Ok(p) => t.select(1, *p),
            Err(_) => self.select(t).squeeze_dim(1),
        }
    }

    /// The logits the run returns: `[m, 1, V]` at each row's position.
    pub(crate) fn logit_positions(&self) -> LogitPositions {
        match &self.shared {
            Ok(p) => LogitPositions::At(vec![*p]),
            Err(rows) => LogitPositions::PerRow(rows.clone()),
        }
    }

    /// `t` `[m, T, ...]` at each row's position, keeping the position axis: `[m, 1, ...]`.
    pub(crate) fn select(&self, t: &Tensor) -> Tensor {
        match &self.shared {
            Ok(p) => t.narrow(1, *p, 1),
            Err(rows) => {
                let mut shape = t.size();
                shape[1] = 1;
                let index = Tensor::from_slice(rows).to_device(t.device());
                let view: Vec<i64> = (0..shape.len())
                    .map(|i| if i == 0 { -1 } else { 1 })
                    .collect();
                t.gather(
                    1,
                    &index.view(view.as_slice()).expand(shape.as_slice(), false),
                    false,
                )
            }
        }
    }
}

/// The per-row metric of the clean and the corrupted run (when there is one), and the clean
/// run's answer logits (what [`Metric::KlToClean`] compares with). Shapes: → `[B]`, `[B]`, `[B, V]`.
pub(crate) struct Baselines {
    pub clean: Tensor,
    pub corrupted: Option<Tensor>,
    pub clean_logits: Tensor,
}

impl Baselines {
    pub(crate) fn compute(net: &Net, batch: &PromptBatch, metric: &Metric) -> Result<Baselines> {
        tch::no_grad(|| {
            let clean_logits = answer_logits(net, &batch.clean, &batch.answer_pos)?;
            let corrupted_logits = match &batch.corrupted {
                Some(c) => Some(answer_logits(net, c, &batch.answer_pos)?),
                None => None,
            };
            Baselines::of_logits(batch, metric, clean_logits, corrupted_logits.as_ref())
        })
    }

    /// The baselines of the clean and corrupted runs' answer logits (`[B, V]` each, on the
    /// model's device).
    pub(crate) fn of_logits(
        batch: &PromptBatch,
        metric: &Metric,
        clean_logits: Tensor,
        corrupted_logits: Option<&Tensor>,
    ) -> Result<Baselines> {
        let sets = batch.sets.to_device(clean_logits.device());
        let clean = metric.per_row(&clean_logits, &sets, Some(&clean_logits))?;
        let corrupted = match corrupted_logits {
            Some(logits) => Some(metric.per_row(logits, &sets, Some(&clean_logits))?),
            None => None,
        };
        Ok(Baselines {
            clean,
            corrupted,
            clean_logits,
        })
    }

    /// The divisor of a gradient or an effect: `clean − corrupted` means for a restoration,
    /// else 1. An error when a restoration has nothing to restore.
    pub(crate) fn restoration_norm(&self, metric: &Metric) -> Result<f64> {
        if !matches!(metric, Metric::Restoration(_)) {
            return Ok(1.0);
        }
        let corrupted = self
            .corrupted
            .as_ref()
            .map(|c| c.mean(Kind::Double).double_value(&[]));
        let clean = self.clean.mean(Kind::Double).double_value(&[]);
        match corrupted {
            Some(c) if (clean - c).abs() > 1e-9 => Ok(clean - c),
            _ => Err(InterpError::spec(
                "metric",
                metric.to_string(),
                "clean and corrupted runs agree: nothing to restore",
            )),
        }
    }
}
