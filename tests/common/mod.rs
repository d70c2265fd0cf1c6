//! Helpers shared by memspy's integration tests: interpreter discovery, fixture
//! processes (killed on drop), running the memspy binary with a time limit, and
//! a little ELF / procfs inspection to cross-check what memspy reports.
//!
//! Use from a test file with `mod common;`.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long a fixture may take to write its truth file.
pub const FIXTURE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one memspy invocation may take.
pub const MEMSPY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long probing one interpreter may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Paths

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture_script(name: &str) -> PathBuf {
    repo_root().join("fixtures").join(name)
}

pub fn memspy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_memspy"))
}

/// A directory (under cargo's per-test tmp dir) where tests may leave artifacts
/// (truth files, memspy output) for a human to look at after a failure.
pub fn artifact_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = fs::create_dir_all(&dir);
    dir
}

/// True when the environment says we run under CI (`CI=true` or `CI=1`).
pub fn ci_mode() -> bool {
    match std::env::var("CI") {
        Ok(v) => {
            let v = v.trim().to_ascii_lowercase();
            v == "true" || v == "1" || v == "yes"
        }
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------
// Temporary directories

static TMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop (unless
/// MEMSPY_KEEP_TMP is set).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let n = TMP_COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "memspy-{}-{}-{}-{:08x}",
            sanitize(prefix),
            std::process::id(),
            n,
            nanos
        ));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("MEMSPY_KEEP_TMP").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A string usable in file names.
pub fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' { c } else { '_' }).collect()
}

// ---------------------------------------------------------------------------
// Running commands with a time limit

#[derive(Debug)]
pub struct CmdOutput {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.map(|s| s.success()).unwrap_or(false)
    }

    /// "exit status 1", "killed by signal 9", "timed out after 120 s".
    pub fn describe_status(&self) -> String {
        if self.timed_out {
            return format!("timed out after {:.0} s (killed)", self.elapsed.as_secs_f64());
        }
        match self.status {
            Some(s) => describe_exit(s),
            None => "no exit status".to_string(),
        }
    }
}

pub fn describe_exit(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = s.code() {
        format!("exit status {}", code)
    } else if let Some(sig) = s.signal() {
        format!("killed by signal {}", sig)
    } else {
        format!("{:?}", s)
    }
}

/// Run `cmd` (stdin null, stdout and stderr captured); kill it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> io::Result<CmdOutput> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait()? {
            Some(s) => break Some(s),
            None => {
                if start.elapsed() > timeout {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Ok(CmdOutput { status, stdout, stderr, timed_out, elapsed: start.elapsed() })
}

/// Run the memspy binary with `args`.
pub fn run_memspy<I, S>(args: I) -> io::Result<CmdOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(memspy_bin());
    cmd.args(args);
    // Keep memspy's own logging from flooding stderr unless asked for.
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    run_with_timeout(cmd, MEMSPY_TIMEOUT)
}

/// `memspy top PID --once --json`, parsed.  Errors carry the exit status and stderr.
pub fn memspy_top_json(pid: u32) -> Result<(Value, CmdOutput), String> {
    memspy_top_json_with(pid, &[])
}

/// The last `max` bytes of `s` (on a char boundary), trimmed.
pub fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

// ---------------------------------------------------------------------------
// Interpreter discovery

#[derive(Clone, Debug)]
pub struct Interpreter {
    /// Canonical path of the interpreter binary (realpath of sys.executable).
    pub path: PathBuf,
    /// The candidate path it was found under (may be a symlink).
    pub found_as: PathBuf,
    /// (major, minor, micro) from sys.version_info.
    pub version: (u32, u32, u32),
    /// sys.version's first word, e.g. "3.13.0rc1".
    pub full_version: String,
    pub abiflags: String,
    pub debug: bool,
    pub free_threaded: bool,
    /// sysconfig Py_ENABLE_SHARED (informational; linkage is determined from the process).
    pub enable_shared: bool,
}

impl Interpreter {
    pub fn version_string(&self) -> String {
        format!("{}.{}.{}", self.version.0, self.version.1, self.version.2)
    }

    /// e.g. "3.12.1" or "3.13.5d".
    pub fn label(&self) -> String {
        format!("{}{}", self.version_string(), self.abiflags)
    }

    pub fn minor(&self) -> (u32, u32) {
        (self.version.0, self.version.1)
    }
}

#[derive(Clone, Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub version: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// Interpreters the tests should run against (>= 3.9, not free-threaded).
    pub interpreters: Vec<Interpreter>,
    /// Interpreters found but not used, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Is `name` "python3.N", "python3.Nd", "python3.Nt", "python3.Ntd"...?
fn is_versioned_python3(name: &str) -> bool {
    let rest = match name.strip_prefix("python3.") {
        Some(r) => r,
        None => return false,
    };
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && rest[digits..].chars().all(|c| c == 'd' || c == 't')
}

fn pyenv_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(r) = std::env::var_os("PYENV_ROOT") {
        roots.push(PathBuf::from(r));
    }
    if let Some(h) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(h).join(".pyenv"));
    }
    roots.push(PathBuf::from("/root/.pyenv"));
    roots
}

fn candidate_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    // pyenv versions
    for root in pyenv_roots() {
        let versions = root.join("versions");
        let mut dirs: Vec<PathBuf> = match fs::read_dir(&versions) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect(),
            Err(_) => continue,
        };
        dirs.sort();
        for bin in dirs {
            push_versioned_in(&bin, &mut out);
        }
    }
    // Debian / distribution builds
    for n in 9..=15 {
        for suffix in ["", "d", "t"] {
            out.push(PathBuf::from(format!("/usr/bin/python3.{}{}", n, suffix)));
        }
    }
    // Anything on PATH (pyenv shims are skipped: the versions are enumerated above,
    // and a shim for a version that is not selected just prints an error).
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.ends_with("shims") && pyenv_roots().iter().any(|r| dir.starts_with(r)) {
                continue;
            }
            push_versioned_in(&dir, &mut out);
        }
    }
    out
}

fn push_versioned_in(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut found: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().map(is_versioned_python3).unwrap_or(false))
            .map(|e| e.path())
            .collect(),
        Err(_) => return,
    };
    found.sort();
    out.extend(found);
}

const PROBE: &str = r#"
import json, os, sys, sysconfig
print(json.dumps({
    "executable": sys.executable,
    "realpath": os.path.realpath(sys.executable),
    "version": list(sys.version_info[:3]),
    "full_version": sys.version.split()[0],
    "abiflags": getattr(sys, "abiflags", ""),
    "debug": bool(sysconfig.get_config_var("Py_DEBUG")) or hasattr(sys, "gettotalrefcount"),
    "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
}))
"#;

fn probe(path: &Path) -> Result<Interpreter, String> {
    let mut cmd = Command::new(path);
    cmd.args(["-I", "-c", PROBE]);
    let out = run_with_timeout(cmd, PROBE_TIMEOUT).map_err(|e| format!("cannot run: {}", e))?;
    if !out.success() {
        return Err(format!("probe failed: {}: {}", out.describe_status(), tail(&out.stderr, 300)));
    }
    let v: Value = serde_json::from_str(out.stdout.trim())
        .map_err(|e| format!("probe printed no JSON ({}): {}", e, tail(&out.stdout, 300)))?;
    let ver: Vec<u32> = v["version"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect())
        .unwrap_or_default();
    if ver.len() != 3 {
        return Err(format!("probe: bad version {:?}", v["version"]));
    }
    let real = v["realpath"].as_str().unwrap_or_default();
    let real = if real.is_empty() {
        fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    } else {
        PathBuf::from(real)
    };
    Ok(Interpreter {
        path: real,
        found_as: path.to_path_buf(),
        version: (ver[0], ver[1], ver[2]),
        full_version: v["full_version"].as_str().unwrap_or_default().to_string(),
        abiflags: v["abiflags"].as_str().unwrap_or_default().to_string(),
        debug: v["debug"].as_bool().unwrap_or(false),
        free_threaded: v["gil_disabled"].as_bool().unwrap_or(false)
            || v["abiflags"].as_str().unwrap_or_default().contains('t'),
        enable_shared: v["shared"].as_bool().unwrap_or(false),
    })
}

fn discover_uncached() -> Discovery {
    let mut seen_candidates = BTreeSet::new();
    let mut seen_real = BTreeSet::new();
    let mut d = Discovery::default();
    for cand in candidate_paths() {
        let canon = match fs::canonicalize(&cand) {
            Ok(c) => c,
            Err(_) => continue, // does not exist
        };
        if !canon.is_file() || !seen_candidates.insert(canon.clone()) {
            continue;
        }
        let interp = match probe(&cand) {
            Ok(i) => i,
            Err(reason) => {
                d.skipped.push(Skipped { path: cand.clone(), version: "?".into(), reason });
                continue;
            }
        };
        if !seen_real.insert(interp.path.clone()) {
            continue;
        }
        if interp.version < (3, 9, 0) {
            d.skipped.push(Skipped {
                path: interp.path.clone(),
                version: interp.label(),
                reason: "older than 3.9 (covered by another test)".into(),
            });
        } else if interp.free_threaded {
            d.skipped.push(Skipped {
                path: interp.path.clone(),
                version: interp.label(),
                reason: "free-threaded build (not supported)".into(),
            });
        } else {
            d.interpreters.push(interp);
        }
    }
    d.interpreters.sort_by(|a, b| (a.version, &a.abiflags, &a.path).cmp(&(b.version, &b.abiflags, &b.path)));
    d
}

/// All interpreters on this machine (computed once per test binary).
///
/// Set MEMSPY_TEST_PYTHONS to a colon-separated list of paths to test only those.
pub fn discover_interpreters() -> &'static Discovery {
    static CACHE: OnceLock<Discovery> = OnceLock::new();
    CACHE.get_or_init(|| {
        let mut d = discover_uncached();
        if let Some(only) = std::env::var_os("MEMSPY_TEST_PYTHONS") {
            let wanted: Vec<PathBuf> =
                std::env::split_paths(&only).map(|p| fs::canonicalize(&p).unwrap_or(p)).collect();
            let (keep, drop): (Vec<_>, Vec<_>) = d.interpreters.into_iter().partition(|i| wanted.contains(&i.path));
            d.interpreters = keep;
            d.skipped.extend(drop.into_iter().map(|i| Skipped {
                path: i.path.clone(),
                version: i.label(),
                reason: "not selected by MEMSPY_TEST_PYTHONS".into(),
            }));
        }
        d
    })
}

// ---------------------------------------------------------------------------
// Fixture processes

/// A running fixture script.  The process is killed (SIGKILL) and reaped on drop,
/// and its temp dir removed.
pub struct Fixture {
    child: Child,
    pub pid: u32,
    pub truth_path: PathBuf,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    pub description: String,
    dir: TempDir,
}

impl Fixture {
    /// Start `interp -I fixtures/<script> <tmpdir>/truth.json <args...>`.
    pub fn spawn(interp: &Interpreter, script: &str, args: &[&str]) -> Result<Fixture, String> {
        Fixture::spawn_with_env(interp, script, args, &[])
    }

    /// Like [`Fixture::spawn`], with extra environment variables (e.g. PYTHONMALLOC=malloc): then `-s`
    /// instead of `-I`, which would ignore PYTHON* variables (`-s` still skips the user site).
    pub fn spawn_with_env(
        interp: &Interpreter,
        script: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Fixture, String> {
        let dir = TempDir::new(&format!("{}-{}", interp.label(), script)).map_err(|e| format!("temp dir: {}", e))?;
        let truth_path = dir.path().join("truth.json");
        let stderr_path = dir.path().join("stderr.txt");
        let stdout_path = dir.path().join("stdout.txt");
        let errf = fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let outf = fs::File::create(&stdout_path).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&interp.path);
        cmd.arg(if env.is_empty() { "-I" } else { "-s" }).arg(fixture_script(script)).arg(&truth_path).args(args);
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null()).stdout(outf).stderr(errf);
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {}", interp.path.display(), e))?;
        let pid = child.id();
        let envs: Vec<String> = env.iter().map(|(k, v)| format!("{}={} ", k, v)).collect();
        let description = format!("{}{} {} {}", envs.concat(), interp.path.display(), script, args.join(" "));
        Ok(Fixture { child, pid, truth_path, stderr_path, stdout_path, description, dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// None while running; Some(status) once it exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait (bounded) for the truth file; it is written atomically by rename.
    pub fn wait_for_truth(&mut self, timeout: Duration) -> Result<Value, String> {
        let start = Instant::now();
        loop {
            if self.truth_path.exists() {
                let text = fs::read_to_string(&self.truth_path).map_err(|e| format!("reading truth: {}", e))?;
                return serde_json::from_str(&text).map_err(|e| format!("truth file is not JSON: {}", e));
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "fixture exited before writing its truth ({}); stderr: {}",
                    describe_exit(status),
                    tail(&self.stderr_text(), 2000)
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "fixture wrote no truth within {} s; stderr: {}",
                    timeout.as_secs(),
                    tail(&self.stderr_text(), 2000)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait (bounded) until the fixture sits in `pause(2)` (fixtures that block in `signal.pause()` after
    /// writing their truth): between the rename of the truth file and the pause, the temporaries of the
    /// truth-taking may still be alive, and a loaded machine can deschedule the fixture right there.
    pub fn wait_until_paused(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let syscall = fs::read_to_string(format!("/proc/{}/syscall", self.pid)).unwrap_or_default();
            // x86_64: syscall 34 is pause.
            if syscall.split_whitespace().next() == Some("34") {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(format!("fixture exited ({}) instead of pausing", describe_exit(status)));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "fixture did not reach pause() within {} s (syscall: {})",
                    timeout.as_secs(),
                    syscall.trim()
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if start.elapsed() > timeout {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process state letter from /proc/PID/stat ('S', 'R', 'T', 't', 'Z', ...).
    pub fn proc_state(&self) -> Option<char> {
        proc_state(self.pid)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{}/stat", pid)).ok()?;
    // "pid (comm) S ..." -- comm may contain spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

// ---------------------------------------------------------------------------
// What the target process runs: linkage and strippedness, determined from
// /proc/PID/maps and the ELF files themselves.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryInfo {
    /// "shared" if _PyRuntime lives in a mapped libpython, "static" if in the executable.
    pub linkage: &'static str,
    /// The ELF file that defines _PyRuntime.
    pub runtime_elf: PathBuf,
    /// That file has no .symtab section.
    pub stripped: bool,
    /// Whether any mapping of the process is a libpython (cross-check of `linkage`).
    pub maps_libpython: bool,
}

/// Mapped file paths of a process, in order of first appearance.
pub fn mapped_files(pid: u32) -> Result<Vec<PathBuf>, String> {
    let maps =
        fs::read_to_string(format!("/proc/{}/maps", pid)).map_err(|e| format!("reading /proc/{}/maps: {}", pid, e))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode pathname
        let rest: String = line.split_whitespace().skip(5).collect::<Vec<_>>().join(" ");
        if rest.starts_with('/') && !rest.ends_with("(deleted)") && seen.insert(rest.clone()) {
            out.push(PathBuf::from(rest));
        }
    }
    Ok(out)
}

pub fn inspect_process(pid: u32) -> Result<BinaryInfo, String> {
    let exe = fs::read_link(format!("/proc/{}/exe", pid)).map_err(|e| format!("reading /proc/{}/exe: {}", pid, e))?;
    let files = mapped_files(pid)?;
    let libpythons: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).map(|n| n.starts_with("libpython")).unwrap_or(false))
        .collect();
    let exe_elf = elf_info(&exe)?;
    let (linkage, runtime_elf, stripped) = if exe_elf.defines_pyruntime {
        ("static", exe.clone(), !exe_elf.has_symtab)
    } else {
        let mut found = None;
        for lib in &libpythons {
            let info = elf_info(lib)?;
            if info.defines_pyruntime {
                found = Some(((*lib).clone(), !info.has_symtab));
                break;
            }
        }
        match found {
            Some((lib, stripped)) => ("shared", lib, stripped),
            None => {
                return Err(format!(
                    "no ELF defining _PyRuntime: not {} and not any of {:?}",
                    exe.display(),
                    libpythons
                ))
            }
        }
    };
    Ok(BinaryInfo { linkage, runtime_elf, stripped, maps_libpython: !libpythons.is_empty() })
}

/// Linkage / strippedness of an interpreter without a fixture: start it idle
/// (blocked reading stdin), inspect the process, kill it.  Cached per path.
pub fn inspect_interpreter(interp: &Interpreter) -> Result<BinaryInfo, String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, BinaryInfo>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(b) = cache.lock().unwrap().get(&interp.path) {
        return Ok(b.clone());
    }
    let mut child = Command::new(&interp.path)
        .args(["-I", "-c", "import sys; sys.stdin.read()"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {}", interp.path.display(), e))?;
    let start = Instant::now();
    // The dynamic loader maps libpython shortly after exec; retry until it is there.
    let result = loop {
        match inspect_process(child.id()) {
            Ok(b) => break Ok(b),
            Err(e) if start.elapsed() > Duration::from_secs(10) => break Err(e),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Ok(b) = &result {
        cache.lock().unwrap().insert(interp.path.clone(), b.clone());
    }
    result
}

#[derive(Clone, Copy, Debug)]
pub struct ElfInfo {
    pub has_symtab: bool,
    pub defines_pyruntime: bool,
}

/// Section-header level facts about an ELF64 little-endian file (cached by path).
pub fn elf_info(path: &Path) -> Result<ElfInfo, String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, ElfInfo>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(i) = cache.lock().unwrap().get(path) {
        return Ok(*i);
    }
    let data = fs::read(path).map_err(|e| format!("reading {}: {}", path.display(), e))?;
    let info = parse_elf(&data).map_err(|e| format!("{}: {}", path.display(), e))?;
    cache.lock().unwrap().insert(path.to_path_buf(), info);
    Ok(info)
}

fn rd_u16(d: &[u8], off: usize) -> Result<u16, String> {
    d.get(off..off + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).ok_or_else(|| "truncated ELF".to_string())
}

fn rd_u32(d: &[u8], off: usize) -> Result<u32, String> {
    d.get(off..off + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).ok_or_else(|| "truncated ELF".to_string())
}

fn rd_u64(d: &[u8], off: usize) -> Result<u64, String> {
    d.get(off..off + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).ok_or_else(|| "truncated ELF".to_string())
}

fn cstr_at(d: &[u8], off: usize) -> &[u8] {
    match d.get(off..) {
        Some(s) => &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())],
        None => &[],
    }
}

fn parse_elf(d: &[u8]) -> Result<ElfInfo, String> {
    const SHT_SYMTAB: u32 = 2;
    const SHT_DYNSYM: u32 = 11;
    if d.len() < 64 || &d[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if d[4] != 2 || d[5] != 1 {
        return Err("not ELF64 little-endian".into());
    }
    let shoff = rd_u64(d, 0x28)? as usize;
    let shentsize = rd_u16(d, 0x3a)? as usize;
    let mut shnum = rd_u16(d, 0x3c)? as usize;
    if shoff == 0 {
        return Ok(ElfInfo { has_symtab: false, defines_pyruntime: false });
    }
    if shnum == 0 {
        shnum = rd_u64(d, shoff + 32)? as usize; // extended numbering: sh_size of section 0
    }
    if shentsize < 64 {
        return Err("bad e_shentsize".into());
    }
    struct Sh {
        kind: u32,
        offset: usize,
        size: usize,
        link: usize,
        entsize: usize,
    }
    let mut shs = Vec::with_capacity(shnum);
    for i in 0..shnum {
        let b = shoff + i * shentsize;
        shs.push(Sh {
            kind: rd_u32(d, b + 4)?,
            offset: rd_u64(d, b + 24)? as usize,
            size: rd_u64(d, b + 32)? as usize,
            link: rd_u32(d, b + 40)? as usize,
            entsize: rd_u64(d, b + 56)? as usize,
        });
    }
    let has_symtab = shs.iter().any(|s| s.kind == SHT_SYMTAB);
    let mut defines_pyruntime = false;
    'outer: for s in shs.iter().filter(|s| s.kind == SHT_DYNSYM || s.kind == SHT_SYMTAB) {
        let strtab = match shs.get(s.link) {
            Some(t) => t,
            None => continue,
        };
        let ent = if s.entsize >= 24 { s.entsize } else { 24 };
        let n = s.size / ent;
        for k in 0..n {
            let e = s.offset + k * ent;
            let name_off = rd_u32(d, e)? as usize;
            let shndx = rd_u16(d, e + 6)?;
            if shndx == 0 || name_off >= strtab.size {
                continue;
            }
            if cstr_at(d, strtab.offset + name_off) == b"_PyRuntime" {
                defines_pyruntime = true;
                break 'outer;
            }
        }
    }
    Ok(ElfInfo { has_symtab, defines_pyruntime })
}

// ---------------------------------------------------------------------------
// Small JSON helpers

/// `v[key]` as u64, or an error naming the path.
pub fn get_u64(v: &Value, path: &str) -> Result<u64, String> {
    lookup(v, path)?
        .as_u64()
        .ok_or_else(|| format!("`{}` is not an unsigned integer: {}", path, lookup(v, path).unwrap()))
}

pub fn get_str<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    let x = lookup(v, path)?;
    x.as_str().ok_or_else(|| format!("`{}` is not a string: {}", path, x))
}

pub fn get_bool(v: &Value, path: &str) -> Result<bool, String> {
    let x = lookup(v, path)?;
    x.as_bool().ok_or_else(|| format!("`{}` is not a boolean: {}", path, x))
}

pub fn get_u64_array(v: &Value, path: &str) -> Result<Vec<u64>, String> {
    let x = lookup(v, path)?;
    let arr = x.as_array().ok_or_else(|| format!("`{}` is not an array: {}", path, x))?;
    arr.iter().map(|e| e.as_u64().ok_or_else(|| format!("`{}` has a non-integer element: {}", path, e))).collect()
}

/// Follow a dotted path ("python.version", "gc.generations").
pub fn lookup<'a>(v: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part).ok_or_else(|| format!("missing field `{}`", path))?;
    }
    Ok(cur)
}

// ---------------------------------------------------------------------------
// memspy with extra options (full-heap work)

/// `memspy ARGS...`, its stdout parsed as JSON.  Errors carry the exit status and stderr.
pub fn run_memspy_json<S: AsRef<str>>(args: &[S]) -> Result<(Value, CmdOutput), String> {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let out = run_memspy(&args).map_err(|e| format!("could not run {}: {}", memspy_bin().display(), e))?;
    if !out.success() {
        return Err(format!(
            "`memspy {}` failed: {}; stderr: {}",
            args.join(" "),
            out.describe_status(),
            tail(&out.stderr, 2000)
        ));
    }
    match serde_json::from_str::<Value>(&out.stdout) {
        Ok(v) => Ok((v, out)),
        Err(e) => Err(format!(
            "memspy stdout is not JSON ({}): {}; stderr: {}",
            e,
            tail(&out.stdout, 1000),
            tail(&out.stderr, 1000)
        )),
    }
}

/// `memspy top PID --once --json EXTRA...`, parsed.
pub fn memspy_top_json_with(pid: u32, extra: &[&str]) -> Result<(Value, CmdOutput), String> {
    let pid = pid.to_string();
    let mut args = vec!["top", pid.as_str(), "--once", "--json"];
    args.extend_from_slice(extra);
    run_memspy_json(&args)
}

// ---------------------------------------------------------------------------
// Executing a freshly copied binary

/// Spawns `cmd`, retrying while the kernel answers ETXTBSY: a binary the test just copied can still be
/// open for writing in a child that another test thread forked during the copy (until that child execs).
pub fn spawn_retrying(cmd: &mut Command) -> io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc_etxtbsy()) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// ETXTBSY on Linux.
pub const fn libc_etxtbsy() -> i32 {
    26
}

// ---------------------------------------------------------------------------
// Fixtures that record their truth and then block in pause()

/// Starts `script` under `interp`, waits for its truth and until it sits in `pause()`: the state every
/// ground-truth comparison needs. Returns the running fixture and its truth.
pub fn start_settled(interp: &Interpreter, script: &str, args: &[&str]) -> Result<(Fixture, Value), String> {
    let mut fixture = Fixture::spawn(interp, script, args)?;
    let truth = fixture.wait_for_truth(FIXTURE_TIMEOUT)?;
    fixture.wait_until_paused(FIXTURE_TIMEOUT)?;
    Ok((fixture, truth))
}
