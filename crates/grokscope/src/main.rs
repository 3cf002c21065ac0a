//! `grokscope`: the command-line entry point. Each subcommand lives in its own module under `cmd/`.
//! The doc comments of its argument structs are clap's help text (`checkpoints/<run>`, `[i,j]`),
//! not rustdoc markup.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

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
    /// Train (or resume) a run: preset or config, checkpoints, metrics.csv, exact resume.
    Train(cmd::train::TrainArgs),
    /// Score a checkpoint on a dataset's splits: accuracy per split, predictions per example.
    Eval(cmd::eval::EvalArgs),
    /// Duplicate, insert, remove or reorder the layers of a checkpoint; save a new checkpoint.
    Surgery(cmd::surgery::SurgeryArgs),
    /// Write a checkpoint as a Hugging Face GPT-2 folder (config.json + model.safetensors).
    ExportHf(cmd::export_hf::ExportHfArgs),
    /// Read a Hugging Face GPT-2 folder (e.g. the paper's released checkpoints) into a checkpoint.
    ImportHf(cmd::import_hf::ImportHfArgs),
    /// Logit lens of a checkpoint: rank/MRR of each role's token at every (layer, position).
    Lens(cmd::lens::LensArgs),
    /// Activation patching (noising/denoising) of a checkpoint, batched over layers and positions.
    Patch(cmd::patch::PatchArgs),
    /// Attribution patching of a checkpoint, with its rank correlation against exact patching.
    Attribute(cmd::attribute::AttributeArgs),
    /// Circuit discovery: edge attribution (EAP, EAP-IG) against exact edge patching, faithfulness curve, diagram.
    Circuit(cmd::circuit::CircuitArgs),
    /// Path patching: senders' corrupted outputs into chosen receivers only (q/k/v inputs, MLPs, logits).
    PathPatch(cmd::path_patch::PathPatchArgs),
    /// Train the tuned lens (an affine translator per layer) on a checkpoint; compare with the logit lens.
    TunedLens(cmd::tuned_lens::TunedLensArgs),
    /// Lens and causal tracing over every checkpoint of a run, and the circuit change.
    Trace(cmd::trace::TraceArgs),
    /// Export activations of chosen hooks on a prompt sample to a safetensors file (for Python).
    Cache(cmd::cache::CacheArgs),
    /// Linear probes per (layer, position) on a checkpoint or a run, next to the logit lens.
    Probe(cmd::probe::ProbeCmdArgs),
    /// Direct logit attribution of the answer per embedding, layer and head (checkpoint or run).
    Dla(cmd::dla::DlaArgs),
    /// Draw PNG figures from a run's CSV files
    Plot(cmd::plot::PlotArgs),
    /// Write an HTML report of a run
    Report(cmd::report::ReportArgs),
    /// Line chart of any CSV file: one line per series value, y averaged per x (e.g. over seeds)
    Chart(cmd::chart::ChartArgs),
    /// Many runs from one sweep file: plan, run here or on Slurm, status, collect.
    Sweep(cmd::sweep::SweepArgs),
    /// Check a run's checkpoints (files, content hashes, finite weights) and say how to repair.
    Verify(cmd::verify::VerifyArgs),
    /// The paper's story end to end: train both tiny presets, trace, draw, report, check.
    Demo(cmd::demo::DemoArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = cli.global.apply().and_then(|ctx| match cli.command {
        Command::Doctor => cmd::doctor::run(&ctx),
        Command::Data(a) => cmd::data::run(&a),
        Command::Train(a) => cmd::train::run(a, &ctx),
        Command::Eval(a) => cmd::eval::run(a, &ctx),
        Command::Surgery(a) => cmd::surgery::run(a, &ctx),
        Command::ExportHf(a) => cmd::export_hf::run(a, &ctx),
        Command::ImportHf(a) => cmd::import_hf::run(a, &ctx),
        Command::Lens(a) => cmd::lens::run(a, &ctx),
        Command::Patch(a) => cmd::patch::run(a, &ctx),
        Command::Attribute(a) => cmd::attribute::run(a, &ctx),
        Command::Circuit(a) => cmd::circuit::run(a, &ctx),
        Command::PathPatch(a) => cmd::path_patch::run(a, &ctx),
        Command::Trace(a) => cmd::trace::run(a, &ctx),
        Command::TunedLens(a) => cmd::tuned_lens::run(a, &ctx),
        Command::Cache(a) => cmd::cache::run(a, &ctx),
        Command::Probe(a) => cmd::probe::run(a, &ctx),
        Command::Dla(a) => cmd::dla::run(a, &ctx),
        Command::Plot(a) => cmd::plot::run(&a),
        Command::Report(a) => cmd::report::run(&a),
        Command::Chart(a) => cmd::chart::run(&a),
        Command::Verify(a) => cmd::verify::run(&a),
        Command::Demo(a) => cmd::demo::run(&a, &ctx),
        Command::Sweep(a) => cmd::sweep::run(a, &ctx),
    });
    if let Err(err) = result {
        eprintln!("error: {}", cmd::one_line(&err));
        std::process::exit(cmd::exit_code(&err));
    }
}
