//! bf16 autocast on CUDA.
//!
//! `tch::autocast` turns libtorch's CUDA autocast on, but its dtype defaults to f16 and tch has no
//! binding to change it; [`with_precision`] sets it to bf16 through libtorch's own
//! `at::autocast::set_autocast_dtype` first.

use crate::config::Precision;
use tch::{Device, Kind};

mod ffi {
    extern "C" {
        /// `void at::autocast::set_autocast_dtype(c10::DeviceType, c10::ScalarType)` from
        /// libtorch_cpu (both enums are `int8_t`-backed).
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device_type: i8, dtype: i8);
    }
}

/// `c10::DeviceType::CUDA`.
const DEVICE_TYPE_CUDA: i8 = 1;
/// `c10::ScalarType::BFloat16`.
const SCALAR_TYPE_BF16: i8 = 15;

/// The dtype autocast runs a forward pass in for `precision` on `device`: bf16 on CUDA when asked
/// for, `None` (plain fp32) everywhere else. Weights, gradients, optimizer state and the loss stay
/// fp32 in every case: autocast only changes the dtype matmuls compute in.
pub fn autocast_kind(precision: Precision, device: Device) -> Option<Kind> {
    match (precision, device) {
        (Precision::Bf16, Device::Cuda(_)) => Some(Kind::BFloat16),
        _ => None,
    }
}

/// Runs `f` (a forward pass) under bf16 autocast when [`autocast_kind`] says so; runs it plainly
/// otherwise.
pub fn with_precision<T>(precision: Precision, device: Device, f: impl FnOnce() -> T) -> T {
    match autocast_kind(precision, device) {
        Some(_) => {
            // SAFETY: a plain setter of a thread-local libtorch setting; both arguments are valid
            // enum values of the libtorch version tch 0.24 is built against (2.11).
            unsafe { ffi::set_autocast_dtype(DEVICE_TYPE_CUDA, SCALAR_TYPE_BF16) };
            tch::autocast(true, f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocast_is_for_bf16_on_cuda_only() {
        assert_eq!(
            autocast_kind(Precision::Bf16, Device::Cuda(0)),
            Some(Kind::BFloat16)
        );
        assert_eq!(autocast_kind(Precision::Bf16, Device::Cpu), None);
        assert_eq!(autocast_kind(Precision::Fp32, Device::Cuda(0)), None);
        let a = tch::Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let product = with_precision(Precision::Bf16, Device::Cpu, || a.matmul(&a));
        assert_eq!(product.kind(), Kind::Float);
    }
}
