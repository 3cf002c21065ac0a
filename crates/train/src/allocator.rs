//! The C allocator's policy for the process. glibc hands freed blocks above its mmap threshold
//! back to the kernel and trims the top of its heap, so every training step's activations (a
//! `[2048, 512]` MLP activation is 4 MiB) land on fresh pages that fault in and are zeroed by the
//! kernel again: ≈ 2,100 page faults per tiny-composition step, ≈ 8% of its time on this
//! project's VM. Keeping freed memory in the process makes later steps reuse warm pages.

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
