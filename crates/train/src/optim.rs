//! AdamW written out on tensors, so that its whole state (first and second moments and the step
//! count) can be saved with a checkpoint and restored exactly.
//!
//! The update is `torch.optim.AdamW`'s (decoupled weight decay), for each parameter p with
//! gradient g at update number t (1-based):
//! ```text
//! p ← p · (1 − lr · wd)                  (decayed parameters only)
//! m ← β1 · m + (1 − β1) · g
//! v ← β2 · v + (1 − β2) · g²
//! p ← p − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
//! ```

use crate::error::{Result, TrainError};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// AdamW hyper-parameters other than the learning rate, which is given at every step.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay applied to the decayed parameters (units: fraction of lr per step).
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// One optimised parameter: a view of the flat parameter buffer at `offset`.
struct Slot {
    name: String,
    param: Tensor,
    decay: bool,
    offset: i64,
    numel: i64,
}

/// AdamW over a fixed, name-sorted list of parameters.
///
/// The parameters are re-homed into one flat buffer (decayed ones first), each variable becoming
/// a view of it, and the moments are flat buffers of the same layout: an update is a handful of
/// whole-buffer ops instead of a handful per parameter. Each gradient is re-homed the same way
/// into a flat gradient buffer the first time it exists; autograd then accumulates into it in
/// place, so zeroing, the norm, clipping and the update read one buffer with no copies.
pub struct AdamW {
    hp: AdamWParams,
    slots: Vec<Slot>,
    /// All parameters `[P]`, decayed ones in `0..n_decayed`.
    flat: Tensor,
    n_decayed: i64,
    /// First and second moments `[P]`, laid out like `flat`.
    m: Tensor,
    v: Tensor,
    /// Gradients `[P]`, laid out like `flat`; zero where a parameter has no gradient.
    grad: Tensor,
    /// Per slot: it has a gradient, held in `grad` (after `backward`, autograd's `.grad` of the
    /// parameter is a view of it; after [`AdamW::set_grads`] the buffer alone holds it).
    homed: Vec<bool>,
    step: u64,
}

impl AdamW {
    /// Optimises `params` (name → variable, e.g. `VarStore::variables()`); `decay(name)` says
    /// which ones get weight decay. Moments start at zero. The variables' data is moved into the
    /// optimiser's flat buffer (same values; every holder of the variable sees the move).
    pub fn new(
        params: impl IntoIterator<Item = (String, Tensor)>,
        decay: impl Fn(&str) -> bool,
        hp: AdamWParams,
    ) -> AdamW {
        let sorted: BTreeMap<String, Tensor> = params.into_iter().collect();
        let mut slots: Vec<Slot> = sorted
            .into_iter()
            .map(|(name, param)| Slot {
                decay: decay(&name),
                numel: param.numel() as i64,
                offset: 0,
                name,
                param,
            })
            .collect();
        slots.sort_by_key(|s| !s.decay);
        let mut offset = 0;
        for slot in &mut slots {
            slot.offset = offset;
            offset += slot.numel;
        }
        let n_decayed = slots.iter().filter(|s| s.decay).map(|s| s.numel).sum();
        let (kind, device) = slots.first().map_or((Kind::Float, tch::Device::Cpu), |s| {
            (s.param.kind(), s.param.device())
        });
        let flat = Tensor::zeros([offset], (kind, device));
        tch::no_grad(|| {
            for slot in &mut slots {
                let mut view = Self::view_of(&flat, slot);
                view.copy_(&slot.param);
                slot.param.set_data(&view);
            }
        });
        AdamW {
            hp,
            m: flat.zeros_like(),
            v: flat.zeros_like(),
            grad: flat.zeros_like(),
            homed: vec![false; slots.len()],
            flat,
            n_decayed,
            slots,
            step: 0,
        }
    }

    /// The part of a flat buffer that belongs to `slot`, shaped like its parameter.
    fn view_of(buffer: &Tensor, slot: &Slot) -> Tensor {
        buffer
            .narrow(0, slot.offset, slot.numel)
            .view(slot.param.size().as_slice())
    }

    /// Number of updates applied so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Names of the parameters that receive weight decay, sorted.
    pub fn decayed_names(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|s| s.decay)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Sets every gradient to zero (gradients that do not exist yet stay undefined).
    pub fn zero_grad(&mut self) {
        self.home_grads();
        let _ = self.grad.zero_();
    }

    /// Moves every gradient that exists and is not yet a view of the flat gradient buffer into it
    /// (same values; the parameter's gradient becomes the view). Returns true when at least one
    /// parameter has a gradient.
    fn home_grads(&mut self) -> bool {
        tch::no_grad(|| {
            for (slot, homed) in self.slots.iter().zip(self.homed.iter_mut()) {
                if *homed {
                    continue;
                }
                let mut grad = slot.param.grad();
                if grad.defined() {
                    let mut view = Self::view_of(&self.grad, slot);
                    view.copy_(&grad);
                    grad.set_data(&view);
                    *homed = true;
                }
            }
        });
        self.homed.iter().any(|&h| h)
    }

    /// The optimised parameters in the order [`AdamW::set_grads`] expects (handles to the same
    /// variables).
    pub fn params(&self) -> Vec<Tensor> {
        self.slots.iter().map(|s| s.param.shallow_clone()).collect()
    }

    /// Sets the gradients to the sum, in shard order, of `shards[s][i]`: shard `s`'s gradient of
    /// parameter `i` of [`AdamW::params`] (undefined: the shard does not reach it). A parameter no
    /// shard reaches keeps the gradient it had (none, or zero after [`AdamW::zero_grad`]).
    pub fn set_grads(&mut self, shards: &[Vec<Tensor>]) -> Result<()> {
        if let Some(bad) = shards.iter().find(|g| g.len() != self.slots.len()) {
            return Err(TrainError::Config(format!(
                "{} gradients for {} parameters",
                bad.len(),
                self.slots.len()
            )));
        }
        tch::no_grad(|| {
            for (i, slot) in self.slots.iter().enumerate() {
                let mut parts = shards.iter().map(|g| &g[i]).filter(|g| g.defined());
                let Some(first) = parts.next() else {
                    continue;
                };
                let mut view = Self::view_of(&self.grad, slot);
                if first.size() != view.size() {
                    return Err(TrainError::Config(format!(
                        "gradient of {} has shape {:?}, the parameter {:?}",
                        slot.name,
                        first.size(),
                        view.size()
                    )));
                }
                view.f_copy_(first)?;
                for part in parts {
                    let _ = view.f_add_(part)?;
                }
                self.homed[i] = true;
            }
            Ok(())
        })
    }

    /// Global L2 norm of all gradients, a 0-dim f32 tensor on the parameters' device (no host
    /// synchronisation). Missing gradients count as zero.
    pub fn grad_norm(&mut self) -> Tensor {
        self.home_grads();
        self.grad
            .to_kind(Kind::Float)
            .square()
            .sum(Kind::Float)
            .sqrt()
    }

    /// Scales all gradients so that their global norm is at most `max_norm`, the way
    /// `torch.nn.utils.clip_grad_norm_` does (factor `min(1, max_norm / (norm + 1e-6))`, applied
    /// on the device). Returns the norm before clipping (0-dim tensor).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Tensor {
        let norm = self.grad_norm();
        let factor = (max_norm / (&norm + 1e-6)).clamp_max(1.0);
        tch::no_grad(|| {
            let _ = self.grad.g_mul_(&factor.to_kind(self.grad.kind()));
        });
        norm
    }

    /// Applies one AdamW update with learning rate `lr` from the current gradients. A parameter
    /// without a gradient is left untouched (its moments too), as in PyTorch.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        if !self.home_grads() {
            return;
        }
        let grad = &self.grad;
        let t = self.step as f64;
        let AdamWParams {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.hp;
        let step_size = lr / (1.0 - beta1.powf(t));
        let bias2_sqrt = (1.0 - beta2.powf(t)).sqrt();
        let missing: Vec<&Slot> = self
            .slots
            .iter()
            .zip(&self.homed)
            .filter(|(_, &homed)| !homed)
            .map(|(s, _)| s)
            .collect();
        tch::no_grad(|| {
            let frozen: Vec<[Tensor; 3]> = missing
                .iter()
                .map(|s| [&self.flat, &self.m, &self.v].map(|b| Self::view_of(b, s).copy()))
                .collect();
            if weight_decay != 0.0 {
                let _ = self
                    .flat
                    .narrow(0, 0, self.n_decayed)
                    .g_mul_scalar_(1.0 - lr * weight_decay);
            }
            let _ = self.m.lerp_(grad, 1.0 - beta1);
            let _ = self.v.g_mul_scalar_(beta2);
            let _ = self.v.addcmul_(&(grad * (1.0 - beta2)), grad);
            let mut denom = self.v.sqrt();
            let _ = denom.g_div_scalar_(bias2_sqrt).g_add_scalar_(eps);
            let _ = self.flat.addcdiv_(&(&self.m * -step_size), &denom);
            for (s, saved) in missing.iter().zip(frozen) {
                for (buffer, value) in [&self.flat, &self.m, &self.v].into_iter().zip(saved) {
                    Self::view_of(buffer, s).copy_(&value);
                }
            }
        });
    }

    /// L2 norm of the decayed parameters (a 0-dim f32 tensor): the progress measure that weight
    /// decay shrinks. Per-component norms come from [`AdamW::decayed_sq_norms`].
    pub fn weight_norm(&self) -> Tensor {
        let squares: Vec<Tensor> = self
            .slots
            .iter()
            .filter(|s| s.decay)
            .map(|s| s.param.to_kind(Kind::Float).square().sum(Kind::Float))
            .collect();
        match squares.first() {
            None => Tensor::zeros([], (Kind::Float, self.flat.device())),
            Some(_) => Tensor::stack(&squares, 0).sum(Kind::Float).sqrt(),
        }
    }

    /// Squared L2 norm of each decayed parameter, by name (0-dim f32 tensors).
    pub fn decayed_sq_norms(&self) -> Vec<(&str, Tensor)> {
        self.slots
            .iter()
            .filter(|s| s.decay)
            .map(|s| {
                (
                    s.name.as_str(),
                    s.param.to_kind(Kind::Float).square().sum(Kind::Float),
                )
            })
            .collect()
    }

    /// The moments as named tensors, `m.<param>` and `v.<param>`, for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for slot in &self.slots {
            for (key, buffer) in [("m", &self.m), ("v", &self.v)] {
                out.push((format!("{key}.{}", slot.name), Self::view_of(buffer, slot)));
            }
        }
        out.sort_by(|a, b| (&a.0[2..], &a.0[..1]).cmp(&(&b.0[2..], &b.0[..1])));
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`] and the update count. Every moment must
    /// be present with its parameter's shape; extra tensors are an error.
    pub fn load_state(&mut self, tensors: Vec<(String, Tensor)>, step: u64) -> Result<()> {
        let mut by_name: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        for slot in &self.slots {
            for (key, buffer) in [("m", &self.m), ("v", &self.v)] {
                let mut dst = Self::view_of(buffer, slot);
                let name = format!("{key}.{}", slot.name);
                let src = by_name.remove(&name).ok_or_else(|| {
                    TrainError::Checkpoint(format!("optimizer state lacks tensor {name}"))
                })?;
                if src.size() != dst.size() {
                    return Err(TrainError::Checkpoint(format!(
                        "optimizer tensor {name} has shape {:?}, the parameter has {:?}",
                        src.size(),
                        dst.size()
                    )));
                }
                tch::no_grad(|| dst.f_copy_(&src))?;
            }
        }
        if let Some(extra) = by_name.keys().next() {
            return Err(TrainError::Checkpoint(format!(
                "optimizer state has tensor {extra} for no parameter of this model"
            )));
        }
        self.step = step;
        Ok(())
    }
}
