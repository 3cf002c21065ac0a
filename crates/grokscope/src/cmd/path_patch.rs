//! `grokscope path-patch`: each sender's source-run output patched into chosen receivers only
//! (heads' query, key or value inputs, MLP inputs, the logits), every other path left at the
//! base run (docs/interp.md, "Circuits").

use crate::cmd::edges::{EdgeArgs, EdgeSession};
use crate::device::Ctx;
use anyhow::{bail, Result};
use interp::circuit::{path_patch, Graph, PathPatch, Sender};
use interp::output::write_csv;
use interp::Direction;
use serde::Serialize;
use std::str::FromStr;

#[derive(clap::Args, Debug)]
pub struct PathPatchArgs {
    #[command(flatten)]
    pub edges: EdgeArgs,
    /// noising (corrupted outputs into the clean run) or denoising (clean into the corrupted).
    #[arg(long, default_value = "noising")]
    pub direction: String,
    /// Senders, each patched on its own (repeatable): input, a{l}.h{h}, m{l} [default: all].
    #[arg(long = "sender")]
    pub senders: Vec<String>,
    /// Receivers, all patched together (repeatable; `*` matches within a name part):
    /// a{l}.h{h}<q|k|v>, m{l}, logits, e.g. 'a1.h*<q>' for every query of layer 1.
    #[arg(long = "receiver", default_value = "logits")]
    pub receivers: Vec<String>,
    /// Positions patched (repeatable; names such as r1, or indices) [default: all].
    #[arg(long = "position")]
    pub positions: Vec<String>,
}

/// One row of `path_patch.csv`.
#[derive(Serialize)]
struct PathRow {
    step: u64,
    direction: String,
    sender: String,
    receivers: String,
    positions: String,
    metric: String,
    /// Mean metric of the patched run.
    patched: f64,
    /// `(patched − base) / norm` (norm = clean − corrupted for a restoration, else 1).
    effect: f64,
    base: f64,
}

/// Runs `grokscope path-patch`: writes `path_patch.csv`.
pub fn run(args: PathPatchArgs, ctx: &Ctx) -> Result<()> {
    let direction = Direction::from_str(&args.direction)?;
    let session = args.edges.session(ctx)?;
    let net = session.net();
    let graph = Graph::new(net.n_layer(), net.n_head());
    let senders = senders(&graph, &args.senders)?;
    let receivers = receivers(&graph, &args.receivers)?;
    let positions = positions(&session, &args.positions)?;
    let patches: Vec<PathPatch> = senders
        .iter()
        .filter(|&&s| receivers.iter().any(|&r| graph.feeds(s, r)))
        .map(|&s| PathPatch {
            senders: vec![s],
            receivers: receivers.clone(),
            positions: positions.clone(),
        })
        .collect();
    if patches.is_empty() {
        bail!("no sender comes before any of the receivers: nothing to patch");
    }
    println!("{}", session.describe("path patching"));
    let runs = session.runs(&net, direction)?;
    let values = path_patch(&runs, &patches, args.edges.analysis.read.max_rows)?;
    let rows = rows(&session, &graph, direction, &patches, &values);
    for row in &rows {
        println!(
            "  {:<8} -> {}: effect {:+.4}",
            row.sender, row.receivers, row.effect
        );
    }
    let out = &session.out;
    let _lock = crate::cmd::lock_output(out)?;
    write_csv(&out.join("path_patch.csv"), &rows)?;
    session.write_examples(out)?;
    println!("wrote path_patch.csv to {}", out.display());
    Ok(())
}

fn rows(
    session: &EdgeSession,
    graph: &Graph,
    direction: Direction,
    patches: &[PathPatch],
    values: &interp::circuit::PathValues,
) -> Vec<PathRow> {
    let names = |rs: &[usize]| -> String {
        let names: Vec<String> = rs.iter().map(|&r| graph.receivers[r].to_string()).collect();
        names.join("+")
    };
    patches
        .iter()
        .zip(values.effects())
        .map(|(patch, effect)| PathRow {
            step: session.step,
            direction: direction.to_string(),
            sender: graph.senders[patch.senders[0]].to_string(),
            receivers: names(&patch.receivers),
            positions: match &patch.positions {
                Some(ps) => ps
                    .iter()
                    .map(|&p| session.position_name(Some(p)))
                    .collect::<Vec<_>>()
                    .join("+"),
                None => "all".into(),
            },
            metric: session.metric.to_string(),
            patched: values.base + effect * values.norm,
            effect,
            base: values.base,
        })
        .collect()
}

/// The sender indices named (every sender when none is).
fn senders(graph: &Graph, names: &[String]) -> Result<Vec<usize>> {
    if names.is_empty() {
        return Ok((0..graph.senders.len()).collect());
    }
    names
        .iter()
        .map(|n| Ok(graph.sender_index(Sender::from_str(n)?)?))
        .collect()
}

/// The receiver indices matching the patterns, in graph order.
fn receivers(graph: &Graph, patterns: &[String]) -> Result<Vec<usize>> {
    let mut chosen = Vec::new();
    for pattern in patterns {
        let matched: Vec<usize> = (0..graph.receivers.len())
            .filter(|&r| model::glob_match(pattern, &graph.receivers[r].to_string()))
            .collect();
        if matched.is_empty() {
            bail!(
                "receiver `{pattern}` matches no node of a model with {} layers of {} heads (expected a{{l}}.h{{h}}<q|k|v>, m{{l}} or logits)",
                graph.n_layer,
                graph.n_head
            );
        }
        chosen.extend(matched);
    }
    chosen.sort_unstable();
    chosen.dedup();
    Ok(chosen)
}

/// Position indices from names or indices (`None` = every position).
fn positions(session: &EdgeSession, names: &[String]) -> Result<Option<Vec<i64>>> {
    if names.is_empty() {
        return Ok(None);
    }
    let t = session.position_names.len();
    let index = |name: &String| -> Result<i64> {
        if let Some(p) = session.position_names.iter().position(|n| n == name) {
            return Ok(p as i64);
        }
        match name.parse::<usize>() {
            Ok(p) if p < t => Ok(p as i64),
            _ => bail!(
                "position `{name}` is neither one of {} nor an index below {t}",
                session.position_names.join(", ")
            ),
        }
    };
    let mut ps: Vec<i64> = names.iter().map(index).collect::<Result<_>>()?;
    ps.sort_unstable();
    ps.dedup();
    Ok(Some(ps))
}
