//! The heap walks: every object of every GC list of every interpreter ([`gclists`], or from both ends
//! on two threads: [`gcpar`]), then with `--full` (the default) every object reachable from those and
//! from the roots ([`full`], following the references [`refs`] decodes, marking a [`visited`] set).
//! Each object is described (type, `sys.getsizeof`, refcount) to a [`Sink`]. [`snapshot`] does one walk
//! in one consistent read of the target ([`crate::pause`]).

pub mod anchors;
pub mod blocks;
mod build;
pub mod ftheaps;
pub mod full;
pub mod gclists;
pub mod gcpar;
pub mod graph;
pub mod names;
pub mod recheck;
pub mod record;
pub mod refs;
pub mod roots;
pub mod shares;
pub mod visited;
pub mod workers;

use std::time::Duration;

use crate::cpython::pymalloc::{Arenas, Located};
use crate::cpython::types::{self, Types};
use crate::discovery::{self, Interpreter};
use crate::error::{Error, Result};
use crate::memory::maps::Maps;
use crate::memory::readers::ThreadReaders;
use crate::pause::{self, ReadOptions, Source, View, Work};
use crate::process::Target;
pub use gclists::walk_gc;

/// One object, as the walk describes it.
#[derive(Clone, Copy, Debug)]
pub struct ObjectRecord {
    pub addr: u64,
    pub type_addr: u64,
    pub size: u64,
    pub size_exact: bool,
    pub refcount: u64,
    pub immortal: bool,
    /// 0, 1, 2 for the generations, [`gc::PERMANENT`] for the permanent generation, [`gc::UNTRACKED`]
    /// for objects the full-heap walk found outside the GC lists.
    pub list: usize,
}

/// What a walk of the GC lists found, besides the objects.
#[derive(Clone, Debug, Default)]
pub struct WalkSummary {
    pub generations: [u64; 3],
    pub permanent: u64,
    pub interpreters: usize,
    /// A list broke off (only in `--nonblocking` mode).
    pub broken_lists: u64,
    /// Free-threaded: heap pages whose free lists did not add up, skipped or taken as they were (only
    /// in `--nonblocking` mode).
    pub inconsistent_pages: u64,
    /// Objects whose type or size could not be read (skipped).
    pub unreadable: u64,
    /// Objects sized by an approximation (types with their own `__sizeof__`).
    pub approximate_sizes: u64,
    /// A collection was running during the walk (only possible in `--nonblocking` mode).
    pub collecting: bool,
    /// Full-heap walk: objects found beyond the GC lists.
    pub untracked: u64,
    /// Full-heap walk: objects whose references could not be decoded (their referents may be missing).
    pub decode_errors: u64,
    /// The walk covered the whole heap (not only the GC lists).
    pub full: bool,
    /// What the checks of conservative candidates found.
    pub conservative: blocks::Scanned,
    /// Without a pause: how many of a sample of the objects found had changed once the walk was over.
    pub changed: Option<recheck::Changed>,
}

/// How to take a snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    /// Read without stopping the target (results may be inconsistent).
    pub nonblocking: bool,
    /// Give up on the whole snapshot after this long.
    pub timeout: Duration,
    /// Most time the target may stay stopped; the walk is cut short (and says so) past it.
    pub max_pause: Duration,
    /// How many times to retry while a collection is running.
    pub collection_retries: u32,
    /// Bytes the page cache may hold.
    pub cache_bytes: u64,
    /// Walk every reachable object (coverage "full-heap"), not only the GC lists ("gc-tracked").
    pub full: bool,
    /// Full walk: copy the target's writable memory while it is stopped and walk the copy after
    /// resuming it, when that copy takes at most this many bytes (None: half the target's RSS).
    pub max_memory: Option<u64>,
    /// Report every object to the sink one by one (`Sink::object`), on one thread: for sinks that need
    /// each object's address (`stat`).
    pub per_object: bool,
    /// A directory where a copy that does not fit `max_memory` may be made in a file (`dump`).
    pub spill: Option<&'static std::path::Path>,
    /// Threads of the full walk (None: as many as memspy may use, at most 8; see [`workers::threads`]).
    pub threads: Option<usize>,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            nonblocking: false,
            timeout: Duration::from_secs(60),
            max_pause: Duration::from_secs(10),
            collection_retries: 50,
            cache_bytes: 256 << 20,
            full: false,
            max_memory: None,
            per_object: false,
            spill: None,
            threads: None,
        }
    }
}

/// The result of one walk, before aggregation.
pub struct Walked {
    pub summary: WalkSummary,
    pub pause: Duration,
    pub elapsed: Duration,
    /// The pause budget ran out and the walk was cut short.
    pub pause_budget_spent: bool,
    /// Tries given up and started again (a collection running, lists caught mid-update).
    pub retries: u32,
}

/// What receives the objects of a walk.
pub trait Sink {
    /// Forget what was received so far (the walk starts over).
    fn reset(&mut self);
    fn object(&mut self, rec: &ObjectRecord, ty: &types::TypeInfo);
    /// Many objects outside the GC lists at once, all of type `ty` (the parallel full walk sums
    /// them per type and thread): the same as `count` calls of [`Self::object`] with these totals.
    fn untracked(&mut self, totals: &TypeTotals, ty: &types::TypeInfo);
    /// Many objects of the GC list `list` at once, all of type `ty` (the parallel walk of the GC lists
    /// sums them per type, list and thread): the same as `count` calls of [`Self::object`] with these
    /// totals and `list`.
    fn tracked(&mut self, totals: &TypeTotals, ty: &types::TypeInfo, list: usize);
    /// Whether the sink keeps the graph's objects one by one ([`graph::Objects`]): then a recording
    /// walk may run on several threads and hand it each worker's objects through [`Self::objects`].
    fn keeps_objects(&self) -> bool {
        false
    }
    /// One worker's objects, one by one (only called when [`Self::keeps_objects`]); its totals per type
    /// come through [`Self::untracked`] besides.
    fn objects(&mut self, _part: graph::Objects) {}
}

/// The sum of several objects of one type found outside the GC lists.
#[derive(Clone, Copy, Debug, Default)]
pub struct TypeTotals {
    pub type_addr: u64,
    pub count: u64,
    pub bytes: u64,
    pub refcount: u64,
    pub immortal: u64,
    /// Of those, sized by an approximation.
    pub approximate: u64,
}

impl TypeTotals {
    pub fn add(&mut self, rec: &ObjectRecord) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(rec.size);
        if rec.immortal {
            self.immortal += 1;
        } else {
            self.refcount = self.refcount.saturating_add(rec.refcount);
        }
        self.approximate += !rec.size_exact as u64;
    }

    /// Adds the sums of `o` (objects of the same type).
    pub fn merge(&mut self, o: &TypeTotals) {
        self.count += o.count;
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.refcount = self.refcount.saturating_add(o.refcount);
        self.immortal += o.immortal;
        self.approximate += o.approximate;
    }
}

impl SnapshotOptions {
    /// How the pause layer reads for this walk.
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            nonblocking: self.nonblocking,
            timeout: self.timeout,
            max_pause: self.max_pause,
            collection_retries: self.collection_retries,
            source: if self.full {
                Source::Heap { cache_bytes: self.cache_bytes, max_memory: self.max_memory, spill: self.spill }
            } else {
                Source::Cached { bytes: self.cache_bytes }
            },
        }
    }
}

/// One walk as a [`Work`] of the pause layer.
struct HeapWalk<'s> {
    sink: &'s mut dyn Sink,
    full: bool,
    free_threaded: bool,
    per_object: bool,
    /// Threads of the full walk.
    threads: usize,
    /// Where pymalloc's state is, and the target's mappings as the walk began: to check conservative
    /// candidates against the allocators.
    pymalloc: Option<Located>,
    maps: Maps,
    summary: WalkSummary,
    /// The visited bitmap, its blocks faulted in before the pause (full walks through the chunk cache).
    visited: Option<visited::Visited>,
    /// Record the object graph (see [`graph`]): words reserved before the pause, and what was recorded.
    record: Option<usize>,
    recorded: Option<(graph::Recorder, visited::Visited)>,
    /// Without a pause: a sample of the objects found (address, type; see [`recheck`]).
    samples: Vec<(u64, u64)>,
    /// The copy a recording walk read (a copy in a file), kept for reading the same instant again.
    copy: Option<pause::FileCopy<crate::memory::RemoteMemory>>,
    /// What the workers of a recording walk record into, made by `prepare` (see `FullWalk::spares`).
    spares: Vec<(Option<graph::Recorder>, graph::Objects)>,
    direction_spares: Vec<graph::Objects>,
}

impl Work for HeapWalk<'_> {
    type Output = WalkSummary;

    fn what(&self) -> &'static str {
        if self.full {
            "walking the heap"
        } else if self.free_threaded {
            ftheaps::WHAT
        } else {
            gclists::WHAT
        }
    }

    fn prepare(&mut self, heap_bytes: u64) {
        // As many blocks of 1 MiB of address space as that memory.
        self.visited = Some(visited::Visited::with_spare((heap_bytes >> 20) as usize));
        if self.record.is_some() {
            // About one possible reference per 32 bytes of heap, shared by the walk's threads; the
            // first thread's part is allocated (and faulted in) now, the others' as they record.
            let words = (heap_bytes / 32) as usize;
            self.record = Some(words / self.threads);
            if self.recorded.is_none() {
                self.recorded = Some((graph::Recorder::with_capacity(words / self.threads), Default::default()));
            }
            // Each worker's objects' arrays (room for one object per two words, of which half, about
            // what a heap of small objects fills, is faulted in now rather than while the target is
            // stopped), and the recorders of the workers after the first (faulted in).
            let per = words / self.threads;
            self.spares = (0..self.threads)
                .map(|i| {
                    let rec = (i > 0).then(|| graph::Recorder::with_capacity(per));
                    (rec, graph::Objects::faulted(per / 2, per / 4))
                })
                .collect();
            // And the GC lists' objects, reached from both ends: fewer (containers only).
            self.direction_spares = (0..2).map(|_| graph::Objects::faulted(per / 4, per / 8)).collect();
        }
    }

    fn run<M: ThreadReaders>(&mut self, view: &View<'_, M>) -> Result<WalkSummary> {
        let View { mem, interp, interps, control, .. } = view;
        let l = &interp.layout;
        self.sink.reset();
        self.summary = WalkSummary { full: self.full, ..Default::default() };
        let summary = &mut self.summary;
        let sink = &mut *self.sink;
        let mut types = Types::new(l);
        // Memory that may change under the walk (`--nonblocking`) may hold lists caught mid-update: keep
        // what can be read. Otherwise an inconsistent list is an error (and the read is tried again).
        let strict = view.consistent;
        if self.full {
            let mut fw = full::FullWalk::new(*mem, l);
            let arenas = self.pymalloc.as_ref().and_then(|at| match Arenas::read(*mem, l, at) {
                Ok(a) => a,
                Err(e) => {
                    log::info!("pymalloc's arenas: {e}");
                    None
                }
            });
            fw.alloc = blocks::Allocators::new(&self.maps, arenas);
            if l.mimalloc.is_some() {
                let addrs: Vec<u64> = interps.iter().map(|i| i.addr).collect();
                let segments = crate::cpython::mimalloc::Segments::read(*mem, l, &addrs)?;
                fw.alloc = std::mem::take(&mut fw.alloc).with_mimalloc(segments);
            }
            fw.visited = self.visited.take().unwrap_or_default();
            fw.samples = (!strict).then(Vec::new);
            fw.control = control.clone();
            // A stopped target's lists are walked from both ends on two threads when that can be done.
            // Objects reported one by one come from one thread, unless the walk records the graph
            // for a sink that takes each worker's objects.
            fw.one_thread = self.per_object && !(self.record.is_some() && sink.keeps_objects());
            fw.threads = self.threads;
            if let Some(words) = self.record {
                fw.spares = std::mem::take(&mut self.spares);
                fw.direction_spares = std::mem::take(&mut self.direction_spares);
                fw.graph = Some(match self.recorded.take() {
                    Some((r, _)) => graph::Recorder::reuse(r),
                    None => graph::Recorder::with_capacity(words),
                });
            }
            let parallel = if l.mimalloc.is_some() {
                // Free-threaded: the tracked objects are in the heaps (one thread), not in lists.
                let mut counts = Default::default();
                Some(ftheaps::walk_heaps(
                    *mem,
                    l,
                    interps,
                    &mut types,
                    strict,
                    control,
                    summary,
                    &mut counts,
                    |r, t| {
                        fw.learn_type_type(r.addr);
                        fw.mark_tracked(r.addr, r.type_addr);
                        if t.is_metatype {
                            fw.note_type_keys(r.addr);
                        }
                        sink.object(r, t)
                    },
                ))
            } else if strict && !fw.one_thread && self.threads > 1 {
                // (A walk that reports objects one by one has one thread report them, unless it records
                // the graph: then each thread keeps its own, see `one_thread`.)
                gcpar::walk_gc_parallel(*mem, interp, interps, &mut fw, control, summary, sink)
            } else {
                None
            };
            let r = match parallel {
                Some(r) => r,
                None => walk_gc(*mem, l, interps, &mut types, strict, control, summary, |r, t| {
                    fw.learn_type_type(r.addr);
                    fw.mark_tracked(r.addr, r.type_addr);
                    if t.is_metatype {
                        fw.note_type_keys(r.addr);
                    }
                    sink.object(r, t)
                }),
            };
            log::debug!(
                "GC lists walked ({:?} into the pause)",
                view.paused_at.map(|p| p.elapsed()).unwrap_or_default()
            );
            r?;
            let r = workers::walk_rest(*mem, interp, interps, &mut types, &mut fw, summary, sink);
            self.samples = fw.samples.take().unwrap_or_default();
            if let Some(g) = fw.graph.take() {
                self.recorded = Some((g, std::mem::take(&mut fw.visited)));
            }
            r?;
        } else {
            let samples = &mut self.samples;
            samples.clear();
            let mut each = |r: &ObjectRecord, t: &crate::cpython::types::TypeInfo| {
                if !strict && recheck::sampled(r.addr) {
                    samples.push((r.addr, r.type_addr));
                }
                sink.object(r, t)
            };
            if l.mimalloc.is_some() {
                let mut counts = Default::default();
                ftheaps::walk_heaps(*mem, l, interps, &mut types, strict, control, summary, &mut counts, &mut each)?;
            } else {
                walk_gc(*mem, l, interps, &mut types, strict, control, summary, &mut each)?;
            }
        }
        log::debug!("{} types", types.len());
        // A live interpreter always holds objects: a walk without a pause that found none at all met
        // a heap changing under it (its first reads failed or led nowhere). Read again rather than
        // report an empty heap.
        if !strict && summary.generations.iter().sum::<u64>() + summary.permanent + summary.untracked == 0 {
            return Err(Error::Corrupt("a walk without a pause found no object: the heap changed under it".into()));
        }
        Ok(summary.clone())
    }

    fn partial(&mut self) -> Option<WalkSummary> {
        Some(self.summary.clone())
    }

    fn keep_copy(&mut self, copy: pause::FileCopy<crate::memory::RemoteMemory>) {
        if self.record.is_some() {
            self.copy = Some(copy);
        }
    }
}

/// Takes one snapshot of the heap (the GC lists, or with `opts.full` every reachable object) in one
/// consistent read of the target.
pub fn snapshot(target: &Target, interp: &Interpreter, opts: &SnapshotOptions, sink: &mut dyn Sink) -> Result<Walked> {
    let (pymalloc, maps) = if opts.full {
        let maps = target.current_maps()?;
        (discovery::pymalloc::located(target, interp), maps)
    } else {
        (None, Maps::default())
    };
    let mut work = HeapWalk {
        sink,
        full: opts.full,
        free_threaded: interp.layout.mimalloc.is_some(),
        per_object: opts.per_object,
        pymalloc,
        maps,
        summary: WalkSummary::default(),
        visited: None,
        record: None,
        recorded: None,
        samples: Vec::new(),
        copy: None,
        spares: Vec::new(),
        direction_spares: Vec::new(),
        threads: workers::threads(opts.threads),
    };
    let mut o = pause::read(target, interp, &opts.read_options(), &mut work)?;
    if opts.nonblocking {
        o.value.changed = rechecked(target, interp, &mut work.samples);
    }
    Ok(Walked {
        summary: o.value,
        pause: o.pause,
        elapsed: o.elapsed,
        pause_budget_spent: o.cut_short,
        retries: o.retries,
    })
}

/// A walk that did not stop the target: its sample of the objects found, read again now (none when
/// it sampled nothing).
fn rechecked(target: &Target, interp: &Interpreter, samples: &mut Vec<(u64, u64)>) -> Option<recheck::Changed> {
    if samples.is_empty() {
        return None;
    }
    let t = std::time::Instant::now();
    // Read one by one (a cache would read the whole heap again for heads a few KiB apart).
    let changed = recheck::recheck(&target.memory(), &interp.layout, samples);
    log::info!(
        "{} of {} objects sampled changed under the walk ({:.1}%; read again in {:?})",
        changed.changed,
        changed.checked,
        changed.percent(),
        t.elapsed()
    );
    Some(changed)
}

/// Takes one full snapshot of the heap that records the object graph ([`graph::Graph`]), on one thread;
/// every object also goes to `also`.
pub fn capture(
    target: &Target,
    interp: &Interpreter,
    opts: &SnapshotOptions,
    also: &mut dyn Sink,
) -> Result<(Walked, graph::Graph)> {
    capture_keeping_copy(target, interp, opts, also).map(|(w, g, _)| (w, g))
}

/// The memory a walk read, when it was a copy in a file (`SnapshotOptions::spill`): the instant the
/// graph is of, readable after the walk.
pub type Copy = pause::FileCopy<crate::memory::RemoteMemory>;

/// [`capture`], returning the copy the walk read when it was one in a file.
pub fn capture_keeping_copy(
    target: &Target,
    interp: &Interpreter,
    opts: &SnapshotOptions,
    also: &mut dyn Sink,
) -> Result<(Walked, graph::Graph, Option<Copy>)> {
    let maps = target.current_maps()?;
    let rss = target.rss().unwrap_or(0);
    let threads = workers::threads(opts.threads);
    // Room for about one object per 64 bytes of the target's RSS, this thread's share: reserved
    // address space (nothing faulted in), so that the arrays do not move while the target is stopped.
    let mut objects = graph::Objects::with_capacity((rss / 64) as usize / threads);
    let mut tee = graph::Tee { objects: &mut objects, also };
    let mut work = HeapWalk {
        sink: &mut tee,
        full: true,
        free_threaded: interp.layout.mimalloc.is_some(),
        per_object: true,
        pymalloc: discovery::pymalloc::located(target, interp),
        maps,
        summary: WalkSummary::default(),
        visited: None,
        record: Some(0),
        recorded: None,
        samples: Vec::new(),
        copy: None,
        spares: Vec::new(),
        direction_spares: Vec::new(),
        threads,
    };
    // The recording and the objects' arrays grow while the read cache is full: a smaller cache (1/6
    // of the target's RSS, not 3/8) keeps memspy's peak at 3/4 of the target's RSS at little cost in time.
    let cache_bytes = opts.cache_bytes.min((rss / 6).max(64 << 20));
    let opts = SnapshotOptions { full: true, per_object: true, cache_bytes, ..opts.clone() };
    let mut o = pause::read(target, interp, &opts.read_options(), &mut work)?;
    if opts.nonblocking {
        o.value.changed = rechecked(target, interp, &mut work.samples);
    }
    let (rec, visited) = work.recorded.take().ok_or_else(|| Error::Other("the walk recorded no graph".into()))?;
    let copy = work.copy.take();
    drop(work);
    log::info!(
        "graph: {} objects, {} words recorded ({} MiB); memspy's RSS {} MiB",
        objects.len(),
        rec.words(),
        (rec.words() * 8) >> 20,
        crate::process::rss_bytes(std::process::id() as i32).unwrap_or(0) >> 20
    );
    let g = graph::Graph::build(rec, visited, objects, threads)?;
    let walked = Walked {
        summary: o.value,
        pause: o.pause,
        elapsed: o.elapsed,
        pause_budget_spent: o.cut_short,
        retries: o.retries,
    };
    Ok((walked, g, copy))
}
