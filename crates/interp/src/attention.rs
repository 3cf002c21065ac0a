//! Attention patterns at the task positions: for every layer and head, the weight each query
//! position puts on each key position (`blocks.{l}.attn.hook_pattern`), averaged over the probe
//! examples and for the first few examples alone.
//!
//! `attention.csv` (`step,example,layer,head,query,key,value`): `layer` is the hook layer (the
//! position in the block schedule, 0 = first block), `query` and `key` are position names
//! (`h, r1, r2` / `a, q, e1, mask, e2`), `example` is [`MEAN_EXAMPLE`] for the mean over the
//! prompt sample or an example's 0-based line in `examples.jsonl`. Future keys
//! (`key > query`, weight 0 under the causal mask) are not written.

use crate::error::Result;
use crate::export::capture;
use crate::net::Net;
use crate::output::AttentionRow;
use crate::prompt_sample::PromptSample;
use crate::stats::to_f64;
use model::HookPoint;
use tch::{Kind, Tensor};

/// The `example` value of the rows that hold the mean over the sampled prompts.
pub const MEAN_EXAMPLE: &str = "mean";

/// How many examples (the first of the prompt sample) are written besides the mean.
pub const EXAMPLES_SHOWN: usize = 4;

/// Attention patterns of every layer and head on a prompt sample.
#[derive(Debug)]
pub struct AttentionResult {
    /// Names of the `T` input positions.
    pub positions: Vec<String>,
    /// `[L, H, T, T]` (layer, head, query, key), f64 on the CPU: the mean over the sampled prompts.
    pub mean: Tensor,
    /// `[E, L, H, T, T]`, f64 on the CPU: the first `E = min(N, EXAMPLES_SHOWN)` examples.
    pub examples: Tensor,
}

/// Captures `hook_pattern` of every layer on the prompt sample (on the model's device, in chunks of
/// at most `max_rows` examples) and returns the mean and the first examples' patterns.
pub fn attention_patterns(
    net: &Net,
    probe: &PromptSample,
    max_rows: usize,
) -> Result<AttentionResult> {
    let hooks: Vec<HookPoint> = (0..net.n_layer()).map(HookPoint::Pattern).collect();
    let per_layer: Vec<Tensor> = capture(net, probe, &hooks, max_rows)?
        .into_iter()
        .map(|(_, t)| t.to_kind(Kind::Double))
        .collect();
    // [N, L, H, T, T]
    let all = Tensor::stack(&per_layer, 1);
    let shown = probe.examples.len().min(EXAMPLES_SHOWN);
    Ok(AttentionResult {
        positions: probe.positions.clone(),
        mean: all.mean_dim(0, false, Kind::Double),
        examples: all.narrow(0, 0, shown as i64).contiguous(),
    })
}

impl AttentionResult {
    /// `attention.csv` rows at `step`: the mean first, then each shown example; per layer, head,
    /// query and key up to the query (see the module documentation).
    pub fn rows(&self, step: u64) -> Result<Vec<AttentionRow>> {
        let mut rows = self.pattern_rows(step, MEAN_EXAMPLE, &self.mean)?;
        for i in 0..self.examples.size()[0] {
            rows.extend(self.pattern_rows(step, &i.to_string(), &self.examples.get(i))?);
        }
        Ok(rows)
    }

    /// Rows of one `[L, H, T, T]` pattern.
    fn pattern_rows(
        &self,
        step: u64,
        example: &str,
        pattern: &Tensor,
    ) -> Result<Vec<AttentionRow>> {
        let size = pattern.size();
        let (n_layer, n_head, t) = (size[0] as usize, size[1] as usize, size[2] as usize);
        let values = to_f64(pattern)?;
        let mut rows = Vec::with_capacity(n_layer * n_head * t * (t + 1) / 2);
        for layer in 0..n_layer {
            for head in 0..n_head {
                for query in 0..t {
                    for key in 0..=query {
                        rows.push(AttentionRow {
                            step,
                            example: example.to_string(),
                            layer,
                            head,
                            query: self.positions[query].clone(),
                            key: self.positions[key].clone(),
                            value: values[((layer * n_head + head) * t + query) * t + key],
                        });
                    }
                }
            }
        }
        Ok(rows)
    }
}
