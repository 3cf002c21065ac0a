//! What this process can run on: whether libtorch's CUDA backend is loaded, whether an NVIDIA
//! driver and GPUs are there, and the one resolution of a user's device choice.
//!
//! libtorch registers its CUDA backend from the static initialisers of `libtorch_cuda.so`, so the
//! backend exists exactly when that library is mapped into the process; [`CudaBackend::probe`]
//! reads `/proc/self/maps` for it and looks beside the loaded `libtorch_cpu.so` for the library
//! the build could have linked. The driver is read through the CUDA driver API (`libcuda.so.1`,
//! opened with `dlopen`), which names the devices and their memory without creating a context.
//!
//! ```no_run
//! use model::device::{resolve_device, CudaBackend, DeviceChoice, Driver};
//! println!("{}", CudaBackend::probe());
//! match Driver::open() {
//!     Ok(driver) => println!("{} GPU(s)", driver.devices.len()),
//!     Err(why) => println!("no driver: {why}"),
//! }
//! let device = resolve_device(DeviceChoice::Auto).unwrap(); // Cpu on a machine without a GPU
//! # let _ = device;
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// A device as a user names it on the command line.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA when libtorch sees a GPU, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Whether libtorch's CUDA backend is loaded in this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CudaBackend {
    /// `libtorch_cuda.so` is mapped: the CUDA backend is registered.
    Loaded(PathBuf),
    /// Not mapped although the libtorch folder has it: the binary was linked without it.
    NotLinked(PathBuf),
    /// Not mapped, and the libtorch this process loaded has no CUDA library (a CPU-only build).
    CpuOnlyLibtorch,
}

impl CudaBackend {
    /// Reads this process's mapped libraries.
    pub fn probe() -> CudaBackend {
        if let Some(path) = loaded_library("libtorch_cuda.so") {
            return CudaBackend::Loaded(path);
        }
        match libtorch_cuda_beside_cpu() {
            Some(path) => CudaBackend::NotLinked(path),
            None => CudaBackend::CpuOnlyLibtorch,
        }
    }

    pub fn is_loaded(&self) -> bool {
        matches!(self, CudaBackend::Loaded(_))
    }
}

impl fmt::Display for CudaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaBackend::Loaded(path) => write!(f, "loaded from {}", path.display()),
            CudaBackend::NotLinked(path) => write!(
                f,
                "NOT LINKED: {} exists but this binary does not load it (linked with --as-needed?)",
                path.display()
            ),
            CudaBackend::CpuOnlyLibtorch => write!(f, "none: this libtorch is a CPU-only build"),
        }
    }
}

/// Path of a shared library this process has mapped whose file name is `file_name`
/// (Linux: `/proc/self/maps`; `None` elsewhere or when it is not mapped).
pub fn loaded_library(file_name: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(Path::new)
        .find(|path| path.file_name().is_some_and(|name| name == file_name))
        .map(Path::to_path_buf)
}

/// `libtorch_cuda.so` in the folder of the loaded `libtorch_cpu.so`, when it exists there.
pub fn libtorch_cuda_beside_cpu() -> Option<PathBuf> {
    let cpu = loaded_library("libtorch_cpu.so")?;
    let cuda = cpu.with_file_name("libtorch_cuda.so");
    cuda.exists().then_some(cuda)
}

/// One GPU as the driver reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Gpu {
    pub name: String,
    /// Total device memory in bytes.
    pub memory_bytes: u64,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
}

impl Gpu {
    /// bf16 arithmetic in hardware (tensor cores and native bf16 ops): compute capability ≥ 8.0.
    pub fn supports_bf16(&self) -> bool {
        self.compute_capability.0 >= 8
    }
}

/// The NVIDIA driver and the GPUs it exposes.
#[derive(Clone, Debug, PartialEq)]
pub struct Driver {
    /// The driver's CUDA version as `major.minor` (e.g. `13.0`).
    pub cuda_version: String,
    pub devices: Vec<Gpu>,
}

impl Driver {
    /// Opens the driver library (`libcuda.so.1`, or the file named by `GROKSCOPE_LIBCUDA`) and lists
    /// its devices. The error says why there is no usable driver, in one line.
    pub fn open() -> Result<Driver, String> {
        let library = std::env::var("GROKSCOPE_LIBCUDA").unwrap_or_else(|_| "libcuda.so.1".into());
        Driver::open_library(&library)
    }

    /// [`Driver::open`] on the driver library `library` (a file name for `dlopen` or a path).
    pub fn open_library(library: &str) -> Result<Driver, String> {
        driver_api::read(library)
    }
}

/// The device a user's choice resolves to. `Cuda` without a usable GPU is an error that says, in
/// one line, which of the driver, the GPUs or the CUDA backend is missing.
pub fn resolve_device(choice: DeviceChoice) -> Result<Device, String> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err(no_cuda_reason()),
    }
}

/// Why `--device cuda` cannot be honoured on this machine.
fn no_cuda_reason() -> String {
    let fix = "run with --device cpu (or auto)";
    match (CudaBackend::probe(), Driver::open()) {
        (_, Err(why)) => format!("--device cuda: no NVIDIA GPU or driver found ({why}); {fix}"),
        (_, Ok(driver)) if driver.devices.is_empty() => {
            format!("--device cuda: the NVIDIA driver reports no GPU; {fix}")
        }
        (CudaBackend::CpuOnlyLibtorch, Ok(_)) => format!(
            "--device cuda: a GPU is present but this libtorch is a CPU-only build; \
             point .libtorch at a CUDA build of torch, or {fix}"
        ),
        (backend, Ok(_)) => format!("--device cuda: a GPU is present but libtorch cannot use it (CUDA backend {backend}; {})", cuda_allocation_error().unwrap_or_default()),
    }
}

/// The first line of libtorch's error when it allocates one float on `cuda:0`, or `None` when
/// the allocation works. Without the backend it reads "…not linked with support for cuda
/// devices"; with the backend and no GPU, "Found no NVIDIA driver…" or "no CUDA GPUs are
/// available".
pub fn cuda_allocation_error() -> Option<String> {
    let err = Tensor::f_zeros([1], (Kind::Float, Device::Cuda(0))).err()?;
    let text = err.to_string();
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error");
    Some(
        line.trim_start_matches("Internal torch error: ")
            .to_string(),
    )
}

/// The CUDA driver API through `dlopen`: only the handful of C functions with plain signatures
/// that name devices, never a context.
mod driver_api {
    use super::{Driver, Gpu};
    use std::ffi::{c_char, c_int, c_uint, CStr, CString};

    type CuResult = c_int;
    /// `CUDA_ERROR_NO_DEVICE`: a driver without any GPU.
    const CUDA_ERROR_NO_DEVICE: CuResult = 100;
    const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: c_int = 75;
    const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: c_int = 76;

    type InitFn = unsafe extern "C" fn(c_uint) -> CuResult;
    type OutIntFn = unsafe extern "C" fn(*mut c_int) -> CuResult;
    type DeviceGetFn = unsafe extern "C" fn(*mut c_int, c_int) -> CuResult;
    type DeviceNameFn = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> CuResult;
    type TotalMemFn = unsafe extern "C" fn(*mut usize, c_int) -> CuResult;
    type AttributeFn = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> CuResult;

    struct Api {
        init: InitFn,
        driver_version: OutIntFn,
        device_count: OutIntFn,
        device_get: DeviceGetFn,
        device_name: DeviceNameFn,
        total_mem: TotalMemFn,
        attribute: AttributeFn,
    }

    /// Opens `library` and reads the driver version and every device.
    pub fn read(library: &str) -> Result<Driver, String> {
        let api = open(library)?;
        let check = |what: &str, code: CuResult| match code {
            0 => Ok(()),
            code => Err(format!("{library}: {what} returned CUDA error {code}")),
        };
        let mut version = 0;
        let mut count = 0;
        // SAFETY: each function pointer was resolved from the driver library under its documented
        // name and C signature; every out-pointer is a live local of the declared type.
        unsafe {
            check("cuDriverGetVersion", (api.driver_version)(&mut version))?;
            match (api.init)(0) {
                CUDA_ERROR_NO_DEVICE => {}
                code => {
                    check("cuInit", code)?;
                    check("cuDeviceGetCount", (api.device_count)(&mut count))?;
                }
            }
        }
        let devices = (0..count)
            .map(|ordinal| {
                gpu(&api, ordinal)
                    .map_err(|(what, code)| format!("{library}: {what} returned CUDA error {code}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Driver {
            cuda_version: format!("{}.{}", version / 1000, (version % 1000) / 10),
            devices,
        })
    }

    /// Name, memory and compute capability of the device with `ordinal`.
    fn gpu(api: &Api, ordinal: c_int) -> Result<Gpu, (&'static str, CuResult)> {
        let ok = |what, code| if code == 0 { Ok(()) } else { Err((what, code)) };
        let (mut device, mut memory, mut major, mut minor) = (0, 0usize, 0, 0);
        let mut name = [0 as c_char; 256];
        // SAFETY: as in `read`; `name` is a zeroed buffer of the length passed.
        unsafe {
            ok("cuDeviceGet", (api.device_get)(&mut device, ordinal))?;
            ok(
                "cuDeviceGetName",
                (api.device_name)(name.as_mut_ptr(), 255, device),
            )?;
            ok("cuDeviceTotalMem", (api.total_mem)(&mut memory, device))?;
            ok(
                "cuDeviceGetAttribute",
                (api.attribute)(
                    &mut major,
                    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                    device,
                ),
            )?;
            ok(
                "cuDeviceGetAttribute",
                (api.attribute)(
                    &mut minor,
                    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                    device,
                ),
            )?;
        }
        // SAFETY: the buffer is zeroed beyond what the driver wrote, so it ends in a NUL.
        let name = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok(Gpu {
            name,
            memory_bytes: memory as u64,
            compute_capability: (major, minor),
        })
    }

    /// Resolves the driver functions of `library`; the library stays loaded for the process.
    fn open(library: &str) -> Result<Api, String> {
        let path = CString::new(library).map_err(|_| format!("bad library name {library:?}"))?;
        // SAFETY: dlopen with a NUL-terminated name; a null result is handled below.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("{library} is not installed"));
        }
        let symbol = |name: &str| -> Result<*mut libc::c_void, String> {
            let c_name = CString::new(name).expect("symbol names have no NUL");
            // SAFETY: a live handle from dlopen and a NUL-terminated symbol name.
            let ptr = unsafe { libc::dlsym(handle, c_name.as_ptr()) };
            if ptr.is_null() {
                Err(format!("{library} has no {name}"))
            } else {
                Ok(ptr)
            }
        };
        // SAFETY: each symbol is the driver API function of that name, whose C signature the
        // field's type spells out (CUDA driver API, cuda.h; `_v2` names take size_t memory).
        unsafe {
            Ok(Api {
                init: std::mem::transmute::<*mut libc::c_void, InitFn>(symbol("cuInit")?),
                driver_version: std::mem::transmute::<*mut libc::c_void, OutIntFn>(symbol(
                    "cuDriverGetVersion",
                )?),
                device_count: std::mem::transmute::<*mut libc::c_void, OutIntFn>(symbol(
                    "cuDeviceGetCount",
                )?),
                device_get: std::mem::transmute::<*mut libc::c_void, DeviceGetFn>(symbol(
                    "cuDeviceGet",
                )?),
                device_name: std::mem::transmute::<*mut libc::c_void, DeviceNameFn>(symbol(
                    "cuDeviceGetName",
                )?),
                total_mem: std::mem::transmute::<*mut libc::c_void, TotalMemFn>(symbol(
                    "cuDeviceTotalMem_v2",
                )?),
                attribute: std::mem::transmute::<*mut libc::c_void, AttributeFn>(symbol(
                    "cuDeviceGetAttribute",
                )?),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_backend_is_loaded_whenever_libtorch_has_it() {
        let Some(available) = libtorch_cuda_beside_cpu() else {
            println!("SKIP: the loaded libtorch has no libtorch_cuda.so (a CPU-only build)");
            assert_eq!(CudaBackend::probe(), CudaBackend::CpuOnlyLibtorch);
            return;
        };
        assert_eq!(CudaBackend::probe(), CudaBackend::Loaded(available));
    }

    #[test]
    fn a_cuda_allocation_fails_for_want_of_a_gpu_not_of_the_backend() {
        if tch::Cuda::is_available() {
            assert_eq!(cuda_allocation_error(), None);
            return;
        }
        let err = cuda_allocation_error().expect("no GPU: allocating on cuda:0 must fail");
        assert!(!err.contains("not linked with support"), "{err}");
        assert!(!err.contains("without ATen_cuda"), "{err}");
        if CudaBackend::probe().is_loaded() {
            assert!(
                err.contains("NVIDIA driver") || err.contains("no CUDA GPUs"),
                "unexpected error text: {err}"
            );
        }
    }

    #[test]
    fn device_choices_resolve_to_the_cpu_without_a_gpu() {
        if tch::Cuda::is_available() {
            println!("SKIP: this machine has a GPU");
            return;
        }
        assert_eq!(resolve_device(DeviceChoice::Cpu), Ok(Device::Cpu));
        assert_eq!(resolve_device(DeviceChoice::Auto), Ok(Device::Cpu));
        let err = resolve_device(DeviceChoice::Cuda).unwrap_err();
        assert!(err.starts_with("--device cuda: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
        if CudaBackend::probe().is_loaded() {
            assert!(err.contains("no NVIDIA GPU or driver found"), "{err}");
        }
    }

    #[test]
    fn a_missing_driver_library_is_one_line() {
        let err = Driver::open_library("libcuda-grokscope-absent.so.1").unwrap_err();
        assert_eq!(err, "libcuda-grokscope-absent.so.1 is not installed");
    }
}
