//! The circuit diagram draws nodes and signed edges into a PNG of the requested size, draws with
//! no edges, and refuses edges that point at missing nodes without writing a file.

mod common;

use common::{assert_valid_png, load_png, pixel, scratch_dir};
use image::RgbImage;
use plot::circuit_diagram::{
    CircuitDiagram, DiagramEdge, DiagramNode, NEGATIVE_EDGE, POSITIVE_EDGE,
};
use plot::PlotError;
use plotters::style::RGBColor;

fn node(label: &str, level: usize, column: usize) -> DiagramNode {
    DiagramNode {
        label: label.to_string(),
        level,
        column,
    }
}

fn edge(from: usize, to: usize, score: f64, tag: Option<&str>) -> DiagramEdge {
    DiagramEdge {
        from,
        to,
        score,
        tag: tag.map(str::to_string),
    }
}

/// Two layers (2 heads then an MLP each) over three positions, logits on top.
fn two_layer(edges: Vec<DiagramEdge>) -> CircuitDiagram {
    CircuitDiagram {
        title: "2-layer circuit".to_string(),
        column_labels: vec!["e1".to_string(), "r1".to_string(), "r2".to_string()],
        nodes: vec![
            node("input", 0, 0),  // 0
            node("input", 0, 1),  // 1
            node("input", 0, 2),  // 2
            node("a0.h0", 1, 2),  // 3
            node("a0.h1", 1, 2),  // 4
            node("m0", 2, 2),     // 5
            node("a1.h0", 3, 2),  // 6
            node("a1.h1", 3, 2),  // 7
            node("m1", 4, 2),     // 8
            node("logits", 5, 2), // 9
            node("m0", 2, 0),     // 10: no edges, drawn grey
        ],
        edges,
    }
}

fn example_edges() -> Vec<DiagramEdge> {
    vec![
        edge(0, 3, 0.9, Some("v")),
        edge(1, 3, 0.2, Some("k")),
        edge(2, 4, -0.8, Some("q")),
        edge(3, 5, 1.0, None),
        edge(4, 5, -0.1, None),
        edge(5, 6, 0.7, Some("v")),
        edge(6, 8, 0.6, None),
        edge(7, 8, -1.0, None),
        edge(8, 9, 0.95, None),
        edge(3, 9, -0.4, None),
    ]
}

fn count_color(img: &RgbImage, color: RGBColor) -> usize {
    (0..img.height())
        .flat_map(|y| (0..img.width()).map(move |x| (x as i32, y as i32)))
        .filter(|&p| pixel(img, p) == color)
        .count()
}

#[test]
fn two_layer_circuit_has_its_size_and_both_edge_colours() {
    let dir = scratch_dir("circuit_two_layer");
    let diagram = two_layer(example_edges());
    let size = (900, 700);
    let path = dir.join("circuit.png");
    diagram.save(&path, size).unwrap();
    assert_valid_png(&path, size);
    let img = load_png(&path);
    assert!(count_color(&img, POSITIVE_EDGE) > 50, "no positive edges");
    assert!(count_color(&img, NEGATIVE_EDGE) > 50, "no negative edges");
    // Every node box lies inside the image, levels bottom to top.
    let boxes = diagram.layout(size);
    assert_eq!(boxes.len(), diagram.nodes.len());
    assert!(boxes
        .iter()
        .all(|b| b.x0 >= 0 && b.y0 >= 0 && b.x1 <= 900 && b.y1 <= 700));
    assert!(boxes[9].y1 < boxes[0].y0, "logits are above the input");
    assert!(boxes[3].x1 <= boxes[4].x0, "heads of one cell side by side");
}

#[test]
fn default_size_draws() {
    let dir = scratch_dir("circuit_default_size");
    let diagram = two_layer(example_edges());
    let size = diagram.default_size();
    let path = dir.join("circuit.png");
    diagram.save(&path, size).unwrap();
    assert_valid_png(&path, size);
}

#[test]
fn empty_edge_list_draws_nodes_only() {
    let dir = scratch_dir("circuit_no_edges");
    let diagram = two_layer(vec![]);
    let size = (640, 480);
    let path = dir.join("nodes_only.png");
    diagram.save(&path, size).unwrap();
    assert_valid_png(&path, size);
    let img = load_png(&path);
    assert_eq!(count_color(&img, POSITIVE_EDGE), 0);
    assert_eq!(count_color(&img, NEGATIVE_EDGE), 0);
}

#[test]
fn edge_index_out_of_range_is_an_error_and_writes_nothing() {
    let dir = scratch_dir("circuit_bad_index");
    let mut edges = example_edges();
    edges.push(edge(2, 11, 0.5, None));
    let diagram = two_layer(edges);
    let path = dir.join("bad.png");
    let err = diagram.save(&path, (640, 480)).unwrap_err();
    assert!(matches!(err, PlotError::InvalidFigure(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("edge 10") && message.contains("out of range"),
        "{message}"
    );
    assert!(!path.exists());
}

#[test]
fn non_finite_score_is_an_error() {
    let diagram = two_layer(vec![edge(0, 3, f64::NAN, None)]);
    let err = diagram.validate().unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");
}
