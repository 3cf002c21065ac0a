//! PNG figures and an HTML report drawn from grokscope's tidy CSV files.

pub mod colormap;
pub mod error;
mod font;
pub mod attention_grid;
pub mod bar_chart;
pub mod heatmap;
pub mod line_chart;
pub mod render;
pub mod small_multiples;
pub mod style;

pub use error::{PlotError, Result};
