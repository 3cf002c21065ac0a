//! Checkpoints: exact round trip, shared blocks stored once, named errors for bad files.

use crate::common::*;
use model::{Checkpoint, GptConfig, HookPoint, ModelError, RunRequest, CONFIG_KEY};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::Device;

/// Names of the tensors in a safetensors file.
fn tensor_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut names: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .cloned()
        .collect();
    names.sort();
    names
}

/// Writes f32 tensors given as (name, shape) filled with zeros, with `metadata`.
fn write_raw(
    path: &Path,
    tensors: &[(String, Vec<usize>)],
    metadata: Option<HashMap<String, String>>,
) {
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()])
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&data)
        .map(|((n, s), d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &metadata, path).unwrap();
}

/// (name, shape) of every parameter of `cfg`.
fn expected(cfg: &GptConfig) -> Vec<(String, Vec<usize>)> {
    model::param_shapes(cfg)
        .into_iter()
        .map(|(n, s)| (n, s.iter().map(|&x| x as usize).collect()))
        .collect()
}

fn config_metadata(cfg: &GptConfig) -> Option<HashMap<String, String>> {
    Some(HashMap::from([(
        CONFIG_KEY.to_string(),
        serde_json::to_string(cfg).unwrap(),
    )]))
}

#[test]
fn save_then_load_is_exact() {
    let ckpt = random_model(tiny_config(), 31);
    let dir = temp_dir("round-trip");
    let path = dir.join("step-10/model.safetensors");
    let extra = BTreeMap::from([("step".to_string(), "10".to_string())]);
    Checkpoint::save(&path, &ckpt.vs, &ckpt.config, &extra).unwrap();
    let files: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        vec!["model.safetensors"],
        "no temporary file is left behind"
    );
    let loaded = Checkpoint::load(&path, Device::Cpu).unwrap();
    assert_eq!(loaded.config, ckpt.config);
    assert_eq!(loaded.metadata, extra);
    let (a, b) = (ckpt.vs.variables(), loaded.vs.variables());
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        assert_exact(t, &b[name], name);
    }
    let toks = tokens(2, 6, 50, 32);
    assert_exact(
        &ckpt.model.forward_t(&toks, false),
        &loaded.model.forward_t(&toks, false),
        "logits after reload",
    );
    assert_eq!(
        tensor_names(&path),
        model::param_shapes(&ckpt.config)
            .into_keys()
            .collect::<Vec<_>>()
    );
    assert!(tensor_names(&path).contains(&"transformer.h.2.attn.c_attn.weight".to_string()));
    assert_eq!(
        b["transformer.h.0.attn.c_attn.weight"].size(),
        vec![32, 96],
        "Conv1D layout [in, out]"
    );
}

#[test]
fn a_shared_schedule_saves_each_block_once() {
    let cfg = tiny_config().shared(2, 3);
    let ckpt = random_model(cfg.clone(), 33);
    let path = temp_dir("shared").join("model.safetensors");
    ckpt.save_to(&path).unwrap();
    let names = tensor_names(&path);
    let blocks: std::collections::BTreeSet<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix("transformer.h."))
        .filter_map(|n| n.split('.').next())
        .collect();
    assert_eq!(blocks.into_iter().collect::<Vec<_>>(), vec!["0", "1"]);
    assert_eq!(names.len(), 4 + 2 * 12);
    let loaded = Checkpoint::load(&path, Device::Cpu).unwrap();
    assert_eq!(loaded.config.schedule, vec![0, 1, 0, 1, 0, 1]);
    let toks = tokens(2, 4, 50, 34);
    let req = RunRequest::capture([HookPoint::ResidPost(5)]);
    assert_exact(
        &ckpt.model.run(&toks, &req).unwrap().logits,
        &loaded.model.run(&toks, &req).unwrap().logits,
        "shared reload",
    );
}

#[test]
fn bad_checkpoints_give_named_errors() {
    let cfg = tiny_config();
    let dir = temp_dir("bad");
    let all = expected(&cfg);

    let path = dir.join("missing.safetensors");
    let fewer: Vec<_> = all
        .iter()
        .filter(|(n, _)| n != "transformer.h.1.mlp.c_fc.bias")
        .cloned()
        .collect();
    write_raw(&path, &fewer, config_metadata(&cfg));
    let err = Checkpoint::load(&path, Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::MissingTensors { .. }));
    assert!(
        err.to_string().contains("`transformer.h.1.mlp.c_fc.bias`")
            && err.to_string().contains("missing.safetensors"),
        "{err}"
    );

    let path = dir.join("extra.safetensors");
    let mut more = all.clone();
    more.push(("transformer.h.7.ln_1.weight".into(), vec![32]));
    more.push(("lm_head.weight".into(), vec![50, 32]));
    write_raw(&path, &more, config_metadata(&cfg));
    let err = Checkpoint::load(&path, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected")
            && err.contains("`transformer.h.7.ln_1.weight`")
            && err.contains("`lm_head.weight`"),
        "{err}"
    );

    let path = dir.join("shape.safetensors");
    let reshaped: Vec<_> = all
        .iter()
        .map(|(n, s)| {
            if n == "transformer.h.2.attn.c_attn.weight" {
                (n.clone(), vec![96, 32])
            } else {
                (n.clone(), s.clone())
            }
        })
        .collect();
    write_raw(&path, &reshaped, config_metadata(&cfg));
    let err = Checkpoint::load(&path, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`transformer.h.2.attn.c_attn.weight` has shape [96, 32], expected [32, 96]"),
        "{err}"
    );

    let path = dir.join("no-config.safetensors");
    write_raw(&path, &all, None);
    let err = Checkpoint::load(&path, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("grokscope_config") && err.contains("import-hf"),
        "{err}"
    );

    let path = dir.join("bad-config.safetensors");
    let mut bad = cfg.clone();
    bad.n_head = 5;
    write_raw(&path, &all, config_metadata(&bad));
    let err = Checkpoint::load(&path, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a multiple of n_head"), "{err}");

    let path = dir.join("garbage.safetensors");
    std::fs::write(&path, b"not a safetensors file").unwrap();
    let err = Checkpoint::load(&path, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("garbage.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );

    let err = Checkpoint::load(dir.join("absent.safetensors"), Device::Cpu).unwrap_err();
    assert!(
        matches!(err, ModelError::Io { .. }) && err.to_string().contains("absent.safetensors"),
        "{err}"
    );
}

#[test]
fn configs_are_validated() {
    let mut cfg = tiny_config();
    cfg.schedule = vec![0, 1, 5];
    assert!(cfg.validate().unwrap_err().to_string().contains("block 5"));
    let cfg = tiny_config().with_schedule(3, vec![0, 1, 1]);
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("never uses block 2 of 3"));
    let cfg = tiny_config().with_schedule(1, vec![]);
    assert!(cfg.validate().is_err());
    let mut cfg = tiny_config();
    cfg.dropout = 1.0;
    assert!(Checkpoint::new(cfg, Device::Cpu).is_err());
}

#[test]
fn saving_checks_the_store_against_the_config() {
    let ckpt = random_model(tiny_config(), 35);
    let path = temp_dir("mismatch").join("model.safetensors");
    let mut other = tiny_config();
    other.d_mlp = 128;
    let err = Checkpoint::save(&path, &ckpt.vs, &other, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("transformer.h.0.mlp.c_fc.bias") && err.contains("expected [128]"),
        "{err}"
    );
    assert!(!path.exists());
}

#[test]
fn parameter_names_shapes_and_decay_groups() {
    let ckpt = random_model(tiny_config(), 37);
    let vars = ckpt.vs.variables();
    let shapes = model::param_shapes(&ckpt.config);
    assert_eq!(vars.len(), shapes.len());
    for (name, shape) in &shapes {
        assert_eq!(&vars[name].size(), shape, "{name}");
    }
    let decayed = model::decayed_param_names(&ckpt.vs);
    assert!(decayed.contains(&"transformer.wte.weight".to_string()));
    assert!(decayed.contains(&"transformer.wpe.weight".to_string()));
    assert!(decayed.contains(&"transformer.h.0.attn.c_attn.weight".to_string()));
    assert!(decayed
        .iter()
        .all(|n| !n.contains("ln_") && !n.ends_with(".bias")));
    assert_eq!(decayed.len(), 2 + 3 * 4);
}

#[test]
fn initialisation_follows_gpt2() {
    let mut cfg = GptConfig::new(64, 8, 256, 4, 2);
    cfg.d_mlp = 1024;
    tch::manual_seed(39);
    let ckpt = Checkpoint::new(cfg, Device::Cpu).unwrap();
    let vars = ckpt.vs.variables();
    let std = |name: &str| vars[name].std(true).double_value(&[]);
    assert!((std("transformer.h.0.attn.c_attn.weight") - 0.02).abs() < 0.002);
    assert!((std("transformer.wte.weight") - 0.02).abs() < 0.002);
    let proj = 0.02 / (2.0f64 * 2.0).sqrt();
    assert!((std("transformer.h.1.attn.c_proj.weight") - proj).abs() < 0.001);
    assert!((std("transformer.h.1.mlp.c_proj.weight") - proj).abs() < 0.001);
    assert_eq!(
        vars["transformer.h.0.ln_1.weight"]
            .mean(tch::Kind::Float)
            .double_value(&[]),
        1.0
    );
    assert_eq!(
        vars["transformer.h.0.mlp.c_fc.bias"]
            .abs()
            .max()
            .double_value(&[]),
        0.0
    );
}
