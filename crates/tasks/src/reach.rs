//! Reachability in "at least" graphs, for the complex task's `test_hard` queries (the paper uses
//! networkx `has_path`).

use std::cmp::Ordering;

/// Directed graph on nodes `0..n` where an edge u → v states value(u) ≥ value(v).
pub(crate) struct AtLeastGraph {
    successors: Vec<Vec<u32>>,
}

impl AtLeastGraph {
    pub(crate) fn new(nodes: usize) -> AtLeastGraph {
        AtLeastGraph {
            successors: vec![Vec::new(); nodes],
        }
    }

    /// Records that value(u) compares with value(v) as `ordering` (the paper's edges: > gives
    /// u → v, < gives v → u, = gives both).
    pub(crate) fn add(&mut self, u: u32, v: u32, ordering: Ordering) {
        if ordering != Ordering::Less {
            self.successors[u as usize].push(v);
        }
        if ordering != Ordering::Greater {
            self.successors[v as usize].push(u);
        }
    }

    /// Nodes reachable from `from` (itself included), by breadth-first search.
    pub(crate) fn reachable(&self, from: u32) -> Vec<bool> {
        let mut seen = vec![false; self.successors.len()];
        let mut frontier = vec![from];
        seen[from as usize] = true;
        while let Some(u) = frontier.pop() {
            for &v in &self.successors[u as usize] {
                if !seen[v as usize] {
                    seen[v as usize] = true;
                    frontier.push(v);
                }
            }
        }
        seen
    }

    /// For each ordered pair (i, j) of `nodes`, the ordering of value(nodes[i]) against
    /// value(nodes[j]) that the graph proves: = if each reaches the other, > or < if only one
    /// direction has a path, None if neither. Shape: [nodes.len()][nodes.len()].
    pub(crate) fn orderings_among(&self, nodes: &[u32]) -> Vec<Vec<Option<Ordering>>> {
        let reach: Vec<Vec<bool>> = nodes.iter().map(|&n| self.reachable(n)).collect();
        (0..nodes.len())
            .map(|i| {
                (0..nodes.len())
                    .map(|j| {
                        let at_least = reach[i][nodes[j] as usize];
                        let at_most = reach[j][nodes[i] as usize];
                        match (at_least, at_most) {
                            (true, true) => Some(Ordering::Equal),
                            (true, false) => Some(Ordering::Greater),
                            (false, true) => Some(Ordering::Less),
                            (false, false) => None,
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_prove_orderings() {
        // 0 > 1 = 2 > 3; 4 is unrelated.
        let mut g = AtLeastGraph::new(5);
        g.add(0, 1, Ordering::Greater);
        g.add(1, 2, Ordering::Equal);
        g.add(3, 2, Ordering::Less);
        let o = g.orderings_among(&[0, 2, 3, 4]);
        assert_eq!(o[0][1], Some(Ordering::Greater));
        assert_eq!(o[2][0], Some(Ordering::Less));
        assert_eq!(o[1][2], Some(Ordering::Greater));
        assert_eq!(o[0][3], None);
        assert_eq!(o[1][1], Some(Ordering::Equal));
    }
}
