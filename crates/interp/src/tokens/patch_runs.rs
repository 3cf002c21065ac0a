//! The engine under activation and attribution patching: the cached *base* run (the one that
//! receives patched activations) and *source* run (the one they come from) of the same prompts,
//! and the batched ways of running patched variants from them. [`super::patch`] and
//! [`super::attribute`] on token batches, and the task sweeps [`crate::patch::patch_sweep`] and
//! [`crate::attribution::attribution_patching`], are thin layers over it: they build a
//! [`PatchRuns`] and say how a patched run's logits are scored.
//!
//! A patch changes nothing upstream of its hook, so every patched run starts where its target
//! does ([`Start`]): from the residual state entering the target's layer, `run_from(layer)`, with
//! the targets of one start side by side as row blocks of one forward, each with its own
//! row-restricted intervention. Targets on the residual state itself, read at one shared answer
//! position, take the suffix path: only the positions from the first patched one up to the answer
//! are recomputed, against the base run's cached keys and values of the earlier positions
//! ([`model::Gpt::run_suffix`]). Hooks before the first block (`hook_embed`, `hook_pos_embed`)
//! start from the tokens.

use super::patching::PatchTarget;
use super::AnswerPositions;
use crate::error::{InterpError, Result};
use crate::net::{LnMode, Net, Rows};
use model::{Edit, HookPoint, Intervention, KeyValues, RunOutput, RunRequest};
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use tch::{Kind, Tensor};

/// Per-row scores of patched runs (one value or one outcome per prompt), gathered chunk by chunk
/// from the empty default.
pub(crate) trait RowScores: Sized + Default {
    /// Appends the scores of more rows.
    fn extend(&mut self, other: Self);
    /// The scores of rows `start..start + len`.
    fn slice(&self, start: usize, len: usize) -> Self;
}

impl RowScores for Vec<f64> {
    fn extend(&mut self, other: Self) {
        Extend::extend(self, other);
    }

    fn slice(&self, start: usize, len: usize) -> Self {
        self[start..start + len].to_vec()
    }
}

impl RowScores for crate::stats::Outcomes {
    fn extend(&mut self, other: Self) {
        crate::stats::Outcomes::extend(self, other);
    }

    fn slice(&self, start: usize, len: usize) -> Self {
        crate::stats::Outcomes::slice(self, start, len)
    }
}

/// How the answer-position logits of `k` patched variants of a chunk are scored: logits
/// `[k · m, V]`, variant-major, → one score per row.
pub(crate) type Scorer<'a, S> = dyn Fn(&Tensor, Rows, i64) -> Result<S> + 'a;

/// Where a patched run starts: the residual state entering a layer (`L`: the final state), or
/// the tokens for hooks before the first block.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Start {
    Tokens,
    Layer(usize),
}

/// The base run's inputs, for patched runs that start from the tokens: ids `[N, T]` and the
/// noise added to their token embeddings `[N, T, d]` (noise corruptions).
pub(crate) struct BaseTokens {
    pub tokens: Tensor,
    pub noise: Option<Tensor>,
}

/// The two cached runs of a patch, seen from the patched (base) run.
pub(crate) struct PatchRuns {
    /// The base run's activations `[N, ...]`: every residual state (`Net::resid_hook(0..=L)`)
    /// and every patched hook.
    pub base: BTreeMap<HookPoint, Tensor>,
    /// The source run's activations of every patched hook, `[N, ...]`.
    pub source: BTreeMap<HookPoint, Tensor>,
    /// The base run's inputs (needed only by starts from the tokens).
    pub base_tokens: Option<BaseTokens>,
    answer: AnswerPositions,
    /// ln_f's scale of the base run's final state at the answer position `[N, 1]`, for the
    /// cached-scale readout (`None`: the model's own logits).
    pub base_scale: Option<Tensor>,
    /// Per layer `0..L` the base run's keys and values at positions before the (shared) answer
    /// position, computed on first use by the suffix path.
    base_kv: OnceCell<Vec<KeyValues>>,
}

impl PatchRuns {
    /// The runs of prompts read at `answer_pos` (per row), with the readout of `ln_mode`.
    pub(crate) fn new(
        net: &Net,
        base: BTreeMap<HookPoint, Tensor>,
        source: BTreeMap<HookPoint, Tensor>,
        answer_pos: &[i64],
        ln_mode: LnMode,
    ) -> Result<PatchRuns> {
        let answer = AnswerPositions::new(answer_pos);
        let base_scale = match ln_mode {
            LnMode::CachedScale => Some(net.ln_scale(&answer.pick(final_state(net, &base)?))),
            LnMode::Recompute => None,
        };
        Ok(PatchRuns {
            base,
            source,
            base_tokens: None,
            answer,
            base_scale,
            base_kv: OnceCell::new(),
        })
    }

    /// Number of prompts `N`.
    pub(crate) fn len(&self) -> i64 {
        self.answer.len() as i64
    }

    /// A base-run activation, or an error naming the hook that was not cached.
    fn base_activation(&self, hook: HookPoint) -> Result<&Tensor> {
        self.base.get(&hook).ok_or_else(|| missing(hook))
    }

    /// A source-run activation, or an error naming the hook that was not cached.
    fn source_activation(&self, hook: HookPoint) -> Result<&Tensor> {
        self.source.get(&hook).ok_or_else(|| missing(hook))
    }

    /// Per target the scores of every prompt with that target's activation replaced by the
    /// source run's, downstream recomputed. At most `max_rows` rows run in one forward (at least
    /// one row per target of a start). `base_scores`: the base run's own scores, what a patch
    /// that cannot change anything reports.
    pub(crate) fn patch<S: RowScores>(
        &self,
        net: &Net,
        targets: &[PatchTarget],
        max_rows: usize,
        base_scores: &S,
        score: &Scorer<S>,
    ) -> Result<Vec<S>> {
        let mut results: Vec<S> = targets.iter().map(|_| S::default()).collect();
        for ((start, on_state), group) in group_by_start(net, targets) {
            let members: Vec<&PatchTarget> = group.iter().map(|&i| &targets[i]).collect();
            let scores = match (start, on_state, self.answer.shared()) {
                (Start::Layer(layer), true, Some(ap)) => {
                    self.suffix_group(net, layer, ap, &members, max_rows, base_scores, score)?
                }
                _ => self.plain_group(net, start, &members, max_rows, score)?,
            };
            for (i, s) in group.into_iter().zip(scores) {
                results[i] = s;
            }
        }
        Ok(results)
    }

    /// As [`PatchRuns::patch`], but every target of every prompt is its own full forward of the
    /// base tokens (batch size 1): the reference for tests and benchmarks.
    pub(crate) fn patch_one_by_one<S: RowScores>(
        &self,
        net: &Net,
        targets: &[PatchTarget],
        score: &Scorer<S>,
    ) -> Result<Vec<S>> {
        targets
            .iter()
            .map(|target| {
                let mut all = S::default();
                for rows in Rows::chunks(self.len(), 1) {
                    all.extend(self.plain_chunk(net, Start::Tokens, &[target], rows, score)?);
                }
                Ok(all)
            })
            .collect()
    }

    /// The targets of one start, side by side as row blocks of one forward per chunk of prompts.
    fn plain_group<S: RowScores>(
        &self,
        net: &Net,
        start: Start,
        targets: &[&PatchTarget],
        max_rows: usize,
        score: &Scorer<S>,
    ) -> Result<Vec<S>> {
        let k = targets.len() as i64;
        let mut results: Vec<S> = targets.iter().map(|_| S::default()).collect();
        for rows in Rows::chunks(self.len(), max_rows as i64 / k.max(1)) {
            let all = self.plain_chunk(net, start, targets, rows, score)?;
            for (v, res) in results.iter_mut().enumerate() {
                res.extend(all.slice(v * rows.m as usize, rows.m as usize));
            }
        }
        Ok(results)
    }

    /// One forward of the base input of `rows` repeated once per target, target `v`'s rows
    /// patched; the scores of all `k · m` rows, variant-major.
    fn plain_chunk<S>(
        &self,
        net: &Net,
        start: Start,
        targets: &[&PatchTarget],
        rows: Rows,
        score: &Scorer<S>,
    ) -> Result<S> {
        let k = targets.len() as i64;
        let device = net.device();
        let mut req = self.patched_request(net, start, rows, k);
        let input = self.plain_input(net, start, targets, rows, &mut req)?;
        for (v, target) in targets.iter().enumerate() {
            if on_input(net, start, target) {
                continue;
            }
            let values = selected_part(&rows.of(self.source_activation(target.hook)?), target);
            let block: Vec<i64> = (v as i64 * rows.m..(v as i64 + 1) * rows.m).collect();
            req.interventions
                .push(intervention(target, values.to_device(device)).rows(block));
        }
        let out = match start {
            Start::Tokens => net.gpt.run(&input, &req)?,
            Start::Layer(layer) => net.gpt.run_from(layer, &input, &req)?,
        };
        let logits = self.patched_logits(net, out, start, &input, rows, k)?;
        score(&logits, rows, k)
    }

    /// The input of a plain chunk, repeated once per target: the base tokens (with their noise
    /// as an intervention on `hook_embed`), or the base residual state entering the start layer
    /// with the source state at the positions of targets on that state.
    fn plain_input(
        &self,
        net: &Net,
        start: Start,
        targets: &[&PatchTarget],
        rows: Rows,
        req: &mut RunRequest,
    ) -> Result<Tensor> {
        let k = targets.len() as i64;
        let Start::Layer(layer) = start else {
            let base = self
                .base_tokens
                .as_ref()
                .ok_or_else(|| InterpError::BadSpec {
                    what: "patch target",
                    value: "hook_embed".into(),
                    reason: "these runs have no tokens to start from".into(),
                })?;
            if let Some(noise) = &base.noise {
                let noise = rows.of(noise).repeat([k, 1, 1]);
                req.interventions
                    .push(Intervention::new(HookPoint::Embed, Edit::Add(noise)));
            }
            return Ok(rows.of(&base.tokens).repeat([k, 1]));
        };
        let hook = net.resid_hook(layer);
        let base = rows.of(self.base_activation(hook)?).repeat([k, 1, 1]);
        let patched: Vec<Vec<i64>> = targets
            .iter()
            .map(|t| match on_input(net, start, t) {
                true => t.positions.clone(),
                false => Vec::new(),
            })
            .collect();
        if patched.iter().all(Vec::is_empty) {
            return Ok(base);
        }
        let t = base.size()[1];
        let mask = position_mask(&patched, 0, t, net.device());
        let source = rows.of(self.source_activation(hook)?).unsqueeze(0);
        Ok(source
            .where_self(&mask, &base.view([k, rows.m, t, -1]))
            .reshape([k * rows.m, t, -1]))
    }

    /// The request of a patched run: logits at the answer positions of `rows` repeated `k`
    /// times, plus the final state when the cached-scale readout needs it.
    fn patched_request(&self, net: &Net, start: Start, rows: Rows, k: i64) -> RunRequest {
        let mut req = RunRequest {
            logit_positions: self.answer.rows(rows, k).logit_positions(),
            ..RunRequest::default()
        };
        if self.base_scale.is_some() && start != Start::Layer(net.n_layer()) {
            req.capture.insert(net.resid_hook(net.n_layer()));
        }
        req
    }

    /// The answer-position logits of a patched run `[k · m, V]`: the model's own, or ln_f with
    /// the base run's cached scale applied to the final state.
    fn patched_logits(
        &self,
        net: &Net,
        out: RunOutput,
        start: Start,
        input: &Tensor,
        rows: Rows,
        k: i64,
    ) -> Result<Tensor> {
        let Some(scale) = &self.base_scale else {
            return Ok(out.logits.squeeze_dim(1));
        };
        let final_state = match start {
            Start::Layer(layer) if layer == net.n_layer() => input,
            _ => out
                .cache
                .get(&net.resid_hook(net.n_layer()))
                .ok_or_else(|| missing(net.resid_hook(net.n_layer())))?,
        };
        let scale = rows.of(scale).repeat([k, 1]);
        Ok(net.readout(&self.answer.rows(rows, k).pick(final_state), Some(&scale)))
    }

    /// The targets on the residual state entering `layer`, read at the shared answer position
    /// `ap`, computing only what a patch can change. A patch at positions `S` changes nothing
    /// before `min S` (causal attention), so the layers from `layer` on run only on positions
    /// `min S..=ap` against the base run's cached keys and values of the earlier positions, and
    /// the last layer only on the answer row ([`model::Gpt::run_suffix`]). Positions whose source
    /// and base states are equal in every prompt of the chunk, positions after the answer, and
    /// at `layer = L` positions other than the answer cannot change the prediction and are left
    /// out; a target left with none has the base run's scores. Targets with the same first
    /// position share one forward.
    #[allow(clippy::too_many_arguments)]
    fn suffix_group<S: RowScores>(
        &self,
        net: &Net,
        layer: usize,
        ap: i64,
        targets: &[&PatchTarget],
        max_rows: usize,
        base_scores: &S,
        score: &Scorer<S>,
    ) -> Result<Vec<S>> {
        let mut results: Vec<S> = targets.iter().map(|_| S::default()).collect();
        let chunk = (max_rows / targets.len().max(1)) as i64;
        for rows in Rows::chunks(self.len(), chunk) {
            let sc = SuffixChunk::new(self, net, layer, ap, rows)?;
            let differs = sc.changed_positions()?;
            // Targets by their first patched position: (target, patched positions).
            let mut by_first: BTreeMap<i64, Vec<(usize, Vec<i64>)>> = BTreeMap::new();
            for (v, target) in targets.iter().enumerate() {
                let patched = sc.effective_positions(target, &differs, net.n_layer());
                match patched.first() {
                    Some(&first) => by_first.entry(first).or_default().push((v, patched)),
                    None => {
                        results[v].extend(base_scores.slice(rows.start as usize, rows.m as usize))
                    }
                }
            }
            for (first, group) in by_first {
                let all = sc.run_variants(self, net, first, &group, score)?;
                for (g, (v, _)) in group.into_iter().enumerate() {
                    results[v].extend(all.slice(g * rows.m as usize, rows.m as usize));
                }
            }
        }
        Ok(results)
    }

    /// The first-order effect of patching each of `hooks` for the prompts of `rows`:
    /// `∂M/∂a · (a_source − a_base)` per element (f64, of the activation's shape `[m, ...]`), where
    /// `M` is `metric` of the base run's answer-position logits `[m, V]` (a scalar), from one
    /// forward with gradients from the base run's `resid_pre[0]` and one backward pass; `None`
    /// where `M` does not depend on the hook. `hook_embed` and `hook_pos_embed` share
    /// `resid_pre[0]`'s gradient (it is their sum).
    pub(crate) fn gradient_products(
        &self,
        net: &Net,
        hooks: &[HookPoint],
        rows: Rows,
        metric: &dyn Fn(&Tensor, Rows) -> Result<Tensor>,
    ) -> Result<Vec<Option<Tensor>>> {
        let (order, grads) = self.input_gradients(net, hooks, rows, metric)?;
        tch::no_grad(|| {
            hooks
                .iter()
                .map(|&hook| {
                    let key = if at_input(hook) {
                        HookPoint::ResidPre(0)
                    } else {
                        hook
                    };
                    let Some(grad) = order
                        .iter()
                        .position(|h| *h == key)
                        .map(|i| &grads[i])
                        .filter(|g| g.defined())
                    else {
                        return Ok(None);
                    };
                    let delta = rows.of(self.source_activation(hook)?)
                        - rows.of(self.base_activation(hook)?);
                    Ok(Some(
                        grad.to_kind(Kind::Double) * delta.to_kind(Kind::Double),
                    ))
                })
                .collect()
        })
    }

    /// The gradients of `metric` for the prompts of `rows` with respect to the base run's
    /// `resid_pre[0]` and the activations of `hooks` after it, from one forward from
    /// `resid_pre[0]` with gradients and one backward pass: the hooks in the order of the
    /// gradients (`resid_pre[0]` first), and the gradients (undefined where `metric` does not
    /// depend on the activation).
    fn input_gradients(
        &self,
        net: &Net,
        hooks: &[HookPoint],
        rows: Rows,
        metric: &dyn Fn(&Tensor, Rows) -> Result<Tensor>,
    ) -> Result<(Vec<HookPoint>, Vec<Tensor>)> {
        let input = rows
            .of(self.base_activation(HookPoint::ResidPre(0))?)
            .detach()
            .to_kind(Kind::Float)
            .set_requires_grad(true);
        let captured: BTreeSet<HookPoint> =
            hooks.iter().copied().filter(|h| !at_input(*h)).collect();
        let mut req = RunRequest::capture(captured.iter().copied());
        req.logit_positions = self.answer.rows(rows, 1).logit_positions();
        if self.base_scale.is_some() {
            req.capture.insert(net.resid_hook(net.n_layer()));
        }
        tch::with_grad(|| {
            let out = net.gpt.run_from(0, &input, &req)?;
            let logits = self.gradient_logits(net, &out, rows)?;
            let total = metric(&logits, rows)?;
            let mut inputs = vec![input.shallow_clone()];
            let mut order = vec![HookPoint::ResidPre(0)];
            for h in &captured {
                if let Some(t) = out.cache.get(h) {
                    inputs.push(t.shallow_clone());
                    order.push(*h);
                }
            }
            let grads = Tensor::f_run_backward(&[total], &inputs, false, false)?;
            Ok((order, grads))
        })
    }

    /// The answer-position logits `[m, V]` of a run with gradients: the run's own, or with the
    /// base run's cached final scale (detached) the readout of the run's final state.
    fn gradient_logits(&self, net: &Net, out: &RunOutput, rows: Rows) -> Result<Tensor> {
        let Some(scale) = &self.base_scale else {
            return Ok(out.logits.squeeze_dim(1));
        };
        let fin = final_state(net, &out.cache)?;
        Ok(net.readout(
            &self.answer.rows(rows, 1).pick(fin),
            Some(&rows.of(scale).detach()),
        ))
    }

    /// The base run's keys and values of every layer at positions `0..ap`.
    fn base_kv(&self, net: &Net, ap: i64) -> Result<&[KeyValues]> {
        if let Some(kv) = self.base_kv.get() {
            return Ok(kv);
        }
        let kv = (0..net.n_layer())
            .map(|l| {
                let resid = self.base_activation(net.resid_hook(l))?;
                Ok(net.gpt.key_values(l, &resid.narrow(1, 0, ap))?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.base_kv.get_or_init(|| kv))
    }
}

/// One chunk of prompts of a suffix group at the residual state entering `layer`, with the
/// states of positions `0..=ap`.
struct SuffixChunk {
    layer: usize,
    ap: i64,
    rows: Rows,
    /// The base run's states `[m, ap + 1, d]`.
    base_resid: Tensor,
    /// The source run's states `[m, ap + 1, d]`.
    src_resid: Tensor,
}

impl SuffixChunk {
    fn new(runs: &PatchRuns, net: &Net, layer: usize, ap: i64, rows: Rows) -> Result<SuffixChunk> {
        let hook = net.resid_hook(layer);
        let states = |t: &Tensor| rows.of(t).narrow(1, 0, ap + 1);
        Ok(SuffixChunk {
            layer,
            ap,
            rows,
            base_resid: states(runs.base_activation(hook)?),
            src_resid: states(runs.source_activation(hook)?),
        })
    }

    /// Per position `0..=ap`: 1 where the source and base states differ in some prompt of the
    /// chunk, else 0.
    fn changed_positions(&self) -> Result<Vec<i64>> {
        crate::stats::to_i64(
            &self
                .src_resid
                .ne_tensor(&self.base_resid)
                .any_dim(2, false)
                .any_dim(0, false)
                .to_kind(Kind::Int64),
        )
    }

    /// The positions of a target whose patch can change the prediction, in order: up to the
    /// answer, with states that differ (`differs`), and at the last layer (`n_layer`) the answer
    /// only.
    fn effective_positions(
        &self,
        target: &PatchTarget,
        differs: &[i64],
        n_layer: usize,
    ) -> Vec<i64> {
        target
            .positions
            .iter()
            .copied()
            .filter(|&p| {
                (0..=self.ap).contains(&p)
                    && differs[p as usize] != 0
                    && (self.layer < n_layer || p == self.ap)
            })
            .collect()
    }

    /// The scores of the `k` targets of `group` (target, patched positions), which share their
    /// first patched position `first`: one suffix forward of `k · m` rows, variant-major.
    fn run_variants<S>(
        &self,
        runs: &PatchRuns,
        net: &Net,
        first: i64,
        group: &[(usize, Vec<i64>)],
        score: &Scorer<S>,
    ) -> Result<S> {
        let (rows, k) = (self.rows, group.len() as i64);
        let len = self.ap + 1 - first;
        let patched: Vec<Vec<i64>> = group.iter().map(|(_, p)| p.clone()).collect();
        let mask = position_mask(&patched, first, len, net.device());
        let narrow = |t: &Tensor| t.narrow(1, first, len).unsqueeze(0);
        let suffix = narrow(&self.src_resid)
            .where_self(&mask, &narrow(&self.base_resid))
            .reshape([k * rows.m, len, -1]);
        let prefix: Vec<KeyValues> = runs.base_kv(net, self.ap)?[self.layer..]
            .iter()
            .map(|kv| kv.map(|t| rows.of(t).narrow(2, 0, first).repeat([k, 1, 1, 1])))
            .collect();
        let last = net.gpt.run_suffix(self.layer, &suffix, &prefix)?;
        let scale = runs.base_scale.as_ref().map(|s| rows.of(s).repeat([k, 1]));
        score(&net.readout(&last, scale.as_ref()), rows, k)
    }
}

/// The targets grouped by where their patched run starts and whether they patch the residual
/// state there (indices into `targets`, in order).
fn group_by_start(net: &Net, targets: &[PatchTarget]) -> BTreeMap<(Start, bool), Vec<usize>> {
    let mut groups: BTreeMap<(Start, bool), Vec<usize>> = BTreeMap::new();
    for (i, target) in targets.iter().enumerate() {
        let start = start_of(net, target.hook);
        groups
            .entry((start, on_input(net, start, target)))
            .or_default()
            .push(i);
    }
    groups
}

/// Where the patched run of a hook starts: the residual state it is (`resid_pre[l]`, the final
/// `resid_post`), the layer it belongs to, or the tokens.
pub(crate) fn start_of(net: &Net, hook: HookPoint) -> Start {
    let l = net.n_layer();
    if hook == net.resid_hook(l) {
        return Start::Layer(l);
    }
    match hook.layer() {
        Some(layer) => Start::Layer(layer),
        None if hook == HookPoint::LnFinalScale => Start::Layer(l),
        None => Start::Tokens,
    }
}

/// True when a target patches the residual state its run starts from (patched in the input).
fn on_input(net: &Net, start: Start, target: &PatchTarget) -> bool {
    matches!(start, Start::Layer(layer) if target.hook == net.resid_hook(layer))
}

/// True for the hooks whose gradient is the one of the run's input `resid_pre[0]`.
fn at_input(hook: HookPoint) -> bool {
    matches!(
        hook,
        HookPoint::ResidPre(0) | HookPoint::Embed | HookPoint::PosEmbed
    )
}

/// `[k, 1, len, 1]` bool: per variant true at its positions `first..first + len`.
fn position_mask(patched: &[Vec<i64>], first: i64, len: i64, device: tch::Device) -> Tensor {
    let k = patched.len() as i64;
    let mut mask = vec![false; (k * len) as usize];
    for (v, positions) in patched.iter().enumerate() {
        for &p in positions {
            if (first..first + len).contains(&p) {
                mask[(v as i64 * len + p - first) as usize] = true;
            }
        }
    }
    Tensor::from_slice(&mask)
        .view([k, 1, len, 1])
        .to_device(device)
}

/// The final residual state in a cache.
fn final_state<'c>(net: &Net, cache: &'c BTreeMap<HookPoint, Tensor>) -> Result<&'c Tensor> {
    let hook = net.resid_hook(net.n_layer());
    cache.get(&hook).ok_or_else(|| missing(hook))
}

fn missing(hook: HookPoint) -> InterpError {
    InterpError::BadSpec {
        what: "hook",
        value: hook.to_string(),
        reason: "the run did not keep a requested activation".into(),
    }
}

/// The part of a source activation a target replaces, in the axis order of
/// [`model::Intervention`]: `[B, P, ...]`, `[B, P, 1, ...]` for one head of a per-head hook,
/// `[B, 1, P, T_k]` for one head of attn_scores/pattern.
pub(crate) fn selected_part(activation: &Tensor, target: &PatchTarget) -> Tensor {
    let pos = Tensor::from_slice(&target.positions).to_device(activation.device());
    let pattern = matches!(
        target.hook,
        HookPoint::AttnScores(_) | HookPoint::Pattern(_)
    );
    let (pos_axis, head_axis) = if pattern { (2, 1) } else { (1, 2) };
    let part = activation.index_select(pos_axis, &pos);
    match target.head {
        Some(h) if target.hook.is_per_head() => part.narrow(head_axis, h, 1),
        _ => part,
    }
}

/// The replacement of a target's activation by `values`.
pub(crate) fn intervention(target: &PatchTarget, values: Tensor) -> Intervention {
    let iv =
        Intervention::new(target.hook, Edit::Replace(values)).positions(target.positions.clone());
    match target.head {
        Some(h) if target.hook.is_per_head() => iv.heads(vec![h]),
        _ => iv,
    }
}

/// `hooks` plus every residual state: what the runs of patches of `hooks` must keep.
pub(crate) fn cached_hooks(
    net: &Net,
    hooks: impl IntoIterator<Item = HookPoint>,
) -> BTreeSet<HookPoint> {
    let mut all: BTreeSet<HookPoint> = (0..=net.n_layer()).map(|l| net.resid_hook(l)).collect();
    all.extend(hooks);
    all
}
