//! One module per subcommand.

pub mod attribute;
pub mod cache;
pub mod data;
pub mod demo;
pub mod dla;
pub mod doctor;
pub mod eval;
pub mod export_hf;
pub mod import_hf;
pub mod lens;
pub mod patch;
pub mod plot;
pub mod probe;
pub mod report;
pub mod surgery;
pub mod sweep;
pub mod trace;
pub mod train;
pub mod tuned_lens;

/// Process exit code for an error: 2 for bad input and every other failure the user can fix.
pub fn exit_code(_err: &anyhow::Error) -> i32 {
    2
}
