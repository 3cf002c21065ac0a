use plot::attention_grid::AttentionGrid;
use plot::bar_chart::BarChart;
use plot::colormap::ColorScale;
use plot::heatmap::{Annotate, Heatmap};
use plot::line_chart::{AxisScale, LineChart, Series};
use plot::small_multiples::{Panel, SmallMultiples};
use plot::style::palette_color;
use std::path::Path;
fn main() {
    let rows: Vec<String> = (0..9).map(|l| l.to_string()).collect();
    let cols = vec!["h".to_string(), "r1".into(), "r2".into()];
    let grid = |s: f64| -> Vec<Vec<f64>> { (0..9).map(|r| (0..3).map(|c| ((r * 3 + c) as f64 / 26.0 * s).min(1.0) - 0.3 * (s - 1.0)).collect()).collect() };
    let mut h = Heatmap::new("Logit lens: MRR of b, step 40000", rows.clone(), cols.clone(), grid(1.0))
        .axes("layer (0 = embeddings)", "position (token role)").quantity("MRR");
    h.values[3][1] = f64::NAN;
    h.save(Path::new("/tmp/plotscratch/heat.png"), h.default_size()).unwrap();
    let d = Heatmap::new("Change in causal strength, step 40000 − step 14000", rows.clone(), cols.clone(), grid(2.0))
        .axes("layer (0 = embeddings)", "corrupted token").quantity("Δ causal strength").scale(ColorScale::diverging(1.0));
    d.save(Path::new("/tmp/plotscratch/diff.png"), d.default_size()).unwrap();
    let panels = (0..7).map(|i| Panel { title: format!("step {}", 2000 * (i + 1)), values: grid(1.0 + i as f64 * 0.1) }).collect();
    let sm = SmallMultiples::new("Logit lens over training: MRR of b", rows.clone(), cols.clone(), panels)
        .axes("layer (0 = embeddings)", "position (token role)").quantity("MRR").columns(4);
    sm.save(Path::new("/tmp/plotscratch/sm.png"), sm.default_size()).unwrap();
    let steps: Vec<f64> = (1..40).map(|i| (i * i * 100) as f64).collect();
    let mut lc = LineChart::new("Accuracy per split", "training step (log scale)", "accuracy").x_scale(AxisScale::Log).y_range(-0.02, 1.02).legend_title("split");
    for (k, name) in ["train_inferred", "test_inferred_iid", "test_inferred_ood", "id_atomic", "ood_atomic"].iter().enumerate() {
        let pts = steps.iter().map(|&s| (s, 1.0 / (1.0 + (-(s.ln() - 7.0 - k as f64 * 0.8)).exp()))).collect();
        lc = lc.series(Series::new(*name, pts, palette_color(k)));
    }
    lc = lc.marker(14000.0, "train saturated (≥ 0.99) at step 14000");
    lc.save(Path::new("/tmp/plotscratch/line.png"), lc.default_size()).unwrap();
    let bars = (0..17).map(|i| (if i == 0 { "embed".to_string() } else if i % 2 == 1 { format!("attn_out.{}", i / 2) } else { format!("mlp_out.{}", i / 2 - 1) }, ((i as f64) * 0.7).sin() * 3.0)).collect();
    let bc = BarChart::new("Direct logit attribution, step 40000", "contribution to logit difference (gold − runner-up)", "component", bars);
    bc.save(Path::new("/tmp/plotscratch/bars.png"), bc.default_size()).unwrap();
    let q = vec!["h".to_string(), "r1".into(), "r2".into()];
    let pats = (0..4).map(|l| (0..4).map(|hd| (0..3).map(|qi| (0..3).map(|ki| if ki > qi { f64::NAN } else { ((l + hd + ki) % 3) as f64 / 2.0 / (qi as f64 + 1.0) }).collect()).collect()).collect()).collect();
    let ag = AttentionGrid { title: "Attention patterns, step 40000, example 0".into(), layer_labels: (0..4).map(|l| format!("block {l}")).collect(), head_labels: (0..4).map(|l| format!("head {l}")).collect(), query_labels: q.clone(), key_labels: q, patterns: pats, annotate: Annotate::Auto };
    ag.save(Path::new("/tmp/plotscratch/attn.png"), ag.default_size()).unwrap();
}
