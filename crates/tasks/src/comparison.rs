//! Comparison and complex-reasoning generators (paper §1.2, §1.3).
//!
//! Both draw one value per (entity, attribute) and, per attribute, a fresh ID/OOD split of the
//! entities. Every unordered pair of entities is classified once per attribute (OOD–OOD: OOD
//! test; ID–ID: ID test with probability `id_test_ratio`, else training; mixed: dropped, or the
//! complex task's "cross" training pool) and stands for both of its orders. Pools hold pair
//! indices, never rendered records; training sets are sampled by index.

use crate::error::{Result, TaskError};
use crate::example::{AnswerFrame, Example};
use crate::reach::AtLeastGraph;
use crate::sample::{choose, choose_indices, count_for_ratio, stream, Purpose};
use crate::spec::{ComparisonParams, ComplexParams};
use crate::vocab::{special, SPECIAL_TOKENS};
use crate::GeneratedFiles;
use rand::distributions::Bernoulli;
use rand::Rng;
use rayon::prelude::*;
use std::cmp::Ordering;

/// The sizes shared by both tasks.
#[derive(Clone, Copy)]
struct Sizes {
    entities: usize,
    attributes: usize,
    values: usize,
}

/// One ordered comparison query: how `e1` compares with `e2` under `attribute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Query {
    attribute: u32,
    e1: u32,
    e2: u32,
}

/// One atomic fact: the value of `entity` under `attribute`.
#[derive(Clone, Copy, Debug)]
struct Atom {
    attribute: u32,
    entity: u32,
}

/// The values of every entity: `value[entity * attributes + attribute]` ∈ 0..values.
struct Values {
    attributes: usize,
    value: Vec<u32>,
}

impl Values {
    fn of(&self, entity: u32, attribute: u32) -> u32 {
        self.value[entity as usize * self.attributes + attribute as usize]
    }

    fn ordering(&self, q: Query) -> Ordering {
        self.of(q.e1, q.attribute).cmp(&self.of(q.e2, q.attribute))
    }
}

/// Label index of an ordering: 0 for <, 1 for =, 2 for > (tokens `<attr_k_0>`…`<attr_k_2>`).
fn label_index(ordering: Ordering) -> u32 {
    match ordering {
        Ordering::Less => 0,
        Ordering::Equal => 1,
        Ordering::Greater => 2,
    }
}

/// Unordered pairs `[e1, e2]` (e1 < e2) of each attribute; index `i` of the pool is the pair
/// `i / 2`, in its own order for even `i` and flipped for odd `i`.
#[derive(Default)]
struct PairPool {
    by_attribute: Vec<Vec<[u32; 2]>>,
    /// Ordered index of the first pair of each attribute, then the total.
    starts: Vec<u64>,
}

impl PairPool {
    fn new(by_attribute: Vec<Vec<[u32; 2]>>) -> PairPool {
        let mut starts = vec![0u64];
        for pairs in &by_attribute {
            starts.push(starts.last().copied().unwrap_or(0) + 2 * pairs.len() as u64);
        }
        PairPool {
            by_attribute,
            starts,
        }
    }

    /// Number of ordered queries.
    fn len(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    fn get(&self, index: u64) -> Query {
        let attribute = self.starts.partition_point(|&s| s <= index) - 1;
        let local = index - self.starts[attribute];
        let [a, b] = self.by_attribute[attribute][(local / 2) as usize];
        let (e1, e2) = if local % 2 == 1 { (b, a) } else { (a, b) };
        Query {
            attribute: attribute as u32,
            e1,
            e2,
        }
    }

    fn sample(&self, rng: &mut impl Rng, count: u64) -> Vec<Query> {
        choose_indices(rng, self.len(), count)
            .into_iter()
            .map(|i| self.get(i))
            .collect()
    }
}

/// The pairs and entity split of every attribute.
struct Pools {
    id_atomic: Vec<Atom>,
    ood_atomic: Vec<Atom>,
    /// ID–ID pairs kept for training (complex: "topleft").
    id_train: PairPool,
    id_test: PairPool,
    ood_test: PairPool,
    /// ID–OOD pairs (complex only; comparison drops them).
    cross: PairPool,
    /// OOD entities of each attribute, ascending.
    ood_entities: Vec<Vec<u32>>,
}

/// Draws the values, splits the entities of each attribute and classifies every pair.
fn draw_pools(
    sizes: Sizes,
    ood_ratio: f64,
    id_test_ratio: f64,
    keep_cross: bool,
    seed: u64,
) -> Result<(Values, Pools)> {
    let values = draw_values(sizes, seed);
    let classify = PairClassifier {
        entities: sizes.entities,
        n_ood: count_for_ratio(ood_ratio, sizes.entities),
        test_draw: Bernoulli::new(id_test_ratio)
            .map_err(|e| TaskError::param("id-test-ratio", e.to_string()))?,
        keep_cross,
        seed,
    };
    let per_attribute: Vec<AttributePairs> = (0..sizes.attributes as u64)
        .into_par_iter()
        .map(|attribute| classify.attribute(attribute))
        .collect();
    Ok((values, Pools::collect(per_attribute)))
}

/// One value in `0..values` per (entity, attribute), entity-major.
fn draw_values(sizes: Sizes, seed: u64) -> Values {
    let mut rng = stream(seed, Purpose::Values, 0);
    let value = (0..sizes.entities * sizes.attributes)
        .map(|_| rng.gen_range(0..sizes.values as u32))
        .collect();
    Values {
        attributes: sizes.attributes,
        value,
    }
}

/// The entity split and classified pairs of one attribute.
struct AttributePairs {
    /// Whether each entity is OOD under this attribute.
    ood: Vec<bool>,
    id_train: Vec<[u32; 2]>,
    id_test: Vec<[u32; 2]>,
    ood_test: Vec<[u32; 2]>,
    cross: Vec<[u32; 2]>,
}

/// Splits one attribute's entities into ID and OOD and classifies its pairs, from the
/// attribute's own random streams (so the result does not depend on the thread count).
struct PairClassifier {
    entities: usize,
    /// OOD entities per attribute.
    n_ood: usize,
    /// True: an ID–ID pair is an ID test pair rather than a training pair.
    test_draw: Bernoulli,
    /// Keep ID–OOD pairs (complex) rather than dropping them (comparison).
    keep_cross: bool,
    seed: u64,
}

impl PairClassifier {
    fn attribute(&self, attribute: u64) -> AttributePairs {
        let mut out = AttributePairs {
            ood: self.ood_entities(attribute),
            id_train: Vec::new(),
            id_test: Vec::new(),
            ood_test: Vec::new(),
            cross: Vec::new(),
        };
        let mut rng = stream(self.seed, Purpose::Pairs, attribute);
        for e1 in 0..self.entities {
            for e2 in e1 + 1..self.entities {
                let pair = [e1 as u32, e2 as u32];
                match (out.ood[e1], out.ood[e2]) {
                    (true, true) => out.ood_test.push(pair),
                    (false, false) => {
                        if rng.sample(self.test_draw) {
                            out.id_test.push(pair);
                        } else {
                            out.id_train.push(pair);
                        }
                    }
                    _ if self.keep_cross => out.cross.push(pair),
                    _ => {}
                }
            }
        }
        out
    }

    /// Whether each entity is OOD under `attribute`: `n_ood` of them, drawn afresh.
    fn ood_entities(&self, attribute: u64) -> Vec<bool> {
        let mut ood = vec![false; self.entities];
        let mut split_rng = stream(self.seed, Purpose::OodEntities, attribute);
        for e in choose_indices(&mut split_rng, self.entities as u64, self.n_ood as u64) {
            ood[e as usize] = true;
        }
        ood
    }
}

impl Pools {
    /// Gathers the atomic facts and pair pools of every attribute, attribute by attribute.
    fn collect(per_attribute: Vec<AttributePairs>) -> Pools {
        let mut id_atomic = Vec::new();
        let mut ood_atomic = Vec::new();
        let mut ood_entities = Vec::new();
        for (attribute, pairs) in per_attribute.iter().enumerate() {
            let mut ood_here = Vec::new();
            for (entity, &ood) in pairs.ood.iter().enumerate() {
                let atom = Atom {
                    attribute: attribute as u32,
                    entity: entity as u32,
                };
                if ood {
                    ood_atomic.push(atom);
                    ood_here.push(entity as u32);
                } else {
                    id_atomic.push(atom);
                }
            }
            ood_entities.push(ood_here);
        }
        let mut id_train = Vec::new();
        let mut id_test = Vec::new();
        let mut ood_test = Vec::new();
        let mut cross = Vec::new();
        for pairs in per_attribute {
            id_train.push(pairs.id_train);
            id_test.push(pairs.id_test);
            ood_test.push(pairs.ood_test);
            cross.push(pairs.cross);
        }
        Pools {
            id_atomic,
            ood_atomic,
            id_train: PairPool::new(id_train),
            id_test: PairPool::new(id_test),
            ood_test: PairPool::new(ood_test),
            cross: PairPool::new(cross),
            ood_entities,
        }
    }
}

/// Token ids of the comparison vocabulary: entities, attributes, values, the special tokens,
/// then three labels per attribute.
struct Ids {
    sizes: Sizes,
    complex: bool,
}

impl Ids {
    fn entity(&self, e: u32) -> u32 {
        1 + e
    }
    fn attribute(&self, a: u32) -> u32 {
        1 + self.sizes.entities as u32 + a
    }
    fn value(&self, v: u32) -> u32 {
        1 + (self.sizes.entities + self.sizes.attributes) as u32 + v
    }
    /// Id of the special token at `index` in [`SPECIAL_TOKENS`].
    fn special(&self, index: u32) -> u32 {
        1 + (self.sizes.entities + self.sizes.attributes + self.sizes.values) as u32 + index
    }
    fn label(&self, attribute: u32, ordering: Ordering) -> u32 {
        let first = 1 + self.sizes.entities + self.sizes.attributes + self.sizes.values;
        (first + SPECIAL_TOKENS.len()) as u32 + 3 * attribute + label_index(ordering)
    }
    fn frame(&self) -> AnswerFrame {
        AnswerFrame {
            open: self.complex.then(|| self.special(special::ANSWER_OPEN)),
            close: self.special(special::ANSWER_CLOSE),
        }
    }

    fn atomic(&self, values: &Values, split: &str, atom: Atom) -> Example {
        let (e, a) = (self.entity(atom.entity), self.attribute(atom.attribute));
        let answer = self.value(values.of(atom.entity, atom.attribute));
        let frame = self.frame();
        if self.complex {
            let prompt = [
                self.special(special::QUESTION_OPEN),
                e,
                a,
                self.special(special::MASK),
                self.special(special::QUESTION_CLOSE),
            ];
            Example::build(split.to_string(), &prompt, answer, frame)
        } else {
            Example::build(split.to_string(), &[e, a], answer, frame)
        }
    }

    fn inferred(&self, values: &Values, split: &str, q: Query) -> Example {
        let mut prompt = vec![
            self.attribute(q.attribute),
            self.special(special::QUESTION_OPEN),
            self.entity(q.e1),
            self.special(special::MASK),
            self.entity(q.e2),
        ];
        if self.complex {
            prompt.push(self.special(special::QUESTION_CLOSE));
        }
        let answer = self.label(q.attribute, values.ordering(q));
        Example::build(split.to_string(), &prompt, answer, self.frame())
    }

    fn vocab(&self) -> Vec<String> {
        let s = self.sizes;
        let mut vocab: Vec<String> = (0..s.entities).map(|e| format!("<e_{e}>")).collect();
        vocab.extend((0..s.attributes).map(|a| format!("<attr_{a}>")));
        vocab.extend((0..s.values).map(|v| format!("<{v}>")));
        vocab.extend(SPECIAL_TOKENS.iter().map(|t| t.to_string()));
        vocab
            .extend((0..s.attributes).flat_map(|a| (0..3).map(move |l| format!("<attr_{a}_{l}>"))));
        vocab
    }
}

fn atomics(ids: &Ids, values: &Values, split: &str, atoms: &[Atom]) -> Vec<Example> {
    atoms
        .iter()
        .map(|&a| ids.atomic(values, split, a))
        .collect()
}

fn inferred(ids: &Ids, values: &Values, split: &str, queries: &[Query]) -> Vec<Example> {
    queries
        .par_iter()
        .map(|&q| ids.inferred(values, split, q))
        .collect()
}

/// Generates the paper's comparison files for `p` (validated) from `seed`.
pub(crate) fn generate_comparison(p: &ComparisonParams, seed: u64) -> Result<GeneratedFiles> {
    let sizes = Sizes {
        entities: p.entities,
        attributes: p.attributes,
        values: p.values,
    };
    let (values, pools) = draw_pools(sizes, p.ood_ratio, p.id_test_ratio, false, seed)?;
    let wanted = count_for_ratio(p.phi, pools.id_atomic.len()) as u64;
    let pool = pools.id_train.len();
    if wanted > pool {
        return Err(TaskError::param(
            "phi",
            format!(
                "{} needs {wanted} training comparisons but only {pool} ID–ID comparisons are \
                 available (largest phi here: {:.2})",
                p.phi,
                pool as f64 / pools.id_atomic.len().max(1) as f64
            ),
        ));
    }
    let train_queries = pools
        .id_train
        .sample(&mut stream(seed, Purpose::TrainSample, 0), wanted);
    let probe_rng = |set: u64| stream(seed, Purpose::Probes, set);
    let n = p.test_size as u64;
    let ood_test = pools.ood_test.sample(&mut probe_rng(0), n);
    let id_atomic_probes = choose(&mut probe_rng(1), &pools.id_atomic, p.test_size);
    let ood_atomic_probes = choose(&mut probe_rng(2), &pools.ood_atomic, p.test_size);
    let id_test = pools.id_test.sample(&mut probe_rng(3), n);
    let train_probes = choose(&mut probe_rng(4), &train_queries, p.test_size);

    let ids = Ids {
        sizes,
        complex: false,
    };
    let mut train = atomics(&ids, &values, "id_atomic", &pools.id_atomic);
    train.extend(atomics(&ids, &values, "ood_atomic", &pools.ood_atomic));
    train.extend(inferred(&ids, &values, "train_inferred", &train_queries));
    let valid = inferred(&ids, &values, "test_inferred_ood", &ood_test);
    let mut test = valid.clone();
    test.extend(atomics(&ids, &values, "id_atomic", &id_atomic_probes));
    test.extend(atomics(&ids, &values, "ood_atomic", &ood_atomic_probes));
    test.extend(inferred(&ids, &values, "test_inferred_iid", &id_test));
    test.extend(inferred(&ids, &values, "train_inferred", &train_probes));
    Ok(GeneratedFiles {
        vocab: ids.vocab(),
        train,
        valid,
        test,
    })
}

/// Generates the paper's complex-reasoning files for `p` (validated) from `seed`.
pub(crate) fn generate_complex(p: &ComplexParams, seed: u64) -> Result<GeneratedFiles> {
    let sizes = Sizes {
        entities: p.entities,
        attributes: p.attributes,
        values: p.values,
    };
    let (values, pools) = draw_pools(sizes, p.ood_ratio, p.id_test_ratio, true, seed)?;
    let (topleft, cross) = sample_complex_train(p, &pools, seed);
    let hard = hard_queries(sizes, &values, &pools, &topleft, &cross);

    let probe_rng = |set: u64| stream(seed, Purpose::Probes, set);
    let n = p.test_size as u64;
    let ood_test = pools.ood_test.sample(&mut probe_rng(0), n);
    let id_atomic_probes = choose(&mut probe_rng(1), &pools.id_atomic, p.test_size);
    let id_test = pools.id_test.sample(&mut probe_rng(2), n);
    let topleft_probes = choose(&mut probe_rng(3), &topleft, p.test_size);
    let cross_probes = choose(&mut probe_rng(4), &cross, p.test_size);

    let ids = Ids {
        sizes,
        complex: true,
    };
    let atomics = |split: &str, atoms: &[Atom]| atomics(&ids, &values, split, atoms);
    let inferred = |split: &str, queries: &[Query]| inferred(&ids, &values, split, queries);
    let mut train = atomics("id_atomic", &pools.id_atomic);
    train.extend(inferred("train_inferred_topleft", &topleft));
    train.extend(inferred("train_inferred_cross", &cross));
    let valid = inferred("test_inferred_ood", &ood_test);
    let mut test = valid.clone();
    test.extend(atomics("id_atomic", &id_atomic_probes));
    test.extend(inferred("test_inferred_iid", &id_test));
    test.extend(atomics("ood_atomic", &pools.ood_atomic));
    test.extend(inferred("train_inferred_topleft", &topleft_probes));
    test.extend(inferred("train_inferred_cross", &cross_probes));
    for (label, queries) in hard.iter().enumerate() {
        let chosen = choose(
            &mut stream(seed, Purpose::Hard, label as u64),
            queries,
            p.hard_per_label,
        );
        test.extend(inferred("test_hard", &chosen));
    }
    Ok(GeneratedFiles {
        vocab: ids.vocab(),
        train,
        valid,
        test,
    })
}

/// The complex task's training comparisons: `train_fraction` of the ID–ID ("topleft") pool and
/// of the ID–OOD ("cross") pool, as (topleft, cross).
fn sample_complex_train(p: &ComplexParams, pools: &Pools, seed: u64) -> (Vec<Query>, Vec<Query>) {
    let keep = |pool: &PairPool| count_for_ratio(p.train_fraction, pool.len() as usize) as u64;
    let topleft = pools.id_train.sample(
        &mut stream(seed, Purpose::TrainSample, 0),
        keep(&pools.id_train),
    );
    let cross = pools.cross.sample(
        &mut stream(seed, Purpose::TrainSample, 1),
        keep(&pools.cross),
    );
    (topleft, cross)
}

/// The paper's `test_hard` candidates, grouped by label index (<, =, >): ordered OOD–OOD pairs
/// whose label follows by reachability once the atomic values of the ID entities are added to
/// the training comparisons, but not from the training comparisons alone.
fn hard_queries(
    sizes: Sizes,
    values: &Values,
    pools: &Pools,
    topleft: &[Query],
    cross: &[Query],
) -> [Vec<Query>; 3] {
    let mut by_attribute: Vec<(Vec<Query>, Vec<Query>)> =
        vec![Default::default(); sizes.attributes];
    for &q in cross {
        by_attribute[q.attribute as usize].0.push(q);
    }
    for &q in topleft {
        by_attribute[q.attribute as usize].1.push(q);
    }
    let per_attribute: Vec<[Vec<Query>; 3]> = by_attribute
        .par_iter()
        .enumerate()
        .map(|(attribute, (cross, topleft))| {
            let reach = AttributeReach::new(sizes, values, pools, attribute as u32);
            reach.hard_queries(cross, topleft)
        })
        .collect();
    let mut hard: [Vec<Query>; 3] = Default::default();
    for groups in per_attribute {
        for (label, queries) in groups.into_iter().enumerate() {
            hard[label].extend(queries);
        }
    }
    hard
}

/// What one attribute's training data lets a reasoner derive about its OOD entities.
struct AttributeReach<'a> {
    sizes: Sizes,
    values: &'a Values,
    attribute: u32,
    /// OOD entities of this attribute, ascending.
    ood: &'a [u32],
}

impl<'a> AttributeReach<'a> {
    fn new(sizes: Sizes, values: &'a Values, pools: &'a Pools, attribute: u32) -> Self {
        AttributeReach {
            sizes,
            values,
            attribute,
            ood: &pools.ood_entities[attribute as usize],
        }
    }

    /// Hard queries of this attribute by label index: ordered OOD pairs solvable with the ID
    /// atomic values and the `cross` comparisons but not from `cross` and `topleft` alone.
    fn hard_queries(&self, cross: &[Query], topleft: &[Query]) -> [Vec<Query>; 3] {
        let solvable = self.with_values(cross).orderings_among(self.ood);
        let easy = self
            .comparisons_only(cross, topleft)
            .orderings_among(self.ood);
        let mut out: [Vec<Query>; 3] = Default::default();
        for (i, &e1) in self.ood.iter().enumerate() {
            for (j, &e2) in self.ood.iter().enumerate() {
                if let (true, Some(ordering)) = (i != j, solvable[i][j]) {
                    if easy[i][j] != Some(ordering) {
                        let attribute = self.attribute;
                        out[label_index(ordering) as usize].push(Query { attribute, e1, e2 });
                    }
                }
            }
        }
        out
    }

    /// The ID entities' atomic values, the value order and the `cross` comparisons. Nodes
    /// `0..entities` are entities; node `entities + v` stands for "value v".
    fn with_values(&self, cross: &[Query]) -> AtLeastGraph {
        let (entities, attribute) = (self.sizes.entities, self.attribute);
        let mut graph = AtLeastGraph::new(entities + self.sizes.values);
        let mut is_ood = vec![false; entities];
        for &e in self.ood {
            is_ood[e as usize] = true;
        }
        for e in (0..entities as u32).filter(|&e| !is_ood[e as usize]) {
            let level = entities as u32 + self.values.of(e, attribute);
            graph.add(e, level, Ordering::Equal);
        }
        for v in 1..self.sizes.values as u32 {
            let level = entities as u32 + v;
            graph.add(level, level - 1, Ordering::Greater);
        }
        for &q in cross {
            graph.add(q.e1, q.e2, self.values.ordering(q));
        }
        graph
    }

    /// The training comparisons alone (`cross` then `topleft`), over the entities.
    fn comparisons_only(&self, cross: &[Query], topleft: &[Query]) -> AtLeastGraph {
        let mut graph = AtLeastGraph::new(self.sizes.entities);
        for &q in cross.iter().chain(topleft) {
            graph.add(q.e1, q.e2, self.values.ordering(q));
        }
        graph
    }
}
