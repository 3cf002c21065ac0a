//! Records the libtorch version of the headers tch compiles against, for `grokscope doctor`.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let version = std::env::var("LIBTORCH")
        .ok()
        .and_then(|dir| {
            std::fs::read_to_string(Path::new(&dir).join("include/torch/headeronly/version.h")).ok()
        })
        .and_then(|text| {
            let part = |name: &str| {
                let prefix = format!("#define TORCH_VERSION_{name} ");
                text.lines()
                    .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
            };
            Some(format!(
                "{}.{}.{}",
                part("MAJOR")?,
                part("MINOR")?,
                part("PATCH")?
            ))
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=GROKSCOPE_LIBTORCH_VERSION={version}");
}
