//! Global options shared by every subcommand: device choice and thread count.

use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};
use model::device::resolve_device;
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
    /// Sets the thread count, resolves the device and sets the allocator policy for it.
    pub fn apply(&self) -> Result<Ctx> {
        if let Some(n) = self.threads {
            check_threads(n)?;
            tch::set_num_threads(n as i32);
        }
        let device = resolve_device(self.device.into()).map_err(|why| anyhow!(why))?;
        train::allocator::set_policy_for(device);
        Ok(Ctx {
            device,
            threads: tch::get_num_threads() as usize,
        })
    }
}

impl From<DeviceChoice> for model::device::DeviceChoice {
    fn from(choice: DeviceChoice) -> Self {
        match choice {
            DeviceChoice::Auto => Self::Auto,
            DeviceChoice::Cpu => Self::Cpu,
            DeviceChoice::Cuda => Self::Cuda,
        }
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
