//! Linear probes: multinomial logistic regression that decodes a role's token (the bridge entity,
//! a relation, an attribute value, the comparison label) from the residual stream at each
//! (layer, position), trained on part of the probe set and scored on the held-out rest, next to
//! the logit lens's top-1 accuracy of the same token on the same held-out examples.
//!
//! Every probe of a layer (all positions × all targets) is fitted in one batched optimisation:
//! the `G` weight matrices are stacked as `[G, d, C]` and applied with `bmm`; full-batch Adam for
//! a fixed number of iterations on the L2-regularised mean cross-entropy, with closed-form
//! gradients (no autograd graph). Features are standardised with the training rows' mean and
//! standard deviation. Layer `l` is `resid_pre[l]` (0 = embeddings, `L` = last block output).

use crate::error::{InterpError, Result};
use crate::lens::{default_targets, ANSWER, LABELS, LABEL_ROLES};
use crate::net::{Net, Want};
use crate::output::LensRow;
use crate::probe::{mix_seed, ProbeSet};
use crate::states::{tokens_tensor, States};
use crate::stats::to_f64;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Kind, Tensor};

/// Pseudo-role of the comparison label (the gold label token).
pub const LABEL: &str = "label";

/// Options of one batched fit.
#[derive(Clone, Debug, PartialEq)]
pub struct FitOptions {
    /// Full-batch Adam iterations.
    pub iterations: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// L2 penalty `λ/2 · ‖W‖²` added to the mean cross-entropy of each probe (biases are not
    /// penalised; features are standardised, so λ is scale-free).
    pub l2: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            iterations: 200,
            lr: 0.02,
            l2: 1e-3,
        }
    }
}

/// Options of [`linear_probes`].
#[derive(Clone, Debug, PartialEq)]
pub struct LinearProbeOptions {
    pub fit: FitOptions,
    /// Fraction of each class's examples held out for scoring (classes with one example are
    /// only trained on).
    pub holdout: f64,
    /// Seed of the train/held-out split.
    pub seed: u64,
    /// Largest batch of one forward pass.
    pub max_rows: usize,
}

impl Default for LinearProbeOptions {
    fn default() -> Self {
        LinearProbeOptions {
            fit: FitOptions::default(),
            holdout: 0.25,
            seed: 0,
            max_rows: 2048,
        }
    }
}

/// Accuracies of `G` probes fitted together.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeFit {
    /// Held-out accuracy per probe (NaN for a probe without held-out rows).
    pub held_out_acc: Vec<f64>,
    /// Training accuracy per probe.
    pub train_acc: Vec<f64>,
}

/// Fits `G` multinomial logistic-regression probes at once and scores them.
///
/// Shapes: `x` `[G, N, d]` float features; `y` `[G, N]` i64 class indices with
/// `y[g, n] < n_classes[g]`; `held_out` `[G, N]` bool (true = scoring row, false = training
/// row); `n_classes` has `G` entries. Probe `g` sees only its own `C_g` classes (the others are
/// masked out of its softmax).
/// Errors: mismatched shapes, a class index out of range, a probe without training rows.
pub fn fit_probes(
    x: &Tensor,
    y: &Tensor,
    held_out: &Tensor,
    n_classes: &[usize],
    opts: &FitOptions,
) -> Result<ProbeFit> {
    let size = x.size();
    let [g, n, d] = size[..] else {
        return Err(shape_error("features", &size, "[G, N, d]"));
    };
    if y.size() != [g, n] {
        return Err(shape_error("labels", &y.size(), &format!("[{g}, {n}]")));
    }
    if held_out.size() != [g, n] {
        return Err(shape_error(
            "held-out mask",
            &held_out.size(),
            &format!("[{g}, {n}]"),
        ));
    }
    if n_classes.len() as i64 != g || n_classes.contains(&0) {
        return Err(InterpError::spec(
            "class counts",
            format!("{n_classes:?}"),
            format!("expected {g} positive counts, one per probe"),
        ));
    }
    let device = x.device();
    let c = n_classes.iter().copied().max().unwrap_or(1) as i64;
    let counts = Tensor::from_slice(&n_classes.iter().map(|&k| k as i64).collect::<Vec<_>>())
        .to_device(device);
    tch::no_grad(|| {
        let y = y.to_device(device).to_kind(Kind::Int64);
        let in_range = y.ge(0).logical_and(&y.lt_tensor(&counts.unsqueeze(1)));
        if !bool::try_from(in_range.all())? {
            return Err(InterpError::spec(
                "labels",
                "",
                "a class index is outside 0..n_classes of its probe",
            ));
        }
        let held = held_out.to_device(device).to_kind(Kind::Bool);
        let train = held.logical_not().to_kind(Kind::Float);
        let n_train = train.sum_dim_intlist(1, true, Kind::Float);
        if f64::try_from(n_train.min())? < 1.0 {
            return Err(InterpError::spec(
                "train/held-out split",
                "",
                "a probe has no training rows",
            ));
        }
        // Mean-loss row weights [G, N, 1]: 1/n_train on training rows, 0 on held-out rows.
        let row_w = (&train / &n_train).unsqueeze(-1);
        let x = x.to_kind(Kind::Float);
        let mean = (&x * &row_w).sum_dim_intlist(1, true, Kind::Float);
        let centred = &x - &mean;
        let std = (centred.square() * &row_w)
            .sum_dim_intlist(1, true, Kind::Float)
            .sqrt()
            .clamp_min(1e-6);
        let xs = centred / std;
        let xs_t = xs.transpose(1, 2).contiguous();
        // Additive mask [G, 1, C]: −1e9 on the classes a probe does not have.
        let mask = (Tensor::arange(c, (Kind::Int64, device))
            .unsqueeze(0)
            .ge_tensor(&counts.unsqueeze(1))
            .to_kind(Kind::Float)
            * -1e9)
            .unsqueeze(1);
        let target = y.unsqueeze(2);
        let minus_one = Tensor::full([g, n, 1], -1.0, (Kind::Float, device));
        let mut w = Tensor::zeros([g, d, c], (Kind::Float, device));
        let mut b = Tensor::zeros([g, 1, c], (Kind::Float, device));
        let mut adam_w = Adam::new(&w);
        let mut adam_b = Adam::new(&b);
        for t in 1..=opts.iterations {
            let logits = xs.bmm(&w) + &b + &mask;
            // d(mean CE)/d(logits) = (softmax − one-hot) / n_train on training rows.
            let mut grad = logits.softmax(-1, Kind::Float);
            let _ = grad.scatter_add_(2, &target, &minus_one);
            let grad = grad * &row_w;
            let grad_w = xs_t.bmm(&grad) + &w * opts.l2;
            let grad_b = grad.sum_dim_intlist(1, true, Kind::Float);
            adam_w.step(&mut w, &grad_w, t, opts.lr);
            adam_b.step(&mut b, &grad_b, t, opts.lr);
        }
        let pred = (xs.bmm(&w) + &b + &mask).argmax(-1, false);
        let correct = pred.eq_tensor(&y).to_kind(Kind::Float);
        let held = held.to_kind(Kind::Float);
        let acc = |rows: &Tensor| -> Result<Vec<f64>> {
            to_f64(
                &((&correct * rows).sum_dim_intlist(1, false, Kind::Float)
                    / rows.sum_dim_intlist(1, false, Kind::Float)),
            )
        };
        Ok(ProbeFit {
            held_out_acc: acc(&held)?,
            train_acc: acc(&train)?,
        })
    })
}

/// Adam's moment estimates of one parameter tensor.
struct Adam {
    m: Tensor,
    v: Tensor,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    fn new(p: &Tensor) -> Adam {
        Adam {
            m: p.zeros_like(),
            v: p.zeros_like(),
        }
    }

    /// One in-place update of `p` with gradient `grad` at iteration `t` (1-based).
    fn step(&mut self, p: &mut Tensor, grad: &Tensor, t: usize, lr: f64) {
        let _ = self.m.f_mul_scalar_(Self::BETA1);
        let _ = self.m.f_add_(&(grad * (1.0 - Self::BETA1)));
        let _ = self.v.f_mul_scalar_(Self::BETA2);
        let _ = self.v.f_add_(&(grad.square() * (1.0 - Self::BETA2)));
        let t = t as i32;
        let m_hat = &self.m / (1.0 - Self::BETA1.powi(t));
        let v_hat = &self.v / (1.0 - Self::BETA2.powi(t));
        let _ = p.f_sub_(&(m_hat / (v_hat.sqrt() + Self::EPS) * lr));
    }
}

fn shape_error(what: &'static str, size: &[i64], expected: &str) -> InterpError {
    InterpError::spec(
        what,
        format!("{size:?}"),
        format!("expected shape {expected}"),
    )
}

/// A stratified train/held-out split: within each class (in ascending class order, shuffled with
/// a ChaCha8 stream seeded by `seed`), `round(holdout · n_c)` examples are held out, but at most
/// `n_c − 1`, so every held-out example's class is seen in training. Returns one flag per example
/// (true = held out).
pub fn stratified_split(labels: &[usize], holdout: f64, seed: u64) -> Vec<bool> {
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &c) in labels.iter().enumerate() {
        by_class.entry(c).or_default().push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, &[0x5072_6f62_6573]));
    let mut held = vec![false; labels.len()];
    for members in by_class.values_mut() {
        members.shuffle(&mut rng);
        let k = ((holdout * members.len() as f64).round() as usize).min(members.len() - 1);
        for &i in &members[..k] {
            held[i] = true;
        }
    }
    held
}

/// The probe labels of one target: class indices, the token of each class and the split.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetLabels {
    /// Role name (or `answer`).
    pub role: String,
    /// Token id of each class, ascending.
    pub classes: Vec<u32>,
    /// Class index per probe example.
    pub labels: Vec<usize>,
    /// Held-out flag per probe example.
    pub held_out: Vec<bool>,
    /// Majority baseline: held-out accuracy of always predicting the most frequent training class.
    pub chance: f64,
}

impl TargetLabels {
    /// The labels of `role` (a role of the probe set or `answer`) with a stratified split.
    /// Errors: unknown role, or too few examples per class for any held-out example.
    pub fn new(probe: &ProbeSet, role: &str, holdout: f64, seed: u64) -> Result<TargetLabels> {
        let tokens = role_tokens(probe, role)?;
        let mut classes = tokens.clone();
        classes.sort_unstable();
        classes.dedup();
        let labels: Vec<usize> = tokens
            .iter()
            .map(|t| classes.binary_search(t).unwrap_or_default())
            .collect();
        let held_out = stratified_split(&labels, holdout, seed);
        let n_held = held_out.iter().filter(|&&h| h).count();
        if n_held == 0 {
            return Err(InterpError::spec(
                "probe target",
                role,
                format!(
                    "no held-out examples: {} examples in {} classes leave none to score with \
                     holdout {holdout}; draw more examples (--size) or raise --holdout",
                    labels.len(),
                    classes.len()
                ),
            ));
        }
        let mut train_counts = vec![0usize; classes.len()];
        for (&c, &h) in labels.iter().zip(&held_out) {
            if !h {
                train_counts[c] += 1;
            }
        }
        let majority = (0..classes.len())
            .max_by_key(|&c| (train_counts[c], std::cmp::Reverse(c)))
            .unwrap_or_default();
        let hits = labels
            .iter()
            .zip(&held_out)
            .filter(|(&c, &h)| h && c == majority)
            .count();
        Ok(TargetLabels {
            role: role.to_string(),
            classes,
            labels,
            held_out,
            chance: hits as f64 / n_held as f64,
        })
    }

    /// Number of held-out examples.
    pub fn n_held_out(&self) -> usize {
        self.held_out.iter().filter(|&&h| h).count()
    }

    /// Number of training examples.
    pub fn n_train(&self) -> usize {
        self.held_out.len() - self.n_held_out()
    }
}

/// Token id of `role` (or the gold answer for `answer`) per probe example.
fn role_tokens(probe: &ProbeSet, role: &str) -> Result<Vec<u32>> {
    if role == ANSWER {
        return Ok(probe.examples.iter().map(|e| e.gold).collect());
    }
    if role == LABELS {
        return Err(InterpError::spec(
            "probe target",
            role,
            "a probe decodes one token; use `label` (the gold comparison label)",
        ));
    }
    probe.check_role(role)?;
    Ok(probe.examples.iter().map(|e| e.roles[role]).collect())
}

/// The paper's probe targets for the probe set's task: composition — each bridge entity `b_i`
/// and the last relation; comparison — `v1`, `v2` and the gold `label`; otherwise (or when none
/// of these exists) the answer.
pub fn default_probe_targets(probe: &ProbeSet) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in default_targets(probe) {
        let role = t.role;
        let is_label = role == LABELS || LABEL_ROLES.contains(&role.as_str());
        if role != ANSWER && !is_label && !out.contains(&role) {
            out.push(role);
        }
    }
    if probe.check_role(LABEL).is_ok() {
        out.push(LABEL.to_string());
    }
    if out.is_empty() {
        out.push(ANSWER.to_string());
    }
    out
}

/// One (layer, position, target) cell.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeCell {
    pub layer: usize,
    /// Position name.
    pub position: String,
    /// Target role.
    pub target: String,
    /// Held-out accuracy of the linear probe.
    pub probe_acc: f64,
    /// Training accuracy of the linear probe.
    pub train_acc: f64,
    /// Logit-lens (recompute mode) top-1 accuracy of the target token on the same held-out
    /// examples.
    pub lens_acc: f64,
}

/// Probes of every requested (layer, position, target).
#[derive(Clone, Debug)]
pub struct LinearProbeResult {
    pub targets: Vec<TargetLabels>,
    /// Cells in order layer, target, position.
    pub cells: Vec<ProbeCell>,
    /// Seconds spent in the forward passes.
    pub forward_seconds: f64,
    /// Seconds spent fitting the probes (all layers).
    pub fit_seconds: f64,
}

impl LinearProbeResult {
    /// `probe.csv` rows (the lens.csv layout): metrics `probe_acc` and `lens_acc` per cell.
    pub fn rows(&self, step: u64) -> Vec<LensRow> {
        let mut rows = Vec::with_capacity(2 * self.cells.len());
        for metric in ["probe_acc", "lens_acc"] {
            for c in &self.cells {
                rows.push(LensRow {
                    step,
                    layer: c.layer,
                    position: c.position.clone(),
                    target: c.target.clone(),
                    metric: metric.into(),
                    value: if metric == "probe_acc" {
                        c.probe_acc
                    } else {
                        c.lens_acc
                    },
                });
            }
        }
        rows
    }

    /// The cell of (layer, position, target).
    pub fn get(&self, layer: usize, position: &str, target: &str) -> Option<&ProbeCell> {
        self.cells
            .iter()
            .find(|c| c.layer == layer && c.position == position && c.target == target)
    }
}

/// Trains and scores linear probes of `targets` (roles, or `answer`) at `positions` (names;
/// `None`: every position) and `layers` (`None`: `0..=L`) on the probe set's clean inputs.
/// All probes of a layer are fitted in one batched optimisation on the model's device.
/// Errors: unknown role/position/layer, or a target with too few examples to hold any out.
pub fn linear_probes(
    net: &Net,
    probe: &ProbeSet,
    targets: &[String],
    positions: Option<&[String]>,
    layers: Option<&[usize]>,
    opts: &LinearProbeOptions,
) -> Result<LinearProbeResult> {
    if targets.is_empty() {
        return Err(InterpError::spec(
            "probe targets",
            "",
            "give at least one role",
        ));
    }
    if !(opts.holdout > 0.0 && opts.holdout < 1.0) {
        return Err(InterpError::spec(
            "holdout",
            opts.holdout.to_string(),
            "expected a fraction strictly between 0 and 1",
        ));
    }
    let pos_idx: Vec<usize> = match positions {
        Some(names) => {
            let mut idx: Vec<usize> = Vec::new();
            for name in names {
                let p = probe.position(name)?;
                if !idx.contains(&p) {
                    idx.push(p);
                }
            }
            idx
        }
        None => (0..probe.seq_len()).collect(),
    };
    let layers: Vec<usize> = match layers {
        Some(list) => {
            for &l in list {
                net.check_layer(l)?;
            }
            list.to_vec()
        }
        None => (0..=net.n_layer()).collect(),
    };
    let labels = targets
        .iter()
        .map(|t| TargetLabels::new(probe, t, opts.holdout, opts.seed))
        .collect::<Result<Vec<_>>>()?;

    let device = net.device();
    let (n_pos, n_tgt) = (pos_idx.len() as i64, labels.len() as i64);
    // Per-group labels and masks, group g = target k × positions + position p: [K·P, N].
    let stack_rows = |row: &dyn Fn(&TargetLabels) -> Tensor| -> Tensor {
        let rows: Vec<Tensor> = labels.iter().map(row).collect();
        Tensor::stack(&rows, 0)
            .repeat_interleave_self_int(n_pos, Some(0), None)
            .to_device(device)
    };
    let y = stack_rows(&|t| {
        Tensor::from_slice(&t.labels.iter().map(|&c| c as i64).collect::<Vec<_>>())
    });
    let held = stack_rows(&|t| Tensor::from_slice(&t.held_out));
    let n_classes: Vec<usize> = labels
        .iter()
        .flat_map(|t| std::iter::repeat(t.classes.len()).take(pos_idx.len()))
        .collect();
    let target_tokens = stack_rows(&|t| {
        Tensor::from_slice(
            &t.labels
                .iter()
                .map(|&c| i64::from(t.classes[c]))
                .collect::<Vec<_>>(),
        )
    });
    let held_f = held.to_kind(Kind::Float);
    let n_held = held_f.sum_dim_intlist(1, false, Kind::Float);

    let started = Instant::now();
    let states = tch::no_grad(|| {
        let clean = tokens_tensor(probe.examples.iter().map(|e| e.tokens.as_slice()), device);
        States::compute(
            net,
            &clean,
            None,
            Want::default(),
            probe.answer_pos,
            opts.max_rows,
        )
    })?;
    let mut forward_seconds = started.elapsed().as_secs_f64();
    let mut fit_seconds = 0.0;
    let pos_t = Tensor::from_slice(&pos_idx.iter().map(|&p| p as i64).collect::<Vec<_>>())
        .to_device(device);

    let mut cells = Vec::new();
    for &layer in &layers {
        // [N, P, d] → [P, N, d] → [K·P, N, d]
        let x = states.resid[layer]
            .index_select(1, &pos_t)
            .transpose(0, 1)
            .repeat([n_tgt, 1, 1]);
        let started = Instant::now();
        let fit = fit_probes(&x, &y, &held, &n_classes, &opts.fit)?;
        fit_seconds += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let lens_acc = tch::no_grad(|| -> Result<Vec<f64>> {
            // Lens top-1 per position [P, N], repeated per target → [K·P, N].
            let top1 = Tensor::stack(
                &pos_idx
                    .iter()
                    .map(|&p| {
                        net.readout(&states.resid[layer].select(1, p as i64), None)
                            .argmax(-1, false)
                    })
                    .collect::<Vec<_>>(),
                0,
            )
            .repeat([n_tgt, 1]);
            let hits = top1.eq_tensor(&target_tokens).to_kind(Kind::Float) * &held_f;
            to_f64(&(hits.sum_dim_intlist(1, false, Kind::Float) / &n_held))
        })?;
        forward_seconds += started.elapsed().as_secs_f64();
        for (k, t) in labels.iter().enumerate() {
            for (pi, &p) in pos_idx.iter().enumerate() {
                let g = k * pos_idx.len() + pi;
                cells.push(ProbeCell {
                    layer,
                    position: probe.positions[p].clone(),
                    target: t.role.clone(),
                    probe_acc: fit.held_out_acc[g],
                    train_acc: fit.train_acc[g],
                    lens_acc: lens_acc[g],
                });
            }
        }
    }
    Ok(LinearProbeResult {
        targets: labels,
        cells,
        forward_seconds,
        fit_seconds,
    })
}
