//! Composition generator (paper §1.1), generalised from two hops to k hops.
//!
//! Every head has `out_degree` distinct relations with uniform random tails. A k-hop chain is a
//! head and one out-edge choice per hop, numbered `p ∈ 0..out_degree^k` (first hop most
//! significant). Chains whose hops are all ID are training candidates (or, with probability
//! `id_test_ratio`, ID test queries); chains whose hops are all OOD are OOD test queries; mixed
//! chains are discarded. Training candidates are kept as one bit per chain and sampled by rank,
//! so no chain is ever materialised unless it is written.

use crate::error::{Result, TaskError};
use crate::example::{AnswerFrame, Example};
use crate::sample::{choose, choose_indices, count_for_ratio, stream, Purpose};
use crate::spec::CompositionParams;
use crate::vocab::{special, SPECIAL_TOKENS};
use crate::GeneratedFiles;
use rand::distributions::Bernoulli;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// The knowledge graph: edge `head * out_degree + j` is the j-th out-edge of `head`.
struct Graph {
    out_degree: usize,
    relation: Vec<u32>,
    tail: Vec<u32>,
    ood: Vec<bool>,
}

/// Whether the hops of a chain seen so far are all ID, all OOD, or mixed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HopMix {
    Empty,
    AllId,
    AllOod,
    Mixed,
}

impl HopMix {
    fn then(self, ood: bool) -> HopMix {
        match (self, ood) {
            (HopMix::Empty | HopMix::AllId, false) => HopMix::AllId,
            (HopMix::Empty | HopMix::AllOod, true) => HopMix::AllOod,
            _ => HopMix::Mixed,
        }
    }
}

/// The chains of one head, by chain number `p`.
#[derive(Default)]
struct HeadChains {
    /// Bit p set: chain p is a training candidate.
    train_bits: Vec<u64>,
    train_count: u64,
    test_iid: Vec<u64>,
    test_ood: Vec<u64>,
}

/// Token ids of the composition vocabulary: entities, relations, then the special tokens.
struct Ids {
    entities: u32,
    relations: u32,
}

impl Ids {
    fn entity(&self, e: u32) -> u32 {
        1 + e
    }
    fn relation(&self, r: u32) -> u32 {
        1 + self.entities + r
    }
    fn frame(&self) -> AnswerFrame {
        AnswerFrame {
            open: None,
            close: 1 + self.entities + self.relations + special::ANSWER_CLOSE,
        }
    }
}

/// Generates the paper's composition files for `p` (validated) from `seed`: the `hops`-hop files,
/// then for each of `shorter_hops` the queries of that many hops over the same graph.
pub(crate) fn generate(p: &CompositionParams, seed: u64) -> Result<GeneratedFiles> {
    let graph = build_graph(p, seed);
    let mut files = generate_hops(p, &graph, seed)?;
    for &hops in &p.shorter_hops {
        let shorter = CompositionParams {
            hops,
            shorter_hops: Vec::new(),
            ..p.clone()
        };
        add_shorter_queries(&mut files, generate_hops(&shorter, &graph, seed)?, hops);
    }
    Ok(files)
}

/// Adds the queries of `shorter` (`hops` hops, same graph and atomic facts) to `files`: its
/// training queries as they are, its test queries under the split name suffixed `_{hops}hop`.
fn add_shorter_queries(files: &mut GeneratedFiles, shorter: GeneratedFiles, hops: usize) {
    let is_query = |ex: &Example| ex.prompt_len == hops + 1;
    files
        .train
        .extend(shorter.train.into_iter().filter(is_query));
    files
        .test
        .extend(shorter.test.into_iter().filter(is_query).map(|mut ex| {
            ex.split = format!("{}_{hops}hop", ex.split);
            ex
        }));
}

/// The files of `p`'s `hops`-hop queries alone, over `graph` (drawn by [`build_graph`] from `p`
/// and `seed`; it does not depend on the hop count).
fn generate_hops(p: &CompositionParams, graph: &Graph, seed: u64) -> Result<GeneratedFiles> {
    let heads = classify_chains(p, graph, seed)?;
    let train_chains = sample_train_chains(p, graph, &heads, seed)?;
    let test_iid: Vec<(u32, u64)> = flatten(&heads, |h| &h.test_iid);
    let test_ood: Vec<(u32, u64)> = flatten(&heads, |h| &h.test_ood);
    let id_edges: Vec<usize> = (0..graph.tail.len()).filter(|&e| !graph.ood[e]).collect();
    let ood_edges: Vec<usize> = (0..graph.tail.len()).filter(|&e| graph.ood[e]).collect();

    let probe_rng = |set: u64| stream(seed, Purpose::Probes, set);
    let n = p.test_size;
    let id_atomic_probes = choose(&mut probe_rng(0), &id_edges, n);
    let ood_atomic_probes = choose(&mut probe_rng(1), &ood_edges, n);
    let test_iid_probes = choose(&mut probe_rng(2), &test_iid, n);
    let test_ood_probes = choose(&mut probe_rng(3), &test_ood, n);
    let train_probes = choose(&mut probe_rng(4), &train_chains, n);

    let writer = ExampleWriter::new(p, graph);
    let mut train: Vec<Example> = id_edges
        .iter()
        .chain(&ood_edges)
        .map(|&e| writer.fact("train", e))
        .collect();
    train.extend(writer.queries("train", &train_chains));
    let valid = writer.queries("valid", &test_ood_probes);
    let mut test: Vec<Example> = id_atomic_probes
        .iter()
        .map(|&e| writer.fact("id_atomic", e))
        .collect();
    test.extend(
        ood_atomic_probes
            .iter()
            .map(|&e| writer.fact("ood_atomic", e)),
    );
    test.extend(writer.queries("train_inferred", &train_probes));
    test.extend(writer.queries("test_inferred_iid", &test_iid_probes));
    test.extend(writer.queries("test_inferred_ood", &test_ood_probes));

    Ok(GeneratedFiles {
        vocab: composition_vocab(p),
        train,
        valid,
        test,
    })
}

/// Sorts every head's chains into training candidates, ID test and OOD test chains, one random
/// stream per head (so the result does not depend on the thread count).
fn classify_chains(p: &CompositionParams, graph: &Graph, seed: u64) -> Result<Vec<HeadChains>> {
    let chains_per_head = (p.out_degree as u64).pow(p.hops as u32);
    let test_draw = Bernoulli::new(p.id_test_ratio)
        .map_err(|e| TaskError::param("id-test-ratio", e.to_string()))?;
    Ok((0..p.entities as u32)
        .into_par_iter()
        .map(|head| {
            let mut rng = stream(seed, Purpose::Chains, u64::from(head));
            let mut out = HeadChains {
                train_bits: vec![0; chains_per_head.div_ceil(64) as usize],
                ..HeadChains::default()
            };
            let mut visit = ChainVisit {
                graph,
                hops: p.hops,
                test_draw,
                rng: &mut rng,
                out: &mut out,
            };
            visit.visit(head, 0, 0, HopMix::Empty);
            out
        })
        .collect())
}

/// Draws the training inferred facts: `phi` per ID atomic fact, as (head, chain) pairs sampled
/// without replacement from all training candidates; an error when there are too few.
fn sample_train_chains(
    p: &CompositionParams,
    graph: &Graph,
    heads: &[HeadChains],
    seed: u64,
) -> Result<Vec<(u32, u64)>> {
    let n_id_atomic = graph.ood.iter().filter(|&&o| !o).count();
    let pool: u64 = heads.iter().map(|h| h.train_count).sum();
    let wanted = count_for_ratio(p.phi, n_id_atomic) as u64;
    if wanted > pool {
        return Err(TaskError::param(
            "phi",
            format!(
                "{} needs {wanted} training inferred facts but only {pool} all-ID chains are \
                 available (largest phi here: {:.2})",
                p.phi,
                pool as f64 / n_id_atomic.max(1) as f64
            ),
        ));
    }
    let ranks = choose_indices(&mut stream(seed, Purpose::TrainSample, 0), pool, wanted);
    Ok(chains_of_ranks(heads, &ranks))
}

/// Writes atomic facts (by edge) and k-hop queries (by head and chain number) as examples.
struct ExampleWriter<'a> {
    graph: &'a Graph,
    ids: Ids,
    hops: usize,
    /// `out_degree^hops`: the number of chain numbers of one head.
    chains_per_head: u64,
}

impl<'a> ExampleWriter<'a> {
    fn new(p: &CompositionParams, graph: &'a Graph) -> Self {
        ExampleWriter {
            graph,
            ids: Ids {
                entities: p.entities as u32,
                relations: p.relations as u32,
            },
            hops: p.hops,
            chains_per_head: (p.out_degree as u64).pow(p.hops as u32),
        }
    }

    /// The atomic fact `head relation → tail` of `edge`.
    fn fact(&self, split: &str, edge: usize) -> Example {
        let (ids, graph) = (&self.ids, self.graph);
        let head = (edge / graph.out_degree) as u32;
        Example::build(
            split.to_string(),
            &[ids.entity(head), ids.relation(graph.relation[edge])],
            ids.entity(graph.tail[edge]),
            ids.frame(),
        )
    }

    /// The query `head r_1 … r_k → tail` of chain number `chain` from `head`.
    fn query(&self, split: &str, &(head, chain): &(u32, u64)) -> Example {
        let (ids, graph) = (&self.ids, self.graph);
        let degree = graph.out_degree;
        let mut prompt = Vec::with_capacity(self.hops + 1);
        prompt.push(ids.entity(head));
        let mut entity = head;
        let mut place = self.chains_per_head;
        for _ in 0..self.hops {
            place /= degree as u64;
            let edge = entity as usize * degree + ((chain / place) % degree as u64) as usize;
            prompt.push(ids.relation(graph.relation[edge]));
            entity = graph.tail[edge];
        }
        Example::build(split.to_string(), &prompt, ids.entity(entity), ids.frame())
    }

    /// The queries of `chains`, in order (built in parallel).
    fn queries(&self, split: &str, chains: &[(u32, u64)]) -> Vec<Example> {
        chains.par_iter().map(|c| self.query(split, c)).collect()
    }
}

/// Entity tokens, relation tokens, then the special tokens.
fn composition_vocab(p: &CompositionParams) -> Vec<String> {
    let mut vocab: Vec<String> = (0..p.entities).map(|e| format!("<e_{e}>")).collect();
    vocab.extend((0..p.relations).map(|r| format!("<r_{r}>")));
    vocab.extend(SPECIAL_TOKENS.iter().map(|t| t.to_string()));
    vocab
}

/// Draws the out-edges of every head, then the OOD atomic facts.
fn build_graph(p: &CompositionParams, seed: u64) -> Graph {
    let n_atomic = p.entities * p.out_degree;
    let mut relation = Vec::with_capacity(n_atomic);
    let mut tail = Vec::with_capacity(n_atomic);
    let mut rng = stream(seed, Purpose::Graph, 0);
    for _ in 0..p.entities {
        let relations = choose_indices(&mut rng, p.relations as u64, p.out_degree as u64);
        for r in relations {
            relation.push(r as u32);
            tail.push(rng.gen_range(0..p.entities as u32));
        }
    }
    let mut ood = vec![false; n_atomic];
    let n_ood = count_for_ratio(p.ood_ratio, n_atomic);
    for edge in choose_indices(
        &mut stream(seed, Purpose::OodFacts, 0),
        n_atomic as u64,
        n_ood as u64,
    ) {
        ood[edge as usize] = true;
    }
    Graph {
        out_degree: p.out_degree,
        relation,
        tail,
        ood,
    }
}

/// Depth-first walk over the chains of one head, in chain-number order.
struct ChainVisit<'a> {
    graph: &'a Graph,
    hops: usize,
    test_draw: Bernoulli,
    rng: &'a mut ChaCha8Rng,
    out: &'a mut HeadChains,
}

impl ChainVisit<'_> {
    /// Visits every chain that continues from `entity` after `depth` hops numbered `prefix`.
    fn visit(&mut self, entity: u32, depth: usize, prefix: u64, mix: HopMix) {
        if depth == self.hops {
            match mix {
                HopMix::AllId => {
                    if self.rng.sample(self.test_draw) {
                        self.out.test_iid.push(prefix);
                    } else {
                        self.out.train_bits[(prefix / 64) as usize] |= 1 << (prefix % 64);
                        self.out.train_count += 1;
                    }
                }
                HopMix::AllOod => self.out.test_ood.push(prefix),
                HopMix::Empty | HopMix::Mixed => {}
            }
            return;
        }
        let degree = self.graph.out_degree;
        for j in 0..degree {
            let edge = entity as usize * degree + j;
            let next = mix.then(self.graph.ood[edge]);
            if next != HopMix::Mixed {
                let chain = prefix * degree as u64 + j as u64;
                self.visit(self.graph.tail[edge], depth + 1, chain, next);
            }
        }
    }
}

/// (head, chain) of each training-candidate rank, in the order of `ranks`.
fn chains_of_ranks(heads: &[HeadChains], ranks: &[u64]) -> Vec<(u32, u64)> {
    let mut order: Vec<usize> = (0..ranks.len()).collect();
    order.sort_unstable_by_key(|&i| ranks[i]);
    let mut out = vec![(0u32, 0u64); ranks.len()];
    let (mut head, mut head_start) = (0usize, 0u64);
    let (mut word, mut before_word) = (0usize, 0u64);
    for i in order {
        let rank = ranks[i];
        while rank >= head_start + heads[head].train_count {
            head_start += heads[head].train_count;
            head += 1;
            (word, before_word) = (0, 0);
        }
        let bits = &heads[head].train_bits;
        let local = rank - head_start;
        while before_word + u64::from(bits[word].count_ones()) <= local {
            before_word += u64::from(bits[word].count_ones());
            word += 1;
        }
        let mut w = bits[word];
        for _ in 0..local - before_word {
            w &= w - 1;
        }
        out[i] = (
            head as u32,
            word as u64 * 64 + u64::from(w.trailing_zeros()),
        );
    }
    out
}

/// All (head, chain) pairs of one list of every head, head by head.
fn flatten(heads: &[HeadChains], list: impl Fn(&HeadChains) -> &Vec<u64>) -> Vec<(u32, u64)> {
    heads
        .iter()
        .enumerate()
        .flat_map(|(h, chains)| list(chains).iter().map(move |&c| (h as u32, c)))
        .collect()
}
