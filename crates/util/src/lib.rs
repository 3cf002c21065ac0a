//! `util`: the helpers every grokscope crate shares, with no dependency beyond `std` and serde's
//! derive. Each helper has its one home here: seed mixing ([`seed`]), hashing ([`hash`]), atomic
//! file writes ([`fs`]), CSV records ([`csv`]), the rows of the CSV files that one crate writes
//! and another reads ([`schema`]), statistics over plain numbers ([`stats`]) and the training
//! saturation rule ([`saturation`]).
//!
//! ```
//! let seed = util::seed::mix(42, 7);
//! assert_eq!(seed, util::seed::mix(42, 7));
//! assert_eq!(util::hash::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
//! assert_eq!(util::csv::record(["a", "b,c"]), "a,\"b,c\"\n");
//! ```

pub mod csv;
pub mod fs;
pub mod hash;
pub mod saturation;
pub mod schema;
pub mod seed;
pub mod stats;
