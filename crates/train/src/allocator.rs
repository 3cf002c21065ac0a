//! The C allocator's policy for the process. glibc hands freed blocks above its mmap threshold
//! back to the kernel and trims the top of its heap, so a training step's activations (a
//! `[2048, 512]` MLP activation is 4 MiB) keep landing on fresh pages that fault in and are zeroed
//! by the kernel again: `grokscope train` on tiny-composition took ≈ 3,000 page faults per step
//! without this policy and ≈ 400 with it, and ran 6.7–7.2 steps/s with it against 6.0–6.7
//! without (four alternating 120-step runs, 2 threads). The timing loop of
//! `examples/profile_step.rs` showed no difference: the gain depends on what else the process
//! allocates (the trainer's evaluation sets, its batches), which is why it is set for the process.

use tch::Device;

/// Sets the process's allocator policy for work on `device`: [`keep_freed_memory`] when the
/// tensors live in host memory (the CPU); nothing for CUDA, whose tensors live in libtorch's caching
/// allocator on the GPU. Returns whether the policy changed.
pub fn set_policy_for(device: Device) -> bool {
    let host_tensors = device == Device::Cpu;
    if host_tensors {
        keep_freed_memory();
    }
    host_tensors
}

/// Keeps blocks up to 32 MiB in the heap and never trims it (the process keeps its peak heap
/// until it exits). glibc on Linux only; a no-op elsewhere.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's ceiling for the mmap threshold on 64-bit targets.
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_allocator_policy_is_for_cpu_work_only() {
        assert!(!set_policy_for(Device::Cuda(0)));
        assert!(set_policy_for(Device::Cpu));
    }
}
