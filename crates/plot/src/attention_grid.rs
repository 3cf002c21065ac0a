//! Attention-pattern grid for one example: one query × key heatmap per (layer, head), layers down,
//! heads across, on a shared 0–1 scale.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::colormap::ColorScale;
use crate::error::{PlotError, Result};
use crate::heatmap::{
    color_bar_extent, grid_cell, paint_cells, paint_col_labels, paint_color_bar, paint_row_labels,
    Annotate, COLOR_BAR_WIDTH,
};
use crate::render::render_png;
use crate::style::{
    draw_bottom_axis_title, draw_left_axis_title, draw_panel_title, draw_tick_label, draw_title,
    format_cell, max_text_width, text_size, PixelRect, AXIS_SIZE, CELL_SIZE, PAD, TICK_SIZE,
    TITLE_SIZE,
};

/// Attention patterns of every (layer, head) for one example.
#[derive(Clone, Debug)]
pub struct AttentionGrid {
    pub title: String,
    /// Row headers, one per layer, e.g. "block 0".
    pub layer_labels: Vec<String>,
    /// Column headers, one per head, e.g. "head 0".
    pub head_labels: Vec<String>,
    /// Query positions, top to bottom.
    pub query_labels: Vec<String>,
    /// Key positions, left to right.
    pub key_labels: Vec<String>,
    /// `patterns[layer][head][query][key]`; NaN = not recorded (e.g. masked).
    pub patterns: Vec<Vec<Vec<Vec<f64>>>>,
    pub annotate: Annotate,
}

/// Where each pattern lands in a figure of a given size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttentionLayout {
    /// `panels[layer][head]`: the cell area of that pattern.
    pub panels: Vec<Vec<PixelRect>>,
    pub color_bar: PixelRect,
}

const H_GAP: i32 = 12;
const V_GAP: i32 = 12;
const QUANTITY: &str = "attention weight";

impl AttentionGrid {
    /// Checks that every pattern is `query × key` and that there is one per (layer, head).
    pub fn validate(&self) -> Result<()> {
        let shape_ok = !self.layer_labels.is_empty()
            && !self.head_labels.is_empty()
            && !self.query_labels.is_empty()
            && !self.key_labels.is_empty()
            && self.patterns.len() == self.layer_labels.len()
            && self.patterns.iter().all(|heads| {
                heads.len() == self.head_labels.len()
                    && heads.iter().all(|p| {
                        p.len() == self.query_labels.len()
                            && p.iter().all(|q| q.len() == self.key_labels.len())
                    })
            });
        if shape_ok {
            Ok(())
        } else {
            Err(PlotError::InvalidFigure(format!(
                "{:?}: patterns are not {} layers × {} heads × {} queries × {} keys",
                self.title,
                self.layer_labels.len(),
                self.head_labels.len(),
                self.query_labels.len(),
                self.key_labels.len()
            )))
        }
    }

    fn scale() -> ColorScale {
        ColorScale::sequential(0.0, 1.0)
    }

    /// A size with square cells.
    pub fn default_size(&self) -> (u32, u32) {
        let n_layers = self.layer_labels.len().max(1) as i32;
        let n_heads = self.head_labels.len().max(1) as i32;
        let n_q = self.query_labels.len().max(1) as i32;
        let n_k = self.key_labels.len().max(1) as i32;
        let cell = (880 / (n_heads * n_k)).clamp(14, 44);
        let m = self.margins(cell);
        let w = m.left + n_heads * n_k * cell + (n_heads - 1) * H_GAP + m.right;
        let h = m.top + n_layers * n_q * cell + (n_layers - 1) * V_GAP + m.bottom;
        let title_w = text_size(&self.title, TITLE_SIZE, true).0 + 2 * PAD;
        (w.max(title_w) as u32, h as u32)
    }

    /// Where the patterns go in a figure of `size` pixels.
    pub fn layout(&self, size: (u32, u32)) -> AttentionLayout {
        let n_layers = self.layer_labels.len().max(1) as i32;
        let n_heads = self.head_labels.len().max(1) as i32;
        let n_k = self.key_labels.len().max(1) as i32;
        let horizontal = self.margins(i32::MAX);
        let cell_w = (size.0 as i32 - horizontal.left - horizontal.right) / (n_heads * n_k);
        let m = self.margins(cell_w);
        let panel_w = ((size.0 as i32 - m.left - m.right - (n_heads - 1) * H_GAP) / n_heads).max(1);
        let panel_h =
            ((size.1 as i32 - m.top - m.bottom - (n_layers - 1) * V_GAP) / n_layers).max(1);
        let panels = (0..n_layers)
            .map(|l| {
                (0..n_heads)
                    .map(|hd| {
                        let x0 = m.left + hd * (panel_w + H_GAP);
                        let y0 = m.top + l * (panel_h + V_GAP);
                        PixelRect {
                            x0,
                            y0,
                            x1: x0 + panel_w,
                            y1: y0 + panel_h,
                        }
                    })
                    .collect()
            })
            .collect();
        let bar_x = m.left + n_heads * (panel_w + H_GAP) - H_GAP + 18;
        AttentionLayout {
            panels,
            color_bar: PixelRect {
                x0: bar_x,
                y0: m.top,
                x1: bar_x + COLOR_BAR_WIDTH,
                y1: m.top + n_layers * (panel_h + V_GAP) - V_GAP,
            },
        }
    }

    /// Draws the grid over the whole of `area`.
    pub fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        self.validate()?;
        let (w, h) = area.dim_in_pixel();
        let layout = self.layout((w, h));
        let scale = Self::scale();
        draw_title(area, &self.title)?;
        self.draw_panels(area, &layout, &scale)?;
        let first = layout.panels[0][0];
        draw_left_axis_title(area, "query position", layout.color_bar.center().1)?;
        let right = layout.panels[0].last().map_or(first.x1, |r| r.x1);
        draw_bottom_axis_title(area, "key position", (first.x0 + right) / 2)?;
        let any_missing = self
            .patterns
            .iter()
            .flatten()
            .flatten()
            .flatten()
            .any(|v| v.is_nan());
        paint_color_bar(area, layout.color_bar, &scale, QUANTITY, any_missing)
    }

    /// Every (layer, head) panel's cells on `scale`, the head names above the top row, the key
    /// labels under the bottom row, and the query labels and layer name left of each row.
    fn draw_panels<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        layout: &AttentionLayout,
        scale: &ColorScale,
    ) -> Result<()> {
        let first = layout.panels[0][0];
        let cell_w = first.width() / self.key_labels.len().max(1) as i32;
        let key_labels_vertical =
            max_text_width(self.key_labels.iter().map(String::as_str), TICK_SIZE) > cell_w - 4;
        let annotate = self.annotations_fit(layout);
        let query_w = max_text_width(self.query_labels.iter().map(String::as_str), TICK_SIZE);
        let n_layers = self.layer_labels.len();
        for (l, (heads, rects)) in self.patterns.iter().zip(&layout.panels).enumerate() {
            for (hd, (pattern, rect)) in heads.iter().zip(rects).enumerate() {
                paint_cells(area, *rect, pattern, scale, false, annotate)?;
                if l == 0 {
                    draw_panel_title(area, &self.head_labels[hd], *rect)?;
                }
                if l + 1 == n_layers {
                    paint_col_labels(area, *rect, &self.key_labels, key_labels_vertical)?;
                }
            }
            let left = rects[0];
            paint_row_labels(area, left, &self.query_labels, false)?;
            draw_tick_label(
                area,
                &self.layer_labels[l],
                true,
                (left.x0 - 8 - query_w - 12, left.center().1),
                (HPos::Right, VPos::Center),
            )?;
        }
        Ok(())
    }

    /// Draws the grid into a PNG of `size` pixels.
    pub fn save(&self, path: &Path, size: (u32, u32)) -> Result<()> {
        self.validate()?;
        render_png(path, size, |area| self.draw(area))
    }

    /// The cell of (`layer`, `head`, `query`, `key`) in `layout`.
    pub fn cell(
        &self,
        layout: &AttentionLayout,
        layer: usize,
        head: usize,
        query: usize,
        key: usize,
    ) -> PixelRect {
        grid_cell(
            layout.panels[layer][head],
            query,
            key,
            self.query_labels.len(),
            self.key_labels.len(),
            false,
        )
    }

    fn annotations_fit(&self, layout: &AttentionLayout) -> bool {
        self.annotate.applies(self.cell(layout, 0, 0, 0, 0), || {
            Some(text_size(&format_cell(0.55), CELL_SIZE, false).0)
        })
    }

    fn margins(&self, cell_w: i32) -> Margins {
        let axis_cap = text_size("Ag", AXIS_SIZE, false).1;
        let tick_cap = text_size("Ag", TICK_SIZE, false).1;
        let layer_w = self
            .layer_labels
            .iter()
            .map(|t| text_size(t, TICK_SIZE, true).0)
            .max()
            .unwrap_or(0);
        let query_w = max_text_width(self.query_labels.iter().map(String::as_str), TICK_SIZE);
        let key_w = max_text_width(self.key_labels.iter().map(String::as_str), TICK_SIZE);
        let key_h = if key_w > cell_w - 4 { key_w } else { tick_cap };
        Margins {
            top: PAD + text_size("Ag", TITLE_SIZE, true).1 + 20 + tick_cap + 12,
            left: PAD + axis_cap + 16 + layer_w + 12 + query_w + 8,
            bottom: (10 + key_h + 16 + axis_cap + PAD).max(50),
            right: 18 + color_bar_extent(&Self::scale(), QUANTITY) + PAD,
        }
    }
}

struct Margins {
    top: i32,
    left: i32,
    bottom: i32,
    right: i32,
}
