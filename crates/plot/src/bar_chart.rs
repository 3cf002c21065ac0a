//! Horizontal bar chart for signed contributions (e.g. direct logit attribution per component):
//! one bar per category, green for positive and orange for negative values, a zero line.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::colormap::ColorMap;
use crate::error::{PlotError, Result};
use crate::render::render_png;
use crate::style::{
    draw_bottom_axis_title, draw_left_axis_title, draw_text, draw_tick_label, draw_title,
    fill_rect, format_number, max_text_width, nice_ticks, text_size, PixelRect, AXIS_SIZE, GRID,
    INK, PAD, TICK_SIZE, TITLE_SIZE,
};

/// Bars listed top to bottom.
#[derive(Clone, Debug)]
pub struct BarChart {
    pub title: String,
    /// Name of the value axis with units.
    pub value_label: String,
    /// Name of the category axis.
    pub category_label: String,
    /// `(category, value)` from top to bottom; NaN values get no bar.
    pub bars: Vec<(String, f64)>,
}

const ROW: i32 = 26;

impl BarChart {
    /// A chart of `bars`.
    pub fn new(
        title: impl Into<String>,
        value_label: impl Into<String>,
        category_label: impl Into<String>,
        bars: Vec<(String, f64)>,
    ) -> BarChart {
        BarChart {
            title: title.into(),
            value_label: value_label.into(),
            category_label: category_label.into(),
            bars,
        }
    }

    /// Checks there is at least one finite bar.
    pub fn validate(&self) -> Result<()> {
        if self.bars.iter().any(|b| b.1.is_finite()) {
            Ok(())
        } else {
            Err(PlotError::InvalidFigure(format!(
                "{:?}: no finite values",
                self.title
            )))
        }
    }

    /// Width 820, one 26-pixel row per bar.
    pub fn default_size(&self) -> (u32, u32) {
        let m = self.margins();
        let title_w = text_size(&self.title, TITLE_SIZE, true).0 + 2 * PAD;
        let h = m.top + self.bars.len() as i32 * ROW + m.bottom;
        (820.max(title_w) as u32, h.max(280) as u32)
    }

    /// Draws the chart into a PNG of `size` pixels.
    pub fn save(&self, path: &Path, size: (u32, u32)) -> Result<()> {
        self.validate()?;
        render_png(path, size, |area| self.draw(area))
    }

    /// Draws the chart over the whole of `area`.
    pub fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        self.validate()?;
        let (w, h) = area.dim_in_pixel();
        let m = self.margins();
        let plot = PixelRect {
            x0: m.left,
            y0: m.top,
            x1: w as i32 - m.right,
            y1: h as i32 - m.bottom,
        };
        draw_title(area, &self.title)?;
        let (lo, hi) = self.value_range();
        let x_of = |v: f64| plot.x0 + ((v - lo) / (hi - lo) * plot.width() as f64).round() as i32;
        for tick in nice_ticks(lo, hi, 6) {
            let x = x_of(tick);
            vertical_rule(area, plot, x, 1, &GRID)?;
            draw_tick_label(
                area,
                &format_number(tick),
                false,
                (x, plot.y1 + 8),
                (HPos::Center, VPos::Top),
            )?;
        }
        let n = self.bars.len().max(1);
        for (i, (label, value)) in self.bars.iter().enumerate() {
            draw_bar(area, plot.cell(i, 0, n, 1), plot.x0, (label, *value), x_of)?;
        }
        vertical_rule(area, plot, x_of(0.0), 2, &INK)?;
        fill_rect(
            area,
            PixelRect {
                x0: plot.x0,
                y0: plot.y1,
                x1: plot.x1,
                y1: plot.y1 + 1,
            },
            &INK,
        )?;
        draw_left_axis_title(area, &self.category_label, plot.center().1)?;
        draw_bottom_axis_title(area, &self.value_label, plot.center().0)
    }

    /// The value axis's range: the finite values and 0, with 8 % of the span added on the right
    /// (and on the left when a value is negative).
    fn value_range(&self) -> (f64, f64) {
        let finite = self.bars.iter().map(|b| b.1).filter(|v| v.is_finite());
        let lo = finite.clone().fold(0.0f64, f64::min);
        let hi = finite.fold(0.0f64, f64::max);
        let span = if hi > lo { hi - lo } else { 1.0 };
        (lo - 0.08 * span * (lo < 0.0) as u8 as f64, hi + 0.08 * span)
    }

    fn margins(&self) -> Margins {
        let axis_cap = text_size("Ag", AXIS_SIZE, false).1;
        let tick_cap = text_size("Ag", TICK_SIZE, false).1;
        let label_w = max_text_width(self.bars.iter().map(|b| b.0.as_str()), TICK_SIZE);
        let value_w = max_text_width(
            self.bars
                .iter()
                .map(|b| format_number(b.1))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
            TICK_SIZE,
        );
        Margins {
            top: PAD + text_size("Ag", TITLE_SIZE, true).1 + 22,
            left: PAD + axis_cap + 16 + label_w + 10,
            bottom: 10 + tick_cap + 16 + axis_cap + PAD,
            right: value_w + 12 + PAD,
        }
    }
}

struct Margins {
    top: i32,
    left: i32,
    bottom: i32,
    right: i32,
}

/// A vertical line `width` pixels wide from `x` rightwards over the height of `plot`.
fn vertical_rule<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    plot: PixelRect,
    x: i32,
    width: i32,
    color: &RGBColor,
) -> Result<()> {
    fill_rect(
        area,
        PixelRect {
            x0: x,
            y0: plot.y0,
            x1: x + width,
            y1: plot.y1,
        },
        color,
    )
}

/// One bar in its `row` of the plot: the label right-aligned before `plot_left`, a bar from 0 to
/// the value (green when ≥ 0, orange below; nothing when not finite) and the value beside its
/// end; `x_of` maps a value to its pixel column.
fn draw_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    row: PixelRect,
    plot_left: i32,
    (label, value): (&str, f64),
    x_of: impl Fn(f64) -> i32,
) -> Result<()> {
    let (cy, half) = (row.center().1, (row.height() * 7 / 20).max(2));
    draw_tick_label(
        area,
        label,
        false,
        (plot_left - 8, cy),
        (HPos::Right, VPos::Center),
    )?;
    if !value.is_finite() {
        return Ok(());
    }
    let (x0, x1) = (x_of(0.0), x_of(value));
    let color = if value >= 0.0 {
        ColorMap::Diverging.at(0.85)
    } else {
        ColorMap::Diverging.at(0.15)
    };
    fill_rect(
        area,
        PixelRect {
            x0: x0.min(x1),
            y0: cy - half,
            x1: x0.max(x1) + 1,
            y1: cy + half,
        },
        &color,
    )?;
    let (pos, anchor) = if value >= 0.0 {
        (x1 + 5, HPos::Left)
    } else {
        (x1 - 5, HPos::Right)
    };
    draw_text(
        area,
        &format_number(value),
        TICK_SIZE - 2.0,
        false,
        &INK,
        (pos, cy),
        (anchor, VPos::Center),
    )
}
