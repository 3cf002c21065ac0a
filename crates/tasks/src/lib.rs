//! Synthetic reasoning tasks of "Grokked Transformers are Implicit Reasoners" (Wang et al.,
//! NeurIPS 2024): the composition (k-hop), comparison and complex-reasoning generators, the
//! paper's JSON file format, tokenised examples with loss positions, the atomic facts behind
//! each query, and the corruption rules used by causal tracing. No libtorch.
//!
//! ```
//! use tasks::{CompositionParams, Dataset, TaskSpec};
//! let dir = std::env::temp_dir().join(format!("grokscope-tasks-doc-{}", std::process::id()));
//! let spec = TaskSpec::Composition(CompositionParams { entities: 200, ..Default::default() });
//! let ds = Dataset::generate(&spec, 0)?;
//! ds.write(&dir)?;
//! let again = Dataset::load(&dir)?;
//! assert_eq!(again.vocab.len(), ds.vocab.len());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), tasks::TaskError>(())
//! ```

mod comparison;
mod composition;
mod dataset;
mod error;
mod example;
mod facts;
mod json;
mod reach;
mod roles;
mod sample;
mod spec;
mod vocab;

pub use dataset::{Dataset, DATA_FILES, GROKSCOPE_VERSION};
pub use error::{Result, TaskError};
pub use example::{Example, TaskKind};
pub use facts::Facts;
pub use roles::{
    corrupt, corruptible_roles, input_position_names, lens_readings, position_names, roles,
    Corruption, LABEL_ROLES,
};
pub use spec::{
    ComparisonParams, ComplexParams, CompositionParams, Manifest, TaskSpec, MAX_CHAINS,
};
pub use vocab::{Vocab, PAD, SPECIAL_TOKENS};

/// What a generator produces: vocab.json tokens and the records of the three files.
pub(crate) struct GeneratedFiles {
    pub vocab: Vec<String>,
    pub train: Vec<Example>,
    pub valid: Vec<Example>,
    pub test: Vec<Example>,
}
