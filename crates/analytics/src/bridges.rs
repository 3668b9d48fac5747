//! Bridge nodes: the relays whose loss would split the mesh (articulation points of the
//! neighbor graph), with how many nodes each would cut off. What the topology view shows and
//! what the "mesh split" alert watches.
//!
//! Tarjan's algorithm, iterative (a hostile graph cannot overflow the stack), linear in nodes
//! plus edges.

use std::collections::HashMap;

/// A node whose loss splits its part of the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// The node (any stable id: the graph's `short_id`).
    pub node: u64,
    /// Nodes that would lose their way to the largest remaining part.
    pub cut_off: usize,
    /// Pieces its part of the mesh falls into without it.
    pub pieces: usize,
    /// Size of its part of the mesh (connected component), itself included.
    pub component: usize,
}

/// The bridge nodes of the undirected graph `edges` (self-loops and duplicates are ignored),
/// those that cut off the most nodes first (then by id).
pub fn bridges(edges: impl IntoIterator<Item = (u64, u64)>) -> Vec<Bridge> {
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut adj: Vec<Vec<usize>> = Vec::new();
    let mut intern = |x: u64, adj: &mut Vec<Vec<usize>>| {
        *index.entry(x).or_insert_with(|| {
            ids.push(x);
            adj.push(Vec::new());
            ids.len() - 1
        })
    };
    for (a, b) in edges {
        if a == b {
            continue;
        }
        let (i, j) = (intern(a, &mut adj), intern(b, &mut adj));
        adj[i].push(j);
        adj[j].push(i);
    }
    for list in &mut adj {
        list.sort_unstable();
        list.dedup();
    }
    let n = ids.len();
    const NONE: usize = usize::MAX;
    let mut disc = vec![NONE; n];
    let mut low = vec![0usize; n];
    let mut size = vec![1usize; n];
    // Per node: sizes of the child subtrees that its removal separates.
    let mut separated: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut component_of = vec![0usize; n];
    let mut component_sizes: Vec<usize> = Vec::new();
    let mut is_root = vec![false; n];
    let mut root_children = vec![0usize; n];
    let mut time = 0usize;
    for start in 0..n {
        if disc[start] != NONE {
            continue;
        }
        let comp = component_sizes.len();
        component_sizes.push(0);
        is_root[start] = true;
        // Stack of (node, parent, next neighbour position).
        let mut stack: Vec<(usize, usize, usize)> = vec![(start, NONE, 0)];
        disc[start] = time;
        low[start] = time;
        time += 1;
        while let Some(&mut (v, parent, ref mut pos)) = stack.last_mut() {
            if let Some(&w) = adj[v].get(*pos) {
                *pos += 1;
                if disc[w] == NONE {
                    disc[w] = time;
                    low[w] = time;
                    time += 1;
                    stack.push((w, v, 0));
                } else if w != parent {
                    low[v] = low[v].min(disc[w]);
                }
                continue;
            }
            stack.pop();
            component_of[v] = comp;
            component_sizes[comp] += 1;
            if parent != NONE {
                low[parent] = low[parent].min(low[v]);
                size[parent] += size[v];
                if is_root[parent] {
                    root_children[parent] += 1;
                    separated[parent].push(size[v]);
                } else if low[v] >= disc[parent] {
                    separated[parent].push(size[v]);
                }
            }
        }
    }
    let mut out = Vec::new();
    for v in 0..n {
        let comp = component_sizes[component_of[v]];
        let mut pieces: Vec<usize> = separated[v].clone();
        if is_root[v] {
            if root_children[v] < 2 {
                continue;
            }
        } else {
            if pieces.is_empty() {
                continue;
            }
            let rest = comp - 1 - pieces.iter().sum::<usize>();
            if rest > 0 {
                pieces.push(rest);
            }
        }
        let largest = pieces.iter().copied().max().unwrap_or(0);
        out.push(Bridge {
            node: ids[v],
            cut_off: comp - 1 - largest,
            pieces: pieces.len(),
            component: comp,
        });
    }
    out.sort_by(|a, b| b.cut_off.cmp(&a.cut_off).then(a.node.cmp(&b.node)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_held_together_by_its_inner_nodes() {
        // 1 - 2 - 3 - 4 - 5
        let b = bridges([(1, 2), (2, 3), (3, 4), (4, 5)]);
        let by: HashMap<u64, &Bridge> = b.iter().map(|x| (x.node, x)).collect();
        assert_eq!(by.len(), 3);
        assert_eq!(by[&3].cut_off, 2);
        assert_eq!(by[&2].cut_off, 1);
        assert_eq!(by[&4].cut_off, 1);
        assert_eq!(b[0].node, 3, "the biggest cut first");
        assert!(by.values().all(|x| x.pieces == 2 && x.component == 5));
    }

    #[test]
    fn a_ring_has_none_and_two_rings_joined_at_one_node_have_one() {
        assert!(bridges([(1, 2), (2, 3), (3, 4), (4, 1)]).is_empty());
        // Two triangles sharing node 1; 1 is also the DFS root here.
        let b = bridges([(1, 2), (2, 3), (3, 1), (1, 4), (4, 5), (5, 1)]);
        assert_eq!(
            b,
            vec![Bridge {
                node: 1,
                cut_off: 2,
                pieces: 2,
                component: 5
            }]
        );
    }

    #[test]
    fn a_star_centre_cuts_off_all_but_one_leaf_and_separate_parts_stay_separate() {
        let mut e: Vec<(u64, u64)> = (2..=6).map(|i| (1, i)).collect();
        e.extend([(10, 11), (11, 10), (7, 7)]);
        let b = bridges(e);
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].node, b[0].cut_off, b[0].pieces), (1, 4, 5));
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        let e: Vec<(u64, u64)> = (0..200_000u64).map(|i| (i, i + 1)).collect();
        let b = bridges(e);
        assert_eq!(b.len(), 199_999);
        assert_eq!(b[0].cut_off, 100_000);
    }
}
