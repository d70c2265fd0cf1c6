//! What a recording walk keeps while the target is stopped (see [`super::graph`]): every word a decoded
//! object, a scanned native block or a root gave as a possible reference, in one stream behind header
//! words naming each source ([`Recorder`]), the roots with their frames' locals, and the objects
//! themselves ([`Objects`], a [`super::Sink`]). [`super::graph::Graph::build`] turns them into the graph.

use python_bindings::Layout;

use super::refs;
use super::{ObjectRecord, Sink, TypeTotals};
use crate::cpython::types::TypeInfo;
use crate::memory::fasthash::AddrMap;
use crate::memory::{fault_in_room, Memory, ReadExt};
use serde::{Deserialize, Serialize};

/// Bit 0 of a recorded word: a header (the source of the words after it), not an edge.
pub(super) const HEADER: u64 = 1;
/// With [`HEADER`]: the source is a native block at the address.
pub(super) const NATIVE: u64 = 2;
/// With [`HEADER`]: the source is root number `word >> 3`.
pub(super) const ROOT: u64 = 4;
/// Most locals recorded per frame.
const MAX_LOCALS: u64 = 1 << 16;

/// Where the words being recorded come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    None,
    Object(u64),
    Native(u64),
    Root(u32),
}

/// What a root of the walk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootKind {
    /// `_PyRuntime`.
    Runtime,
    /// A `PyInterpreterState`.
    Interpreter,
    /// A `PyThreadState` (its `thread_id`: `threading.get_ident()`).
    Thread { thread_id: u64 },
    /// A frame running on a thread (3.11+: a `_PyInterpreterFrame`; 3.9/3.10: a frame object, which is
    /// an object node of its own, labelled by this root), `depth` frames below the innermost; where it
    /// was in its code when the target was stopped (`cpython::lines::frame_position`: `instr`, and
    /// `tlbc` on free-threaded 3.14t+).
    Frame {
        thread_id: u64,
        code: u64,
        depth: u32,
        #[serde(default)]
        instr: Option<u64>,
        #[serde(default)]
        tlbc: Option<u32>,
    },
}

/// A root, and for frames the locals it holds (slot number in `localsplus`, the object there).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Root {
    pub kind: RootKind,
    pub addr: u64,
    pub locals: Vec<(u32, u64)>,
}

/// Records the graph during a walk (see the module doc).
#[derive(Default)]
pub struct Recorder {
    current: Option<Source>,
    /// A word not to record once (an instance's static type: it holds no reference to it).
    skip: u64,
    last: Option<Source>,
    pub(super) words: Vec<u64>,
    /// What the other workers of a parallel walk recorded (each a stream of its own, headers first),
    /// read with `words` by [`super::graph::Graph::build`] once the target runs again ([`Self::into_streams`]).
    pub(super) parts: Vec<Vec<u64>>,
    pub roots: Vec<Root>,
    /// 3.9/3.10: the frame objects on the threads' stacks (labels of object nodes, not sources).
    pub frame_objects: Vec<Root>,
}

impl Recorder {
    /// Words of about this many edges are expected (reserved now, before the target is stopped).
    pub fn with_capacity(words: usize) -> Self {
        let mut words = Vec::with_capacity(words);
        fault_in_room(&mut words, usize::MAX);
        Recorder { words, ..Recorder::default() }
    }

    /// An empty recorder with the buffers of `old` (a walk started over).
    pub fn reuse(old: Recorder) -> Self {
        let mut words = old.words;
        words.clear();
        Recorder { words, ..Recorder::default() }
    }

    /// The source of the words recorded next; returns the previous one.
    pub fn set(&mut self, s: Source) -> Source {
        self.skip = 0;
        self.current.replace(s).unwrap_or(Source::None)
    }

    /// The current source's next word equal to `w` is not an edge (an instance of a static type
    /// holds no reference to its type: only heap types are counted by their instances).
    pub fn skip(&mut self, w: u64) {
        self.skip = w;
    }

    /// Adds a root and makes it the current source.
    pub fn root(&mut self, kind: RootKind, addr: u64, locals: Vec<(u32, u64)>) {
        self.roots.push(Root { kind, addr, locals });
        self.set(Source::Root(self.roots.len() as u32 - 1));
    }

    /// Starts the words of the current source, if they have not started yet.
    #[inline]
    pub fn begin(&mut self) {
        if self.current == self.last {
            return;
        }
        self.last = self.current;
        let h = match self.current {
            Some(Source::Object(a)) => a | HEADER,
            Some(Source::Native(a)) => a | HEADER | NATIVE,
            Some(Source::Root(i)) => ((i as u64) << 3) | HEADER | ROOT,
            Some(Source::None) | None => 0,
        };
        if h != 0 {
            self.words.push(h);
        }
    }

    /// One possible reference (an address, untagged) of the current source.
    #[inline]
    pub fn edge(&mut self, p: u64, tags: u64) {
        if p == self.skip {
            self.skip = 0;
            return;
        }
        if matches!(self.current, Some(Source::Object(_) | Source::Native(_) | Source::Root(_))) {
            self.words.push(p | (tags & refs::CONSERVATIVE));
        }
    }

    pub fn words(&self) -> usize {
        self.words.len() + self.parts.iter().map(Vec::len).sum::<usize>()
    }

    /// A recorder for another worker of a parallel walk, with room for about `words` words (reserved,
    /// not faulted in).
    pub(super) fn for_worker(words: usize) -> Self {
        Recorder { words: Vec::with_capacity(words), ..Recorder::default() }
    }

    /// Takes what another worker recorded (its words; it records no roots).
    pub(super) fn absorb(&mut self, other: Recorder) {
        if !other.words.is_empty() {
            self.parts.push(other.words);
        }
    }

    /// Every stream of words (this one's, then the other workers'), the roots and the frame objects.
    pub(super) fn into_streams(self) -> (Vec<Vec<u64>>, Vec<Root>, Vec<Root>) {
        let mut streams = vec![self.words];
        streams.extend(self.parts);
        (streams, self.roots, self.frame_objects)
    }
}

/// The locals of the 3.11+ interpreter frame at `f` whose code object is `code`: the first
/// `co_nlocalsplus` slots that hold something.
pub fn iframe_locals<M: Memory + ?Sized>(mem: &M, l: &Layout, f: u64, code: u64) -> Vec<(u32, u64)> {
    let (Some(fl), Some(nl)) = (l.iframe, l.sizeof.code.nlocalsplus) else { return Vec::new() };
    if !is_code(mem, l, code) {
        return Vec::new();
    }
    let Ok(n) = mem.u32_at(code + nl, "co_nlocalsplus") else { return Vec::new() };
    slots_of(mem, l, f + fl.localsplus, (n as u64).min(MAX_LOCALS))
}

/// The locals of the 3.9/3.10 frame object at `f`: `co_varnames`, `co_cellvars`, `co_freevars` slots.
pub fn frame_object_locals<M: Memory + ?Sized>(mem: &M, l: &Layout, f: u64, code: u64) -> Vec<(u32, u64)> {
    let Some(fo) = l.frame_object else { return Vec::new() };
    if !is_code(mem, l, code) {
        return Vec::new();
    }
    let mut n = 0;
    for t in [l.code.varnames, l.code.cellvars, l.code.freevars].into_iter().flatten() {
        let len = mem.u64_at(code + t, "code names").and_then(|t| mem.u64_at(t + l.object.ob_size, "names size"));
        n += len.unwrap_or(0).min(MAX_LOCALS);
    }
    slots_of(mem, l, f + fo.localsplus, n.min(MAX_LOCALS))
}

/// Whether `code` is a code object (a frame's executable may be something else: 3.12+ shim and entry
/// frames hold no code object there).
pub fn is_code<M: Memory + ?Sized>(mem: &M, l: &Layout, code: u64) -> bool {
    let name = mem
        .u64_at(code + l.object.ob_type, "code type")
        .and_then(|t| mem.u64_at(t + l.type_.tp_name, "tp_name"))
        .and_then(|n| mem.cstr_at(n, 16, "tp_name"));
    name.is_ok_and(|n| n == "code")
}

fn slots_of<M: Memory + ?Sized>(mem: &M, l: &Layout, at: u64, n: u64) -> Vec<(u32, u64)> {
    let Ok(b) = mem.bytes_at(at, (8 * n) as usize, "frame locals") else { return Vec::new() };
    b.chunks_exact(8)
        .enumerate()
        .filter_map(|(i, c)| {
            let w = refs::untag(l, u64::from_le_bytes(c.try_into().expect("8 bytes")));
            (w >= 4096).then_some((i as u32, w))
        })
        .collect()
}

/// Per object, in the order the walk found them: what the graph keeps of each (a [`Sink`]).
#[derive(Default)]
pub struct Objects {
    pub(super) addrs: Vec<u64>,
    pub(super) types: Vec<u32>,
    /// `sys.getsizeof`, [`BIG`] for 4 GiB and more (then in `big`, by position).
    pub(super) sizes: Vec<u32>,
    pub(super) big: AddrMap<u64>,
    pub(super) refcounts: Vec<u32>,
    /// The types seen, by number.
    pub type_infos: Vec<TypeInfo>,
    type_numbers: AddrMap<u32>,
    /// The type of the last object (its address, its number).
    last_type: (u64, u32),
    /// What the other workers of a parallel walk found (numbered by their own type tables), read by
    /// [`Self::into_tables`] once the target runs again.
    parts: Vec<Objects>,
}

impl Objects {
    /// [`Self::with_capacity`] with the room of the first `faulted` objects faulted in (made before the
    /// target is stopped).
    pub fn faulted(n: usize, faulted: usize) -> Self {
        let mut o = Self::with_capacity(n);
        fault_in_room(&mut o.addrs, faulted);
        fault_in_room(&mut o.types, faulted);
        fault_in_room(&mut o.sizes, faulted);
        fault_in_room(&mut o.refcounts, faulted);
        o
    }

    pub fn with_capacity(n: usize) -> Self {
        Objects {
            addrs: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            sizes: Vec::with_capacity(n),
            refcounts: Vec::with_capacity(n),
            ..Objects::default()
        }
    }

    pub fn len(&self) -> usize {
        self.addrs.len() + self.parts.iter().map(Objects::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes what a worker of a parallel walk found.
    pub fn absorb(&mut self, other: Objects) {
        if !other.is_empty() {
            self.parts.push(other);
        }
    }

    /// This table and its parts' (this one first, then each part before the parts it took in), each
    /// with the number of each of its types in the one table of types returned.
    pub(super) fn into_tables(mut self) -> (Vec<TypeInfo>, Vec<(Objects, Vec<u32>)>) {
        let mut flat = Vec::new();
        let mut stack = vec![std::mem::take(&mut self.parts)];
        let own: Vec<u32> = (0..self.type_infos.len() as u32).collect();
        let mut infos = std::mem::take(&mut self.type_infos);
        let mut numbers = std::mem::take(&mut self.type_numbers);
        flat.push((self, own));
        // Depth first, each part before the parts it took in, as the join goes.
        while let Some(level) = stack.last_mut() {
            if level.is_empty() {
                stack.pop();
                continue;
            }
            let mut part = level.remove(0);
            let number: Vec<u32> = std::mem::take(&mut part.type_infos)
                .into_iter()
                .map(|ty| {
                    let next = infos.len() as u32;
                    let t = *numbers.entry(ty.addr).or_insert(next);
                    if t == next {
                        infos.push(ty);
                    }
                    t
                })
                .collect();
            let inner = std::mem::take(&mut part.parts);
            flat.push((part, number));
            stack.push(inner);
        }
        (infos, flat)
    }
}

/// The size a graph stores for objects of 4 GiB and more (their sizes are kept apart).
pub const BIG: u32 = u32::MAX;

/// The refcount a graph stores for immortal objects.
pub const IMMORTAL: u32 = u32::MAX;

impl Sink for Objects {
    fn reset(&mut self) {
        self.addrs.clear();
        self.types.clear();
        self.sizes.clear();
        self.big.clear();
        self.refcounts.clear();
        self.parts.clear();
    }

    fn object(&mut self, rec: &ObjectRecord, ty: &TypeInfo) {
        // Objects in a row are often of one type: the last one's number needs no hashing.
        let t = match self.last_type {
            (a, t) if a == rec.type_addr && a != 0 => t,
            _ => {
                let next = self.type_infos.len() as u32;
                let t = *self.type_numbers.entry(rec.type_addr).or_insert(next);
                if t == next {
                    self.type_infos.push(ty.clone());
                }
                self.last_type = (rec.type_addr, t);
                t
            }
        };
        self.addrs.push(rec.addr);
        self.types.push(t);
        match u32::try_from(rec.size) {
            Ok(s) if s != BIG => self.sizes.push(s),
            _ => {
                self.big.insert(self.sizes.len() as u64, rec.size);
                self.sizes.push(BIG);
            }
        }
        self.refcounts.push(if rec.immortal { IMMORTAL } else { rec.refcount.min(IMMORTAL as u64 - 1) as u32 });
    }

    fn untracked(&mut self, _: &TypeTotals, _: &TypeInfo) {
        unreachable!("a graph walk reports objects one by one")
    }

    fn tracked(&mut self, _: &TypeTotals, _: &TypeInfo, _: usize) {
        unreachable!("a graph walk reports objects one by one")
    }
}

/// Hands every object to the graph's [`Objects`] and to another sink.
pub struct Tee<'a> {
    pub objects: &'a mut Objects,
    pub also: &'a mut dyn Sink,
}

impl Sink for Tee<'_> {
    fn reset(&mut self) {
        self.objects.reset();
        self.also.reset();
    }

    fn object(&mut self, rec: &ObjectRecord, ty: &TypeInfo) {
        self.objects.object(rec, ty);
        self.also.object(rec, ty);
    }

    /// The objects go to [`Objects`] (through [`Sink::objects`]), their totals to the other sink.
    fn untracked(&mut self, t: &TypeTotals, ty: &TypeInfo) {
        self.also.untracked(t, ty)
    }

    fn tracked(&mut self, t: &TypeTotals, ty: &TypeInfo, list: usize) {
        self.also.tracked(t, ty, list)
    }

    fn keeps_objects(&self) -> bool {
        true
    }

    fn objects(&mut self, part: Objects) {
        self.objects.absorb(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(addr: u64, name: &str) -> TypeInfo {
        TypeInfo::plain(addr, name, 16)
    }

    fn rec(addr: u64, type_addr: u64, size: u64) -> ObjectRecord {
        ObjectRecord { addr, type_addr, size, size_exact: true, refcount: 1, immortal: false, list: 0 }
    }

    #[test]
    fn workers_objects_read_with_their_types_renumbered() {
        let (a, b) = (ty(0x100, "A"), ty(0x200, "B"));
        let mut main = Objects::default();
        main.object(&rec(0x1000, 0x100, 32), &a);
        let mut other = Objects::default();
        other.object(&rec(0x2000, 0x200, 5 << 32), &b);
        other.object(&rec(0x3000, 0x100, 48), &a);
        main.absorb(other);
        assert_eq!(main.len(), 3);
        let (infos, tables) = main.into_tables();
        let addrs: Vec<u64> = tables.iter().flat_map(|(o, _)| o.addrs.iter().copied()).collect();
        assert_eq!(addrs, [0x1000, 0x2000, 0x3000]);
        let names: Vec<&str> = tables
            .iter()
            .flat_map(|(o, number)| o.types.iter().map(|&t| infos[number[t as usize] as usize].name.as_str()))
            .collect();
        assert_eq!(names, ["A", "B", "A"]);
        let sizes: Vec<u32> = tables.iter().flat_map(|(o, _)| o.sizes.iter().copied()).collect();
        assert_eq!(sizes, [32, BIG, 48]);
        assert_eq!(tables[1].0.big.get(&0), Some(&(5 << 32)));
    }

    #[test]
    fn workers_words_follow_the_first() {
        let mut r = Recorder { words: vec![1, 2], ..Recorder::default() };
        r.absorb(Recorder { words: vec![3], ..Recorder::default() });
        r.absorb(Recorder::default());
        assert_eq!(r.words(), 3);
        let (streams, _, _) = r.into_streams();
        assert_eq!(streams, [vec![1, 2], vec![3]]);
    }
}
