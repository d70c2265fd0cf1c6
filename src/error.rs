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

    /// Built with [`Error::permission_denied`], which says what to do about it.
    #[error("permission denied reading PID {pid}: {detail}. {remedy}")]
    PermissionDenied { pid: i32, detail: String, remedy: String },

    #[error("PID {pid} is not a Python process: no CPython runtime (_PyRuntime) found in {exe}")]
    NotPython { pid: i32, exe: String },

    #[error("PID {pid} runs Python {version}, which memspy does not support (supported: CPython 3.9 to 3.15)")]
    UnsupportedVersion { pid: i32, version: String },

    #[error("PID {pid} runs a free-threaded build of Python {version} (no GIL) without _Py_DebugOffsets; memspy reads free-threaded builds from 3.13 on")]
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

    /// A check of a GC list's links failed (`check` is one of `cpython::gc::checks`).
    #[error("inconsistent heap data: {detail} (failed check: {check})")]
    ListCheck { check: &'static str, detail: String },

    /// A paused read that still found the heap inconsistent after pausing again `pauses` times: the
    /// last try's failed check and what it saw.
    #[error("PID {pid}'s heap was still inconsistent after {pauses} pauses; the check that failed: {check} ({detail}). Try again, or use --nonblocking for an approximate answer")]
    StillInconsistent { pid: i32, pauses: u32, check: String, detail: String },

    #[error("a garbage collection kept running in PID {pid} during {tries} attempts; try again (or use --nonblocking for an approximate answer)")]
    CollectionInProgress { pid: i32, tries: u32 },

    #[error("gave up after {seconds:.1} s (--timeout): {what}")]
    Timeout { seconds: f64, what: String },

    #[error("cannot pause PID {pid}: {detail}; it was left running. Try again later, or use --nonblocking (reads without stopping it)")]
    CannotStop { pid: i32, detail: String },

    #[error("interrupted; the target was resumed")]
    Interrupted,

    #[error("{path} is not a core file: {why}")]
    NotCore { path: String, why: String },

    #[error("the core file {path} is {format}-compressed; decompress it first (`{command} {path}`, or `coredumpctl dump PID -o FILE`)")]
    CorePacked { path: String, format: String, command: String },

    #[error("the core file {path} is zstd-compressed and does not decompress: {detail}")]
    CoreUnpack { path: String, detail: String },

    #[error("cannot decompress the core file {path} (zstd) beside it or in {dir}: {detail}")]
    CoreNoRoom { path: String, dir: String, detail: String },

    #[error("the core file {path} is truncated: {detail}")]
    CoreTruncated { path: String, detail: String },

    #[error("the core file {core} (PID {pid}, {exe}) is not of a Python process: no CPython runtime (_PyRuntime) found in its executable or libraries")]
    CoreNotPython { core: String, pid: i32, exe: String },

    #[error("{path}, which the core file maps, is missing ({disk}: {error}); give the executable with --exe, or the root the binaries are under with --sysroot")]
    CoreBinaryMissing { path: String, disk: String, error: String },

    #[error("{disk} is not the {path} the core file mapped (build ID {file_id}, the core's {core_id}); give the matching binary with --exe or --sysroot")]
    CoreBuildIdMismatch { path: String, disk: String, core_id: String, file_id: String },

    /// A dump file's contents do not decode (the reader adds the file's name: [`Error::InDump`]).
    #[error("{0}")]
    BadDump(String),

    #[error("{path}: not a memspy dump (no memspy dump header; write one with memspy dump PID -o FILE)")]
    NotADump { path: String },

    #[error("{path}: a dump of format {found}, newer than this memspy reads (formats up to {supported}); read it with a newer memspy (this is {ours})")]
    DumpTooNew { path: String, found: u32, supported: u32, ours: String },

    #[error("{path}: the dump is truncated or corrupt ({detail}); write it again")]
    InDump { path: String, detail: String },

    #[error("cannot write {path}: {detail}")]
    CannotWrite { path: String, detail: String },

    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What to do about a permission error: for a user who is not root, the ways to get the permission;
/// for root (who has it unless something blocks it), what blocks it, as far as procfs tells.
pub fn permission_remedy(pid: i32) -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return NOT_ROOT_REMEDY.into();
    }
    let status = |p: &str| std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
    let field = |text: &str, name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string())).unwrap_or_default()
    };
    let target = status(&pid.to_string());
    let tracer = field(&target, "TracerPid:");
    if !tracer.is_empty() && tracer != "0" {
        let comm = std::fs::read_to_string(format!("/proc/{tracer}/comm")).unwrap_or_default();
        return format!(
            "PID {pid} is already traced by PID {tracer} ({}): a debugger or another tool holds it; detach it first",
            comm.trim()
        );
    }
    if std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").is_ok_and(|v| v.trim() == "3") {
        return "kernel.yama.ptrace_scope is 3: no process may be traced until the next reboot".into();
    }
    let me = status("self");
    let cap_eff = u64::from_str_radix(&field(&me, "CapEff:"), 16).unwrap_or(0);
    if cap_eff & (1 << 19) == 0 {
        return "memspy runs as root without CAP_SYS_PTRACE (a container's reduced capabilities): add it, e.g. \
                docker run --cap-add SYS_PTRACE, or kubectl debug --profile=general"
            .into();
    }
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
    if let (Some(mine), Some(theirs)) = (ns("self"), ns(&pid.to_string())) {
        if mine != theirs {
            return format!(
                "PID {pid} lives in another user namespace, where memspy's root is not root: run memspy inside the \
             target's namespaces (e.g. kubectl debug --target, or nsenter)"
            );
        }
    }
    if field(&me, "Seccomp:") == "2" {
        return "memspy runs under a seccomp filter (a container's default profile?) that may forbid ptrace and \
                process_vm_readv: run it with a profile that allows them (docker --security-opt seccomp=unconfined)"
            .into();
    }
    "something blocks ptrace even for root: a security module (SELinux, AppArmor) or a policy of the host".into()
}

/// How a user who is not root gets the permission to read another process.
pub const NOT_ROOT_REMEDY: &str = "Run memspy as root (sudo), or grant it CAP_SYS_PTRACE (setcap cap_sys_ptrace+ep \
     $(which memspy); in a container: --cap-add SYS_PTRACE), or allow ptrace of non-children with: sysctl \
     kernel.yama.ptrace_scope=0";

impl Error {
    /// A permission error reading `pid`, with the remedy that fits who memspy runs as.
    pub fn permission_denied(pid: i32, detail: String) -> Error {
        Error::PermissionDenied { pid, detail, remedy: permission_remedy(pid) }
    }

    /// True for read failures, which in a live target usually mean it exited or unmapped memory.
    pub fn is_read(&self) -> bool {
        matches!(self, Error::Read { .. })
    }

    /// A read that failed or data that did not hold together: in a live target, what a thread caught
    /// in the middle of an update (or a free) shows; pausing again may see it whole.
    pub fn is_inconsistency(&self) -> bool {
        matches!(self, Error::Read { .. } | Error::Corrupt(_) | Error::ListCheck { .. })
    }

    /// The check an inconsistency failed and what it saw, for [`Error::StillInconsistent`].
    pub fn failed_check(&self) -> (String, String) {
        match self {
            Error::ListCheck { check, detail } => ((*check).into(), detail.clone()),
            Error::Read { what, .. } => (format!("the {what} is readable"), self.to_string()),
            Error::Corrupt(detail) => ("the data decodes".into(), detail.clone()),
            other => ("none".into(), other.to_string()),
        }
    }
}
