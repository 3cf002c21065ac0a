//! `grokscope doctor`: proves libtorch is loaded and usable, and says what it sees.

use crate::device::Ctx;
use anyhow::{bail, Context, Result};
use model::device::{cuda_allocation_error, loaded_library, CudaBackend, Driver};
use tch::{Device, Kind, Tensor};

/// libtorch version read from the headers this binary was compiled against.
pub const LIBTORCH_VERSION: &str = env!("GROKSCOPE_LIBTORCH_VERSION");

pub fn run(ctx: &Ctx) -> Result<()> {
    println!("grokscope    {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch     {LIBTORCH_VERSION}");
    if let Some(path) = loaded_library("libtorch_cpu.so") {
        println!("  loaded     {}", path.display());
    }
    let backend = CudaBackend::probe();
    println!("cuda backend {backend}");
    if backend.is_loaded() {
        println!(
            "  cudart     {}",
            cudart_version(tch::utils::version_cudart())
        );
    }
    report_driver();
    println!(
        "  libtorch   {} device(s) visible",
        tch::Cuda::device_count()
    );
    if let Some(err) = cuda_allocation_error() {
        println!("  cuda:0     unusable: {err}");
    }
    println!("device       {}", device_name(ctx.device));
    println!("threads      {}", ctx.threads);
    let err = matmul_check(ctx.device, Kind::Float).context("libtorch matmul check failed")?;
    println!("matmul       ok (max error {err:.1e} on a 64x64 fp32 product)");
    if ctx.device.is_cuda() {
        let err = matmul_check(ctx.device, Kind::BFloat16).context("bf16 matmul check failed")?;
        println!("bf16 matmul  ok (max error {err:.1e} on a 64x64 bf16 product)");
    }
    Ok(())
}

/// The driver's version and every GPU it lists, with memory, compute capability and bf16 support.
fn report_driver() {
    match Driver::open() {
        Err(why) => println!("  driver     none ({why})"),
        Ok(driver) => {
            println!(
                "  driver     CUDA {} ({} GPU(s))",
                driver.cuda_version,
                driver.devices.len()
            );
            for (i, gpu) in driver.devices.iter().enumerate() {
                let (major, minor) = gpu.compute_capability;
                println!(
                    "  gpu {i}      {}, {:.1} GiB, compute {major}.{minor}, bf16 {}",
                    gpu.name,
                    gpu.memory_bytes as f64 / (1u64 << 30) as f64,
                    if gpu.supports_bf16() { "yes" } else { "no" }
                );
            }
        }
    }
}

/// libtorch's CUDA runtime version number (e.g. 13000) as `13.0`.
fn cudart_version(version: i64) -> String {
    format!("{}.{}", version / 1000, (version % 1000) / 10)
}

/// `cpu`, `cuda:0`, … as the command line names devices.
fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

/// Multiplies a known 64×64 matrix by its transpose in `kind` on `device` and returns the largest
/// absolute error against the closed form: for A[i,j] = (i + j) mod 7,
/// (A·Aᵀ)[i,i] = Σ_j ((i+j) mod 7)² (at most 1,536: exact in bf16's 8-bit mantissa only up to
/// rounding, hence the kind's tolerance).
fn matmul_check(device: Device, kind: Kind) -> Result<f64> {
    let n = 64i64;
    let a: Vec<f32> = (0..n * n).map(|k| ((k / n + k % n) % 7) as f32).collect();
    let a = Tensor::from_slice(&a)
        .view([n, n])
        .to_device(device)
        .to_kind(kind);
    let diag = a
        .f_matmul(&a.tr())?
        .diagonal(0, 0, 1)
        .to_device(Device::Cpu)
        .to_kind(Kind::Double);
    let diag: Vec<f64> = Vec::<f64>::try_from(&diag)?;
    let mut max_err = 0f64;
    for (i, got) in diag.iter().enumerate() {
        let want: f64 = (0..n as usize)
            .map(|j| (((i + j) % 7) as f64).powi(2))
            .sum();
        max_err = max_err.max((got - want).abs());
    }
    let tolerance = if kind == Kind::BFloat16 { 8.0 } else { 1e-3 };
    if max_err > tolerance {
        bail!("64x64 {kind:?} matmul is wrong by {max_err}");
    }
    Ok(max_err)
}
