//! Why each object is alive: its shortest path from a root of the object graph (breadth first from
//! every root at once, fewest edges a conservative scan found first: see [`bfs`]). Objects no
//! root reaches are attributed, in this order, to references from outside the heap (an object whose
//! refcount exceeds the references to it the walk found: C code or native memory holds the rest),
//! then to the runtime (immortal objects), then to unreachable garbage (cycles awaiting collection).

use crate::walk::graph::{Graph, CONSERVATIVE_EDGE, IMMORTAL};

/// `parent` of a root of the walk.
pub const ROOT: u32 = u32::MAX;
/// `parent` of an object held from outside the heap.
pub const OUTSIDE: u32 = u32::MAX - 1;
/// `parent` of an unreached immortal object.
pub const STATIC: u32 = u32::MAX - 2;
/// `parent` of an unreachable object that starts a path of its own.
pub const GARBAGE: u32 = u32::MAX - 3;
const UNSEEN: u32 = u32::MAX - 4;

/// Every node's parent on a shortest path, or the class of the path's start.
pub struct Paths {
    /// The parent node (bit 31: over a conservative edge), or [`ROOT`], [`OUTSIDE`], [`STATIC`],
    /// [`GARBAGE`] for the nodes paths start from.
    pub parent: Vec<u32>,
    /// The nodes paths start from, in the order they were taken.
    pub sources: Vec<u32>,
    /// Objects held from outside the heap, and their references not found in it (refcount − indegree).
    pub outside: Vec<(u32, u32)>,
}

impl Paths {
    /// The parent of `node` on its path, if it has one (sources have none).
    #[inline]
    pub fn parent_of(&self, node: u32) -> Option<(u32, bool)> {
        let p = self.parent[node as usize];
        (p < GARBAGE).then_some((p & !CONSERVATIVE_EDGE, p & CONSERVATIVE_EDGE != 0))
    }

    /// Where the path of `node` starts: the source, and its class (the `parent` mark).
    pub fn source_of(&self, mut node: u32) -> (u32, u32) {
        for _ in 0..self.parent.len() {
            match self.parent_of(node) {
                Some((p, _)) => node = p,
                None => break,
            }
        }
        (node, self.parent[node as usize])
    }
}

/// Shortest paths from the roots of `g` (see the module doc).
pub fn shortest(g: &Graph) -> Paths {
    let n = g.nodes() as usize;
    let mut parent = vec![UNSEEN; n];
    let mut sources = Vec::new();
    let roots: Vec<u32> = (0..g.roots.len()).map(|i| g.root_node(i)).collect();
    start(&mut parent, &mut sources, &roots, ROOT);
    bfs(g, &mut parent, roots);
    // Not kept: the paths and the dominator tree need memory while this would sit unused.
    let indegree = indegree(g);
    let mut outside = Vec::new();
    for v in 0..g.objects {
        let rc = g.refcounts[v as usize];
        if parent[v as usize] == UNSEEN && rc != IMMORTAL && rc > indegree[v as usize] {
            outside.push((v, rc - indegree[v as usize]));
        }
    }
    let held: Vec<u32> = outside.iter().map(|o| o.0).collect();
    start(&mut parent, &mut sources, &held, OUTSIDE);
    bfs(g, &mut parent, held);
    let immortal: Vec<u32> =
        (0..g.objects).filter(|&v| parent[v as usize] == UNSEEN && g.refcounts[v as usize] == IMMORTAL).collect();
    start(&mut parent, &mut sources, &immortal, STATIC);
    bfs(g, &mut parent, immortal);
    for v in 0..n as u32 {
        if parent[v as usize] == UNSEEN {
            start(&mut parent, &mut sources, &[v], GARBAGE);
            bfs(g, &mut parent, vec![v]);
        }
    }
    drop(indegree);
    Paths { parent, sources, outside }
}

impl Paths {
    /// Paths kept in a dump, checked: every parent a node of the `nodes` or a start's mark, the marked
    /// nodes exactly `sources` (each once), and the parents a forest (no chain loops).
    pub fn from_parts(
        parent: Vec<u32>,
        sources: Vec<u32>,
        outside: Vec<(u32, u32)>,
        nodes: u32,
    ) -> Result<Paths, String> {
        let n = nodes as usize;
        if parent.len() != n {
            return Err(format!("{} parents for {n} nodes", parent.len()));
        }
        let mut marked = 0usize;
        for (v, &p) in parent.iter().enumerate() {
            if p >= GARBAGE {
                marked += 1;
            } else if (p & !CONSERVATIVE_EDGE) as usize >= n || (p & !CONSERVATIVE_EDGE) as usize == v {
                return Err(format!("node {v}: parent {p:#x}"));
            }
        }
        let mut seen = vec![false; n];
        for &s in &sources {
            let ok = (s as usize) < n && parent[s as usize] >= GARBAGE && !seen[s as usize];
            if !ok {
                return Err(format!("source {s} is not a start of its own, or listed twice"));
            }
            seen[s as usize] = true;
        }
        if marked != sources.len() {
            return Err(format!("{marked} starts marked, {} listed", sources.len()));
        }
        if outside.iter().any(|&(v, _)| v as usize >= n || parent[v as usize] != OUTSIDE) {
            return Err("an object held from outside that is not marked so".into());
        }
        let paths = Paths { parent, sources, outside };
        // A forest: every node is reached down from the sources.
        let reached = crate::analysis::forest::tree_order(n, &paths.sources, |v| paths.parent_of(v).map(|p| p.0));
        match reached {
            Some(_) => Ok(paths),
            None => Err("the parents loop".into()),
        }
    }
}

/// References to each node the walk found (from objects, native blocks and roots).
pub fn indegree(g: &Graph) -> Vec<u32> {
    let mut indegree = vec![0u32; g.nodes() as usize];
    for &t in &g.targets {
        let t = (t & !CONSERVATIVE_EDGE) as usize;
        indegree[t] = indegree[t].saturating_add(1);
    }
    indegree
}

fn start(parent: &mut [u32], sources: &mut Vec<u32>, nodes: &[u32], mark: u32) {
    for &v in nodes {
        parent[v as usize] = mark;
        sources.push(v);
    }
}

/// Breadth first from `frontier` over nodes not seen yet, fewest conservative edges first: exact edges
/// as far as they go, then one conservative edge from anything reached, and so on (a conservative
/// word may be stale: a free list's old entry now pointing to a live object); within a level exact
/// edges come first.
fn bfs(g: &Graph, parent: &mut [u32], mut frontier: Vec<u32>) {
    let mut next = Vec::new();
    let mut reached = Vec::new();
    while !frontier.is_empty() {
        // Exact edges only, as far as they go.
        reached.clear();
        while !frontier.is_empty() {
            for &u in &frontier {
                reached.push(u);
                for &e in g.edges(u) {
                    let v = e & !CONSERVATIVE_EDGE;
                    if e & CONSERVATIVE_EDGE == 0 && parent[v as usize] == UNSEEN {
                        parent[v as usize] = u;
                        next.push(v);
                    }
                }
            }
            std::mem::swap(&mut frontier, &mut next);
            next.clear();
        }
        // Then one conservative edge.
        for &u in &reached {
            for &e in g.edges(u) {
                let v = e & !CONSERVATIVE_EDGE;
                if e & CONSERVATIVE_EDGE != 0 && parent[v as usize] == UNSEEN {
                    parent[v as usize] = u | CONSERVATIVE_EDGE;
                    frontier.push(v);
                }
            }
        }
    }
}
