//! Reading a dump's graph sections back: the objects (`OBJS`, `NATV`), the edges and their labels
//! (`EDGE`, `LABL`), the strings and values (`STRS`, `VALS`) are decoded on three threads at once (each
//! section is one varint stream of its own), then checked together as one [`Graph`].

use std::collections::HashMap;

use super::codec::{need, unzigzag, Reader};
use super::held;
use super::names::StoredNames;
use crate::cpython::types::TypeInfo;
use crate::error::{Error, Result};
use crate::walk::graph::{Graph, GraphParts, Root, CONSERVATIVE_EDGE, IMMORTAL};

/// Per object: address, type, size, refcount; and the native blocks' addresses.
struct Objects {
    addrs: Vec<u64>,
    types: Vec<u32>,
    sizes: Vec<u64>,
    refcounts: Vec<u32>,
    native_addrs: Vec<u64>,
}

fn objects(objs: &[u8], natv: &[u8]) -> Result<Objects> {
    let mut r = Reader::new(objs, "OBJS");
    let n = r.count("objects", 4)?;
    let (mut addrs, mut types, mut sizes, mut refcounts) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut prev = 0u64;
    for _ in 0..n {
        let d = r.varint("address")?;
        prev = d
            .checked_mul(8)
            .and_then(|d| prev.checked_add(d))
            .ok_or_else(|| Error::BadDump("an address overflows".into()))?;
        addrs.push(prev);
        types.push(r.u32("type")?);
        sizes.push(r.varint("size")?);
        let rc = r.varint("refcount")?;
        refcounts.push(if rc == 0 { IMMORTAL } else { (rc - 1).min(IMMORTAL as u64 - 1) as u32 });
    }
    let mut r = Reader::new(natv, "NATV");
    let k = r.count("native blocks", 1)?;
    let mut native_addrs = Vec::with_capacity(k);
    let mut prev = 0u64;
    for _ in 0..k {
        prev = prev.wrapping_add(unzigzag(r.varint("native address")?) as u64);
        native_addrs.push(prev);
    }
    Ok(Objects { addrs, types, sizes, refcounts, native_addrs })
}

/// The edges of `nodes` nodes (CSR offsets and targets) and the label of each.
fn edges(edge: &[u8], labl: &[u8], nodes: u64) -> Result<(Vec<u32>, Vec<u32>, Vec<u32>)> {
    let mut r = Reader::new(edge, "EDGE");
    let mut offsets = Vec::with_capacity(nodes as usize + 1);
    offsets.push(0u32);
    let mut total = 0u64;
    for _ in 0..nodes {
        total += r.varint("edge count")?;
        if total > u32::MAX as u64 {
            return Err(Error::BadDump("more edges than a graph holds".into()));
        }
        offsets.push(total as u32);
    }
    let mut targets = Vec::with_capacity(total as usize);
    for v in 0..nodes {
        let end = offsets[v as usize + 1];
        while (targets.len() as u32) < end {
            let w = r.varint("edge")?;
            let to = v as i64 + unzigzag(w >> 1);
            if to < 0 || to as u64 >= nodes {
                return Err(Error::BadDump(format!("an edge of node {v} to node {to} of {nodes}")));
            }
            targets.push(to as u32 | if w & 1 == 1 { CONSERVATIVE_EDGE } else { 0 });
        }
    }
    let mut r = Reader::new(labl, "LABL");
    let mut labels = Vec::with_capacity(targets.len());
    for _ in 0..targets.len() {
        labels.push(r.u32("label")?);
    }
    Ok((offsets, targets, labels))
}

/// The strings, and where each of `objects` objects' value starts in the values.
fn names(strs: &[u8], vals: &[u8], objects: usize) -> Result<StoredNames> {
    let mut names = StoredNames::default();
    let mut r = Reader::new(strs, "STRS");
    let k = r.count("strings", 1)?;
    for _ in 0..k {
        names.strings.push(r.string("string")?);
    }
    if vals.len() >= u32::MAX as usize {
        return Err(Error::BadDump("a values section over 4 GiB".into()));
    }
    names.value_bytes = vals.to_vec();
    let mut r = Reader::new(vals, "VALS");
    names.value_at.reserve(objects);
    for _ in 0..objects {
        names.value_at.push(r.position() as u32);
        let tag = r.u8("value tag")?;
        match tag {
            0 => {}
            1 | 2 => {
                r.varint("length")?;
                r.bytes("text")?;
            }
            3 | 5 => {
                r.varint("value")?;
            }
            4 => {
                r.take(8, "float")?;
            }
            t => return Err(Error::BadDump(format!("section VALS: value tag {t}"))),
        }
    }
    Ok(names)
}

fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// What a dump's sections hold: the graph, its names, and its paths and dominator tree when kept (not
/// yet checked: see [`held::checked`], called once the sections' bytes are dropped).
type Decoded = (Graph, StoredNames, Option<held::Raw>);

/// The graph and names of a dump's sections.
pub(super) fn decode(s: &HashMap<[u8; 4], Vec<u8>>) -> Result<Decoded> {
    let sec = |t: &[u8; 4]| need(s, t).map_err(Error::BadDump);
    let type_infos: Vec<TypeInfo> =
        serde_json::from_slice(sec(b"TYPE")?).map_err(|e| Error::BadDump(format!("section TYPE: {e}")))?;
    let (roots, frame_objects): (Vec<Root>, Vec<Root>) =
        serde_json::from_slice(sec(b"ROOT")?).map_err(|e| Error::BadDump(format!("section ROOT: {e}")))?;
    let (objs, natv, edge, labl, strs, vals) =
        (sec(b"OBJS")?, sec(b"NATV")?, sec(b"EDGE")?, sec(b"LABL")?, sec(b"STRS")?, sec(b"VALS")?);
    // The counts each stream starts with tell the others how many nodes there are.
    let n = Reader::new(objs, "OBJS").count("objects", 4)?;
    let k = Reader::new(natv, "NATV").count("native blocks", 1)?;
    let nodes = (n + k + roots.len()) as u64;
    let n32 = u32::try_from(nodes).map_err(|_| Error::BadDump("more nodes than a graph holds".into()))?;
    let (path, idom) = (s.get(b"PATH"), s.get(b"IDOM"));
    let (o, e, names, held) = std::thread::scope(|sc| {
        let e = sc.spawn(|| edges(edge, labl, nodes));
        let names = sc.spawn(|| names(strs, vals, n));
        let held = sc.spawn(|| match (path, idom) {
            (Some(p), Some(d)) => Some(held::decode_paths(p, n32).and_then(|p| Ok((p, held::decode_idom(d, n32)?)))),
            _ => None,
        });
        let o = objects(objs, natv);
        (o, joined(e), joined(names), joined(held))
    });
    let (o, (offsets, targets, labels), mut names) = (o?, e?, names?);
    let g = Graph::from_parts(GraphParts {
        addrs: o.addrs,
        types: o.types,
        sizes: o.sizes,
        refcounts: o.refcounts,
        type_infos,
        native_addrs: o.native_addrs,
        roots,
        frame_objects,
        offsets,
        targets,
        stale: 0,
    })?;
    names.labels = labels;
    names.check(&g)?;
    Ok((g, names, held.transpose()?))
}
