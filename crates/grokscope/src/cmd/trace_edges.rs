//! `grokscope trace --edges`: edge-level circuit discovery (EAP or EAP-IG over per-position
//! edges, no exact patching) at every traced checkpoint of a run, the circuit change from the
//! saturation checkpoint to the last one, a chart of the top edges' scores over training and
//! the circuit diagrams at both ends (docs/interp.md, "Circuits across checkpoints").

use crate::cmd::circuit::circuit_diagram;
use crate::cmd::trace::TraceArgs;
use anyhow::{bail, Context, Result};
use interp::circuit::{discover, ranks, Discovery, DiscoveryOptions, EdgeMethod, EdgeRuns, Graph};
use interp::load::{
    check_compatible, check_trained_on, list_checkpoints, load_fitted, resolve_data_dir,
};
use interp::metric::Metric;
use interp::output::write_csv;
use interp::{CorruptionSpec, Direction, LnMode, Net, PromptSample, TraceSummary};
use model::token_map::RankOver;
use plot::circuit_diagram::CircuitDiagram;
use plot::line_chart::{LineChart, Series};
use plot::style::palette_color;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The options of `trace --edges`.
#[derive(clap::Args, Debug)]
pub struct TraceEdgeArgs {
    /// Also find the edge-level circuit at every traced checkpoint: edges_over_steps.csv,
    /// circuits_over_steps.csv, edge_changes.csv, edge_scores.png, circuit_saturation.png and
    /// circuit_end.png.
    #[arg(long)]
    pub edges: bool,
    /// Edge scores of --edges: eap or eap-ig[:STEPS] (5 steps by default).
    #[arg(long, default_value = "eap", requires = "edges")]
    pub edge_method: String,
    /// Fraction of the metric (clean against corrupted) each circuit of --edges must recover.
    #[arg(long, default_value_t = 0.8, requires = "edges")]
    pub edge_target: f64,
    /// Token corruption (a role) of --edges [default: the task's first corruption].
    #[arg(long, requires = "edges")]
    pub edge_corruption: Option<String>,
}

/// What `trace --edges` runs with, checked before the trace starts.
pub struct EdgePlan {
    opts: DiscoveryOptions,
    corruption: CorruptionSpec,
    data: tasks::Dataset,
    data_fingerprint: String,
    probe: PromptSample,
    checkpoints: Vec<(u64, PathBuf)>,
    allow_other_data: bool,
    rank_over: Option<RankOver>,
    device: tch::Device,
}

/// Checks the `--edge-*` options against the run's data and builds the prompt sample and the
/// batch once (so that bad input fails before anything is computed or written); `None`
/// without `--edges`.
pub fn plan(args: &TraceArgs, device: tch::Device) -> Result<Option<EdgePlan>> {
    let e = &args.edge;
    if !e.edges {
        return Ok(None);
    }
    if !(e.edge_target > 0.0 && e.edge_target <= 1.0) {
        bail!("--edge-target must be in (0, 1], got {}", e.edge_target);
    }
    let method = EdgeMethod::from_str(&e.edge_method).context("--edge-method")?;
    let checkpoints = list_checkpoints(&args.run)?;
    let Some((_, first)) = checkpoints.first() else {
        bail!("no checkpoints in {}", args.run.display());
    };
    let data = tasks::Dataset::load(&resolve_data_dir(first, args.data.as_deref())?)?;
    let corruption = match &e.edge_corruption {
        Some(c) => CorruptionSpec::from_str(c).context("--edge-corruption")?,
        None => interp::default_corruptions(data.kind).remove(0),
    };
    let probe = PromptSample::build(
        &data,
        &args.sample.spec()?,
        std::slice::from_ref(&corruption),
    )
    .context("--edge-corruption")?;
    probe
        .prompt_batch(&corruption)
        .context("--edge-corruption")?;
    Ok(Some(EdgePlan {
        opts: DiscoveryOptions {
            method,
            per_position: true,
            target: e.edge_target,
            exact: false,
            max_rows: args.read.max_rows,
        },
        corruption,
        data_fingerprint: data.fingerprint(),
        data,
        probe,
        checkpoints,
        allow_other_data: args.read.allow_other_data,
        rank_over: args.read.rank_over,
        device,
    }))
}

/// One row of `edges_over_steps.csv`.
#[derive(Clone, Debug, Serialize)]
struct EdgeRow {
    step: u64,
    sender: String,
    receiver: String,
    position: String,
    score: f64,
    /// 1-based rank by |score| at this step.
    rank: usize,
    in_circuit: bool,
}

/// An edge's name across checkpoints: sender, receiver, position.
type EdgeKey = (String, String, String);

impl EdgeRow {
    fn key(&self) -> EdgeKey {
        (
            self.sender.clone(),
            self.receiver.clone(),
            self.position.clone(),
        )
    }
}

/// One row of `circuits_over_steps.csv`.
#[derive(Clone, Debug, Serialize)]
struct CircuitRow {
    step: u64,
    edges_kept: usize,
    recovered: f64,
    /// Mean metric of the circuit.
    metric: f64,
    clean: f64,
    corrupted: f64,
}

/// One row of `edge_changes.csv`.
#[derive(Clone, Debug, Serialize)]
struct EdgeChangeRow {
    sender: String,
    receiver: String,
    position: String,
    /// appears (in the circuit at the end only), vanishes (at saturation only) or kept (both).
    status: &'static str,
    score_at_saturation: f64,
    score_at_end: f64,
}

/// One checkpoint's circuit: every edge, the circuit's summary and its diagram.
struct StepCircuit {
    edges: Vec<EdgeRow>,
    circuit: CircuitRow,
    diagram: CircuitDiagram,
}

impl EdgePlan {
    /// The checkpoint file of `step`.
    fn file(&self, step: u64) -> Result<&Path> {
        self.checkpoints
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, f)| f.as_path())
            .with_context(|| format!("no checkpoint at step {step}"))
    }

    /// Loads the checkpoint of `step` as the trace does and finds its circuit.
    fn checkpoint_circuit(&self, step: u64) -> Result<StepCircuit> {
        let file = self.file(step)?;
        let (ckpt, _) = load_fitted(file, &self.data, self.device, self.rank_over)?;
        check_compatible(&ckpt, &self.data, self.probe.seq_len())?;
        check_trained_on(
            file,
            &ckpt.metadata,
            &self.data,
            &self.data_fingerprint,
            self.allow_other_data,
        )?;
        let net = Net::new(&ckpt.model);
        let (mut batch, _) = self.probe.prompt_batch(&self.corruption)?;
        batch.fill_alternatives(&net)?;
        let metric = Metric::LogitDiff;
        let runs = EdgeRuns::new(&net, &batch, Direction::Noising, &metric, LnMode::Recompute)?;
        let found = discover(&runs, &self.opts)?;
        let (clean, corrupted) = runs.clean_and_corrupted();
        let answer = self.probe.answer_pos as i64;
        Ok(StepCircuit {
            edges: self.edge_rows(step, &runs.graph, &found),
            circuit: CircuitRow {
                step,
                edges_kept: found.circuit.edges_kept,
                recovered: found.circuit.recovered,
                metric: found.circuit.metric,
                clean,
                corrupted,
            },
            diagram: circuit_diagram(step, &self.probe.positions, answer, &runs.graph, &found),
        })
    }

    /// Every edge of `found` as a row of `edges_over_steps.csv`.
    fn edge_rows(&self, step: u64, graph: &Graph, found: &Discovery) -> Vec<EdgeRow> {
        let rank = ranks(&found.scores);
        let position = |p: Option<i64>| match p {
            Some(p) => self.probe.positions[p as usize].clone(),
            None => "all".to_string(),
        };
        found
            .scores
            .edges
            .iter()
            .enumerate()
            .map(|(i, edge)| EdgeRow {
                step,
                sender: graph.senders[edge.sender].to_string(),
                receiver: graph.receivers[edge.receiver].to_string(),
                position: position(edge.position),
                score: found.scores.scores[i],
                rank: rank[i],
                in_circuit: found.kept[i],
            })
            .collect()
    }
}

/// Finds the circuit at every step of `summary` (printing one line each) and writes the edge
/// files of the module docs to `out` (whose lock the caller holds).
pub fn run(plan: &EdgePlan, summary: &TraceSummary, out: &Path) -> Result<()> {
    println!(
        "edge circuits ({}, target {}, corruption {}) on {} examples:",
        plan.opts.method,
        plan.opts.target,
        plan.corruption,
        plan.probe.examples.len()
    );
    let mut circuits = BTreeMap::new();
    for &step in &summary.steps {
        let c = plan.checkpoint_circuit(step)?;
        println!(
            "  step {step}: {} of {} edges kept, {:.1}% recovered",
            c.circuit.edges_kept,
            c.edges.len(),
            100.0 * c.circuit.recovered
        );
        circuits.insert(step, c);
    }
    let at = |step: u64| {
        circuits
            .get(&step)
            .with_context(|| format!("step {step} was not traced"))
    };
    let (sat_step, end_step) = (summary.saturation.step, summary.last_step);
    let (sat, end) = (at(sat_step)?, at(end_step)?);
    let all: Vec<EdgeRow> = circuits.values().flat_map(|c| c.edges.clone()).collect();
    write_csv(&out.join("edges_over_steps.csv"), &all)?;
    let rows: Vec<CircuitRow> = circuits.values().map(|c| c.circuit.clone()).collect();
    write_csv(&out.join("circuits_over_steps.csv"), &rows)?;
    write_csv(
        &out.join("edge_changes.csv"),
        &edge_changes(&sat.edges, &end.edges),
    )?;
    score_chart(&circuits, &sat.edges, &end.edges, sat_step)
        .save(&out.join("edge_scores.png"), (900, 520))?;
    sat.diagram
        .save(&out.join("circuit_saturation.png"), (1100, 800))?;
    end.diagram
        .save(&out.join("circuit_end.png"), (1100, 800))?;
    println!(
        "wrote edges_over_steps.csv, circuits_over_steps.csv, edge_changes.csv, edge_scores.png, \
         circuit_saturation.png and circuit_end.png to {}",
        out.display()
    );
    Ok(())
}

/// The edges in the circuit at saturation or at the end, with whether they appear, vanish or
/// are kept between the two.
fn edge_changes(sat: &[EdgeRow], end: &[EdgeRow]) -> Vec<EdgeChangeRow> {
    let end_by_key: HashMap<EdgeKey, &EdgeRow> = end.iter().map(|r| (r.key(), r)).collect();
    sat.iter()
        .filter_map(|a| {
            let b = end_by_key.get(&a.key())?;
            let status = match (a.in_circuit, b.in_circuit) {
                (true, true) => "kept",
                (true, false) => "vanishes",
                (false, true) => "appears",
                (false, false) => return None,
            };
            Some(EdgeChangeRow {
                sender: a.sender.clone(),
                receiver: a.receiver.clone(),
                position: a.position.clone(),
                status,
                score_at_saturation: a.score,
                score_at_end: b.score,
            })
        })
        .collect()
}

/// Edges charted in `edge_scores.png`: the top 8 by |score| at either end.
const CHARTED: usize = 8;

/// The scores over steps of the top edges at saturation and at the end, the saturation step
/// marked.
fn score_chart(
    circuits: &BTreeMap<u64, StepCircuit>,
    sat: &[EdgeRow],
    end: &[EdgeRow],
    sat_step: u64,
) -> LineChart {
    let mut keys: Vec<EdgeKey> = Vec::new();
    for row in sat.iter().chain(end).filter(|r| r.rank <= CHARTED) {
        if !keys.contains(&row.key()) {
            keys.push(row.key());
        }
    }
    let by_step: Vec<(u64, HashMap<EdgeKey, f64>)> = circuits
        .iter()
        .map(|(&s, c)| (s, c.edges.iter().map(|r| (r.key(), r.score)).collect()))
        .collect();
    let mut chart = LineChart::new(
        "edge scores over training (top edges at saturation and at the end)",
        "step",
        "edge score",
    );
    for (i, key) in keys.iter().enumerate() {
        let points = by_step
            .iter()
            .filter_map(|(s, scores)| scores.get(key).map(|&v| (*s as f64, v)))
            .collect();
        let name = format!("{} -> {} @{}", key.0, key.1, key.2);
        chart = chart.series(Series::new(name, points, palette_color(i)));
    }
    chart.marker(sat_step as f64, "saturation")
}
