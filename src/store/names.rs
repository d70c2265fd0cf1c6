//! What a dump keeps of the names the graph does not hold: one label per edge (an index into a table
//! of strings, or an item's index), and each object's short value. [`StoredNames::namer`] answers
//! [`Namer`] from them exactly as the live namer answers: list indices and the keys of big dicts fold to
//! `[*]` unless `detail` asks for one path's every name.

use std::collections::HashMap;

use super::codec::{put_bytes, put_varint, unzigzag, zigzag, Reader};
use crate::cpython::values::{Value, ValueKind};
use crate::error::{Error, Result};
use crate::memory::fasthash::AddrMap;
use crate::walk::graph::{Graph, CONSERVATIVE_EDGE};
use crate::walk::names::{Edge, Namer, NAMED_KEYS};

/// Label kinds, in the low 3 bits of a label; the rest is a payload.
const SPECIAL: u32 = 0;
const INDEX: u32 = 1;
const KEY_NAME: u32 = 2;
const KEY: u32 = 3;
const ATTR: u32 = 4;
const LOCAL: u32 = 5;
const FIELD: u32 = 6;
/// Payloads of [`SPECIAL`].
const UNKNOWN: u32 = 0;
const ITEM: u32 = 1;
const DICT: u32 = 2;
const DICT_KEY: u32 = 3;
const NATIVE: u32 = 4;
/// Most indices a label holds (larger ones read as `[*]`).
const MAX_INDEX: u64 = (u32::MAX >> 3) as u64;

/// Value tags.
const V_NONE: u8 = 0;
const V_STR: u8 = 1;
const V_BYTES: u8 = 2;
const V_INT: u8 = 3;
const V_FLOAT: u8 = 4;
const V_LEN: u8 = 5;

/// Labels and values as a dump holds them.
#[derive(Default)]
pub struct StoredNames {
    /// Per edge (aligned with `Graph::targets`).
    pub labels: Vec<u32>,
    pub strings: Vec<String>,
    /// Per object: where its value (its tag first) starts in `value_bytes`.
    pub value_at: Vec<u32>,
    pub value_bytes: Vec<u8>,
}

/// Builds [`StoredNames`] while a dump is written.
#[derive(Default)]
pub struct Labeller {
    ids: HashMap<String, u32>,
    pub names: StoredNames,
    /// `--no-values`: keys that are not identifiers are not kept.
    pub redact: bool,
}

impl Labeller {
    fn string(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.strings.len() as u32;
        self.names.strings.push(s.to_string());
        self.ids.insert(s.to_string(), i);
        i
    }

    fn with(&mut self, kind: u32, s: &str) -> u32 {
        (self.string(s) << 3) | kind
    }

    pub fn label(&mut self, e: &Edge) -> u32 {
        match e {
            Edge::Unknown => UNKNOWN << 3,
            Edge::Item(None) => ITEM << 3,
            Edge::Item(Some(i)) if *i <= MAX_INDEX => ((*i as u32) << 3) | INDEX,
            Edge::Item(Some(_)) => ITEM << 3,
            Edge::Dict => DICT << 3,
            Edge::DictKey => DICT_KEY << 3,
            Edge::Native => NATIVE << 3,
            Edge::Key { name: Some(n), .. } => self.with(KEY_NAME, n),
            Edge::Key { repr, name: None } if self.redact && repr.starts_with('\'') => self.with(KEY, "key of str"),
            Edge::Key { repr, name: None } => self.with(KEY, repr),
            Edge::Attr(a) => self.with(ATTR, a),
            Edge::Local(a) => self.with(LOCAL, a),
            Edge::Field(a) => self.with(FIELD, a),
        }
    }

    pub fn value(&mut self, v: Option<&Value>) {
        let b = &mut self.names.value_bytes;
        self.names.value_at.push(b.len() as u32);
        let Some(v) = v else {
            b.push(V_NONE);
            return;
        };
        match v {
            Value::Str { text, len } => {
                b.push(V_STR);
                put_varint(b, *len);
                put_bytes(b, text.as_bytes());
            }
            Value::Bytes { data, len } => {
                b.push(V_BYTES);
                put_varint(b, *len);
                put_bytes(b, data);
            }
            Value::Int { value } => {
                b.push(V_INT);
                put_varint(b, zigzag(*value));
            }
            Value::Float { value } => {
                b.push(V_FLOAT);
                b.extend_from_slice(&value.to_bits().to_le_bytes());
            }
            Value::Len { len } => {
                b.push(V_LEN);
                put_varint(b, *len);
            }
        }
    }
}

/// `label` with its string (if it names one) renumbered by `remap` (local string number → merged).
pub fn remap(label: u32, remap: &[u32]) -> u32 {
    match label & 7 {
        KEY_NAME | KEY | ATTR | LOCAL | FIELD => {
            (remap.get((label >> 3) as usize).copied().unwrap_or(0) << 3) | (label & 7)
        }
        _ => label,
    }
}

/// Edge `e` as its label says (`detail`: indices and every key kept).
fn edge_of(strings: &[String], label: u32) -> Edge {
    let p = label >> 3;
    let s = |p: u32| strings.get(p as usize).cloned().unwrap_or_else(|| "?".into());
    match label & 7 {
        SPECIAL => match p {
            ITEM => Edge::Item(None),
            DICT => Edge::Dict,
            DICT_KEY => Edge::DictKey,
            NATIVE => Edge::Native,
            _ => Edge::Unknown,
        },
        INDEX => Edge::Item(Some(p as u64)),
        KEY_NAME => {
            let n = s(p);
            Edge::Key { repr: format!("'{n}'"), name: Some(n) }
        }
        KEY => Edge::Key { repr: s(p), name: None },
        ATTR => Edge::Attr(s(p)),
        LOCAL => Edge::Local(s(p)),
        FIELD => Edge::Field(s(p)),
        _ => Edge::Unknown,
    }
}

impl StoredNames {
    /// The value stored for object `v`.
    pub fn value(&self, v: u32) -> Option<Value> {
        let at = *self.value_at.get(v as usize)?;
        let mut r = Reader::new(self.value_bytes.get(at as usize..)?, "values");
        let v = match r.u8("value tag").ok()? {
            V_STR => {
                let len = r.varint("length").ok()?;
                Value::Str { text: r.string("text").ok()?, len }
            }
            V_BYTES => {
                let len = r.varint("length").ok()?;
                Value::Bytes { data: r.bytes("data").ok()?.to_vec(), len }
            }
            V_INT => Value::Int { value: unzigzag(r.varint("int").ok()?) },
            V_FLOAT => {
                let b = r.take(8, "float").ok()?;
                Value::Float { value: f64::from_bits(u64::from_le_bytes(b.try_into().ok()?)) }
            }
            V_LEN => Value::Len { len: r.varint("length").ok()? },
            _ => return None,
        };
        Some(v)
    }

    /// Checks the stored names fit the graph they were read with.
    pub fn check(&self, g: &Graph) -> Result<()> {
        if self.labels.len() != g.targets.len() {
            return Err(Error::BadDump(format!("{} edge labels for {} edges", self.labels.len(), g.targets.len())));
        }
        if self.value_at.len() != g.objects as usize {
            return Err(Error::BadDump(format!("{} values for {} objects", self.value_at.len(), g.objects)));
        }
        if self.value_at.iter().any(|&a| a as usize >= self.value_bytes.len()) {
            return Err(Error::BadDump("a value beyond the values section".into()));
        }
        Ok(())
    }

    /// Every edge of `node` with its label.
    pub fn labelled<'a>(&'a self, g: &'a Graph, node: u32) -> impl Iterator<Item = (u32, bool, Edge)> + 'a {
        let start = g.offsets[node as usize] as usize;
        g.edges(node).iter().enumerate().map(move |(j, &t)| {
            let label = self.labels.get(start + j).copied().unwrap_or(0);
            (t & !CONSERVATIVE_EDGE, t & CONSERVATIVE_EDGE != 0, edge_of(&self.strings, label))
        })
    }

    pub fn namer<'a>(&'a self, g: &'a Graph, detail: bool) -> StoredNamer<'a> {
        StoredNamer { names: self, g, detail, big: AddrMap::default() }
    }
}

/// [`Namer`] over a dump's [`StoredNames`].
pub struct StoredNamer<'a> {
    names: &'a StoredNames,
    g: &'a Graph,
    detail: bool,
    /// Per node of many edges: child → label.
    big: AddrMap<AddrMap<u32>>,
}

/// Edges searched one by one; a node with more gets a map.
const SCAN: usize = 64;

impl StoredNamer<'_> {
    fn label(&mut self, parent: u32, child: u32) -> Option<u32> {
        let (g, names) = (self.g, self.names);
        let edges = g.edges(parent);
        let start = g.offsets[parent as usize] as usize;
        if edges.len() <= SCAN {
            let j = edges.iter().position(|&t| t & !CONSERVATIVE_EDGE == child)?;
            return names.labels.get(start + j).copied();
        }
        let map = self.big.entry(parent as u64).or_insert_with(|| {
            let mut m = AddrMap::default();
            m.reserve(edges.len());
            for (j, &t) in edges.iter().enumerate() {
                m.entry((t & !CONSERVATIVE_EDGE) as u64).or_insert(names.labels.get(start + j).copied().unwrap_or(0));
            }
            m
        });
        map.get(&(child as u64)).copied()
    }
}

impl Namer for StoredNamer<'_> {
    fn edges_of(&mut self, parent: u32, targets: &[u32]) -> Vec<Edge> {
        if self.detail && targets == self.g.edges(parent) {
            return self.names.labelled(self.g, parent).map(|(_, _, e)| e).collect();
        }
        targets.iter().map(|&t| self.edge(parent, t & !CONSERVATIVE_EDGE)).collect()
    }

    fn uniform(&mut self, parent: u32) -> Option<Edge> {
        self.plain_container(parent).then_some(Edge::Item(None))
    }

    fn edge(&mut self, parent: u32, child: u32) -> Edge {
        // Without detail, every edge of a plain list or tuple reads `[*]`: no need to find it.
        if !self.g.is_native(child) && self.plain_container(parent) {
            return Edge::Item(None);
        }
        let Some(label) = self.label(parent, child) else { return Edge::Unknown };
        let e = edge_of(&self.names.strings, label);
        if self.detail {
            return e;
        }
        // As the live namer reads without detail: no indices, and a big dict's keys fold.
        match e {
            Edge::Item(Some(_)) => Edge::Item(None),
            Edge::Key { .. } | Edge::DictKey | Edge::Unknown if self.big_dict(parent) => Edge::Item(None),
            e => e,
        }
    }

    fn value(&mut self, node: u32) -> Option<Value> {
        self.names.value(node)
    }
}

impl StoredNamer<'_> {
    /// Without detail: whether `node` is a plain list or tuple (every edge of it to an object reads `[*]`).
    fn plain_container(&self, node: u32) -> bool {
        !self.detail
            && self.g.is_object(node)
            && self.g.type_of(node).is_some_and(|t| {
                t.flags & python_bindings::flags::HEAPTYPE == 0 && ValueKind::of(t.flags, &t.name) == ValueKind::Size
            })
    }

    fn big_dict(&self, node: u32) -> bool {
        let Some(t) = self.g.type_of(node) else { return false };
        ValueKind::of(t.flags, &t.name) == ValueKind::DictLen
            && matches!(self.names.value(node), Some(Value::Len { len }) if len > NAMED_KEYS)
    }
}
