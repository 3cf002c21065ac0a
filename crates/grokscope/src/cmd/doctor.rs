//! `grokscope doctor`: proves libtorch is loaded and usable, and says what it sees.

use crate::device::Ctx;
use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

/// libtorch version read from the headers this binary was compiled against.
pub const LIBTORCH_VERSION: &str = env!("GROKSCOPE_LIBTORCH_VERSION");

pub fn run(ctx: &Ctx) -> Result<()> {
    println!("grokscope   {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch    {LIBTORCH_VERSION}");
    if let Some(path) = loaded_libtorch() {
        println!("  loaded    {path}");
    }
    let n_cuda = tch::Cuda::device_count();
    println!("cuda        {n_cuda} device(s)");
    if n_cuda > 0 {
        println!("  cudart    {}", tch::utils::version_cudart());
        for (i, name) in cuda_device_names().iter().enumerate() {
            println!("  cuda:{i}    {name}");
        }
    }
    let device = match ctx.device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    };
    println!("device      {device}");
    println!("threads     {}", ctx.threads);
    let err = matmul_check(ctx.device).context("libtorch matmul check failed")?;
    println!("matmul      ok (max error {err:.1e} on a 64x64 fp32 product)");
    Ok(())
}

/// Multiplies a known 64×64 matrix by its transpose on `device` and returns the largest absolute
/// error against the closed form: for A[i,j] = (i + j) mod 7, (A·Aᵀ)[i,i] = Σ_j ((i+j) mod 7)².
fn matmul_check(device: Device) -> Result<f64> {
    let n = 64i64;
    let a: Vec<f32> = (0..n * n).map(|k| ((k / n + k % n) % 7) as f32).collect();
    let a = Tensor::from_slice(&a).view([n, n]).to_device(device);
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
    if max_err > 1e-3 {
        bail!("64x64 matmul is wrong by {max_err}");
    }
    Ok(max_err)
}

/// Path of the libtorch_cpu shared library this process has loaded (Linux: /proc/self/maps).
fn loaded_libtorch() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .map(str::to_string)
}

/// GPU names from `nvidia-smi` (libtorch's C API exposes no device names); empty if it is absent.
fn cuda_device_names() -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
