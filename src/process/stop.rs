//! Stopping a target that may not stop: threads in uninterruptible sleep.
//!
//! `ptrace` stops a thread only when it next leaves the kernel. A thread in uninterruptible sleep (state
//! `D`: waiting for a vfork child to exec, for NFS or a FUSE server, for disk I/O) does not leave it until
//! whatever it waits for happens, which may be never. Pausing the target would then stop every other thread
//! and wait for that one indefinitely: the target frozen, memspy hung. So:
//! 1. before pausing, memspy looks for threads in state `D` and gives them [`D_STATE_GRACE`] to wake; if
//!    one is still in `D`, it does not pause at all and says so ([`Error::CannotStop`]);
//! 2. while pausing, a watchdog interrupts the wait after [`STOP_LIMIT`] (a thread may enter `D` just after
//!    the check): the threads stopped so far are released and the pause fails with the same error. The
//!    thread that did not stop stays attached until memspy exits, which it then does: the error is fatal to
//!    every command, and the kernel lets go of the thread on exit.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;

/// How long threads found in state `D` get to wake up before memspy gives up pausing.
pub const D_STATE_GRACE: Duration = Duration::from_millis(1000);
/// How long stopping every thread may take before the watchdog interrupts it.
pub const STOP_LIMIT: Duration = Duration::from_millis(1500);

/// How long memspy waits for another memspy that holds the target stopped to let go (that one's pause is
/// bounded by its `--max-pause`, 10 s by default, plus the time its threads take to stop).
pub const OTHER_MEMSPY_WAIT: Duration = Duration::from_secs(12);

/// Who traces the threads of `pid` (each thread's `TracerPid`, memspy itself left out): `Some(true)` when
/// a memspy (by its `comm`) traces one, `Some(false)` when only other tools do, `None` when nothing does.
/// Another memspy seizes and releases the threads one by one, so every thread is looked at.
pub fn traced_by_memspy(pid: i32) -> Option<bool> {
    let me = std::process::id() as i32;
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut found = None;
    // Bounded: the kernel's thread limit is far below this.
    for entry in dir.flatten().take(1 << 20) {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let Some(tracer) = status.lines().find_map(|l| l.strip_prefix("TracerPid:")) else { continue };
        let tracer: i32 = tracer.trim().parse().unwrap_or(0);
        if tracer <= 0 || tracer == me {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{tracer}/comm")).unwrap_or_default();
        if comm.trim().starts_with("memspy") {
            return Some(true);
        }
        found = Some(false);
    }
    found
}

/// Waits until no memspy traces a thread of `pid` (another memspy watching the same target, in the middle
/// of its pause), polling every 2 ms until `until`. True when none holds it any more.
pub fn wait_for_other_memspy(pid: i32, until: Instant) -> bool {
    while traced_by_memspy(pid) == Some(true) {
        if Instant::now() >= until {
            log::debug!("PID {pid} is still traced by another memspy");
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// A thread of the target in uninterruptible sleep: its id and its kernel wait channel (may be empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    pub tid: i32,
    pub wchan: String,
}

/// The target's threads that are in state `D` now (an empty list when none, or when /proc cannot say).
pub fn stuck_threads(pid: i32) -> Vec<Stuck> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // Bounded: the kernel's thread limit is far below this.
    for entry in dir.flatten().take(1 << 20) {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
            continue;
        };
        if super::stat_state(&stat) == Some('D') {
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan")).unwrap_or_default();
            let wchan = if wchan.trim() == "0" { String::new() } else { wchan.trim().to_string() };
            out.push(Stuck { tid, wchan });
        }
    }
    out.sort_by_key(|s| s.tid);
    out
}

/// How long a thread has run, in ns (first field of `/proc/PID/task/TID/schedstat`), if readable.
fn run_time(pid: i32, tid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?.split_whitespace().next()?.parse().ok()
}

/// The threads of `pid` that stay in state `D` for all of `grace` (returns early, empty, when none
/// does). A thread counts as stuck only while it is in `D` at every look and has not run in between
/// (its run time is unchanged): threads that go in and out of `D` (disk I/O) are not.
pub fn stuck_for(pid: i32, grace: Duration) -> Vec<Stuck> {
    let start = Instant::now();
    let mut watched: Vec<(Stuck, Option<u64>)> = stuck_threads(pid)
        .into_iter()
        .map(|s| {
            let t = run_time(pid, s.tid);
            (s, t)
        })
        .collect();
    // Bounded by the grace period.
    while !watched.is_empty() && start.elapsed() < grace {
        log::debug!("PID {pid}: thread {} in state D ({}); waiting", watched[0].0.tid, watched[0].0.wchan);
        std::thread::sleep(Duration::from_millis(10));
        let now: Vec<i32> = stuck_threads(pid).into_iter().map(|s| s.tid).collect();
        watched.retain(|(s, t)| now.contains(&s.tid) && run_time(pid, s.tid) == *t);
    }
    watched.into_iter().map(|(s, _)| s).collect()
}

/// Waits until no thread of `pid` has been in state `D` all along for [`D_STATE_GRACE`]; the error
/// names one that was.
pub fn wait_until_stoppable(pid: i32) -> Result<(), Error> {
    let stuck = stuck_for(pid, D_STATE_GRACE);
    match stuck.first() {
        None => Ok(()),
        Some(s) => Err(cannot_stop(pid, s, stuck.len(), false)),
    }
}

pub fn cannot_stop(pid: i32, s: &Stuck, n: usize, stopped_others: bool) -> Error {
    let wchan = if s.wchan.is_empty() { String::new() } else { format!(", in {}", s.wchan) };
    let others = if n > 1 { format!(" (and {} more)", n - 1) } else { String::new() };
    Error::CannotStop {
        pid,
        detail: format!(
            "thread {}{others} is in uninterruptible sleep (state D{wchan}) and would not stop{}",
            s.tid,
            if stopped_others { format!(" within {:.1} s", STOP_LIMIT.as_secs_f64()) } else { String::new() }
        ),
    }
}

/// Interrupts a blocking system call of the thread that armed it (with a signal whose handler does
/// nothing and which does not restart system calls) unless disarmed in time.
pub struct Watchdog {
    state: Arc<(Mutex<WatchState>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct WatchState {
    disarmed: bool,
    fired: bool,
}

/// The signal the watchdog sends (real-time signals are unused by memspy and by Rust's runtime).
fn wake_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn ignore_signal(_: libc::c_int) {}

impl Watchdog {
    pub fn arm(limit: Duration) -> Watchdog {
        // SAFETY: installs a handler that does nothing (async-signal-safe), without SA_RESTART so that the
        // interrupted waitpid returns EINTR; the sigaction struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = ignore_signal as *const () as libc::sighandler_t;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(wake_signal(), &sa, std::ptr::null_mut());
        }
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let state = Arc::new((Mutex::new(WatchState::default()), Condvar::new()));
        let s = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*s;
            let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
            let deadline = Instant::now() + limit;
            while !st.disarmed {
                let now = Instant::now();
                if now >= deadline {
                    // Repeat until disarmed: a signal that lands between two waitpid calls is lost.
                    st.fired = true;
                    // SAFETY: `me` is the arming thread, alive until it disarms (it joins this thread).
                    unsafe { libc::pthread_kill(me, wake_signal()) };
                    st = cv.wait_timeout(st, Duration::from_millis(20)).unwrap_or_else(|p| p.into_inner()).0;
                    continue;
                }
                st = cv.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            }
        });
        Watchdog { state, thread: Some(thread) }
    }

    /// Stops the watchdog; true if it fired.
    pub fn disarm(mut self) -> bool {
        self.stop()
    }

    fn stop(&mut self) -> bool {
        let fired = {
            let (lock, cv) = &*self.state;
            let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
            st.disarmed = true;
            cv.notify_all();
            st.fired
        };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        fired
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_letter_after_odd_names() {
        assert_eq!(crate::process::stat_state("123 (python3) S 1 2 3"), Some('S'));
        assert_eq!(crate::process::stat_state("123 (a) b (c)) D 1 2 3"), Some('D'));
        assert_eq!(crate::process::stat_state("garbage"), None);
    }

    #[test]
    fn watchdog_interrupts_a_blocking_call() {
        // A pipe nobody writes to: read blocks until the watchdog's signal interrupts it.
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let start = Instant::now();
        let dog = Watchdog::arm(Duration::from_millis(100));
        let mut b = [0u8; 1];
        // SAFETY: reads into a valid 1-byte buffer.
        let r = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        assert!(dog.disarm());
        assert_eq!((r, errno), (-1, Some(libc::EINTR)));
        assert!(start.elapsed() >= Duration::from_millis(100));
        // SAFETY: closing the descriptors opened above.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        // Disarmed in time: it does not fire.
        let dog = Watchdog::arm(Duration::from_secs(5));
        assert!(!dog.disarm());
    }

    #[test]
    fn no_stuck_threads_here() {
        assert!(stuck_threads(std::process::id() as i32).iter().all(|s| s.tid > 0));
        assert!(wait_until_stoppable(std::process::id() as i32).is_ok());
    }
}
