//! Atomic facts recomputed from a dataset's records: composition tails, comparison values, which
//! facts are ID, and the label token of each comparison outcome.

use crate::error::{Result, TaskError};
use crate::example::{Example, TaskKind};
use crate::vocab::Vocab;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

/// Hasher for packed `(u32, u32)` keys: the SplitMix64 finaliser ([`util::seed::finalize`]), fast
/// and well mixed.
#[derive(Default, Clone, Copy)]
pub(crate) struct PairHasher(u64);

impl Hasher for PairHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = util::seed::finalize((self.0 ^ n).wrapping_add(util::seed::GOLDEN_GAMMA));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Hash map keyed by packed id pairs.
pub(crate) type PairMap<V> = HashMap<u64, V, BuildHasherDefault<PairHasher>>;

/// Packs `(left, right)` into one map key.
pub(crate) fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// Where a record came from: index into the dataset's files and 0-based record index.
#[derive(Clone, Copy, Debug)]
struct Source {
    file: usize,
    record: usize,
}

/// The files a dataset's facts are rebuilt from (train.json first), with the task kind and
/// vocabulary their records are read with.
#[derive(Clone, Copy)]
struct SourceFiles<'a> {
    kind: TaskKind,
    vocab: &'a Vocab,
    files: &'a [(&'a Path, &'a [Example])],
}

impl<'a> SourceFiles<'a> {
    /// The atomic records (`atomic`) or the inferred ones of every file, in file order.
    fn records(&self, atomic: bool) -> impl Iterator<Item = (Source, &'a Example)> + '_ {
        self.files
            .iter()
            .enumerate()
            .flat_map(move |(file, (_, examples))| {
                examples
                    .iter()
                    .enumerate()
                    .filter(move |(_, ex)| self.kind.is_atomic(ex.prompt_len) == atomic)
                    .map(move |(record, ex)| (Source { file, record }, ex))
            })
    }

    /// The error for record `source` (its path and 1-based record number).
    fn record_error(&self, source: Source, message: String) -> TaskError {
        TaskError::Record {
            path: self.files[source.file].0.to_path_buf(),
            record: source.record + 1,
            message,
        }
    }

    /// `<file name> record <N>`, for messages that point at a second record.
    fn locate(&self, source: Source) -> String {
        let path = self.files[source.file].0;
        let name = path.file_name().map_or(path, Path::new);
        format!("{} record {}", name.display(), source.record + 1)
    }
}

/// One atomic fact: (head, relation) → tail or (entity, attribute) → value.
#[derive(Clone, Copy, Debug)]
struct Fact {
    object: u32,
    /// Stated in train.json.
    in_train: bool,
    /// A hop or operand of some training inferred fact.
    used_in_training: bool,
    source: Source,
}

/// The atomic facts of a dataset, with the ID/OOD status the paper's analysis scripts derive:
/// an atomic fact is ID if it is in train.json and some training inferred fact uses it.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    atomic: PairMap<Fact>,
    /// Composition: each head's ID (relation, tail) pairs, sorted.
    id_edges: BTreeMap<u32, Vec<(u32, u32)>>,
    /// Comparison/complex: each attribute's ID (entity, value) pairs, sorted.
    id_values: BTreeMap<u32, Vec<(u32, u32)>>,
    /// Comparison/complex: label token of (attribute, ordering of v1 against v2).
    labels: HashMap<(u32, Ordering), u32>,
    /// Comparison/complex: the number N of each value token `<N>`.
    value_numbers: HashMap<u32, i64>,
}

/// The operands of an inferred comparison prompt `<a><q><e1><mask><e2>…`: (a, e1, e2).
pub(crate) fn comparison_operands(prompt: &[u32]) -> (u32, u32, u32) {
    (prompt[0], prompt[2], prompt[4])
}

/// The (head|entity, relation|attribute) of an atomic prompt of `kind`.
pub(crate) fn atomic_key(kind: TaskKind, prompt: &[u32]) -> (u32, u32) {
    match kind {
        TaskKind::Complex => (prompt[1], prompt[2]),
        _ => (prompt[0], prompt[1]),
    }
}

impl Facts {
    /// Recomputes the facts from `files` (train.json first, then the others, each with the
    /// path used in messages). Atomic records of every file are facts (complex keeps the OOD
    /// ones out of train.json); every inferred answer is checked against them.
    pub(crate) fn build(
        kind: TaskKind,
        vocab: &Vocab,
        files: &[(&Path, &[Example])],
    ) -> Result<Facts> {
        let mut facts = Facts::default();
        let sources = SourceFiles { kind, vocab, files };
        let comparing = !matches!(kind, TaskKind::Composition { .. });
        facts.collect_atomic(&sources)?;
        if comparing {
            facts.learn_labels(&sources)?;
        } else {
            facts.check_chains(&sources)?;
        }
        facts.mark_training_use(kind, files[0].1);
        facts.index_id_facts(comparing);
        Ok(facts)
    }

    /// Records every atomic record of `files` as a fact (train.json's as stated in training),
    /// failing on two objects for the same (head|entity, relation|attribute); comparison and
    /// complex values must be number tokens `<N>`, whose numbers are kept.
    fn collect_atomic(&mut self, sources: &SourceFiles) -> Result<()> {
        let SourceFiles { kind, vocab, .. } = *sources;
        let comparing = !matches!(kind, TaskKind::Composition { .. });
        for (source, ex) in sources.records(true) {
            let (left, right) = atomic_key(kind, ex.prompt());
            let entry = self.atomic.entry(pair_key(left, right)).or_insert(Fact {
                object: ex.answer,
                in_train: false,
                used_in_training: false,
                source,
            });
            if entry.object != ex.answer {
                let what = if comparing { "values" } else { "tails" };
                return Err(sources.record_error(
                    source,
                    format!(
                        "two different {what} for ({}, {}): `{}` here, `{}` in {}",
                        vocab.token(left),
                        vocab.token(right),
                        vocab.token(ex.answer),
                        vocab.token(entry.object),
                        sources.locate(entry.source)
                    ),
                ));
            }
            entry.in_train |= source.file == 0;
            if comparing {
                let number = value_number(vocab.token(ex.answer)).ok_or_else(|| {
                    sources.record_error(
                        source,
                        format!(
                            "value `{}` is not a number token <N>",
                            vocab.token(ex.answer)
                        ),
                    )
                })?;
                self.value_numbers.insert(ex.answer, number);
            }
        }
        Ok(())
    }

    /// Indexes the ID facts (stated in train.json and used in training), sorted: by head
    /// (composition) or by attribute (`comparing`).
    fn index_id_facts(&mut self, comparing: bool) {
        for (&key, fact) in &self.atomic {
            if !(fact.in_train && fact.used_in_training) {
                continue;
            }
            let (left, right) = ((key >> 32) as u32, key as u32);
            if comparing {
                self.id_values
                    .entry(right)
                    .or_default()
                    .push((left, fact.object));
            } else {
                self.id_edges
                    .entry(left)
                    .or_default()
                    .push((right, fact.object));
            }
        }
        for list in self
            .id_edges
            .values_mut()
            .chain(self.id_values.values_mut())
        {
            list.sort_unstable();
        }
    }

    /// Composition: every inferred answer must equal the tail its chain reaches, when the
    /// chain's facts are all known.
    fn check_chains(&self, sources: &SourceFiles) -> Result<()> {
        let SourceFiles { kind, vocab, files } = *sources;
        for (file, (_, examples)) in files.iter().enumerate() {
            let bad = examples
                .par_iter()
                .enumerate()
                .find_map_first(|(record, ex)| {
                    if kind.is_atomic(ex.prompt_len) {
                        return None;
                    }
                    let prompt = ex.prompt();
                    let tail = self.follow(prompt[0], &prompt[1..])?;
                    (tail != ex.answer).then_some((record, tail))
                });
            if let Some((record, tail)) = bad {
                let ex = &examples[record];
                return Err(sources.record_error(
                    Source { file, record },
                    format!(
                        "answer `{}` does not follow from the atomic facts, which lead from \
                         `{}` to `{}`",
                        vocab.token(ex.answer),
                        vocab.decode(ex.prompt()),
                        vocab.token(tail)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Comparison/complex: learns the label token of each (attribute, ordering) from the inferred
    /// records whose values are known, and fails on two labels for the same outcome.
    fn learn_labels(&mut self, sources: &SourceFiles) -> Result<()> {
        let vocab = sources.vocab;
        let mut first_seen: HashMap<(u32, Ordering), Source> = HashMap::new();
        for (source, ex) in sources.records(false) {
            let (attribute, e1, e2) = comparison_operands(ex.prompt());
            let Some(ordering) = self.ordering(attribute, e1, e2) else {
                continue;
            };
            let label = *self
                .labels
                .entry((attribute, ordering))
                .or_insert(ex.answer);
            let first = *first_seen.entry((attribute, ordering)).or_insert(source);
            if label != ex.answer {
                return Err(sources.record_error(
                    source,
                    format!(
                        "label `{}` contradicts `{}` in {} for the same comparison \
                             ({} {} {} by the atomic values)",
                        vocab.token(ex.answer),
                        vocab.token(label),
                        sources.locate(first),
                        vocab.token(e1),
                        match ordering {
                            Ordering::Less => "<",
                            Ordering::Equal => "=",
                            Ordering::Greater => ">",
                        },
                        vocab.token(e2)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Marks the atomic facts that training inferred facts use.
    fn mark_training_use(&mut self, kind: TaskKind, train: &[Example]) {
        for ex in train {
            if kind.is_atomic(ex.prompt_len) {
                continue;
            }
            let prompt = ex.prompt();
            match kind {
                TaskKind::Composition { .. } => {
                    let mut entity = prompt[0];
                    for &relation in &prompt[1..] {
                        match self.atomic.get_mut(&pair_key(entity, relation)) {
                            Some(fact) => {
                                fact.used_in_training = true;
                                entity = fact.object;
                            }
                            None => break,
                        }
                    }
                }
                TaskKind::Comparison | TaskKind::Complex => {
                    let (attribute, e1, e2) = comparison_operands(prompt);
                    for entity in [e1, e2] {
                        if let Some(fact) = self.atomic.get_mut(&pair_key(entity, attribute)) {
                            fact.used_in_training = true;
                        }
                    }
                }
            }
        }
    }

    /// Number of atomic facts.
    pub fn len(&self) -> usize {
        self.atomic.len()
    }

    /// True if there are no atomic facts.
    pub fn is_empty(&self) -> bool {
        self.atomic.is_empty()
    }

    /// Composition: tail of (head, relation).
    pub fn tail(&self, head: u32, relation: u32) -> Option<u32> {
        self.atomic.get(&pair_key(head, relation)).map(|f| f.object)
    }

    /// Comparison/complex: value token of (entity, attribute).
    pub fn value(&self, entity: u32, attribute: u32) -> Option<u32> {
        self.tail(entity, attribute)
    }

    /// Composition: the entity reached after each hop of `relations` from `head`
    /// (length = relations.len(); the last one is the answer), if every hop is a known fact.
    pub fn chain(&self, head: u32, relations: &[u32]) -> Option<Vec<u32>> {
        let mut entity = head;
        relations
            .iter()
            .map(|&relation| {
                entity = self.tail(entity, relation)?;
                Some(entity)
            })
            .collect()
    }

    /// Composition: the entity reached from `from` by following `relations` (`from` itself when
    /// there are none), if every hop is a known fact.
    pub fn follow(&self, from: u32, relations: &[u32]) -> Option<u32> {
        relations
            .iter()
            .try_fold(from, |entity, &relation| self.tail(entity, relation))
    }

    /// Composition: the bridge entities of a query (every hop's entity but the answer).
    pub fn bridges(&self, head: u32, relations: &[u32]) -> Option<Vec<u32>> {
        let mut chain = self.chain(head, relations)?;
        chain.pop();
        Some(chain)
    }

    /// True if the atomic fact (head|entity, relation|attribute) is ID: stated in train.json and
    /// used by a training inferred fact.
    pub fn is_id(&self, left: u32, right: u32) -> bool {
        self.atomic
            .get(&pair_key(left, right))
            .is_some_and(|f| f.in_train && f.used_in_training)
    }

    /// Composition: heads that have ID facts, ascending (the paper's `h2rt_train` keys).
    pub fn id_heads(&self) -> Vec<u32> {
        self.id_edges.keys().copied().collect()
    }

    /// Composition: the ID (relation, tail) pairs of `head`, sorted.
    pub fn id_edges(&self, head: u32) -> &[(u32, u32)] {
        self.id_edges.get(&head).map_or(&[], Vec::as_slice)
    }

    /// Comparison/complex: attributes that have ID facts, ascending.
    pub fn id_attributes(&self) -> Vec<u32> {
        self.id_values.keys().copied().collect()
    }

    /// Comparison/complex: the ID (entity, value) pairs of `attribute`, sorted.
    pub fn id_values(&self, attribute: u32) -> &[(u32, u32)] {
        self.id_values.get(&attribute).map_or(&[], Vec::as_slice)
    }

    /// Comparison/complex: N of the value token `<N>`.
    pub fn value_number(&self, value: u32) -> Option<i64> {
        self.value_numbers.get(&value).copied()
    }

    /// Comparison/complex: how e1's value compares with e2's under `attribute`.
    pub fn ordering(&self, attribute: u32, e1: u32, e2: u32) -> Option<Ordering> {
        let v1 = self.value_number(self.value(e1, attribute)?)?;
        let v2 = self.value_number(self.value(e2, attribute)?)?;
        Some(v1.cmp(&v2))
    }

    /// Comparison/complex: label token for `ordering` under `attribute`, as seen in the records.
    pub fn label(&self, attribute: u32, ordering: Ordering) -> Option<u32> {
        self.labels.get(&(attribute, ordering)).copied()
    }
}

/// N of a value token `<N>` (the paper compares values as integers).
fn value_number(token: &str) -> Option<i64> {
    token.strip_prefix('<')?.strip_suffix('>')?.parse().ok()
}
