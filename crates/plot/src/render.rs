//! Writing a drawing to a PNG file.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{draw_error, PlotError, Result};
use crate::font;

/// The drawing area every primitive draws on when it is saved.
pub(crate) type PngArea<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Creates `path` (and its folder), fills it white, lets `draw` paint it and writes the PNG.
pub(crate) fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&PngArea<'_>) -> Result<()>,
) -> Result<()> {
    font::ensure_registered()?;
    if size.0 == 0 || size.1 == 0 {
        return Err(PlotError::InvalidFigure(format!(
            "{}: empty size {}x{}",
            path.display(),
            size.0,
            size.1
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| PlotError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    draw(&root)?;
    root.present().map_err(|e| PlotError::WritePng {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
