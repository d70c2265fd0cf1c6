//! Naming every edge of a holder at once (what a dump stores): each list, tuple, dict, instance and
//! root struct is read once for all its edges, with the names [`Namer::edge`] gives one by one.

use python_bindings::{flags, Layout};

use super::{Edge, EdgeNamer, Namer, MAX_ITEMS};
use crate::cpython::objects::dict_for_each;
use crate::memory::fasthash::AddrMap;
use crate::memory::{le_u64, Memory, ReadExt};
use crate::walk::graph::{RootKind, CONSERVATIVE_EDGE};
use crate::walk::refs::RefKind;
use std::collections::hash_map::Entry;

/// The words of a root's struct (`size` bytes at `addr`): each word's first offset.
pub(super) fn root_words<M: Memory + ?Sized>(mem: &M, addr: u64, size: u64) -> AddrMap<u64> {
    let b = mem.bytes_at(addr, size as usize, "root").unwrap_or_default();
    let mut at: AddrMap<u64> = AddrMap::default();
    for (i, c) in b.chunks_exact(8).enumerate() {
        if let Some(w) = le_u64(c, 0) {
            at.entry(w).or_insert(8 * i as u64);
        }
    }
    at
}

/// The field at `off` of a root's struct: the interpreter's named ones, else the offset.
pub(super) fn root_field(l: &Layout, kind: RootKind, off: u64) -> Edge {
    if kind == RootKind::Interpreter {
        let named = [(l.interp.modules, "modules"), (l.interp.sysdict, "sysdict"), (l.interp.builtins, "builtins")];
        if let Some((_, n)) = named.iter().find(|(o, _)| *o == off) {
            return Edge::Field((*n).into());
        }
    }
    Edge::Field(format!("+{off:#x}"))
}

impl<M: Memory + ?Sized> EdgeNamer<'_, M> {
    /// Every edge of `parent`, in the graph's order, named as [`Namer::edge`] names it with `detail`
    /// (every index, every key), reading each list, tuple and dict holder once instead of once per edge.
    pub fn name_edges(&mut self, parent: u32) -> Vec<Edge> {
        let detail = std::mem::replace(&mut self.detail, true);
        let names = self.all_edges(parent);
        self.detail = detail;
        names
    }

    fn all_edges(&mut self, parent: u32) -> Vec<Edge> {
        let g = self.g;
        let edges = g.edges(parent);
        let batched = g.is_object(parent) && !self.frames.contains_key(&parent);
        let container = match g.type_of(parent) {
            Some(info) if batched => self.infos.get(self.mem, self.l, info.addr).ok().map(|ri| (ri.kind, ri.flags)),
            _ => None,
        };
        let module = g.type_of(parent).is_some_and(|t| t.name == super::MODULE);
        let (kind, type_flags) = match container {
            Some((k @ (RefKind::List | RefKind::Tuple | RefKind::Dict), f)) if edges.len() > 1 => (k, f),
            Some((k, _))
                if edges.len() > 1 && !module && !matches!(k, RefKind::Set | RefKind::Deque | RefKind::Type) =>
            {
                return self.instance_edges(parent);
            }
            _ => {
                return edges.iter().map(|&e| self.edge(parent, e & !CONSERVATIVE_EDGE)).collect();
            }
        };
        let (mem, l) = (self.mem, self.l);
        let p = self.addr(parent);
        let info_addr = g.type_of(parent).map_or(0, |t| t.addr);
        // Where each child sits in the container: a dict's value (its key, the first entry holding
        // it) or key, an item's index.
        let mut at: AddrMap<Edge> = AddrMap::default();
        match kind {
            RefKind::Dict => {
                let mut keys: Vec<(u64, u64)> = Vec::new();
                let _ = dict_for_each(mem, l, p, |k, v| {
                    keys.push((k, v));
                    Ok(keys.len() < MAX_ITEMS as usize)
                });
                for &(k, _) in &keys {
                    if let Entry::Vacant(e) = at.entry(k) {
                        e.insert(Edge::DictKey);
                    }
                }
                let mut valued: AddrMap<()> = AddrMap::default();
                for (k, v) in keys {
                    if valued.insert(v, ()).is_none() {
                        let e = self.key(k);
                        at.insert(v, e);
                    }
                }
            }
            _ => {
                let (items, n) = if kind == RefKind::List {
                    let n = mem.u64_at(p + l.object.ob_size, "list size").unwrap_or(0);
                    (mem.u64_at(p + l.list.item, "list items").unwrap_or(0), n)
                } else {
                    (p + l.tuple.item, mem.u64_at(p + l.object.ob_size, "tuple size").unwrap_or(0))
                };
                let n = if items == 0 { 0 } else { n.min(MAX_ITEMS) };
                let mut i = 0;
                while i < n {
                    let k = (n - i).min(8192);
                    let Ok(b) = mem.bytes_at(items + 8 * i, (8 * k) as usize, "items") else { break };
                    for (j, c) in b.chunks_exact(8).enumerate() {
                        if let Some(w) = le_u64(c, 0) {
                            at.entry(w).or_insert(Edge::Item(Some(i + j as u64)));
                        }
                    }
                    i += k;
                }
            }
        }
        // A subclass of a container holds its own attributes too (they come first).
        let own = (type_flags & flags::HEAPTYPE != 0).then(|| self.own_names(p, info_addr));
        edges
            .iter()
            .map(|&e| {
                let child = e & !CONSERVATIVE_EDGE;
                let c = self.addr(child);
                if g.is_native(child) {
                    return Edge::Native;
                }
                if let Some(e) = own.as_ref().and_then(|o| o.get(&c)) {
                    return e.clone();
                }
                match at.get(&c) {
                    Some(e) => e.clone(),
                    None if kind == RefKind::Dict => Edge::Unknown,
                    None => Edge::Item(None),
                }
            })
            .collect()
    }

    /// Every edge of an instance (not a container, type or module): [`EdgeNamer::own_names`], else an
    /// item of a variable-size object of references, else unnamed — as `instance_edge` names each.
    fn instance_edges(&mut self, parent: u32) -> Vec<Edge> {
        let g = self.g;
        let p = self.addr(parent);
        let t = g.type_of(parent).map_or(0, |t| t.addr);
        let own = self.own_names(p, t);
        let items =
            matches!(self.infos.get(self.mem, self.l, t), Ok(ri) if ri.kind == RefKind::Object && ri.itemsize == 8);
        g.edges(parent)
            .iter()
            .map(|&e| {
                let child = e & !CONSERVATIVE_EDGE;
                if g.is_native(child) {
                    return Edge::Native;
                }
                match own.get(&self.addr(child)) {
                    Some(e) => e.clone(),
                    None if items => Edge::Item(None),
                    None => Edge::Unknown,
                }
            })
            .collect()
    }

    /// What an object of type `t` at `p` holds in what its own type adds, child address → name (one
    /// edge's name too: `own_edge`), in this order of precedence: its managed `__dict__`, the values of
    /// one not made, the dict at `tp_dictoffset`, then its fields (the first field holding a child
    /// names it).
    pub(super) fn own_names(&mut self, p: u64, t: u64) -> AddrMap<Edge> {
        let (mem, l) = (self.mem, self.l);
        let mut m: AddrMap<Edge> = AddrMap::default();
        let Ok(ri) = self.infos.get(mem, l, t) else { return m };
        // Lowest precedence first: each later kind replaces what an earlier one said.
        let len = ri.basicsize.clamp(16, 1 << 16);
        if let Ok(b) = mem.bytes_at(p, len as usize, "object fields") {
            for (i, c) in b.chunks_exact(8).enumerate().skip(1) {
                let Some(w) = le_u64(c, 0) else { continue };
                if m.contains_key(&w) {
                    continue;
                }
                let off = 8 * i as u64;
                let e = if off == l.object.ob_type {
                    Edge::Field("__class__".into())
                } else if t == self.cell_type && off == 16 {
                    Edge::Attr("cell_contents".into())
                } else {
                    self.field(t, off)
                };
                m.insert(w, e);
            }
        }
        if ri.dictoffset > 0 {
            if let Ok(d) = mem.u64_at(p + ri.dictoffset as u64, "instance dict") {
                m.insert(d, Edge::Dict);
            }
        }
        if ri.flags & flags::MANAGED_DICT == 0 {
            return m;
        }
        let (dict, values) = match l.managed_dict {
            python_bindings::ManagedDict::None => (None, None),
            python_bindings::ManagedDict::Split311 => (
                mem.u64_at(p - 24, "managed dict").ok(),
                mem.u64_at(p - 32, "managed values").ok().filter(|&v| v != 0).map(|v| (v, ri.shared_values)),
            ),
            python_bindings::ManagedDict::Tagged312 => match mem.u64_at(p - 24, "managed dict") {
                Ok(w) if w & 1 == 1 => (None, Some((w + 1, ri.shared_values))),
                Ok(w) => (Some(w), None),
                Err(_) => (None, None),
            },
            python_bindings::ManagedDict::Inline313 { dict, .. } => {
                let values = (ri.flags & flags::INLINE_VALUES != 0).then(|| {
                    let cap = mem.u8_at(p + ri.basicsize, "inline values").unwrap_or(0) as u64;
                    (p + ri.basicsize + 8, cap)
                });
                (mem.u64_at(p - dict, "managed dict").ok(), values)
            }
        };
        if let (Some((v, n)), keys) = (values, ri.cached_keys) {
            if keys != 0 {
                if let Ok(b) = mem.bytes_at(v, (8 * n.min(1 << 16)) as usize, "instance values") {
                    let mut seen: AddrMap<()> = AddrMap::default();
                    for (i, c) in b.chunks_exact(8).enumerate() {
                        let Some(w) = le_u64(c, 0) else { continue };
                        if seen.insert(w, ()).is_some() {
                            continue;
                        }
                        if let Some(e) = self.value_slot(keys, i as u64) {
                            m.insert(w, e);
                        }
                    }
                }
            }
        }
        if let Some(d) = dict {
            m.insert(d, Edge::Dict);
        }
        m
    }
}
