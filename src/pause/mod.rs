//! A consistent read of a target, implemented once for every command: stop the target (unless
//! `--nonblocking`), make sure no collection is running in any interpreter (else let it run and try
//! again), read every interpreter's state once, hand the memory and those states to the work, watch the
//! target while the work runs, enforce the pause budget (`--max-pause`) and the timeout, resume, and
//! pause again when the stopped target's data was caught mid-update.
//!
//! How the bytes are read is chosen here too ([`Source`]): a page cache in front of the live process;
//! for full walks a chunk cache bounded by the target's RSS, or a copy of the writable memory taken
//! while the target is stopped and walked after it is resumed. A core file is read as it is: the same
//! work, never a pause, always consistent.

pub mod control;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cpython::gc::GcState;
use crate::discovery::{self, Interpreter};
use crate::error::{Error, Result};
use crate::memory::chunks::{self, ChunkCache};
pub use crate::memory::copy::FileCopy;
use crate::memory::copy::{self, CopiedMemory};
use crate::memory::maps::Maps;
use crate::memory::readers::ThreadReaders;
use crate::memory::{CachedMemory, Memory, RemoteMemory};
use crate::process::Target;
pub use control::Control;

/// How a read reaches the target's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A page cache of at most this many bytes in front of the live process (small reads).
    Cached { bytes: u64 },
    /// A whole-heap read: copy the writable memory while the target is stopped when that copy takes at
    /// most `max_memory` bytes (None: half the target's RSS), else read through a chunk cache of at
    /// most `cache_bytes` and 3/8 of the target's RSS. With `spill`, a copy that does not fit
    /// `max_memory` is made in a temporary file of that directory instead, when it has room.
    Heap { cache_bytes: u64, max_memory: Option<u64>, spill: Option<&'static std::path::Path> },
}

/// How to read.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// Never stop the target (what is read may be inconsistent).
    pub nonblocking: bool,
    /// Give up on the whole read after this long.
    pub timeout: Duration,
    /// Most time the target may stay stopped; the work is cut short past it.
    pub max_pause: Duration,
    /// How many times to let a running collection finish and try again.
    pub collection_retries: u32,
    pub source: Source,
}

/// How many times a stopped target whose data was caught mid-update is paused again.
pub const MAX_INCONSISTENT_RETRIES: u32 = 10;

/// One interpreter, as read at the start of this read.
#[derive(Clone, Copy, Debug)]
pub struct Interp {
    /// The `PyInterpreterState`.
    pub addr: u64,
    pub gc: GcState,
}

/// What the work sees.
pub struct View<'a, M: ?Sized> {
    pub mem: &'a M,
    pub interp: &'a Interpreter,
    /// Every interpreter of the runtime (the main one last), read once for this read.
    pub interps: &'a [Interp],
    /// Stop request, target gone, deadline: what every loop of the work checks.
    pub control: Control,
    /// The target stays stopped while the work runs (false: `--nonblocking`, or a copy being read).
    pub stopped: bool,
    /// The memory cannot change under the work (the target is stopped, or a copy is read).
    pub consistent: bool,
    /// When the target was stopped, if it is.
    pub paused_at: Option<Instant>,
}

impl<M: ?Sized> View<'_, M> {
    /// The main interpreter (the runtime lists it last).
    pub fn main(&self) -> Result<&Interp> {
        self.interps.last().ok_or_else(|| Error::Corrupt("the runtime has no interpreter".into()))
    }

    /// Whether a collection runs in any interpreter.
    pub fn collecting(&self) -> bool {
        self.interps.iter().any(|i| i.gc.collecting)
    }
}

/// Something done in one consistent read.
pub trait Work {
    type Output;
    /// Names the work in errors ("walking the heap").
    fn what(&self) -> &'static str;
    /// Called before the target is stopped, with the bytes of memory the read may touch: allocate (and
    /// fault in) what the work will need, so that the pause pays for no page faults.
    fn prepare(&mut self, _heap_bytes: u64) {}
    /// Does the work. It may be called again (a new pause) when a try fails: start afresh each time.
    fn run<M: ThreadReaders>(&mut self, view: &View<'_, M>) -> Result<Self::Output>;
    /// What the work has when the pause budget ran out; None when a cut-short read is an error.
    fn partial(&mut self) -> Option<Self::Output> {
        None
    }
    /// After a successful run on a copy in a file: the copy, which the work may keep (to read the same
    /// instant again after the read, as `dump` does for names and values). Dropped otherwise.
    fn keep_copy(&mut self, _copy: FileCopy<RemoteMemory>) {}
}

/// The result of a read.
#[derive(Debug)]
pub struct Outcome<T> {
    pub value: T,
    /// How long the target was stopped (zero with `--nonblocking`).
    pub pause: Duration,
    pub elapsed: Duration,
    /// The pause budget ran out and the work was cut short.
    pub cut_short: bool,
    /// Tries that were given up and started again (a collection running, data caught mid-update).
    pub retries: u32,
}

/// Reads `target` consistently and runs `work` on what it reads.
pub fn read<W: Work>(
    target: &Target,
    interp: &Interpreter,
    opts: &ReadOptions,
    work: &mut W,
) -> Result<Outcome<W::Output>> {
    let start = Instant::now();
    let deadline = start + opts.timeout;
    control::count_read();
    let mut tries = 0;
    let mut inconsistent = 0;
    loop {
        tries += 1;
        if crate::interrupt::requested() {
            return Err(Error::Interrupted);
        }
        let t = Try { target, interp, opts, start, deadline };
        let attempt = match opts.source {
            // A core file: the same work on its memory, nothing to stop, nothing that changes.
            _ if target.is_core() => {
                let core = target.core().expect("a core");
                work.prepare(copy::copy_size(&copy::regions_to_copy(&target.maps)));
                t.run(core, work, None)
            }
            Source::Cached { bytes } => {
                let mem = CachedMemory::new(RemoteMemory::new(target.pid), bytes);
                let r = t.run(&mem, work, None);
                log::debug!("read: {:?}, cache {:?}", start.elapsed(), mem.stats());
                r
            }
            Source::Heap { max_memory, spill, .. } => match copy_plan(target, opts, max_memory, spill) {
                Some((regions, dir)) => t.copy_then_run(work, &regions, dir),
                None => t.chunks_then_run(work),
            },
        };
        match attempt {
            Attempt::Done(r) => {
                return r.map(|mut o| {
                    o.retries = tries - 1;
                    o
                })
            }
            Attempt::Collecting => {
                if tries > opts.collection_retries || Instant::now() > deadline {
                    return Err(Error::CollectionInProgress { pid: target.pid, tries });
                }
                log::debug!("a collection is running; retrying ({tries})");
                std::thread::sleep(Duration::from_millis(2 * tries as u64));
            }
            Attempt::Inconsistent(e) => {
                // A thread stopped in the middle of linking or unlinking an object (a handful of
                // instructions in _PyObject_GC_TRACK/UNTRACK) leaves a list half-linked: pause again.
                inconsistent += 1;
                // A core file reads the same every time.
                if inconsistent > MAX_INCONSISTENT_RETRIES || Instant::now() > deadline || target.is_core() {
                    // Say which check the last try failed (a paused read); a read that does not pause
                    // gives its own error.
                    if opts.nonblocking || target.is_core() {
                        return Err(e);
                    }
                    let (check, detail) = e.failed_check();
                    return Err(Error::StillInconsistent { pid: target.pid, pauses: inconsistent, check, detail });
                }
                log::debug!("read failed ({e}); retrying ({inconsistent})");
                std::thread::sleep(Duration::from_millis(inconsistent as u64));
            }
        }
    }
}

enum Attempt<T> {
    Done(Result<Outcome<T>>),
    /// A collection was running (the target is resumed again): try again.
    Collecting,
    /// The stopped target's data was inconsistent: try again.
    Inconsistent(Error),
}

/// What to copy (the mappings), and where: in memory, or in a file of that directory.
type CopyPlan = (Vec<(u64, u64)>, Option<&'static std::path::Path>);

/// The mappings to copy, when a whole-heap read copies: blocking, and the copy fits in the budget
/// (then in memory), or in the spill directory (then in a file there: the directory is returned).
fn copy_plan(
    target: &Target,
    opts: &ReadOptions,
    max_memory: Option<u64>,
    spill: Option<&'static std::path::Path>,
) -> Option<CopyPlan> {
    let hooks = control::test_hooks();
    if opts.nonblocking || hooks.delay.is_some() || hooks.panic_at.is_some() {
        return None;
    }
    let maps = Maps::read(target.pid).ok()?;
    let regions = copy::regions_to_copy(&maps);
    let size = copy::copy_size(&regions);
    let limit = match max_memory {
        Some(m) => m,
        None => crate::process::rss_bytes(target.pid)? / 2,
    };
    log::debug!("copy of the writable mappings: {} MiB, budget {} MiB", size >> 20, limit >> 20);
    if size <= limit {
        return Some((regions, None));
    }
    let dir = spill?;
    let free = free_bytes(dir)?;
    log::debug!("{}: {} MiB free for a copy in a file", dir.display(), free >> 20);
    // Room for the copy, and 256 MiB besides (what is written next there: the dump itself).
    (free >= size.saturating_add(256 << 20)).then_some((regions, Some(dir)))
}

/// Bytes free for memspy in the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` writes into a zeroed struct we own; `c` is a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Every interpreter and its GC state.
pub fn read_interps<M: Memory + ?Sized>(mem: &M, interp: &Interpreter) -> Result<Vec<Interp>> {
    discovery::interpreters(mem, interp)?
        .into_iter()
        .map(|addr| Ok(Interp { addr, gc: GcState::read(mem, &interp.layout, addr)? }))
        .collect()
}

/// What every try of one read works with.
#[derive(Clone, Copy)]
struct Try<'a> {
    target: &'a Target,
    interp: &'a Interpreter,
    opts: &'a ReadOptions,
    /// When the read started, and when it must give up (`--timeout`).
    start: Instant,
    deadline: Instant,
}

impl Try<'_> {
    /// Copy-then-run: stop, check that no collection runs, copy the writable mappings, resume, run the
    /// work on the copy.
    fn copy_then_run<W: Work>(
        self,
        work: &mut W,
        regions: &[(u64, u64)],
        dir: Option<&std::path::Path>,
    ) -> Attempt<W::Output> {
        let live = RemoteMemory::new(self.target.pid);
        if let Some(d) = dir {
            match FileCopy::prepare(live, regions, d) {
                Ok(f) => return self.file_copy_then_run(work, f),
                Err(e) => log::info!("no copy in a file of {}: {e}; reading the stopped target", d.display()),
            }
            return self.chunks_then_run(work);
        }
        // Buffers allocated (and faulted in) before the target is stopped.
        let mut mem = CopiedMemory::prepare(live, regions);
        let (pause, interps) = match self.stop_for_copy(&live) {
            Ok(p) => p,
            Err(a) => return a,
        };
        mem.fill();
        let stopped = pause.resume();
        let r = self.run(&mem, work, Some((stopped, interps)));
        log::debug!("read of the copy: {:?} (target stopped {:?})", self.start.elapsed(), stopped);
        r
    }

    /// Stops the target for a copy and reads its interpreters; a running collection resumes it at once.
    fn stop_for_copy<T>(
        &self,
        live: &RemoteMemory,
    ) -> std::result::Result<(crate::process::Pause, Vec<Interp>), Attempt<T>> {
        let pause = self.target.pause().map_err(|e| Attempt::Done(Err(e)))?;
        let interps = read_interps(live, self.interp).map_err(|e| Attempt::Done(Err(self.target.explain(e))))?;
        if interps.iter().any(|i| i.gc.collecting) {
            drop(pause);
            return Err(Attempt::Collecting);
        }
        Ok((pause, interps))
    }

    /// The default whole-heap read: the stopped target through a chunk cache.
    fn chunks_then_run<W: Work>(self, work: &mut W) -> Attempt<W::Output> {
        let (target, opts, start) = (self.target, self.opts, self.start);
        let Source::Heap { cache_bytes, .. } = opts.source else { unreachable!("a heap read") };
        let maps = match Maps::read(target.pid) {
            Ok(m) => m,
            Err(e) => return Attempt::Done(Err(Error::Other(format!("PID {}: reading maps: {e}", target.pid)))),
        };
        // The cache may hold 3/8 of the target's resident memory (at least 64 MiB): with the
        // work's own structures, memspy stays under half the target's RSS.
        let rss = crate::process::rss_bytes(target.pid);
        let budget = rss.map(|r| (r / 8 * 3).max(64 << 20)).unwrap_or(cache_bytes);
        let budget = budget.min(cache_bytes.max(64 << 20));
        let mem = ChunkCache::new(RemoteMemory::new(target.pid), chunks::readable_ranges(&maps), budget);
        // What the read will fill (at most the budget, the writable memory and the target's
        // resident memory: mapped is not resident, e.g. thread stacks) is allocated and faulted
        // in while the target still runs.
        let t0 = Instant::now();
        let heap = copy::copy_size(&copy::regions_to_copy(&maps)).min(rss.unwrap_or(0));
        mem.prefault(heap.min(budget));
        work.prepare(heap);
        log::debug!("read cache and the work's structures faulted in: {:?}", t0.elapsed());
        let r = self.run(&mem, work, None);
        log::debug!("read: {:?}, chunk cache {:?}", start.elapsed(), mem.stats());
        r
    }

    /// Stop, check that no collection runs, copy the writable mappings into the file `f`, resume, run
    /// the work on the file through a chunk cache.
    fn file_copy_then_run<W: Work>(self, work: &mut W, mut f: FileCopy<RemoteMemory>) -> Attempt<W::Output> {
        let Source::Heap { cache_bytes, .. } = self.opts.source else { unreachable!("a heap read") };
        let maps = match Maps::read(self.target.pid) {
            Ok(m) => m,
            Err(e) => return Attempt::Done(Err(Error::Other(format!("PID {}: reading maps: {e}", self.target.pid)))),
        };
        let rss = crate::process::rss_bytes(self.target.pid);
        let budget = rss.map(|r| (r / 8 * 3).max(64 << 20)).unwrap_or(cache_bytes).min(cache_bytes.max(64 << 20));
        let heap = copy::copy_size(&copy::regions_to_copy(&maps)).min(rss.unwrap_or(0));
        work.prepare(heap);
        let live = RemoteMemory::new(self.target.pid);
        let (pause, interps) = match self.stop_for_copy(&live) {
            Ok(p) => p,
            Err(a) => return a,
        };
        let filled = f.fill();
        let stopped = pause.resume();
        if let Err(e) = filled {
            return Attempt::Done(Err(Error::Other(format!(
                "writing the copy of PID {}'s memory: {e}",
                self.target.pid
            ))));
        }
        let mem = ChunkCache::new(f.clone(), chunks::readable_ranges(&maps), budget);
        let r = self.run(&mem, work, Some((stopped, interps)));
        log::debug!(
            "read of the file copy: {:?} (target stopped {:?}), {:?}",
            self.start.elapsed(),
            stopped,
            mem.stats()
        );
        if matches!(r, Attempt::Done(Ok(_))) {
            work.keep_copy(f);
        }
        r
    }

    /// Stops the target (unless non-blocking, or `copied` holds the pause already taken and the
    /// interpreters read in it), runs the work under a watcher, resumes, and sorts out how it ended.
    fn run<M: ThreadReaders, W: Work>(
        self,
        mem: &M,
        work: &mut W,
        copied: Option<(Duration, Vec<Interp>)>,
    ) -> Attempt<W::Output> {
        let Try { target, interp, opts, start, deadline, .. } = self;
        let (copied_pause, copied_interps) = match copied {
            Some((p, i)) => (Some(p), Some(i)),
            None => (None, None),
        };
        let pause = if opts.nonblocking || copied_pause.is_some() || target.is_core() {
            None
        } else {
            match target.pause() {
                Ok(p) => Some(p),
                Err(e) => return Attempt::Done(Err(e)),
            }
        };
        let interps = match copied_interps.map(Ok).unwrap_or_else(|| read_interps(mem, interp)) {
            Ok(i) => i,
            Err(e) => return Attempt::Done(Err(target.explain(e))),
        };
        // A collection's lists are in flux: let it finish (a non-blocking read goes on, marked).
        if interps.iter().any(|i| i.gc.collecting) && !opts.nonblocking {
            if !target.is_core() {
                drop(pause);
                return Attempt::Collecting;
            }
            // A core written during a collection stays so: read it as it is.
            log::warn!("the core was written during a garbage collection: its GC lists may be mid-update");
        }
        // A copy is read while the target runs: only the overall timeout applies.
        let stopped = pause.is_some();
        let work_deadline = if stopped { deadline.min(Instant::now() + opts.max_pause) } else { deadline };
        let control = Control::new(Some(work_deadline));
        let view = View {
            mem,
            interp,
            interps: &interps,
            control: control.clone(),
            stopped,
            consistent: !opts.nonblocking,
            paused_at: pause.as_ref().map(|p| Instant::now() - p.elapsed()),
        };
        let result = watched(target, &control, || work.run(&view));
        let result = match result {
            Ok(_) | Err(Error::Timeout { .. }) if !target.alive() => Err(Error::TargetExited { pid: target.pid }),
            r => r,
        };
        let paused = pause.map(|p| p.resume()).or(copied_pause).unwrap_or_default();
        let outcome =
            |value, cut_short| Outcome { value, pause: paused, elapsed: start.elapsed(), cut_short, retries: 0 };
        match result {
            Ok(v) => Attempt::Done(Ok(outcome(v, false))),
            // The pause budget ran out (not the overall timeout): the target is resumed, and what was
            // done so far is reported as cut short.
            Err(Error::Timeout { .. }) if Instant::now() < deadline && stopped => match work.partial() {
                Some(v) => {
                    log::warn!("pause budget of {:?} spent; reporting a partial result", opts.max_pause);
                    Attempt::Done(Ok(outcome(v, true)))
                }
                None => Attempt::Done(Err(Error::Timeout {
                    seconds: opts.max_pause.as_secs_f64(),
                    what: work.what().into(),
                })),
            },
            Err(Error::Timeout { .. }) => {
                Attempt::Done(Err(Error::Timeout { seconds: opts.timeout.as_secs_f64(), what: work.what().into() }))
            }
            Err(e) if e.is_inconsistency() => {
                let e = target.explain(e);
                if matches!(e, Error::TargetExited { .. }) {
                    return Attempt::Done(Err(e));
                }
                // Also without stopping the target, a read can race with a free: try again.
                Attempt::Inconsistent(e)
            }
            Err(e) => Attempt::Done(Err(target.explain(e))),
        }
    }
}

/// Runs `work` on a copy an earlier read kept ([`Work::keep_copy`]): the memory of that instant, through
/// a chunk cache of `cache_bytes`, with nothing stopped (the target runs on; the copy does not change).
pub fn read_kept<W: Work>(
    interp: &Interpreter,
    copy: &FileCopy<RemoteMemory>,
    cache_bytes: u64,
    work: &mut W,
) -> Result<W::Output> {
    let mem = ChunkCache::new(copy.clone(), copy.ranges(), cache_bytes);
    let interps = read_interps(&mem, interp)?;
    let view = View {
        mem: &mem,
        interp,
        interps: &interps,
        control: Control::new(None),
        stopped: false,
        consistent: true,
        paused_at: None,
    };
    work.run(&view)
}

/// Runs `f` while a watcher thread checks that the target lives; if it dies, `control` says so and the
/// work stops at its next object instead of reading on from a target that is stopped with a SIGKILL
/// pending. The watcher parks between checks and is woken when `f` ends (a panic too), so that the
/// pause does not wait out its interval.
fn watched<T>(target: &Target, control: &Control, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let running = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            while running.load(Ordering::SeqCst) {
                if !target.alive() {
                    control.set_target_gone();
                    return;
                }
                std::thread::park_timeout(Duration::from_millis(50));
            }
        });
        struct Done<'a>(&'a AtomicBool, std::thread::Thread);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
                self.1.unpark();
            }
        }
        let _done = Done(&running, watcher.thread().clone());
        f()
    })
}
