//! Paths that hold objects, aggregated: each object's shortest path ([`super::paths`]) from the nearest
//! *anchor* above it — a module's globals, a type, a thread's frame, the runtime, or where no root
//! reaches: outside the heap, immortal, unreachable — as a list of steps (edge name, type reached).
//! Objects whose paths have the same anchor and the same steps (list indices folded to `[*]`) make one
//! row. Edge names come from a [`Namer`] (which reads the target); this module only folds.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::dominators::Dominators;
use super::paths::{Paths, GARBAGE, OUTSIDE, STATIC};
use crate::memory::fasthash::FastMap;
use crate::walk::graph::Graph;
pub use crate::walk::names::{Anchor, Edge, Namer};

/// How the keys of a node's edges read: `['k']` for a plain dict, `.k` for an instance's `__dict__`,
/// `k` for the globals of an anchor (a module's, a type's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Normal,
    Attributes,
    Globals,
}

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Step {
    pub edge: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// The edge was found by a conservative scan (it may overstate what holds the object).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub conservative: bool,
}

/// Sorts `rows` by `key` (largest first), then shortest path first, then by root and steps: a total
/// order, the same whatever order the rows were found in (one walking thread or many).
pub fn sort_rows(rows: &mut [PathRow], key: impl Fn(&PathRow) -> (u64, u64, u64)) {
    rows.sort_by_cached_key(|r| {
        let (a, b, c) = key(r);
        (std::cmp::Reverse((a, b, c)), r.steps.len(), format!("{:?} {:?}", r.root, r.steps))
    });
}

/// Objects held the same way.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PathRow {
    pub count: u64,
    pub bytes: u64,
    /// Bytes these objects retain (not counting objects retained through another one of the same type).
    pub retained: u64,
    pub root: Anchor,
    pub steps: Vec<Step>,
}

/// The anchor of a path that starts at a source of this class (a [`Paths`] mark).
fn class_anchor(mark: u32) -> Option<Anchor> {
    Some(match mark {
        OUTSIDE => Anchor::new("outside", "held outside the heap (C code or native memory)"),
        STATIC => Anchor::new("runtime", "immortal objects"),
        GARBAGE => Anchor::new("unreachable", "unreachable (garbage awaiting collection)"),
        _ => return None,
    })
}

/// Maps keyed by node number.
type NodeMap<V> = FastMap<u32, V>;

const NO_SIG: u32 = u32::MAX;
/// Type numbers of steps that reach no object.
pub const NATIVE_TYPE: u32 = u32::MAX;
pub const ROOT_TYPE: u32 = u32::MAX - 1;

struct Sig {
    parent: u32,
    label: u32,
    ty: u32,
    conservative: bool,
    anchor: u32,
}

/// Folds paths into rows (see the module doc).
pub struct Aggregator<'a, N: Namer> {
    g: &'a Graph,
    paths: &'a Paths,
    /// The anchors, by node (the address hasher: looked up for every node of every path).
    anchors: NodeMap<&'a Anchor>,
    namer: N,
    sigs: Vec<Sig>,
    interned: FastMap<(u32, u32, u32, bool), u32>,
    labels: Vec<String>,
    label_ids: HashMap<String, u32>,
    roots: Vec<Anchor>,
    root_sigs: HashMap<Anchor, u32>,
    memo: NodeMap<(u32, Mode)>,
    /// Per holder: the label every edge from it to an object gets, when it is one ([`Namer::uniform`]).
    uniform: NodeMap<Option<u32>>,
    /// Nodes that are the `__dict__` of their holder (one step with it).
    collapsed: std::collections::HashSet<u32>,
}

impl<'a, N: Namer> Aggregator<'a, N> {
    pub fn new(g: &'a Graph, paths: &'a Paths, anchors: &'a HashMap<u32, Anchor>, namer: N) -> Self {
        Aggregator {
            g,
            paths,
            anchors: anchors.iter().map(|(&v, a)| (v, a)).collect(),
            namer,
            sigs: Vec::new(),
            interned: Default::default(),
            labels: Vec::new(),
            label_ids: HashMap::new(),
            roots: Vec::new(),
            root_sigs: HashMap::new(),
            memo: NodeMap::default(),
            uniform: NodeMap::default(),
            collapsed: Default::default(),
        }
    }

    fn label(&mut self, s: String) -> u32 {
        if let Some(&i) = self.label_ids.get(&s) {
            return i;
        }
        self.labels.push(s.clone());
        let i = self.labels.len() as u32 - 1;
        self.label_ids.insert(s, i);
        i
    }

    fn root_sig(&mut self, a: &Anchor) -> u32 {
        if let Some(&s) = self.root_sigs.get(a) {
            return s;
        }
        self.roots.push(a.clone());
        let anchor = self.roots.len() as u32 - 1;
        self.sigs.push(Sig { parent: NO_SIG, label: 0, ty: ROOT_TYPE, conservative: false, anchor });
        let s = self.sigs.len() as u32 - 1;
        self.root_sigs.insert(a.clone(), s);
        s
    }

    fn step(&mut self, parent: u32, label: String, ty: u32, conservative: bool) -> u32 {
        let label = self.label(label);
        self.step_labelled(parent, label, ty, conservative)
    }

    fn step_labelled(&mut self, parent: u32, label: u32, ty: u32, conservative: bool) -> u32 {
        let key = (parent, label, ty, conservative);
        if let Some(&s) = self.interned.get(&key) {
            return s;
        }
        let anchor = self.sigs[parent as usize].anchor;
        self.sigs.push(Sig { parent, label, ty, conservative, anchor });
        let s = self.sigs.len() as u32 - 1;
        self.interned.insert(key, s);
        s
    }

    fn ty(&self, v: u32) -> u32 {
        if self.g.is_object(v) {
            self.g.types[v as usize]
        } else if self.g.is_native(v) {
            NATIVE_TYPE
        } else {
            ROOT_TYPE
        }
    }

    /// The path signature of `v`.
    fn sig(&mut self, v: u32) -> u32 {
        let mut chain = Vec::new();
        let mut x = v;
        let mut base;
        loop {
            if let Some(&s) = self.memo.get(&x) {
                base = s;
                break;
            }
            if let Some(&a) = self.anchors.get(&x) {
                base = (self.root_sig(a), Mode::Globals);
                self.memo.insert(x, base);
                break;
            }
            match self.paths.parent_of(x) {
                Some((p, _)) if chain.len() < self.paths.parent.len() => {
                    chain.push(x);
                    x = p;
                }
                _ => {
                    // A source with no anchor of its own: its class, then the object itself.
                    let mark = self.paths.parent[x as usize];
                    let a = class_anchor(mark).unwrap_or_else(|| Anchor::new("runtime", "runtime"));
                    let r = self.root_sig(&a);
                    let ty = self.ty(x);
                    base = (self.step(r, String::new(), ty, false), Mode::Normal);
                    self.memo.insert(x, base);
                    break;
                }
            }
        }
        let mut parent = x;
        while let Some(c) = chain.pop() {
            let (ps, pmode) = base;
            let conservative = self.paths.parent_of(c).is_some_and(|(_, k)| k);
            // A holder whose edges all read the same (a list's items) is named once.
            base = match self.uniform_label(parent, c, pmode) {
                Some(label) => {
                    let ty = self.ty(c);
                    (self.step_labelled(ps, label, ty, conservative), Mode::Normal)
                }
                None => match self.namer.edge(parent, c) {
                    Edge::Dict => {
                        self.collapsed.insert(c);
                        (ps, if pmode == Mode::Globals { Mode::Globals } else { Mode::Attributes })
                    }
                    e => {
                        let ty = self.ty(c);
                        (self.step(ps, render(&e, pmode), ty, conservative), Mode::Normal)
                    }
                },
            };
            // The node asked about is remembered only once it is met on another's path (most are
            // asked about once: a million instances need no million entries).
            if c != v {
                self.memo.insert(c, base);
            }
            parent = c;
        }
        base.0
    }

    /// The label of the edge from `parent` to object `c` when all of `parent`'s edges to objects read
    /// the same (asked once per holder).
    fn uniform_label(&mut self, parent: u32, c: u32, mode: Mode) -> Option<u32> {
        if !self.g.is_object(c) {
            return None;
        }
        if let Some(&l) = self.uniform.get(&parent) {
            return l;
        }
        let l = self.namer.uniform(parent).map(|e| render(&e, mode)).map(|s| self.label(s));
        self.uniform.insert(parent, l);
        l
    }

    /// The signature of `v` as the object a path ends at: a `__dict__` gets a step of its own.
    fn target_sig(&mut self, v: u32) -> u32 {
        let s = self.sig(v);
        if self.collapsed.contains(&v) {
            let ty = self.ty(v);
            return self.step(s, ".__dict__".into(), ty, false);
        }
        s
    }

    /// Rows for `nodes`, largest first (by retained bytes, then bytes). `under`: per node, whether a
    /// dominator of it is of the same kind (its retained bytes are counted through that one).
    pub fn rows(&mut self, nodes: &[u32], dom: Option<&Dominators>, under: Option<&[bool]>) -> Vec<PathRow> {
        let sigs = self.signatures(nodes);
        self.rows_of(nodes, &sigs, dom, under)
    }

    /// The path signature of each of `nodes` (what [`Aggregator::rows_of`] folds; no dominator needed).
    pub fn signatures(&mut self, nodes: &[u32]) -> Vec<u32> {
        nodes.iter().map(|&v| self.target_sig(v)).collect()
    }

    /// [`Aggregator::rows`], the signatures of `nodes` given (`sigs[i]` is that of `nodes[i]`).
    pub fn rows_of(
        &mut self,
        nodes: &[u32],
        sigs: &[u32],
        dom: Option<&Dominators>,
        under: Option<&[bool]>,
    ) -> Vec<PathRow> {
        let mut acc: HashMap<u32, (u64, u64, u64)> = HashMap::new();
        for (&v, &s) in nodes.iter().zip(sigs) {
            let e = acc.entry(s).or_default();
            e.0 += 1;
            e.1 += self.g.size(v);
            if let Some(d) = dom {
                if !under.is_some_and(|u| u[v as usize]) {
                    e.2 += d.retained[v as usize];
                }
            }
        }
        let mut rows: Vec<PathRow> = acc
            .into_iter()
            .map(|(s, (count, bytes, retained))| {
                let (root, steps) = self.unroll(s);
                PathRow { count, bytes, retained, root, steps }
            })
            .collect();
        sort_rows(&mut rows, |r| (r.retained, r.bytes, r.count));
        rows
    }

    /// The path of one node, with indices and keys as they are (`detail` of the namer).
    pub fn path(&mut self, v: u32) -> (Anchor, Vec<Step>) {
        let s = self.target_sig(v);
        self.unroll(s)
    }

    fn unroll(&self, mut s: u32) -> (Anchor, Vec<Step>) {
        let mut steps = Vec::new();
        while s != NO_SIG {
            let sig = &self.sigs[s as usize];
            if sig.parent == NO_SIG {
                break;
            }
            let type_name = match sig.ty {
                NATIVE_TYPE => "native block".to_string(),
                ROOT_TYPE => "root".to_string(),
                t => self.g.type_infos.get(t as usize).map_or_else(|| "?".into(), |i| i.name.clone()),
            };
            steps.push(Step {
                edge: self.labels[sig.label as usize].clone(),
                type_name,
                conservative: sig.conservative,
            });
            s = sig.parent;
        }
        steps.reverse();
        let anchor = self.sigs.get(s as usize).map(|sig| sig.anchor).unwrap_or(0);
        (self.roots.get(anchor as usize).cloned().unwrap_or_else(|| Anchor::new("runtime", "runtime")), steps)
    }
}

fn render(e: &Edge, mode: Mode) -> String {
    match (e, mode) {
        (Edge::Key { name: Some(n), .. }, Mode::Globals) => n.clone(),
        (Edge::Key { name: Some(n), .. }, Mode::Attributes) => format!(".{n}"),
        (Edge::Key { repr, .. }, _) => format!("[{repr}]"),
        (Edge::DictKey, _) => "[key]".into(),
        (Edge::Attr(n), Mode::Globals) => n.clone(),
        (Edge::Attr(n), _) => format!(".{n}"),
        (Edge::Item(None), _) => "[*]".into(),
        (Edge::Item(Some(i)), _) => format!("[{i}]"),
        (Edge::Dict, _) => ".__dict__".into(),
        (Edge::Local(n), _) => n.clone(),
        (Edge::Field(n), _) => format!(".{n}"),
        (Edge::Native, _) => "[native]".into(),
        (Edge::Unknown, _) => "[?]".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_read_by_mode() {
        let k = Edge::Key { repr: "'cache'".into(), name: Some("cache".into()) };
        assert_eq!(render(&k, Mode::Normal), "['cache']");
        assert_eq!(render(&k, Mode::Attributes), ".cache");
        assert_eq!(render(&k, Mode::Globals), "cache");
        let i = Edge::Key { repr: "42".into(), name: None };
        assert_eq!(render(&i, Mode::Attributes), "[42]");
        assert_eq!(render(&Edge::Item(None), Mode::Normal), "[*]");
        assert_eq!(render(&Edge::Item(Some(3)), Mode::Normal), "[3]");
    }
}

/// A path as the JSON reports carry it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeldPath {
    pub root: Anchor,
    pub steps: Vec<Step>,
}

/// `memspy why --type T`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WhyReport {
    pub pid: i32,
    /// The dump file the graph was read from (absent for a live target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(rename = "type")]
    pub type_name: String,
    pub count: u64,
    pub bytes: u64,
    pub retained: u64,
    pub paths: Vec<PathRow>,
    /// The walk was cut short: paths may be missing.
    pub partial: bool,
    /// What the analysis cost.
    pub analysis: Figures,
}

/// One holder of an object (`memspy why --address`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Referrer {
    pub address: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub edge: String,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub conservative: bool,
}

/// `memspy why --address A`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectReport {
    pub pid: i32,
    pub address: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub size: u64,
    pub refcount: Option<u64>,
    /// References to it the walk found (from objects, native blocks and roots).
    pub references_found: u64,
    pub retained: u64,
    pub retained_objects: u64,
    /// Its immediate dominator (what must go for it to go), if an object.
    pub dominator: Option<Referrer>,
    pub path: HeldPath,
    pub referrers: Vec<Referrer>,
    /// What the analysis cost, and whether the walk was cut short or read a moving heap.
    #[serde(default)]
    pub analysis: Figures,
}

/// One type whose refcounts the heap does not explain (`memspy why --unexplained`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unexplained {
    #[serde(rename = "type")]
    pub type_name: String,
    /// Instances with more references than the walk found.
    pub objects: u64,
    /// References held from somewhere memspy cannot see (C code, native memory), summed.
    pub missing_references: u64,
    /// Of those instances, held by nothing memspy saw.
    pub only_outside: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnexplainedReport {
    pub pid: i32,
    pub types: Vec<Unexplained>,
    /// What the analysis cost, and whether the walk was cut short or read a moving heap.
    #[serde(default)]
    pub analysis: Figures,
}

/// Per type, for `memspy retained`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RetainedType {
    #[serde(rename = "type")]
    pub type_name: String,
    pub count: u64,
    pub bytes: u64,
    pub retained: u64,
}

/// One object that retains much.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dominator {
    pub address: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub retained: u64,
    pub objects: u64,
    pub path: HeldPath,
}

/// `memspy retained`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RetainedReport {
    pub pid: i32,
    /// The dump file the graph was read from (absent for a live target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub total_bytes: u64,
    pub by_type: Vec<RetainedType>,
    pub dominators: Vec<Dominator>,
    pub partial: bool,
    pub analysis: Figures,
}

/// How an edge reads on its own (a referrer's edge: keys as `['k']`).
pub fn render_plain(e: &Edge) -> String {
    render(e, Mode::Normal)
}

/// What the analysis cost (for `-v` and the JSON's `analysis` block).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Figures {
    pub pause_ms: f64,
    pub walk_ms: f64,
    pub graph_ms: f64,
    pub paths_ms: f64,
    pub dominators_ms: f64,
    pub objects: u64,
    pub edges: u64,
    pub graph_bytes: u64,
    /// The walk was cut short (`--max-pause`): objects and paths are missing.
    pub partial: bool,
    /// Frames whose current line could not be decoded: their roots give `def_line`, no `line`.
    #[serde(default)]
    pub frames_without_line: u64,
    /// Read without pausing the target (`--nonblocking`): paths and sizes are of a moving heap.
    #[serde(default)]
    pub approximate: bool,
    /// Of such a walk's sample of objects, how many had changed once it was over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_under_walk: Option<crate::walk::recheck::Changed>,
}

/// How many frame anchors have no current line (see [`Figures::frames_without_line`]).
pub fn frames_without_line<'a>(anchors: impl IntoIterator<Item = &'a Anchor>) -> u64 {
    anchors.into_iter().filter(|a| a.kind == "frame" && a.def_line.is_some() && a.line.is_none()).count() as u64
}
