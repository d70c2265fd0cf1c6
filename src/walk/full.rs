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

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use python_bindings::{flags, Layout, RefcountScheme, ThreadFrame};

use crate::discovery::Interpreter;
use crate::error::{Error, Result};
use crate::memory::le_u64;
use crate::memory::readers::ThreadReaders;
use crate::memory::{Memory, ReadExt};
use crate::pause::{Control, Interp};

use super::refs::{self, RefInfos};
use super::visited::Visited;
use super::{ObjectRecord, Sink, TypeTotals, WalkSummary};
use crate::cpython::gc;
pub use crate::cpython::objects::read_head;
use crate::cpython::objects::{getsizeof, SizeKind, TypeInfo, Types, HEAD_BYTES};
use crate::memory::fasthash::{AddrMap, AddrSet};
use crate::memory::PAGE;

/// Most threads and frames per thread followed.
const MAX_THREADS: usize = 1 << 16;
const MAX_FRAMES: usize = 1 << 20;
/// Largest object body scanned conservatively.
const MAX_SCAN: u64 = 1 << 20;

/// Entries of the direct-mapped front of the set of validated types (a power of two).
const GOOD_FAST: usize = 1024;

#[inline]
fn good_slot(t: u64) -> usize {
    ((t >> 4) ^ (t >> 14)) as usize & (GOOD_FAST - 1)
}

/// Whether a raw `ob_refcnt` word is one a live object can have.
#[inline]
pub fn plausible_refcount(l: &Layout, raw: u64) -> bool {
    match l.refcount {
        RefcountScheme::Plain => (1..1 << 40).contains(&raw),
        RefcountScheme::Immortal32 => {
            let low = raw as u32;
            let high = raw >> 32;
            // 3.12/3.13: the high word is 0; 3.14+: ob_overflow (u16, 0) and ob_flags (u16, small).
            low >= 1 && (high & 0xffff) == 0 && high >> 16 < 0x100
        }
    }
}

/// The state of one full walk.
pub struct FullWalk<'a, M: Memory + ?Sized> {
    mem: &'a M,
    l: &'a Layout,
    pub visited: Visited,
    stack: Vec<u64>,
    /// Objects of the GC lists not marked yet, split by owner (see [`owner`] with [`MAX_WORKERS`]),
    /// each share a list of segments in the order they go on the stack: the parallel walk of the GC
    /// lists leaves them to the workers, which mark their own share (see [`Self::set_pending`]).
    pending: Vec<Vec<Vec<u64>>>,
    /// What the walk learned about types (copied into each worker of a parallel walk).
    caches: TypeCaches,
    scratch: Vec<u64>,
    pub found: u64,
    pub decode_errors: u64,
    pub control: Control,
    /// The object being decoded (0 while scanning roots), for trace logs.
    current: u64,
    /// Set in a worker of the parallel walk: which addresses it owns, where the others' go.
    part: Option<Part<'a>>,
}

/// Walking threads of the reference walk (after the GC lists), at most.
pub const MAX_WORKERS: usize = 2;

/// Names the reference walk in a timeout.
const WHAT: &str = "walking the heap";
/// Candidates sent to another worker per batch.
const SEND_BATCH: usize = 4096;
/// Entries of the direct-mapped filter of addresses already sent to another worker (a power of two).
const SENT_FILTER: usize = 4096;

/// Which worker owns an address: 1 MiB stripes (the visited bitmap's blocks, a multiple of the read
/// cache's chunks), spread by a multiplicative hash. An object is validated, marked and reported only
/// by its owner, so each worker's visited bitmap and read cache hold only its own stripes.
#[inline]
pub fn owner(addr: u64, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (((addr >> 20).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize) % n
}

/// What the workers of one parallel walk share: an inbox per worker (batches of candidate addresses
/// it owns, found by the others), and termination: `outstanding` counts the active workers plus the
/// batches in inboxes, so it reaches 0 exactly when every worker is idle and nothing is in flight.
pub struct Shared {
    inboxes: Vec<Mutex<Vec<Vec<u64>>>>,
    idle: Vec<AtomicBool>,
    outstanding: AtomicI64,
    /// A worker failed, panicked or was told to stop: everyone stops.
    abort: AtomicBool,
}

impl Shared {
    pub fn new(n: usize) -> Self {
        Shared {
            inboxes: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            idle: (0..n).map(|_| AtomicBool::new(false)).collect(),
            outstanding: AtomicI64::new(n as i64),
            abort: AtomicBool::new(false),
        }
    }

    fn inbox(&self, i: usize) -> std::sync::MutexGuard<'_, Vec<Vec<u64>>> {
        // A poisoned inbox only means another worker panicked; the walk is stopping anyway.
        self.inboxes[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One worker's share of a parallel walk.
pub struct Part<'a> {
    me: usize,
    n: usize,
    shared: &'a Shared,
    /// Candidates owned by each other worker, not sent yet.
    outbox: Vec<Vec<u64>>,
    sent: Box<[u64]>,
}

impl Part<'_> {
    fn send(&mut self, to: usize) {
        if self.outbox[to].is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.outbox[to]);
        // Counted before it is visible, so that `outstanding` never reads 0 while it is in flight.
        self.shared.outstanding.fetch_add(1, Ordering::SeqCst);
        self.shared.inbox(to).push(batch);
    }

    fn send_all(&mut self) {
        for to in 0..self.n {
            if to != self.me {
                self.send(to);
            }
        }
    }
}

/// Stops the other workers when this one ends, however it ends (a panic too).
struct AbortOnDrop<'a>(&'a AtomicBool);

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What a worker of a parallel walk starts from: the layout, the type caches, the walk's control.
struct Seed<'a> {
    l: &'a Layout,
    caches: TypeCaches,
    control: Control,
}

/// What a walk learns about types and shared keys as it goes.
#[derive(Clone)]
struct TypeCaches {
    refinfos: RefInfos,
    /// Types validated as ready type objects.
    good_types: AddrSet,
    /// Direct-mapped front of `good_types` (a type address per slot, 0 when empty).
    good_fast: Box<[u64]>,
    bad_types: AddrSet,
    /// The address of `type` (0 until learned).
    type_type: u64,
    /// Shared dict keys objects already followed.
    seen_keys: AddrSet,
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
        }
    }
}

/// What one worker of a parallel walk hands back.
struct WorkerOut {
    found: u64,
    decode_errors: u64,
    approximate_sizes: u64,
    visited_bytes: u64,
    /// Per type: the objects it reported, and the type's information.
    totals: Vec<(TypeTotals, TypeInfo)>,
    cache: String,
    /// The worker stopped early (what it found so far is still reported: a partial walk).
    error: Option<Error>,
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
            control: Control::unlimited(),
            current: 0,
            part: None,
        }
    }

    fn seed(&self) -> Seed<'a> {
        Seed { l: self.l, caches: self.caches.clone(), control: self.control.clone() }
    }

    /// A worker of a parallel walk over `mem`.
    fn worker(mem: &'a M, seed: Seed<'a>, visited: Visited, stack: Vec<u64>, part: Part<'a>) -> Self {
        FullWalk {
            mem,
            l: seed.l,
            visited,
            stack,
            pending: Vec::new(),
            caches: seed.caches,
            scratch: Vec::new(),
            found: 0,
            decode_errors: 0,
            control: seed.control,
            current: 0,
            part: Some(part),
        }
    }

    /// Learns `type`'s address: the fixed point of `ob_type` from any object.
    pub fn learn_type_type(&mut self, obj: u64) {
        if self.caches.type_type != 0 {
            return;
        }
        let Ok(mut t) = self.mem.u64_at(obj + self.l.ob_type, "ob_type") else { return };
        for _ in 0..8 {
            match self.mem.u64_at(t + self.l.ob_type, "ob_type") {
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
        }
        self.caches.good_types.insert(type_addr);
    }

    /// Objects of the GC lists (per owner among [`MAX_WORKERS`], each share segments in stack order),
    /// to be marked and decoded by the workers of [`walk_rest`] (or marked here first when it walks in
    /// one thread).
    pub fn set_pending(&mut self, pending: Vec<Vec<Vec<u64>>>) {
        self.pending = pending;
    }

    /// Marks the objects left pending (in stack order, below what is on the stack already). The
    /// largest segment becomes the bottom of the stack, filtered in place: its memory is faulted in
    /// already, where a new stack would fault in as much again while the target is stopped. (Only the
    /// order of the segments before it changes: they go above it, which changes no count.)
    fn mark_pending(&mut self) {
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
            let mut h = [0u8; 16];
            self.mem.read(t, &mut h).ok()?;
            let raw = le_u64(&h, 0)?;
            let meta = le_u64(&h, 8)?;
            if !plausible_refcount(l, raw) {
                return None;
            }
            let f = self.mem.u64_at(t + l.tp_flags, "tp_flags").ok()?;
            const READY: u64 = 1 << 12;
            if f & READY == 0 {
                return None;
            }
            if meta != self.caches.type_type {
                if meta == t || !self.valid_type(types, meta, depth + 1) {
                    return None;
                }
                let mf = self.mem.u64_at(meta + l.tp_flags, "tp_flags").ok()?;
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
    /// `head`, marks it, reports it and returns true.
    fn candidate(
        &mut self,
        types: &mut Types,
        summary: &mut WalkSummary,
        p: u64,
        head: &mut [u8; HEAD_BYTES],
        sink: &mut dyn FnMut(&ObjectRecord, &TypeInfo),
    ) -> bool {
        if !read_head(self.mem, p, head) {
            return false;
        }
        let l = self.l;
        let raw = le_u64(head, l.ob_refcnt).unwrap_or(0);
        if !plausible_refcount(l, raw) {
            return false;
        }
        let t = le_u64(head, l.ob_type).unwrap_or(0);
        if !self.valid_type(types, t, 0) {
            return false;
        }
        let Ok(info) = types.get(self.mem, t) else { return false };
        // The whole fixed part must be readable.
        if self.mem.read(p + info.basicsize.min(MAX_SCAN) - 1, &mut [0u8; 1]).is_err() {
            return false;
        }
        let (size, exact) = match getsizeof(self.mem, l, p, head, info) {
            Ok(s) => s,
            Err(_) => (info.basicsize, false),
        };
        // An object whose items lie inline must fit in readable memory (rejects garbage sizes).
        if matches!(info.kind, SizeKind::Default | SizeKind::Int | SizeKind::Frame) && size > info.basicsize + 64 {
            let body = size.saturating_sub(l.preheader_size(info.flags));
            if body == 0 || self.mem.read(p + body - 1, &mut [0u8; 1]).is_err() {
                return false;
            }
        }
        self.visited.insert(p);
        self.found += 1;
        if !exact {
            summary.approximate_sizes += 1;
        }
        let (refcount, immortal) = l.decode_refcount(raw);
        let rec =
            ObjectRecord { addr: p, type_addr: t, size, size_exact: exact, refcount, immortal, list: gc::UNTRACKED };
        log::trace!("{p:#x} {} (referenced from {:#x})", info.name, self.current);
        sink(&rec, info);
        true
    }

    /// Queues the words gathered in `scratch` that may point to objects not seen yet; they are
    /// validated when [`Self::run`] takes them off the stack. Queued in reverse, so that they come
    /// off in the order they were found (forward through containers, which keeps reads sequential).
    fn flush(&mut self) {
        let Some(part) = self.part.as_mut() else {
            for &w in self.scratch.iter().rev() {
                let p = refs::untag(self.l, w);
                if p >= 4096 && !self.visited.contains(p) {
                    self.stack.push(p);
                }
            }
            self.scratch.clear();
            return;
        };
        // A worker: candidates it owns go on its stack, the others to their owner (once each, as far
        // as a small filter remembers: every object names its type, for one).
        for &w in self.scratch.iter().rev() {
            let p = refs::untag(self.l, w);
            if p < 4096 {
                continue;
            }
            let o = owner(p, part.n);
            if o == part.me {
                if !self.visited.contains(p) {
                    self.stack.push(p);
                }
            } else {
                let h = ((p >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize & (SENT_FILTER - 1);
                if part.sent[h] == p {
                    continue;
                }
                part.sent[h] = p;
                part.outbox[o].push(p);
                if part.outbox[o].len() >= SEND_BATCH {
                    part.send(o);
                }
            }
        }
        self.scratch.clear();
    }

    /// A worker takes the batches sent to it; false when there were none.
    fn receive(&mut self) -> bool {
        let Some(part) = self.part.as_ref() else { return false };
        let batches = std::mem::take(&mut *part.shared.inbox(part.me));
        if batches.is_empty() {
            return false;
        }
        let k = batches.len() as i64;
        for b in batches {
            for p in b {
                if !self.visited.contains(p) {
                    self.stack.push(p);
                }
            }
        }
        part.shared.outstanding.fetch_sub(k, Ordering::SeqCst);
        true
    }

    /// A worker with nothing to do: waits for a batch (true) or the end of the walk (false).
    fn wait_for_work(&mut self) -> Result<bool> {
        let part = self.part.as_mut().expect("a worker");
        part.send_all();
        if self.receive() {
            return Ok(true);
        }
        let part = self.part.as_ref().expect("a worker");
        let shared = part.shared;
        shared.idle[part.me].store(true, Ordering::SeqCst);
        shared.outstanding.fetch_sub(1, Ordering::SeqCst);
        let mut spins = 0u32;
        loop {
            if shared.abort.load(Ordering::SeqCst) {
                return Ok(false);
            }
            if !shared.inbox(part.me).is_empty() {
                shared.outstanding.fetch_add(1, Ordering::SeqCst);
                shared.idle[part.me].store(false, Ordering::SeqCst);
                self.receive();
                return Ok(true);
            }
            if shared.outstanding.load(Ordering::SeqCst) == 0 {
                return Ok(false);
            }
            self.control.check(WHAT)?;
            spins += 1;
            if spins < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
        }
    }

    /// Scans a region (not an object) for object pointers: roots.
    pub fn scan_region(&mut self, addr: u64, len: u64) {
        let mut at = addr;
        let end = addr + len;
        while at < end {
            let n = (end - at).min(64 * 1024);
            match self.mem.bytes_at(at, n as usize, "root region") {
                Ok(b) => refs::words(&b, &mut self.scratch),
                Err(_) => {
                    // Partly unmapped (a struct at the end of a mapping): page by page.
                    let mut p = at;
                    while p < at + n {
                        let q = ((p & !(PAGE - 1)) + PAGE).min(at + n);
                        if let Ok(b) = self.mem.bytes_at(p, (q - p) as usize, "root region") {
                            refs::words(&b, &mut self.scratch);
                        }
                        p = q;
                    }
                }
            }
            self.flush();
            at += n;
        }
    }

    /// The roots of every interpreter: runtime, interpreter and thread states, and thread frames.
    pub fn scan_roots(&mut self, interp: &Interpreter, interps: &[Interp]) -> Result<()> {
        let l = self.l;
        self.scan_region(interp.runtime, l.runtime_size);
        for ip in interps.iter().map(|i| i.addr) {
            self.scan_region(ip, l.interp_size);
            let mut ts = self.mem.u64_at(ip + l.interp_threads_head, "threads.head")?;
            let mut seen = AddrSet::default();
            while ts != 0 && seen.len() < MAX_THREADS && seen.insert(ts) {
                self.scan_region(ts, l.tstate_size);
                let frame = match l.thread_frame {
                    ThreadFrame::Object(off) => {
                        let f = self.mem.u64_at(ts + off, "tstate->frame").unwrap_or(0);
                        self.scratch.push(f);
                        0
                    }
                    ThreadFrame::CFrame { cframe, current } => {
                        let cf = self.mem.u64_at(ts + cframe, "tstate->cframe").unwrap_or(0);
                        if cf == 0 {
                            0
                        } else {
                            self.mem.u64_at(cf + current, "cframe->current_frame").unwrap_or(0)
                        }
                    }
                    ThreadFrame::Direct(off) => self.mem.u64_at(ts + off, "tstate->current_frame").unwrap_or(0),
                };
                self.walk_frames(frame);
                ts = self.mem.u64_at(ts + l.tstate_next, "tstate->next").unwrap_or(0);
            }
        }
        Ok(())
    }

    fn walk_frames(&mut self, mut f: u64) {
        let Some(fl) = self.l.iframe else {
            self.flush();
            return;
        };
        let mut n = 0;
        while f != 0 && f.is_multiple_of(8) && n < MAX_FRAMES {
            if let Err(e) = refs::iframe_refs(self.mem, self.l, f, &mut self.scratch) {
                log::debug!("frame at {f:#x}: {e}");
                self.decode_errors += 1;
                break;
            }
            self.flush();
            f = self.mem.u64_at(f + fl.previous, "frame->previous").unwrap_or(0);
            n += 1;
        }
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
            // Bit 0 marks an object the GC walk already reported; others are candidates.
            let p = e & !1;
            if e & 1 == 0 {
                if self.visited.contains(p) || !self.candidate(types, summary, p, &mut head, sink) {
                    continue;
                }
                self.control.reported();
            } else if !read_head(self.mem, p, &mut head) {
                continue;
            }
            self.current = p;
            let t = le_u64(&head, l.ob_type).unwrap_or(0);
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
            let seen_keys = &mut self.caches.seen_keys;
            let mut first_time = |k: u64| seen_keys.insert(k);
            if let Err(e) = refs::object_refs(self.mem, l, p, &head, &ri, &mut first_time, &mut self.scratch) {
                log::debug!("object {p:#x} ({:?}): {e}", ri.kind);
                self.decode_errors += 1;
            }
            self.flush();
        }
        Ok(())
    }
}

/// Runs the full walk after the GC lists' walk (which marked the objects of the GC lists in `walk`):
/// scans the roots, then follows references, split among up to [`MAX_WORKERS`] threads when `mem`
/// can be forked (each thread owns a share of the address space: see [`owner`]).
pub fn walk_rest<M: ThreadReaders>(
    mem: &M,
    interp: &Interpreter,
    interps: &[Interp],
    types: &mut Types,
    walk: &mut FullWalk<'_, M>,
    summary: &mut WalkSummary,
    sink: &mut dyn Sink,
) -> Result<()> {
    walk.scan_roots(interp, interps)?;
    let n = walk
        .control
        .hooks()
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).min(MAX_WORKERS));
    let parts = if n > 1 { mem.readers(n, &|a| owner(a, n)) } else { Vec::new() };
    // The objects of the GC lists go to their owners unmarked (each marks its own, in parallel),
    // unless the shares do not match the workers.
    let mut pending = std::mem::take(&mut walk.pending);
    if !pending.is_empty() && pending.len() != parts.len() {
        walk.pending = std::mem::take(&mut pending);
        walk.mark_pending();
    }
    if parts.len() < 2 {
        walk.run(types, summary, &mut |r, t| sink.object(r, t))?;
        summary.untracked += walk.found;
        summary.decode_errors += walk.decode_errors;
        log::debug!(
            "full walk: {} objects beyond the GC lists, visited bitmap {} KiB, {} types, {} decode errors",
            walk.found,
            walk.visited.bytes() / 1024,
            walk.caches.good_types.len(),
            walk.decode_errors
        );
        return Ok(());
    }
    let n = parts.len();
    let mut stacks: Vec<Vec<u64>> = vec![Vec::new(); n];
    for e in std::mem::take(&mut walk.stack) {
        stacks[owner(e & !1, n)].push(e);
    }
    let mut pending = pending.into_iter();
    let visited = std::mem::take(&mut walk.visited).split(n, |a| owner(a, n));
    let shared = Shared::new(n);
    let l = walk.l;
    let seeds: Vec<Seed<'_>> = (0..n).map(|_| walk.seed()).collect();
    let outs: Vec<std::thread::Result<(M::Reader<'_>, Result<WorkerOut>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .zip(visited)
            .zip(stacks)
            .zip(seeds)
            .enumerate()
            .map(|(me, (((pm, vis), stack), seed))| {
                let shared = &shared;
                let mine = pending.next().unwrap_or_default();
                s.spawn(move || {
                    let _stop_others = AbortOnDrop(&shared.abort);
                    // The reader is handed back (and rejoined below): freeing its buffers here would
                    // cost the pause their unmapping.
                    let r = (|| -> Result<WorkerOut> {
                        let part = Part {
                            me,
                            n,
                            shared,
                            outbox: vec![Vec::new(); n],
                            sent: vec![0; SENT_FILTER].into_boxed_slice(),
                        };
                        let mut w = FullWalk::worker(&pm, seed, vis, stack, part);
                        w.pending = vec![mine];
                        w.mark_pending();
                        let mut types = Types::new(l);
                        let mut sum = WalkSummary::default();
                        // Sums per type, found through a small direct-mapped front (no hashing per object).
                        let mut totals: Vec<TypeTotals> = Vec::new();
                        let mut index: AddrMap<usize> = AddrMap::default();
                        let mut front = [(0u64, 0usize); 64];
                        let r = w.run(&mut types, &mut sum, &mut |r, _| {
                            let t = r.type_addr;
                            let h = ((t >> 4) ^ (t >> 10)) as usize & 63;
                            let i = if front[h].0 == t && t != 0 {
                                front[h].1
                            } else {
                                let i = *index.entry(t).or_insert_with(|| {
                                    totals.push(TypeTotals { type_addr: t, ..Default::default() });
                                    totals.len() - 1
                                });
                                front[h] = (t, i);
                                i
                            };
                            totals[i].add(r);
                        });
                        let mut out = Vec::with_capacity(totals.len());
                        for tt in totals {
                            // Every type reported was read into `types` when its first object was.
                            out.push((tt, types.get(&pm, tt.type_addr)?.clone()));
                        }
                        Ok(WorkerOut {
                            error: r.err(),
                            found: w.found,
                            decode_errors: w.decode_errors,
                            approximate_sizes: sum.approximate_sizes,
                            visited_bytes: w.visited.bytes(),
                            totals: out,
                            cache: M::describe(&pm),
                        })
                    })();
                    (pm, r)
                })
            })
            .collect();
        // Joined here, so that a worker's panic is re-raised below with its own message (the scope
        // would replace it with a generic one).
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut result = Ok(());
    let mut readers = Vec::with_capacity(n);
    let outs: Vec<std::thread::Result<Result<WorkerOut>>> = outs
        .into_iter()
        .map(|o| {
            o.map(|(pm, r)| {
                readers.push(pm);
                r
            })
        })
        .collect();
    mem.take_back(readers);
    for out in outs {
        match out {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(Err(e)) => {
                if result.is_ok() {
                    result = Err(e);
                }
            }
            Ok(Ok(w)) => {
                if let (Some(e), true) = (w.error, result.is_ok()) {
                    result = Err(e);
                }
                summary.untracked += w.found;
                summary.decode_errors += w.decode_errors;
                summary.approximate_sizes += w.approximate_sizes;
                log::debug!(
                    "full walk, worker: {} objects beyond the GC lists, visited bitmap {} KiB, {} types, {} decode errors, cache {}",
                    w.found,
                    w.visited_bytes / 1024,
                    w.totals.len(),
                    w.decode_errors,
                    w.cache
                );
                for (tt, info) in &w.totals {
                    sink.untracked(tt, info);
                }
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use python_bindings::Version;

    #[test]
    fn refcount_plausibility() {
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
