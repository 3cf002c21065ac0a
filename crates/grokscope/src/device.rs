//! Global options shared by every subcommand: device choice and thread count.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use tch::Device;

/// Which device the tensors live on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when libtorch sees a GPU, else CPU.
    Auto,
    Cpu,
    Cuda,
}

#[derive(Args, Debug)]
pub struct Global {
    /// Device: auto = CUDA when libtorch sees a GPU, else CPU.
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Intra-op threads for libtorch (default: libtorch's choice, usually the core count).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
}

/// The resolved global context handed to every subcommand.
#[derive(Copy, Clone, Debug)]
pub struct Ctx {
    pub device: Device,
    pub threads: usize,
}

impl Global {
    /// Sets the thread count and the allocator policy, and resolves the device.
    pub fn apply(&self) -> Result<Ctx> {
        train::allocator::keep_freed_memory();
        if let Some(n) = self.threads {
            check_threads(n)?;
            tch::set_num_threads(n as i32);
        }
        let device = match self.device {
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Auto => Device::cuda_if_available(),
            DeviceChoice::Cuda => {
                if !tch::Cuda::is_available() {
                    bail!("--device cuda requested but libtorch sees no CUDA device");
                }
                Device::Cuda(0)
            }
        };
        Ok(Ctx {
            device,
            threads: tch::get_num_threads() as usize,
        })
    }
}

/// Checks `--threads n`: 1 ≤ n ≤ 4 × the logical CPUs this process may use (more threads only
/// oversubscribe the CPUs, and libtorch takes minutes to start a hundred thousand).
fn check_threads(n: usize) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    if n > 4 * cpus {
        bail!(
            "--threads {n} is too many: this machine has {cpus} logical CPUs, use at most {}",
            4 * cpus
        );
    }
    Ok(())
}
