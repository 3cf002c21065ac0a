//! Colour maps: sequential (viridis) for ranks, MRR and strengths; diverging (orange–white–green,
//! as in the paper's Fig. 4b/5b) for differences, centred at 0.

use plotters::style::RGBColor;

/// Colour of cells that have no data.
pub const NO_DATA: RGBColor = RGBColor(200, 200, 200);

const VIRIDIS: [(u8, u8, u8); 11] = [
    (0x44, 0x01, 0x54),
    (0x48, 0x24, 0x75),
    (0x41, 0x44, 0x87),
    (0x35, 0x5f, 0x8d),
    (0x2a, 0x78, 0x8e),
    (0x21, 0x91, 0x8c),
    (0x22, 0xa8, 0x84),
    (0x44, 0xbf, 0x70),
    (0x7a, 0xd1, 0x51),
    (0xbd, 0xdf, 0x26),
    (0xfd, 0xe7, 0x25),
];

const ORANGE_WHITE_GREEN: [(u8, u8, u8); 9] = [
    (0xb3, 0x58, 0x06),
    (0xe0, 0x82, 0x14),
    (0xfd, 0xb8, 0x63),
    (0xfe, 0xe0, 0xb6),
    (0xff, 0xff, 0xff),
    (0xd9, 0xf0, 0xd3),
    (0xa6, 0xdb, 0xa0),
    (0x5a, 0xae, 0x61),
    (0x1b, 0x78, 0x37),
];

/// A map from `[0, 1]` to colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMap {
    /// Viridis, dark purple (low) to yellow (high).
    Sequential,
    /// Orange (negative) – white (zero) – green (positive).
    Diverging,
}

impl ColorMap {
    /// Colour at `t` in `[0, 1]` (clamped).
    pub fn at(self, t: f64) -> RGBColor {
        let anchors: &[(u8, u8, u8)] = match self {
            ColorMap::Sequential => &VIRIDIS,
            ColorMap::Diverging => &ORANGE_WHITE_GREEN,
        };
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let x = t * (anchors.len() - 1) as f64;
        let i = (x.floor() as usize).min(anchors.len() - 2);
        let f = x - i as f64;
        let (a, b) = (anchors[i], anchors[i + 1]);
        let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
        RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }

    /// Colour of the highest value.
    pub fn top(self) -> RGBColor {
        self.at(1.0)
    }

    /// Colour of the lowest value.
    pub fn bottom(self) -> RGBColor {
        self.at(0.0)
    }

    /// Colour of the middle (0 for the diverging map).
    pub fn centre(self) -> RGBColor {
        self.at(0.5)
    }
}

/// A colour map together with the value range it spans.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorScale {
    pub map: ColorMap,
    pub min: f64,
    pub max: f64,
}

impl ColorScale {
    /// Sequential map over `[min, max]`.
    pub fn sequential(min: f64, max: f64) -> ColorScale {
        ColorScale {
            map: ColorMap::Sequential,
            min,
            max,
        }
    }

    /// Diverging map over `[-max_abs, max_abs]`, so that 0 gets the centre colour.
    pub fn diverging(max_abs: f64) -> ColorScale {
        let m = if max_abs.is_finite() && max_abs > 0.0 {
            max_abs
        } else {
            1.0
        };
        ColorScale {
            map: ColorMap::Diverging,
            min: -m,
            max: m,
        }
    }

    /// Sequential map over the finite values' range (`[0, 1]` when there are none).
    pub fn sequential_from(values: impl IntoIterator<Item = f64>) -> ColorScale {
        let (lo, hi) = finite_range(values).unwrap_or((0.0, 1.0));
        ColorScale::sequential(lo, hi)
    }

    /// Diverging map symmetric around 0 that covers every finite value.
    pub fn diverging_from(values: impl IntoIterator<Item = f64>) -> ColorScale {
        let m = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        ColorScale::diverging(m)
    }

    /// Position of `value` along the map, in `[0, 1]`.
    pub fn fraction(&self, value: f64) -> f64 {
        if self.max > self.min {
            ((value - self.min) / (self.max - self.min)).clamp(0.0, 1.0)
        } else {
            0.5
        }
    }

    /// Colour of `value`; [`NO_DATA`] for NaN.
    pub fn color(&self, value: f64) -> RGBColor {
        if value.is_nan() {
            NO_DATA
        } else {
            self.map.at(self.fraction(value))
        }
    }
}

/// Smallest and largest finite value, if any.
pub(crate) fn finite_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Black or white, whichever reads better on `background`.
pub(crate) fn text_color_on(background: &RGBColor) -> RGBColor {
    let lum =
        0.2126 * background.0 as f64 + 0.7152 * background.1 as f64 + 0.0722 * background.2 as f64;
    if lum < 140.0 {
        RGBColor(255, 255, 255)
    } else {
        RGBColor(20, 20, 20)
    }
}
