//! Errors a user can act on. Each variant renders as one line; details go to the `-v` log.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("no process with PID {0}")]
    NoSuchProcess(i32),

    #[error("PID {pid} has exited")]
    TargetExited { pid: i32 },

    #[error("PID {pid} is a zombie (it has exited and waits for its parent to reap it); there is no heap to read")]
    Zombie { pid: i32 },

    #[error(
        "permission denied reading PID {pid}: {detail}. Run memspy as root (sudo), or grant it \
         CAP_SYS_PTRACE (setcap cap_sys_ptrace+ep $(which memspy); in a container: --cap-add SYS_PTRACE), \
         or allow ptrace of non-children with: sysctl kernel.yama.ptrace_scope=0"
    )]
    PermissionDenied { pid: i32, detail: String },

    #[error("PID {pid} is not a Python process: no CPython runtime (_PyRuntime) found in {exe}")]
    NotPython { pid: i32, exe: String },

    #[error("PID {pid} runs Python {version}, which memspy does not support (supported: CPython 3.9 to 3.15)")]
    UnsupportedVersion { pid: i32, version: String },

    #[error("PID {pid} runs a free-threaded build of Python {version} (no GIL); memspy does not support free-threaded builds yet")]
    FreeThreaded { pid: i32, version: String },

    #[error("cannot inspect memspy's own process (PID {0})")]
    SelfTarget(i32),

    #[error("could not read the Python runtime of PID {pid}: {detail}")]
    Layout { pid: i32, detail: String },

    #[error("reading {len} bytes at {addr:#x} ({what}): {source}")]
    Read {
        addr: u64,
        len: usize,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("inconsistent heap data: {0}")]
    Corrupt(String),

    #[error("a garbage collection kept running in PID {pid} during {tries} attempts; try again (or use --nonblocking for an approximate answer)")]
    CollectionInProgress { pid: i32, tries: u32 },

    #[error("gave up after {seconds:.1} s (--timeout): {what}")]
    Timeout { seconds: f64, what: String },

    #[error("cannot pause PID {pid}: {detail}; it was left running. Try again later, or use --nonblocking (reads without stopping it)")]
    CannotStop { pid: i32, detail: String },

    #[error("interrupted; the target was resumed")]
    Interrupted,

    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// True for read failures, which in a live target usually mean it exited or unmapped memory.
    pub fn is_read(&self) -> bool {
        matches!(self, Error::Read { .. })
    }
}
