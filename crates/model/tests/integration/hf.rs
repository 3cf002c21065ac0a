//! Hugging Face parity: export → transformers, pytorch_model.bin (52k vocabulary) → import.

use crate::common::*;
use model::{export_hf, hf, import_hf, HfLayout, HookPoint, RunRequest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Tensor};

/// The project's Python with torch and transformers; fails (never skips) when absent.
fn python() -> PathBuf {
    let python = hf::python_path();
    assert!(
        python.is_file(),
        "HF parity needs Python with torch, transformers and safetensors at {} (set GROKSCOPE_PYTHON or run `just setup`)",
        python.display()
    );
    python
}

/// Runs tests/hf_parity.py with `args`; asserts success and returns its stdout.
fn parity_script(args: &[&Path]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf_parity.py");
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run the Python parity script");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "hf_parity.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn exported_model_matches_transformers() {
    let ckpt = random_model(tiny_config(), 61);
    let dir = temp_dir("hf-export");
    export_hf(&ckpt, &dir.join("model"), &HfLayout::Task).unwrap();
    let toks = tokens(3, 9, 50, 62);
    let n = ckpt.config.n_layer();
    let mut req = RunRequest::capture((0..n).map(HookPoint::ResidPre));
    req.capture.insert(HookPoint::ResidPost(n - 1));
    let out = ckpt.model.run(&toks, &req).unwrap();
    let mut expected: Vec<(String, Tensor)> =
        vec![("tokens".into(), toks), ("logits".into(), out.logits)];
    for l in 0..n {
        expected.push((
            format!("hidden.{l}"),
            out.cache[&HookPoint::ResidPre(l)].shallow_clone(),
        ));
    }
    expected.push((
        format!("hidden.{n}"),
        ckpt.model
            .ln_final(&out.cache[&HookPoint::ResidPost(n - 1)]),
    ));
    let expected_path = dir.join("expected.safetensors");
    Tensor::write_safetensors(&expected, &expected_path).unwrap();
    let report = parity_script(&[
        Path::new("check-export"),
        &dir.join("model"),
        &expected_path,
    ]);
    assert!(report.contains("OK"), "{report}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["n_layer"], 3);
    assert_eq!(config["n_inner"], 64);
    assert_eq!(config["tie_word_embeddings"], true);
    assert!(config["eos_token_id"].as_u64().unwrap() < 50);
}

#[test]
fn paper_style_pytorch_bin_with_52k_vocabulary_imports_exactly() {
    let dir = temp_dir("hf-bin");
    let model_dir = dir.join("model");
    let expected_path = dir.join("expected.safetensors");
    parity_script(&[Path::new("make-bin"), &model_dir, &expected_path]);
    let ckpt = import_hf(&model_dir, Device::Cpu, None).unwrap();
    assert_eq!(ckpt.config.vocab_size, 52464);
    assert_eq!(
        (
            ckpt.config.n_layer(),
            ckpt.config.d_model,
            ckpt.config.d_mlp
        ),
        (2, 16, 64)
    );
    assert_eq!(
        ckpt.metadata[hf::IMPORTED_FROM_KEY],
        model_dir.display().to_string()
    );
    let expected: BTreeMap<String, Tensor> = Tensor::read_safetensors(&expected_path)
        .unwrap()
        .into_iter()
        .collect();
    let out = ckpt
        .model
        .run(
            &expected["tokens"],
            &RunRequest::capture([HookPoint::ResidPre(1), HookPoint::ResidPost(1)]),
        )
        .unwrap();
    assert_close(&out.logits, &expected["logits"], 1e-5, "logits");
    assert_close(
        &out.cache[&HookPoint::ResidPre(1)],
        &expected["hidden.1"],
        1e-5,
        "hidden.1",
    );
    assert_close(
        &ckpt.model.ln_final(&out.cache[&HookPoint::ResidPost(1)]),
        &expected["hidden.2"],
        1e-5,
        "hidden.2",
    );
}

#[test]
fn export_then_import_is_exact() {
    let ckpt = random_model(tiny_config(), 63);
    let dir = temp_dir("hf-round-trip");
    export_hf(&ckpt, &dir, &HfLayout::Task).unwrap();
    let back = import_hf(&dir, Device::Cpu, None).unwrap();
    assert_eq!(back.config, ckpt.config);
    let old = ckpt.vs.variables();
    for (name, value) in back.vs.variables() {
        assert_exact(&value, &old[&name], &name);
    }
}

#[test]
fn hf_errors_are_clear() {
    let shared = random_model(tiny_config().shared(3, 2), 65);
    let dir = temp_dir("hf-errors");
    let err = export_hf(&shared, &dir.join("out"), &HfLayout::Task)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not plain") && err.contains("surgery --unshare"),
        "{err}"
    );
    assert!(!dir.join("out/config.json").exists());

    let err = import_hf(&dir.join("absent"), Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent/config.json"), "{err}");

    let ckpt = random_model(tiny_config(), 66);
    let folder = dir.join("llama");
    export_hf(&ckpt, &folder, &HfLayout::Task).unwrap();
    let config_path = folder.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["n_inner"] = serde_json::json!(128);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = import_hf(&folder, Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("transformer.h.0.mlp.c_fc.bias") && err.contains("expected [128]"),
        "{err}"
    );
    config["model_type"] = serde_json::json!("llama");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = import_hf(&folder, Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("llama"), "{err}");

    std::fs::remove_file(folder.join("model.safetensors")).unwrap();
    config["model_type"] = serde_json::json!("gpt2");
    config["n_inner"] = serde_json::json!(64);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = import_hf(&folder, Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no model.safetensors or pytorch_model.bin"),
        "{err}"
    );
}

#[test]
fn paper_recurrence_flag_becomes_a_shared_schedule() {
    let config = serde_json::json!({
        "model_type": "gpt2", "vocab_size": 52464, "n_positions": 1024, "n_embd": 768, "n_layer": 4,
        "n_head": 12, "n_inner": null, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.1, "add_recurrence": true
    });
    let cfg = hf::config_from_hf(&config, Path::new("config.json")).unwrap();
    assert_eq!(cfg.schedule, vec![0, 1, 2, 3, 0, 1, 2, 3]);
    assert_eq!((cfg.n_blocks, cfg.d_mlp, cfg.vocab_size), (4, 3072, 52464));
}

#[test]
fn add_recurrence_runs_every_block_twice_as_the_papers_fork_does() {
    let ckpt = random_model(tiny_config(), 67);
    let dir = temp_dir("hf-recurrence");
    export_hf(&ckpt, &dir, &HfLayout::Task).unwrap();
    let expected_path = dir.join("expected.safetensors");
    parity_script(&[Path::new("recurrence"), &dir, &expected_path]);
    let config_path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["add_recurrence"] = serde_json::json!(true);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let looped = import_hf(&dir, Device::Cpu, None).unwrap();
    let n = ckpt.config.n_layer();
    let twice: Vec<usize> = (0..n).chain(0..n).collect();
    assert_eq!(looped.config.schedule, twice);
    let expected: BTreeMap<String, Tensor> = Tensor::read_safetensors(&expected_path)
        .unwrap()
        .into_iter()
        .collect();
    let out = looped
        .model
        .run(&expected["tokens"], &RunRequest::capture([]))
        .unwrap();
    assert_close(&out.logits, &expected["logits"], 1e-5, "logits");

    config["rotary_dim"] = serde_json::json!(8);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = import_hf(&dir, Device::Cpu, None).unwrap_err().to_string();
    assert!(err.contains("unknown option `rotary_dim`"), "{err}");
}
