//! The target: a live process — open it (exists, not a zombie, not memspy, readable), pause and resume it
//! (never leaving it stopped), tell whether it lives, read its resource figures from procfs ([`usage`]) —
//! or a core file of one ([`core`]: never paused, always consistent). Either way its memory
//! ([`Target::memory`]), maps and mapped files are read through the same methods.
//!
//! Nothing in memspy writes to the target: there is no `process_vm_writev`, no `PTRACE_POKE*` and no write
//! to `/proc/PID/mem` anywhere (a test scans the source for them).

pub mod core;
pub mod files;
pub mod stop;
pub mod usage;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::memory::core_memory::{CoreMemory, FileState};
pub use crate::memory::maps::{MapEntry, Maps};
use crate::memory::{Memory, RemoteMemory};

/// A process memspy inspects: live, or as a core file holds it.
pub struct Target {
    /// The process ID (of a core: the one it had).
    pub pid: i32,
    /// What `/proc/PID/exe` points to, as the target sees it (of a core: the path its notes give).
    pub exe: String,
    pub maps: Maps,
    kind: Kind,
}

enum Kind {
    Live(remoteprocess::Process),
    Core(core::CoreTarget),
}

/// The memory of a target: the live process or its core file.
#[derive(Clone)]
pub enum TargetMemory {
    Live(RemoteMemory),
    Core(Arc<CoreMemory>),
}

impl Memory for TargetMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        match self {
            TargetMemory::Live(m) => m.read(addr, buf),
            TargetMemory::Core(m) => m.read(addr, buf),
        }
    }
}

/// The one-letter state from `/proc/PID/stat` ('R', 'S', 'T', 'Z', …), or None if the process is gone.
pub fn process_state(pid: i32) -> Option<char> {
    stat_state(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The state letter of a `/proc/.../stat` line (after the parenthesised command name, which may hold
/// spaces and parentheses).
pub fn stat_state(stat: &str) -> Option<char> {
    let after = stat.rfind(')')?;
    stat[after + 1..].trim_start().chars().next()
}

/// Whether a SIGKILL is pending for the process: it is being killed. A target that memspy holds stopped
/// stays stopped (and readable) with the signal pending until memspy lets go, so it looks alive; it is not.
pub fn being_killed(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status.lines().filter(|l| l.starts_with("ShdPnd:") || l.starts_with("SigPnd:")).any(|l| {
        u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16)
            .is_ok_and(|mask| mask & (1 << (libc::SIGKILL - 1)) != 0)
    })
}

/// Resident set size of a process in bytes (from /proc/PID/statm), if readable.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

fn io_to_error(pid: i32, e: std::io::Error, what: &str) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => {
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                Error::TargetExited { pid }
            } else {
                Error::NoSuchProcess(pid)
            }
        }
        Some(libc::EACCES) | Some(libc::EPERM) => Error::permission_denied(pid, format!("{what}: {e}")),
        _ => Error::Other(format!("PID {pid}: {what}: {e}")),
    }
}

impl Target {
    /// Opens a target: checks that it exists, is not a zombie nor memspy itself, and that its memory can
    /// be read; reads its memory map.
    pub fn open(pid: i32) -> Result<Target> {
        if pid <= 0 {
            return Err(Error::NoSuchProcess(pid));
        }
        if pid == std::process::id() as i32 {
            return Err(Error::SelfTarget(pid));
        }
        match process_state(pid) {
            None => return Err(Error::NoSuchProcess(pid)),
            Some('Z') | Some('X') => return Err(Error::Zombie { pid }),
            Some(_) => {}
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map_err(|e| io_to_error(pid, e, "reading /proc/PID/exe"))?
            .to_string_lossy()
            .into_owned();
        let maps = Maps::read(pid).map_err(|e| io_to_error(pid, e, "reading /proc/PID/maps"))?;
        let process = remoteprocess::Process::new(pid).map_err(|e| Error::Other(format!("PID {pid}: {e}")))?;
        let target = Target { pid, exe, maps, kind: Kind::Live(process) };
        // Check now that memory can be read at all, so that permission problems surface as such.
        if let Some(m) = target.maps.entries.iter().find(|m| m.readable() && m.path.is_some()) {
            let mut b = [0u8; 8];
            RemoteMemory::new(pid).read(m.start, &mut b).map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    Error::permission_denied(pid, format!("process_vm_readv: {e}"))
                }
                Some(libc::ESRCH) => Error::TargetExited { pid },
                _ => Error::Other(format!("PID {pid}: process_vm_readv: {e}")),
            })?;
        }
        Ok(target)
    }

    /// Where the target's bytes come from.
    pub fn memory(&self) -> TargetMemory {
        match &self.kind {
            Kind::Live(_) => TargetMemory::Live(RemoteMemory::new(self.pid)),
            Kind::Core(c) => TargetMemory::Core(c.mem.clone()),
        }
    }

    /// The core file this target is read from, if it is one.
    pub fn core(&self) -> Option<&CoreMemory> {
        match &self.kind {
            Kind::Live(_) => None,
            Kind::Core(c) => Some(&c.mem),
        }
    }

    pub fn is_core(&self) -> bool {
        self.core().is_some()
    }

    /// The memory map as it is now (a live target's changes; a core's never does).
    pub fn current_maps(&self) -> Result<Maps> {
        match &self.kind {
            Kind::Live(_) => {
                Maps::read(self.pid).map_err(|e| Error::Other(format!("PID {}: reading maps: {e}", self.pid)))
            }
            Kind::Core(_) => Ok(self.maps.clone()),
        }
    }

    /// Resident set size in bytes (a core does not record it).
    pub fn rss(&self) -> Option<u64> {
        match &self.kind {
            Kind::Live(_) => rss_bytes(self.pid),
            Kind::Core(_) => None,
        }
    }

    /// The bytes of a file the target maps, `path` as its maps name it (a live target's through procfs,
    /// see [`files::read_target_file`]; a core's as found on disk when it was opened).
    pub fn read_file(&self, path: &str) -> std::io::Result<Vec<u8>> {
        match &self.kind {
            Kind::Live(_) => files::read_target_file(self.pid, &self.maps, path),
            Kind::Core(c) => match c.mem.file(path) {
                Some(FileState::Found { map, .. }) => Ok(map.bytes().to_vec()),
                Some(FileState::Missing { disk, error }) => {
                    Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{}: {error}", disk.display())))
                }
                Some(FileState::Mismatch { disk, .. }) => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is another build than the one mapped", disk.display()),
                )),
                None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "not mapped in the core")),
            },
        }
    }

    /// Where a file of the target's root (a separate debug file: `/usr/lib/debug/...`) may be found.
    pub fn root_paths(&self, path: &str) -> Vec<String> {
        match &self.kind {
            Kind::Live(_) => vec![format!("/proc/{}/root{path}", self.pid), path.to_string()],
            Kind::Core(c) => match &c.binaries.sysroot {
                Some(root) => vec![root.join(path.trim_start_matches('/')).display().to_string()],
                None => vec![path.to_string()],
            },
        }
    }

    /// Whether the target still exists (and is not a zombie); a core always does.
    pub fn alive(&self) -> bool {
        match &self.kind {
            Kind::Live(_) => {
                !matches!(process_state(self.pid), None | Some('Z') | Some('X')) && !being_killed(self.pid)
            }
            Kind::Core(_) => true,
        }
    }

    /// Turns an error met while reading into "the target exited" when that is what happened (of a core:
    /// a read beyond the end of a truncated one into what it is).
    pub fn explain(&self, e: Error) -> Error {
        if let (Kind::Core(c), Error::Read { addr, what, source, .. }) = (&self.kind, &e) {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                let detail = format!("the {what} at {addr:#x} lies beyond its end");
                return Error::CoreTruncated { path: c.mem.core.path.clone(), detail };
            }
        }
        if !self.alive() {
            Error::TargetExited { pid: self.pid }
        } else {
            e
        }
    }

    /// Stops every thread of the target (ptrace seize + interrupt). The guard resumes them when dropped,
    /// and the kernel detaches (resuming the threads) if memspy dies: the target is never left stopped.
    ///
    /// A thread in uninterruptible sleep cannot be stopped until it wakes: memspy then does not pause
    /// (or, if one enters that state while memspy pauses, gives up after [`stop::STOP_LIMIT`]) and
    /// says so. See [`stop`].
    pub fn pause(&self) -> Result<Pause> {
        let process = match &self.kind {
            Kind::Live(p) => p,
            Kind::Core(_) => return Err(Error::Other("a core file is not a process to pause".into())),
        };
        if std::env::var_os("MEMSPY_TEST_SKIP_STOP_CHECK").is_none() {
            stop::wait_until_stoppable(self.pid)?;
        }
        let start = Instant::now();
        // Another memspy watching the same target (a `growth` next to a `serve`) holds it while it reads:
        // ptrace refuses a second tracer, so wait for that one to let go and try again, until
        // OTHER_MEMSPY_WAIT. Refused with no tracer left (the other let go in between, thread by thread),
        // try again a few times, a little later each time; refused because another tool traces it, give up.
        let give_up = start + stop::OTHER_MEMSPY_WAIT;
        let mut untraced_refusals = 0u64;
        let (lock, fired) = loop {
            let dog = stop::Watchdog::arm(stop::STOP_LIMIT);
            let lock = process.lock();
            let fired = dog.disarm();
            let refused = lock.as_ref().err().is_some_and(|e| e.to_string().contains("EPERM"));
            if refused && !fired && Instant::now() < give_up && self.alive() {
                match stop::traced_by_memspy(self.pid) {
                    Some(true) => {
                        log::debug!("PID {} is held by another memspy: waiting for it to let go", self.pid);
                        stop::wait_for_other_memspy(self.pid, give_up);
                        continue;
                    }
                    None if untraced_refusals < 10 => {
                        untraced_refusals += 1;
                        std::thread::sleep(Duration::from_millis(2 * untraced_refusals));
                        continue;
                    }
                    _ => {}
                }
            }
            break (lock, fired);
        };
        let lock = lock.map_err(|e| {
            let msg = e.to_string();
            if fired {
                log::debug!("pausing PID {} interrupted after {:?}: {msg}", self.pid, start.elapsed());
                // Name a thread that stays in D (others may pass through it meanwhile).
                let stuck = stop::stuck_for(self.pid, Duration::from_millis(300));
                match stuck.first() {
                    Some(s) => stop::cannot_stop(self.pid, s, stuck.len(), true),
                    None => Error::CannotStop {
                        pid: self.pid,
                        detail: format!("its threads did not all stop within {:.1} s", stop::STOP_LIMIT.as_secs_f64()),
                    },
                }
            } else if !self.alive() {
                // A process that is exiting refuses ptrace with EPERM too.
                Error::TargetExited { pid: self.pid }
            } else if msg.contains("EPERM") || msg.contains("Operation not permitted") {
                Error::permission_denied(self.pid, format!("ptrace: {msg}"))
            } else {
                Error::Other(format!("could not pause PID {}: {msg}", self.pid))
            }
        })?;
        log::debug!("paused PID {} in {:?}", self.pid, start.elapsed());
        Ok(Pause { _lock: Some(lock), since: Instant::now(), total: Duration::ZERO })
    }
}

/// The target's threads are stopped while this lives.
pub struct Pause {
    _lock: Option<remoteprocess::Lock>,
    since: Instant,
    total: Duration,
}

impl Pause {
    /// Resumes the target now; returns for how long it was stopped.
    pub fn resume(mut self) -> Duration {
        self.release()
    }

    fn release(&mut self) -> Duration {
        if self._lock.take().is_some() {
            self.total = self.since.elapsed();
        }
        self.total
    }

    pub fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        self.release();
    }
}
