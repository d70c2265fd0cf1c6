//! Who owns the memory: the dominator tree of the object graph and retained sizes.
//!
//! A node `d` dominates `v` when every path from the roots to `v` passes through `d`; what `v` retains
//! is what it dominates (freeing `v` frees all of it). The graph gets one super root above every node
//! paths start from ([`super::paths::Paths::sources`]); the immediate dominators are computed by the
//! semi-NCA algorithm (Lengauer–Tarjan's semidominators, then nearest common ancestors on the DFS
//! tree), iteratively, in arrays indexed by DFS preorder number.

use super::paths::Paths;
use crate::walk::graph::{Graph, CONSERVATIVE_EDGE};

/// No dominator but the super root.
pub const TOP: u32 = u32::MAX;

pub struct Dominators {
    /// Per node: its immediate dominator, or [`TOP`].
    pub idom: Vec<u32>,
    /// Per node: `sys.getsizeof` bytes of the objects it dominates, itself included.
    pub retained: Vec<u64>,
    /// Per node: objects it dominates, itself included.
    pub retained_objects: Vec<u32>,
    /// Nodes in DFS preorder: every node comes after its dominators.
    pub order: Vec<u32>,
}

impl Dominators {
    /// Bytes of every object (the super root's retained size).
    pub fn total(&self, paths: &Paths) -> u64 {
        paths.sources.iter().map(|&s| self.retained[s as usize]).sum()
    }
}

/// The dominator tree of `g` (every node is reached: `paths` gave each a path).
pub fn compute(g: &Graph, paths: &Paths) -> Dominators {
    let n = g.nodes() as usize;
    // DFS preorder numbers from 1 (the super root) on; 0: not numbered yet.
    let mut pre = vec![0u32; n];
    let mut vertex = vec![0u32; n + 2];
    let mut parent = vec![0u32; n + 2];
    let mut k = 1u32;
    let mut stack: Vec<(u32, u32)> = Vec::new();
    for &s in &paths.sources {
        if pre[s as usize] != 0 {
            continue;
        }
        k += 1;
        pre[s as usize] = k;
        vertex[k as usize] = s;
        parent[k as usize] = 1;
        stack.push((s, g.offsets[s as usize]));
        while let Some(top) = stack.last_mut() {
            let (u, cur) = *top;
            if cur < g.offsets[u as usize + 1] {
                top.1 += 1;
                let v = g.targets[cur as usize] & !CONSERVATIVE_EDGE;
                if pre[v as usize] == 0 {
                    k += 1;
                    pre[v as usize] = k;
                    vertex[k as usize] = v;
                    parent[k as usize] = pre[u as usize];
                    stack.push((v, g.offsets[v as usize]));
                }
            } else {
                stack.pop();
            }
        }
    }
    let m = k as usize;
    // Predecessors (reverse CSR), by preorder number: counted, summed up to the end of each range,
    // then filled from the ends backwards (edges in reverse), which leaves each range's start in
    // `rev_off` and its predecessors in edge order. (No second array of cursors: in this and what
    // follows, every array that can be reused is, since fresh memory costs a page fault per page.)
    let mut rev_off = vec![0u32; m + 2];
    for &t in &g.targets {
        rev_off[pre[(t & !CONSERVATIVE_EDGE) as usize] as usize] += 1;
    }
    for i in 1..rev_off.len() {
        rev_off[i] += rev_off[i - 1];
    }
    let mut preds = vec![0u32; g.targets.len()];
    for u in (0..n).rev() {
        let pu = pre[u];
        for &t in g.edges(u as u32).iter().rev() {
            let p = pre[(t & !CONSERVATIVE_EDGE) as usize] as usize;
            rev_off[p] -= 1;
            preds[rev_off[p] as usize] = pu;
        }
    }
    let mut from_top = vec![false; m + 1];
    for &s in &paths.sources {
        from_top[pre[s as usize] as usize] = true;
    }
    drop(pre);
    // Semidominators.
    let mut semi: Vec<u32> = (0..=m as u32).collect();
    let mut label: Vec<u32> = (0..=m as u32).collect();
    let mut ancestor = vec![0u32; m + 1];
    let mut path = Vec::new();
    for w in (2..=m).rev() {
        let mut s = semi[w];
        for &v in &preds[rev_off[w] as usize..rev_off[w + 1] as usize] {
            let u = eval(v as usize, &mut ancestor, &mut label, &semi, &mut path);
            s = s.min(semi[u]);
        }
        if from_top[w] {
            s = 1;
        }
        semi[w] = s;
        ancestor[w] = parent[w];
    }
    drop((preds, rev_off, from_top));
    // Immediate dominators: the nearest common ancestor of the parent and the semidominator.
    let mut idom = reused(label, m + 1, 1);
    for w in 2..=m {
        let mut d = parent[w];
        while d > semi[w] {
            d = idom[d as usize];
        }
        idom[w] = d;
    }
    drop(parent);
    // Retained sizes, accumulated by node from the last in preorder to the first (every node after
    // its dominators).
    let mut by_node_idom = reused(ancestor, n, TOP);
    let mut by_node_retained = vec![0u64; n];
    let mut by_node_count = reused(semi, n, 0);
    for w in 2..=m {
        let v = vertex[w];
        let d = idom[w];
        by_node_idom[v as usize] = if d <= 1 { TOP } else { vertex[d as usize] };
        if g.is_object(v) {
            by_node_retained[v as usize] = g.size(v);
            by_node_count[v as usize] = 1;
        }
    }
    drop(idom);
    for w in (2..=m).rev() {
        let v = vertex[w] as usize;
        let d = by_node_idom[v];
        if d != TOP {
            by_node_retained[d as usize] += by_node_retained[v];
            by_node_count[d as usize] = by_node_count[d as usize].saturating_add(by_node_count[v]);
        }
    }
    vertex.truncate(m + 1);
    let order = vertex.split_off(2);
    Dominators { idom: by_node_idom, retained: by_node_retained, retained_objects: by_node_count, order }
}

/// `v`'s memory as `n` times `value` (reallocated only when it is too small).
fn reused(mut v: Vec<u32>, n: usize, value: u32) -> Vec<u32> {
    v.clear();
    v.resize(n, value);
    v
}

/// The dominator tree kept in a dump (`idom` per node, [`TOP`] under the super root), checked to be a
/// tree over every node, with the retained sizes and the order computed again.
pub fn from_idom(g: &Graph, idom: Vec<u32>) -> Result<Dominators, String> {
    let n = g.nodes() as usize;
    if idom.len() != n {
        return Err(format!("{} dominators for {n} nodes", idom.len()));
    }
    if let Some((v, &d)) = idom.iter().enumerate().find(|&(v, &d)| d != TOP && (d as usize >= n || d as usize == v)) {
        return Err(format!("node {v}: dominator {d:#x}"));
    }
    let tops: Vec<u32> = (0..n as u32).filter(|&v| idom[v as usize] == TOP).collect();
    let order =
        crate::analysis::forest::tree_order(n, &tops, |v| (idom[v as usize] != TOP).then_some(idom[v as usize]))
            .ok_or_else(|| "the dominators loop".to_string())?;
    let mut retained = vec![0u64; n];
    let mut count = vec![0u32; n];
    for v in 0..g.objects {
        retained[v as usize] = g.size(v);
        count[v as usize] = 1;
    }
    for &v in order.iter().rev() {
        let d = idom[v as usize];
        if d != TOP {
            retained[d as usize] += retained[v as usize];
            count[d as usize] = count[d as usize].saturating_add(count[v as usize]);
        }
    }
    Ok(Dominators { idom, retained, retained_objects: count, order })
}

/// Lengauer–Tarjan's EVAL with path compression, without recursion.
#[inline]
fn eval(v: usize, ancestor: &mut [u32], label: &mut [u32], semi: &[u32], path: &mut Vec<usize>) -> usize {
    if ancestor[v] == 0 {
        return v;
    }
    // Compress the forest path from v to just below its root.
    let mut x = v;
    while ancestor[ancestor[x] as usize] != 0 {
        path.push(x);
        x = ancestor[x] as usize;
    }
    while let Some(y) = path.pop() {
        let a = ancestor[y] as usize;
        if semi[label[a] as usize] < semi[label[y] as usize] {
            label[y] = label[a];
        }
        ancestor[y] = ancestor[a];
    }
    label[v] as usize
}

/// Per type: the bytes and objects its instances retain, counting only instances no other instance of
/// the same type dominates (so nothing is counted twice), as (retained bytes, retained objects).
pub fn retained_by_type(g: &Graph, d: &Dominators) -> Vec<(u64, u64)> {
    let under = under_same_type(g, d);
    retained_of(g, d, &under)
}

/// Per type: the bytes and objects retained by its instances not marked in `under`.
pub fn retained_of(g: &Graph, d: &Dominators, under: &[bool]) -> Vec<(u64, u64)> {
    let mut out = vec![(0u64, 0u64); g.type_infos.len()];
    for (v, _) in under.iter().enumerate().take(g.objects as usize).filter(|(_, u)| !**u) {
        let t = g.types[v] as usize;
        out[t].0 += d.retained[v];
        out[t].1 += d.retained_objects[v] as u64;
    }
    out
}

/// Per node: whether a dominator of it is an object of its type.
pub fn under_same_type(g: &Graph, d: &Dominators) -> Vec<bool> {
    under(g, d, &[]).0
}

/// [`under_same_type`] for what `nodes` are asked about: when they are all of one type, in one pass
/// down the tree (per node: whether a dominator of it is of that type — true to `under_same_type` for
/// the nodes of that type, which are all the caller may look at).
pub fn under_own_type(g: &Graph, d: &Dominators, nodes: &[u32]) -> Vec<bool> {
    let mut types = nodes.iter().filter(|&&v| g.is_object(v)).map(|&v| g.types[v as usize]);
    let Some(t) = types.next() else { return under_same_type(g, d) };
    if types.any(|u| u != t) {
        return under_same_type(g, d);
    }
    let mut above = vec![false; g.nodes() as usize];
    for &v in &d.order {
        let p = d.idom[v as usize];
        if p != TOP {
            let p = p as usize;
            above[v as usize] = above[p] || (g.is_object(p as u32) && g.types[p] == t);
        }
    }
    above
}

/// Per node: whether a dominator of it is an object of its type, and whether one is an object of a
/// type marked in `marked` (by type number; empty: none).
pub fn under(g: &Graph, d: &Dominators, marked: &[bool]) -> (Vec<bool>, Vec<bool>) {
    // The nearest dominator of each node that has a given type cannot be propagated for all types at
    // once; instead, walk the dominator tree depth first keeping a count per type of the dominators
    // on the way down.
    let n = g.nodes() as usize;
    let mut first_child = vec![u32::MAX; n];
    let mut next_sibling = vec![u32::MAX; n];
    let mut tops = Vec::new();
    for &v in d.order.iter().rev() {
        match d.idom[v as usize] {
            TOP => tops.push(v),
            p => {
                next_sibling[v as usize] = first_child[p as usize];
                first_child[p as usize] = v;
            }
        }
    }
    let mut active = vec![0u32; g.type_infos.len()];
    let mut under = vec![false; n];
    let mut by_marked = vec![false; if marked.is_empty() { 0 } else { n }];
    let mut marked_active = 0u32;
    let is_marked = |ty: usize| marked.get(ty).copied().unwrap_or(false);
    let mut stack: Vec<(u32, bool)> = Vec::new();
    for t in tops {
        stack.push((t, false));
        while let Some((v, leaving)) = stack.pop() {
            let ty = g.is_object(v).then(|| g.types[v as usize] as usize);
            if leaving {
                if let Some(ty) = ty {
                    active[ty] -= 1;
                    marked_active -= is_marked(ty) as u32;
                }
                continue;
            }
            if let Some(ty) = ty {
                under[v as usize] = active[ty] > 0;
                if !by_marked.is_empty() {
                    by_marked[v as usize] = marked_active > 0;
                }
                active[ty] += 1;
                marked_active += is_marked(ty) as u32;
            }
            stack.push((v, true));
            let mut c = first_child[v as usize];
            while c != u32::MAX {
                stack.push((c, false));
                c = next_sibling[c as usize];
            }
        }
    }
    (under, by_marked)
}

/// Per node: the bytes retained by the nearest objects under it in the dominator tree whose type is
/// marked in `marked` (what those own, not it).
pub fn retained_inside(g: &Graph, d: &Dominators, marked: &[bool]) -> Vec<u64> {
    let mut inside = vec![0u64; g.nodes() as usize];
    for &w in d.order.iter().rev() {
        let p = d.idom[w as usize];
        if p == TOP {
            continue;
        }
        let is_marked = g.is_object(w) && marked.get(g.types[w as usize] as usize).copied().unwrap_or(false);
        let c = if is_marked { d.retained[w as usize] } else { inside[w as usize] };
        inside[p as usize] += c;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpython::types::TypeInfo;

    /// A root holding X0 and X3; X0 → X1 → Y2, and X3 → Y2 too (a diamond: Y2 is the root's alone);
    /// X1 → X4.
    fn graph() -> Graph {
        let t = |addr, name: &str| TypeInfo::plain(addr, name, 16);
        let edges: [&[u32]; 6] = [&[1], &[2, 4], &[], &[2], &[], &[0, 3]];
        Graph::of_edges(
            &edges,
            &[10, 20, 30, 40, 50],
            &[1, 1, 2, 1, 1],
            &[0, 0, 1, 0, 0],
            vec![t(0x9000, "m.X"), t(0x9100, "m.Y")],
        )
    }

    #[test]
    fn under_own_type_agrees_with_under_same_type() {
        let g = graph();
        let p = crate::analysis::paths::shortest(&g);
        let d = compute(&g, &p);
        // Y2 is held two ways: only the root dominates it; X4 is under X1 and X0.
        assert_eq!(d.idom[2], 5);
        assert_eq!((d.idom[1], d.idom[4]), (0, 1));
        assert_eq!(d.retained[0], 10 + 20 + 50);
        let all = under_same_type(&g, &d);
        let xs = [0, 1, 3, 4];
        let own = under_own_type(&g, &d, &xs);
        for v in xs {
            assert_eq!(own[v as usize], all[v as usize], "X{v}");
        }
        assert_eq!(xs.map(|v| own[v as usize]), [false, true, false, true]);
        // Of two types: the general answer.
        assert_eq!(under_own_type(&g, &d, &[1, 2]), all);
    }
}
