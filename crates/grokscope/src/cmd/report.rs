//! `grokscope report`: (re)draw a run's figures and write index.html around them.

use crate::cmd::plot::{draw, PlotArgs};

/// Write an HTML report of a run.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    #[command(flatten)]
    pub figures: PlotArgs,
}

/// Runs `grokscope report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let drawn = draw(&args.figures)?;
    let index = plot::write_report(&drawn.inputs, &drawn.out_dir, &drawn.figures)?;
    println!(
        "wrote {} with {} figures (open it in a browser; no server needed)",
        index.display(),
        drawn.figures.len()
    );
    Ok(())
}
