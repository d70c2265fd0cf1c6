//! Names for the edges and the anchors of the object graph ([`super::graph`]): which attribute, key,
//! item or local of its holder an object is, and what a root or a module, type or frame is called.
//!
//! Edges are named by reading the holder again after the walk (from the live target or its copy) and
//! finding where it holds the object; a holder that changed since reads as [`Edge::Unknown`]. Keys of
//! big dicts (more than [`NAMED_KEYS`] entries) fold to `[*]` like list items, unless one path is asked
//! for (`detail`).

use std::collections::HashMap;

use python_bindings::{flags, Layout};

use super::graph::{Graph, Root, RootKind};

mod batch;
use super::refs::{RefInfos, RefKind};
use crate::cpython::objects::{dict_for_each, dict_keys, read_str, MAX_NAME};
use crate::cpython::values::{self, Value, ValueKind};
use crate::memory::fasthash::AddrMap;
use crate::memory::{le_u64, Memory, ReadExt};
use batch::{root_field, root_words};
use serde::{Deserialize, Serialize};

/// The name of the module type.
pub const MODULE: &str = "builtins.module";
/// Dicts with at most this many entries have their keys named on every path.
pub const NAMED_KEYS: u64 = 64;
/// Most members read from one type's `tp_members`, and bases followed.
const MAX_MEMBERS: u64 = 512;
const MAX_BASES: usize = 64;
/// Longest key text shown.
const KEY_TEXT: usize = 60;
/// Most items searched for an index.
const MAX_ITEMS: u64 = 1 << 24;

/// Where a path starts, as a person reads it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Anchor {
    /// "module", "frame", "type", "interned", "runtime", "outside", "unreachable".
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thread: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<String>,
    /// A frame's: the line it is executing (None: it could not be decoded; see `def_line`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<u32>,
    /// A frame's: the first line of its code (`co_firstlineno`, the `def`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub def_line: Option<u32>,
}

impl Anchor {
    pub fn new(kind: &str, name: impl Into<String>) -> Self {
        Anchor {
            kind: kind.into(),
            name: name.into(),
            thread: None,
            function: None,
            file: None,
            line: None,
            def_line: None,
        }
    }

    /// The anchor as samples of one process match it: a frame is the same root whichever line it has
    /// reached since (its `line` left out).
    pub fn identity(&self) -> Anchor {
        Anchor { line: None, ..self.clone() }
    }
}

/// What an edge is, as the object it leaves holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edge {
    /// A dict's value: its key's repr (`'cache'`, `42`), and the key itself when it is a str.
    Key { repr: String, name: Option<String> },
    /// The object is a key of the dict.
    DictKey,
    /// An attribute: a slot, a C member, a value of an instance without a dict.
    Attr(String),
    /// An item of a list, tuple, set, deque or array: its index when asked for.
    Item(Option<u64>),
    /// The object is the `__dict__` of the one holding it (one step with it: its keys are attributes).
    Dict,
    /// A frame's local variable.
    Local(String),
    /// A field of a C struct, by name or offset.
    Field(String),
    /// Into a native (non-object) block the object points to.
    Native,
    /// The holder no longer holds it (the target changed since the walk), or nothing names it.
    Unknown,
}

/// Names edges and tells objects' short values (reading the target, its copy, or a dump).
pub trait Namer {
    fn edge(&mut self, parent: u32, child: u32) -> Edge;
    /// The short value of object `node` (a str's first characters, an int, a container's length).
    fn value(&mut self, _node: u32) -> Option<Value> {
        None
    }
    /// Every edge of `parent` (`targets`: its edges in the graph's order, bit 31 kept), named as
    /// [`Namer::edge`] names each; a namer that reads each holder once overrides it.
    fn edges_of(&mut self, parent: u32, targets: &[u32]) -> Vec<Edge> {
        targets.iter().map(|&t| self.edge(parent, t & !super::graph::CONSERVATIVE_EDGE)).collect()
    }
    /// The name [`Namer::edge`] gives every edge from `parent` to an object, when it is the same for
    /// all of them (a list's items with indices not named); None: ask per edge.
    fn uniform(&mut self, _parent: u32) -> Option<Edge> {
        None
    }
}

impl<T: Namer + ?Sized> Namer for &mut T {
    fn edge(&mut self, parent: u32, child: u32) -> Edge {
        (**self).edge(parent, child)
    }

    fn value(&mut self, node: u32) -> Option<Value> {
        (**self).value(node)
    }

    fn edges_of(&mut self, parent: u32, targets: &[u32]) -> Vec<Edge> {
        (**self).edges_of(parent, targets)
    }

    fn uniform(&mut self, parent: u32) -> Option<Edge> {
        (**self).uniform(parent)
    }
}

/// Names edges by reading the holders in `mem`.
pub struct EdgeNamer<'a, M: Memory + ?Sized> {
    mem: &'a M,
    l: &'a Layout,
    g: &'a Graph,
    /// Name every key and index (one path), not only those of small dicts.
    pub detail: bool,
    infos: RefInfos,
    /// Frame nodes (roots of 3.11+, frame objects of 3.9/3.10) and their locals.
    frames: HashMap<u32, &'a Root>,
    /// Per code object: the names of its `localsplus` slots.
    local_names: AddrMap<Vec<String>>,
    /// Per type: its members (offset, name), its bases' included.
    members: AddrMap<Vec<(u64, String)>>,
    /// Per root struct: its bytes.
    root_words: HashMap<u32, AddrMap<u64>>,
    /// The address of `cell` (0 when the heap has none), whose one field is `cell_contents`.
    cell_type: u64,
    /// Every object's address by node, when the caller has them (else each is looked up).
    addrs: Option<&'a [u64]>,
    /// Per key object: how it reads.
    keys: AddrMap<Edge>,
    /// Per shared keys object: where its entries are and how big each is.
    shared: AddrMap<Option<(u64, u64)>>,
}

impl<'a, M: Memory + ?Sized> EdgeNamer<'a, M> {
    pub fn new(mem: &'a M, l: &'a Layout, g: &'a Graph) -> Self {
        let mut frames = HashMap::new();
        for (i, r) in g.roots.iter().enumerate() {
            if matches!(r.kind, RootKind::Frame { .. }) {
                frames.insert(g.root_node(i), r);
            }
        }
        for r in &g.frame_objects {
            if let Some(v) = g.node_at(r.addr) {
                frames.insert(v, r);
            }
        }
        EdgeNamer {
            mem,
            l,
            g,
            detail: false,
            infos: RefInfos::default(),
            frames,
            local_names: AddrMap::default(),
            members: AddrMap::default(),
            root_words: HashMap::new(),
            cell_type: g.type_infos.iter().find(|t| t.name == "builtins.cell").map_or(0, |t| t.addr),
            addrs: None,
            keys: AddrMap::default(),
            shared: AddrMap::default(),
        }
    }

    /// Uses `addrs` (every object's address by node, [`Graph::addresses`]) instead of looking each up.
    pub fn with_addresses(mut self, addrs: &'a [u64]) -> Self {
        self.addrs = Some(addrs);
        self
    }

    #[inline]
    fn addr(&self, v: u32) -> u64 {
        match self.addrs {
            Some(a) if (v as usize) < a.len() => a[v as usize],
            _ => self.g.addr(v),
        }
    }

    /// The names of the `localsplus` slots of the code object at `code`.
    fn locals_of(&mut self, code: u64) -> &[String] {
        let (mem, l) = (self.mem, self.l);
        self.local_names.entry(code).or_insert_with(|| {
            let mut names = Vec::new();
            let tuples = match l.code.localsplusnames {
                Some(off) => vec![off],
                None => [l.code.varnames, l.code.cellvars, l.code.freevars].into_iter().flatten().collect(),
            };
            for off in tuples {
                let Ok(t) = mem.u64_at(code + off, "code names") else { break };
                let n = mem.u64_at(t + l.object.ob_size, "code names size").unwrap_or(0).min(1 << 16);
                for i in 0..n {
                    let s = mem.u64_at(t + l.tuple.item + 8 * i, "code name").and_then(|p| read_str(mem, l, p));
                    names.push(s.unwrap_or_else(|_| format!("local {}", names.len())));
                }
            }
            names
        })
    }

    fn frame_edge(&mut self, frame: u32, child_addr: u64) -> Edge {
        let Some(r) = self.frames.get(&frame).copied() else { return Edge::Unknown };
        let RootKind::Frame { code, .. } = r.kind else { return Edge::Unknown };
        let Some(&(slot, _)) = r.locals.iter().find(|(_, a)| *a == child_addr) else {
            return Edge::Field("frame".into());
        };
        let names = self.locals_of(code);
        Edge::Local(names.get(slot as usize).cloned().unwrap_or_else(|| format!("local {slot}")))
    }

    /// The members of type `t` and its bases: (offset, name) from `tp_members`.
    fn members_of(&mut self, t: u64) -> &[(u64, String)] {
        let (mem, l) = (self.mem, self.l);
        self.members.entry(t).or_insert_with(|| {
            let mut out = Vec::new();
            let mut b = t;
            for _ in 0..MAX_BASES {
                if b == 0 {
                    break;
                }
                if let Ok(m) = mem.u64_at(b + l.type_.tp_members, "tp_members") {
                    let mut at = m;
                    for _ in 0..MAX_MEMBERS {
                        if at == 0 {
                            break;
                        }
                        let Ok(def) = mem.bytes_at(at, 40, "PyMemberDef") else { break };
                        let name = le_u64(&def, 0).unwrap_or(0);
                        if name == 0 {
                            break;
                        }
                        let off = le_u64(&def, 16).unwrap_or(0);
                        if let Ok(n) = mem.cstr_at(name, MAX_NAME, "member name") {
                            out.push((off, n));
                        }
                        at += 40;
                    }
                }
                b = mem.u64_at(b + l.type_.tp_base, "tp_base").unwrap_or(0);
            }
            out
        })
    }

    /// A field at `off` of an object of type `t`: its member's name, else the offset.
    fn field(&mut self, t: u64, off: u64) -> Edge {
        if let Some((_, n)) = self.members_of(t).iter().find(|(o, _)| *o == off) {
            return Edge::Attr(n.clone());
        }
        Edge::Field(format!("+{off:#x}"))
    }

    /// How a dict's key reads (remembered: keys repeat across dicts).
    fn key(&mut self, k: u64) -> Edge {
        if let Some(e) = self.keys.get(&k) {
            return e.clone();
        }
        let e = self.read_key(k);
        if self.keys.len() < 1 << 20 {
            self.keys.insert(k, e.clone());
        }
        e
    }

    fn read_key(&self, k: u64) -> Edge {
        let ty = self.g.node_at(k).and_then(|v| self.g.type_of(v)).map(|t| t.name.as_str()).unwrap_or("?");
        match ty {
            "builtins.str" => match read_str(self.mem, self.l, k) {
                Ok(s) => {
                    let short: String = s.chars().take(KEY_TEXT).collect();
                    let ellipsis = if short.len() < s.len() { "…" } else { "" };
                    let ident = !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
                    Edge::Key { repr: format!("{short:?}{ellipsis}").replacen('"', "'", 2), name: ident.then_some(s) }
                }
                Err(_) => Edge::Key { repr: "key of str".into(), name: None },
            },
            "builtins.int" | "builtins.bool" => match crate::cpython::values::int_value(self.mem, self.l, k) {
                Some(v) => Edge::Key { repr: v.to_string(), name: None },
                None => Edge::Key { repr: "key of int".into(), name: None },
            },
            t => Edge::Key { repr: format!("key of {t}"), name: None },
        }
    }

    fn dict_edge(&mut self, d: u64, child: u64) -> Edge {
        let used = self.mem.u64_at(d + self.l.dict.used, "ma_used").unwrap_or(0);
        if used > NAMED_KEYS && !self.detail {
            return Edge::Item(None);
        }
        let mut found = None;
        let _ = dict_for_each(self.mem, self.l, d, |k, v| {
            if v == child {
                found = Some(Some(k));
            } else if k == child && found.is_none() {
                found = Some(None);
            }
            Ok(found.is_none_or(|f| f.is_none()))
        });
        match found {
            Some(Some(k)) => self.key(k),
            Some(None) => Edge::DictKey,
            None => Edge::Unknown,
        }
    }

    fn item_edge(&self, items: u64, n: u64, child: u64) -> Edge {
        if !self.detail {
            return Edge::Item(None);
        }
        let n = n.min(MAX_ITEMS);
        let mut i = 0;
        while i < n {
            let k = (n - i).min(8192);
            let Ok(b) = self.mem.bytes_at(items + 8 * i, (8 * k) as usize, "items") else { break };
            if let Some(j) = b.chunks_exact(8).position(|c| le_u64(c, 0) == Some(child)) {
                return Edge::Item(Some(i + j as u64));
            }
            i += k;
        }
        Edge::Item(None)
    }

    /// The name of value slot `i` of an instance without a dict (3.11+) whose type's shared keys are
    /// `cached_keys`: the `i`-th key.
    fn value_slot(&mut self, cached_keys: u64, i: u64) -> Option<Edge> {
        let (mem, l) = (self.mem, self.l);
        let (entries, entry_size) = *self
            .shared
            .entry(cached_keys)
            .or_insert_with(|| dict_keys(mem, l, cached_keys).ok().map(|k| (k.entries, k.entry_size)))
            .as_ref()?;
        let at = entries + i * entry_size + if entry_size == 24 { 8 } else { 0 };
        let key = self.mem.u64_at(at, "shared key").ok()?;
        match self.key(key) {
            Edge::Key { name: Some(n), .. } => Some(Edge::Attr(n)),
            e => Some(e),
        }
    }

    fn instance_edge(&mut self, p: u64, t: u64, child: u64) -> Edge {
        if let Some(e) = self.own_edge(p, t, child) {
            return e;
        }
        match self.infos.get(self.mem, self.l, t) {
            Ok(ri) if ri.kind == RefKind::Object && ri.itemsize == 8 => Edge::Item(None),
            _ => Edge::Unknown,
        }
    }

    /// Where an object holds `child` in what its own type adds: its `__dict__` (or the values of one
    /// not made), a slot, a C member, another field.
    fn own_edge(&mut self, p: u64, t: u64, child: u64) -> Option<Edge> {
        // One reading of the object for both ways of asking (this edge, or all of them: `own_names`).
        self.own_names(p, t).remove(&child)
    }

    fn root_edge(&mut self, root: u32, child: u64) -> Edge {
        let Some(r) = self.g.root_of(root) else { return Edge::Unknown };
        let (addr, size) = match r.kind {
            RootKind::Frame { .. } => return self.frame_edge(root, child),
            RootKind::Runtime => (r.addr, self.l.runtime.size),
            RootKind::Interpreter => (r.addr, self.l.interp.size),
            RootKind::Thread { .. } => (r.addr, self.l.tstate.size),
        };
        let (mem, l) = (self.mem, self.l);
        let words = self.root_words.entry(root).or_insert_with(|| root_words(mem, addr, size));
        match words.get(&child) {
            Some(&off) => root_field(l, r.kind, off),
            None => Edge::Unknown,
        }
    }
}

impl<M: Memory + ?Sized> Namer for EdgeNamer<'_, M> {
    fn value(&mut self, node: u32) -> Option<Value> {
        let info = self.g.type_of(node)?;
        let kind = ValueKind::of(info.flags, &info.name);
        values::read(self.mem, self.l, self.addr(node), kind)
    }

    fn edges_of(&mut self, parent: u32, targets: &[u32]) -> Vec<Edge> {
        if self.detail && targets == self.g.edges(parent) {
            return self.name_edges(parent);
        }
        targets.iter().map(|&t| self.edge(parent, t & !super::graph::CONSERVATIVE_EDGE)).collect()
    }

    fn uniform(&mut self, parent: u32) -> Option<Edge> {
        let g = self.g;
        if self.detail {
            return None;
        }
        if g.is_native(parent) {
            return Some(Edge::Item(None));
        }
        if !g.is_object(parent) || self.frames.contains_key(&parent) {
            return None;
        }
        let info = g.type_of(parent)?;
        let ri = self.infos.get(self.mem, self.l, info.addr).ok()?;
        // A subclass of a container holds attributes too.
        let plain = ri.flags & flags::HEAPTYPE == 0;
        (plain && matches!(ri.kind, RefKind::List | RefKind::Tuple | RefKind::Set | RefKind::Deque))
            .then_some(Edge::Item(None))
    }

    fn edge(&mut self, parent: u32, child: u32) -> Edge {
        let g = self.g;
        let c = self.addr(child);
        if g.is_native(child) {
            return Edge::Native;
        }
        if g.is_native(parent) {
            return Edge::Item(None);
        }
        if g.root_of(parent).is_some() {
            return self.root_edge(parent, c);
        }
        if self.frames.contains_key(&parent) {
            return self.frame_edge(parent, c);
        }
        let p = self.addr(parent);
        let Some(info) = g.type_of(parent) else { return Edge::Unknown };
        let (mem, l) = (self.mem, self.l);
        let Ok(ri) = self.infos.get(mem, l, info.addr) else { return Edge::Unknown };
        // A subclass of a container holds its own attributes too.
        if ri.flags & flags::HEAPTYPE != 0 && !matches!(ri.kind, RefKind::Object | RefKind::Type) {
            if let Some(e) = self.own_edge(p, info.addr, c) {
                return e;
            }
        }
        match ri.kind {
            RefKind::List => {
                let n = mem.u64_at(p + l.object.ob_size, "list size").unwrap_or(0);
                match mem.u64_at(p + l.list.item, "list items") {
                    Ok(items) => self.item_edge(items, n, c),
                    Err(_) => Edge::Unknown,
                }
            }
            RefKind::Tuple => {
                let n = mem.u64_at(p + l.object.ob_size, "tuple size").unwrap_or(0);
                self.item_edge(p + l.tuple.item, n, c)
            }
            RefKind::Set | RefKind::Deque => Edge::Item(None),
            RefKind::Dict => self.dict_edge(p, c),
            RefKind::Type => {
                let field = |off: u64| mem.u64_at(p + off, "type field").ok();
                if field(l.type_.tp_dict) == Some(c) {
                    Edge::Dict
                } else if field(l.type_.tp_mro) == Some(c) {
                    Edge::Field("__mro__".into())
                } else if field(l.type_.tp_base) == Some(c) {
                    Edge::Field("__base__".into())
                } else {
                    self.instance_edge(p, info.addr, c)
                }
            }
            _ if info.name == MODULE => {
                if mem.u64_at(p + l.module.md_dict, "md_dict").ok() == Some(c) {
                    Edge::Dict
                } else {
                    self.instance_edge(p, info.addr, c)
                }
            }
            _ => self.instance_edge(p, info.addr, c),
        }
    }
}
