//! Reading a dump's graph sections back: the objects (`OBJS`, `NATV`), the edges and their labels
//! (`EDGE`, `LABL`), the strings and values (`STRS`, `VALS`), the paths and dominators (`PATH`, `IDOM`)
//! are decoded on threads of their own (each section is one varint stream of its own), each started as
//! soon as its sections are decompressed ([`Decoding`]), then checked together as one [`Graph`].

use std::collections::HashMap;

use std::thread::JoinHandle;

use super::codec::{unzigzag, Reader};
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
    // Each edge takes a byte at least, here and in the labels: a count past what is left is a bad file
    // (checked before anything that size is allocated).
    if total > r.left() as u64 || total > labl.len() as u64 {
        return Err(Error::BadDump(format!(
            "section EDGE: {total} edges in {} bytes (and {} of labels)",
            r.left(),
            labl.len()
        )));
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
fn names(strs: &[u8], vals: Vec<u8>, objects: usize) -> Result<StoredNames> {
    let mut names = StoredNames::default();
    let mut r = Reader::new(strs, "STRS");
    let k = r.count("strings", 1)?;
    for _ in 0..k {
        names.strings.push(r.string("string")?);
    }
    if vals.len() >= u32::MAX as usize {
        return Err(Error::BadDump("a values section over 4 GiB".into()));
    }
    let mut r = Reader::new(&vals, "VALS");
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
    names.value_bytes = vals;
    Ok(names)
}

type Job<T> = Option<JoinHandle<Result<T>>>;

fn joined<T>(job: &mut Job<T>) -> Option<Result<T>> {
    job.take().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
}

/// What a dump's sections hold: the graph, its names, and its paths and dominator tree when kept (not
/// yet checked: see [`held::checked`], called once the sections' bytes are dropped).
pub(super) type Decoded = (Graph, StoredNames, Option<held::Raw>);

/// The decoding of a dump's graph sections, each started on a thread of its own as soon as the
/// sections it needs have arrived ([`Self::add`]), so that it overlaps the decompression of the
/// sections after them; [`Self::finish`] checks them together as one [`Graph`]. Every thread it
/// started is joined before it is dropped, on every path.
#[derive(Default)]
pub(super) struct Decoding {
    /// Sections waiting for the others their decoding needs.
    waiting: HashMap<[u8; 4], Vec<u8>>,
    seen: Vec<[u8; 4]>,
    type_infos: Option<Vec<TypeInfo>>,
    roots: Option<(Vec<Root>, Vec<Root>)>,
    /// Objects and native blocks, from the counts their sections start with.
    objects_count: Option<usize>,
    natives_count: Option<usize>,
    objects: Job<Objects>,
    edges: Job<(Vec<u32>, Vec<u32>, Vec<u32>)>,
    names: Job<StoredNames>,
    paths: Job<held::RawPaths>,
    idom: Job<Vec<u32>>,
}

/// The sections [`Decoding`] takes, in the order a missing one is named.
pub(super) const GRAPH_SECTIONS: [&[u8; 4]; 10] =
    [b"TYPE", b"ROOT", b"OBJS", b"NATV", b"EDGE", b"LABL", b"STRS", b"VALS", b"PATH", b"IDOM"];

fn spawned<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<Job<T>> {
    std::thread::Builder::new()
        .name("memspy-decode".into())
        .spawn(f)
        .map(Some)
        .map_err(|e| Error::Other(format!("cannot start a thread to decode a dump: {e}")))
}

impl Decoding {
    /// Takes section `tag` (one of [`GRAPH_SECTIONS`]); starts what it completes.
    pub fn add(&mut self, tag: [u8; 4], bytes: Vec<u8>) -> Result<()> {
        if self.seen.contains(&tag) {
            return Err(Error::BadDump(format!("section {} twice", String::from_utf8_lossy(&tag))));
        }
        self.seen.push(tag);
        match &tag {
            b"TYPE" => {
                let t = serde_json::from_slice(&bytes).map_err(|e| Error::BadDump(format!("section TYPE: {e}")))?;
                self.type_infos = Some(t);
            }
            b"ROOT" => {
                let r = serde_json::from_slice(&bytes).map_err(|e| Error::BadDump(format!("section ROOT: {e}")))?;
                self.roots = Some(r);
            }
            b"OBJS" => {
                self.objects_count = Some(Reader::new(&bytes, "OBJS").count("objects", 4)?);
                self.waiting.insert(tag, bytes);
            }
            b"NATV" => {
                self.natives_count = Some(Reader::new(&bytes, "NATV").count("native blocks", 1)?);
                self.waiting.insert(tag, bytes);
            }
            _ => {
                self.waiting.insert(tag, bytes);
            }
        }
        self.start_ready()
    }

    /// Nodes of the graph (objects, native blocks, roots), once the sections that count them are in.
    fn nodes(&self) -> Result<Option<u64>> {
        let (Some(n), Some(k), Some((roots, _))) = (self.objects_count, self.natives_count, &self.roots) else {
            return Ok(None);
        };
        let nodes = (n + k + roots.len()) as u64;
        u32::try_from(nodes).map_err(|_| Error::BadDump("more nodes than a graph holds".into()))?;
        Ok(Some(nodes))
    }

    /// Whether every section of `tags` waits (then they are taken).
    fn take<const N: usize>(&mut self, tags: [&[u8; 4]; N]) -> Option<[Vec<u8>; N]> {
        if !tags.iter().all(|t| self.waiting.contains_key(*t)) {
            return None;
        }
        Some(tags.map(|t| self.waiting.remove(t).expect("checked to be there")))
    }

    fn start_ready(&mut self) -> Result<()> {
        if let Some([objs, natv]) = self.take([b"OBJS", b"NATV"]) {
            self.objects = spawned(move || objects(&objs, &natv))?;
        }
        let Some(nodes) = self.nodes()? else { return Ok(()) };
        if let Some([edge, labl]) = self.take([b"EDGE", b"LABL"]) {
            self.edges = spawned(move || edges(&edge, &labl, nodes))?;
        }
        if let Some([strs, vals]) = self.take([b"STRS", b"VALS"]) {
            let n = self.objects_count.unwrap_or(0);
            self.names = spawned(move || names(&strs, vals, n))?;
        }
        // `nodes` fits in u32 (checked by `nodes()`).
        if let Some([path]) = self.take([b"PATH"]) {
            self.paths = spawned(move || held::decode_paths(&path, nodes as u32))?;
        }
        if let Some([idom]) = self.take([b"IDOM"]) {
            self.idom = spawned(move || held::decode_idom(&idom, nodes as u32))?;
        }
        Ok(())
    }

    /// The graph and names the sections hold, once all have been added.
    pub fn finish(mut self) -> Result<Decoded> {
        if let Some(t) = GRAPH_SECTIONS[..8].iter().find(|t| !self.seen.contains(t)) {
            return Err(Error::BadDump(format!("no section {}", String::from_utf8_lossy(*t))));
        }
        let missing = |what: &str| Error::BadDump(format!("the {what} could not be decoded"));
        let o = joined(&mut self.objects).ok_or_else(|| missing("objects"))?;
        let e = joined(&mut self.edges).ok_or_else(|| missing("edges"))?;
        let names = joined(&mut self.names).ok_or_else(|| missing("values"));
        let (paths, idom) = (joined(&mut self.paths), joined(&mut self.idom));
        let (o, (offsets, targets, labels), mut names) = (o?, e?, names??);
        let (roots, frame_objects) = self.roots.take().unwrap_or_default();
        let g = Graph::from_parts(GraphParts {
            addrs: o.addrs,
            types: o.types,
            sizes: o.sizes,
            refcounts: o.refcounts,
            type_infos: self.type_infos.take().unwrap_or_default(),
            native_addrs: o.native_addrs,
            roots,
            frame_objects,
            offsets,
            targets,
            stale: 0,
        })?;
        names.labels = labels;
        names.check(&g)?;
        let held = match (paths, idom) {
            (Some(p), Some(d)) => Some((p?, d?)),
            _ => None,
        };
        Ok((g, names, held))
    }
}

impl Drop for Decoding {
    fn drop(&mut self) {
        // A read that stopped early (a bad section, a body cut short) waits for what it started.
        let _ = joined(&mut self.objects);
        let _ = joined(&mut self.edges);
        let _ = joined(&mut self.names);
        let _ = joined(&mut self.paths);
        let _ = joined(&mut self.idom);
    }
}
