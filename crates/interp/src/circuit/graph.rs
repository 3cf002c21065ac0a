//! The node graph of edge-level analyses: senders (the input embeddings, each head, each MLP)
//! write into the residual stream; receivers (each head's query, key and value input, each MLP
//! input, the logits) read it. An edge joins a sender to every receiver after it, optionally at
//! one position. Names follow the edge-attribution literature: `input`, `a1.h0`, `m1`,
//! `a1.h0<q>`, `m1`, `logits`.

use crate::error::{InterpError, Result};
use model::HookPoint;
use std::fmt;
use std::str::FromStr;

/// A node that writes into the residual stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sender {
    /// Token plus position embeddings (`hook_embed + hook_pos_embed`).
    Input,
    /// One head's output through W_O (`blocks.{layer}.attn.hook_result`, one head).
    Head { layer: usize, head: usize },
    /// One MLP's output (`blocks.{layer}.hook_mlp_out`).
    Mlp { layer: usize },
}

/// Which input of a head a receiver is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Q,
    K,
    V,
}

/// A node that reads the residual stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Receiver {
    /// One head's query, key or value input (`blocks.{layer}.hook_{q,k,v}_input`, one head).
    Head {
        layer: usize,
        head: usize,
        role: Role,
    },
    /// One MLP's input (`blocks.{layer}.hook_mlp_in`).
    Mlp { layer: usize },
    /// The final residual stream, read by ln_final and the unembedding
    /// (`blocks.{L-1}.hook_resid_post`).
    Logits,
}

impl Sender {
    /// Place in the computation: the input 0, heads of layer l `2l + 1`, the MLP `2l + 2`.
    fn depth(&self) -> usize {
        match *self {
            Sender::Input => 0,
            Sender::Head { layer, .. } => 2 * layer + 1,
            Sender::Mlp { layer } => 2 * layer + 2,
        }
    }

    /// Layer of the node, `None` for the input.
    pub fn layer(&self) -> Option<usize> {
        match *self {
            Sender::Input => None,
            Sender::Head { layer, .. } | Sender::Mlp { layer } => Some(layer),
        }
    }
}

impl Receiver {
    /// Place in the computation of a model with `n_layer` layers (see [`Sender::depth`]).
    fn depth(&self, n_layer: usize) -> usize {
        match *self {
            Receiver::Head { layer, .. } => 2 * layer + 1,
            Receiver::Mlp { layer } => 2 * layer + 2,
            Receiver::Logits => 2 * n_layer + 1,
        }
    }

    /// The hook whose edits change what this receiver reads (heads: select the head).
    pub fn hook(&self, n_layer: usize) -> HookPoint {
        match *self {
            Receiver::Head { layer, role, .. } => match role {
                Role::Q => HookPoint::QInput(layer),
                Role::K => HookPoint::KInput(layer),
                Role::V => HookPoint::VInput(layer),
            },
            Receiver::Mlp { layer } => HookPoint::MlpIn(layer),
            Receiver::Logits => HookPoint::ResidPost(n_layer - 1),
        }
    }

    /// The head of a head receiver.
    pub fn head(&self) -> Option<usize> {
        match *self {
            Receiver::Head { head, .. } => Some(head),
            _ => None,
        }
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sender::Input => write!(f, "input"),
            Sender::Head { layer, head } => write!(f, "a{layer}.h{head}"),
            Sender::Mlp { layer } => write!(f, "m{layer}"),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Q => "q",
            Role::K => "k",
            Role::V => "v",
        })
    }
}

impl fmt::Display for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Receiver::Head { layer, head, role } => write!(f, "a{layer}.h{head}<{role}>"),
            Receiver::Mlp { layer } => write!(f, "m{layer}"),
            Receiver::Logits => write!(f, "logits"),
        }
    }
}

/// `a{l}.h{h}` → `(l, h)`; `m{l}` → `(l, None)`.
fn parse_node(s: &str) -> Option<(usize, Option<usize>)> {
    if let Some(rest) = s.strip_prefix('m') {
        return rest.parse().ok().map(|l| (l, None));
    }
    let (layer, head) = s.strip_prefix('a')?.split_once(".h")?;
    Some((layer.parse().ok()?, Some(head.parse().ok()?)))
}

impl FromStr for Sender {
    type Err = InterpError;

    fn from_str(s: &str) -> Result<Sender> {
        match (s, parse_node(s)) {
            ("input", _) => Ok(Sender::Input),
            (_, Some((layer, Some(head)))) => Ok(Sender::Head { layer, head }),
            (_, Some((layer, None))) => Ok(Sender::Mlp { layer }),
            _ => Err(InterpError::spec(
                "sender",
                s,
                "expected input, a{layer}.h{head} or m{layer}",
            )),
        }
    }
}

impl FromStr for Receiver {
    type Err = InterpError;

    fn from_str(s: &str) -> Result<Receiver> {
        let bad = || {
            InterpError::spec(
                "receiver",
                s,
                "expected a{layer}.h{head}<q|k|v>, m{layer} or logits",
            )
        };
        if s == "logits" {
            return Ok(Receiver::Logits);
        }
        let (node, role) = match s.strip_suffix('>').and_then(|r| r.split_once('<')) {
            Some((node, role)) => (node, Some(role)),
            None => (s, None),
        };
        let role = match role {
            None => None,
            Some("q") => Some(Role::Q),
            Some("k") => Some(Role::K),
            Some("v") => Some(Role::V),
            Some(_) => return Err(bad()),
        };
        match (parse_node(node).ok_or_else(bad)?, role) {
            ((layer, Some(head)), Some(role)) => Ok(Receiver::Head { layer, head, role }),
            ((layer, None), None) => Ok(Receiver::Mlp { layer }),
            _ => Err(bad()),
        }
    }
}

/// One edge: indices into [`Graph::senders`] and [`Graph::receivers`], at one position or at
/// every position together (`None`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Edge {
    pub sender: usize,
    pub receiver: usize,
    pub position: Option<i64>,
}

/// The nodes of a model with `n_layer` layers of `n_head` heads, in a fixed order: senders
/// `input`, then per layer its heads and its MLP; receivers per layer the heads' queries, keys,
/// values, then the MLP, and last the logits.
#[derive(Clone, Debug)]
pub struct Graph {
    pub n_layer: usize,
    pub n_head: usize,
    pub senders: Vec<Sender>,
    pub receivers: Vec<Receiver>,
}

impl Graph {
    pub fn new(n_layer: usize, n_head: usize) -> Graph {
        let mut senders = vec![Sender::Input];
        let mut receivers = Vec::new();
        for layer in 0..n_layer {
            senders.extend((0..n_head).map(|head| Sender::Head { layer, head }));
            senders.push(Sender::Mlp { layer });
            for role in [Role::Q, Role::K, Role::V] {
                receivers.extend((0..n_head).map(|head| Receiver::Head { layer, head, role }));
            }
            receivers.push(Receiver::Mlp { layer });
        }
        receivers.push(Receiver::Logits);
        Graph {
            n_layer,
            n_head,
            senders,
            receivers,
        }
    }

    /// True when sender `s` writes into what receiver `r` reads (it comes before it).
    pub fn feeds(&self, s: usize, r: usize) -> bool {
        self.senders[s].depth() < self.receivers[r].depth(self.n_layer)
    }

    /// Every edge, each at every position together (`positions = None`) or once per position.
    pub fn edges(&self, positions: Option<&[i64]>) -> Vec<Edge> {
        let mut edges = Vec::new();
        for r in 0..self.receivers.len() {
            for s in (0..self.senders.len()).filter(|&s| self.feeds(s, r)) {
                match positions {
                    None => edges.push(Edge {
                        sender: s,
                        receiver: r,
                        position: None,
                    }),
                    Some(ps) => edges.extend(ps.iter().map(|&p| Edge {
                        sender: s,
                        receiver: r,
                        position: Some(p),
                    })),
                }
            }
        }
        edges
    }

    /// The index of a sender, or an error naming the model's size.
    pub fn sender_index(&self, sender: Sender) -> Result<usize> {
        self.senders
            .iter()
            .position(|&s| s == sender)
            .ok_or_else(|| InterpError::spec("sender", sender.to_string(), self.size_note()))
    }

    /// The index of a receiver, or an error naming the model's size.
    pub fn receiver_index(&self, receiver: Receiver) -> Result<usize> {
        self.receivers
            .iter()
            .position(|&r| r == receiver)
            .ok_or_else(|| InterpError::spec("receiver", receiver.to_string(), self.size_note()))
    }

    fn size_note(&self) -> String {
        format!(
            "not a node of a model with {} layers of {} heads",
            self.n_layer, self.n_head
        )
    }

    /// An edge's label: `sender->receiver`, with `@position` when it has one.
    pub fn label(&self, edge: &Edge) -> String {
        let base = format!(
            "{}->{}",
            self.senders[edge.sender], self.receivers[edge.receiver]
        );
        match edge.position {
            Some(p) => format!("{base}@{p}"),
            None => base,
        }
    }
}
