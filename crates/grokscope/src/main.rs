//! `grokscope`: the command-line entry point. Each subcommand lives in its own module under `cmd/`.

mod cmd;
mod device;

use clap::{Parser, Subcommand};

/// Mechanistic interpretability workbench: train small transformers on the synthetic reasoning
/// tasks of "Grokked Transformers are Implicit Reasoners", keep checkpoints across training, and
/// look inside them (logit lens, activation patching, attribution) as they grok.
#[derive(Parser, Debug)]
#[command(name = "grokscope", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: device::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Report libtorch version, chosen device, CUDA devices and threads; checks libtorch works.
    Doctor,
    /// Generate a synthetic reasoning dataset
    Data(cmd::data::DataArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = cli.global.apply().and_then(|ctx| match cli.command {
        Command::Doctor => cmd::doctor::run(&ctx),
        Command::Data(a) => cmd::data::run(&a),
    });
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(cmd::exit_code(&err));
    }
}
