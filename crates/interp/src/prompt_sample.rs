//! Prompt samples: which examples an analysis looks at, their roles, and their corrupted variants.
//!
//! A prompt sample is a seeded random sample of one split (the paper: 300 `train_inferred` examples).
//! For each example it holds the model input (the prompt up to the answer position), the gold
//! answer, the role → token map of the task, and for each requested corruption the corrupted
//! input and the positions the corruption touches. [`PromptSample::write_jsonl`] writes all of it to
//! `examples.jsonl`, so every reported number can be recomputed from that file and the checkpoint.

use crate::error::{InterpError, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use tasks::{Dataset, Example, TaskKind};

/// Which examples to probe: `size` examples drawn without replacement from `split` with `seed`
/// (`size = None`: the whole split, in file order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleSpec {
    pub split: String,
    /// Number of examples drawn at random (`None`: the whole split).
    pub size: Option<usize>,
    pub seed: u64,
    /// These examples of the split (0-based indices into its list, in this order) instead of a
    /// random draw, e.g. the 300 the paper's scripts chose with `np.random.seed(0)`.
    pub indices: Option<Vec<usize>>,
}

/// Example indices from a file: a JSON array of integers (`[3, 17, …]`, as `json.dump` writes the
/// paper's `np.random.choice` draw) or integers separated by white space or commas.
pub fn read_example_indices(path: &std::path::Path) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(path).map_err(|e| InterpError::io(path, e))?;
    let bad = |reason: String| InterpError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let body = text.trim();
    let body = match (body.strip_prefix('['), body.strip_suffix(']')) {
        (Some(_), Some(_)) => &body[1..body.len() - 1],
        _ => body,
    };
    let indices = body
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<usize>().map_err(|_| {
                bad(format!(
                    "`{t}` is not an example index (a whole number ≥ 0)"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if indices.is_empty() {
        return Err(bad("no example index in the file".into()));
    }
    Ok(indices)
}

impl SampleSpec {
    /// The indices into a split of `len` examples this spec picks: the listed ones, a seeded
    /// sample of `size` (ascending), or all.
    fn choose(&self, len: usize) -> Result<Vec<usize>> {
        Ok(match (&self.indices, self.size) {
            (Some(indices), _) => checked_indices(indices, len, &self.split)?,
            (None, Some(size)) if size < len => {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                let mut idx = rand::seq::index::sample(&mut rng, len, size).into_vec();
                idx.sort_unstable();
                idx
            }
            (None, _) => (0..len).collect(),
        })
    }
}

/// `indices` when each is below `len` (the split's size) and none repeats.
fn checked_indices(indices: &[usize], len: usize, split: &str) -> Result<Vec<usize>> {
    let mut seen = vec![false; len];
    for &i in indices {
        let bad = |reason: String| InterpError::BadSpec {
            what: "example index",
            value: i.to_string(),
            reason,
        };
        if i >= len {
            return Err(bad(format!(
                "split `{split}` has {len} examples (0..{len})"
            )));
        }
        if std::mem::replace(&mut seen[i], true) {
            return Err(bad("it is listed twice".into()));
        }
    }
    Ok(indices.to_vec())
}

impl Default for SampleSpec {
    /// The paper's prompt sample: 300 random `train_inferred` examples.
    fn default() -> Self {
        SampleSpec {
            split: "train_inferred".into(),
            size: Some(300),
            seed: 0,
            indices: None,
        }
    }
}

/// A way of corrupting an example.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CorruptionSpec {
    /// The paper's same-type replacement of the token with this role, chosen so that the gold
    /// answer changes (paper-spec §5.1–5.2). Printed as the role, e.g. `r1`.
    Token(String),
    /// ROME's Gaussian noise (ν = 3 × the std of the token embeddings) added to the embeddings of
    /// these positions. Printed as `noise:` and the position names joined by `+`, e.g. `noise:h`.
    Noise(Vec<String>),
}

impl fmt::Display for CorruptionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionSpec::Token(role) => write!(f, "{role}"),
            CorruptionSpec::Noise(positions) => write!(f, "noise:{}", positions.join("+")),
        }
    }
}

impl FromStr for CorruptionSpec {
    type Err = InterpError;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("noise:") {
            let positions: Vec<String> = rest.split('+').map(|p| p.trim().to_string()).collect();
            if positions.iter().any(String::is_empty) {
                return Err(InterpError::spec(
                    "corruption",
                    s,
                    "expected noise:POS[+POS...], e.g. noise:h or noise:e1+mask",
                ));
            }
            Ok(CorruptionSpec::Noise(positions))
        } else if s.is_empty() || s.contains([':', '+', '@', ',']) {
            Err(InterpError::spec(
                "corruption",
                s,
                "expected a role name (e.g. r1) or noise:POS[+POS...]",
            ))
        } else {
            Ok(CorruptionSpec::Token(s.to_string()))
        }
    }
}

/// The paper's corruptions for a task ([`tasks::corruptible_roles`]): composition
/// `h, r1, …, rk`; comparison `a, e1, e2`.
pub fn default_corruptions(kind: TaskKind) -> Vec<CorruptionSpec> {
    tasks::corruptible_roles(kind)
        .into_iter()
        .map(CorruptionSpec::Token)
        .collect()
}

/// One corrupted variant of a sampled prompt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CorruptedInput {
    /// Model input of the corrupted run (`[T]`; equal to the clean input for noise).
    pub tokens: Vec<u32>,
    /// Positions whose states the corruption changes at layer 0 (the paper's patched positions).
    pub positions: Vec<usize>,
    /// Seed of the Gaussian noise (noise corruptions only); see [`noise_values`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_seed: Option<u64>,
}

/// One example of a prompt sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SampledPrompt {
    /// Index of the example within its split (file order).
    pub index: usize,
    /// Model input: the example's tokens up to and including the answer position (`[T]`).
    pub tokens: Vec<u32>,
    /// Gold answer token id (the next token after the answer position).
    pub gold: u32,
    /// Role → token id (bridge entities, values, labels, …) as the tasks crate defines them.
    pub roles: BTreeMap<String, u32>,
    /// Corruption name → corrupted input; a corruption the example does not admit is absent.
    pub corruptions: BTreeMap<String, CorruptedInput>,
}

/// A prompt sample: examples of one split, all with the same prompt shape.
#[derive(Clone, Debug)]
pub struct PromptSample {
    pub kind: TaskKind,
    pub spec: SampleSpec,
    /// Names of the `T` input positions (`h, r1, r2` / `a, q, e1, mask, e2`).
    pub positions: Vec<String>,
    /// Position whose next-token prediction is the answer (`T − 1`).
    pub answer_pos: usize,
    /// The corruptions built for every example (where admissible).
    pub corruptions: Vec<CorruptionSpec>,
    pub examples: Vec<SampledPrompt>,
}

/// All split names of a dataset with their examples: the `type`s of test.json plus `train` and
/// `valid` (unless test.json already uses those names).
pub fn dataset_splits(ds: &Dataset) -> Vec<(String, Vec<&Example>)> {
    let mut splits: BTreeMap<String, Vec<&Example>> = ds.splits().into_iter().collect();
    splits
        .entry("train".into())
        .or_insert_with(|| ds.train.iter().collect());
    splits
        .entry("valid".into())
        .or_insert_with(|| ds.valid.iter().collect());
    splits.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// Standard-normal values (`n` of them) from a ChaCha8 stream seeded with `seed`, by the
/// Box–Muller transform. The noise of a noise corruption is `ν · noise_values(seed, |P| · d)`,
/// laid out position-major (`[|P|, d_model]`, positions in ascending order).
pub fn noise_values(seed: u64, n: usize) -> Vec<f32> {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = 2.0 * std::f64::consts::PI * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    out
}

impl PromptSample {
    /// The clean prompts of every example, `[N, T]` i64 on `device`.
    pub fn clean_tokens(&self, device: tch::Device) -> tch::Tensor {
        crate::states::tokens_tensor(self.examples.iter().map(|e| e.tokens.as_slice()), device)
    }

    /// Draws the prompt sample of `spec` from `ds` and builds every corruption of `corruptions` for
    /// each example (the paper's rules through `tasks::corrupt`; noise corruptions get a seed).
    ///
    /// Errors: unknown split, empty prompt sample, mixed prompt shapes, a corruption naming a role or
    /// position the task does not have, or a corruption no example admits.
    pub fn build(
        ds: &Dataset,
        spec: &SampleSpec,
        corruptions: &[CorruptionSpec],
    ) -> Result<PromptSample> {
        let splits = dataset_splits(ds);
        let pool = split_pool(&splits, &spec.split)?;
        let chosen = spec.choose(pool.len())?;
        let Some(&first_index) = chosen.first() else {
            return Err(InterpError::EmptyProbeSet {
                split: spec.split.clone(),
            });
        };
        let first = pool[first_index];
        let first_shape = prompt_shape(ds, first)?;
        let corruptor = Corruptor {
            ds,
            spec,
            positions: position_names(ds.kind, first),
            corruptible: corruptible_roles(ds.kind, first),
        };
        let mut examples = Vec::with_capacity(chosen.len());
        for &index in &chosen {
            let ex = pool[index];
            let this_shape = prompt_shape(ds, ex)?;
            if this_shape != first_shape {
                return Err(InterpError::MixedPromptShapes {
                    split: spec.split.clone(),
                    first: describe_shape(&first_shape),
                    other: describe_shape(&this_shape),
                });
            }
            examples.push(corruptor.example(index, ex, corruptions)?);
        }
        check_every_corruption_usable(&examples, corruptions)?;
        Ok(PromptSample {
            kind: ds.kind,
            spec: spec.clone(),
            positions: corruptor.positions,
            answer_pos: first.answer_pos,
            corruptions: corruptions.to_vec(),
            examples,
        })
    }

    /// Number of input positions `T`.
    pub fn seq_len(&self) -> usize {
        self.answer_pos + 1
    }

    /// Index of a position name (`last` = the answer position).
    pub fn position(&self, name: &str) -> Result<usize> {
        if name == "last" {
            return Ok(self.answer_pos);
        }
        position_index(&self.positions, name)
    }

    /// Name of a set of positions: the single name, `all` for every position, else the names
    /// joined by `+` (e.g. `e1+mask`).
    pub fn position_set_name(&self, positions: &[usize]) -> String {
        if positions.len() == self.positions.len() && positions.len() > 1 {
            return "all".into();
        }
        positions
            .iter()
            .map(|&p| self.positions[p].as_str())
            .collect::<Vec<_>>()
            .join("+")
    }

    /// Indices (into `examples`) of the examples that admit corruption `name`.
    pub fn admitting(&self, name: &str) -> Vec<usize> {
        self.examples
            .iter()
            .enumerate()
            .filter(|(_, e)| e.corruptions.contains_key(name))
            .map(|(i, _)| i)
            .collect()
    }

    /// The examples that admit the token corruption `corruption` as a prompt batch for the
    /// token-level core: clean and corrupted tokens, the gold answer at the answer position, no
    /// alternatives (see [`crate::tokens::PromptBatch::fill_alternatives`]). Returns the batch
    /// and the indices (into `examples`) of its rows. Noise corruptions have no corrupted
    /// tokens: an error.
    pub fn prompt_batch(
        &self,
        corruption: &CorruptionSpec,
    ) -> Result<(crate::tokens::PromptBatch, Vec<usize>)> {
        let name = corruption.to_string();
        if matches!(corruption, CorruptionSpec::Noise(_)) {
            return Err(InterpError::spec(
                "corruption",
                name,
                "needs corrupted tokens: give a role, e.g. r1",
            ));
        }
        let rows = self.admitting(&name);
        if rows.is_empty() {
            return Err(InterpError::spec(
                "corruption",
                name,
                "no sampled prompt admits it",
            ));
        }
        let device = tch::Device::Cpu;
        let clean = crate::states::tokens_tensor(
            rows.iter().map(|&i| self.examples[i].tokens.as_slice()),
            device,
        );
        let corrupted = crate::states::tokens_tensor(
            rows.iter()
                .map(|&i| self.examples[i].corruptions[&name].tokens.as_slice()),
            device,
        );
        let gold: Vec<Vec<i64>> = rows
            .iter()
            .map(|&i| vec![i64::from(self.examples[i].gold)])
            .collect();
        let sets = crate::metric::TokenSets::from_rows(&gold, &vec![Vec::new(); rows.len()])?;
        let answer_pos = vec![self.answer_pos as i64; rows.len()];
        let batch =
            crate::tokens::PromptBatch::new(clean, Some(corrupted), Some(answer_pos), sets)?;
        Ok((batch, rows))
    }

    /// Role names shared by all examples.
    pub fn role_names(&self) -> Vec<String> {
        self.examples
            .first()
            .map(|e| e.roles.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Checks that a role exists in this prompt sample.
    pub fn check_role(&self, role: &str) -> Result<()> {
        match self.examples.first() {
            Some(e) if e.roles.contains_key(role) => Ok(()),
            Some(e) => Err(unknown_role(role, &e.roles)),
            None => Err(InterpError::EmptyProbeSet {
                split: self.spec.split.clone(),
            }),
        }
    }

    /// Writes `examples.jsonl`: one JSON object per example with `index`, `split`, `tokens`,
    /// `text` (token strings), `answer_pos`, `gold`, `roles` and `corruptions` (each with its
    /// `tokens`, `positions` and, for noise, `noise_seed`).
    pub fn write_jsonl(&self, path: &Path, vocab: &tasks::Vocab) -> Result<()> {
        #[derive(Serialize)]
        struct Line<'a> {
            index: usize,
            split: &'a str,
            tokens: &'a [u32],
            text: Vec<&'a str>,
            answer_pos: usize,
            gold: u32,
            roles: &'a BTreeMap<String, u32>,
            corruptions: &'a BTreeMap<String, CorruptedInput>,
        }
        let mut buf = Vec::new();
        for e in &self.examples {
            let line = Line {
                index: e.index,
                split: &self.spec.split,
                tokens: &e.tokens,
                text: e.tokens.iter().map(|&t| vocab.token(t)).collect(),
                answer_pos: self.answer_pos,
                gold: e.gold,
                roles: &e.roles,
                corruptions: &e.corruptions,
            };
            serde_json::to_writer(&mut buf, &line).map_err(|source| InterpError::Json {
                path: path.to_path_buf(),
                source,
            })?;
            buf.push(b'\n');
        }
        util::fs::write_atomic(path, &buf).map_err(|e| InterpError::io(path, e))
    }
}

/// Names of the model-input positions (`0..=answer_pos`) of an example
/// ([`tasks::input_position_names`]).
pub fn position_names(kind: TaskKind, ex: &Example) -> Vec<String> {
    tasks::input_position_names(kind, ex.prompt_len, ex.answer_pos)
}

/// The roles the paper's corruption rules apply to ([`tasks::corruptible_roles`]); none for
/// atomic prompts.
pub fn corruptible_roles(kind: TaskKind, ex: &Example) -> Vec<String> {
    if kind.is_atomic(ex.prompt_len) || ex.prompt_len != kind.inferred_prompt_len() {
        return Vec::new();
    }
    tasks::corruptible_roles(kind)
}

fn position_index(positions: &[String], name: &str) -> Result<usize> {
    positions
        .iter()
        .position(|p| p == name)
        .ok_or_else(|| InterpError::UnknownPosition {
            position: name.to_string(),
            available: positions.join(", "),
        })
}

fn unknown_role(role: &str, roles: &BTreeMap<String, u32>) -> InterpError {
    InterpError::UnknownRole {
        role: role.to_string(),
        available: roles.keys().cloned().collect::<Vec<_>>().join(", "),
    }
}

/// The examples of `split` among `splits`; an error lists the splits there are.
fn split_pool<'d>(
    splits: &'d [(String, Vec<&'d Example>)],
    split: &str,
) -> Result<&'d [&'d Example]> {
    match splits.iter().find(|(name, _)| name == split) {
        Some((_, pool)) => Ok(pool),
        None => Err(InterpError::UnknownSplit {
            split: split.to_string(),
            available: splits
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// A prompt's shape: its answer position and role names; a prompt sample has one shape.
fn prompt_shape(ds: &Dataset, ex: &Example) -> Result<(usize, Vec<String>)> {
    Ok((
        ex.answer_pos,
        tasks::roles(ds, ex)?.keys().cloned().collect(),
    ))
}

/// Builds the corrupted inputs of one prompt sample's examples.
struct Corruptor<'a> {
    ds: &'a Dataset,
    spec: &'a SampleSpec,
    /// The prompts' position names.
    positions: Vec<String>,
    /// The roles a token corruption may replace.
    corruptible: Vec<String>,
}

impl Corruptor<'_> {
    /// The sampled prompt of `ex` (at `index` in its split) with every corruption it admits.
    fn example(
        &self,
        index: usize,
        ex: &Example,
        corruptions: &[CorruptionSpec],
    ) -> Result<SampledPrompt> {
        let tokens = ex.tokens[..=ex.answer_pos].to_vec();
        let mut corrupted = BTreeMap::new();
        for c in corruptions {
            let name = c.to_string();
            let seed = util::seed::mix_all(
                self.spec.seed,
                &[index as u64, util::hash::fnv1a(name.as_bytes())],
            );
            let input = match c {
                CorruptionSpec::Token(role) => {
                    self.token_corruption(ex, role, seed, tokens.len())?
                }
                CorruptionSpec::Noise(names) => Some(self.noise_corruption(names, seed, &tokens)?),
            };
            if let Some(input) = input {
                corrupted.insert(name, input);
            }
        }
        Ok(SampledPrompt {
            index,
            tokens,
            gold: ex.answer,
            roles: tasks::roles(self.ds, ex)?,
            corruptions: corrupted,
        })
    }

    /// `ex` with the token of `role` replaced by the paper's rule (`tasks::corrupt`), cut to
    /// `len` tokens; `None` when the example admits no such corruption.
    fn token_corruption(
        &self,
        ex: &Example,
        role: &str,
        seed: u64,
        len: usize,
    ) -> Result<Option<CorruptedInput>> {
        if !self.corruptible.iter().any(|r| r == role) {
            return Err(InterpError::UnknownRole {
                role: role.to_string(),
                available: if self.corruptible.is_empty() {
                    format!("none: `{}` prompts have no corruption", self.spec.split)
                } else {
                    self.corruptible.join(", ")
                },
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ds = self.ds;
        Ok(
            tasks::corrupt(ds, &ds.facts, ex, role, &mut rng).map(|mut cor| {
                cor.tokens.truncate(len);
                CorruptedInput {
                    tokens: cor.tokens,
                    positions: cor.patch_positions,
                    noise_seed: None,
                }
            }),
        )
    }

    /// The clean tokens with Gaussian noise (drawn from `seed`) on the named positions.
    fn noise_corruption(
        &self,
        names: &[String],
        seed: u64,
        tokens: &[u32],
    ) -> Result<CorruptedInput> {
        let mut positions = names
            .iter()
            .map(|n| position_index(&self.positions, n))
            .collect::<Result<Vec<_>>>()?;
        positions.sort_unstable();
        positions.dedup();
        Ok(CorruptedInput {
            tokens: tokens.to_vec(),
            positions,
            noise_seed: Some(seed),
        })
    }
}

/// Every corruption must give at least one example a same-length corrupted prompt.
fn check_every_corruption_usable(
    examples: &[SampledPrompt],
    corruptions: &[CorruptionSpec],
) -> Result<()> {
    for c in corruptions {
        let name = c.to_string();
        let usable = examples.iter().any(|e| {
            e.corruptions
                .get(&name)
                .is_some_and(|ci| ci.tokens.len() == e.tokens.len())
        });
        if !usable {
            return Err(InterpError::NoCorruptedExamples { corruption: name });
        }
    }
    Ok(())
}

fn describe_shape((answer_pos, roles): &(usize, Vec<String>)) -> String {
    format!("{} positions, roles {}", answer_pos + 1, roles.join(","))
}
