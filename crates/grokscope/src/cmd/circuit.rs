//! `grokscope circuit`: edge attribution patching (EAP or EAP-IG) over every edge of a
//! checkpoint's node graph, exact edge patching beside it, the faithfulness curve and the
//! smallest circuit recovering a target fraction of the metric, drawn as a diagram
//! (docs/interp.md, "Circuits").

use crate::cmd::edges::{EdgeArgs, EdgeSession};
use crate::device::Ctx;
use anyhow::{bail, Result};
use interp::circuit::{discover, Discovery, DiscoveryOptions, EdgeMethod, Graph, Receiver, Sender};
use interp::output::{write_csv, write_json};
use interp::Direction;
use plot::circuit_diagram::{CircuitDiagram, DiagramEdge, DiagramNode};
use plot::line_chart::{LineChart, Series};
use plot::style::palette_color;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::str::FromStr;

#[derive(clap::Args, Debug)]
pub struct CircuitArgs {
    #[command(flatten)]
    pub edges: EdgeArgs,
    /// Edge scores: eap (gradients at the clean run) or eap-ig[:STEPS] (integrated gradients
    /// from the clean to the corrupted embeddings, 5 steps by default).
    #[arg(long, default_value = "eap")]
    pub method: String,
    /// Fraction of the metric (clean against corrupted) the circuit must recover.
    #[arg(long, default_value_t = 0.8)]
    pub target: f64,
    /// One edge for every position together instead of one per position.
    #[arg(long)]
    pub merge_positions: bool,
    /// Skip exact patching of every edge (no agreement is reported).
    #[arg(long)]
    pub no_exact: bool,
}

impl CircuitArgs {
    /// The discovery options, checked.
    pub fn options(&self) -> Result<DiscoveryOptions> {
        if !(self.target > 0.0 && self.target <= 1.0) {
            bail!("--target must be in (0, 1], got {}", self.target);
        }
        Ok(DiscoveryOptions {
            method: EdgeMethod::from_str(&self.method)?,
            per_position: !self.merge_positions,
            target: self.target,
            exact: !self.no_exact,
            max_rows: self.edges.analysis.read.max_rows,
        })
    }
}

/// Runs `grokscope circuit`: writes `edges.csv`, `faithfulness.csv`, `circuit.json`,
/// `circuit.png` and `faithfulness.png` (and `examples.jsonl` for a prompt sample).
pub fn run(args: CircuitArgs, ctx: &Ctx) -> Result<()> {
    let opts = args.options()?;
    let session = args.edges.session(ctx)?;
    println!("{}", session.describe("circuit discovery"));
    let net = session.net();
    let runs = session.runs(&net, Direction::Noising)?;
    let found = discover(&runs, &opts)?;
    let out = &session.out;
    let _lock = crate::cmd::lock_output(out)?;
    write_csv(
        &out.join("edges.csv"),
        &edge_rows(&session, &runs.graph, &found),
    )?;
    write_csv(&out.join("faithfulness.csv"), &found.curve)?;
    let (clean, corrupted) = runs.clean_and_corrupted();
    write_json(
        &out.join("circuit.json"),
        &summary(&session, &runs.graph, &opts, &found, (clean, corrupted)),
    )?;
    diagram(&session, &runs.graph, &found).save(&out.join("circuit.png"), (1100, 800))?;
    faithfulness_chart(&found, opts.target).save(&out.join("faithfulness.png"), (720, 440))?;
    session.write_examples(out)?;
    print_summary(&found, clean, corrupted);
    println!(
        "wrote edges.csv, faithfulness.csv, circuit.json, circuit.png and faithfulness.png to {}",
        out.display()
    );
    Ok(())
}

/// One row of `edges.csv`.
#[derive(Serialize)]
struct EdgeRow {
    step: u64,
    sender: String,
    receiver: String,
    position: String,
    method: String,
    score: f64,
    /// Exact effect of patching the edge alone (empty with --no-exact).
    exact: Option<f64>,
    /// 1-based rank by |score|.
    rank: usize,
    in_circuit: bool,
}

fn edge_rows(session: &EdgeSession, graph: &Graph, found: &Discovery) -> Vec<EdgeRow> {
    let rank = interp::circuit::ranks(&found.scores);
    let scores = &found.scores;
    scores
        .edges
        .iter()
        .enumerate()
        .map(|(i, edge)| EdgeRow {
            step: session.step,
            sender: graph.senders[edge.sender].to_string(),
            receiver: graph.receivers[edge.receiver].to_string(),
            position: session.position_name(edge.position),
            method: scores.method.to_string(),
            score: scores.scores[i],
            exact: found.exact.as_ref().map(|x| x[i]),
            rank: rank[i],
            in_circuit: found.kept[i],
        })
        .collect()
}

/// `circuit.json`: the inputs, the circuit, the agreement with exact patching, the timings.
fn summary(
    session: &EdgeSession,
    graph: &Graph,
    opts: &DiscoveryOptions,
    found: &Discovery,
    (clean, corrupted): (f64, f64),
) -> serde_json::Value {
    let edges: Vec<_> = found
        .scores
        .edges
        .iter()
        .zip(&found.scores.scores)
        .zip(&found.kept)
        .filter(|(_, &kept)| kept)
        .map(|((e, score), _)| {
            json!({
                "sender": graph.senders[e.sender].to_string(),
                "receiver": graph.receivers[e.receiver].to_string(),
                "position": session.position_name(e.position),
                "score": score,
            })
        })
        .collect();
    json!({
        "checkpoint": session.path,
        "step": session.step,
        "prompts": session.source,
        "examples": session.batch.len(),
        "metric": session.metric.to_string(),
        "readout": session.ln_mode.to_string(),
        "method": opts.method.to_string(),
        "per_position": opts.per_position,
        "edges_total": found.scores.edges.len(),
        "clean_metric": clean,
        "corrupted_metric": corrupted,
        "target": opts.target,
        "circuit": found.circuit,
        "agreement": found.agreement,
        "seconds": found.seconds,
        "circuit_edges": edges,
    })
}

fn print_summary(found: &Discovery, clean: f64, corrupted: f64) {
    println!(
        "{} edges scored by {} in {:.3} s; clean {clean:.3}, corrupted {corrupted:.3}",
        found.scores.edges.len(),
        found.scores.method,
        found.seconds.attribution
    );
    if let Some(a) = &found.agreement {
        let spearman = a.spearman.map_or("n/a".into(), |s| format!("{s:.3}"));
        let overlaps: Vec<String> = a
            .top_k
            .iter()
            .map(|(k, o)| format!("top-{k} {:.0}%", 100.0 * o))
            .collect();
        println!(
            "exact edge patching in {:.3} s: Spearman {spearman}, {}",
            found.seconds.exact,
            overlaps.join(", ")
        );
    }
    println!(
        "circuit: {} of {} edges recover {:.1}% of the metric",
        found.circuit.edges_kept,
        found.scores.edges.len(),
        100.0 * found.circuit.recovered
    );
}

/// The circuit's edges as a diagram: heads and MLPs by layer, one column per position.
fn diagram(session: &EdgeSession, graph: &Graph, found: &Discovery) -> CircuitDiagram {
    let answer = session.batch.answer_pos.first().copied().unwrap_or(0);
    circuit_diagram(session.step, &session.position_names, answer, graph, found)
}

/// The circuit of `found` at training step `step` as a diagram: heads and MLPs by layer, one
/// column per position (named by `position_names`; logits edges end at the `answer` position).
pub(crate) fn circuit_diagram(
    step: u64,
    position_names: &[String],
    answer: i64,
    graph: &Graph,
    found: &Discovery,
) -> CircuitDiagram {
    let mut diagram = DiagramBuilder::default();
    let kept = found
        .scores
        .edges
        .iter()
        .zip(&found.scores.scores)
        .zip(&found.kept);
    for ((edge, &score), _) in kept.filter(|(_, &k)| k) {
        let column = edge.position.unwrap_or(0) as usize;
        let sender = graph.senders[edge.sender];
        let from = diagram.node(sender.to_string(), sender_level(sender), column);
        let receiver = graph.receivers[edge.receiver];
        let (name, level, tag) = receiver_node(receiver, graph.n_layer);
        let to_column = match (receiver, edge.position) {
            (Receiver::Logits, Some(_)) => answer as usize,
            _ => column,
        };
        let to = diagram.node(name, level, to_column);
        diagram.edges.push(DiagramEdge {
            from,
            to,
            score,
            tag,
        });
    }
    let column_labels = match found.scores.edges.first().and_then(|e| e.position) {
        Some(_) => position_names.to_vec(),
        None => vec!["all positions".into()],
    };
    CircuitDiagram {
        title: format!(
            "circuit at step {step}: {} edges, {:.0}% recovered",
            found.circuit.edges_kept,
            100.0 * found.circuit.recovered
        ),
        column_labels,
        nodes: diagram.nodes,
        edges: diagram.edges,
    }
}

/// The nodes and edges of a diagram being built, each node once per (name, column).
#[derive(Default)]
struct DiagramBuilder {
    index: BTreeMap<(String, usize), usize>,
    nodes: Vec<DiagramNode>,
    edges: Vec<DiagramEdge>,
}

impl DiagramBuilder {
    /// The index of the node `name` in `column`, added at `level` if new.
    fn node(&mut self, name: String, level: usize, column: usize) -> usize {
        let next = self.nodes.len();
        let index = *self.index.entry((name.clone(), column)).or_insert(next);
        if index == next {
            self.nodes.push(DiagramNode {
                label: name,
                level,
                column,
            });
        }
        index
    }
}

fn sender_level(sender: Sender) -> usize {
    match sender {
        Sender::Input => 0,
        Sender::Head { layer, .. } => 2 * layer + 1,
        Sender::Mlp { layer } => 2 * layer + 2,
    }
}

/// A receiver's node name, level and edge tag (the head input it reads: q, k or v).
fn receiver_node(receiver: Receiver, n_layer: usize) -> (String, usize, Option<String>) {
    match receiver {
        Receiver::Head { layer, head, role } => (
            Sender::Head { layer, head }.to_string(),
            2 * layer + 1,
            Some(role.to_string()),
        ),
        Receiver::Mlp { layer } => (format!("m{layer}"), 2 * layer + 2, None),
        Receiver::Logits => ("logits".into(), 2 * n_layer + 1, None),
    }
}

/// Metric recovered against edges kept, with the target and the chosen circuit marked.
fn faithfulness_chart(found: &Discovery, target: f64) -> LineChart {
    let points: Vec<(f64, f64)> = found
        .curve
        .iter()
        .map(|p| (p.edges_kept as f64, p.recovered))
        .collect();
    let last = points.last().map_or(1.0, |p| p.0);
    LineChart::new(
        "faithfulness: metric recovered by the top-scored edges",
        "edges kept (by |score|)",
        "fraction recovered",
    )
    .series(Series::new("circuit", points, palette_color(0)))
    .series(
        Series::new(
            "target",
            vec![(0.0, target), (last, target)],
            palette_color(1),
        )
        .dashed()
        .without_markers(),
    )
    .marker(found.circuit.edges_kept as f64, "circuit")
}
