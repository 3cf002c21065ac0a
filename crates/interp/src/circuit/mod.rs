//! Edge-level circuit discovery on token batches: path patching ([`path_patch`]), exact edge
//! patching ([`patch_edges`]), edge attribution patching and its integrated-gradients variant
//! ([`edge_attribution`]), circuits and their faithfulness ([`evaluate_circuits`],
//! [`faithfulness_curve`], [`smallest_circuit`]). Like [`crate::tokens`] it knows tokens,
//! hooks and a [`crate::metric::Metric`], not tasks.
//!
//! The graph ([`Graph`]): senders are the input embeddings, every head and every MLP; receivers
//! every head's query, key and value input, every MLP input and the logits. An edge's value is
//! the sender's output as the receiver reads it, so patching it adds `source − base` of the
//! sender to the receiver's input (`blocks.{l}.hook_q_input`, ..., `hook_mlp_in`).
//!
//! ```no_run
//! # fn demo(net: &interp::Net, batch: &interp::tokens::PromptBatch) -> interp::Result<()> {
//! use interp::circuit::{edge_attribution, patch_edges, EdgeMethod, EdgeRuns};
//! use interp::metric::Metric;
//! use interp::{Direction, LnMode};
//! let runs = EdgeRuns::new(net, batch, Direction::Noising, &Metric::LogitDiff, LnMode::Recompute)?;
//! let scores = edge_attribution(&runs, EdgeMethod::Eap, false)?;
//! let exact = patch_edges(&runs, &scores.edges, 4096)?;
//! for ((edge, score), exact) in scores.edges.iter().zip(&scores.scores).zip(&exact) {
//!     println!("{}: {score:.3} (exact {exact:.3})", runs.graph.label(edge));
//! }
//! # Ok(()) }
//! ```

mod attribution;
mod discover;
mod evaluate;
mod graph;
mod patching;
mod runs;

pub use attribution::{edge_attribution, EdgeMethod, EdgeScores};
pub use discover::{discover, Agreement, Discovery, DiscoveryOptions, Timings};
pub use evaluate::{
    curve_counts, evaluate_circuits, faithfulness_curve, ranked, ranks, smallest_circuit,
    CurvePoint,
};
pub use graph::{Edge, Graph, Receiver, Role, Sender};
pub use patching::{patch_edges, path_patch, PathPatch, PathValues};
pub use runs::EdgeRuns;
