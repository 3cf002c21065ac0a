//! Datasets as device tensors: the whole training set as one token matrix with its loss positions
//! and targets, and each evaluation split as prompts with answer positions and gold answers.

use crate::error::{Result, TrainError};
use tasks::{Dataset, Example};
use tch::{Device, Kind, Tensor};

/// Target value of a padded loss slot (ignored by the cross-entropy).
pub const IGNORE: i64 = -100;

/// The training set on the device.
pub struct TrainTensors {
    /// Input tokens `[N, T]` i64, right-padded with `<pad>`; T = last loss position + 1.
    pub tokens: Tensor,
    /// Positions whose next-token prediction has a loss `[N, K]` i64 (padded with 0).
    pub positions: Tensor,
    /// The token each of those positions must predict `[N, K]` i64 (padding: [`IGNORE`]).
    pub targets: Tensor,
    /// Number of examples N.
    pub len: usize,
}

impl TrainTensors {
    /// Builds the tensors from examples (in their order). Fails on an example without loss
    /// positions or with a loss position past its last token.
    pub fn new(examples: &[Example], pad: u32, device: Device) -> Result<TrainTensors> {
        if examples.is_empty() {
            return Err(TrainError::Config("the training set is empty".into()));
        }
        let mut t = 0;
        let mut k = 0;
        for (i, ex) in examples.iter().enumerate() {
            let last = ex.loss_positions.iter().max().ok_or_else(|| {
                TrainError::Config(format!("training example {i} has no loss position"))
            })?;
            if last + 1 >= ex.tokens.len() {
                return Err(TrainError::Config(format!(
                    "training example {i}: loss position {last} has no next token (length {})",
                    ex.tokens.len()
                )));
            }
            t = t.max(last + 1);
            k = k.max(ex.loss_positions.len());
        }
        let n = examples.len();
        let mut tokens = vec![i64::from(pad); n * t];
        let mut positions = vec![0i64; n * k];
        let mut targets = vec![IGNORE; n * k];
        for (i, ex) in examples.iter().enumerate() {
            for (j, &tok) in ex.tokens.iter().take(t).enumerate() {
                tokens[i * t + j] = i64::from(tok);
            }
            for (j, &p) in ex.loss_positions.iter().enumerate() {
                positions[i * k + j] = p as i64;
                targets[i * k + j] = i64::from(ex.tokens[p + 1]);
            }
        }
        let shape = |cols: usize| [n as i64, cols as i64];
        Ok(TrainTensors {
            tokens: Tensor::from_slice(&tokens).view(shape(t)).to_device(device),
            positions: Tensor::from_slice(&positions)
                .view(shape(k))
                .to_device(device),
            targets: Tensor::from_slice(&targets)
                .view(shape(k))
                .to_device(device),
            len: n,
        })
    }
}

/// One evaluation split on the device.
pub struct EvalSplit {
    /// Split name (the paper's `type`).
    pub name: String,
    /// Prompts `[M, L]` i64, right-padded with `<pad>`; L = last answer position + 1.
    pub tokens: Tensor,
    /// Position whose next-token prediction is the answer `[M]` i64.
    pub answer_pos: Tensor,
    /// Gold answer token `[M]` i64.
    pub answer: Tensor,
    /// Number of examples M.
    pub len: usize,
}

impl EvalSplit {
    /// Builds a split from its examples.
    pub fn new(name: &str, examples: &[&Example], pad: u32, device: Device) -> Result<EvalSplit> {
        let l = examples
            .iter()
            .map(|ex| ex.answer_pos + 1)
            .max()
            .unwrap_or(1);
        let m = examples.len();
        let mut tokens = vec![i64::from(pad); m * l];
        let mut pos = Vec::with_capacity(m);
        let mut answer = Vec::with_capacity(m);
        for (i, ex) in examples.iter().enumerate() {
            if ex.answer_pos >= ex.tokens.len() {
                return Err(TrainError::Config(format!(
                    "split {name}, example {i}: answer position {} is past its {} tokens",
                    ex.answer_pos,
                    ex.tokens.len()
                )));
            }
            for (j, &tok) in ex.tokens.iter().take(ex.answer_pos + 1).enumerate() {
                tokens[i * l + j] = i64::from(tok);
            }
            pos.push(ex.answer_pos as i64);
            answer.push(i64::from(ex.answer));
        }
        Ok(EvalSplit {
            name: name.to_string(),
            tokens: Tensor::from_slice(&tokens)
                .view([m as i64, l as i64])
                .to_device(device),
            answer_pos: Tensor::from_slice(&pos).to_device(device),
            answer: Tensor::from_slice(&answer).to_device(device),
            len: m,
        })
    }

    /// Every split of the dataset's test.json, sorted by name.
    pub fn all(ds: &Dataset, device: Device) -> Result<Vec<EvalSplit>> {
        let pad = ds.vocab.pad_id();
        ds.splits()
            .into_iter()
            .map(|(name, examples)| EvalSplit::new(&name, &examples, pad, device))
            .collect()
    }
}

/// Number of batches in an epoch of `n` examples: `ceil(n / batch)` (the last one may be short,
/// as with PyTorch's `DataLoader`).
pub fn steps_per_epoch(n: usize, batch: usize) -> u64 {
    n.div_ceil(batch) as u64
}

/// The permutation of epoch `epoch`: a ChaCha8 Fisher–Yates shuffle of `0..n` seeded with
/// `mix(seed, epoch)`, as an i64 tensor `[n]` on `device`.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64, device: Device) -> Tensor {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(util::seed::mix(seed, epoch));
    let mut order: Vec<i64> = (0..n as i64).collect();
    order.shuffle(&mut rng);
    Tensor::from_slice(&order)
        .to_kind(Kind::Int64)
        .to_device(device)
}
