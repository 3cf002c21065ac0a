//! The tuned lens (Belrose et al. 2023): one affine translator per residual layer, trained so that
//! reading the translated state out through `ln_f` and the unembedding matches the model's final
//! distribution (KL from the final distribution), then applied like the logit lens.
//!
//! Layer `l < L` reads `readout(A_l x + b_l)`; the last layer `L` is the model's own output and has
//! no translator. With `A_l = I`, `b_l = 0` ([`TunedLens::identity`]) the tuned lens is the logit
//! lens exactly.
//!
//! ```no_run
//! # fn demo(net: &interp::Net, tokens: &tch::Tensor) -> interp::Result<()> {
//! use interp::tuned_lens::{train_tuned_lens, TunedLensOptions};
//! let (lens, report) = train_tuned_lens(net, tokens, &TunedLensOptions::default())?;
//! println!("KL per layer before {:?} after {:?}", report.kl_before, report.kl_after);
//! lens.save(std::path::Path::new("tuned_lens.safetensors"))?;
//! # Ok(()) }
//! ```

use crate::error::{InterpError, Result};
use crate::net::{Net, Want};
use crate::states::States;
use std::path::Path;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Per-layer affine translators for layers `0..L` (the last layer `L` has none).
pub struct TunedLens {
    /// Holds `translator.{l}.weight` `[d, d]` and `translator.{l}.bias` `[d]`.
    vs: nn::VarStore,
    weights: Vec<Tensor>,
    biases: Vec<Tensor>,
}

impl TunedLens {
    /// Identity translators for a model with `n_layer` layers of width `d` (the logit lens).
    pub fn identity(n_layer: usize, d: i64, device: Device) -> TunedLens {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for l in 0..n_layer {
            let p = &root / "translator" / l;
            weights.push(p.var_copy("weight", &Tensor::eye(d, (Kind::Float, device))));
            biases.push(p.zeros("bias", &[d]));
        }
        TunedLens {
            vs,
            weights,
            biases,
        }
    }

    /// Number of translated layers (`L`).
    pub fn n_layer(&self) -> usize {
        self.weights.len()
    }

    /// The translated state of residual layer `layer` (unchanged for `layer ≥ L`).
    /// Shapes: x `[..., d]` → `[..., d]`.
    pub fn translate(&self, layer: usize, x: &Tensor) -> Tensor {
        match (self.weights.get(layer), self.biases.get(layer)) {
            (Some(w), Some(b)) => x.matmul(&w.tr()) + b,
            _ => x.shallow_clone(),
        }
    }

    /// Writes the translators as safetensors (`translator.{l}.weight`, `translator.{l}.bias`).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.vs.save(path).map_err(InterpError::from)
    }

    /// Reads translators written by [`TunedLens::save`] for a model with `n_layer` layers of
    /// width `d`; an error when the file holds another shape.
    pub fn load(path: &Path, n_layer: usize, d: i64, device: Device) -> Result<TunedLens> {
        let mut lens = TunedLens::identity(n_layer, d, device);
        lens.vs.load(path).map_err(|e| InterpError::BadFile {
            path: path.to_path_buf(),
            reason: format!("not a tuned lens for {n_layer} layers of width {d}: {e}"),
        })?;
        Ok(lens)
    }
}

/// How the translators are trained.
#[derive(Clone, Debug)]
pub struct TunedLensOptions {
    /// Adam steps per layer.
    pub steps: usize,
    pub lr: f64,
    /// Rows (example × position) per step.
    pub batch: usize,
    pub seed: i64,
}

impl Default for TunedLensOptions {
    fn default() -> Self {
        TunedLensOptions {
            steps: 300,
            lr: 1e-3,
            batch: 1024,
            seed: 0,
        }
    }
}

/// Mean KL divergence (nats) from the final distribution, per layer `0..L`, before and after
/// training, on the training rows.
#[derive(Clone, Debug, PartialEq)]
pub struct TunedLensReport {
    pub kl_before: Vec<f64>,
    pub kl_after: Vec<f64>,
}

/// Trains a tuned lens on the residual streams of `tokens` (every position of every row).
/// Shapes: tokens `[N, T]` i64.
pub fn train_tuned_lens(
    net: &Net,
    tokens: &Tensor,
    opts: &TunedLensOptions,
) -> Result<(TunedLens, TunedLensReport)> {
    if opts.steps == 0 || opts.batch == 0 || opts.lr.is_nan() || opts.lr <= 0.0 {
        return Err(InterpError::BadSpec {
            what: "tuned-lens option",
            value: format!("steps {} batch {} lr {}", opts.steps, opts.batch, opts.lr),
            reason: "steps and batch must be at least 1 and lr positive".into(),
        });
    }
    let (rows, target) = residual_rows(net, tokens)?;
    let lens = TunedLens::identity(net.n_layer(), net.d_model(), net.device());
    let kl_before = layer_kls(net, &lens, &rows, &target);
    tch::manual_seed(opts.seed);
    let mut adam = nn::Adam::default().build(&lens.vs, opts.lr)?;
    let n = target.size()[0];
    for _ in 0..opts.steps {
        let pick = Tensor::randint(
            n,
            [opts.batch.min(n as usize) as i64],
            (Kind::Int64, net.device()),
        );
        let target = target.index_select(0, &pick);
        let loss = (0..lens.n_layer())
            .map(|l| {
                kl_from(
                    &target,
                    &readout_log_probs(net, &lens, l, &rows[l].index_select(0, &pick)),
                )
            })
            .fold(Tensor::zeros([], (Kind::Float, net.device())), |acc, kl| {
                acc + kl
            });
        adam.zero_grad();
        loss.backward();
        adam.step();
    }
    let kl_after = layer_kls(net, &lens, &rows, &target);
    Ok((
        lens,
        TunedLensReport {
            kl_before,
            kl_after,
        },
    ))
}

/// Residual states of every layer `0..L` flattened to rows, and the final log-distribution.
/// Shapes: → (`L` tensors `[N·T, d]`, `[N·T, V]`).
fn residual_rows(net: &Net, tokens: &Tensor) -> Result<(Vec<Tensor>, Tensor)> {
    let t = tokens.size()[1] as usize;
    let states = tch::no_grad(|| States::compute(net, tokens, None, Want::default(), t - 1, 4096))?;
    let d = net.d_model();
    let flat = |x: &Tensor| x.reshape([-1, d]).detach();
    let rows: Vec<Tensor> = states.resid[..net.n_layer()].iter().map(flat).collect();
    let finals = flat(&states.resid[net.n_layer()]);
    let target = tch::no_grad(|| net.readout(&finals, None).log_softmax(-1, Kind::Float));
    Ok((rows, target))
}

/// Log-probabilities of the tuned lens at layer `layer`. Shapes: x `[R, d]` → `[R, V]`.
fn readout_log_probs(net: &Net, lens: &TunedLens, layer: usize, x: &Tensor) -> Tensor {
    net.readout(&lens.translate(layer, x), None)
        .log_softmax(-1, Kind::Float)
}

/// Mean KL(target ‖ got) over rows, both given as log-probabilities `[R, V]`.
fn kl_from(target: &Tensor, got: &Tensor) -> Tensor {
    (target.exp() * (target - got))
        .sum_dim_intlist(-1, false, Kind::Float)
        .mean(Kind::Float)
}

/// Mean KL per layer of `lens` on all rows.
fn layer_kls(net: &Net, lens: &TunedLens, rows: &[Tensor], target: &Tensor) -> Vec<f64> {
    tch::no_grad(|| {
        rows.iter()
            .enumerate()
            .map(|(l, x)| kl_from(target, &readout_log_probs(net, lens, l, x)).double_value(&[]))
            .collect()
    })
}
