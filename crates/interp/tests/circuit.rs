//! Edge-level analyses against independent computations on a tiny random 2-layer model: path
//! patching into every later receiver equals node patching; single edges equal explicit tensor
//! code; edge attribution is exact where the metric is linear in the edge; circuits of all and
//! of no edges give the base and the source runs.

mod common;

use common::{batch, tiny_model};
use interp::circuit::{
    edge_attribution, evaluate_circuits, patch_edges, path_patch, EdgeMethod, EdgeRuns, Graph,
    PathPatch, Receiver, Role, Sender,
};
use interp::metric::Metric;
use interp::tokens::{patch, Direction, PatchOptions, PatchTarget};
use interp::{LnMode, Net};
use model::{Edit, HookPoint, Intervention, RunRequest};
use tch::{Kind, Tensor};

#[track_caller]
fn assert_near(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: got {got}, want {want}"
    );
}

fn mean(t: &Tensor) -> f64 {
    t.mean(Kind::Double).double_value(&[])
}

#[test]
fn node_names_parse_and_the_graph_has_every_forward_edge() {
    let graph = Graph::new(2, 2);
    assert_eq!(graph.senders.len(), 7);
    assert_eq!(graph.receivers.len(), 15);
    // a0 heads ← input (6); m0 ← input, a0 (3); a1 heads ← input, a0, m0 (24); m1 ← 6; logits ← 7.
    assert_eq!(graph.edges(None).len(), 46);
    assert_eq!(graph.edges(Some(&[0, 3])).len(), 92);
    for s in &graph.senders {
        assert_eq!(s.to_string().parse::<Sender>().unwrap(), *s);
    }
    for r in &graph.receivers {
        assert_eq!(r.to_string().parse::<Receiver>().unwrap(), *r);
    }
    let v = Receiver::Head {
        layer: 1,
        head: 0,
        role: Role::V,
    };
    assert_eq!(v.to_string(), "a1.h0<v>");
    for bad in ["a1", "a1.h0<x>", "m", "logit", "a1.h0<q"] {
        assert!(bad.parse::<Receiver>().is_err(), "{bad}");
    }
    let m0 = graph.sender_index(Sender::Mlp { layer: 0 }).unwrap();
    let a0q = graph.receiver_index("a0.h1<q>".parse().unwrap()).unwrap();
    assert!(!graph.feeds(m0, a0q));
    assert!(graph.sender_index(Sender::Mlp { layer: 5 }).is_err());
}

/// Node patching of `hook` (one head when given) at every position, through the token core.
fn node_patch(net: &Net, direction: Direction, hook: HookPoint, head: Option<i64>) -> f64 {
    let target = PatchTarget {
        hook,
        positions: vec![0, 1, 2, 3],
        head,
    };
    let opts = PatchOptions {
        max_rows: 64,
        ..PatchOptions::new(direction)
    };
    let values = patch(net, &batch(), &[target], &Metric::LogitDiff, &opts).unwrap();
    values.summary()[0].1
}

#[test]
fn path_patching_into_every_later_receiver_equals_node_patching() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let batch = batch();
    for direction in [Direction::Noising, Direction::Denoising] {
        let runs = EdgeRuns::new(
            &net,
            &batch,
            direction,
            &Metric::LogitDiff,
            LnMode::Recompute,
        )
        .unwrap();
        let g = &runs.graph;
        let nodes = [
            (
                Sender::Head { layer: 0, head: 1 },
                HookPoint::Result(0),
                Some(1),
            ),
            (Sender::Mlp { layer: 0 }, HookPoint::MlpOut(0), None),
            (
                Sender::Head { layer: 1, head: 0 },
                HookPoint::Result(1),
                Some(0),
            ),
        ];
        for (sender, hook, head) in nodes {
            let s = g.sender_index(sender).unwrap();
            let patch = PathPatch {
                senders: vec![s],
                receivers: (0..g.receivers.len()).filter(|&r| g.feeds(s, r)).collect(),
                positions: None,
            };
            let values = path_patch(&runs, &[patch], 64).unwrap();
            let got = values.effects()[0] + values.base;
            let want = node_patch(&net, direction, hook, head);
            assert_near(got, want, 1e-4, &format!("{sender} {direction:?}"));
        }
        let input = PathPatch {
            senders: vec![0],
            receivers: (0..g.receivers.len()).collect(),
            positions: None,
        };
        let got = path_patch(&runs, &[input], 64).unwrap();
        assert_near(
            got.effects()[0] + got.base,
            mean(&runs.source_metric()),
            1e-4,
            "the input into everything is the source run",
        );
    }
}

/// The metric of the clean run with the last block's value of head 1 (layer 1) recomputed by
/// hand from a patched value input: ln_1, the head's slice of c_attn, then the model onwards.
#[test]
fn single_edges_equal_explicit_tensor_code() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let batch = batch();
    let metric = Metric::LogitDiff;
    let runs = EdgeRuns::new(&net, &batch, Direction::Noising, &metric, LnMode::Recompute).unwrap();
    let capture = RunRequest::capture([
        HookPoint::Result(0),
        HookPoint::ResidPre(1),
        HookPoint::ResidMid(1),
        HookPoint::ResidPost(1),
        HookPoint::MlpOut(1),
    ]);
    let clean = tch::no_grad(|| net.gpt.run(&batch.clean, &capture).unwrap().cache);
    let corrupted = tch::no_grad(|| {
        net.gpt
            .run(batch.corrupted.as_ref().unwrap(), &capture)
            .unwrap()
            .cache
    });
    // Edge a0.h0 → a1.h1<v>.
    let delta =
        corrupted[&HookPoint::Result(0)].select(2, 0) - clean[&HookPoint::Result(0)].select(2, 0);
    let block = ckpt.model.block_at(1).unwrap();
    let ln = |x: &Tensor, w: &Tensor, b: &Tensor| x.layer_norm([16], Some(w), Some(b), 1e-5, true);
    let normed = ln(
        &(&clean[&HookPoint::ResidPre(1)] + &delta),
        &block.ln_1.weight,
        &block.ln_1.bias,
    );
    let w_v = block.attn.c_attn.weight.narrow(1, 2 * 16 + 8, 8);
    let b_v = block.attn.c_attn.bias.narrow(0, 2 * 16 + 8, 8);
    let v1 = (normed.matmul(&w_v) + b_v).unsqueeze(2);
    let req = RunRequest::intervene([
        Intervention::new(HookPoint::V(1), Edit::Replace(v1)).heads(vec![1])
    ]);
    let logits = tch::no_grad(|| net.gpt.run(&batch.clean, &req).unwrap().logits.select(1, 3));
    let want_v = mean(&answer_metric(&runs, &logits));
    // Edge m0 → m1: the last MLP recomputed from a patched input, then ln_f and the unembedding.
    let mlp_out = |x: &Tensor| -> Tensor {
        let h = ln(x, &block.ln_2.weight, &block.ln_2.bias);
        let pre = h.matmul(&block.mlp.c_fc.weight) + &block.mlp.c_fc.bias;
        let inner =
            (&pre + pre.pow_tensor_scalar(3.0) * 0.044715) * (2.0 / std::f64::consts::PI).sqrt();
        let post = &pre * 0.5 * (inner.tanh() + 1.0);
        post.matmul(&block.mlp.c_proj.weight) + &block.mlp.c_proj.bias
    };
    let m0 = HookPoint::MlpOut(0);
    let capture_m0 = RunRequest::capture([m0]);
    let d_m0 = tch::no_grad(|| {
        net.gpt
            .run(batch.corrupted.as_ref().unwrap(), &capture_m0)
            .unwrap()
            .cache[&m0]
            .shallow_clone()
            - net.gpt.run(&batch.clean, &capture_m0).unwrap().cache[&m0].shallow_clone()
    });
    let resid =
        &clean[&HookPoint::ResidMid(1)] + mlp_out(&(&clean[&HookPoint::ResidMid(1)] + d_m0));
    let logits = ln(&resid, &ckpt.model.ln_f.weight, &ckpt.model.ln_f.bias)
        .matmul(&ckpt.model.embed.wte.tr())
        .select(1, 3);
    let want_m = mean(&answer_metric(&runs, &logits));
    let g = &runs.graph;
    let edge = |s: &str, r: &str| interp::circuit::Edge {
        sender: g.sender_index(s.parse().unwrap()).unwrap(),
        receiver: g.receiver_index(r.parse().unwrap()).unwrap(),
        position: None,
    };
    let got = patch_edges(&runs, &[edge("a0.h0", "a1.h1<v>"), edge("m0", "m1")], 64).unwrap();
    let base = mean(&runs.base_metric());
    assert_near(got[0] + base, want_v, 1e-4, "a0.h0 -> a1.h1<v>");
    assert_near(got[1] + base, want_m, 1e-4, "m0 -> m1");
    assert!(
        got[0].abs() > 1e-3 && got[1].abs() > 1e-3,
        "edges with an effect: {got:?}"
    );
}

fn answer_metric(runs: &EdgeRuns, logits: &Tensor) -> Tensor {
    let sets = &runs.batch.sets;
    runs.metric.per_row(logits, sets, None).unwrap()
}

#[test]
fn edge_attribution_is_exact_where_the_metric_is_linear_in_the_edge() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let batch = batch();
    let runs = EdgeRuns::new(
        &net,
        &batch,
        Direction::Noising,
        &Metric::LogitDiff,
        LnMode::CachedScale,
    )
    .unwrap();
    for per_position in [false, true] {
        for method in [EdgeMethod::Eap, EdgeMethod::EapIg { steps: 3 }] {
            let scores = edge_attribution(&runs, method, per_position).unwrap();
            let exact = patch_edges(&runs, &scores.edges, 256).unwrap();
            let mut checked = 0;
            for ((edge, score), exact) in scores.edges.iter().zip(&scores.scores).zip(&exact) {
                if runs.graph.receivers[edge.receiver] == Receiver::Logits {
                    assert_near(*score, *exact, 1e-5, &runs.graph.label(edge));
                    checked += 1;
                }
            }
            assert_eq!(checked, if per_position { 7 * 4 } else { 7 });
            let nonlinear = scores
                .edges
                .iter()
                .zip(&scores.scores)
                .zip(&exact)
                .filter(|((e, _), _)| runs.graph.receivers[e.receiver] != Receiver::Logits)
                .map(|((_, s), x)| (s - x).abs())
                .fold(0.0, f64::max);
            assert!(nonlinear > 1e-6, "other edges are only approximated");
        }
    }
}

#[test]
fn circuits_of_every_and_of_no_edge_give_the_base_and_the_source_run() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let batch = batch();
    for metric in [Metric::LogitDiff, Metric::ReciprocalRank] {
        let runs =
            EdgeRuns::new(&net, &batch, Direction::Noising, &metric, LnMode::Recompute).unwrap();
        for positions in [None, Some(vec![0, 1, 2, 3])] {
            let edges = runs.graph.edges(positions.as_deref());
            let n = edges.len();
            let kept = vec![vec![true; n], vec![false; n]];
            let means = evaluate_circuits(&runs, &edges, &kept, 64).unwrap();
            assert_near(means[0], mean(&runs.base_metric()), 1e-5, "all edges");
            assert_near(means[1], mean(&runs.source_metric()), 1e-4, "no edge");
        }
    }
}

#[test]
fn a_circuit_missing_one_edge_equals_patching_that_edge() {
    let ckpt = tiny_model();
    let net = Net::new(&ckpt.model);
    let batch = batch();
    let runs = EdgeRuns::new(
        &net,
        &batch,
        Direction::Noising,
        &Metric::LogitDiff,
        LnMode::Recompute,
    )
    .unwrap();
    let edges = runs.graph.edges(Some(&[1, 3]));
    let picks: Vec<usize> = (0..edges.len()).step_by(7).collect();
    let kept: Vec<Vec<bool>> = picks
        .iter()
        .map(|&e| (0..edges.len()).map(|i| i != e).collect())
        .collect();
    let circuits = evaluate_circuits(&runs, &edges, &kept, 16).unwrap();
    let chosen: Vec<_> = picks.iter().map(|&e| edges[e]).collect();
    let patched = patch_edges(&runs, &chosen, 16).unwrap();
    let base = mean(&runs.base_metric());
    for ((e, c), p) in chosen.iter().zip(&circuits).zip(&patched) {
        assert_near(*c, p + base, 1e-5, &runs.graph.label(e));
    }
}
