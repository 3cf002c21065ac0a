//! Writing a drawing to a PNG file.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters_backend::DrawingErrorKind;

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
        message: present_error_text(e),
    })
}

/// The bitmap backend's error type (plotters does not export its name).
type BitmapError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

/// The cause of a failed PNG write in words: the I/O or encoder error's own text (the backend's
/// `Display` is its `Debug` form, e.g. `IOError(Os { code: 28, .. })`).
fn present_error_text(err: DrawingAreaErrorKind<BitmapError>) -> String {
    match err {
        DrawingAreaErrorKind::BackendError(DrawingErrorKind::DrawingError(e)) => match e {
            BitmapError::IOError(io) => io.to_string(),
            BitmapError::ImageError(image) => image.to_string(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}
