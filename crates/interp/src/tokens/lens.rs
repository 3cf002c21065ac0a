//! The logit lens on token batches: the metric of every layer's residual state read through
//! `ln_final` and the unembedding, at each prompt's answer position.

use super::PromptBatch;
use crate::error::Result;
use crate::metric::Metric;
use crate::net::{LnMode, Net};
use model::RunRequest;
use ndarray::Array2;
use tch::Tensor;

/// Per layer and prompt the metric of the lens logits.
#[derive(Debug)]
pub struct LensValues {
    pub metric: Metric,
    /// Residual layers read (`0` = embeddings … `L` = the model's output).
    pub layers: Vec<usize>,
    /// `[layers, B]`.
    pub values: Array2<f64>,
}

impl LensValues {
    /// Per layer the mean over prompts.
    pub fn means(&self) -> Vec<(usize, f64)> {
        self.layers
            .iter()
            .zip(self.values.rows())
            .map(|(&l, row)| (l, util::stats::mean(row.iter().copied())))
            .collect()
    }
}

/// The lens of the clean prompts at `layers` (`None` = `0..=L`): the residual state entering
/// each layer at the answer position, read out with `ln_mode`, scored by `metric`
/// ([`Metric::KlToClean`] compares with the model's own output distribution).
pub fn lens(
    net: &Net,
    batch: &PromptBatch,
    metric: &Metric,
    ln_mode: LnMode,
    layers: Option<&[usize]>,
) -> Result<LensValues> {
    let layers = net.layers_or_all(layers)?;
    let device = net.device();
    let sets = batch.sets.to_device(device);
    let rows = Tensor::from_slice(&batch.answer_pos).to_device(device);
    let values = tch::no_grad(|| -> Result<Array2<f64>> {
        let capture = (0..=net.n_layer()).map(|l| net.resid_hook(l));
        let cache = net.run(&batch.clean, &RunRequest::capture(capture))?.cache;
        let at_answer = |layer: usize| -> Tensor {
            let resid = &cache[&net.resid_hook(layer)];
            let index = rows.view([-1, 1, 1]).expand([-1, 1, net.d_model()], false);
            resid.gather(1, &index, false).squeeze_dim(1)
        };
        let last = at_answer(net.n_layer());
        let scale = (ln_mode == LnMode::CachedScale).then(|| net.ln_scale(&last));
        let final_logits = net.readout(&last, None);
        let mut values = Array2::zeros((layers.len(), batch.len()));
        for (i, &layer) in layers.iter().enumerate() {
            let logits = net.readout(&at_answer(layer), scale.as_ref());
            let v = crate::stats::to_f64(&metric.per_row(&logits, &sets, Some(&final_logits))?)?;
            for (j, x) in v.into_iter().enumerate() {
                values[[i, j]] = x;
            }
        }
        Ok(values)
    })?;
    Ok(LensValues {
        metric: metric.clone(),
        layers,
        values,
    })
}
