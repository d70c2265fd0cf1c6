//! The commands behind the CLI: each takes parsed options and prints to stdout.

pub mod diff;
pub mod dump;
pub mod export;
pub mod gc;
pub mod growth;
pub mod held;
pub mod report;
pub mod retained;
pub mod serve;
pub mod snapshot;
pub mod stat;
pub mod top;
pub mod why;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::analysis::histogram::{GcCounts, PythonInfo, ScanCounts};
use crate::analysis::{Histogram, Report};
use crate::discovery::{self, Interpreter, Linkage};
use crate::error::{Error, Result};
use crate::memory::core_memory::Binaries;
use crate::memory::RemoteMemory;
use crate::process::Target;
use crate::walk::{self, SnapshotOptions};

/// An attached target and its interpreter, found once and reused across snapshots.
pub struct Session {
    pub target: Target,
    pub interp: Interpreter,
}

/// A core file to read instead of a live process (`--core FILE [--exe FILE] [--sysroot DIR]`).
#[derive(Clone, Debug, Default)]
pub struct CoreSpec {
    pub path: PathBuf,
    pub binaries: Binaries,
}

impl Session {
    pub fn attach(pid: i32) -> Result<Session> {
        let target = Target::open(pid)?;
        let interp = discovery::discover(&target, &RemoteMemory::new(pid)).map_err(|e| target.explain(e))?;
        Ok(Session::found(target, interp))
    }

    /// A session on a core file: the same discovery, on the core's memory and the binaries it names.
    pub fn open_core(spec: &CoreSpec) -> Result<Session> {
        let target = Target::open_core(&spec.path, &spec.binaries)?;
        let core = spec.path.display().to_string();
        let interp = discovery::discover(&target, &target.memory()).map_err(|e| match e {
            Error::NotPython { pid, exe } => Error::CoreNotPython { core, pid, exe },
            e => target.explain(e),
        })?;
        Ok(Session::found(target, interp))
    }

    /// The core file the session reads, if it reads one (named in reports).
    pub fn file(&self) -> Option<String> {
        self.target.core().map(|c| c.core.path.clone())
    }

    /// A session on the PID, or on the core file when one is given.
    pub fn open(pid: Option<i32>, core: Option<&CoreSpec>, name: &str) -> Result<Session> {
        match (pid, core) {
            (None, Some(c)) => Session::open_core(c),
            (Some(pid), None) => Session::attach(pid),
            (Some(_), Some(_)) => Err(Error::Other("give either a PID or --core FILE, not both".into())),
            (None, None) => Err(Error::Other(format!("give a PID (memspy {name} PID) or a core file (--core FILE)"))),
        }
    }

    fn found(target: Target, interp: Interpreter) -> Session {
        let pid = target.pid;
        log::info!(
            "PID {pid}: Python {} ({:?}, {}{}) runtime at {:#x} in {} [{}; version from {}]",
            interp.version,
            interp.linkage,
            if interp.stripped { "stripped" } else { "with symbols" },
            if interp.debug_build { ", debug build" } else { "" },
            interp.runtime,
            interp.binary,
            interp.runtime_source,
            interp.version_source
        );
        Session { target, interp }
    }

    pub fn python_info(&self) -> PythonInfo {
        PythonInfo {
            version: self.interp.version.to_string(),
            executable: self.interp.executable.clone(),
            free_threaded: self.interp.free_threaded,
            debug: self.interp.debug_build,
            linkage: match self.interp.linkage {
                Linkage::Static => "static".into(),
                Linkage::Shared => "shared".into(),
            },
            stripped: self.interp.stripped,
            binary: self.interp.binary.clone(),
        }
    }

    /// One snapshot of the heap as a report (the GC lists, or every reachable object with `opts.full`).
    pub fn report(&self, opts: &SnapshotOptions) -> Result<Report> {
        self.warn_if_long(opts);
        let mut hist = Histogram::new();
        let walked = walk::snapshot(&self.target, &self.interp, opts, &mut hist)?;
        Ok(self.report_of(hist, &walked, opts))
    }

    /// Says once, on stderr, when the walk `opts` asks for will stop the target long (see
    /// [`long_pause`]).
    pub fn warn_if_long(&self, opts: &SnapshotOptions) {
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !opts.full || opts.nonblocking || SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Some(line) = self.target.rss().and_then(|rss| long_pause(self.target.pid, rss)) {
            eprintln!("memspy: {line}");
        }
    }

    /// The report of one walk whose objects went to `hist`.
    pub fn report_of(&self, hist: Histogram, walked: &walk::Walked, opts: &SnapshotOptions) -> Report {
        let s = &walked.summary;
        if s.unreadable > 0 {
            log::warn!("{} objects could not be read and were skipped", s.unreadable);
        }
        if s.decode_errors > 0 {
            log::info!("{} objects could not be decoded; what they reference may be missing", s.decode_errors);
        }
        let c = &s.conservative;
        log::info!(
            "conservative scans: {} candidates rejected (no live block of theirs there), {} objects in memory no \
             known allocator claims, {} native blocks scanned ({} bytes)",
            c.rejected,
            c.unvalidated,
            c.native_blocks,
            c.native_bytes
        );
        if walked.retries > 0 {
            log::info!(
                "the read was tried {} more times (a collection running, or lists caught mid-update)",
                walked.retries
            );
        }
        if s.approximate_sizes > 0 {
            log::info!("{} objects have their own __sizeof__; their bytes are approximated", s.approximate_sizes);
        }
        let types = hist.rows();
        let approximated: Vec<&str> = types.iter().filter(|t| !t.bytes_exact).map(|t| t.name.as_str()).collect();
        if !approximated.is_empty() {
            log::info!("bytes approximated for {} types: {}", approximated.len(), approximated.join(", "));
        }
        let mut report = Report {
            pid: self.target.pid,
            file: self.file(),
            python: self.python_info(),
            coverage: if s.full { "full-heap".into() } else { "gc-tracked".into() },
            approximate: opts.nonblocking
                || walked.pause_budget_spent
                || s.broken_lists > 0
                || s.inconsistent_pages > 0,
            partial: walked.pause_budget_spent,
            pause_ms: walked.pause.as_secs_f64() * 1000.0,
            elapsed_ms: walked.elapsed.as_secs_f64() * 1000.0,
            timestamp: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
            rss: self.target.rss(),
            totals: Default::default(),
            gc: GcCounts { generations: s.generations, permanent: s.permanent },
            interpreters: s.interpreters,
            retries: walked.retries,
            scan: ScanCounts {
                unreadable: s.unreadable,
                decode_errors: s.decode_errors,
                broken_lists: s.broken_lists,
                inconsistent_pages: s.inconsistent_pages,
                approximate_sizes: s.approximate_sizes,
                rejected_candidates: s.conservative.rejected,
                unvalidated_objects: s.conservative.unvalidated,
                native_blocks: s.conservative.native_blocks,
                native_bytes: s.conservative.native_bytes,
                changed_under_walk: s.changed,
            },
            types,
        };
        report.finish_totals();
        report
    }
}

/// A program memspy started (`memspy top -- python app.py`); killed when dropped.
pub struct Spawned {
    pub child: Child,
}

impl Spawned {
    pub fn start(argv: &[String]) -> Result<Spawned> {
        let (prog, args) = argv.split_first().ok_or_else(|| Error::Other("no command given after --".into()))?;
        let child =
            Command::new(prog).args(args).spawn().map_err(|e| Error::Other(format!("could not start {prog}: {e}")))?;
        Ok(Spawned { child })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `e` as the user should read it: a target that went away is the program having exited.
    pub fn explain(&mut self, e: Error) -> Error {
        match (&e, self.child.try_wait()) {
            (Error::TargetExited { .. }, Ok(Some(status))) => {
                Error::Other(format!("the program exited ({status}) before it could be inspected"))
            }
            _ => e,
        }
    }

    /// Waits until the program's interpreter is up (its runtime has an interpreter with a valid GC
    /// state), then returns a session on it.
    pub fn wait_for_python(&mut self, timeout: Duration) -> Result<Session> {
        let start = Instant::now();
        let mut last = None;
        let exited = |child: &mut Child| {
            child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| Error::Other(format!("the program exited ({status}) before it could be inspected")))
        };
        while start.elapsed() < timeout {
            if let Some(e) = exited(&mut self.child) {
                return Err(e);
            }
            let attached = Session::attach(self.pid());
            // A program that is exiting (or still being set up by exec) can look unreadable: say that it
            // exited, not that permission is missing.
            if attached.is_err() {
                std::thread::sleep(Duration::from_millis(20));
                if let Some(e) = exited(&mut self.child) {
                    return Err(e);
                }
            }
            match attached {
                Ok(s) => {
                    let mem = RemoteMemory::new(s.target.pid);
                    let ready = crate::pause::read_interps(&mem, &s.interp)
                        .ok()
                        .and_then(|ips| ips.first().copied())
                        .is_some_and(|i| i.gc.validate(&mem).is_ok());
                    if ready {
                        return Ok(s);
                    }
                }
                Err(
                    e
                    @ (Error::UnsupportedVersion { .. } | Error::FreeThreaded { .. } | Error::PermissionDenied { .. }),
                ) => return Err(e),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(last.unwrap_or_else(|| Error::Other("timed out waiting for the program's Python runtime".into())))
    }
}

/// Seconds a full walk stops the target per GiB of its resident memory (bench/run.py: ≈ 1.1 s per GB
/// at 4 M records on 2 threads).
pub const WALK_SECONDS_PER_GIB: f64 = 1.1;
/// A pause expected to be longer than this is announced.
pub const LONG_PAUSE_SECONDS: f64 = 2.0;

/// The line announcing a long pause for a target of `rss` bytes, with what stops it less; None when
/// the pause is expected to be short.
pub fn long_pause(pid: i32, rss: u64) -> Option<String> {
    let gib = rss as f64 / (1u64 << 30) as f64;
    let seconds = gib * WALK_SECONDS_PER_GIB;
    (seconds > LONG_PAUSE_SECONDS).then(|| {
        format!(
            "PID {pid} has {gib:.1} GiB resident: the full walk will stop it for about {seconds:.0} s (every sample \
             of growth, serve and the live top does); --gc-only (the GC lists only), --nonblocking (no pause, \
             approximate) or memspy dump (stops it only to copy its memory) stop it less"
        )
    })
}

/// The process a command inspects: a PID, or a program memspy starts (`-- python app.py`) and lets run
/// for `delay` before the first snapshot, or a core file of one.
#[derive(Clone, Debug, Default)]
pub struct TargetSpec {
    pub pid: Option<i32>,
    /// A dump file (`memspy dump`) read in place of a live target, by the commands that can.
    pub dump: Option<std::path::PathBuf>,
    pub command: Vec<String>,
    pub delay: Duration,
    /// A core file instead (the commands that read one).
    pub core: Option<CoreSpec>,
}

impl TargetSpec {
    /// Whether memspy starts the program (which may then end on its own).
    pub fn starts_program(&self) -> bool {
        !self.command.is_empty()
    }
}

/// Opens the target of `memspy <name>`: a session, and the `Spawned` handle of a program memspy started
/// (which stops the program when dropped).
pub fn open_target(name: &str, spec: &TargetSpec, timeout: Duration) -> Result<(Session, Option<Spawned>)> {
    if let Some(core) = &spec.core {
        if spec.pid.is_some() || spec.starts_program() {
            return Err(Error::Other("give either a core file (--core FILE), a PID or a command, not two".into()));
        }
        return Ok((Session::open_core(core)?, None));
    }
    if let Some(path) = &spec.dump {
        return Err(Error::Other(format!(
            "memspy {name} reads a live process, not a dump file ({}): give a PID or a command",
            path.display()
        )));
    }
    match (spec.pid, spec.starts_program()) {
        (Some(pid), false) => Ok((Session::attach(pid)?, None)),
        (None, true) => {
            let mut s = Spawned::start(&spec.command)?;
            let session = s.wait_for_python(timeout)?;
            sleep_unless_interrupted(spec.delay);
            Ok((session, Some(s)))
        }
        (Some(_), true) => Err(Error::Other("give either a PID or a command after --, not both".into())),
        (None, false) => {
            Err(Error::Other(format!("give a PID (memspy {name} PID) or a command (memspy {name} -- python app.py)")))
        }
    }
}

/// An error of a command on `spawned` (if memspy started the program) as the user should read it.
pub fn explain_spawned(spawned: Option<&mut Spawned>, e: Error) -> Error {
    match spawned {
        Some(s) => s.explain(e),
        None => e,
    }
}

/// Sleeps for `d`, or less if Ctrl-C / SIGTERM arrives.
pub fn sleep_unless_interrupted(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !crate::interrupt::requested() {
        std::thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())));
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.pid());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_pauses_are_announced() {
        assert_eq!(long_pause(7, 512 << 20), None);
        let line = long_pause(7, 6 << 30).expect("a 6 GiB heap");
        assert!(line.starts_with("PID 7 has 6.0 GiB resident: the full walk will stop it for about 7 s"), "{line}");
        assert!(line.contains("--gc-only") && line.contains("--nonblocking") && line.contains("memspy dump"));
    }
}
