//! `grokscope plot`: draw a run's PNG figures from its CSV files alone.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plot::{Figure, FigureOptions, RunInputs};
use train::lock::FolderLock;

/// Draw PNG figures from a run's CSV files.
#[derive(clap::Args, Debug, Clone)]
pub struct PlotArgs {
    /// Run folder holding metrics.csv and layer_norms.csv, e.g. checkpoints/<run>.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Folder holding lens.csv, patch.csv, attribution.csv, dla.csv, probe.csv and attention.csv
    /// (each optional) [default: --out when given, else notebooks-out/<run folder name>]
    #[arg(long, value_name = "DIR")]
    pub analysis: Option<PathBuf>,
    /// Output folder for the PNGs (and index.html for `report`) [default: the analysis folder]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Checkpoint step of the single-step heatmaps [default: the last step in each file]
    #[arg(long, value_name = "STEP")]
    pub step: Option<u64>,
    /// Earlier checkpoint of the circuit change [default: the first traced step at or after the
    /// step where training accuracy reached 0.99]
    #[arg(long, value_name = "STEP")]
    pub change_from: Option<u64>,
    /// Later checkpoint of the circuit change [default: the last traced step]
    #[arg(long, value_name = "STEP")]
    pub change_to: Option<u64>,
}

/// What a drawing pass produced.
pub(crate) struct Drawn {
    pub inputs: RunInputs,
    pub out_dir: PathBuf,
    pub figures: Vec<Figure>,
    /// The output folder's lock, held until the caller is done writing there.
    pub _lock: FolderLock,
}

/// Draws every figure the run's files allow: all of them or none (a bad CSV file leaves no
/// figure behind).
pub(crate) fn draw(args: &PlotArgs) -> anyhow::Result<Drawn> {
    let analysis = args
        .analysis
        .clone()
        .or_else(|| args.out.clone())
        .unwrap_or_else(|| RunInputs::default_analysis_dir(&args.run));
    let inputs = RunInputs::discover(&args.run, &analysis)?;
    let out_dir = args.out.clone().unwrap_or_else(|| analysis.clone());
    let options = FigureOptions {
        step: args.step,
        change_from: args.change_from,
        change_to: args.change_to,
        saturation: None,
    };
    let lock = crate::cmd::lock_output(&out_dir)?;
    let figures = draw_staged(&inputs, &out_dir, &options)?;
    Ok(Drawn {
        inputs,
        out_dir,
        figures,
        _lock: lock,
    })
}

/// Draws the figures into a temporary folder inside `out_dir`, then moves them into `out_dir`;
/// on an error the temporary folder goes and `out_dir` is as it was.
fn draw_staged(
    inputs: &RunInputs,
    out_dir: &Path,
    options: &FigureOptions,
) -> anyhow::Result<Vec<Figure>> {
    let staging = out_dir.join(format!(".figures.tmp-{}", std::process::id()));
    let drawn = plot::draw_run(inputs, &staging, options);
    let moved = drawn.map_err(anyhow::Error::from).and_then(|figures| {
        figures
            .into_iter()
            .map(|figure| {
                let relative = figure.path.strip_prefix(&staging)?.to_path_buf();
                let path = out_dir.join(relative);
                std::fs::rename(&figure.path, &path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(Figure { path, ..figure })
            })
            .collect()
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved
}

/// Runs `grokscope plot`.
pub fn run(args: &PlotArgs) -> anyhow::Result<()> {
    let drawn = draw(args)?;
    for figure in &drawn.figures {
        println!("{}", figure.path.display());
    }
    println!(
        "{} figures written to {}",
        drawn.figures.len(),
        drawn.out_dir.display()
    );
    if !drawn.inputs.has_analysis() {
        println!(
            "no analysis CSV files in {}; only the training curves were drawn (run `grokscope \
             trace --run {}` first)",
            drawn.inputs.analysis_dir.display(),
            drawn.inputs.run_dir.display()
        );
    }
    Ok(())
}
