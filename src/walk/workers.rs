//! The reference walk on several threads: each worker owns a share of the address space (1 MiB stripes,
//! see [`owner`]), marks and reports only its own objects, and sends the candidates it finds for the
//! others in batches; the walk ends when every worker is idle and nothing is in flight.

use std::sync::atomic::{AtomicBool, Ordering};

use python_bindings::Layout;

use super::blocks::{Allocators, Scanned};
use super::full::{FullWalk, TypeCaches, WHAT};
use super::record::{Objects, Recorder};
use super::refs;
use super::shares::{owner, Part, Shared, MAX_WORKERS, MOST_WORKERS, SENT_FILTER};
use super::visited::Visited;
use super::{Sink, TypeTotals, WalkSummary};
use crate::cpython::types::{TypeInfo, Types};
use crate::discovery::Interpreter;
use crate::error::{Error, Result};
use crate::memory::fasthash::{AddrMap, AddrSet};
use crate::memory::readers::ThreadReaders;
use crate::memory::Memory;
use crate::pause::{Control, Interp};

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
    alloc: Allocators,
    /// Sample the objects found ([`FullWalk::samples`]).
    sampling: bool,
}

/// What one worker of a parallel walk hands back.
struct WorkerOut {
    found: u64,
    decode_errors: u64,
    scanned: Scanned,
    approximate_sizes: u64,
    visited_bytes: u64,
    /// Per type: the objects it reported, and the type's information.
    totals: Vec<(TypeTotals, TypeInfo)>,
    cache: String,
    /// The worker stopped early (what it found so far is still reported: a partial walk).
    error: Option<Error>,
    /// Its share of the visited set, and when the walk records the graph, what it recorded and the
    /// objects one by one.
    visited: Visited,
    recorded: Option<(Recorder, Objects)>,
    samples: Vec<(u64, u64)>,
}

impl<'a, M: Memory + ?Sized> FullWalk<'a, M> {
    fn seed(&self) -> Seed<'a> {
        Seed {
            l: self.l,
            caches: self.caches.clone(),
            control: self.control.clone(),
            alloc: self.alloc.clone(),
            sampling: self.samples.is_some(),
        }
    }

    /// A worker of a parallel walk over `mem`.
    fn worker(
        mem: &'a M,
        seed: Seed<'a>,
        visited: Visited,
        stack: Vec<u64>,
        part: Part<'a>,
        graph: Option<Recorder>,
    ) -> Self {
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
            alloc: seed.alloc,
            native: AddrSet::default(),
            scanned: Scanned::default(),
            one_thread: false,
            threads: 1,
            control: seed.control,
            current: 0,
            part: Some(part),
            graph,
            spares: Vec::new(),
            direction_spares: Vec::new(),
            samples: seed.sampling.then(Vec::new),
        }
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
            for e in b {
                if !self.visited.contains(e & !refs::TAGS) {
                    self.stack.push(e);
                }
            }
        }
        part.shared.outstanding.fetch_sub(k, Ordering::SeqCst);
        true
    }

    /// A worker with nothing to do: waits for a batch (true) or the end of the walk (false).
    pub(super) fn wait_for_work(&mut self) -> Result<bool> {
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
}

/// The threads of a parallel full walk: `chosen` (`--threads`), else the CPUs memspy may run on (its
/// CPU affinity and its cgroup's CPU quota, as the standard library counts them), at most
/// [`MAX_WORKERS`].
pub fn threads(chosen: Option<usize>) -> usize {
    chosen
        .unwrap_or_else(|| std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).min(MAX_WORKERS))
        .clamp(1, MOST_WORKERS)
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
    let n = if walk.one_thread { 1 } else { walk.threads };
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
        summary.conservative.add(&walk.scanned);
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
    // Recording the graph: each worker records into a recorder of its own (the first continues the
    // walk's, which holds the roots) and keeps its objects one by one for the sink.
    let recording = walk.graph.is_some() && sink.keeps_objects();
    let mut recorders: Vec<Option<Recorder>> = (0..n).map(|_| None).collect();
    // The workers' objects' arrays and recorders made before the pause, where there are (a walk tried
    // again makes new ones).
    let mut spares = std::mem::take(&mut walk.spares).into_iter();
    let mut spare_objects: Vec<Option<Objects>> = (0..n).map(|_| None).collect();
    if recording {
        let main = walk.graph.take().expect("a recorder");
        let room = main.words.capacity();
        recorders[0] = Some(main);
        for (i, r) in recorders.iter_mut().enumerate() {
            let (rec, objects) = spares.next().unzip();
            spare_objects[i] = objects;
            if i > 0 {
                *r = Some(rec.flatten().unwrap_or_else(|| Recorder::for_worker(room)));
            }
        }
    }
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
            .zip(recorders)
            .zip(spare_objects)
            .enumerate()
            .map(|(me, (((((pm, vis), stack), seed), rec), spare))| {
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
                        let mut w = FullWalk::worker(&pm, seed, vis, stack, part, rec);
                        // Room reserved (address space only, nothing faulted in) for about one object
                        // per two words, so that the arrays do not move while the target is stopped.
                        let room = w.graph.as_ref().map_or(0, |g| g.words.capacity() / 2);
                        let mut objects =
                            w.graph.is_some().then(|| spare.unwrap_or_else(|| Objects::with_capacity(room)));
                        w.pending = vec![mine];
                        w.mark_pending();
                        let mut types = Types::new(l);
                        let mut sum = WalkSummary::default();
                        // Sums per type, found through a small direct-mapped front (no hashing per object).
                        let mut totals: Vec<TypeTotals> = Vec::new();
                        let mut index: AddrMap<usize> = AddrMap::default();
                        let mut front = [(0u64, 0usize); 64];
                        let r = w.run(&mut types, &mut sum, &mut |r, info| {
                            if let Some(o) = objects.as_mut() {
                                o.object(r, info);
                            }
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
                            scanned: w.scanned,
                            approximate_sizes: sum.approximate_sizes,
                            visited_bytes: w.visited.bytes(),
                            totals: out,
                            cache: M::describe(&pm),
                            recorded: w.graph.take().zip(objects),
                            samples: w.samples.take().unwrap_or_default(),
                            visited: std::mem::take(&mut w.visited),
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
    let mut visited = Vec::with_capacity(n);
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
                summary.conservative.add(&w.scanned);
                summary.approximate_sizes += w.approximate_sizes;
                visited.push(w.visited);
                if let Some(s) = walk.samples.as_mut() {
                    s.extend(w.samples);
                }
                if let Some((rec, objects)) = w.recorded {
                    match walk.graph.as_mut() {
                        Some(g) => g.absorb(rec),
                        None => walk.graph = Some(rec),
                    }
                    sink.objects(objects);
                }
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
    if recording {
        walk.visited = Visited::join(visited);
    }
    result
}
