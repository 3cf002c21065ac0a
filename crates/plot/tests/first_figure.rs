//! The first figure a process draws is laid out like every later one: measuring text before any
//! PNG was written must already use the embedded font (a binary of its own, so that nothing has
//! registered the font when the test starts).

mod common;

use common::scratch_dir;
use plot::heatmap::Heatmap;

fn heatmap() -> Heatmap {
    let rows = vec!["0".to_string(), "1".to_string()];
    let cols = vec!["h".to_string(), "r1".to_string()];
    Heatmap::new(
        "A title wider than the grid of cells it heads",
        rows,
        cols,
        vec![vec![0.1, 0.9]; 2],
    )
    .axes("layer (0 = embeddings)", "position (token role)")
}

#[test]
fn sizes_measured_before_the_first_png_equal_those_measured_after_it() {
    let before = heatmap().default_size();
    let dir = scratch_dir("first_figure");
    heatmap().save(&dir.join("heatmap.png"), before).unwrap();
    let after = heatmap().default_size();
    assert_eq!(
        before, after,
        "text measured before the font was registered"
    );
}
