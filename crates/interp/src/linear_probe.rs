//! Linear probes: multinomial logistic regression that decodes a role's token (the bridge entity,
//! a relation, an attribute value, the comparison label) from the residual stream at each
//! (layer, position), trained on part of the prompt sample and scored on the held-out rest, next to
//! the logit lens's top-1 accuracy of the same token on the same held-out examples.
//!
//! The probes of a target at every (layer, position) — all probes of every layer — are fitted in
//! one batched computation on the model's device: the `G` weight matrices are stacked as
//! `[G, d, C]` and applied with `bmm`. Two solvers ([`Solver`]):
//! - `logistic` (default): full-batch Adam for a fixed number of iterations on the
//!   L2-regularised mean cross-entropy, with closed-form gradients (no autograd graph). Each
//!   iteration costs ≈ 4·G·N·d·C FLOPs, the bulk of a paper-size fit.
//! - `ridge`: the closed-form L2-regularised least-squares fit to the one-hot labels (a linear
//!   classifier by argmax): one batched Cholesky solve, ≈ 2·G·d²·(N + C) FLOPs, seconds at paper
//!   size on a CPU.
//!
//! Features are standardised with the training rows' mean and standard deviation. Layer `l` is
//! `resid_pre[l]` (0 = embeddings, `L` = last block output).

use crate::error::{InterpError, Result};
use crate::lens::{default_targets, ANSWER, LABELS, LABEL_ROLES};
use crate::net::Net;
use crate::output::LensRow;
use crate::prompt_sample::PromptSample;
use crate::states::States;
use crate::stats::to_f64;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Kind, Tensor};

/// Pseudo-role of the comparison label (the gold label token).
pub const LABEL: &str = "label";

/// How the probes are fitted.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Solver {
    /// Multinomial logistic regression, full-batch Adam.
    Logistic,
    /// Closed-form ridge regression to the one-hot labels, predicted by argmax.
    Ridge,
}

impl std::fmt::Display for Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Solver::Logistic => "logistic",
            Solver::Ridge => "ridge",
        })
    }
}

impl std::str::FromStr for Solver {
    type Err = InterpError;

    fn from_str(s: &str) -> Result<Solver> {
        match s {
            "logistic" => Ok(Solver::Logistic),
            "ridge" => Ok(Solver::Ridge),
            _ => Err(InterpError::spec(
                "probe solver",
                s,
                "expected `logistic` or `ridge`",
            )),
        }
    }
}

/// Options of one batched fit.
#[derive(Clone, Debug, PartialEq)]
pub struct FitOptions {
    pub solver: Solver,
    /// Full-batch Adam iterations (logistic solver).
    pub iterations: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// L2 penalty `λ/2 · ‖W‖²` added to the mean cross-entropy (logistic) or the mean squared
    /// error (ridge) of each probe (biases are not penalised; features are standardised, so λ is
    /// scale-free).
    pub l2: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            solver: Solver::Logistic,
            iterations: 100,
            lr: 0.05,
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

/// Fits `G` multinomial logistic-regression probes over the same `C` classes at once and scores
/// them on held-out rows.
///
/// Shapes: `train_x` `[G, N_train, d]` and `test_x` `[G, N_test, d]` float features; `train_y`
/// `[N_train]` or `[G, N_train]` and `test_y` `[N_test]` or `[G, N_test]` i64 class indices in
/// `0..n_classes` (a 1-D label vector is shared by every probe). Features are standardised per
/// probe with the training rows' mean and standard deviation.
/// Errors: mismatched shapes, no training rows, a class index out of range.
pub fn fit_probes(
    train_x: &Tensor,
    train_y: &Tensor,
    test_x: &Tensor,
    test_y: &Tensor,
    n_classes: usize,
    opts: &FitOptions,
) -> Result<ProbeFit> {
    let ProbeShape { g, n, n_test } = ProbeShape::check(train_x, test_x, n_classes)?;
    let labels = |y: &Tensor, rows: i64, what: &'static str| {
        probe_labels(y, [g, rows], n_classes, train_x.device(), what)
    };
    let train_y = labels(train_y, n, "training labels")?;
    let test_y = labels(test_y, n_test, "held-out labels")?;
    let c = n_classes as i64;
    tch::no_grad(|| {
        let x = train_x.to_kind(Kind::Float);
        let standardiser = Standardiser::fit(&x);
        let xs = standardiser.apply(&x);
        let (w, b) = match opts.solver {
            Solver::Logistic => fit_logistic(&xs, &train_y, c, opts),
            Solver::Ridge => fit_ridge(&xs, &train_y, c, opts.l2)?,
        };
        let test_xs = standardiser.apply(&test_x.to_kind(Kind::Float));
        Ok(ProbeFit {
            held_out_acc: probe_accuracy(&test_xs, &test_y, &w, &b)?,
            train_acc: probe_accuracy(&xs, &train_y, &w, &b)?,
        })
    })
}

/// The sizes of a [`fit_probes`] call: `g` probes, `n` training rows and `n_test` held-out rows.
struct ProbeShape {
    g: i64,
    n: i64,
    n_test: i64,
}

impl ProbeShape {
    /// The sizes of training features `[G, N_train, d]` and held-out features `[G, N_test, d]`.
    /// Errors: features of another rank or of mismatched `G` or `d`, no training rows, no class.
    fn check(train_x: &Tensor, test_x: &Tensor, n_classes: usize) -> Result<ProbeShape> {
        let size = train_x.size();
        let [g, n, d] = size[..] else {
            return Err(shape_error("training features", &size, "[G, N_train, d]"));
        };
        let test_size = test_x.size();
        let [_, n_test, _] = test_size[..] else {
            return Err(shape_error(
                "held-out features",
                &test_size,
                "[G, N_test, d]",
            ));
        };
        if test_size[0] != g || test_size[2] != d {
            return Err(shape_error(
                "held-out features",
                &test_size,
                &format!("[{g}, N_test, {d}]"),
            ));
        }
        if n == 0 || n_classes == 0 {
            return Err(InterpError::spec(
                "probe data",
                format!("{n} training rows, {n_classes} classes"),
                "a probe needs training rows and at least one class",
            ));
        }
        Ok(ProbeShape { g, n, n_test })
    }
}

/// Class labels `[rows]` (shared by every probe) or `[G, rows]` as `[G, rows]` i64 on `device`.
/// Errors (naming `what`): another shape, a class index outside `0..n_classes`.
fn probe_labels(
    y: &Tensor,
    [g, rows]: [i64; 2],
    n_classes: usize,
    device: tch::Device,
    what: &'static str,
) -> Result<Tensor> {
    let y = match y.size()[..] {
        [r] if r == rows => y.unsqueeze(0).expand([g, rows], false),
        [h, r] if h == g && r == rows => y.shallow_clone(),
        _ => {
            return Err(shape_error(
                what,
                &y.size(),
                &format!("[{rows}] or [{g}, {rows}]"),
            ))
        }
    };
    let y = y.to_device(device).to_kind(Kind::Int64);
    if y.numel() > 0 {
        let (lo, hi) = (i64::try_from(y.min())?, i64::try_from(y.max())?);
        if lo < 0 || hi >= n_classes as i64 {
            return Err(InterpError::spec(
                what,
                format!("{lo}..={hi}"),
                format!("a class index is outside 0..{n_classes}"),
            ));
        }
    }
    Ok(y)
}

/// Per-probe feature standardisation with the training rows' statistics.
struct Standardiser {
    /// The training rows' mean, `[G, 1, d]`.
    mean: Tensor,
    /// The training rows' standard deviation (unbiased, at least 1e-6), `[G, 1, d]`.
    std: Tensor,
}

impl Standardiser {
    /// The statistics of float features `[G, N, d]` over their rows.
    fn fit(x: &Tensor) -> Standardiser {
        Standardiser {
            mean: x.mean_dim(1, true, Kind::Float),
            std: x.std_dim(1, false, true).clamp_min(1e-6),
        }
    }

    /// Float features `[G, N, d]` standardised: `(x − mean) / std`.
    fn apply(&self, x: &Tensor) -> Tensor {
        (x - &self.mean) / &self.std
    }
}

/// The accuracy of every probe (W `[G, d, C]`, b `[G, 1, C]`) on standardised features
/// `[G, N, d]` with labels `[G, N]`: one fraction in `0..=1` per probe (NaN without rows).
fn probe_accuracy(x: &Tensor, y: &Tensor, w: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
    let pred = (x.bmm(w) + b).argmax(-1, false);
    to_f64(
        &pred
            .eq_tensor(y)
            .to_kind(Kind::Float)
            .mean_dim(1, false, Kind::Float),
    )
}

/// Full-batch Adam on the L2-regularised mean cross-entropy. Shapes: xs `[G, N, d]`
/// standardised, y `[G, N]` i64 → (W `[G, d, C]`, b `[G, 1, C]`).
fn fit_logistic(xs: &Tensor, y: &Tensor, c: i64, opts: &FitOptions) -> (Tensor, Tensor) {
    let (g, n, d) = (xs.size()[0], xs.size()[1], xs.size()[2]);
    let device = xs.device();
    let xs_t = xs.transpose(1, 2).contiguous();
    let target = y.unsqueeze(2);
    let minus_one = Tensor::full([g, n, 1], -1.0 / n as f64, (Kind::Float, device));
    let mut w = Tensor::zeros([g, d, c], (Kind::Float, device));
    let mut b = Tensor::zeros([g, 1, c], (Kind::Float, device));
    let mut adam_w = Adam::new(&w);
    let mut adam_b = Adam::new(&b);
    for t in 1..=opts.iterations {
        // d(mean cross-entropy)/d(logits) = (softmax − one-hot) / N_train.
        let mut grad = (xs.bmm(&w) + &b).softmax(-1, Kind::Float) / n as f64;
        let _ = grad.scatter_add_(2, &target, &minus_one);
        let grad_w = xs_t.bmm(&grad) + &w * opts.l2;
        let grad_b = grad.sum_dim_intlist(1, true, Kind::Float);
        adam_w.step(&mut w, &grad_w, t, opts.lr);
        adam_b.step(&mut b, &grad_b, t, opts.lr);
    }
    (w, b)
}

/// Closed-form ridge regression to the one-hot labels: minimises
/// `‖xs·W + b − Y‖² / N + λ‖W‖²` per probe. With centred features, b is the class frequencies
/// and `W = (xsᵀxs/N + λI)⁻¹ · xsᵀY/N`; `xsᵀY` is a scatter-add of rows into their class (no
/// one-hot matrix). Shapes: xs `[G, N, d]` standardised, y `[G, N]` i64 → (W `[G, d, C]`,
/// b `[G, 1, C]`). Errors: λ ≤ 0 with a singular Gram matrix.
fn fit_ridge(xs: &Tensor, y: &Tensor, c: i64, l2: f64) -> Result<(Tensor, Tensor)> {
    let (g, n, d) = (xs.size()[0], xs.size()[1], xs.size()[2]);
    let device = xs.device();
    let gram = xs.transpose(1, 2).bmm(xs) / n as f64
        + Tensor::eye(d, (Kind::Float, device)).unsqueeze(0) * l2;
    let class_sums = Tensor::zeros([g, c, d], (Kind::Float, device)).scatter_add(
        1,
        &y.unsqueeze(2).expand([g, n, d], false),
        xs,
    ); // [G, C, d]: Σ of the rows of each class = (xsᵀY)ᵀ
    let (chol, info) = gram.linalg_cholesky_ex(false, false);
    if i64::try_from(info.max())? != 0 {
        return Err(InterpError::spec(
            "probe l2",
            l2.to_string(),
            "the features' Gram matrix is singular; use a positive l2",
        ));
    }
    let w = (class_sums.transpose(1, 2) / n as f64).cholesky_solve(&chol, false);
    let counts = Tensor::zeros([g, c], (Kind::Float, device)).scatter_add(
        1,
        y,
        &Tensor::ones([g, n], (Kind::Float, device)),
    );
    Ok((w, (counts / n as f64).unsqueeze(1)))
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
    let mut rng = ChaCha8Rng::seed_from_u64(util::seed::mix_all(seed, &[0x5072_6f62_6573]));
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
    /// Class index per sampled prompt.
    pub labels: Vec<usize>,
    /// Held-out flag per sampled prompt.
    pub held_out: Vec<bool>,
    /// Majority baseline: held-out accuracy of always predicting the most frequent training class.
    pub chance: f64,
}

impl TargetLabels {
    /// The labels of `role` (a role of the prompt sample or `answer`) with a stratified split.
    /// Errors: unknown role, or too few examples per class for any held-out example.
    pub fn new(probe: &PromptSample, role: &str, holdout: f64, seed: u64) -> Result<TargetLabels> {
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

/// Token id of `role` (or the gold answer for `answer`) per sampled prompt.
fn role_tokens(probe: &PromptSample, role: &str) -> Result<Vec<u32>> {
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

/// The paper's probe targets for the prompt sample's task: composition — each bridge entity `b_i`
/// and the last relation; comparison — `v1`, `v2` and the gold `label`; otherwise (or when none
/// of these exists) the answer.
pub fn default_probe_targets(probe: &PromptSample) -> Vec<String> {
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
                    corruption: None,
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

/// Most elements of one `[G, N_train, max(C, d)]` tensor of a batched fit (2^28 floats, 1 GiB):
/// the probes of a target are fitted in as few batches as this allows.
pub const FIT_BUDGET: usize = 1 << 28;

/// Trains and scores linear probes of `targets` (roles, or `answer`) at `positions` (names;
/// `None`: every position) and `layers` (`None`: `0..=L`) on the prompt sample's clean inputs.
/// The probes of a target at every (layer, position) share its classes and its train/held-out
/// split, and are fitted together in one batched optimisation on the model's device (split into
/// batches only beyond [`FIT_BUDGET`]).
/// Errors: unknown role/position/layer, or a target with too few examples to hold any out.
pub fn linear_probes(
    net: &Net,
    probe: &PromptSample,
    targets: &[String],
    positions: Option<&[String]>,
    layers: Option<&[usize]>,
    opts: &LinearProbeOptions,
) -> Result<LinearProbeResult> {
    check_probe_request(targets, opts)?;
    let pos_idx = position_indices(probe, positions)?;
    let layers = net.layers_or_all(layers)?;
    let labels = targets
        .iter()
        .map(|t| TargetLabels::new(probe, t, opts.holdout, opts.seed))
        .collect::<Result<Vec<_>>>()?;

    let started = Instant::now();
    let cell_features = CellFeatures::new(net, probe, &layers, &pos_idx, opts.max_rows)?;
    let mut forward_seconds = started.elapsed().as_secs_f64();
    let cell_keys: Vec<(usize, usize)> = layers
        .iter()
        .flat_map(|&l| pos_idx.iter().map(move |&p| (l, p)))
        .collect();

    let mut fit_seconds = 0.0;
    let mut cells = Vec::new();
    for t in &labels {
        let split = TargetSplit::new(t, net.device())?;
        let started = Instant::now();
        let accs = fit_target_probes(&cell_features.features, t, &split, net.d_model(), opts)?;
        fit_seconds += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let lens_acc = cell_features.lens_accuracy(t, &split.test_rows)?;
        forward_seconds += started.elapsed().as_secs_f64();
        for (i, &(layer, p)) in cell_keys.iter().enumerate() {
            cells.push(ProbeCell {
                layer,
                position: probe.positions[p].clone(),
                target: t.role.clone(),
                probe_acc: accs[i].0,
                train_acc: accs[i].1,
                lens_acc: lens_acc[i],
            });
        }
    }
    cells.sort_by_key(|c| c.layer);
    Ok(LinearProbeResult {
        targets: labels,
        cells,
        forward_seconds,
        fit_seconds,
    })
}

/// Errors unless there is a target and the held-out fraction is strictly between 0 and 1.
fn check_probe_request(targets: &[String], opts: &LinearProbeOptions) -> Result<()> {
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
    Ok(())
}

/// The indices of the named positions, first occurrence order without repeats (`None`: every
/// position of the prompt sample). Errors: an unknown position name.
fn position_indices(probe: &PromptSample, positions: Option<&[String]>) -> Result<Vec<usize>> {
    Ok(match positions {
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
    })
}

/// The probed residual states of every cell (layer-major, then position) on the prompt sample's clean
/// inputs.
struct CellFeatures {
    /// One float feature matrix `[N, d]` per cell.
    features: Vec<Tensor>,
    /// The logit lens's top-1 token of every cell and example, `[cells, N]` i64.
    top1: Tensor,
}

impl CellFeatures {
    /// The residual states before each of `layers` at each position index of `pos_idx`, from
    /// forward passes of at most `max_rows` examples.
    fn new(
        net: &Net,
        probe: &PromptSample,
        layers: &[usize],
        pos_idx: &[usize],
        max_rows: usize,
    ) -> Result<CellFeatures> {
        tch::no_grad(|| {
            let states = States::of_sample(net, probe, max_rows)?;
            let mut features = Vec::with_capacity(layers.len() * pos_idx.len());
            let mut top1 = Vec::with_capacity(layers.len() * pos_idx.len());
            for &layer in layers {
                for &p in pos_idx {
                    let x = states.resid[layer].select(1, p as i64).to_kind(Kind::Float);
                    top1.push(net.readout(&x, None).argmax(-1, false));
                    features.push(x);
                }
            }
            Ok(CellFeatures {
                features,
                top1: Tensor::stack(&top1, 0),
            })
        })
    }

    /// The logit lens's accuracy on target `t`'s held-out rows (`test_rows` `[N_test]` i64): the
    /// fraction whose top-1 token is the class's token, one per cell.
    fn lens_accuracy(&self, t: &TargetLabels, test_rows: &Tensor) -> Result<Vec<f64>> {
        tch::no_grad(|| {
            let gold: Vec<i64> = t.labels.iter().map(|&c| i64::from(t.classes[c])).collect();
            let gold = Tensor::from_slice(&gold)
                .to_device(test_rows.device())
                .index_select(0, test_rows);
            let hits = self
                .top1
                .index_select(1, test_rows)
                .eq_tensor(&gold.unsqueeze(0));
            to_f64(&hits.to_kind(Kind::Float).mean_dim(1, false, Kind::Float))
        })
    }
}

/// A target's train/held-out split as tensors on the model's device.
struct TargetSplit {
    /// Indices of the training examples, `[N_train]` i64.
    train_rows: Tensor,
    /// Indices of the held-out examples, `[N_test]` i64.
    test_rows: Tensor,
    /// Class indices of the training examples, `[N_train]` i64.
    train_y: Tensor,
    /// Class indices of the held-out examples, `[N_test]` i64.
    test_y: Tensor,
}

impl TargetSplit {
    /// The split of `t` on `device`.
    fn new(t: &TargetLabels, device: tch::Device) -> Result<TargetSplit> {
        let index = |held: bool| -> Tensor {
            let rows: Vec<i64> = (0..t.labels.len())
                .filter(|&i| t.held_out[i] == held)
                .map(|i| i as i64)
                .collect();
            Tensor::from_slice(&rows).to_device(device)
        };
        let (train_rows, test_rows) = (index(false), index(true));
        let class_of = |rows: &Tensor| -> Result<Tensor> {
            let ids: Vec<i64> = t.labels.iter().map(|&c| c as i64).collect();
            Ok(Tensor::from_slice(&ids)
                .to_device(device)
                .f_index_select(0, rows)?)
        };
        let (train_y, test_y) = (class_of(&train_rows)?, class_of(&test_rows)?);
        Ok(TargetSplit {
            train_rows,
            test_rows,
            train_y,
            test_y,
        })
    }
}

/// Fits the probes of target `t` at every cell (features `[N, d]` each, `d` the model width), in
/// batches of cells that keep within [`FIT_BUDGET`]: (held-out, training) accuracy per cell.
fn fit_target_probes(
    features: &[Tensor],
    t: &TargetLabels,
    split: &TargetSplit,
    d: i64,
    opts: &LinearProbeOptions,
) -> Result<Vec<(f64, f64)>> {
    let per_group = t.n_train() * t.classes.len().max(d as usize);
    let batch = (FIT_BUDGET / per_group.max(1)).max(1);
    let all: Vec<usize> = (0..features.len()).collect();
    let mut accs: Vec<(f64, f64)> = Vec::with_capacity(all.len());
    for group in all.chunks(batch) {
        // The group's features at `rows`: [G, rows, d].
        let stack = |rows: &Tensor| {
            Tensor::stack(
                &group
                    .iter()
                    .map(|&i| features[i].index_select(0, rows))
                    .collect::<Vec<_>>(),
                0,
            )
        };
        let fit = fit_probes(
            &stack(&split.train_rows),
            &split.train_y,
            &stack(&split.test_rows),
            &split.test_y,
            t.classes.len(),
            &opts.fit,
        )?;
        accs.extend(fit.held_out_acc.into_iter().zip(fit.train_acc));
    }
    Ok(accs)
}
