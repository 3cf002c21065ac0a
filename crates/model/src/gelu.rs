//! `gelu_new`, GPT-2's tanh-approximation GELU: `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
//!
//! On CPU `f32` tensors one pass computes the value and, when autograd needs it, the derivative;
//! libtorch's kernel evaluates `tanh` at scalar speed and its backward evaluates it again
//! (measurements in docs/training.md). It uses `0.5 (1 + tanh(u)) = σ(2u)`, so the value is
//! `x σ(z)` with `z = 2u`, and the derivative `σ(z) + x σ(z) (1 − σ(z)) z'` with
//! `z' = 2√(2/π) (1 + 3 · 0.044715 x²)`. Autograd sees `offset + x · slope`
//! (`offset = value − x · slope`, both detached), whose gradient with respect to `x` is exactly
//! `slope`; its value equals the GELU up to one rounding of that sum.
//! Other devices and dtypes use libtorch's `gelu(approximate = "tanh")`.

use tch::{Device, Kind, Tensor};

/// `gelu_new(x)` elementwise; any shape. Differentiable (first order) with respect to `x`.
pub(crate) fn gelu_new(x: &Tensor) -> Tensor {
    if !uses_host_kernel(x.device(), x.kind()) {
        return x.gelu("tanh");
    }
    let x = x.contiguous();
    let input = cpu_f32(&x);
    if !x.requires_grad() {
        let mut value = Tensor::empty(x.size(), (Kind::Float, Device::Cpu));
        fill_value(input, cpu_f32_mut(&mut value));
        return value;
    }
    let mut slope = Tensor::empty(x.size(), (Kind::Float, Device::Cpu));
    let mut offset = Tensor::empty(x.size(), (Kind::Float, Device::Cpu));
    fill_slope_offset(input, cpu_f32_mut(&mut slope), cpu_f32_mut(&mut offset));
    offset.addcmul(&x, &slope)
}

/// Whether this module's kernel (which reads the tensor's host memory through `data_ptr`) computes
/// the GELU of a tensor on `device` of `kind`: CPU `f32` only; CUDA, bf16 and f64 go to libtorch.
fn uses_host_kernel(device: Device, kind: Kind) -> bool {
    device == Device::Cpu && kind == Kind::Float
}

/// The elements of a contiguous CPU `f32` tensor.
fn cpu_f32(t: &Tensor) -> &[f32] {
    debug_assert!(t.is_contiguous() && t.kind() == Kind::Float && t.device() == Device::Cpu);
    let n = t.numel();
    if n == 0 {
        return &[];
    }
    // SAFETY: `t` is a contiguous CPU f32 tensor with `n` elements, alive for the borrow.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) }
}

/// The elements of a contiguous CPU `f32` tensor this module just allocated (no other view of
/// its storage exists while the slice lives).
fn cpu_f32_mut(t: &mut Tensor) -> &mut [f32] {
    debug_assert!(t.is_contiguous() && t.kind() == Kind::Float && t.device() == Device::Cpu);
    let n = t.numel();
    if n == 0 {
        return &mut [];
    }
    // SAFETY: as in `cpu_f32`, and the storage is fresh, so nothing else reads or writes it.
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) }
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const CUBIC: f32 = 0.044_715;

/// `e^t` for `t` clamped to `[-87, 87]` (normal results), relative error ≈ 1e-7: `t = n ln 2 + r`
/// with `|r| ≤ ln2 / 2`, `e^r` by its degree-7 Taylor polynomial, `2^n` built in the exponent bits.
/// Branch-free so that loops over it vectorise.
/// `a b + c`, fused (one rounding) where `FMA`; unfused otherwise (software `fma` would be slow).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn exp<const FMA: bool>(t: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that `n · LN2_HI` is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 · 2^23 rounds to an integer, which lands in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let t = if t < -87.0 { -87.0 } else { t };
    let t = if t > 87.0 { 87.0 } else { t };
    let shifted = madd::<FMA>(t, LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = madd::<FMA>(-n, LN2_LO, madd::<FMA>(-n, LN2_HI, t));
    let p = [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        1.0 / 2.0,
        1.0,
        1.0,
    ]
    .into_iter()
    .fold(1.0 / 5040.0, |acc, coefficient| {
        madd::<FMA>(acc, r, coefficient)
    });
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// `(σ(z), σ(z) (1 − σ(z)), z')` at `x`, where `z = 2√(2/π) (x + 0.044715 x³)`; `1 − σ(z)` is
/// taken as `e^−z σ(z)`, which keeps its precision where `σ(z)` rounds to 1.
#[inline(always)]
fn gate<const FMA: bool>(x: f32) -> (f32, f32, f32) {
    const A: f32 = 2.0 * SQRT_2_OVER_PI;
    let x2 = x * x;
    let z = A * x * madd::<FMA>(CUBIC, x2, 1.0);
    let e = exp::<FMA>(-z);
    let sigma = 1.0 / (1.0 + e);
    let dz = madd::<FMA>(A * 3.0 * CUBIC, x2, A);
    (sigma, e * sigma * sigma, dz)
}

#[inline(always)]
fn gelu_value<const FMA: bool>(x: f32) -> f32 {
    x * gate::<FMA>(x).0
}

/// `(gelu_new'(x), gelu_new(x) − x gelu_new'(x))`.
#[inline(always)]
fn gelu_slope_offset<const FMA: bool>(x: f32) -> (f32, f32) {
    let (sigma, sigma_prime, dz) = gate::<FMA>(x);
    let slope = madd::<FMA>(x * sigma_prime, dz, sigma);
    (slope, x * sigma - x * slope)
}

/// Elements per block: blocks are unrolled so that several vectors are in flight at once (one
/// vector's chain of dependent steps would leave the floating-point units idle).
const BLOCK: usize = 32;

#[inline(always)]
fn fill_value_with<const FMA: bool>(input: &[f32], value: &mut [f32]) {
    let mut xs = input.chunks_exact(BLOCK);
    let mut ys = value.chunks_exact_mut(BLOCK);
    for (x, y) in (&mut xs).zip(&mut ys) {
        for i in 0..BLOCK {
            y[i] = gelu_value::<FMA>(x[i]);
        }
    }
    for (y, &x) in ys.into_remainder().iter_mut().zip(xs.remainder()) {
        *y = gelu_value::<FMA>(x);
    }
}

#[inline(always)]
fn fill_slope_offset_with<const FMA: bool>(input: &[f32], slope: &mut [f32], offset: &mut [f32]) {
    let mut xs = input.chunks_exact(BLOCK);
    let mut ds = slope.chunks_exact_mut(BLOCK);
    let mut cs = offset.chunks_exact_mut(BLOCK);
    for ((x, d), c) in (&mut xs).zip(&mut ds).zip(&mut cs) {
        for i in 0..BLOCK {
            (d[i], c[i]) = gelu_slope_offset::<FMA>(x[i]);
        }
    }
    let tail = ds.into_remainder().iter_mut().zip(cs.into_remainder());
    for ((d, c), &x) in tail.zip(xs.remainder()) {
        (*d, *c) = gelu_slope_offset::<FMA>(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_value_avx2(input: &[f32], value: &mut [f32]) {
    fill_value_with::<true>(input, value)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_slope_offset_avx2(input: &[f32], slope: &mut [f32], offset: &mut [f32]) {
    fill_slope_offset_with::<true>(input, slope, offset)
}

/// Whether this CPU runs the AVX2 + FMA kernels (checked once; cached by std).
fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `value[i] = gelu_new(input[i])`.
fn fill_value(input: &[f32], value: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        return unsafe { fill_value_avx2(input, value) };
    }
    fill_value_with::<false>(input, value)
}

/// `slope[i] = gelu_new'(input[i])`, `offset[i] = gelu_new(input[i]) − input[i] · slope[i]`.
fn fill_slope_offset(input: &[f32], slope: &mut [f32], offset: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        return unsafe { fill_slope_offset_avx2(input, slope, offset) };
    }
    fill_slope_offset_with::<false>(input, slope, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Tensor {
        tch::manual_seed(0);
        Tensor::cat(
            &[
                Tensor::linspace(-12.0, 12.0, 240_001, (Kind::Float, Device::Cpu)),
                Tensor::randn([4096], (Kind::Float, Device::Cpu)) * 3.0,
                Tensor::from_slice(&[0.0f32, -0.0, 1e-30, -1e-30, 40.0, -40.0, 1e4, -1e4]),
            ],
            0,
        )
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a.to_kind(Kind::Double) - b).abs().max().double_value(&[])
    }

    /// `|ours − truth| ≤ tol · max(1, |truth|)` everywhere, `truth` in f64.
    fn assert_close(ours: &Tensor, truth: &Tensor, tol: f64, what: &str) {
        let excess = ((ours.to_kind(Kind::Double) - truth).abs()
            - truth.abs().clamp_min(1.0) * tol)
            .max()
            .double_value(&[]);
        assert!(
            excess <= 0.0,
            "{what}: max error {}",
            max_abs_diff(ours, truth)
        );
    }

    #[test]
    fn value_matches_the_f64_reference_with_and_without_grad() {
        let x = inputs();
        let truth = x.to_kind(Kind::Double).gelu("tanh");
        assert_close(&tch::no_grad(|| gelu_new(&x)), &truth, 2.5e-7, "value");
        let with_grad = gelu_new(&x.set_requires_grad(true)).detach();
        assert_close(&with_grad, &truth, 2.5e-7, "value with grad");
    }

    /// The f64 derivative is libtorch's `gelu_backward` in f64; libtorch's f32 backward is off by
    /// up to 1e-6 on the same inputs (it forms `1 − tanh²` near 1), this pass by 2.2e-7.
    #[test]
    fn gradient_matches_the_f64_derivative() {
        let x = inputs().requires_grad_(true);
        let y = gelu_new(&x);
        let upstream = Tensor::randn(x.size(), (Kind::Float, Device::Cpu));
        let grad_of =
            |output: Tensor| Tensor::run_backward(&[output], &[&x], true, false).remove(0);
        let ones = grad_of(y.sum(Kind::Float));
        let random = grad_of((&y * &upstream).sum(Kind::Float));
        let x64 = x.detach().to_kind(Kind::Double);
        let slope = x64.gelu_backward(&Tensor::ones_like(&x64), "tanh");
        assert_close(&ones, &slope, 5e-7, "slope");
        let expected = slope * upstream.to_kind(Kind::Double);
        assert_close(&random, &expected, 1e-6, "upstream × slope");
    }

    #[test]
    fn the_host_kernel_is_chosen_for_cpu_f32_only() {
        assert!(uses_host_kernel(Device::Cpu, Kind::Float));
        for (device, kind) in [
            (Device::Cuda(0), Kind::Float),
            (Device::Cuda(0), Kind::BFloat16),
            (Device::Cpu, Kind::BFloat16),
            (Device::Cpu, Kind::Double),
        ] {
            assert!(!uses_host_kernel(device, kind), "{device:?} {kind:?}");
        }
        let x = Tensor::randn([64], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        assert_eq!(gelu_new(&x).kind(), Kind::BFloat16);
        assert_eq!(max_abs_diff(&gelu_new(&x), &x.gelu("tanh")), 0.0);
    }

    #[test]
    fn non_contiguous_and_other_dtypes_and_empty_inputs() {
        let x = Tensor::randn([64, 32], (Kind::Float, Device::Cpu)).transpose(0, 1);
        assert!(max_abs_diff(&tch::no_grad(|| gelu_new(&x)), &x.gelu("tanh")) < 1e-6);
        let x = Tensor::randn([64], (Kind::Double, Device::Cpu));
        assert_eq!(max_abs_diff(&gelu_new(&x), &x.gelu("tanh")), 0.0);
        let x = Tensor::zeros([0, 8], (Kind::Float, Device::Cpu));
        assert_eq!(gelu_new(&x).size(), vec![0, 8]);
    }
}
