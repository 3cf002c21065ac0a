//! PNG figures and an HTML report drawn from grokscope's tidy CSV files (docs/architecture.md).
//!
//! ```
//! use plot::line_chart::{LineChart, Series};
//! use plotters::style::RGBColor;
//! let path = std::env::temp_dir().join(format!("grokscope-plot-doc-{}.png", std::process::id()));
//! let mut chart = LineChart::new("test accuracy", "training step", "accuracy");
//! chart.series.push(Series::new("test ID", vec![(0.0, 0.0), (100.0, 0.4), (200.0, 0.95)], RGBColor(31, 119, 180)));
//! chart.save(&path, (640, 400))?;
//! assert!(std::fs::metadata(&path)?.len() > 1000);
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - Primitives, each usable on its own: [`line_chart`], [`heatmap`], [`small_multiples`],
//!   [`attention_grid`], [`bar_chart`], [`circuit_diagram`] (a circuit as boxes and signed
//!   edges), with colour maps in [`colormap`].
//! - [`data`] reads the CSV files with errors that name the file, line and column.
//! - [`figures`] draws a run's figures from its CSV files; [`report`] writes `index.html`.
//!
//! Text uses an embedded DejaVu Sans font, so nothing depends on the fonts installed.

pub mod attention_grid;
pub mod bar_chart;
pub mod circuit_diagram;
pub mod colormap;
pub mod data;
pub mod error;
pub mod figures;
mod font;
pub mod heatmap;
pub mod line_chart;
mod render;
pub mod report;
pub mod small_multiples;
pub mod style;

pub use error::{PlotError, Result};
pub use figures::{draw_run, Figure, FigureOptions, RunInputs, Section};
pub use report::write_report;
