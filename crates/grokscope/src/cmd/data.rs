//! `grokscope data`: generates one of the paper's synthetic reasoning datasets into a folder
//! (train.json, valid.json, test.json, vocab.json in the paper's format, plus dataset.json).

use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Instant;
use tasks::{ComparisonParams, ComplexParams, CompositionParams, Dataset, TaskSpec};

/// Arguments of `grokscope data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub task: DataTask,
}

/// Which dataset to generate. Every default is the paper's value.
#[derive(Subcommand, Debug)]
pub enum DataTask {
    /// Two-hop (or k-hop) composition over a random knowledge graph (paper §3)
    Composition(CompositionArgs),
    /// Attribute comparison (paper §4)
    Comparison(ComparisonArgs),
    /// Complex reasoning with `test_hard` queries found by graph reachability (paper §5, App. F)
    Complex(ComplexArgs),
}

/// Where to write, and the seed.
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Seed of the generator; the same arguments and seed give byte-identical files
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder [default: data/<name in the paper's style>]
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompositionArgs {
    /// Number of entities
    #[arg(long, default_value_t = 2000)]
    pub entities: usize,
    /// Number of relations
    #[arg(long, default_value_t = 200)]
    pub relations: usize,
    /// Distinct relations per head entity
    #[arg(long, default_value_t = 20)]
    pub out_degree: usize,
    /// Hops per inferred fact (2, 3 or 4)
    #[arg(long, default_value_t = 2)]
    pub hops: usize,
    /// Fewer hop counts whose queries are added over the same graph (training queries and test
    /// splits suffixed `_{k}hop`), e.g. `--hops 3 --shorter-hops 2`
    #[arg(long, value_delimiter = ',')]
    pub shorter_hops: Vec<usize>,
    /// Training inferred facts per ID atomic fact
    #[arg(long, default_value_t = 7.2)]
    pub phi: f64,
    /// Fraction of atomic facts held out as OOD
    #[arg(long, default_value_t = 0.05)]
    pub ood_ratio: f64,
    /// Probability that an all-ID query goes to the ID test set
    #[arg(long, default_value_t = 0.005)]
    pub id_test_ratio: f64,
    /// Size of each prompt sample in test.json
    #[arg(long, default_value_t = 3000)]
    pub test_size: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The entity × attribute table of the comparison and complex generators, with their OOD
/// entities and test splits.
#[derive(Args, Debug)]
pub struct AttributeTableArgs {
    /// Number of entities
    #[arg(long, default_value_t = 1000)]
    pub entities: usize,
    /// Number of attributes
    #[arg(long, default_value_t = 20)]
    pub attributes: usize,
    /// Values per attribute (tokens <0>, <1>, …)
    #[arg(long, default_value_t = 20)]
    pub values: usize,
    /// Fraction of entities that are OOD, drawn afresh per attribute
    #[arg(long, default_value_t = 0.1)]
    pub ood_ratio: f64,
    /// Probability that an ID–ID pair goes to the ID test set
    #[arg(long, default_value_t = 0.1)]
    pub id_test_ratio: f64,
    /// Size of each prompt sample in test.json
    #[arg(long, default_value_t = 3000)]
    pub test_size: usize,
}

#[derive(Args, Debug)]
pub struct ComparisonArgs {
    #[command(flatten)]
    pub table: AttributeTableArgs,
    /// Training comparisons per ID atomic fact
    #[arg(long, default_value_t = 7.2)]
    pub phi: f64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct ComplexArgs {
    #[command(flatten)]
    pub table: AttributeTableArgs,
    /// Fraction of the ID–ID and of the ID–OOD comparisons kept for training
    #[arg(long, default_value_t = 0.03)]
    pub train_fraction: f64,
    /// test_hard queries per label
    #[arg(long, default_value_t = 50)]
    pub hard_per_label: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl DataTask {
    /// The generator spec and the output options.
    fn spec(&self) -> (TaskSpec, &OutputArgs) {
        match self {
            DataTask::Composition(a) => (
                TaskSpec::Composition(CompositionParams {
                    entities: a.entities,
                    relations: a.relations,
                    out_degree: a.out_degree,
                    hops: a.hops,
                    shorter_hops: a.shorter_hops.clone(),
                    phi: a.phi,
                    ood_ratio: a.ood_ratio,
                    id_test_ratio: a.id_test_ratio,
                    test_size: a.test_size,
                }),
                &a.output,
            ),
            DataTask::Comparison(a) => (
                TaskSpec::Comparison(ComparisonParams {
                    entities: a.table.entities,
                    attributes: a.table.attributes,
                    values: a.table.values,
                    phi: a.phi,
                    ood_ratio: a.table.ood_ratio,
                    id_test_ratio: a.table.id_test_ratio,
                    test_size: a.table.test_size,
                }),
                &a.output,
            ),
            DataTask::Complex(a) => (
                TaskSpec::Complex(ComplexParams {
                    entities: a.table.entities,
                    attributes: a.table.attributes,
                    values: a.table.values,
                    train_fraction: a.train_fraction,
                    ood_ratio: a.table.ood_ratio,
                    id_test_ratio: a.table.id_test_ratio,
                    test_size: a.table.test_size,
                    hard_per_label: a.hard_per_label,
                }),
                &a.output,
            ),
        }
    }
}

/// Generates the dataset and writes it atomically; prints one summary line.
pub fn run(args: &DataArgs) -> Result<()> {
    let start = Instant::now();
    let (spec, output) = args.task.spec();
    let out = output
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("data").join(spec.name()));
    let dataset = Dataset::generate(&spec, output.seed)?;
    train::lock::remove_stale_staging(&out)?;
    dataset.write(&out)?;
    println!(
        "wrote {}: {} train, {} valid, {} test examples, {} token ids ({:.1} s)",
        out.display(),
        dataset.train.len(),
        dataset.valid.len(),
        dataset.test.len(),
        dataset.vocab.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
