//! The heap walk: visit every object of every GC generation of every interpreter, and describe each one
//! (its type, `sys.getsizeof`, refcount) to a sink.

pub mod full;
pub mod gcpar;
pub mod refs;
pub mod visited;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::cpython::objects::{getsizeof, Types, HEAD_BYTES};
use crate::cpython::{gc, objects};
use crate::discovery::{self, Interpreter};
use crate::error::{Error, Result};
use crate::memory::maps::Maps;
use crate::memory::{chunks, copy, CachedMemory, Memory, RemoteMemory};
use crate::process::Target;

/// Mappings are page-granular.
const PAGE: u64 = 4096;

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks a running walk to stop as soon as possible (async-signal-safe: SIGINT/SIGTERM handlers call it).
/// The walk returns [`Error::Interrupted`] and the target is resumed as usual.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Set while a snapshot runs when its target dies (a watcher thread polls it): the walk stops at the
/// next object instead of reading on from a target that is stopped with a SIGKILL pending.
static TARGET_GONE: AtomicBool = AtomicBool::new(false);

/// Hidden knobs for memspy's own tests (not documented for users; they never change what is read):
/// `MEMSPY_TEST_WALK_DELAY_US=N` sleeps N µs per object walked, to catch a walk in the middle;
/// `MEMSPY_TEST_PANIC_IN_WALK=N` panics at the N-th object (default 1000), with the target paused,
/// from the K-th snapshot of the process on (`MEMSPY_TEST_PANIC_FROM_SNAPSHOT=K`, default 1).
#[derive(Clone, Copy, Debug, Default)]
struct TestHooks {
    delay: Option<Duration>,
    panic_at: Option<u64>,
    panic_from: u64,
    /// `MEMSPY_TEST_WALK_THREADS=N`: threads of the full walk's reference phase (default: up to 2).
    threads: Option<usize>,
}

/// Snapshots taken by this process so far (for `MEMSPY_TEST_PANIC_FROM_SNAPSHOT`).
static SNAPSHOTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn test_hooks() -> TestHooks {
    static HOOKS: OnceLock<TestHooks> = OnceLock::new();
    let mut hooks = *HOOKS.get_or_init(|| {
        let num = |name: &str| std::env::var(name).ok().map(|v| v.trim().parse::<u64>().unwrap_or(1000));
        TestHooks {
            delay: num("MEMSPY_TEST_WALK_DELAY_US").filter(|us| *us > 0).map(Duration::from_micros),
            panic_at: num("MEMSPY_TEST_PANIC_IN_WALK").map(|n| n.max(1)),
            panic_from: num("MEMSPY_TEST_PANIC_FROM_SNAPSHOT").unwrap_or(1),
            threads: std::env::var("MEMSPY_TEST_WALK_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok()),
        }
    });
    if SNAPSHOTS.load(Ordering::SeqCst) < hooks.panic_from {
        hooks.panic_at = None;
    }
    hooks
}

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
}

/// Decodes a GC-tracked object of `list` whose head was read into `head`: its record (size as
/// `sys.getsizeof` computes it, the type's basic size when that fails) and its type; None when the type
/// cannot be read.
pub(crate) fn decode_tracked<'t, M: Memory + ?Sized>(
    mem: &M,
    l: &python_bindings::Layout,
    types: &'t mut Types,
    obj: u64,
    head: &[u8; HEAD_BYTES],
    list: usize,
) -> Option<(ObjectRecord, &'t objects::TypeInfo)> {
    let raw_ref = crate::memory::le_u64(head, l.ob_refcnt).unwrap_or(0);
    let type_addr = crate::memory::le_u64(head, l.ob_type).unwrap_or(0);
    let info = match types.get(mem, type_addr) {
        Ok(i) => i,
        Err(e) => {
            log::debug!("object {obj:#x}: type {type_addr:#x}: {e}");
            return None;
        }
    };
    let (size, exact) = match getsizeof(mem, l, obj, head, info) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("object {obj:#x} ({}): size: {e}", info.name);
            (info.basicsize, false)
        }
    };
    let (refcount, immortal) = l.decode_refcount(raw_ref);
    Some((ObjectRecord { addr: obj, type_addr, size, size_exact: exact, refcount, immortal, list }, info))
}

/// Walks the GC lists of every interpreter. With `strict`, inconsistent lists are an error (the target
/// is paused, so they mean memspy misread the layout); without, the walk keeps what it could read.
pub fn walk_gc<M: Memory + ?Sized>(
    mem: &M,
    interp: &Interpreter,
    types: &mut Types,
    strict: bool,
    deadline: Option<Instant>,
    summary: &mut WalkSummary,
    mut sink: impl FnMut(&ObjectRecord, &objects::TypeInfo),
) -> Result<()> {
    let l = &interp.layout;
    let interps = discovery::interpreters(mem, interp)?;
    summary.interpreters = interps.len();
    let mut head = [0u8; HEAD_BYTES];
    let hooks = test_hooks();
    let mut n_walked = 0u64;
    let mut states = Vec::with_capacity(interps.len());
    for ip in interps {
        states.push(gc::GcState::read(mem, l, ip)?);
    }
    // Every list head of every interpreter: a walk that reaches another list's head has left its own.
    let all_heads: Vec<u64> = states.iter().flat_map(|s| s.heads).collect();
    for state in states {
        summary.collecting |= state.collecting;
        if strict {
            state.validate(mem)?;
        }
        for (list, head_addr) in state.heads.iter().enumerate() {
            let others: Vec<u64> = all_heads.iter().copied().filter(|h| h != head_addr).collect();
            let end = gc::walk_list_until(mem, *head_addr, l.gc_head_size, strict, &others, |obj| {
                n_walked += 1;
                if let Some(d) = hooks.delay {
                    std::thread::sleep(d);
                }
                if hooks.panic_at == Some(n_walked) {
                    panic!("MEMSPY_TEST_PANIC_IN_WALK: panicking at object {n_walked} of the walk, as asked");
                }
                if stop_requested() {
                    return Err(Error::Interrupted);
                }
                if TARGET_GONE.load(Ordering::Relaxed) {
                    return Err(Error::Corrupt("the target went away during the walk".into()));
                }
                if n_walked.is_multiple_of(256) || hooks.delay.is_some() {
                    if let Some(d) = deadline {
                        if Instant::now() > d {
                            return Err(Error::Timeout { seconds: 0.0, what: "walking the GC lists".into() });
                        }
                    }
                }
                if mem.read(obj, &mut head).is_err() {
                    // The object sits at the end of a mapping: read up to the end of its page (mappings
                    // are page-granular), so every field of a small object is still there.
                    head.fill(0);
                    let avail = (PAGE - (obj % PAGE)).min(HEAD_BYTES as u64) as usize;
                    if avail < 16 || mem.read(obj, &mut head[..avail]).is_err() {
                        summary.unreadable += 1;
                        return Ok(());
                    }
                }
                let Some((rec, info)) = decode_tracked(mem, l, types, obj, &head, list) else {
                    summary.unreadable += 1;
                    return Ok(());
                };
                if !rec.size_exact {
                    summary.approximate_sizes += 1;
                }
                sink(&rec, info);
                Ok(())
            })?;
            if end.broken {
                summary.broken_lists += 1;
            }
            if list == gc::PERMANENT {
                summary.permanent += end.objects;
            } else {
                summary.generations[list] += end.objects;
            }
        }
    }
    Ok(())
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
}

/// What receives the objects of a walk.
pub trait Sink {
    /// Forget what was received so far (the walk starts over).
    fn reset(&mut self);
    fn object(&mut self, rec: &ObjectRecord, ty: &objects::TypeInfo);
    /// Many objects outside the GC lists at once, all of type `ty` (the parallel full walk sums
    /// them per type and thread): the same as `count` calls of [`Self::object`] with these totals.
    fn untracked(&mut self, totals: &TypeTotals, ty: &objects::TypeInfo);
    /// Many objects of the GC list `list` at once, all of type `ty` (the parallel walk of the GC lists
    /// sums them per type, list and thread): the same as `count` calls of [`Self::object`] with these
    /// totals and `list`.
    fn tracked(&mut self, totals: &TypeTotals, ty: &objects::TypeInfo, list: usize);
}

/// The sum of several objects of one type found outside the GC lists.
#[derive(Clone, Copy, Debug, Default)]
pub struct TypeTotals {
    pub type_addr: u64,
    pub count: u64,
    pub bytes: u64,
    pub refcount: u64,
    pub immortal: u64,
}

impl TypeTotals {
    pub fn add(&mut self, rec: &ObjectRecord) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(rec.size);
        self.refcount = self.refcount.saturating_add(rec.refcount);
        self.immortal += rec.immortal as u64;
    }
}

/// A memory the full walk can read from several threads: `fork` gives one reader per thread (empty:
/// walk in one thread). `owner` tells which thread owns an address, so a cache can hand each thread
/// what it holds of that thread's share.
pub trait Fork: Memory {
    type Part<'s>: Memory + Send
    where
        Self: 's;
    fn fork(&self, n: usize, owner: &dyn Fn(u64) -> usize) -> Vec<Self::Part<'_>>;
    /// Takes back what the readers of [`Self::fork`] cached (so that a later fork can hand it out again).
    fn rejoin<'s>(&'s self, _parts: Vec<Self::Part<'s>>) {}
    /// The address ranges that may hold objects (readable memory), for the parallel walk of the GC
    /// lists; empty when unknown (the lists are then walked by one thread).
    fn object_ranges(&self) -> Vec<(u64, u64)> {
        Vec::new()
    }
    /// Statistics of one reader, for `-vv` logs.
    fn describe(_part: &Self::Part<'_>) -> String {
        String::new()
    }
}

impl Fork for chunks::ChunkCache<RemoteMemory> {
    type Part<'s> = chunks::ChunkCache<RemoteMemory>;
    fn fork(&self, n: usize, owner: &dyn Fn(u64) -> usize) -> Vec<Self::Part<'_>> {
        self.split(n, owner)
    }
    fn rejoin<'s>(&'s self, parts: Vec<Self::Part<'s>>) {
        self.absorb(parts)
    }
    fn object_ranges(&self) -> Vec<(u64, u64)> {
        self.ranges().to_vec()
    }
    fn describe(part: &Self::Part<'_>) -> String {
        format!("{:?}", part.stats())
    }
}

impl Fork for copy::CopiedMemory<RemoteMemory> {
    type Part<'s> = &'s copy::CopiedMemory<RemoteMemory>;
    fn fork(&self, n: usize, _owner: &dyn Fn(u64) -> usize) -> Vec<Self::Part<'_>> {
        vec![self; n]
    }
    fn object_ranges(&self) -> Vec<(u64, u64)> {
        self.ranges()
    }
}

impl Fork for CachedMemory<RemoteMemory> {
    type Part<'s> = RemoteMemory;
    fn fork(&self, _n: usize, _owner: &dyn Fn(u64) -> usize) -> Vec<Self::Part<'_>> {
        Vec::new()
    }
}

/// Takes one snapshot of the heap (the GC lists, or with `opts.full` every reachable object): pauses the
/// target (unless non-blocking), walks, resumes. Retries while a collection runs.
pub fn snapshot(target: &Target, interp: &Interpreter, opts: &SnapshotOptions, sink: &mut dyn Sink) -> Result<Walked> {
    let start = Instant::now();
    let deadline = start + opts.timeout;
    SNAPSHOTS.fetch_add(1, Ordering::SeqCst);
    let mut tries = 0;
    let mut inconsistent = 0;
    loop {
        tries += 1;
        if stop_requested() {
            return Err(Error::Interrupted);
        }
        let t = Try { target, interp, opts, start, deadline, tries };
        let outcome = if let Some(regions) = copy_plan(target, opts) {
            copy_attempt(t, sink, &regions)
        } else if opts.full {
            let maps =
                Maps::read(target.pid).map_err(|e| Error::Other(format!("PID {}: reading maps: {e}", target.pid)))?;
            // The cache may hold 3/8 of the target's resident memory (at least 64 MiB): with the visited
            // bitmap and the work stack, memspy stays under half the target's RSS.
            let rss = crate::process::rss_bytes(target.pid);
            let budget = rss.map(|r| (r / 8 * 3).max(64 << 20)).unwrap_or(opts.cache_bytes);
            let budget = budget.min(opts.cache_bytes.max(64 << 20));
            let mem = chunks::ChunkCache::new(RemoteMemory::new(target.pid), chunks::readable_ranges(&maps), budget);
            // The buffers the walk will fill (at most the cache's budget, the writable memory and the
            // target's resident memory: mapped is not resident, e.g. thread stacks) are allocated and
            // faulted in while the target still runs, so that the pause pays for no page faults; so are
            // the blocks of the visited bitmap (1 MiB of address space each, as many as that memory).
            let t0 = Instant::now();
            let heap = copy::copy_size(&copy::regions_to_copy(&maps)).min(rss.unwrap_or(0));
            mem.prefault(heap.min(budget));
            let visited = visited::Visited::with_spare((heap >> 20) as usize);
            log::debug!("read cache and visited bitmap faulted in: {:?}", t0.elapsed());
            let r = attempt(&mem, t, sink, None, visited);
            log::debug!("walk: {:?}, chunk cache {:?}", start.elapsed(), mem.stats());
            r
        } else {
            let mem = CachedMemory::new(RemoteMemory::new(target.pid), opts.cache_bytes);
            let r = attempt(&mem, t, sink, None, visited::Visited::new());
            log::debug!("walk: {:?}, cache {:?}", start.elapsed(), mem.stats());
            r
        };
        match outcome {
            Attempt::Done(r) => return r,
            Attempt::Retry => continue,
            Attempt::Inconsistent(e) => {
                // A thread stopped in the middle of linking or unlinking an object (a handful of
                // instructions in _PyObject_GC_TRACK/UNTRACK) leaves a list half-linked: pause again.
                inconsistent += 1;
                if inconsistent > MAX_INCONSISTENT_RETRIES || Instant::now() > deadline {
                    return Err(e);
                }
                log::debug!("walk failed ({e}); retrying ({inconsistent})");
                std::thread::sleep(Duration::from_millis(inconsistent as u64));
            }
        }
    }
}

/// How many times a paused walk that found the lists mid-update is retried.
const MAX_INCONSISTENT_RETRIES: u32 = 10;

enum Attempt {
    Done(Result<Walked>),
    /// A collection was running: retry (the caller already waited).
    Retry,
    /// The walk of a stopped target found inconsistent data: retry.
    Inconsistent(Error),
}

/// The mappings to copy for a copy-then-walk snapshot, when it applies: a full, blocking walk whose
/// copy fits in the memory budget (`max_memory`, by default half the target's RSS).
fn copy_plan(target: &Target, opts: &SnapshotOptions) -> Option<Vec<(u64, u64)>> {
    let hooks = test_hooks();
    if !opts.full || opts.nonblocking || hooks.delay.is_some() || hooks.panic_at.is_some() {
        return None;
    }
    let maps = Maps::read(target.pid).ok()?;
    let regions = copy::regions_to_copy(&maps);
    let size = copy::copy_size(&regions);
    let limit = match opts.max_memory {
        Some(m) => m,
        None => crate::process::rss_bytes(target.pid)? / 2,
    };
    log::debug!("copy of the writable mappings: {} MiB, budget {} MiB", size >> 20, limit >> 20);
    (size <= limit).then_some(regions)
}

/// Whether a collection is running in any interpreter (its lists are then in flux).
fn collection_running<M: Memory + ?Sized>(mem: &M, interp: &Interpreter) -> Result<bool> {
    let mut any = false;
    for ip in discovery::interpreters(mem, interp)? {
        any |= gc::GcState::read(mem, &interp.layout, ip)?.collecting;
    }
    Ok(any)
}

/// What every try of one snapshot works with.
#[derive(Clone, Copy)]
struct Try<'a> {
    target: &'a Target,
    interp: &'a Interpreter,
    opts: &'a SnapshotOptions,
    /// When the snapshot started, and when it must give up (`--timeout`).
    start: Instant,
    deadline: Instant,
    /// This try's number, from 1.
    tries: u32,
}

impl Try<'_> {
    /// A collection was running (the target is resumed again): give up past the retries or the
    /// deadline, else wait a little longer each time and retry.
    fn retry_after_collection(&self) -> Attempt {
        if self.tries > self.opts.collection_retries || Instant::now() > self.deadline {
            return Attempt::Done(Err(Error::CollectionInProgress { pid: self.target.pid, tries: self.tries }));
        }
        log::debug!("a collection is running; retrying ({})", self.tries);
        std::thread::sleep(Duration::from_millis(2 * self.tries as u64));
        Attempt::Retry
    }
}

/// Copy-then-walk: pause, check no collection runs, copy the writable mappings, resume, walk the copy.
fn copy_attempt(t: Try<'_>, sink: &mut dyn Sink, regions: &[(u64, u64)]) -> Attempt {
    let Try { target, interp, start, .. } = t;
    let live = RemoteMemory::new(target.pid);
    // Buffers allocated (and faulted in) before the target is stopped.
    let mut mem = copy::CopiedMemory::prepare(live, regions);
    let pause = match target.pause() {
        Ok(p) => p,
        Err(e) => return Attempt::Done(Err(e)),
    };
    match collection_running(&live, interp) {
        Ok(false) => {}
        Ok(true) => {
            drop(pause);
            return t.retry_after_collection();
        }
        Err(e) => return Attempt::Done(Err(target.explain(e))),
    }
    mem.fill();
    let paused = pause.resume();
    let r = attempt(&mem, t, sink, Some(paused), visited::Visited::new());
    log::debug!("walk of the copy: {:?} (target stopped {:?})", start.elapsed(), paused);
    r
}

fn attempt<M: Fork>(
    mem: &M,
    t: Try<'_>,
    sink: &mut dyn Sink,
    copied: Option<Duration>,
    visited: visited::Visited,
) -> Attempt {
    let Try { target, interp, opts, start, deadline, .. } = t;
    let mut types = Types::new(&interp.layout);
    let pause = if opts.nonblocking || copied.is_some() {
        None
    } else {
        match target.pause() {
            Ok(p) => Some(p),
            Err(e) => return Attempt::Done(Err(e)),
        }
    };
    // Check for a running collection before walking: its lists are in flux.
    let collecting = match collection_running(mem, interp) {
        Ok(c) => c,
        Err(e) => return Attempt::Done(Err(target.explain(e))),
    };
    if collecting && !opts.nonblocking {
        drop(pause);
        return t.retry_after_collection();
    }
    sink.reset();
    // A copy is walked while the target runs: only the overall timeout applies.
    let walk_deadline =
        if opts.nonblocking || copied.is_some() { deadline } else { deadline.min(Instant::now() + opts.max_pause) };
    let mut summary = WalkSummary { full: opts.full, ..Default::default() };
    TARGET_GONE.store(false, Ordering::SeqCst);
    let walking = AtomicBool::new(true);
    let result = std::thread::scope(|scope| {
        // Watch the target while walking: if it dies, stop the walk. It parks between checks and is woken
        // when the walk ends, so that the scope (and with it the pause) does not wait out its interval.
        let watcher = scope.spawn(|| {
            while walking.load(Ordering::SeqCst) {
                if !target.alive() {
                    TARGET_GONE.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::park_timeout(Duration::from_millis(50));
            }
        });
        // Ends the watcher however the walk ends (a panic too: the scope joins the watcher first).
        struct Done<'a>(&'a AtomicBool, std::thread::Thread);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
                self.1.unpark();
            }
        }
        let _done = Done(&walking, watcher.thread().clone());
        if opts.full {
            let mut fw = full::FullWalk::new(mem, &interp.layout);
            // With blocks faulted in ahead.
            fw.visited = visited;
            fw.deadline = Some(walk_deadline);
            // A paused target's lists are walked from both ends on two threads when that can be done.
            let parallel = if opts.nonblocking {
                None
            } else {
                gcpar::walk_gc_parallel(mem, interp, &mut fw, Some(walk_deadline), &mut summary, &mut *sink)
            };
            let r = match parallel {
                Some(r) => r,
                None => {
                    walk_gc(mem, interp, &mut types, !opts.nonblocking, Some(walk_deadline), &mut summary, |r, t| {
                        fw.learn_type_type(r.addr);
                        fw.mark_tracked(r.addr, r.type_addr);
                        sink.object(r, t)
                    })
                }
            };
            log::debug!(
                "GC lists walked: {:?} ({:?} into the pause)",
                start.elapsed(),
                pause.as_ref().map(|p| p.elapsed()).unwrap_or_default()
            );
            r.and_then(|()| full::walk_rest(mem, interp, &mut types, &mut fw, &mut summary, sink))
        } else {
            walk_gc(mem, interp, &mut types, !opts.nonblocking, Some(walk_deadline), &mut summary, |r, t| {
                sink.object(r, t)
            })
        }
    });
    let result = match result {
        Ok(()) | Err(Error::Timeout { .. }) if !target.alive() => Err(Error::TargetExited { pid: target.pid }),
        r => r,
    };
    let paused = pause.map(|p| p.resume()).or(copied).unwrap_or_default();
    log::debug!("{} types", types.len());
    let what = if opts.full { "walking the heap" } else { "walking the GC lists" };
    match result {
        Ok(()) => {
            Attempt::Done(Ok(Walked { summary, pause: paused, elapsed: start.elapsed(), pause_budget_spent: false }))
        }
        // The pause budget ran out (not the overall timeout): the target is resumed, and what was
        // read so far is reported as partial.
        Err(Error::Timeout { .. }) if Instant::now() < deadline && !opts.nonblocking => {
            log::warn!("pause budget of {:?} spent; reporting a partial walk", opts.max_pause);
            Attempt::Done(Ok(Walked { summary, pause: paused, elapsed: start.elapsed(), pause_budget_spent: true }))
        }
        Err(Error::Timeout { .. }) => {
            Attempt::Done(Err(Error::Timeout { seconds: opts.timeout.as_secs_f64(), what: what.into() }))
        }
        Err(e) if e.is_read() || matches!(e, Error::Corrupt(_)) => {
            let e = target.explain(e);
            if matches!(e, Error::TargetExited { .. }) {
                return Attempt::Done(Err(e));
            }
            // Also without stopping the target, a read can race with a free: retry.
            Attempt::Inconsistent(e)
        }
        Err(e) => Attempt::Done(Err(target.explain(e))),
    }
}
