//! A dataset folder in the paper's format: loading (with or without a manifest), generating,
//! and writing atomically.

use crate::error::{Result, TaskError};
use crate::example::{Example, TaskKind};
use crate::facts::Facts;
use crate::json::{render_records, render_strings, RawRecord};
use crate::spec::{Manifest, TaskSpec};
use crate::vocab::{SpecialIds, Vocab};
use crate::{comparison, composition, GeneratedFiles};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version written into manifests (the workspace version, shared with the `grokscope` binary).
pub const GROKSCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The three record files and the split name of their records without a `type`.
pub const DATA_FILES: [(&str, &str); 3] = [
    ("train.json", "train"),
    ("valid.json", "valid"),
    ("test.json", "test"),
];

/// A loaded or generated dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Folder it was loaded from (empty for a generated dataset not yet written).
    pub dir: PathBuf,
    pub kind: TaskKind,
    pub vocab: Vocab,
    /// train.json (split `train` for records without a `type`).
    pub train: Vec<Example>,
    /// valid.json (split `valid` for records without a `type`).
    pub valid: Vec<Example>,
    /// test.json, split = its `type`.
    pub test: Vec<Example>,
    /// dataset.json, if present.
    pub manifest: Option<Manifest>,
    /// Atomic facts recomputed from the records.
    pub facts: Facts,
}

/// One record after tokenisation, before its shape is checked.
struct TokenizedRecord {
    split: String,
    target: Vec<u32>,
    prompt_len: usize,
}

impl Dataset {
    /// Loads a folder holding `vocab.json`, `train.json`, `valid.json` and `test.json` in the
    /// paper's format, and `dataset.json` if present. Without a manifest the task kind is read
    /// from the records: `<a>` in answers means complex, `<q>` in prompts comparison, otherwise
    /// composition with hops = longest prompt − 1.
    pub fn load(dir: &Path) -> Result<Dataset> {
        let vocab_path = dir.join("vocab.json");
        let tokens: Vec<String> =
            serde_json::from_slice(&read(&vocab_path)?).map_err(|e| json_error(&vocab_path, e))?;
        let vocab = Vocab::from_tokens(tokens).map_err(|e| TaskError::File {
            path: vocab_path.clone(),
            message: e.to_string(),
        })?;
        let manifest_path = dir.join("dataset.json");
        let manifest: Option<Manifest> = if manifest_path.exists() {
            let bytes = read(&manifest_path)?;
            Some(serde_json::from_slice(&bytes).map_err(|e| json_error(&manifest_path, e))?)
        } else {
            None
        };
        let paths = DATA_FILES.map(|(file, _)| dir.join(file));
        let records = [
            read_records(&paths[0], &vocab, DATA_FILES[0].1)?,
            read_records(&paths[1], &vocab, DATA_FILES[1].1)?,
            read_records(&paths[2], &vocab, DATA_FILES[2].1)?,
        ];
        let kind = match &manifest {
            Some(m) => m.spec.kind(),
            None => detect_kind(&vocab, &records),
        };
        if vocab.get("</a>").is_none() {
            return Err(TaskError::File {
                path: vocab_path,
                message: "has no `</a>` token".into(),
            });
        }
        let [train, valid, test] = records;
        let train = to_examples(&paths[0], kind, &vocab, train)?;
        let valid = to_examples(&paths[1], kind, &vocab, valid)?;
        let test = to_examples(&paths[2], kind, &vocab, test)?;
        let facts = Facts::build(
            kind,
            &vocab,
            &[
                (&paths[0], &train[..]),
                (&paths[1], &valid[..]),
                (&paths[2], &test[..]),
            ],
        )?;
        let dataset = Dataset {
            dir: dir.to_path_buf(),
            kind,
            vocab,
            train,
            valid,
            test,
            manifest,
            facts,
        };
        if let Some(m) = &dataset.manifest {
            dataset.check_manifest(m, &manifest_path)?;
        }
        Ok(dataset)
    }

    /// Generates the dataset `spec` describes from `seed`; same arguments, same dataset.
    pub fn generate(spec: &TaskSpec, seed: u64) -> Result<Dataset> {
        spec.validate()?;
        let files: GeneratedFiles = match spec {
            TaskSpec::Composition(p) => composition::generate(p, seed)?,
            TaskSpec::Comparison(p) => comparison::generate_comparison(p, seed)?,
            TaskSpec::Complex(p) => comparison::generate_complex(p, seed)?,
        };
        let vocab = Vocab::from_tokens(files.vocab)?;
        let kind = spec.kind();
        let facts = Facts::build(
            kind,
            &vocab,
            &[
                (Path::new(DATA_FILES[0].0), &files.train[..]),
                (Path::new(DATA_FILES[1].0), &files.valid[..]),
                (Path::new(DATA_FILES[2].0), &files.test[..]),
            ],
        )?;
        let mut dataset = Dataset {
            dir: PathBuf::new(),
            kind,
            vocab,
            train: files.train,
            valid: files.valid,
            test: files.test,
            manifest: None,
            facts,
        };
        dataset.manifest = Some(Manifest {
            spec: spec.clone(),
            seed,
            counts: dataset.counts(),
            vocab_size: dataset.vocab.len(),
            grokscope_version: GROKSCOPE_VERSION.to_string(),
        });
        Ok(dataset)
    }

    /// The record files with their examples: (file name, split of untyped records, examples).
    pub fn files(&self) -> [(&'static str, &'static str, &[Example]); 3] {
        [
            (DATA_FILES[0].0, DATA_FILES[0].1, &self.train),
            (DATA_FILES[1].0, DATA_FILES[1].1, &self.valid),
            (DATA_FILES[2].0, DATA_FILES[2].1, &self.test),
        ]
    }

    /// test.json grouped by split, sorted by split name.
    pub fn splits(&self) -> Vec<(String, Vec<&Example>)> {
        let mut groups: BTreeMap<&str, Vec<&Example>> = BTreeMap::new();
        for ex in &self.test {
            groups.entry(&ex.split).or_default().push(ex);
        }
        groups
            .into_iter()
            .map(|(split, examples)| (split.to_string(), examples))
            .collect()
    }

    /// Longest token sequence over all three files.
    pub fn max_len(&self) -> usize {
        self.files()
            .iter()
            .flat_map(|(_, _, examples)| examples.iter())
            .map(|ex| ex.tokens.len())
            .max()
            .unwrap_or(0)
    }

    /// Records per file and split, as in the manifest: the record's `type`, or `atomic` /
    /// `inferred` for records without one.
    pub fn counts(&self) -> BTreeMap<String, BTreeMap<String, usize>> {
        self.files()
            .iter()
            .map(|&(file, file_split, examples)| {
                let mut per_split = BTreeMap::new();
                for ex in examples {
                    let split = if ex.split != file_split {
                        ex.split.as_str()
                    } else if self.kind.is_atomic(ex.prompt_len) {
                        "atomic"
                    } else {
                        "inferred"
                    };
                    *per_split.entry(split.to_string()).or_insert(0) += 1;
                }
                (file.to_string(), per_split)
            })
            .collect()
    }

    /// Hash of what training sees: vocabulary tokens, every training example's tokens and loss
    /// positions, in order ([`util::hash::fnv1a`], 16 hex digits). Checkpoints record it, so that a
    /// checkpoint can be matched with the data it was trained on.
    pub fn fingerprint(&self) -> String {
        let mut bytes = Vec::new();
        for id in 0..self.vocab.len() as u32 {
            bytes.extend_from_slice(self.vocab.token(id).as_bytes());
            bytes.push(0);
        }
        for ex in &self.train {
            for &t in &ex.tokens {
                bytes.extend_from_slice(&t.to_le_bytes());
            }
            bytes.push(0xff);
            for &p in &ex.loss_positions {
                bytes.extend_from_slice(&(p as u32).to_le_bytes());
            }
            bytes.push(0xfe);
        }
        format!("{:016x}", util::hash::fnv1a(&bytes))
    }

    /// Writes the paper's files (and dataset.json when there is a manifest) into `dir`, all or
    /// nothing: into a temporary folder next to it, then renamed. An existing `dir` must be
    /// empty or hold the same dataset (same generator, parameters and seed), which is replaced.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let name = dir
            .file_name()
            .ok_or_else(|| TaskError::OutputOccupied {
                path: dir.to_path_buf(),
                message: "is not a folder name".into(),
            })?
            .to_string_lossy()
            .into_owned();
        let exists = self.check_output(dir)?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| TaskError::io(&parent, e))?;
        let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        remove_if_present(&staging)?;
        fs::create_dir(&staging).map_err(|e| TaskError::io(&staging, e))?;
        if let Err(err) = self.write_files(&staging) {
            let _ = fs::remove_dir_all(&staging);
            return Err(err);
        }
        let result = if exists {
            let previous = parent.join(format!(".{name}.old-{}", std::process::id()));
            replace_folder(dir, &staging, &previous)
        } else {
            fs::rename(&staging, dir).map_err(|e| TaskError::io(dir, e))
        };
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }

    /// Writes every file into the existing folder `dir` and syncs each to disk.
    fn write_files(&self, dir: &Path) -> Result<()> {
        let mut outputs: Vec<(&str, Vec<u8>)> =
            vec![("vocab.json", render_strings(self.vocab.file_tokens()))];
        for (file, file_split, examples) in self.files() {
            outputs.push((file, render_records(examples, &self.vocab, file_split)));
        }
        if let Some(m) = &self.manifest {
            let mut text = serde_json::to_vec_pretty(m)
                .map_err(|e| TaskError::Invalid(format!("cannot serialise the manifest: {e}")))?;
            text.push(b'\n');
            outputs.push(("dataset.json", text));
        }
        for (file, bytes) in outputs {
            let path = dir.join(file);
            let mut f = fs::File::create(&path).map_err(|e| TaskError::io(&path, e))?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| TaskError::io(&path, e))?;
        }
        Ok(())
    }

    /// Whether `dir` exists; fails if it holds anything but an earlier copy of this dataset.
    fn check_output(&self, dir: &Path) -> Result<bool> {
        let mut entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(TaskError::io(dir, e)),
        };
        if entries.next().is_none() {
            return Ok(true);
        }
        let occupied = |message: String| TaskError::OutputOccupied {
            path: dir.to_path_buf(),
            message: format!("{message}; choose another output folder or remove it"),
        };
        let manifest_path = dir.join("dataset.json");
        let bytes = match fs::read(&manifest_path) {
            Ok(bytes) => bytes,
            Err(_) => {
                return Err(occupied(
                    "is not empty and holds no dataset.json of a generated dataset".into(),
                ))
            }
        };
        let existing: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| occupied(format!("holds a dataset.json that cannot be read ({e})")))?;
        match &self.manifest {
            Some(m) if m.same_dataset(&existing) => Ok(true),
            _ => Err(occupied(format!(
                "already holds a different dataset ({}, seed {})",
                existing.spec.name(),
                existing.seed
            ))),
        }
    }

    /// Fails if the manifest's counts or vocabulary size disagree with the loaded files.
    fn check_manifest(&self, manifest: &Manifest, path: &Path) -> Result<()> {
        let mismatch = |message: String| TaskError::File {
            path: path.to_path_buf(),
            message,
        };
        if manifest.vocab_size != self.vocab.len() {
            return Err(mismatch(format!(
                "vocab_size {} disagrees with vocab.json ({} tokens + <pad>)",
                manifest.vocab_size,
                self.vocab.len() - 1
            )));
        }
        for (file, actual) in self.counts() {
            let stated = manifest.counts.get(&file).cloned().unwrap_or_default();
            if stated != actual {
                return Err(mismatch(format!(
                    "counts for {file} are {stated:?} but the file holds {actual:?}"
                )));
            }
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| TaskError::io(path, e))
}

fn json_error(path: &Path, e: serde_json::Error) -> TaskError {
    TaskError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TaskError::io(path, e)),
        _ => Ok(()),
    }
}

/// Moves `dir` aside to `previous`, moves `staging` to `dir`, then deletes `previous`; puts
/// `dir` back if the second move fails.
fn replace_folder(dir: &Path, staging: &Path, previous: &Path) -> Result<()> {
    remove_if_present(previous)?;
    fs::rename(dir, previous).map_err(|e| TaskError::io(dir, e))?;
    if let Err(e) = fs::rename(staging, dir) {
        let _ = fs::rename(previous, dir);
        return Err(TaskError::io(dir, e));
    }
    remove_if_present(previous)
}

/// Reads and tokenises one record file.
fn read_records(path: &Path, vocab: &Vocab, file_split: &str) -> Result<Vec<TokenizedRecord>> {
    let bytes = read(path)?;
    let raw: Vec<RawRecord> = serde_json::from_slice(&bytes).map_err(|e| json_error(path, e))?;
    let tokenized: Vec<Result<TokenizedRecord, String>> = raw
        .par_iter()
        .map(|r| {
            let prompt = vocab
                .encode(&r.input_text)
                .map_err(|e| format!("input_text: {e}"))?;
            let rest = r
                .target_text
                .strip_prefix(r.input_text.as_ref())
                .ok_or("target_text does not start with input_text")?;
            let mut target = prompt;
            let prompt_len = target.len();
            target.extend(
                vocab
                    .encode(rest)
                    .map_err(|e| format!("target_text: {e}"))?,
            );
            Ok(TokenizedRecord {
                split: r.split.as_deref().unwrap_or(file_split).to_string(),
                target,
                prompt_len,
            })
        })
        .collect();
    tokenized
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.map_err(|message| TaskError::Record {
                path: path.to_path_buf(),
                record: i + 1,
                message,
            })
        })
        .collect()
}

/// Checks the shape of every record of one file and turns it into an example.
fn to_examples(
    path: &Path,
    kind: TaskKind,
    vocab: &Vocab,
    records: Vec<TokenizedRecord>,
) -> Result<Vec<Example>> {
    let ids = SpecialIds::of(vocab);
    let examples: Vec<Result<Example, String>> = records
        .into_par_iter()
        .map(|r| Example::parse(kind, r.split, r.target, r.prompt_len, vocab, &ids))
        .collect();
    examples
        .into_iter()
        .enumerate()
        .map(|(i, ex)| {
            ex.map_err(|message| TaskError::Record {
                path: path.to_path_buf(),
                record: i + 1,
                message,
            })
        })
        .collect()
}

/// The task kind of a folder without a manifest, from its token patterns.
fn detect_kind(vocab: &Vocab, files: &[Vec<TokenizedRecord>]) -> TaskKind {
    let records = || files.iter().flatten();
    let answer_open = vocab.get("<a>");
    if records().any(|r| answer_open.is_some_and(|a| r.target[r.prompt_len..].contains(&a))) {
        return TaskKind::Complex;
    }
    let question_open = vocab.get("<q>");
    if records().any(|r| question_open.is_some_and(|q| r.target[..r.prompt_len].contains(&q))) {
        return TaskKind::Comparison;
    }
    let longest = records().map(|r| r.prompt_len).max().unwrap_or(2);
    TaskKind::Composition {
        hops: longest.max(2) - 1,
    }
}
