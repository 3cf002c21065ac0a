//! Circuit diagram: a computed transformer circuit drawn as boxes and lines, like the circuit
//! sketches of interpretability papers. Nodes (embeddings, heads, MLPs, logits) sit on a grid of
//! levels (bottom to top) and columns (e.g. token positions, left to right); each edge is a
//! straight line from the top of its sender to the bottom of its receiver, as wide as its
//! |score| relative to the largest (1–8 px), blue when positive and red when negative.
//!
//! ```
//! use plot::circuit_diagram::{CircuitDiagram, DiagramEdge, DiagramNode};
//! let node = |label: &str, level, column| DiagramNode { label: label.to_string(), level, column };
//! let edge = |from, to, score: f64, tag: Option<&str>| DiagramEdge {
//!     from, to, score, tag: tag.map(str::to_string),
//! };
//! let diagram = CircuitDiagram {
//!     title: "toy circuit".to_string(),
//!     column_labels: vec!["e1".to_string(), "r1".to_string()],
//!     nodes: vec![node("input", 0, 0), node("a0.h0", 1, 1), node("logits", 2, 1)],
//!     edges: vec![edge(0, 1, 0.8, Some("v")), edge(1, 2, -0.3, None)],
//! };
//! let path = std::env::temp_dir().join(format!("grokscope-circuit-doc-{}.png", std::process::id()));
//! diagram.save(&path, (480, 360))?;
//! assert!(std::fs::metadata(&path)?.len() > 1000);
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Nodes without edges are drawn grey. An empty edge list draws the nodes only. An edge index out
//! of range, or a score that is not finite, is a [`PlotError::InvalidFigure`] raised before any
//! file is created.

use std::collections::HashMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::error::{draw_error, PlotError, Result};
use crate::render::render_png;
use crate::style::{
    draw_text, draw_tick_label, draw_title, fill_rect, outline_rect, text_size, PixelRect, GRID,
    INK, PAD, PALETTE, TICK_SIZE, TITLE_SIZE,
};

/// Colour of edges with a positive score (the palette's blue).
pub const POSITIVE_EDGE: RGBColor = PALETTE[0];
/// Colour of edges with a negative score (the palette's vermillion).
pub const NEGATIVE_EDGE: RGBColor = PALETTE[1];
/// Fill of nodes that have at least one edge.
const NODE_FILL: RGBColor = RGBColor(236, 242, 250);
/// Outline and label colour of nodes without edges.
const IDLE_INK: RGBColor = PALETTE[6];
/// Width in pixels of the weakest and of the strongest edge.
const MIN_EDGE_PX: f64 = 1.0;
const MAX_EDGE_PX: f64 = 8.0;
/// Font size (pixels) of edge tags and of the legend note.
const SMALL_SIZE: f64 = 12.0;
const LEGEND: &str = "edge width ∝ |score|, blue +, red −";

/// One node of the diagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagramNode {
    /// Label drawn in the node box, e.g. "a1.h0", "m0", "input", "logits".
    pub label: String,
    /// Vertical level: 0 = bottom (inputs/embeddings), increasing upwards (heads of layer l and
    /// the MLP of layer l at increasing levels; logits on top).
    pub level: usize,
    /// Horizontal group, e.g. a token position (columns); nodes of the same (level, column) are
    /// placed side by side.
    pub column: usize,
}

/// One edge: indices into the node list, with a signed score.
#[derive(Clone, Debug, PartialEq)]
pub struct DiagramEdge {
    /// Index of the sender in [`CircuitDiagram::nodes`].
    pub from: usize,
    /// Index of the receiver in [`CircuitDiagram::nodes`].
    pub to: usize,
    /// Signed strength (any unit); the line width is proportional to |score| / max |score|.
    pub score: f64,
    /// Optional short tag drawn small at the edge midpoint, e.g. "q", "k", "v"; None = nothing.
    pub tag: Option<String>,
}

/// A circuit: nodes on a (level, column) grid and signed edges between them.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitDiagram {
    pub title: String,
    /// Written under the bottom level, one per column, left to right.
    pub column_labels: Vec<String>,
    pub nodes: Vec<DiagramNode>,
    pub edges: Vec<DiagramEdge>,
}

impl CircuitDiagram {
    /// Checks that every edge names existing nodes and has a finite score.
    pub fn validate(&self) -> Result<()> {
        let n = self.nodes.len();
        for (i, e) in self.edges.iter().enumerate() {
            if e.from >= n || e.to >= n {
                return Err(PlotError::InvalidFigure(format!(
                    "{:?}: edge {i} ({} -> {}) refers to a node out of range (there are {n} nodes)",
                    self.title, e.from, e.to
                )));
            }
            if !e.score.is_finite() {
                return Err(PlotError::InvalidFigure(format!(
                    "{:?}: edge {i} ({} -> {}) has a score that is not finite ({})",
                    self.title, e.from, e.to, e.score
                )));
            }
        }
        Ok(())
    }

    /// About 110 pixels per node slot across and 90 per level up, at least 640 × 420.
    pub fn default_size(&self) -> (u32, u32) {
        let (levels, cols) = self.grid_shape();
        let mut per_cell: HashMap<(usize, usize), i32> = HashMap::new();
        for node in &self.nodes {
            *per_cell.entry((node.level, node.column)).or_default() += 1;
        }
        let widest = per_cell.values().copied().max().unwrap_or(1);
        let m = margins();
        let w = 2 * PAD + cols as i32 * widest * 110;
        let h = m.0 + m.1 + levels as i32 * 90;
        let title_w = text_size(&self.title, TITLE_SIZE, true).0 + 2 * PAD;
        (w.max(title_w).max(640) as u32, h.max(420) as u32)
    }

    /// Draws the diagram into a PNG of `size` pixels (nothing is written if it does not validate).
    pub fn save(&self, path: &Path, size: (u32, u32)) -> Result<()> {
        self.validate()?;
        render_png(path, size, |area| self.draw(area))
    }

    /// Draws the diagram over the whole of `area`: edges (weakest first), then nodes, edge tags,
    /// column labels and the legend note.
    pub fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        self.validate()?;
        let boxes = self.layout(area.dim_in_pixel());
        draw_title(area, &self.title)?;
        let max_abs = self.edges.iter().fold(0.0f64, |m, e| m.max(e.score.abs()));
        let mut order: Vec<&DiagramEdge> = self.edges.iter().collect();
        order.sort_by(|a, b| a.score.abs().total_cmp(&b.score.abs()));
        for edge in &order {
            draw_edge(area, &boxes, edge, max_abs)?;
        }
        let mut connected = vec![false; self.nodes.len()];
        for e in &self.edges {
            connected[e.from] = true;
            connected[e.to] = true;
        }
        for ((node, rect), &linked) in self.nodes.iter().zip(&boxes).zip(&connected) {
            draw_node(area, *rect, &node.label, linked)?;
        }
        for edge in &order {
            if let Some(tag) = edge.tag.as_deref().filter(|t| !t.is_empty()) {
                draw_tag(area, &boxes, edge, tag)?;
            }
        }
        self.draw_column_labels(area)?;
        draw_legend(area)
    }

    /// The box of every node (in node order) in a figure of `size` pixels.
    pub fn layout(&self, size: (u32, u32)) -> Vec<PixelRect> {
        let (levels, cols) = self.grid_shape();
        let plot = plot_rect(size);
        let mut per_cell: HashMap<(usize, usize), usize> = HashMap::new();
        for node in &self.nodes {
            *per_cell.entry((node.level, node.column)).or_default() += 1;
        }
        let mut placed: HashMap<(usize, usize), usize> = HashMap::new();
        let cap = text_size("Ag", TICK_SIZE, false).1;
        self.nodes
            .iter()
            .map(|node| {
                let key = (node.level, node.column);
                let slot = placed.entry(key).or_default();
                let (index, count) = (*slot, per_cell[&key]);
                *slot += 1;
                let cell = plot.cell(levels - 1 - node.level, node.column, levels, cols);
                let slot_w = cell.width() as f64 / count as f64;
                let cx = cell.x0 + (slot_w * (index as f64 + 0.5)).round() as i32;
                let label_w = text_size(&node.label, TICK_SIZE, false).0;
                let w = ((slot_w as i32 - 8).min((label_w + 20).max(56))).max(4);
                let h = ((cell.height() as f64 * 0.42) as i32).min(cap + 18).max(6);
                let cy = cell.center().1;
                PixelRect {
                    x0: cx - w / 2,
                    y0: cy - h / 2,
                    x1: cx - w / 2 + w,
                    y1: cy - h / 2 + h,
                }
            })
            .collect()
    }

    /// Number of levels and of columns (at least 1 each).
    fn grid_shape(&self) -> (usize, usize) {
        let levels = self.nodes.iter().map(|n| n.level + 1).max().unwrap_or(1);
        let cols = self
            .nodes
            .iter()
            .map(|n| n.column + 1)
            .max()
            .unwrap_or(0)
            .max(self.column_labels.len())
            .max(1);
        (levels, cols)
    }

    /// Column labels centred under their columns, below the bottom level.
    fn draw_column_labels<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let (_, cols) = self.grid_shape();
        let plot = plot_rect(area.dim_in_pixel());
        for (c, label) in self.column_labels.iter().enumerate() {
            let cell = plot.cell(0, c, 1, cols);
            draw_tick_label(
                area,
                label,
                true,
                (cell.center().0, plot.y1 + 8),
                (HPos::Center, VPos::Top),
            )?;
        }
        Ok(())
    }
}

/// Top and bottom margins in pixels: title above; column labels and the legend note below.
fn margins() -> (i32, i32) {
    let title_cap = text_size("Ag", TITLE_SIZE, true).1;
    let tick_cap = text_size("Ag", TICK_SIZE, false).1;
    let small_cap = text_size("Ag", SMALL_SIZE, false).1;
    (PAD + title_cap + 20, 8 + tick_cap + 14 + small_cap + PAD)
}

/// The area the node grid fills in a figure of `size` pixels.
fn plot_rect(size: (u32, u32)) -> PixelRect {
    let (top, bottom) = margins();
    PixelRect {
        x0: PAD,
        y0: top,
        x1: (size.0 as i32 - PAD).max(PAD + 1),
        y1: (size.1 as i32 - bottom).max(top + 1),
    }
}

/// Line width in pixels: 1 px for score 0, 8 px for the largest |score|.
fn edge_width(score: f64, max_abs: f64) -> u32 {
    let t = if max_abs > 0.0 {
        score.abs() / max_abs
    } else {
        0.0
    };
    (MIN_EDGE_PX + (MAX_EDGE_PX - MIN_EDGE_PX) * t).round() as u32
}

/// Blue for a positive (or zero) score, red for a negative one.
fn edge_color(score: f64) -> RGBColor {
    if score < 0.0 {
        NEGATIVE_EDGE
    } else {
        POSITIVE_EDGE
    }
}

/// A straight line from the top centre of the sender's box to the bottom centre of the receiver's.
fn draw_edge<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    boxes: &[PixelRect],
    edge: &DiagramEdge,
    max_abs: f64,
) -> Result<()> {
    let (from, to) = (boxes[edge.from], boxes[edge.to]);
    let start = (from.center().0, from.y0);
    let end = (to.center().0, to.y1 - 1);
    let style = edge_color(edge.score).stroke_width(edge_width(edge.score, max_abs));
    area.draw(&PathElement::new(vec![start, end], style))
        .map_err(draw_error)
}

/// A node box with its label; grey when the node has no edges.
fn draw_node<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rect: PixelRect,
    label: &str,
    connected: bool,
) -> Result<()> {
    let (fill, ink) = if connected {
        (NODE_FILL, INK)
    } else {
        (GRID, IDLE_INK)
    };
    fill_rect(area, rect, &fill)?;
    outline_rect(area, rect, &ink)?;
    let size = if text_size(label, TICK_SIZE, false).0 <= rect.width() - 6 {
        TICK_SIZE
    } else {
        SMALL_SIZE
    };
    draw_text(
        area,
        label,
        size,
        false,
        &ink,
        rect.center(),
        (HPos::Center, VPos::Center),
    )
}

/// The edge's tag, small, on a white patch at the edge's midpoint.
fn draw_tag<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    boxes: &[PixelRect],
    edge: &DiagramEdge,
    tag: &str,
) -> Result<()> {
    let (from, to) = (boxes[edge.from], boxes[edge.to]);
    let mid = ((from.center().0 + to.center().0) / 2, (from.y0 + to.y1) / 2);
    let (w, cap) = text_size(tag, SMALL_SIZE, false);
    let patch = PixelRect {
        x0: mid.0 - w / 2 - 3,
        y0: mid.1 - cap / 2 - 3,
        x1: mid.0 + w - w / 2 + 3,
        y1: mid.1 + cap - cap / 2 + 3,
    };
    fill_rect(area, patch, &WHITE)?;
    draw_text(
        area,
        tag,
        SMALL_SIZE,
        false,
        &INK,
        mid,
        (HPos::Center, VPos::Center),
    )
}

/// The note "edge width ∝ |score|, blue +, red −" at the bottom right.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    draw_text(
        area,
        LEGEND,
        SMALL_SIZE,
        false,
        &INK,
        (w as i32 - PAD, h as i32 - PAD),
        (HPos::Right, VPos::Bottom),
    )
}
