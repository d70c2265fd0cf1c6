//! The full-heap walk: every object reachable from the GC lists and the interpreter's roots, not only
//! the GC-tracked containers.
//!
//! 1. The GC lists are walked as in the gc-tracked mode; each object is reported and marked.
//! 2. Roots are scanned for object pointers: `_PyRuntime`, every `PyInterpreterState` (modules, sys,
//!    builtins, interned strings, the per-interpreter dicts of static types, caches) and every thread
//!    state, conservatively; then every thread's frames (3.11+: `_PyInterpreterFrame`s, which are not
//!    objects: their code, function, globals, locals and value stack up to the stack top).
//! 3. A depth-first worklist follows the references of every object found ([`refs`]): exact decoding for
//!    the built-in containers, a conservative scan of the fields of everything else.
//!
//! Every candidate pointer is validated before it counts: 8-aligned, inside a readable mapping, a
//! plausible refcount (≥ 1, below 2^40, or an immortal pattern: freed memory fails here, its first word
//! is an allocator link or zero) and a type pointer that is a ready type object whose own type is
//! `type` or a metaclass. The visited set is a bitmap (1 bit per 8 bytes of touched address space).
//!
//! Limits: objects reachable only from C memory that is not an object (C extension globals, malloc'd
//! buffers of C types, e.g. `collections.deque` blocks) are not found, nor unreachable garbage; a
//! conservative scan may, rarely, take a stale word for a reference to a live object.

use std::sync::atomic::Ordering;

use python_bindings::{flags, Layout, RefcountScheme};

use crate::error::Result;
use crate::memory::{le_u32, le_u64};
use crate::memory::{Memory, ReadExt};
use crate::pause::Control;

use super::blocks::{Allocators, Scanned, Verdict};
use super::graph::{Objects, Recorder, Source};
use super::refs::{self, RefInfos};
use super::shares::{owner, Part, SEND_BATCH, SENT_FILTER};
use super::visited::Visited;
use super::{ObjectRecord, WalkSummary};
use crate::cpython::gc;
pub use crate::cpython::objects::read_head;
use crate::cpython::objects::HEAD_BYTES;
use crate::cpython::sizeof::getsizeof;
use crate::cpython::types::{SizeKind, TypeInfo, Types};
use crate::memory::fasthash::{AddrMap, AddrSet};

/// Largest object body scanned conservatively.
const MAX_SCAN: u64 = 1 << 20;

/// Entries of the direct-mapped front of the set of validated types (a power of two).
const GOOD_FAST: usize = 1024;

#[inline]
fn good_slot(t: u64) -> usize {
    ((t >> 4) ^ (t >> 14)) as usize & (GOOD_FAST - 1)
}

/// Whether the refcount in an object's head (its first bytes) is one a live object can have.
#[inline]
pub fn plausible_refcount(l: &Layout, head: &[u8]) -> bool {
    match l.refcount {
        RefcountScheme::Plain => (1..1 << 40).contains(&le_u64(head, l.object.ob_refcnt).unwrap_or(0)),
        RefcountScheme::Immortal32 => {
            let raw = le_u64(head, l.object.ob_refcnt).unwrap_or(0);
            let low = raw as u32;
            let high = raw >> 32;
            // 3.12/3.13: the high word is 0; 3.14+: ob_overflow (u16, 0) and ob_flags (u16, small).
            low >= 1 && (high & 0xffff) == 0 && high >> 16 < 0x100
        }
        // Free-threaded: the local count (u32::MAX: immortal) plus the shared one, which another
        // thread's decrefs can make briefly negative.
        RefcountScheme::Biased { .. } => match l.refcount_of(head) {
            Some((_, true)) => true,
            Some((n, false)) => n < 1 << 40 && (n >= 1 || le_u32(head, l.object.ob_refcnt).unwrap_or(0) >= 1),
            None => false,
        },
    }
}

/// The state of one full walk.
pub struct FullWalk<'a, M: Memory + ?Sized> {
    pub(super) mem: &'a M,
    pub(super) l: &'a Layout,
    pub visited: Visited,
    pub(super) stack: Vec<u64>,
    /// Objects of the GC lists not marked yet, split by owner (see [`owner`] with [`Self::threads`]),
    /// each share a list of segments in the order they go on the stack: the parallel walk of the GC
    /// lists leaves them to the workers, which mark their own share (see [`Self::set_pending`]).
    pub(super) pending: Vec<Vec<Vec<u64>>>,
    /// What the walk learned about types (copied into each worker of a parallel walk).
    pub(super) caches: TypeCaches,
    pub(super) scratch: Vec<u64>,
    pub found: u64,
    pub decode_errors: u64,
    /// The target's allocators, to check what conservative scans find.
    pub alloc: Allocators,
    /// Native blocks scanned so far (by their start).
    pub(super) native: AddrSet,
    pub scanned: Scanned,
    /// Walk on this thread only (every object reported one by one).
    pub one_thread: bool,
    /// Threads of the reference walk (see [`super::workers::threads`]).
    pub threads: usize,
    pub control: Control,
    /// The object being decoded (0 while scanning roots), for trace logs.
    pub(super) current: u64,
    /// Set in a worker of the parallel walk: which addresses it owns, where the others' go.
    pub(super) part: Option<Part<'a>>,
    /// Set when the walk records the object graph (one thread only).
    pub graph: Option<Recorder>,
    /// Per worker of a recording walk, made before the target was stopped (their room faulted in): its
    /// recorder (none for the first, which continues `graph`) and its objects' arrays.
    pub(super) spares: Vec<(Option<Recorder>, Objects)>,
    /// The same for the two threads that walk the GC lists from both ends (see [`super::gcpar`]).
    pub(super) direction_spares: Vec<Objects>,
    /// Without a pause: a sample of the objects found (address, type), to see afterwards how many
    /// changed under the walk ([`super::recheck`]).
    pub samples: Option<Vec<(u64, u64)>>,
}

/// Largest native block scanned, and how much of it is read at a time.
const MAX_NATIVE_BLOCK: u64 = 1 << 30;
const NATIVE_BATCH: u64 = 1 << 16;
/// The first bytes of a native block that tell pointers from numbers.
const NATIVE_SAMPLE: u64 = 4096;

/// Names the reference walk in a timeout.
pub(super) const WHAT: &str = "walking the heap";
/// What a walk learns about types and shared keys as it goes.
#[derive(Clone)]
pub(super) struct TypeCaches {
    pub(super) refinfos: RefInfos,
    /// Types validated as ready type objects.
    pub(super) good_types: AddrSet,
    /// Direct-mapped front of `good_types` (a type address per slot, 0 when empty).
    pub(super) good_fast: Box<[u64]>,
    pub(super) bad_types: AddrSet,
    /// The address of `type` (0 until learned).
    pub(super) type_type: u64,
    /// Shared dict keys objects already followed.
    pub(super) seen_keys: AddrSet,
    /// Shared keys a heap type caches (`ht_cached_keys`) → that type: their references are the type's
    /// (followed when the type is), not those of whichever instance dict is met first — the same graph
    /// whatever order, or however many threads, walk the heap.
    pub(super) type_keys: AddrMap<u64>,
}

impl Default for TypeCaches {
    fn default() -> Self {
        TypeCaches {
            refinfos: RefInfos::default(),
            good_types: AddrSet::default(),
            good_fast: vec![0; GOOD_FAST].into_boxed_slice(),
            bad_types: AddrSet::default(),
            type_type: 0,
            seen_keys: AddrSet::default(),
            type_keys: AddrMap::default(),
        }
    }
}

impl<'a, M: Memory + ?Sized> FullWalk<'a, M> {
    pub fn new(mem: &'a M, l: &'a Layout) -> Self {
        FullWalk {
            mem,
            l,
            visited: Visited::new(),
            stack: Vec::new(),
            pending: Vec::new(),
            caches: TypeCaches::default(),
            scratch: Vec::new(),
            found: 0,
            decode_errors: 0,
            alloc: Allocators::default(),
            native: AddrSet::default(),
            scanned: Scanned::default(),
            one_thread: false,
            threads: 1,
            control: Control::unlimited(),
            current: 0,
            part: None,
            graph: None,
            spares: Vec::new(),
            direction_spares: Vec::new(),
            samples: None,
        }
    }

    /// Notes the shared keys of the type object at `t` if it is a heap type that caches some (see
    /// [`TypeCaches::type_keys`]); called for the type objects the GC lists hold, before the reference walk.
    pub fn note_type_keys(&mut self, t: u64) {
        let l = self.l;
        let heap = self.mem.u64_at(t + l.type_.tp_flags, "tp_flags").is_ok_and(|f| f & flags::HEAPTYPE != 0);
        if !heap {
            return;
        }
        if let Ok(k) = self.mem.u64_at(t + l.heap_type.ht_cached_keys, "ht_cached_keys") {
            if k != 0 {
                self.caches.type_keys.entry(k).or_insert(t);
            }
        }
    }

    /// Learns `type`'s address: the fixed point of `ob_type` from any object.
    pub fn learn_type_type(&mut self, obj: u64) {
        if self.caches.type_type != 0 {
            return;
        }
        let Ok(mut t) = self.mem.u64_at(obj + self.l.object.ob_type, "ob_type") else { return };
        for _ in 0..8 {
            match self.mem.u64_at(t + self.l.object.ob_type, "ob_type") {
                Ok(m) if m == t => {
                    self.caches.type_type = t;
                    self.caches.good_types.insert(t);
                    return;
                }
                Ok(m) => t = m,
                Err(_) => return,
            }
        }
    }

    /// Marks an object the GC walk reported; it will be decoded by [`Self::run`].
    pub fn mark_tracked(&mut self, addr: u64, type_addr: u64) {
        if self.visited.insert(addr) {
            self.stack.push(addr | 1);
            self.sample(addr, type_addr);
        }
        self.caches.good_types.insert(type_addr);
    }

    /// Keeps `addr` (of type `type_addr`) in the sample, if sampling and if it is one of the sample.
    #[inline]
    fn sample(&mut self, addr: u64, type_addr: u64) {
        if let Some(s) = self.samples.as_mut() {
            if super::recheck::sampled(addr) {
                s.push((addr, type_addr));
            }
        }
    }

    /// Objects of the GC lists (per owner among [`Self::threads`], each share segments in stack order),
    /// to be marked and decoded by the workers of [`walk_rest`] (or marked here first when it walks in
    /// one thread).
    pub fn set_pending(&mut self, pending: Vec<Vec<Vec<u64>>>) {
        self.pending = pending;
    }

    /// Marks the objects left pending (in stack order, below what is on the stack already). The
    /// largest segment becomes the bottom of the stack, filtered in place: its memory is faulted in
    /// already, where a new stack would fault in as much again while the target is stopped. (Only the
    /// order of the segments before it changes: they go above it, which changes no count.)
    pub(super) fn mark_pending(&mut self) {
        let mut segments: Vec<Vec<u64>> = std::mem::take(&mut self.pending).into_iter().flatten().collect();
        if segments.is_empty() {
            return;
        }
        let above = std::mem::take(&mut self.stack);
        let big = (0..segments.len()).max_by_key(|&i| segments[i].len()).unwrap_or(0);
        let mut stack = std::mem::take(&mut segments[big]);
        let mut kept = 0;
        for i in 0..stack.len() {
            let e = stack[i];
            if self.visited.insert(e & !1) {
                stack[kept] = e | 1;
                kept += 1;
            }
        }
        stack.truncate(kept);
        stack.reserve(segments.iter().map(Vec::len).sum::<usize>() + above.len());
        for share in segments {
            for e in share {
                if self.visited.insert(e & !1) {
                    stack.push(e | 1);
                }
            }
        }
        stack.extend(above);
        self.stack = stack;
    }

    /// A type of objects found in the GC lists.
    pub fn add_good_type(&mut self, t: u64) {
        self.caches.good_types.insert(t);
    }

    fn valid_type(&mut self, types: &mut Types, t: u64, depth: u32) -> bool {
        let g = good_slot(t);
        if self.caches.good_fast[g] == t && t != 0 {
            return true;
        }
        if self.caches.good_types.contains(&t) {
            self.caches.good_fast[g] = t;
            return true;
        }
        if self.caches.bad_types.contains(&t) || depth > 4 || !t.is_multiple_of(8) || t < 4096 {
            return false;
        }
        let l = self.l;
        let ok = (|| {
            let mut h = [0u8; 32];
            let h = &mut h[..l.object.ob_type as usize + 8];
            self.mem.read(t, h).ok()?;
            let meta = le_u64(h, l.object.ob_type)?;
            if !plausible_refcount(l, h) {
                return None;
            }
            let f = self.mem.u64_at(t + l.type_.tp_flags, "tp_flags").ok()?;
            const READY: u64 = 1 << 12;
            if f & READY == 0 {
                return None;
            }
            if meta != self.caches.type_type {
                if meta == t || !self.valid_type(types, meta, depth + 1) {
                    return None;
                }
                let mf = self.mem.u64_at(meta + l.type_.tp_flags, "tp_flags").ok()?;
                if mf & flags::TYPE_SUBCLASS == 0 {
                    return None;
                }
            }
            types.get(self.mem, t).ok()?;
            Some(())
        })()
        .is_some();
        if ok {
            self.caches.good_types.insert(t);
        } else {
            if self.caches.bad_types.len() > 1 << 20 {
                self.caches.bad_types.clear();
            }
            self.caches.bad_types.insert(t);
        }
        ok
    }

    /// Validates the candidate at `p` (not visited yet): when it is a live object, reads its head into
    /// `head`, marks it, reports it and returns true. A candidate from a conservative scan must also lie
    /// where a live block of its size starts; one that is no object but the start of a native block is
    /// scanned for pointers in turn — also when its first bytes happen to read as an object's head that
    /// the later checks refuse (a free-threaded module state whose first words are an object pointer and
    /// a type pointer passes the refcount and type checks, depending on where the heap was mapped).
    fn candidate(
        &mut self,
        types: &mut Types,
        summary: &mut WalkSummary,
        p: u64,
        tags: u64,
        head: &mut [u8; HEAD_BYTES],
        sink: &mut dyn FnMut(&ObjectRecord, &TypeInfo),
    ) -> bool {
        let taken = self.object_candidate(types, summary, p, tags, head, sink);
        // Only the buffers objects point to are scanned, not those that buffers point to.
        if !taken && tags & refs::CONSERVATIVE != 0 && tags & refs::FROM_NATIVE == 0 {
            self.scan_native(p);
        }
        taken
    }

    /// [`Self::candidate`] as an object: true when it is one, marked and reported.
    fn object_candidate(
        &mut self,
        types: &mut Types,
        summary: &mut WalkSummary,
        p: u64,
        tags: u64,
        head: &mut [u8; HEAD_BYTES],
        sink: &mut dyn FnMut(&ObjectRecord, &TypeInfo),
    ) -> bool {
        let l = self.l;
        let looks = read_head(self.mem, p, head) && plausible_refcount(l, &head[..]) && {
            let t = le_u64(head, l.object.ob_type).unwrap_or(0);
            self.valid_type(types, t, 0)
        };
        let conservative = tags & refs::CONSERVATIVE != 0;
        if !looks {
            return false;
        }
        let t = le_u64(head, l.object.ob_type).unwrap_or(0);
        let Ok(info) = types.get(self.mem, t) else { return false };
        // The whole fixed part must be readable.
        if self.mem.read(p + info.basicsize.min(MAX_SCAN) - 1, &mut [0u8; 1]).is_err() {
            return false;
        }
        let (size, exact) = match getsizeof(self.mem, l, p, head, info) {
            Ok(s) => s,
            Err(_) => (info.basicsize, false),
        };
        let pre = l.preheader_size(info.flags);
        // An object whose items lie inline must fit in readable memory (rejects garbage sizes).
        if matches!(info.kind, SizeKind::Default | SizeKind::Int | SizeKind::Frame) && size > info.basicsize + 64 {
            let body = size.saturating_sub(pre);
            if body == 0 || self.mem.read(p + body - 1, &mut [0u8; 1]).is_err() {
                return false;
            }
        }
        if conservative {
            // What the object's own allocation holds at least (`sys.getsizeof` counts buffers of its own
            // for the other kinds).
            let inline = matches!(info.kind, SizeKind::Default | SizeKind::Int | SizeKind::Str | SizeKind::Code);
            let own = if inline { size.saturating_sub(pre) } else { info.basicsize };
            match self.alloc.holds(self.mem, l, p, info, own) {
                Verdict::Valid => {}
                Verdict::Unvalidated => self.scanned.unvalidated += 1,
                Verdict::Invalid => {
                    log::trace!("{p:#x}: no live block holds a {} there (from {:#x})", info.name, self.current);
                    self.scanned.rejected += 1;
                    return false;
                }
            }
        }
        self.visited.insert(p);
        self.sample(p, t);
        self.found += 1;
        if !exact {
            summary.approximate_sizes += 1;
        }
        let (refcount, immortal) = l.refcount_of(&head[..]).unwrap_or((0, false));
        let rec =
            ObjectRecord { addr: p, type_addr: t, size, size_exact: exact, refcount, immortal, list: gc::UNTRACKED };
        log::trace!("{p:#x} {} (referenced from {:#x})", info.name, self.current);
        sink(&rec, info);
        true
    }

    /// Scans the native block that starts at `p` (a C extension's buffer: a numpy array's data, a deque's
    /// blocks), once, for object pointers, which count only if they pass as conservative candidates. A
    /// block whose first words hold no pointers into readable memory is numbers, not pointers: the rest
    /// of it is not read.
    fn scan_native(&mut self, p: u64) {
        if self.native.contains(&p) {
            return;
        }
        let Some(len) = self.alloc.native_block(self.mem, self.l, p) else { return };
        self.native.insert(p);
        if self.part.as_ref().is_some_and(|part| !part.shared.claim(p)) {
            return;
        }
        let was = self.graph.as_mut().map(|g| g.set(Source::Native(p)));
        let len = len.min(MAX_NATIVE_BLOCK) & !7;
        self.scanned.native_blocks += 1;
        let mut at = 0;
        while at < len {
            let n = (len - at).min(NATIVE_BATCH);
            let Ok(b) = self.mem.bytes_at(p + at, n as usize, "native block") else { break };
            self.scanned.native_bytes += n;
            let before = self.scratch.len();
            refs::conservative(&b, &mut self.scratch);
            if at == 0 && len > NATIVE_SAMPLE {
                let words = (NATIVE_SAMPLE.min(n) / 8) as usize;
                let sample = b[..words * 8].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8")));
                let pointers = sample.filter(|&w| w.is_multiple_of(8) && self.alloc.readable(w)).count();
                if pointers * 4 < words {
                    self.scratch.truncate(before);
                    refs::conservative(&b[..words * 8], &mut self.scratch);
                    for w in &mut self.scratch[before..] {
                        *w |= refs::FROM_NATIVE;
                    }
                    break;
                }
            }
            for w in &mut self.scratch[before..] {
                *w |= refs::FROM_NATIVE;
            }
            self.flush();
            at += n;
        }
        self.flush();
        if let (Some(g), Some(was)) = (self.graph.as_mut(), was) {
            g.set(was);
        }
    }

    /// Queues the words gathered in `scratch` that may point to objects not seen yet; they are
    /// validated when [`Self::run`] takes them off the stack. Queued in reverse, so that they come
    /// off in the order they were found (forward through containers, which keeps reads sequential).
    pub(super) fn flush(&mut self) {
        if let Some(g) = self.graph.as_mut() {
            if !self.scratch.is_empty() {
                g.begin();
            }
            for &w in &self.scratch {
                let tag = w & refs::TAGS;
                let p = refs::untag(self.l, w & !tag);
                if p >= 4096 {
                    g.edge(p, tag);
                }
            }
        }
        let Some(part) = self.part.as_mut() else {
            for &w in self.scratch.iter().rev() {
                let tag = w & refs::TAGS;
                let p = refs::untag(self.l, w & !tag);
                if p >= 4096 && !self.visited.contains(p) {
                    self.stack.push(p | tag);
                }
            }
            self.scratch.clear();
            return;
        };
        // A worker: candidates it owns go on its stack, the others to their owner (once each, as far
        // as a small filter remembers: every object names its type, for one).
        for &w in self.scratch.iter().rev() {
            let tag = w & refs::TAGS;
            let p = refs::untag(self.l, w & !tag);
            if p < 4096 {
                continue;
            }
            let o = owner(p, part.n);
            if o == part.me {
                if !self.visited.contains(p) {
                    self.stack.push(p | tag);
                }
            } else {
                let h = ((p >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize & (SENT_FILTER - 1);
                if part.sent[h] == p | tag {
                    continue;
                }
                part.sent[h] = p | tag;
                part.outbox[o].push(p | tag);
                if part.outbox[o].len() >= SEND_BATCH {
                    part.send(o);
                }
            }
        }
        self.scratch.clear();
    }

    /// Follows references until every reachable object has been found.
    pub fn run(
        &mut self,
        types: &mut Types,
        summary: &mut WalkSummary,
        sink: &mut dyn FnMut(&ObjectRecord, &TypeInfo),
    ) -> Result<()> {
        let l = self.l;
        let mut head = [0u8; HEAD_BYTES];
        let mut n = 0u64;
        loop {
            let Some(e) = self.stack.pop() else {
                // A worker ran dry: wait for what the others find for it, or for the end.
                if self.part.is_some() && self.wait_for_work()? {
                    continue;
                }
                break;
            };
            n += 1;
            self.control.tick(n, WHAT)?;
            if n.is_multiple_of(1024) {
                if let Some(part) = self.part.as_mut() {
                    if part.shared.abort.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    // Another worker ran dry: hand it what was found for it so far.
                    for o in 0..part.n {
                        if o != part.me && part.shared.idle[o].load(Ordering::Relaxed) {
                            part.send(o);
                        }
                    }
                }
            }
            // Bit 0 marks an object the GC walk already reported; others are candidates, from a
            // conservative scan when bit 1 is set.
            let p = e & !(1 | refs::TAGS);
            if e & 1 == 0 {
                if self.visited.contains(p) || !self.candidate(types, summary, p, e & refs::TAGS, &mut head, sink) {
                    continue;
                }
                self.control.reported();
            } else if !read_head(self.mem, p, &mut head) {
                continue;
            }
            self.current = p;
            if let Some(g) = self.graph.as_mut() {
                g.set(Source::Object(p));
            }
            let t = le_u64(&head, l.object.ob_type).unwrap_or(0);
            // The type is an object too.
            self.scratch.push(t);
            let ri = match self.caches.refinfos.get(self.mem, l, t) {
                Ok(r) => r,
                Err(e) => {
                    log::debug!("object {p:#x}: type {t:#x}: {e}");
                    self.decode_errors += 1;
                    self.flush();
                    continue;
                }
            };
            if let Some(g) = self.graph.as_mut() {
                if ri.flags & flags::HEAPTYPE == 0 {
                    g.skip(t);
                }
            }
            let seen_keys = &mut self.caches.seen_keys;
            let type_keys = &self.caches.type_keys;
            let shared = self.part.as_ref().map(|part| part.shared);
            // Keys a type caches are followed from that type; other shared keys once, by the first
            // worker to meet them.
            let mut first_time = |k: u64| match type_keys.get(&k) {
                Some(&owner) => owner == p,
                None => seen_keys.insert(k) && shared.is_none_or(|s| s.claim(k | 1)),
            };
            if let Err(e) = refs::object_refs(self.mem, l, p, &head, &ri, &mut first_time, &mut self.scratch) {
                log::debug!("object {p:#x} ({:?}): {e}", ri.kind);
                self.decode_errors += 1;
            }
            self.flush();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use python_bindings::Version;

    fn plausible(l: &Layout, raw: u64) -> bool {
        plausible_refcount(l, &raw.to_le_bytes())
    }

    #[test]
    fn refcount_plausibility() {
        let plausible_refcount = plausible;
        let l39 = Layout::builtin(Version::new(3, 9, 0)).unwrap();
        assert!(plausible_refcount(&l39, 1));
        assert!(!plausible_refcount(&l39, 0));
        assert!(!plausible_refcount(&l39, 0x7f12_3456_7890));
        let l314 = Layout::builtin(Version::new(3, 14, 0)).unwrap();
        assert!(plausible_refcount(&l314, 0x0005_0000_c000_0000));
        assert!(plausible_refcount(&l314, 3));
        assert!(!plausible_refcount(&l314, 0x5555_5555_0000));
        let l312 = Layout::builtin(Version::new(3, 12, 1)).unwrap();
        assert!(plausible_refcount(&l312, 0xffff_ffff));
        assert!(!plausible_refcount(&l312, 0x1_0000_0001));
    }
}
