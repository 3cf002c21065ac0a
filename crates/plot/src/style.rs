//! Shared look: font sizes, text placement, number formatting, tick choice and series colours.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use crate::error::{draw_error, Result};
use crate::font::FAMILY;

/// Figure title.
pub(crate) const TITLE_SIZE: f64 = 22.0;
/// Axis names and colour-bar quantity.
pub(crate) const AXIS_SIZE: f64 = 17.0;
/// Tick labels and legend entries.
pub(crate) const TICK_SIZE: f64 = 15.0;
/// Numbers written inside heatmap cells.
pub(crate) const CELL_SIZE: f64 = 14.0;
/// Outer padding of every figure, in pixels.
pub(crate) const PAD: i32 = 14;

/// Dark grey used for text and axes.
pub(crate) const INK: RGBColor = RGBColor(34, 34, 34);
/// Light grey for grid lines.
pub(crate) const GRID: RGBColor = RGBColor(225, 225, 225);

/// Colour-blind-friendly categorical palette (Okabe–Ito, then Tableau extras).
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(140, 86, 75),
    RGBColor(31, 31, 31),
    RGBColor(188, 189, 34),
];

/// The palette colour for the `i`-th series (cycles).
pub fn palette_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A font of this crate's family.
pub(crate) fn font(size: f64, bold: bool) -> FontDesc<'static> {
    let style = if bold {
        FontStyle::Bold
    } else {
        FontStyle::Normal
    };
    FontDesc::new(FontFamily::Name(FAMILY), size, style)
}

/// Width and height in pixels of `text` as drawn at `size`. Registers the embedded font first, so
/// that a figure measured before any PNG of the process was written is laid out like the rest (a
/// font that fails to register measures 0 here and is reported when the PNG is written).
pub(crate) fn text_size(text: &str, size: f64, bold: bool) -> (i32, i32) {
    let _ = crate::font::ensure_registered();
    let (w, _) = font(size, bold).box_size(text).unwrap_or((0, 0));
    (w as i32, (size * 0.75).round() as i32)
}

/// Widest of `texts` in pixels.
pub(crate) fn max_text_width<'a>(texts: impl IntoIterator<Item = &'a str>, size: f64) -> i32 {
    texts
        .into_iter()
        .map(|t| text_size(t, size, false).0)
        .max()
        .unwrap_or(0)
}

/// Horizontal text whose visible box (cap height, no descenders) is anchored at `pos`.
pub(crate) fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    size: f64,
    bold: bool,
    color: &RGBColor,
    pos: (i32, i32),
    anchor: (HPos, VPos),
) -> Result<()> {
    let (_, cap) = text_size(text, size, bold);
    // plotters' ab_glyph backend puts the baseline half a font size below the top anchor;
    // shift so that `pos` refers to the cap box instead.
    let baseline_below_top = (size * 0.5).round() as i32;
    let top = match anchor.1 {
        VPos::Top => pos.1,
        VPos::Center => pos.1 - cap / 2,
        VPos::Bottom => pos.1 - cap,
    };
    let y = top + cap - baseline_below_top;
    let style = TextStyle::from(font(size, bold))
        .color(color)
        .pos(Pos::new(anchor.0, VPos::Top));
    area.draw(&Text::new(text.to_string(), (pos.0, y), style))
        .map_err(draw_error)
}

/// A figure's title, bold and centred at the top of `area`.
pub(crate) fn draw_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
) -> Result<()> {
    let (w, _) = area.dim_in_pixel();
    draw_text(
        area,
        title,
        TITLE_SIZE,
        true,
        &INK,
        (w as i32 / 2, PAD),
        (HPos::Center, VPos::Top),
    )
}

/// Tick-size text in ink anchored at `pos`: regular for tick labels, category names and keys,
/// `bold` for panel and legend headings.
pub(crate) fn draw_tick_label<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    bold: bool,
    pos: (i32, i32),
    anchor: (HPos, VPos),
) -> Result<()> {
    draw_text(area, text, TICK_SIZE, bold, &INK, pos, anchor)
}

/// A panel's title, bold at tick size, centred 8 pixels above the panel's cells `rect`.
pub(crate) fn draw_panel_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    rect: PixelRect,
) -> Result<()> {
    draw_tick_label(
        area,
        title,
        true,
        (rect.center().0, rect.y0 - 8),
        (HPos::Center, VPos::Bottom),
    )
}

/// The title of a vertical axis, read bottom to top at the left edge of `area`, centred on
/// `centre_y`.
pub(crate) fn draw_left_axis_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    centre_y: i32,
) -> Result<()> {
    let cap = text_size("Ag", AXIS_SIZE, false).1;
    draw_vertical_text(
        area,
        title,
        AXIS_SIZE,
        false,
        &INK,
        (PAD + cap / 2, centre_y),
    )
}

/// The title of a horizontal axis, centred on `centre_x` at the bottom of `area`.
pub(crate) fn draw_bottom_axis_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    centre_x: i32,
) -> Result<()> {
    let (_, h) = area.dim_in_pixel();
    draw_text(
        area,
        title,
        AXIS_SIZE,
        false,
        &INK,
        (centre_x, h as i32 - PAD),
        (HPos::Center, VPos::Bottom),
    )
}

/// Text read bottom to top, centred on `centre`.
pub(crate) fn draw_vertical_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    size: f64,
    bold: bool,
    color: &RGBColor,
    centre: (i32, i32),
) -> Result<()> {
    let (w, cap) = text_size(text, size, bold);
    let baseline_below_top = (size * 0.5).round() as i32;
    // Rotate270 maps the glyph offset (dx, dy) to (dy, -dx): the text's top edge faces left.
    let x = centre.0 - cap / 2 + cap - baseline_below_top;
    let y = centre.1 + w / 2;
    let style = TextStyle::from(font(size, bold).transform(FontTransform::Rotate270))
        .color(color)
        .pos(Pos::new(HPos::Left, VPos::Top));
    area.draw(&Text::new(text.to_string(), (x, y), style))
        .map_err(draw_error)
}

/// About `target` round-numbered ticks covering `[lo, hi]` (only those inside the range).
pub(crate) fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return if lo.is_finite() { vec![lo] } else { vec![] };
    }
    let step = nice_step((hi - lo) / target.max(1) as f64);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            if v.abs() < step * 1e-9 {
                0.0
            } else {
                v
            }
        })
        .collect()
}

/// The 1, 2 or 5 × 10^k step nearest to `raw`.
pub(crate) fn nice_step(raw: f64) -> f64 {
    let exp = raw.log10().floor();
    let base = 10f64.powf(exp);
    let frac = raw / base;
    let nice = if frac < 1.5 {
        1.0
    } else if frac < 3.0 {
        2.0
    } else if frac < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * base
}

/// Compact number for ticks: `0.25`, `3`, `150`, `20k`, `1.5M`, `1e-4`.
pub fn format_number(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".to_string();
    }
    if a >= 1e6 {
        return format!("{}M", trim_float(v / 1e6, 2));
    }
    if a >= 1e4 {
        return format!("{}k", trim_float(v / 1e3, 1));
    }
    if a >= 100.0 {
        return format!("{}", v.round());
    }
    if a >= 1e-3 {
        return trim_float(v, 3);
    }
    format!("{v:.0e}")
}

/// Number written inside a heatmap cell: two decimals for small values, three significant digits otherwise.
pub(crate) fn format_cell(v: f64) -> String {
    let a = v.abs();
    if a < 0.005 {
        "0.00".to_string()
    } else if a < 10.0 {
        format!("{v:.2}")
    } else if a < 100.0 {
        format!("{v:.1}")
    } else {
        format_number(v)
    }
}

fn trim_float(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// An axis-aligned rectangle in pixels (`x1`, `y1` exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelRect {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl PixelRect {
    /// Width in pixels.
    pub fn width(&self) -> i32 {
        self.x1 - self.x0
    }

    /// Height in pixels.
    pub fn height(&self) -> i32 {
        self.y1 - self.y0
    }

    /// Centre pixel.
    pub fn center(&self) -> (i32, i32) {
        ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)
    }

    /// Cell `(row, col)` of an `n_rows × n_cols` grid laid over this rectangle, row 0 at the top.
    pub fn cell(&self, row: usize, col: usize, n_rows: usize, n_cols: usize) -> PixelRect {
        let x =
            |c: usize| self.x0 + (self.width() as f64 * c as f64 / n_cols as f64).round() as i32;
        let y =
            |r: usize| self.y0 + (self.height() as f64 * r as f64 / n_rows as f64).round() as i32;
        PixelRect {
            x0: x(col),
            y0: y(row),
            x1: x(col + 1),
            y1: y(row + 1),
        }
    }
}

/// Fills `rect` with `color`.
pub(crate) fn fill_rect<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rect: PixelRect,
    color: &RGBColor,
) -> Result<()> {
    // The bitmap backend fills `[x0, x1) × [y0, y1)`.
    area.draw(&Rectangle::new(
        [(rect.x0, rect.y0), (rect.x1, rect.y1)],
        color.filled(),
    ))
    .map_err(draw_error)
}

/// Draws the 1-pixel outline of `rect`.
pub(crate) fn outline_rect<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rect: PixelRect,
    color: &RGBColor,
) -> Result<()> {
    area.draw(&Rectangle::new(
        [(rect.x0, rect.y0), (rect.x1 - 1, rect.y1 - 1)],
        color.stroke_width(1),
    ))
    .map_err(draw_error)
}
