//! Heatmap: one coloured cell per value (rows = layers, bottom to top; columns = positions),
//! row and column labels, a colour bar naming its quantity, numbers in the cells when they fit.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::colormap::{text_color_on, ColorScale, NO_DATA};
use crate::error::{PlotError, Result};
use crate::render::render_png;
use crate::style::{
    draw_bottom_axis_title, draw_left_axis_title, draw_text, draw_tick_label, draw_title,
    draw_vertical_text, fill_rect, format_cell, format_number, max_text_width, nice_ticks,
    outline_rect, text_size, PixelRect, AXIS_SIZE, CELL_SIZE, INK, PAD, TICK_SIZE, TITLE_SIZE,
};

/// Whether to write each cell's value inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Annotate {
    /// When the cells are large enough to hold the number.
    Auto,
    Always,
    Never,
}

impl Annotate {
    /// Whether the values are written into cells like `cell`: always, never, or (`Auto`) when
    /// the widest value's text (`widest` pixels; `None`: too many cells to annotate) fits with a
    /// margin.
    pub(crate) fn applies(self, cell: PixelRect, widest: impl FnOnce() -> Option<i32>) -> bool {
        match self {
            Annotate::Always => true,
            Annotate::Never => false,
            Annotate::Auto => widest()
                .is_some_and(|w| cell.width() >= w + 8 && cell.height() as f64 >= CELL_SIZE + 6.0),
        }
    }
}

/// Width in pixels of the widest finite value of `values` written in a cell.
pub(crate) fn widest_cell_text<'a>(values: impl Iterator<Item = &'a f64>) -> i32 {
    values
        .filter(|v| v.is_finite())
        .map(|v| text_size(&format_cell(*v), CELL_SIZE, false).0)
        .max()
        .unwrap_or(0)
}

/// The builder setters of the axis names, colour-bar quantity, colour scale and annotation rule
/// that [`Heatmap`] and [`crate::small_multiples::SmallMultiples`] share (fields `row_axis`,
/// `col_axis`, `quantity`, `scale`, `annotate`).
macro_rules! grid_style_setters {
    ($figure:ty) => {
        /// Sets the names of the row and column axes.
        pub fn axes(mut self, row_axis: impl Into<String>, col_axis: impl Into<String>) -> $figure {
            self.row_axis = row_axis.into();
            self.col_axis = col_axis.into();
            self
        }

        /// Sets the quantity named on the colour bar.
        pub fn quantity(mut self, quantity: impl Into<String>) -> $figure {
            self.quantity = quantity.into();
            self
        }

        /// Sets the colour scale (shared by every panel).
        pub fn scale(mut self, scale: ColorScale) -> $figure {
            self.scale = scale;
            self
        }

        /// Sets when cell values are written.
        pub fn annotate(mut self, annotate: Annotate) -> $figure {
            self.annotate = annotate;
            self
        }
    };
}
pub(crate) use grid_style_setters;

/// A heatmap with labelled rows (row 0 drawn at the bottom) and columns.
#[derive(Clone, Debug)]
pub struct Heatmap {
    pub title: String,
    /// Labels of the rows, row 0 first (drawn at the bottom).
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    /// `values[row][col]`; NaN marks a cell with no data (drawn grey).
    pub values: Vec<Vec<f64>>,
    /// Name of the row axis, e.g. "layer (0 = embeddings)".
    pub row_axis: String,
    /// Name of the column axis, e.g. "position (token role)".
    pub col_axis: String,
    /// The quantity the colour bar shows, e.g. "MRR".
    pub quantity: String,
    pub scale: ColorScale,
    pub annotate: Annotate,
}

/// Where a heatmap's parts land in a figure of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeatmapLayout {
    /// The cells' area.
    pub grid: PixelRect,
    /// The colour bar's gradient.
    pub color_bar: PixelRect,
    /// Column labels are drawn vertically when they do not fit under their cells.
    pub vertical_col_labels: bool,
    n_rows: usize,
    n_cols: usize,
}

impl HeatmapLayout {
    /// The pixel rectangle of cell `(row, col)` (row 0 at the bottom).
    pub fn cell(&self, row: usize, col: usize) -> PixelRect {
        grid_cell(self.grid, row, col, self.n_rows, self.n_cols, true)
    }
}

impl Heatmap {
    /// A heatmap with a sequential colour scale over the data's range and annotations when they fit.
    pub fn new(
        title: impl Into<String>,
        row_labels: Vec<String>,
        col_labels: Vec<String>,
        values: Vec<Vec<f64>>,
    ) -> Heatmap {
        let scale = ColorScale::sequential_from(values.iter().flatten().copied());
        Heatmap {
            title: title.into(),
            row_labels,
            col_labels,
            values,
            row_axis: String::new(),
            col_axis: String::new(),
            quantity: String::new(),
            scale,
            annotate: Annotate::Auto,
        }
    }

    grid_style_setters!(Heatmap);

    /// Checks that the grid is non-empty and matches its labels.
    pub fn validate(&self) -> Result<()> {
        validate_grid(
            &self.title,
            &self.values,
            self.row_labels.len(),
            self.col_labels.len(),
        )
    }

    /// A size that gives every cell room for its labels and number.
    pub fn default_size(&self) -> (u32, u32) {
        let n_rows = self.row_labels.len().max(1) as i32;
        let n_cols = self.col_labels.len().max(1) as i32;
        let label_w = max_text_width(self.col_labels.iter().map(String::as_str), TICK_SIZE);
        let number_w = text_size("-0.00", CELL_SIZE, false).0;
        let min_cell_w = 48.max(number_w + 12).max(label_w.min(110) + 12);
        let cell_w = (640 / n_cols).clamp(min_cell_w, 120.max(min_cell_w));
        let cell_h = (480 / n_rows).clamp(30, 56);
        let margins = self.margins(cell_w);
        let title_w = text_size(&self.title, TITLE_SIZE, true).0 + 2 * PAD;
        let w = (margins.left + n_cols * cell_w + margins.right).max(title_w);
        let h = margins.top + n_rows * cell_h + margins.bottom;
        (w as u32, h as u32)
    }

    /// Where the parts go in a figure of `size` pixels.
    pub fn layout(&self, size: (u32, u32)) -> HeatmapLayout {
        let n_cols = self.col_labels.len().max(1);
        let n_rows = self.row_labels.len().max(1);
        let horizontal = self.margins(i32::MAX);
        let cell_w = (size.0 as i32 - horizontal.left - horizontal.right) / n_cols as i32;
        let m = self.margins(cell_w);
        let grid = PixelRect {
            x0: m.left,
            y0: m.top,
            x1: (size.0 as i32 - m.right).max(m.left + 1),
            y1: (size.1 as i32 - m.bottom).max(m.top + 1),
        };
        let bar_x = grid.x1 + 18;
        HeatmapLayout {
            grid,
            color_bar: PixelRect {
                x0: bar_x,
                y0: grid.y0,
                x1: bar_x + COLOR_BAR_WIDTH,
                y1: grid.y1,
            },
            vertical_col_labels: m.vertical_col_labels,
            n_rows,
            n_cols,
        }
    }

    /// Draws the heatmap over the whole of `area`.
    pub fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        self.validate()?;
        let (w, h) = area.dim_in_pixel();
        let layout = self.layout((w, h));
        draw_title(area, &self.title)?;
        paint_cells(
            area,
            layout.grid,
            &self.values,
            &self.scale,
            true,
            self.annotations_fit(&layout),
        )?;
        paint_row_labels(area, layout.grid, &self.row_labels, true)?;
        paint_col_labels(
            area,
            layout.grid,
            &self.col_labels,
            layout.vertical_col_labels,
        )?;
        draw_left_axis_title(area, &self.row_axis, layout.grid.center().1)?;
        draw_bottom_axis_title(area, &self.col_axis, layout.grid.center().0)?;
        paint_color_bar(
            area,
            layout.color_bar,
            &self.scale,
            &self.quantity,
            self.values.iter().flatten().any(|v| v.is_nan()),
        )
    }

    /// Draws the heatmap into a PNG of `size` pixels.
    pub fn save(&self, path: &Path, size: (u32, u32)) -> Result<()> {
        self.validate()?;
        render_png(path, size, |area| self.draw(area))
    }

    fn annotations_fit(&self, layout: &HeatmapLayout) -> bool {
        let few_cells = layout.n_rows * layout.n_cols <= 200;
        self.annotate.applies(layout.cell(0, 0), || {
            few_cells.then(|| widest_cell_text(self.values.iter().flatten()))
        })
    }

    fn margins(&self, cell_w: i32) -> Margins {
        let axis_cap = text_size("Ag", AXIS_SIZE, false).1;
        let tick_cap = text_size("Ag", TICK_SIZE, false).1;
        let row_label_w = max_text_width(self.row_labels.iter().map(String::as_str), TICK_SIZE);
        let col_label_w = max_text_width(self.col_labels.iter().map(String::as_str), TICK_SIZE);
        let vertical_col_labels = col_label_w > cell_w - 6;
        let col_label_h = if vertical_col_labels {
            col_label_w
        } else {
            tick_cap
        };
        let top = PAD + text_size("Ag", TITLE_SIZE, true).1 + 22;
        let left = PAD + axis_cap + 14 + row_label_w + 8;
        let bottom = 10 + col_label_h + 16 + axis_cap + PAD;
        let right = 18 + color_bar_extent(&self.scale, &self.quantity) + PAD;
        Margins {
            top,
            left,
            bottom: bottom.max(50),
            right,
            vertical_col_labels,
        }
    }
}

struct Margins {
    top: i32,
    left: i32,
    bottom: i32,
    right: i32,
    vertical_col_labels: bool,
}

/// Colour of the frame around a grid of cells.
const FRAME: RGBColor = RGBColor(190, 190, 190);

/// Width of the colour-bar gradient in pixels.
pub(crate) const COLOR_BAR_WIDTH: i32 = 20;

/// Checks a `n_rows × n_cols` grid of values.
pub(crate) fn validate_grid(
    what: &str,
    values: &[Vec<f64>],
    n_rows: usize,
    n_cols: usize,
) -> Result<()> {
    if n_rows == 0 || n_cols == 0 {
        return Err(PlotError::InvalidFigure(format!(
            "{what:?}: no rows or no columns"
        )));
    }
    if values.len() != n_rows || values.iter().any(|r| r.len() != n_cols) {
        return Err(PlotError::InvalidFigure(format!(
            "{what:?}: values are not {n_rows} rows × {n_cols} columns"
        )));
    }
    Ok(())
}

/// Cell `(row, col)` of a grid over `rect`; `bottom_up` puts row 0 at the bottom.
pub(crate) fn grid_cell(
    rect: PixelRect,
    row: usize,
    col: usize,
    n_rows: usize,
    n_cols: usize,
    bottom_up: bool,
) -> PixelRect {
    let r = if bottom_up { n_rows - 1 - row } else { row };
    rect.cell(r, col, n_rows, n_cols)
}

/// Paints `values[row][col]` into `rect`, with a 1-pixel white gap between cells.
pub(crate) fn paint_cells<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rect: PixelRect,
    values: &[Vec<f64>],
    scale: &ColorScale,
    bottom_up: bool,
    annotate: bool,
) -> Result<()> {
    let n_rows = values.len();
    let n_cols = values.first().map_or(0, Vec::len);
    // A faint frame keeps the grid's extent visible where cells are white (diverging map at 0).
    outline_rect(
        area,
        PixelRect {
            x0: rect.x0 - 1,
            y0: rect.y0 - 1,
            ..rect
        },
        &FRAME,
    )?;
    for (row, line) in values.iter().enumerate() {
        for (col, &v) in line.iter().enumerate() {
            let cell = grid_cell(rect, row, col, n_rows, n_cols, bottom_up);
            let color = scale.color(v);
            let inner = PixelRect {
                x1: (cell.x1 - 1).max(cell.x0 + 1),
                y1: (cell.y1 - 1).max(cell.y0 + 1),
                ..cell
            };
            fill_rect(area, inner, &color)?;
            if annotate && v.is_finite() {
                draw_text(
                    area,
                    &format_cell(v),
                    CELL_SIZE,
                    false,
                    &text_color_on(&color),
                    inner.center(),
                    (HPos::Center, VPos::Center),
                )?;
            }
        }
    }
    Ok(())
}

/// Row labels right-aligned left of `rect`, centred on their rows.
pub(crate) fn paint_row_labels<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rect: PixelRect,
    labels: &[String],
    bottom_up: bool,
) -> Result<()> {
    let n = labels.len();
    let every = label_stride(rect.height(), n, TICK_SIZE as i32 + 4);
    for (row, label) in labels.iter().enumerate() {
        if row % every != 0 {
            continue;
        }
        let cell = grid_cell(rect, row, 0, n, 1, bottom_up);
        draw_tick_label(
            area,
            label,
            false,
            (rect.x0 - 8, cell.center().1),
            (HPos::Right, VPos::Center),
        )?;
    }
    Ok(())
}

/// Column labels under `rect`, horizontal or read bottom to top.
pub(crate) fn paint_col_labels<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rect: PixelRect,
    labels: &[String],
    vertical: bool,
) -> Result<()> {
    let n = labels.len();
    let min_gap = if vertical {
        TICK_SIZE as i32 + 4
    } else {
        max_text_width(labels.iter().map(String::as_str), TICK_SIZE) + 8
    };
    let every = label_stride(rect.width(), n, min_gap);
    for (col, label) in labels.iter().enumerate() {
        if col % every != 0 {
            continue;
        }
        let cell = rect.cell(0, col, 1, n);
        if vertical {
            let w = text_size(label, TICK_SIZE, false).0;
            draw_vertical_text(
                area,
                label,
                TICK_SIZE,
                false,
                &INK,
                (cell.center().0, rect.y1 + 8 + w / 2),
            )?;
        } else {
            draw_tick_label(
                area,
                label,
                false,
                (cell.center().0, rect.y1 + 8),
                (HPos::Center, VPos::Top),
            )?;
        }
    }
    Ok(())
}

/// Label every n-th item so that labels are at least `min_gap` pixels apart.
fn label_stride(extent: i32, n: usize, min_gap: i32) -> usize {
    if n == 0 {
        return 1;
    }
    let per_item = extent as f64 / n as f64;
    ((min_gap as f64 / per_item).ceil() as usize).max(1)
}

/// Pixels the colour bar needs to the right of its gap: gradient, tick labels and quantity.
pub(crate) fn color_bar_extent(scale: &ColorScale, quantity: &str) -> i32 {
    let tick_w = max_text_width(
        color_bar_ticks(scale).iter().map(|t| t.1.as_str()),
        TICK_SIZE,
    );
    let quantity_w = if quantity.is_empty() {
        0
    } else {
        12 + text_size("Ag", AXIS_SIZE, false).1
    };
    COLOR_BAR_WIDTH + 6 + tick_w + quantity_w
}

fn color_bar_ticks(scale: &ColorScale) -> Vec<(f64, String)> {
    let mut ticks = nice_ticks(scale.min, scale.max, 5);
    if ticks.len() < 2 {
        ticks = vec![scale.min, scale.max];
    }
    ticks.dedup();
    ticks.into_iter().map(|t| (t, format_number(t))).collect()
}

/// A vertical gradient of `scale` in `bar` (low values at the bottom), ticks to its right and
/// the `quantity` written vertically beyond them; with `no_data_key`, the grey "no data" swatch
/// 14 pixels under the bar.
pub(crate) fn paint_color_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    bar: PixelRect,
    scale: &ColorScale,
    quantity: &str,
    no_data_key: bool,
) -> Result<()> {
    paint_gradient(area, bar, scale)?;
    let h = bar.height().max(1);
    let ticks = color_bar_ticks(scale);
    for (value, label) in &ticks {
        let t = scale.fraction(*value);
        let y = bar.y1 - 1 - (t * (h - 1) as f64).round() as i32;
        fill_rect(
            area,
            PixelRect {
                x0: bar.x1,
                y0: y,
                x1: bar.x1 + 4,
                y1: y + 1,
            },
            &INK,
        )?;
        draw_tick_label(
            area,
            label,
            false,
            (bar.x1 + 6, y),
            (HPos::Left, VPos::Center),
        )?;
    }
    if !quantity.is_empty() {
        let tick_w = max_text_width(ticks.iter().map(|t| t.1.as_str()), TICK_SIZE);
        let cap = text_size("Ag", AXIS_SIZE, false).1;
        draw_vertical_text(
            area,
            quantity,
            AXIS_SIZE,
            false,
            &INK,
            (bar.x1 + 6 + tick_w + 12 + cap / 2, (bar.y0 + bar.y1) / 2),
        )?;
    }
    if no_data_key {
        paint_no_data_key(area, (bar.x0, bar.y1 + 14))?;
    }
    Ok(())
}

/// The colours of `scale` from its minimum at the bottom of `bar` to its maximum at the top,
/// outlined in ink.
fn paint_gradient<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    bar: PixelRect,
    scale: &ColorScale,
) -> Result<()> {
    let h = bar.height().max(1);
    for y in bar.y0..bar.y1 {
        let t = 1.0 - (y - bar.y0) as f64 / (h - 1).max(1) as f64;
        let value = scale.min + t * (scale.max - scale.min);
        fill_rect(
            area,
            PixelRect {
                y0: y,
                y1: y + 1,
                ..bar
            },
            &scale.color(value),
        )?;
    }
    outline_rect(area, bar, &INK)
}

/// A grey swatch labelled "no data" with its top-left corner at `pos`.
fn paint_no_data_key<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    pos: (i32, i32),
) -> Result<()> {
    let swatch = PixelRect {
        x0: pos.0,
        y0: pos.1,
        x1: pos.0 + 14,
        y1: pos.1 + 14,
    };
    fill_rect(area, swatch, &NO_DATA)?;
    draw_tick_label(
        area,
        "no data",
        false,
        (swatch.x1 + 6, swatch.center().1),
        (HPos::Left, VPos::Center),
    )
}
