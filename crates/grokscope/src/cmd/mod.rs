//! One module per subcommand.

pub mod data;
pub mod doctor;

/// Process exit code for an error: 2 for bad input and every other failure the user can fix.
pub fn exit_code(_err: &anyhow::Error) -> i32 {
    2
}
