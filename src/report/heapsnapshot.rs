//! The V8 heap snapshot format (`.heapsnapshot`: what Chrome DevTools' Memory tab, VS Code and memlab
//! open), written from one object graph.
//!
//! The file is one JSON object: `snapshot.meta` names the fields of the flat `nodes` array (7 numbers
//! a node: type, name, id, self size, edge count, trace node, detachedness) and of the `edges` array (3
//! a edge: type, name or index, the target's offset in `nodes`); names are indices into `strings`. A
//! node's edges follow those of the node before it. How Python maps onto it:
//! - node 0 is a synthetic root; under it one synthetic node per class of path start (the walk's roots,
//!   objects held from outside the heap, immortal objects, unreachable ones: what `why` names them),
//!   and under those the nodes paths start from, so every node is reachable as in memspy's dominator
//!   tree (the synthetic nodes have no size: the retained sizes of objects are memspy's);
//! - the walk's roots (runtime, interpreter and thread states, frames) are synthetic nodes named as
//!   `why` names them; native blocks are `native` nodes of size 0 (memspy counts no bytes for them);
//! - objects: `string` (named by their text, the first 64 characters), `number` (int, bool, float,
//!   complex), `code`, `array` (bytes, bytearray: raw byte arrays), else `object`, named by their type
//!   (modules, types and 3.9/3.10 frame objects by what they are: `module __main__`); self size is
//!   `sys.getsizeof`;
//! - edges: `property` (an attribute, a dict's str key: the name; other keys by their repr), `element`
//!   (an item: its index), `internal` (the rest: a `__dict__`, a dict key, a local, a C field).
//!
//! The file's last node holds nothing ([`Positions`]). Ids are `2 × position + 1` (odd, as V8's ids of heap objects): stable for one file, not across
//! files. The file is streamed through a buffer (no whole-file string) to a temporary name, renamed at
//! the end; an error or Ctrl-C leaves no file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::analysis::paths::{Paths, GARBAGE, OUTSIDE, ROOT, STATIC};
use crate::analysis::why::{Anchor, Edge, Namer};
use crate::cpython::values::{Value, ValueKind};
use crate::error::{Error, Result};
use crate::outfile::Partial;
use crate::walk::graph::Graph;

/// Numbers per node and per edge.
pub const NODE_FIELDS: usize = 7;
pub const EDGE_FIELDS: usize = 3;
/// The node types, in the order their numbers refer to.
const NODE_TYPES: [&str; 14] = [
    "hidden",
    "array",
    "string",
    "object",
    "code",
    "closure",
    "regexp",
    "number",
    "native",
    "synthetic",
    "concatenated string",
    "sliced string",
    "symbol",
    "bigint",
];
const T_ARRAY: u32 = 1;
const T_STRING: u32 = 2;
const T_OBJECT: u32 = 3;
const T_CODE: u32 = 4;
const T_NUMBER: u32 = 7;
const T_NATIVE: u32 = 8;
const T_SYNTHETIC: u32 = 9;
const EDGE_TYPES: [&str; 7] = ["context", "element", "property", "internal", "hidden", "shortcut", "weak"];
const E_ELEMENT: u32 = 1;
const E_PROPERTY: u32 = 2;
const E_INTERNAL: u32 = 3;

/// The classes of path start, in the order of their synthetic nodes (positions 1..=4).
const GROUPS: [(u32, &str); 4] = [
    (ROOT, "(roots: runtime, interpreters, threads, frames)"),
    (OUTSIDE, "held outside the heap (C code or native memory)"),
    (STATIC, "immortal objects"),
    (GARBAGE, "unreachable (garbage awaiting collection)"),
];
/// Position of the first graph node.
const FIRST: u32 = 1 + GROUPS.len() as u32;

/// What a written snapshot holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Written {
    pub path: PathBuf,
    pub nodes: u64,
    pub edges: u64,
    pub strings: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// Self sizes summed (every object's `sys.getsizeof`).
    pub self_size: u64,
    /// Objects whose size did not fit the format's 32 bits (written as 4 GiB − 1).
    pub clamped: u64,
    /// Edges whose holder no longer held them when named (the target changed since the walk).
    pub unnamed: u64,
    #[serde(skip)]
    pub elapsed: Duration,
    /// Where each graph node was written (its id: [`node_id`]).
    #[serde(skip)]
    pub positions: Positions,
}

/// The id a node at `position` gets.
pub fn node_id(position: u32) -> u64 {
    2 * position as u64 + 1
}

/// Where the graph's nodes are in a snapshot: after the synthetic ones, in graph order, except that the
/// last node of the file is one that holds nothing. (VS Code's heap snapshot parser fails on a file
/// whose last node dominates another: it keeps no count of what that node dominates. The graph's last
/// nodes are the walk's roots, which hold a thread's locals; so the last of them trades places with
/// the last object that holds no reference.)
#[derive(Clone, Copy, Debug)]
pub struct Positions {
    /// The two graph nodes that trade places, if any.
    swap: Option<(u32, u32)>,
}

impl Positions {
    pub fn of_graph(g: &Graph) -> Positions {
        let Some(last) = g.nodes().checked_sub(1) else { return Positions { swap: None } };
        if g.edges(last).is_empty() {
            return Positions { swap: None };
        }
        let leaf = (0..g.objects).rev().find(|&v| g.edges(v).is_empty());
        Positions { swap: leaf.map(|l| (l, last)) }
    }

    /// The graph node at graph place `i` (and the place of graph node `i`: trading is its own inverse).
    fn traded(&self, i: u32) -> u32 {
        match self.swap {
            Some((a, b)) if i == a => b,
            Some((a, b)) if i == b => a,
            _ => i,
        }
    }

    /// The position of graph node `v` in the snapshot.
    pub fn of(&self, v: u32) -> u32 {
        FIRST + self.traded(v)
    }
}

/// The strings of a snapshot, each once (one allocation each, shared by the list and the index).
#[derive(Default)]
struct Strings {
    list: Vec<Rc<str>>,
    index: HashMap<Rc<str>, u32>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        let r: Rc<str> = Rc::from(s);
        self.list.push(r.clone());
        self.index.insert(r, i);
        i
    }
}

/// Writes `s` as a JSON string (quotes, backslashes and control characters escaped).
pub fn json_string(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    out.write_all(b"\"")?;
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: Option<&[u8]> = match c {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.write_all(&b[start..i])?;
        match esc {
            Some(e) => out.write_all(e)?,
            None => write!(out, "\\u{:04x}", c)?,
        }
        start = i + 1;
    }
    out.write_all(&b[start..])?;
    out.write_all(b"\"")
}

/// How an object node reads: its type and name.
fn object_node(g: &Graph, v: u32, anchors: &HashMap<u32, Anchor>, namer: &mut dyn Namer) -> (u32, String) {
    let Some(t) = g.type_of(v) else { return (T_OBJECT, "?".into()) };
    let short = t.name.strip_prefix("builtins.").unwrap_or(&t.name);
    if let Some(a) = anchors.get(&v).filter(|a| a.kind != "module" || t.name == "builtins.module") {
        return (T_OBJECT, super::why::anchor(a));
    }
    match ValueKind::of(t.flags, &t.name) {
        ValueKind::Str => match namer.value(v) {
            Some(Value::Str { text, len }) => {
                let more = if (text.chars().count() as u64) < len { "…" } else { "" };
                (T_STRING, format!("{text}{more}"))
            }
            _ => (T_STRING, short.to_string()),
        },
        ValueKind::Int | ValueKind::Float => (T_NUMBER, short.to_string()),
        ValueKind::Bytes => (T_ARRAY, short.to_string()),
        _ if t.name == "builtins.complex" => (T_NUMBER, short.to_string()),
        _ if t.name == "builtins.code" => (T_CODE, short.to_string()),
        _ if t.name == "builtins.bytearray" => (T_ARRAY, short.to_string()),
        _ => (T_OBJECT, t.name.clone()),
    }
}

/// An edge as the format types it: (type, name or index; a string's is its index in `strings`).
fn edge_of(e: &Edge, position: usize, strings: &mut Strings) -> (u32, u64) {
    let internal = |s: &str, strings: &mut Strings| (E_INTERNAL, strings.id(s) as u64);
    match e {
        Edge::Key { name: Some(n), .. } => (E_PROPERTY, strings.id(n) as u64),
        Edge::Key { repr, .. } => (E_PROPERTY, strings.id(repr) as u64),
        Edge::Attr(n) => (E_PROPERTY, strings.id(n) as u64),
        Edge::Item(Some(i)) => (E_ELEMENT, *i),
        Edge::Item(None) => (E_ELEMENT, position as u64),
        Edge::Dict => internal("__dict__", strings),
        Edge::DictKey => internal("(dict key)", strings),
        Edge::Local(n) => internal(n, strings),
        Edge::Field(n) => internal(n, strings),
        Edge::Native => internal("(native)", strings),
        Edge::Unknown => internal("(unnamed)", strings),
    }
}

fn cannot_write(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::CannotWrite { path: path.display().to_string(), detail: e.to_string() }
}

/// Writes the snapshot of `g` to `path` (see the module doc); `paths` says where each path starts,
/// `anchors` names roots, modules and types, `namer` names edges (with detail: every index) and
/// reads strings' text. `progress(done, total)` is called as nodes are written, twice over.
pub fn write(
    path: &Path,
    g: &Graph,
    paths: &Paths,
    anchors: &HashMap<u32, Anchor>,
    namer: &mut dyn Namer,
    progress: &dyn Fn(u64, u64),
) -> Result<Written> {
    let t0 = Instant::now();
    let total = FIRST as u64 + g.nodes() as u64;
    let edge_total = GROUPS.len() as u64 + paths.sources.len() as u64 + g.targets.len() as u64;
    if total * NODE_FIELDS as u64 > u32::MAX as u64 {
        return Err(Error::Other(format!(
            "{} nodes are more than a heap snapshot can address (its offsets are 32-bit numbers)",
            g.nodes()
        )));
    }
    let mut partial = Partial::beside(path).ok_or_else(|| cannot_write(path, "not a file name"))?;
    let file = File::create(&partial.tmp).map_err(|e| cannot_write(path, e))?;
    let io = |e: std::io::Error| cannot_write(path, e);
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut strings = Strings::default();
    strings.id("");

    // Which sources each synthetic group holds.
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); GROUPS.len()];
    for &s in &paths.sources {
        let mark = paths.parent[s as usize];
        let i = GROUPS.iter().position(|(m, _)| *m == mark).unwrap_or(GROUPS.len() - 1);
        groups[i].push(s);
    }

    write!(out, "{{\"snapshot\":{{\"meta\":{{\"node_fields\":[\"type\",\"name\",\"id\",\"self_size\",\"edge_count\",\"trace_node_id\",\"detachedness\"],\"node_types\":[[").map_err(io)?;
    for (i, t) in NODE_TYPES.iter().enumerate() {
        if i > 0 {
            out.write_all(b",").map_err(io)?;
        }
        json_string(&mut out, t).map_err(io)?;
    }
    write!(out, "],\"string\",\"number\",\"number\",\"number\",\"number\",\"number\"],\"edge_fields\":[\"type\",\"name_or_index\",\"to_node\"],\"edge_types\":[[").map_err(io)?;
    for (i, t) in EDGE_TYPES.iter().enumerate() {
        if i > 0 {
            out.write_all(b",").map_err(io)?;
        }
        json_string(&mut out, t).map_err(io)?;
    }
    write!(
        out,
        "],\"string_or_number\",\"node\"],\"trace_function_info_fields\":[\"function_id\",\"name\",\"script_name\",\"script_id\",\"line\",\"column\"],\"trace_node_fields\":[\"id\",\"function_info_index\",\"count\",\"size\",\"children\"],\"sample_fields\":[\"timestamp_us\",\"last_assigned_id\"],\"location_fields\":[\"object_index\",\"script_id\",\"line\",\"column\"]}},\"node_count\":{total},\"edge_count\":{edge_total},\"trace_function_count\":0}},\n\"nodes\":["
    )
    .map_err(io)?;

    // Nodes: the root, the groups, then the graph's nodes.
    let mut first = true;
    let mut node = |out: &mut BufWriter<File>, ty: u32, name: u32, pos: u32, size: u64, edges: usize| {
        let sep = if first { "" } else { ",\n" };
        first = false;
        write!(out, "{sep}{ty},{name},{},{size},{edges},0,0", node_id(pos))
    };
    let n = strings.id("(memspy roots)");
    node(&mut out, T_SYNTHETIC, n, 0, 0, GROUPS.len()).map_err(io)?;
    for (i, (_, label)) in GROUPS.iter().enumerate() {
        let n = strings.id(label);
        node(&mut out, T_SYNTHETIC, n, 1 + i as u32, 0, groups[i].len()).map_err(io)?;
    }
    let mut self_size = 0u64;
    let mut clamped = 0u64;
    let nodes = g.nodes();
    let at = Positions::of_graph(g);
    for i in 0..nodes {
        if i % 4096 == 0 {
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            progress(i as u64, 2 * nodes as u64);
        }
        let v = at.traded(i);
        let degree = g.edges(v).len();
        let (ty, name, size) = if g.is_object(v) {
            let (ty, name) = object_node(g, v, anchors, namer);
            let size = g.size(v);
            self_size += size;
            if size > u32::MAX as u64 {
                clamped += 1;
            }
            (ty, name, size.min(u32::MAX as u64))
        } else if g.is_native(v) {
            (T_NATIVE, "native block".to_string(), 0)
        } else {
            let name = anchors.get(&v).map_or_else(|| "root".to_string(), super::why::anchor);
            (T_SYNTHETIC, name, 0)
        };
        let name = strings.id(&name);
        node(&mut out, ty, name, at.of(v), size, degree).map_err(io)?;
    }
    out.write_all(b"],\n\"edges\":[").map_err(io)?;

    // Edges, in the nodes' order.
    let mut first = true;
    let mut edge = |out: &mut BufWriter<File>, ty: u32, name: u64, to: u32| {
        let sep = if first { "" } else { ",\n" };
        first = false;
        write!(out, "{sep}{ty},{name},{}", to as u64 * NODE_FIELDS as u64)
    };
    for i in 0..GROUPS.len() {
        edge(&mut out, E_ELEMENT, i as u64 + 1, 1 + i as u32).map_err(io)?;
    }
    for members in &groups {
        for (j, &s) in members.iter().enumerate() {
            edge(&mut out, E_ELEMENT, j as u64 + 1, at.of(s)).map_err(io)?;
        }
    }
    let mut unnamed = 0u64;
    for i in 0..nodes {
        if i % 4096 == 0 {
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            progress(nodes as u64 + i as u64, 2 * nodes as u64);
        }
        let v = at.traded(i);
        let targets = g.edges(v);
        if targets.is_empty() {
            continue;
        }
        let names = namer.edges_of(v, targets);
        for (j, &t) in targets.iter().enumerate() {
            let e = names.get(j).unwrap_or(&Edge::Unknown);
            unnamed += (*e == Edge::Unknown) as u64;
            let (ty, name) = edge_of(e, j, &mut strings);
            edge(&mut out, ty, name, at.of(t & !crate::walk::graph::CONSERVATIVE_EDGE)).map_err(io)?;
        }
    }
    out.write_all(
        b"],\n\"trace_function_infos\":[],\n\"trace_tree\":[],\n\"samples\":[],\n\"locations\":[],\n\"strings\":[",
    )
    .map_err(io)?;
    for (i, s) in strings.list.iter().enumerate() {
        if i > 0 {
            out.write_all(b",\n").map_err(io)?;
        }
        json_string(&mut out, s).map_err(io)?;
    }
    out.write_all(b"]}\n").map_err(io)?;
    progress(2 * nodes as u64, 2 * nodes as u64);
    let file = out.into_inner().map_err(|e| cannot_write(path, e.error()))?;
    file.sync_all().map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    drop(file);
    std::fs::rename(&partial.tmp, path).map_err(io)?;
    partial.done = true;
    Ok(Written {
        path: path.to_path_buf(),
        nodes: total,
        edges: edge_total,
        strings: strings.list.len() as u64,
        bytes,
        self_size,
        clamped,
        unnamed,
        elapsed: t0.elapsed(),
        positions: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut b = Vec::new();
        json_string(&mut b, s).unwrap();
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_json() {
        assert_eq!(esc("plain"), "\"plain\"");
        assert_eq!(esc("a\"b\\c\nd\u{1}é</script>"), "\"a\\\"b\\\\c\\nd\\u0001é</script>\"");
        let back: String = serde_json::from_str(&esc("x\u{0}\u{1f}\t\"\\")).unwrap();
        assert_eq!(back, "x\u{0}\u{1f}\t\"\\");
    }

    #[test]
    fn ids_are_odd_and_positions_follow_the_synthetic_nodes() {
        assert_eq!(node_id(0), 1);
        let types = vec![crate::cpython::types::TypeInfo::plain(0x9000, "builtins.list", 56)];
        let g = Graph::of_edges(&[&[1], &[], &[0]], &[56, 56], &[1, 1], &[0, 0], types);
        let at = Positions::of_graph(&g);
        // The root (last) holds node 0: it trades places with node 1, the last that holds nothing.
        assert_eq!((at.of(0), at.of(1), at.of(2)), (5, 7, 6));
        assert_eq!(node_id(at.of(0)), 11);
    }
}
