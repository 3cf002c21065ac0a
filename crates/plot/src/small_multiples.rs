//! Small multiples: one heatmap per checkpoint (or per variant) on a grid of panels, all on one
//! shared colour scale with a single colour bar.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::colormap::ColorScale;
use crate::error::{PlotError, Result};
use crate::heatmap::{
    color_bar_extent, grid_cell, grid_style_setters, paint_cells, paint_col_labels,
    paint_color_bar, paint_row_labels, validate_grid, widest_cell_text, Annotate, COLOR_BAR_WIDTH,
};
use crate::render::render_png;
use crate::style::{
    draw_bottom_axis_title, draw_left_axis_title, draw_panel_title, draw_title, max_text_width,
    text_size, PixelRect, AXIS_SIZE, PAD, TICK_SIZE, TITLE_SIZE,
};

/// One heatmap of a small-multiples figure.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Shown above the panel, e.g. "step 2000".
    pub title: String,
    /// `values[row][col]`, the same shape in every panel; NaN = no data.
    pub values: Vec<Vec<f64>>,
}

/// Panels that share row and column labels and one colour scale.
#[derive(Clone, Debug)]
pub struct SmallMultiples {
    pub title: String,
    pub panels: Vec<Panel>,
    /// Row labels, row 0 first (drawn at the bottom of each panel).
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    pub row_axis: String,
    pub col_axis: String,
    pub quantity: String,
    pub scale: ColorScale,
    /// Panels per row of the figure.
    pub columns: usize,
    pub annotate: Annotate,
}

/// Where the panels and the colour bar land in a figure of a given size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmallMultiplesLayout {
    /// The cell area of each panel, in panel order.
    pub panels: Vec<PixelRect>,
    pub color_bar: PixelRect,
}

const H_GAP: i32 = 18;
const V_GAP: i32 = 14;

impl SmallMultiples {
    /// Panels on a shared sequential scale over all their values, up to 4 per row.
    pub fn new(
        title: impl Into<String>,
        row_labels: Vec<String>,
        col_labels: Vec<String>,
        panels: Vec<Panel>,
    ) -> SmallMultiples {
        let scale = ColorScale::sequential_from(
            panels
                .iter()
                .flat_map(|p| p.values.iter().flatten().copied()),
        );
        let columns = panels.len().clamp(1, 4);
        SmallMultiples {
            title: title.into(),
            panels,
            row_labels,
            col_labels,
            row_axis: String::new(),
            col_axis: String::new(),
            quantity: String::new(),
            scale,
            columns,
            annotate: Annotate::Auto,
        }
    }

    grid_style_setters!(SmallMultiples);

    /// Sets how many panels go in a row.
    pub fn columns(mut self, columns: usize) -> SmallMultiples {
        self.columns = columns.max(1);
        self
    }

    /// Checks that there are panels and that they all match the labels.
    pub fn validate(&self) -> Result<()> {
        if self.panels.is_empty() {
            return Err(PlotError::InvalidFigure(format!(
                "{:?}: no panels",
                self.title
            )));
        }
        for panel in &self.panels {
            validate_grid(
                &format!("{} / {}", self.title, panel.title),
                &panel.values,
                self.row_labels.len(),
                self.col_labels.len(),
            )?;
        }
        Ok(())
    }

    fn grid_shape(&self) -> (usize, usize) {
        let cols = self.columns.clamp(1, self.panels.len().max(1));
        (self.panels.len().div_ceil(cols), cols)
    }

    /// A size that keeps cells readable.
    pub fn default_size(&self) -> (u32, u32) {
        let (panel_rows, panel_cols) = self.grid_shape();
        let n_rows = self.row_labels.len().max(1) as i32;
        let n_cols = self.col_labels.len().max(1) as i32;
        let label_w = max_text_width(self.col_labels.iter().map(String::as_str), TICK_SIZE);
        let cell_w = (260 / n_cols).clamp((label_w + 8).clamp(28, 70), 72);
        let cell_h = (240 / n_rows).clamp(18, 40);
        let m = self.margins();
        let title_h = panel_title_height();
        let w = m.left
            + panel_cols as i32 * n_cols * cell_w
            + (panel_cols as i32 - 1) * H_GAP
            + m.right;
        let h = m.top
            + panel_rows as i32 * (title_h + n_rows * cell_h)
            + (panel_rows as i32 - 1) * V_GAP
            + m.bottom;
        let title_w = text_size(&self.title, TITLE_SIZE, true).0 + 2 * PAD;
        (w.max(title_w) as u32, h as u32)
    }

    /// Where the panels go in a figure of `size` pixels.
    pub fn layout(&self, size: (u32, u32)) -> SmallMultiplesLayout {
        let (panel_rows, panel_cols) = self.grid_shape();
        let m = self.margins();
        let title_h = panel_title_height();
        let inner_w = size.0 as i32 - m.left - m.right - (panel_cols as i32 - 1) * H_GAP;
        let inner_h = size.1 as i32
            - m.top
            - m.bottom
            - (panel_rows as i32 - 1) * V_GAP
            - panel_rows as i32 * title_h;
        let panel_w = (inner_w / panel_cols as i32).max(1);
        let panel_h = (inner_h / panel_rows as i32).max(1);
        let panels = (0..self.panels.len())
            .map(|i| {
                let (pr, pc) = ((i / panel_cols) as i32, (i % panel_cols) as i32);
                let x0 = m.left + pc * (panel_w + H_GAP);
                let y0 = m.top + pr * (panel_h + title_h + V_GAP) + title_h;
                PixelRect {
                    x0,
                    y0,
                    x1: x0 + panel_w,
                    y1: y0 + panel_h,
                }
            })
            .collect::<Vec<_>>();
        let bar_x = m.left + panel_cols as i32 * (panel_w + H_GAP) - H_GAP + 18;
        let last_y = m.top + panel_rows as i32 * (panel_h + title_h + V_GAP) - V_GAP;
        SmallMultiplesLayout {
            panels,
            color_bar: PixelRect {
                x0: bar_x,
                y0: m.top + title_h,
                x1: bar_x + COLOR_BAR_WIDTH,
                y1: last_y,
            },
        }
    }

    /// Draws the figure over the whole of `area`.
    pub fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        self.validate()?;
        let (w, h) = area.dim_in_pixel();
        let layout = self.layout((w, h));
        let (_, panel_cols) = self.grid_shape();
        draw_title(area, &self.title)?;
        let annotate = self.annotations_fit(&layout);
        let n = self.panels.len();
        for (i, (panel, rect)) in self.panels.iter().zip(&layout.panels).enumerate() {
            draw_panel_title(area, &panel.title, *rect)?;
            paint_cells(area, *rect, &panel.values, &self.scale, true, annotate)?;
            if i % panel_cols == 0 {
                paint_row_labels(area, *rect, &self.row_labels, true)?;
            }
            if i + panel_cols >= n {
                paint_col_labels(area, *rect, &self.col_labels, false)?;
            }
        }
        let first = layout.panels[0];
        draw_left_axis_title(area, &self.row_axis, layout.color_bar.center().1)?;
        let right = layout.panels.iter().map(|p| p.x1).max().unwrap_or(first.x1);
        draw_bottom_axis_title(area, &self.col_axis, (first.x0 + right) / 2)?;
        let any_missing = self
            .panels
            .iter()
            .any(|p| p.values.iter().flatten().any(|v| v.is_nan()));
        paint_color_bar(
            area,
            layout.color_bar,
            &self.scale,
            &self.quantity,
            any_missing,
        )
    }

    /// Draws the figure into a PNG of `size` pixels.
    pub fn save(&self, path: &Path, size: (u32, u32)) -> Result<()> {
        self.validate()?;
        render_png(path, size, |area| self.draw(area))
    }

    /// The cell `(row, col)` of panel `panel` (row 0 at the bottom) in `layout`.
    pub fn cell(
        &self,
        layout: &SmallMultiplesLayout,
        panel: usize,
        row: usize,
        col: usize,
    ) -> PixelRect {
        grid_cell(
            layout.panels[panel],
            row,
            col,
            self.row_labels.len(),
            self.col_labels.len(),
            true,
        )
    }

    fn annotations_fit(&self, layout: &SmallMultiplesLayout) -> bool {
        let values = self.panels.iter().flat_map(|p| p.values.iter().flatten());
        self.annotate.applies(self.cell(layout, 0, 0, 0), || {
            Some(widest_cell_text(values))
        })
    }

    fn margins(&self) -> Margins {
        let axis_cap = text_size("Ag", AXIS_SIZE, false).1;
        let tick_cap = text_size("Ag", TICK_SIZE, false).1;
        let row_label_w = max_text_width(self.row_labels.iter().map(String::as_str), TICK_SIZE);
        Margins {
            top: PAD + text_size("Ag", TITLE_SIZE, true).1 + 16,
            left: PAD + axis_cap + 14 + row_label_w + 8,
            bottom: (10 + tick_cap + 16 + axis_cap + PAD).max(50),
            right: 18 + color_bar_extent(&self.scale, &self.quantity) + PAD,
        }
    }
}

fn panel_title_height() -> i32 {
    text_size("Ag", TICK_SIZE, true).1 + 14
}

struct Margins {
    top: i32,
    left: i32,
    bottom: i32,
    right: i32,
}
