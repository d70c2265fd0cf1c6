//! The object graph of one full walk, for the questions of why an object is alive (`why`, `retained`).
//!
//! While the target is stopped the walk only *records*: every word a decoded object, a scanned native
//! block or a root gave as a possible reference goes into one stream, each source announced by a header
//! word ([`Recorder`]); the objects themselves go to [`Objects`] (a [`super::Sink`]; both in [`super::record`]). After the target is
//! resumed [`Graph::build`] turns that into compact arrays indexed by node number: objects are numbered
//! in address order by their rank in the walk's visited bitmap (no map from addresses), then the native
//! blocks, then the roots; the edges are CSR arrays of `u32` node numbers, bit 31 marking an edge that a
//! conservative scan found. Words that turned out not to be objects (or native blocks scanned) are dropped.

pub use super::record::{
    frame_object_locals, iframe_locals, is_code, Objects, Recorder, Root, RootKind, Source, Tee, BIG, IMMORTAL,
};
use super::visited::{Ranks, Visited};
use crate::cpython::types::TypeInfo;
use crate::error::{Error, Result};
use crate::memory::fasthash::AddrMap;

/// Bit 31 of an edge's target: found by a conservative scan.
pub const CONSERVATIVE_EDGE: u32 = 1 << 31;
/// Most nodes a graph may have (node numbers leave bit 31 to the edge mark).
pub(super) const MAX_NODES: u64 = (1 << 31) - 16;

/// The object graph: nodes `0..objects` are the objects in address order, then `natives` native
/// blocks, then the roots.
pub struct Graph {
    pub objects: u32,
    pub natives: u32,
    /// Per object: its type's number in `type_infos`, `sys.getsizeof` (see [`Graph::size`]), refcount
    /// ([`IMMORTAL`]).
    pub types: Vec<u32>,
    pub(super) sizes: Vec<u32>,
    /// Sizes of 4 GiB and more (`sizes` holds [`BIG`] for them).
    pub(super) big: AddrMap<u64>,
    pub refcounts: Vec<u32>,
    pub type_infos: Vec<TypeInfo>,
    /// Edges of node `i`: `targets[offsets[i]..offsets[i + 1]]`.
    pub offsets: Vec<u32>,
    pub targets: Vec<u32>,
    pub roots: Vec<Root>,
    pub frame_objects: Vec<Root>,
    pub(super) native_addrs: Vec<u64>,
    pub(super) ranks: Ranks,
    /// Conservative edges dropped as stale (see [`Graph::drop_stale`]).
    pub stale: u64,
}

/// What [`Graph::from_parts`] takes.
pub struct GraphParts {
    pub addrs: Vec<u64>,
    pub types: Vec<u32>,
    pub sizes: Vec<u64>,
    pub refcounts: Vec<u32>,
    pub type_infos: Vec<TypeInfo>,
    pub native_addrs: Vec<u64>,
    pub roots: Vec<Root>,
    pub frame_objects: Vec<Root>,
    pub offsets: Vec<u32>,
    pub targets: Vec<u32>,
    pub stale: u64,
}

impl Graph {
    /// `sys.getsizeof` of object `v`.
    #[inline]
    pub fn size(&self, v: u32) -> u64 {
        match self.sizes.get(v as usize) {
            Some(&BIG) => self.big.get(&(v as u64)).copied().unwrap_or(BIG as u64),
            Some(&s) => s as u64,
            None => 0,
        }
    }

    /// Bytes of all objects.
    pub fn total_bytes(&self) -> u64 {
        (0..self.objects).map(|v| self.size(v)).sum()
    }

    pub fn nodes(&self) -> u32 {
        self.objects + self.natives + self.roots.len() as u32
    }

    /// The node of root `i`.
    pub fn root_node(&self, i: usize) -> u32 {
        self.objects + self.natives + i as u32
    }

    /// The root a node is, if it is one.
    pub fn root_of(&self, node: u32) -> Option<&Root> {
        node.checked_sub(self.objects + self.natives).and_then(|i| self.roots.get(i as usize))
    }

    pub fn is_object(&self, node: u32) -> bool {
        node < self.objects
    }

    pub fn is_native(&self, node: u32) -> bool {
        (self.objects..self.objects + self.natives).contains(&node)
    }

    #[inline]
    pub fn edges(&self, node: u32) -> &[u32] {
        &self.targets[self.offsets[node as usize] as usize..self.offsets[node as usize + 1] as usize]
    }

    /// References to `node` the walk found (one pass over every edge).
    pub fn edges_to(&self, node: u32) -> u64 {
        self.targets.iter().filter(|&&t| t & !CONSERVATIVE_EDGE == node).count() as u64
    }

    /// The address of a node: an object's or a native block's (a root's struct for roots).
    pub fn addr(&self, node: u32) -> u64 {
        if node < self.objects {
            self.ranks.select(node as u64).unwrap_or(0)
        } else if let Some(r) = self.root_of(node) {
            r.addr
        } else {
            self.native_addrs.get((node - self.objects) as usize).copied().unwrap_or(0)
        }
    }

    /// The object node at `addr`, if the walk found an object there.
    pub fn node_at(&self, addr: u64) -> Option<u32> {
        self.ranks.rank(addr).map(|r| r as u32)
    }

    pub fn type_of(&self, node: u32) -> Option<&TypeInfo> {
        self.types.get(node as usize).and_then(|&t| self.type_infos.get(t as usize))
    }

    /// Bytes of the arrays.
    pub fn bytes(&self) -> u64 {
        (self.types.len() * 4
            + self.sizes.len() * 4
            + self.refcounts.len() * 4
            + self.offsets.len() * 4
            + self.targets.len() * 4
            + self.native_addrs.len() * 8) as u64
            + self.ranks.bytes()
    }

    /// Every object's address, by node (one pass; [`Graph::addr`] finds one).
    pub fn addresses(&self) -> Vec<u64> {
        self.ranks.addresses()
    }

    /// The native blocks' addresses, by node (node `objects + i` is block `i`).
    pub fn native_addrs(&self) -> &[u64] {
        &self.native_addrs
    }

    /// A graph read back from its parts (a dump file): `addrs` in increasing order, per object its
    /// type number, size and refcount; the edges in CSR form over every node.
    pub fn from_parts(p: GraphParts) -> Result<Graph> {
        let n = p.addrs.len();
        let bad = |what: &str| Err(Error::Other(format!("the graph's {what} do not fit together")));
        if p.types.len() != n || p.sizes.len() != n || p.refcounts.len() != n {
            return bad("per-object arrays");
        }
        if p.addrs.windows(2).any(|w| w[0] >= w[1]) {
            return bad("addresses (not increasing)");
        }
        let nodes = n as u64 + p.native_addrs.len() as u64 + p.roots.len() as u64;
        if nodes > MAX_NODES
            || p.offsets.len() as u64 != nodes + 1
            || p.offsets.first() != Some(&0)
            || p.offsets.windows(2).any(|w| w[0] > w[1])
            || *p.offsets.last().unwrap_or(&0) as usize != p.targets.len()
        {
            return bad("edge offsets");
        }
        if p.targets.iter().any(|&t| (t & !CONSERVATIVE_EDGE) as u64 >= nodes)
            || p.types.iter().any(|&t| t as usize >= p.type_infos.len())
        {
            return bad("edges or types");
        }
        let mut visited = Visited::new();
        for &a in &p.addrs {
            visited.insert(a);
        }
        let ranks = visited.ranks();
        let mut big = AddrMap::default();
        let sizes = p
            .sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| match u32::try_from(s) {
                Ok(s) if s != BIG => s,
                _ => {
                    big.insert(i as u64, s);
                    BIG
                }
            })
            .collect();
        Ok(Graph {
            objects: n as u32,
            natives: p.native_addrs.len() as u32,
            types: p.types,
            sizes,
            big,
            refcounts: p.refcounts,
            type_infos: p.type_infos,
            offsets: p.offsets,
            targets: p.targets,
            roots: p.roots,
            frame_objects: p.frame_objects,
            native_addrs: p.native_addrs,
            ranks,
            stale: p.stale,
        })
    }

    /// Drops the conservative edges that cannot be counted references: into an object whose refcount
    /// the exact references to it already account for, a conservative word pointing to it holds no
    /// reference (a free list's stale entry, a borrowed pointer). Returns how many were dropped.
    pub(super) fn drop_stale(&mut self) -> u64 {
        let n = self.nodes() as usize;
        let mut exact = vec![0u32; n];
        for &t in &self.targets {
            if t & CONSERVATIVE_EDGE == 0 {
                exact[t as usize] = exact[t as usize].saturating_add(1);
            }
        }
        let stale = |t: u32| {
            let v = (t & !CONSERVATIVE_EDGE) as usize;
            t & CONSERVATIVE_EDGE != 0
                && v < self.objects as usize
                && self.refcounts[v] != IMMORTAL
                && self.refcounts[v] <= exact[v]
        };
        let mut kept = 0usize;
        let mut dropped = 0u64;
        let mut start = 0usize;
        for i in 0..n {
            let end = self.offsets[i + 1] as usize;
            self.offsets[i] = kept as u32;
            for j in start..end {
                let t = self.targets[j];
                if stale(t) {
                    dropped += 1;
                } else {
                    self.targets[kept] = t;
                    kept += 1;
                }
            }
            start = end;
        }
        self.offsets[n] = kept as u32;
        self.targets.truncate(kept);
        self.targets.shrink_to_fit();
        dropped
    }
}

#[cfg(test)]
impl Graph {
    /// A graph for tests: objects with these sizes, refcounts and type numbers (at 0x1000, 0x1040, …),
    /// no native block, and one thread root as the last node; `edges` per node, the root's last.
    pub fn of_edges(
        edges: &[&[u32]],
        sizes: &[u64],
        refcounts: &[u32],
        types: &[u32],
        type_infos: Vec<TypeInfo>,
    ) -> Graph {
        let mut offsets = vec![0];
        let mut targets = Vec::new();
        for e in edges {
            targets.extend_from_slice(e);
            offsets.push(targets.len() as u32);
        }
        Graph::from_parts(GraphParts {
            addrs: (0..sizes.len() as u64).map(|i| 0x1000 + 0x40 * i).collect(),
            types: types.to_vec(),
            sizes: sizes.to_vec(),
            refcounts: refcounts.to_vec(),
            type_infos,
            native_addrs: vec![],
            roots: vec![Root { kind: RootKind::Thread { thread_id: 7 }, addr: 0x8000, locals: vec![] }],
            frame_objects: vec![],
            offsets,
            targets,
            stale: 0,
        })
        .expect("a consistent graph")
    }
}
