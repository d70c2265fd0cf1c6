//! Forests given as a parent per node (the shortest paths' tree, the dominator tree as a dump keeps
//! them): an order in which every node comes after its parent, or None when the parents loop.

/// The `n` nodes of a forest given by each node's parent (None: a top, one of `tops`, which lists each
/// once), in an order where each comes after its parent; None when some node is not reached from the
/// tops (the parents loop), or a top has a parent.
pub fn tree_order(n: usize, tops: &[u32], parent: impl Fn(u32) -> Option<u32>) -> Option<Vec<u32>> {
    // Children as CSR, by parent.
    let mut first = vec![0u32; n + 1];
    for v in 0..n as u32 {
        if let Some(p) = parent(v) {
            first[p as usize + 1] += 1;
        }
    }
    for i in 1..=n {
        first[i] += first[i - 1];
    }
    let mut fill = first.clone();
    let mut children = vec![0u32; first[n] as usize];
    for v in 0..n as u32 {
        if let Some(p) = parent(v) {
            children[fill[p as usize] as usize] = v;
            fill[p as usize] += 1;
        }
    }
    drop(fill);
    let mut order = Vec::with_capacity(n);
    let mut stack: Vec<u32> = Vec::new();
    for &t in tops {
        if (t as usize) >= n || parent(t).is_some() {
            return None;
        }
        stack.push(t);
        // Each node has one parent, so is pushed once: at most n in all.
        while let Some(v) = stack.pop() {
            if order.len() == n {
                return None;
            }
            order.push(v);
            stack.extend_from_slice(&children[first[v as usize] as usize..first[v as usize + 1] as usize]);
        }
    }
    (order.len() == n).then_some(order)
}
