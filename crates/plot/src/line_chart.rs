//! Line chart: several series over a linear or logarithmic x axis, markers at the measured points,
//! a legend beside the plot and optional labelled vertical marker lines ("train saturated").

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{
    KeyPointHint, KeyPointWeight, NoDefaultFormatting, ValueFormatter,
};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::colormap::finite_range;
use crate::error::{draw_error, PlotError, Result};
use crate::render::render_png;
use crate::style::{
    draw_tick_label, draw_title, format_number, max_text_width, nice_step, nice_ticks, text_size,
    AXIS_SIZE, GRID, INK, PAD, TICK_SIZE, TITLE_SIZE,
};

/// Linear or base-10 logarithmic axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AxisScale {
    Linear,
    Log,
}

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` points; non-finite points (and non-positive ones on a log axis) split the line.
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    /// Draw a dot at every point.
    pub markers: bool,
    pub dashed: bool,
    /// Line width in pixels.
    pub width: u32,
}

impl Series {
    /// A solid 2-pixel line with markers.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Series {
        Series {
            name: name.into(),
            points,
            color,
            markers: true,
            dashed: false,
            width: 2,
        }
    }

    /// The same series drawn dashed.
    pub fn dashed(mut self) -> Series {
        self.dashed = true;
        self
    }

    /// The same series without point markers.
    pub fn without_markers(mut self) -> Series {
        self.markers = false;
        self
    }
}

/// A dashed vertical line across the plot with a label near its top.
#[derive(Clone, Debug)]
pub struct VerticalMarker {
    pub x: f64,
    pub label: String,
}

/// A chart of several series sharing x and y axes.
#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    /// x axis name with units, e.g. "training step (log scale)".
    pub x_label: String,
    pub y_label: String,
    pub x_scale: AxisScale,
    pub y_scale: AxisScale,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    pub series: Vec<Series>,
    pub markers: Vec<VerticalMarker>,
    /// Heading of the legend, e.g. "split".
    pub legend_title: Option<String>,
}

impl LineChart {
    /// An empty chart with linear axes.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> LineChart {
        LineChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_scale: AxisScale::Linear,
            y_scale: AxisScale::Linear,
            y_range: None,
            series: Vec::new(),
            markers: Vec::new(),
            legend_title: None,
        }
    }

    /// Sets the x axis scale.
    pub fn x_scale(mut self, scale: AxisScale) -> LineChart {
        self.x_scale = scale;
        self
    }

    /// Sets the y axis scale.
    pub fn y_scale(mut self, scale: AxisScale) -> LineChart {
        self.y_scale = scale;
        self
    }

    /// Fixes the y range.
    pub fn y_range(mut self, lo: f64, hi: f64) -> LineChart {
        self.y_range = Some((lo, hi));
        self
    }

    /// Adds a series.
    pub fn series(mut self, series: Series) -> LineChart {
        self.series.push(series);
        self
    }

    /// Adds a vertical marker line.
    pub fn marker(mut self, x: f64, label: impl Into<String>) -> LineChart {
        self.markers.push(VerticalMarker {
            x,
            label: label.into(),
        });
        self
    }

    /// Sets the legend heading.
    pub fn legend_title(mut self, title: impl Into<String>) -> LineChart {
        self.legend_title = Some(title.into());
        self
    }

    /// The default figure size: 900 × 540 plus room for the legend.
    pub fn default_size(&self) -> (u32, u32) {
        let title_w = text_size(&self.title, TITLE_SIZE, true).0 + 2 * PAD;
        let w = (760 + self.legend_width()).max(title_w);
        let legend_h = self.legend_height() + 120;
        (w as u32, 520.max(legend_h) as u32)
    }

    /// Draws the chart into a PNG of `size` pixels.
    pub fn save(&self, path: &Path, size: (u32, u32)) -> Result<()> {
        self.drawable_points()?;
        render_png(path, size, |area| self.draw(area))
    }

    fn legend_width(&self) -> i32 {
        let names = self.series.iter().map(|s| s.name.as_str());
        let title_w = self
            .legend_title
            .as_ref()
            .map_or(0, |t| text_size(t, TICK_SIZE, true).0);
        max_text_width(names, TICK_SIZE).max(title_w - 34) + 34 + 16 + PAD
    }

    fn legend_height(&self) -> i32 {
        self.series.len() as i32 * LEGEND_ROW + if self.legend_title.is_some() { 28 } else { 0 }
    }

    /// The points that can be drawn, per series, split at gaps.
    fn drawable_points(&self) -> Result<Vec<Vec<Stretch>>> {
        let ok = |(x, y): (f64, f64)| {
            x.is_finite()
                && y.is_finite()
                && (self.x_scale == AxisScale::Linear || x > 0.0)
                && (self.y_scale == AxisScale::Linear || y > 0.0)
        };
        let runs: Vec<Vec<Stretch>> = self
            .series
            .iter()
            .map(|s| {
                let mut runs = vec![Vec::new()];
                for &p in &s.points {
                    if ok(p) {
                        runs.last_mut().expect("runs is never empty").push(p);
                    } else if !runs.last().is_some_and(Vec::is_empty) {
                        runs.push(Vec::new());
                    }
                }
                runs.retain(|r| !r.is_empty());
                runs
            })
            .collect();
        if runs.iter().flatten().flatten().next().is_none() {
            return Err(PlotError::InvalidFigure(format!(
                "{:?}: no series has a point that can be drawn",
                self.title
            )));
        }
        Ok(runs)
    }

    /// Draws the chart over the whole of `area`.
    pub fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let runs = self.drawable_points()?;
        let (w, _) = area.dim_in_pixel();
        draw_title(area, &self.title)?;
        let show_legend = self.series.iter().any(|s| !s.name.is_empty());
        let legend_w = if show_legend { self.legend_width() } else { 0 };
        let (plot_area, legend_area) = area.split_horizontally(w as i32 - legend_w);
        let (x_axis, y_axis) = self.axes(&runs);
        let title_h = PAD + text_size("Ag", TITLE_SIZE, true).1 + 22;
        // Marker labels sit in a strip above the plot so that they never cover data.
        let marker_h = if self.markers.is_empty() { 0 } else { 26 };
        let mut plot = self.plot_with_mesh(&plot_area, x_axis, y_axis, title_h + marker_h)?;
        self.draw_lines(&mut plot, &runs)?;
        self.draw_markers(&mut plot, area)?;
        if show_legend {
            self.draw_legend(&legend_area, title_h + marker_h)?;
        }
        Ok(())
    }

    /// The x axis over the drawable points and the markers (padded 2 %), and the y axis: exactly
    /// `y_range` when set, else over the points (padded 5 %).
    fn axes(&self, runs: &[Vec<Stretch>]) -> (Axis, Axis) {
        let points = runs.iter().flatten().flatten().copied();
        let (x_lo, x_hi) = finite_range(points.clone().map(|p| p.0)).unwrap_or((0.0, 1.0));
        let (x_lo, x_hi) = self
            .markers
            .iter()
            .filter(|m| self.x_scale == AxisScale::Linear || m.x > 0.0)
            .fold((x_lo, x_hi), |(lo, hi), m| (lo.min(m.x), hi.max(m.x)));
        let x_axis = Axis::padded(x_lo, x_hi, self.x_scale, 0.02);
        let y_axis = match self.y_range {
            Some((lo, hi)) => Axis::exact(lo, hi, self.y_scale),
            None => {
                let (lo, hi) = finite_range(points.map(|p| p.1)).unwrap_or((0.0, 1.0));
                Axis::padded(lo, hi, self.y_scale, 0.05)
            }
        };
        (x_axis, y_axis)
    }

    /// The plot on `area`, `top` pixels below its top edge, with the grid, tick labels and axis
    /// names drawn.
    fn plot_with_mesh<'a, DB: DrawingBackend>(
        &self,
        area: &'a DrawingArea<DB, Shift>,
        x_axis: Axis,
        y_axis: Axis,
        top: i32,
    ) -> Result<Plot<'a, DB>> {
        let y_label_w = max_text_width(
            y_axis
                .ticks(8, true)
                .iter()
                .map(|v| format_number(*v))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
            TICK_SIZE,
        );
        let mut plot = ChartBuilder::on(area)
            .margin_top(top)
            .margin_left(PAD)
            .margin_right(18)
            .margin_bottom(PAD)
            .x_label_area_size(58)
            .y_label_area_size(y_label_w + 44)
            .build_cartesian_2d(x_axis, y_axis)
            .map_err(draw_error)?;
        plot.configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .axis_desc_style(crate::style::font(AXIS_SIZE, false).color(&INK))
            .label_style(crate::style::font(TICK_SIZE, false).color(&INK))
            .x_label_formatter(&|v| format_number(*v))
            .y_label_formatter(&|v| format_number(*v))
            .x_labels(10)
            .y_labels(8)
            .bold_line_style(GRID)
            .light_line_style(RGBColor(244, 244, 244))
            .axis_style(INK)
            .draw()
            .map_err(draw_error)?;
        Ok(plot)
    }

    /// Each series' stretches as solid or dashed lines, with a dot at each point when asked.
    fn draw_lines<DB: DrawingBackend>(
        &self,
        plot: &mut Plot<'_, DB>,
        runs: &[Vec<Stretch>],
    ) -> Result<()> {
        for (series, runs) in self.series.iter().zip(runs) {
            let style = series.color.stroke_width(series.width);
            for run in runs {
                if series.dashed {
                    plot.draw_series(DashedLineSeries::new(run.iter().copied(), 8, 5, style))
                        .map_err(draw_error)?;
                } else {
                    plot.draw_series(LineSeries::new(run.iter().copied(), style))
                        .map_err(draw_error)?;
                }
                if series.markers {
                    plot.draw_series(
                        run.iter()
                            .map(|&p| Circle::new(p, 3, series.color.filled())),
                    )
                    .map_err(draw_error)?;
                }
            }
        }
        Ok(())
    }

    /// Each marker as a dashed vertical line over the plot's height, its label above the plot
    /// (kept inside the plot's width); markers at x ≤ 0 on a log axis are skipped.
    fn draw_markers<DB: DrawingBackend>(
        &self,
        plot: &mut Plot<'_, DB>,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<()> {
        let (y_lo, y_hi) = (plot.y_range().start, plot.y_range().end);
        let base = area.get_base_pixel();
        let plot_left = plot.backend_coord(&(plot.x_range().start, y_hi)).0 - base.0;
        let plot_right = plot.backend_coord(&(plot.x_range().end, y_hi)).0 - base.0;
        for marker in &self.markers {
            if self.x_scale == AxisScale::Log && marker.x <= 0.0 {
                continue;
            }
            plot.draw_series(DashedLineSeries::new(
                [(marker.x, y_lo), (marker.x, y_hi)],
                6,
                4,
                RGBColor(90, 90, 90).stroke_width(2),
            ))
            .map_err(draw_error)?;
            let top = plot.backend_coord(&(marker.x, y_hi));
            let (x, y) = (top.0 - base.0, top.1 - base.1);
            let tw = text_size(&marker.label, TICK_SIZE, false).0;
            let anchor = if x + tw / 2 > plot_right {
                (plot_right, HPos::Right)
            } else if x - tw / 2 < plot_left {
                (plot_left, HPos::Left)
            } else {
                (x, HPos::Center)
            };
            draw_tick_label(
                area,
                &marker.label,
                false,
                (anchor.0, y - 8),
                (anchor.1, VPos::Bottom),
            )?;
        }
        Ok(())
    }

    fn draw_legend<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        top: i32,
    ) -> Result<()> {
        let mut y = top + 4;
        if let Some(title) = &self.legend_title {
            draw_tick_label(area, title, true, (0, y), (HPos::Left, VPos::Top))?;
            y += 28;
        }
        for series in &self.series {
            let mid = y + LEGEND_ROW / 2 - 4;
            let style = series.color.stroke_width(series.width);
            if series.dashed {
                area.draw(&PathElement::new(vec![(0, mid), (10, mid)], style))
                    .map_err(draw_error)?;
                area.draw(&PathElement::new(vec![(16, mid), (26, mid)], style))
                    .map_err(draw_error)?;
            } else {
                area.draw(&PathElement::new(vec![(0, mid), (26, mid)], style))
                    .map_err(draw_error)?;
            }
            if series.markers {
                area.draw(&Circle::new((13, mid), 3, series.color.filled()))
                    .map_err(draw_error)?;
            }
            draw_tick_label(
                area,
                &series.name,
                false,
                (34, mid),
                (HPos::Left, VPos::Center),
            )?;
            y += LEGEND_ROW;
        }
        Ok(())
    }
}

const LEGEND_ROW: i32 = 24;

/// Consecutive drawable points of a series, joined by one line.
type Stretch = Vec<(f64, f64)>;

/// The plotting area of a line chart: (x, y) in axis units mapped to pixels.
type Plot<'a, DB> = ChartContext<'a, DB, Cartesian2d<Axis, Axis>>;

/// A numeric axis, linear or log10, with round-numbered ticks.
#[derive(Clone, Copy, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    scale: AxisScale,
}

impl Axis {
    fn exact(lo: f64, hi: f64, scale: AxisScale) -> Axis {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            match scale {
                // A single value: keep non-negative data (such as steps) off negative ticks.
                AxisScale::Linear if lo >= 0.0 => ((lo - 1.0).max(0.0), hi + 1.0),
                AxisScale::Linear => (lo - 1.0, hi + 1.0),
                AxisScale::Log => (lo / 2.0, hi * 2.0),
            }
        };
        Axis { lo, hi, scale }
    }

    /// The data range widened by `pad` of its extent (in log space for log axes).
    fn padded(lo: f64, hi: f64, scale: AxisScale, pad: f64) -> Axis {
        match scale {
            AxisScale::Linear => {
                let d = (hi - lo) * pad;
                Axis::exact(lo - d, hi + d, scale)
            }
            AxisScale::Log => {
                let f = (hi / lo).powf(pad).max(1.05);
                Axis::exact(lo / f, hi * f, scale)
            }
        }
    }

    fn fraction(&self, v: f64) -> f64 {
        match self.scale {
            AxisScale::Linear => (v - self.lo) / (self.hi - self.lo),
            AxisScale::Log => (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln()),
        }
    }

    /// At most `max` ticks; `labelled` asks for the sparser set that carries labels.
    fn ticks(&self, max: usize, labelled: bool) -> Vec<f64> {
        match self.scale {
            AxisScale::Linear => {
                let ticks = nice_ticks(self.lo, self.hi, max.clamp(2, 8));
                if labelled || ticks.len() < 2 {
                    return ticks;
                }
                let step = nice_step((self.hi - self.lo) / (max.clamp(2, 40)) as f64);
                nice_ticks(self.lo, self.hi, ((self.hi - self.lo) / step) as usize)
            }
            AxisScale::Log => {
                let sets: &[&[f64]] = if labelled {
                    &[&[1.0, 2.0, 3.0, 5.0], &[1.0, 2.0, 5.0], &[1.0, 3.0], &[1.0]]
                } else {
                    &[
                        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
                        &[1.0, 2.0, 5.0],
                        &[1.0],
                    ]
                };
                let first = self.lo.log10().floor() as i32;
                let last = self.hi.log10().ceil() as i32;
                for set in sets {
                    let ticks: Vec<f64> = (first..=last)
                        .flat_map(|k| set.iter().map(move |m| m * 10f64.powi(k)))
                        .filter(|v| *v >= self.lo && *v <= self.hi)
                        .collect();
                    if ticks.len() <= max {
                        return ticks;
                    }
                }
                let every = ((last - first) as usize).div_ceil(max.max(1)).max(1);
                (first..=last)
                    .step_by(every)
                    .map(|k| 10f64.powi(k))
                    .filter(|v| *v >= self.lo && *v <= self.hi)
                    .collect()
            }
        }
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = self.fraction(*value);
        limit.0 + (t * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let labelled = matches!(hint.weight(), KeyPointWeight::Bold);
        self.ticks(hint.max_num_points(), labelled)
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    fn format(value: &f64) -> String {
        format_number(*value)
    }
}
