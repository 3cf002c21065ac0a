//! Direct logit attribution on token batches: the logit difference between each prompt's answer
//! and alternative token sets split over the components that write the final residual stream
//! (embeddings, every head, the attention output biases, the MLPs, ln_final's bias), with the
//! cached final LayerNorm scale ([`crate::cache_helpers`]). The parts sum to the logit difference.

use super::PromptBatch;
use crate::cache_helpers::{project_at, ActivationCache, LabelledStack};
use crate::error::{InterpError, Result};
use crate::metric::{Metric, TokenSets};
use crate::net::Net;
use tch::{Kind, Tensor};

/// Per component and prompt its direct contribution to the logit difference.
#[derive(Debug)]
pub struct DlaValues {
    /// `embed`, `pos_embed`, per layer `L{l}H{h}`…, `{l}_attn_bias`, `{l}_mlp_out`, then
    /// `ln_final.bias`.
    pub labels: Vec<String>,
    /// `[C, B]` f64 on the CPU.
    pub values: Tensor,
    /// The model's logit difference per prompt `[B]` (what the values sum to).
    pub logit_diff: Vec<f64>,
}

impl DlaValues {
    /// Per component its label and mean over prompts.
    pub fn means(&self) -> Vec<(String, f64)> {
        let means = self.values.mean_dim(1, false, Kind::Double);
        self.labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), means.double_value(&[i as i64])))
            .collect()
    }
}

/// DLA of the clean prompts. The metric must be linear in the logits: [`Metric::LogitDiff`]
/// (answer set minus alternative set; without alternatives, the answer set's mean logit).
pub fn dla(net: &Net, batch: &PromptBatch, metric: &Metric) -> Result<DlaValues> {
    if !matches!(metric, Metric::LogitDiff) {
        return Err(InterpError::spec(
            "metric",
            metric.to_string(),
            "direct logit attribution needs a metric linear in the logits: logit-diff",
        ));
    }
    let cache = ActivationCache::run(net, &batch.clean)?;
    tch::no_grad(|| {
        let stack = components(net, &cache)?;
        let normed = cache.apply_ln_to_stack(&stack, None)?;
        let directions = set_directions(net, &batch.sets.to_device(net.device()));
        let values = project_at(&normed, &batch.answer_pos, &directions);
        let bias = (cache.ln_bias(None)?.unsqueeze(0) * &directions).sum_dim_intlist(
            -1,
            false,
            Kind::Float,
        );
        let values = Tensor::cat(&[values, bias.unsqueeze(0)], 0);
        let mut labels = normed.labels;
        labels.push("ln_final.bias".into());
        let logit_diff = values.sum_dim_intlist(0, false, Kind::Double);
        Ok(DlaValues {
            labels,
            values: values.to_kind(Kind::Double).to_device(tch::Device::Cpu),
            logit_diff: crate::stats::to_f64(&logit_diff)?,
        })
    })
}

/// The final residual stream as embeddings, heads, attention biases and MLP outputs.
/// Shapes: → `[C, B, T, d_model]`.
fn components(net: &Net, cache: &ActivationCache) -> Result<LabelledStack> {
    let heads = cache.stack_head_results(None, false)?;
    let embeds = cache.decompose_resid(Some(0))?;
    let mut parts: Vec<(String, Tensor)> = labelled(&embeds);
    let per_layer = net.n_head();
    let shape = cache.get(model::HookPoint::Embed)?.size();
    for l in 0..net.n_layer() {
        parts.extend(
            labelled(&heads)
                .into_iter()
                .skip(l * per_layer)
                .take(per_layer),
        );
        let block = net.gpt.block_at(l).ok_or(InterpError::LayerOutOfRange {
            layer: l,
            max: net.n_layer(),
        })?;
        parts.push((
            format!("{l}_attn_bias"),
            block.attn.c_proj.bias.expand(shape.as_slice(), false),
        ));
        parts.push((
            format!("{l}_mlp_out"),
            cache.get(model::HookPoint::MlpOut(l))?.shallow_clone(),
        ));
    }
    Ok(LabelledStack::from_parts(parts))
}

/// The entries of a stack with their labels.
fn labelled(stack: &LabelledStack) -> Vec<(String, Tensor)> {
    stack
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), stack.stack.get(i as i64)))
        .collect()
}

/// Per row the unembedding direction of the metric: mean column of the answer set minus mean
/// column of the alternative set (none when the set is empty). Shapes: → `[B, d_model]`.
fn set_directions(net: &Net, sets: &TokenSets) -> Tensor {
    let mean_column = |ids: &Tensor, mask: &Tensor| {
        let mask = mask.to_kind(Kind::Float).unsqueeze(-1);
        let cols = net.token_embeddings(ids) * &mask;
        cols.sum_dim_intlist(1, false, Kind::Float)
            / mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0)
    };
    mean_column(&sets.answer, &sets.answer_mask)
        - mean_column(&sets.alternative, &sets.alternative_mask)
}
