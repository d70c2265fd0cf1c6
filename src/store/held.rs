//! The shortest paths and the dominator tree a dump keeps (sections `PATH` and `IDOM`), so that `why`,
//! `retained` and `top --retained` on the file start from them instead of computing them again on
//! every read. Both are optional: a dump without them (an older memspy's) has them computed on reading.
//!
//! ```text
//! PATH  count; per node its parent: 0 root, 1 held from outside, 2 immortal, 3 garbage (a path's start),
//!       else 4 + (zigzag(parent − node) × 2 + 1 if over a conservative edge);
//!       the starts: count, each a zigzag delta from the one before;
//!       the objects held from outside: count, each a zigzag delta and the references missing
//! IDOM  count; per node: 0 under the super root, else 1 + zigzag(dominator − node)
//! ```
//!
//! Reading checks both are trees over every node of the graph (see [`Paths::from_parts`],
//! [`dominators::from_idom`]).

use super::codec::{put_varint, unzigzag, zigzag, Reader};
use crate::analysis::dominators::{self, Dominators, TOP};
use crate::analysis::paths::{Paths, GARBAGE, ROOT};
use crate::error::{Error, Result};
use crate::walk::graph::{Graph, CONSERVATIVE_EDGE};

/// Starts' marks, coded 0–3 (`ROOT` − mark).
const MARKS: u64 = 4;

fn delta(to: u32, from: u32) -> u64 {
    zigzag(to as i64 - from as i64)
}

fn node(from: u32, d: u64, n: u32, what: &str, section: &str) -> Result<u32> {
    let v = from as i64 + unzigzag(d);
    u32::try_from(v)
        .ok()
        .filter(|&v| v < n)
        .ok_or_else(|| Error::BadDump(format!("section {section}: {what} {v} is not a node")))
}

/// A section's leading count, which must be the graph's `n` nodes.
fn one_per_node(r: &mut Reader, n: u32, what: &str, section: &str) -> Result<()> {
    let count = r.count(what, 1)?;
    if count != n as usize {
        return Err(Error::BadDump(format!("section {section}: {count} {what} for {n} nodes")));
    }
    Ok(())
}

/// The `PATH` section of `p`.
pub fn encode_paths(p: &Paths) -> Vec<u8> {
    let mut b = Vec::with_capacity(p.parent.len() * 2);
    put_varint(&mut b, p.parent.len() as u64);
    for (v, &q) in p.parent.iter().enumerate() {
        if q >= GARBAGE {
            put_varint(&mut b, (ROOT - q) as u64);
        } else {
            let conservative = (q & CONSERVATIVE_EDGE != 0) as u64;
            put_varint(&mut b, MARKS + (delta(q & !CONSERVATIVE_EDGE, v as u32) << 1 | conservative));
        }
    }
    put_varint(&mut b, p.sources.len() as u64);
    let mut prev = 0;
    for &s in &p.sources {
        put_varint(&mut b, delta(s, prev));
        prev = s;
    }
    put_varint(&mut b, p.outside.len() as u64);
    let mut prev = 0;
    for &(v, missing) in &p.outside {
        put_varint(&mut b, delta(v, prev));
        put_varint(&mut b, missing as u64);
        prev = v;
    }
    b
}

/// The `IDOM` section of `d`.
pub fn encode_idom(d: &Dominators) -> Vec<u8> {
    let mut b = Vec::with_capacity(d.idom.len() * 2);
    put_varint(&mut b, d.idom.len() as u64);
    for (v, &i) in d.idom.iter().enumerate() {
        put_varint(&mut b, if i == TOP { 0 } else { 1 + delta(i, v as u32) });
    }
    b
}

/// The parents, starts and objects held from outside of a `PATH` section, for a graph of `n` nodes
/// (not yet checked to be a forest: see [`Paths::from_parts`]).
pub type RawPaths = (Vec<u32>, Vec<u32>, Vec<(u32, u32)>);

/// What the two sections held, decoded but not yet checked.
pub type Raw = (RawPaths, Vec<u32>);

pub fn decode_paths(sec: &[u8], n: u32) -> Result<RawPaths> {
    let mut r = Reader::new(sec, "PATH");
    one_per_node(&mut r, n, "parents", "PATH")?;
    let mut parent = Vec::with_capacity(n as usize);
    for v in 0..n {
        let c = r.varint("parent")?;
        parent.push(if c < MARKS {
            ROOT - c as u32
        } else {
            let c = c - MARKS;
            let p = node(v, c >> 1, n, "parent", "PATH")?;
            p | if c & 1 != 0 { CONSERVATIVE_EDGE } else { 0 }
        });
    }
    let k = r.count("starts", 1)?;
    let mut sources = Vec::with_capacity(k);
    let mut prev = 0;
    for _ in 0..k {
        prev = node(prev, r.varint("start")?, n, "start", "PATH")?;
        sources.push(prev);
    }
    let k = r.count("objects held from outside", 2)?;
    let mut outside = Vec::with_capacity(k);
    let mut prev = 0;
    for _ in 0..k {
        prev = node(prev, r.varint("object held from outside")?, n, "object held from outside", "PATH")?;
        outside.push((prev, r.u32("references missing")?));
    }
    if !r.done() {
        return Err(Error::BadDump("section PATH: bytes after its end".into()));
    }
    Ok((parent, sources, outside))
}

/// The dominators of an `IDOM` section, for a graph of `n` nodes (not yet checked to be a tree).
pub fn decode_idom(sec: &[u8], n: u32) -> Result<Vec<u32>> {
    let mut r = Reader::new(sec, "IDOM");
    one_per_node(&mut r, n, "dominators", "IDOM")?;
    let mut idom = Vec::with_capacity(n as usize);
    for v in 0..n {
        let c = r.varint("dominator")?;
        idom.push(if c == 0 { TOP } else { node(v, c - 1, n, "dominator", "IDOM")? });
    }
    if !r.done() {
        return Err(Error::BadDump("section IDOM: bytes after its end".into()));
    }
    Ok(idom)
}

/// The paths and dominator tree of graph `g` from what the sections held, checked.
pub fn checked(g: &Graph, paths: RawPaths, idom: Vec<u32>) -> Result<(Paths, Dominators)> {
    let (parent, sources, outside) = paths;
    // The two checks on two threads (their arrays, 12 bytes per node each, come after the sections'
    // bytes are dropped).
    let (paths, dom) = std::thread::scope(|sc| {
        let dom = sc.spawn(|| dominators::from_idom(g, idom));
        let paths = Paths::from_parts(parent, sources, outside, g.nodes());
        (paths, dom.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    let paths = paths.map_err(|e| Error::BadDump(format!("section PATH: {e}")))?;
    let dom = dom.map_err(|e| Error::BadDump(format!("section IDOM: {e}")))?;
    Ok((paths, dom))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::paths;
    use crate::cpython::types::TypeInfo;

    /// A root holding objects 0 and 3; 0 → 1 → 2, 3 → 2 (a diamond), 1 → 4 over a conservative edge;
    /// object 5 held by nothing the walk saw (refcount 1).
    fn graph() -> Graph {
        let edges: [&[u32]; 7] = [&[1], &[2, 4 | CONSERVATIVE_EDGE], &[], &[2], &[], &[], &[0, 3]];
        let x = vec![TypeInfo::plain(0x9000, "m.X", 16)];
        Graph::of_edges(&edges, &[10, 20, 30, 40, 50, 60], &[1, 1, 2, 1, 1, 1], &[0; 6], x)
    }

    #[test]
    fn paths_and_dominators_read_back_as_computed() {
        let g = graph();
        let p = paths::shortest(&g);
        let d = dominators::compute(&g, &p);
        assert_eq!(p.outside, [(5, 1)]);
        let (sp, si) = (encode_paths(&p), encode_idom(&d));
        let (q, e) = checked(&g, decode_paths(&sp, g.nodes()).unwrap(), decode_idom(&si, g.nodes()).unwrap()).unwrap();
        assert_eq!((q.parent, q.sources, q.outside), (p.parent.clone(), p.sources.clone(), p.outside.clone()));
        assert_eq!((&e.idom, &e.retained, &e.retained_objects), (&d.idom, &d.retained, &d.retained_objects));
        assert_eq!(e.retained[1], 20 + 50);
        let mut order = e.order.clone();
        order.sort_unstable();
        assert_eq!(order, (0..g.nodes()).collect::<Vec<_>>());
    }

    #[test]
    fn loops_and_strays_are_refused() {
        let g = graph();
        let p = paths::shortest(&g);
        let d = dominators::compute(&g, &p);
        let n = g.nodes();
        // Two objects each other's dominator; a dominator out of the graph; a node its own parent.
        let mut idom = d.idom.clone();
        idom[1] = 4;
        idom[4] = 1;
        assert!(checked(&g, (p.parent.clone(), p.sources.clone(), p.outside.clone()), idom).is_err());
        let mut b = vec![];
        put_varint(&mut b, n as u64);
        for _ in 0..n {
            put_varint(&mut b, 1 + zigzag(1000));
        }
        assert!(decode_idom(&b, n).is_err());
        let mut parent = p.parent.clone();
        parent[2] = 4;
        parent[4] = 2;
        assert!(checked(&g, (parent, p.sources.clone(), p.outside.clone()), d.idom.clone()).is_err());
        assert!(decode_paths(&encode_paths(&p)[..3], n).is_err());
    }
}
