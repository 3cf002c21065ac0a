//! Generator parameters (with the paper's values as defaults) and the `dataset.json` manifest.

use crate::error::{Result, TaskError};
use crate::example::TaskKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest number of k-hop chains (entities × out-degree^hops) the composition generator visits.
pub const MAX_CHAINS: u64 = 1 << 32;

/// Composition (paper §1.1): a random knowledge graph and its k-hop queries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositionParams {
    /// Number of entities |E| (paper: 2000).
    pub entities: usize,
    /// Number of relations |R| (paper: 200).
    pub relations: usize,
    /// Distinct relations per head entity (paper: 20).
    pub out_degree: usize,
    /// Hops per inferred fact (paper: 2; 3 and 4 are supported).
    pub hops: usize,
    /// Fewer hop counts whose queries are added over the same graph (empty: none). Each adds φ
    /// training queries per ID atomic fact and its test splits with the suffix `_{k}hop`
    /// (`test_inferred_iid_2hop`, …); the unsuffixed splits stay the `hops`-hop ones. For
    /// mixed-hop training, e.g. `hops = 3, shorter_hops = [2]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shorter_hops: Vec<usize>,
    /// Training inferred facts per ID atomic fact (paper: 3.6 … 18.0).
    pub phi: f64,
    /// Fraction of atomic facts held out as OOD (paper: 0.05).
    pub ood_ratio: f64,
    /// Probability that an all-ID chain goes to the ID test set (paper: 0.005).
    pub id_test_ratio: f64,
    /// Size of each probe set in test.json (paper: 3000).
    pub test_size: usize,
}

impl Default for CompositionParams {
    fn default() -> Self {
        CompositionParams {
            entities: 2000,
            relations: 200,
            out_degree: 20,
            hops: 2,
            shorter_hops: Vec::new(),
            phi: 7.2,
            ood_ratio: 0.05,
            id_test_ratio: 0.005,
            test_size: 3000,
        }
    }
}

/// Comparison (paper §1.2): random attribute values and all pairwise comparisons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComparisonParams {
    /// Number of entities (paper: 1000).
    pub entities: usize,
    /// Number of attributes (paper: 20).
    pub attributes: usize,
    /// Number of values per attribute, tokens `<0>`… (paper: 20).
    pub values: usize,
    /// Training inferred facts per ID atomic fact (paper: 3.6 … 12.6).
    pub phi: f64,
    /// Fraction of entities that are OOD, drawn afresh for each attribute (paper: 0.1).
    pub ood_ratio: f64,
    /// Probability that an ID–ID pair goes to the ID test set (paper: 0.1).
    pub id_test_ratio: f64,
    /// Size of each probe set in test.json (paper: 3000).
    pub test_size: usize,
}

impl Default for ComparisonParams {
    fn default() -> Self {
        ComparisonParams {
            entities: 1000,
            attributes: 20,
            values: 20,
            phi: 7.2,
            ood_ratio: 0.1,
            id_test_ratio: 0.1,
            test_size: 3000,
        }
    }
}

/// Complex reasoning (paper §1.3): comparison without OOD atomic facts in training, with
/// `test_hard` queries that need two ID bridge entities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplexParams {
    /// Number of entities (paper: 1000).
    pub entities: usize,
    /// Number of attributes (paper: 20).
    pub attributes: usize,
    /// Number of values per attribute (paper: 20).
    pub values: usize,
    /// Fraction of the ID–ID and of the ID–OOD comparisons kept for training (paper: 0.03).
    pub train_fraction: f64,
    /// Fraction of entities that are OOD, drawn afresh for each attribute (paper: 0.1).
    pub ood_ratio: f64,
    /// Probability that an ID–ID pair goes to the ID test set (paper: 0.1).
    pub id_test_ratio: f64,
    /// Size of each probe set in test.json (paper: 3000).
    pub test_size: usize,
    /// `test_hard` queries per label (paper: 50).
    pub hard_per_label: usize,
}

impl Default for ComplexParams {
    fn default() -> Self {
        ComplexParams {
            entities: 1000,
            attributes: 20,
            values: 20,
            train_fraction: 0.03,
            ood_ratio: 0.1,
            id_test_ratio: 0.1,
            test_size: 3000,
            hard_per_label: 50,
        }
    }
}

/// Which generator, with its parameters. Serialised as `"generator": …, "params": {…}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "generator", content = "params", rename_all = "lowercase")]
pub enum TaskSpec {
    Composition(CompositionParams),
    Comparison(ComparisonParams),
    Complex(ComplexParams),
}

impl TaskSpec {
    /// The task kind the generator produces.
    pub fn kind(&self) -> TaskKind {
        match self {
            TaskSpec::Composition(p) => TaskKind::Composition { hops: p.hops },
            TaskSpec::Comparison(_) => TaskKind::Comparison,
            TaskSpec::Complex(_) => TaskKind::Complex,
        }
    }

    /// Folder name in the paper's style, e.g. `composition.2000.200.7.2`,
    /// `composition3.2000.200.7.2` for three hops, `composition3+2.2000.200.7.2` for three hops
    /// with two-hop queries added, `comparison.1000.7.2`, `complex.1000`.
    pub fn name(&self) -> String {
        match self {
            TaskSpec::Composition(p) => {
                let mut hops = if p.hops == 2 {
                    String::new()
                } else {
                    p.hops.to_string()
                };
                for k in &p.shorter_hops {
                    hops.push_str(&format!("+{k}"));
                }
                format!(
                    "composition{hops}.{}.{}.{:?}",
                    p.entities, p.relations, p.phi
                )
            }
            TaskSpec::Comparison(p) if p.attributes == 20 && p.values == 20 => {
                format!("comparison.{}.{:?}", p.entities, p.phi)
            }
            TaskSpec::Comparison(p) => format!(
                "comparison.{}.{}x{}.{:?}",
                p.entities, p.attributes, p.values, p.phi
            ),
            TaskSpec::Complex(p) => format!("complex.{}", p.entities),
        }
    }

    /// Checks every parameter on its own; limits that depend on the drawn data (such as the
    /// largest phi) are checked during generation.
    pub fn validate(&self) -> Result<()> {
        match self {
            TaskSpec::Composition(p) => {
                at_least("entities", p.entities, 1)?;
                at_least("relations", p.relations, 1)?;
                at_least("out-degree", p.out_degree, 1)?;
                if p.out_degree > p.relations {
                    return Err(TaskError::param(
                        "out-degree",
                        format!(
                            "{} is larger than --relations {}: each head needs distinct relations",
                            p.out_degree, p.relations
                        ),
                    ));
                }
                if !(2..=4).contains(&p.hops) {
                    return Err(TaskError::param(
                        "hops",
                        format!("must be 2, 3 or 4 (got {})", p.hops),
                    ));
                }
                check_shorter_hops(p)?;
                let chains = (p.out_degree as u64)
                    .checked_pow(p.hops as u32)
                    .and_then(|c| c.checked_mul(p.entities as u64));
                if !matches!(chains, Some(c) if c <= MAX_CHAINS) {
                    return Err(TaskError::param(
                        "hops",
                        format!(
                            "{} entities × out-degree {}^{} chains exceed the limit of {MAX_CHAINS}",
                            p.entities, p.out_degree, p.hops
                        ),
                    ));
                }
                if p.entities > u32::MAX as usize / 2 || p.relations > u32::MAX as usize / 2 {
                    return Err(TaskError::param(
                        "entities",
                        "too many tokens for 32-bit ids",
                    ));
                }
                non_negative("phi", p.phi)?;
                ratio("ood-ratio", p.ood_ratio)?;
                ratio("id-test-ratio", p.id_test_ratio)
            }
            TaskSpec::Comparison(p) => {
                comparison_sizes(p.entities, p.attributes, p.values)?;
                non_negative("phi", p.phi)?;
                ratio("ood-ratio", p.ood_ratio)?;
                ratio("id-test-ratio", p.id_test_ratio)
            }
            TaskSpec::Complex(p) => {
                comparison_sizes(p.entities, p.attributes, p.values)?;
                ratio("train-fraction", p.train_fraction)?;
                ratio("ood-ratio", p.ood_ratio)?;
                ratio("id-test-ratio", p.id_test_ratio)
            }
        }
    }
}

fn at_least(name: &'static str, value: usize, min: usize) -> Result<()> {
    if value < min {
        return Err(TaskError::param(
            name,
            format!("must be at least {min} (got {value})"),
        ));
    }
    Ok(())
}

fn non_negative(name: &'static str, value: f64) -> Result<()> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(TaskError::param(
            name,
            format!("must be a finite number ≥ 0 (got {value})"),
        ));
    }
    Ok(())
}

fn ratio(name: &'static str, value: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&value) {
        return Err(TaskError::param(
            name,
            format!("must lie in [0, 1] (got {value})"),
        ));
    }
    Ok(())
}

fn comparison_sizes(entities: usize, attributes: usize, values: usize) -> Result<()> {
    at_least("entities", entities, 2)?;
    at_least("attributes", attributes, 1)?;
    at_least("values", values, 1)?;
    // Keeps the all-pairs loops (entities² per attribute) and the token ids in range.
    if entities > 65_536 || attributes > 1 << 24 || values > 1 << 24 {
        return Err(TaskError::param(
            "entities",
            "at most 65536 entities, 2^24 attributes and 2^24 values",
        ));
    }
    Ok(())
}

/// Contents of `dataset.json`, written next to the paper's files by the generators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Generator and all its parameters.
    #[serde(flatten)]
    pub spec: TaskSpec,
    /// Seed of the generator's random streams.
    pub seed: u64,
    /// Records per file (`train.json`, …) and per split within it: the record's `type`, or
    /// `atomic`/`inferred` for records without one.
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    /// Number of token ids, `<pad>` included (vocab.json tokens + 1).
    pub vocab_size: usize,
    /// Version of grokscope that wrote the dataset.
    pub grokscope_version: String,
}

impl Manifest {
    /// True if `other` describes the same dataset: same generator, parameters and seed.
    pub fn same_dataset(&self, other: &Manifest) -> bool {
        self.spec == other.spec && self.seed == other.seed
    }
}

/// `shorter_hops`: distinct hop counts from 2 to `hops − 1` (a dataset's hop count is that of its
/// longest queries).
fn check_shorter_hops(p: &CompositionParams) -> Result<()> {
    for (i, &k) in p.shorter_hops.iter().enumerate() {
        if !(2..p.hops).contains(&k) || p.shorter_hops[..i].contains(&k) {
            return Err(TaskError::param(
                "shorter-hops",
                format!(
                    "{:?}: each must be from 2 to hops − 1 = {}, each once",
                    p.shorter_hops,
                    p.hops - 1
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_through_json() {
        let m = Manifest {
            spec: TaskSpec::Composition(CompositionParams::default()),
            seed: 3,
            counts: BTreeMap::new(),
            vocab_size: 2207,
            grokscope_version: "0.1.0".into(),
        };
        let text = serde_json::to_string_pretty(&m).unwrap();
        assert!(text.contains("\"generator\": \"composition\""), "{text}");
        assert!(text.contains("\"out_degree\": 20"), "{text}");
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn names_follow_the_paper() {
        let mut p = CompositionParams::default();
        assert_eq!(
            TaskSpec::Composition(p.clone()).name(),
            "composition.2000.200.7.2"
        );
        p.hops = 3;
        p.phi = 18.0;
        assert_eq!(
            TaskSpec::Composition(p).name(),
            "composition3.2000.200.18.0"
        );
        let c = TaskSpec::Comparison(ComparisonParams::default());
        assert_eq!(c.name(), "comparison.1000.7.2");
    }
}
