//! The CUDA backend and device choice, proven on a machine without a GPU: the `grokscope` binary and
//! this test binary load `libtorch_cuda.so` whenever the libtorch they are built against has it,
//! `--device cuda` without a GPU is one line and exit 2, and `doctor` names the driver's devices
//! (read from a stand-in driver library built from `tests/fixtures/fake_libcuda.c`).

mod common;

use common::scratch;
use model::device::{libtorch_cuda_beside_cpu, CudaBackend, Driver, Gpu};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn grokscope(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grokscope"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the grokscope binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The libtorch folder's `libtorch_cuda.so`, or `None` (with the reason printed) for a CPU-only
/// libtorch, where there is no backend to load.
fn cuda_library() -> Option<PathBuf> {
    let found = libtorch_cuda_beside_cpu();
    if found.is_none() {
        println!("SKIP: the libtorch folder has no libtorch_cuda.so (CPU-only build)");
    }
    found
}

#[test]
fn this_test_binary_loads_the_cuda_backend() {
    if let Some(library) = cuda_library() {
        assert_eq!(CudaBackend::probe(), CudaBackend::Loaded(library));
    }
}

#[test]
fn the_grokscope_binary_opens_libtorch_cuda_at_startup() {
    if cuda_library().is_none() {
        return;
    }
    let out = grokscope(&["--device", "cpu", "doctor"], &[("LD_DEBUG", "files")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let loader = text(&out.stderr);
    for library in ["libtorch_cuda.so", "libc10_cuda.so"] {
        assert!(
            loader.contains(&format!("file={library} ")),
            "the dynamic loader never opened {library}"
        );
    }
    let report = text(&out.stdout);
    assert!(report.contains("cuda backend loaded from "), "{report}");
    assert!(report.contains("  cudart     "), "{report}");
}

#[test]
fn device_cuda_without_a_gpu_is_one_line_exit_2_and_writes_nothing() {
    if tch::Cuda::is_available() {
        println!("SKIP: this machine has a GPU");
        return;
    }
    let dir = scratch("cuda-no-gpu");
    let run = dir.join("run");
    let args = ["--device", "cuda", "train", "--preset", "tiny-composition"];
    let out = grokscope(
        &[&args[..], &["--out", run.to_str().unwrap()]].concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: --device cuda: "), "{err}");
    if CudaBackend::probe().is_loaded() {
        assert!(err.contains("no NVIDIA GPU or driver found"), "{err}");
    }
    for backend_words in ["not linked", "ATen_cuda", "libtorch_cuda", "panicked"] {
        assert!(!err.contains(backend_words), "{err}");
    }
    assert!(!run.exists(), "a refused run must write nothing");
    let auto = grokscope(&["--device", "auto", "doctor"], &[]);
    assert!(auto.status.success(), "{}", text(&auto.stderr));
    assert!(text(&auto.stdout).contains("\ndevice       cpu\n"));
}

/// Builds the stand-in driver library into `dir`; `None` without a C compiler.
fn fake_driver(dir: &Path) -> Option<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake_libcuda.c");
    let library = dir.join("libcuda-fake.so");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        println!("SKIP: no C compiler to build the stand-in driver");
        return None;
    }
    Some(library)
}

#[test]
fn the_driver_api_and_doctor_list_gpus_with_memory_and_bf16() {
    let dir = scratch("cuda-fake-driver");
    let Some(library) = fake_driver(&dir) else {
        return;
    };
    let driver = Driver::open_library(library.to_str().unwrap()).unwrap();
    assert_eq!(driver.cuda_version, "13.2");
    let h100 = Gpu {
        name: "Fake H100".into(),
        memory_bytes: 85_520_809_984,
        compute_capability: (9, 0),
    };
    let t4 = Gpu {
        name: "Fake T4".into(),
        memory_bytes: 15_828_320_256,
        compute_capability: (7, 5),
    };
    assert!(h100.supports_bf16() && !t4.supports_bf16());
    assert_eq!(driver.devices, vec![h100, t4]);
    let out = grokscope(
        &["--device", "cpu", "doctor"],
        &[("GROKSCOPE_LIBCUDA", library.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for line in [
        "  driver     CUDA 13.2 (2 GPU(s))\n",
        "  gpu 0      Fake H100, 79.6 GiB, compute 9.0, bf16 yes\n",
        "  gpu 1      Fake T4, 14.7 GiB, compute 7.5, bf16 no\n",
    ] {
        assert!(report.contains(line), "missing {line:?} in:\n{report}");
    }
    let none = grokscope(
        &["--device", "cpu", "doctor"],
        &[("GROKSCOPE_LIBCUDA", "libcuda-grokscope-absent.so.1")],
    );
    assert!(text(&none.stdout)
        .contains("  driver     none (libcuda-grokscope-absent.so.1 is not installed)\n"));
}

/// What `scripts/link-cuda.sh` hands the C compiler driver for `args` (`GROKSCOPE_LINK_CC=echo`).
fn linker_command(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/link-cuda.sh");
    let out = Command::new(script)
        .args(args)
        .env("GROKSCOPE_LINK_CC", "echo")
        .output()
        .expect("the linker wrapper runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[test]
fn the_linker_wrapper_keeps_cuda_libraries_needed_and_leaves_cpu_builds_alone() {
    let cpu_only = [
        "-Wl,--as-needed",
        "-ltorch_cpu",
        "-ltorch",
        "-lc10",
        "-o",
        "bin",
    ];
    assert_eq!(linker_command(&cpu_only), cpu_only.join(" "));
    let cuda = [
        "-Wl,--as-needed",
        "-ltorch_cuda",
        "-ltorch_cpu",
        "-o",
        "bin",
    ];
    assert_eq!(
        linker_command(&cuda),
        "-Wl,--as-needed -Wl,--push-state,--no-as-needed -ltorch_cuda -lc10_cuda \
         -Wl,--pop-state -ltorch_cpu -o bin"
    );
}

#[test]
fn the_gpu_check_dry_run_writes_its_table() {
    let out_dir = scratch("gpu-check-dry");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gpu-check.sh");
    let out = Command::new(script)
        .arg(&out_dir)
        .arg("--dry-run")
        .env("GROKSCOPE_BIN", env!("CARGO_BIN_EXE_grokscope"))
        .output()
        .expect("the gpu check runs");
    let table = std::fs::read_to_string(out_dir.join("gpu-check.md")).unwrap_or_default();
    assert!(out.status.success(), "{}\n{table}", text(&out.stderr));
    for row in [
        "| paper shape fp32: steps/s (grokscope / eager PyTorch) | ",
        "| tiny-composition on cpu: grokking milestones | ",
        "| checkpoint trained on cpu, evaluated on cpu | identical accuracy on every split | yes |",
        "| lens on cpu against cpu (fp32) | max abs diff 0.00e+00 (<= 1e-4), ranks identical | yes |",
        "| patch on cpu against cpu (fp32) | max abs diff 0.00e+00 (<= 1e-4), ranks identical | yes |",
    ] {
        assert!(table.contains(row), "missing {row:?} in:\n{table}");
    }
    assert!(!table.contains("| NO |"), "{table}");
}
