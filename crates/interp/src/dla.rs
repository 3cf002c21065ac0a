//! Direct logit attribution of a prompt sample: the token-level DLA ([`crate::tokens::dla`],
//! where the formula and the components are described) of each example's gold answer against an
//! alternative token — each example's runner-up (the highest-logit non-gold token) or one given
//! token — written as `dla.csv`.
//!
//! `dla.csv` holds the layer view (drawn as bars that sum to the logit difference) and the heads
//! (drawn as a layer × head heatmap); the attention biases are left out of it so that no bar is
//! counted twice — they are in [`DlaResult`] and in `dla_summary.json`.

use crate::error::{InterpError, Result};
use crate::metric::{Metric, TokenSets};
use crate::net::Net;
use crate::prompt_sample::PromptSample;
use crate::stats::to_i64;
use crate::tokens::{best_other_tokens, dla, DlaValues, PromptBatch};
use serde::{Deserialize, Serialize};
use tch::Tensor;

pub use crate::tokens::DlaComponent;

/// One row of `dla.csv`: `step,component,value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlaRow {
    pub step: u64,
    pub component: String,
    pub value: f64,
}

/// Direct logit attribution of a prompt sample.
#[derive(Clone, Debug)]
pub struct DlaResult {
    /// Per example (rows, sample order) and component.
    pub dla: DlaValues,
    /// The alternative token per example (runner-up, or the given one).
    pub alt: Vec<u32>,
}

impl DlaResult {
    /// `dla.csv` rows: the mean of every component at `step`, in order, except the attention
    /// biases (see the module documentation).
    pub fn rows(&self, step: u64) -> Vec<DlaRow> {
        self.dla
            .means()
            .into_iter()
            .filter(|(c, _)| !matches!(c, DlaComponent::AttnBias(_)))
            .map(|(c, value)| DlaRow {
                step,
                component: c.to_string(),
                value,
            })
            .collect()
    }
}

/// Direct logit attribution of gold versus `alternative` (a token id; `None`: each example's
/// runner-up) at the answer position of every sampled prompt, in chunks of at most `max_rows`
/// examples. Errors: an alternative token outside the vocabulary.
pub fn direct_logit_attribution(
    net: &Net,
    probe: &PromptSample,
    alternative: Option<u32>,
    max_rows: usize,
) -> Result<DlaResult> {
    check_alternative(net, alternative)?;
    let device = net.device();
    let tokens = probe.clean_tokens(device);
    let gold: Vec<i64> = probe.examples.iter().map(|e| i64::from(e.gold)).collect();
    let gold = Tensor::from_slice(&gold).to_device(device);
    let answer_pos = vec![probe.answer_pos as i64; probe.examples.len()];
    let alt = match alternative {
        Some(a) => gold.full_like(i64::from(a)),
        None => best_other_tokens(net, &tokens, &answer_pos, &gold, max_rows)?,
    };
    let sets = TokenSets::single(&gold, &alt);
    let batch = PromptBatch::new(tokens, None, Some(answer_pos), sets)?;
    Ok(DlaResult {
        dla: dla(net, &batch, &Metric::LogitDiff, max_rows)?,
        alt: to_i64(&alt)?.into_iter().map(|a| a as u32).collect(),
    })
}

/// Errors unless the fixed alternative token (if any) is inside the model's vocabulary.
fn check_alternative(net: &Net, alternative: Option<u32>) -> Result<()> {
    match alternative {
        Some(a) if a as usize >= net.vocab_size() => Err(InterpError::spec(
            "alternative token",
            a.to_string(),
            format!("outside the model's vocabulary of {}", net.vocab_size()),
        )),
        _ => Ok(()),
    }
}
