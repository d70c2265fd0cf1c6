//! Safe to point at production: memspy never writes to the target, never leaves it stopped (SIGKILL,
//! SIGINT, SIGTERM or a panic in the middle of a walk), copes with a moving target and with a target
//! that exits mid-walk, honours --timeout and --max-pause, and answers every bad input with one line.
//!
//! The walk is caught in the middle with the hidden knob MEMSPY_TEST_WALK_DELAY_US (a sleep per object)
//! and the target's /proc state ('t': stopped by a tracer). The target (fixtures/safety_target.py) writes
//! a heartbeat counter to a file; "runs" means: not stopped, and the counter moves.
//!
//! Runs on one interpreter (MEMSPY_TEST_PYTHONS selects; default: the first non-debug one found), the
//! moving-target tests on up to three.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use memspy::error::Error;
use serde_json::Value;

const TARGET: &str = "safety_target.py";
const DELAY_US: &str = "200";

fn interpreters(n: usize) -> Vec<Interpreter> {
    let d = discover_interpreters();
    let mut all: Vec<Interpreter> = d.interpreters.iter().filter(|i| !i.debug).cloned().collect();
    if all.is_empty() {
        all = d.interpreters.clone();
    }
    if all.len() <= n {
        return all;
    }
    // Spread: oldest, newest, then the middle.
    let mut out = vec![all[0].clone(), all[all.len() - 1].clone()];
    if n > 2 {
        out.push(all[all.len() / 2].clone());
    }
    out.truncate(n);
    out
}

fn one_interpreter() -> Option<Interpreter> {
    let i = interpreters(usize::MAX);
    // Prefer a 3.12 (shared libpython), else the newest.
    i.iter().find(|i| i.version.1 == 12).or(i.last()).cloned()
}

fn beat_path(fx: &Fixture) -> PathBuf {
    PathBuf::from(format!("{}.beat", fx.truth_path.display()))
}

fn beats(fx: &Fixture) -> Option<u64> {
    fs::read_to_string(beat_path(fx)).ok()?.trim().parse().ok()
}

/// Polls `cond` every 5 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// The target is not stopped and its heartbeat advances (within a generous bound).
fn assert_runs(fx: &Fixture, what: &str) {
    let stopped = |pid| matches!(proc_state(pid), Some('t') | Some('T'));
    assert!(
        wait_until(Duration::from_secs(10), || !stopped(fx.pid)),
        "{what}: the target is left stopped (state {:?})",
        proc_state(fx.pid)
    );
    let before = beats(fx).unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(20), || beats(fx).unwrap_or(0) >= before + 3),
        "{what}: the target makes no progress (beat {before} -> {:?}, state {:?})",
        beats(fx),
        proc_state(fx.pid)
    );
}

fn spawn_target(interp: &Interpreter, args: &[&str]) -> Fixture {
    let mut fx = Fixture::spawn(interp, TARGET, args).expect("spawn target");
    fx.wait_for_truth(FIXTURE_TIMEOUT).unwrap_or_else(|e| panic!("{}: {e}", interp.label()));
    assert!(wait_until(Duration::from_secs(10), || beats(&fx).is_some()), "no heartbeat");
    fx
}

/// memspy started in the background with extra environment.
fn memspy_child(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(memspy_bin());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start memspy")
}

/// Waits (bounded) for memspy to have the target paused mid-walk.
fn wait_paused(fx: &Fixture, memspy: &mut Child) {
    let ok = wait_until(Duration::from_secs(60), || {
        proc_state(fx.pid) == Some('t') || memspy.try_wait().ok().flatten().is_some()
    });
    assert!(ok && proc_state(fx.pid) == Some('t'), "memspy never paused the target (memspy: {:?})", memspy.try_wait());
    // Let the walk get going.
    thread::sleep(Duration::from_millis(200));
    assert_eq!(proc_state(fx.pid), Some('t'), "the walk ended too early to be interrupted");
}

fn finish(mut child: Child, limit: Duration) -> (Option<std::process::ExitStatus>, String, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status, out, err)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// An error answer: non-zero exit, exactly one line on stderr, starting with "memspy: ", no panic.
fn assert_one_line_error(status: Option<std::process::ExitStatus>, stderr: &str, what: &str) -> String {
    let status = status.unwrap_or_else(|| panic!("{what}: memspy did not finish"));
    assert!(!status.success(), "{what}: memspy succeeded; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected one line on stderr, got: {stderr:?}");
    assert!(lines[0].starts_with("memspy: "), "{what}: {stderr:?}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{what}: {stderr:?}");
    lines[0].to_string()
}

// ---------------------------------------------------------------------------------------------------
// Read-only by construction

#[test]
fn no_code_path_writes_target_memory() {
    // The patterns are built by concatenation so that this file does not contain them.
    let forbidden = [
        ["process_vm_", "writev"].concat(),
        ["PTRACE_", "POKE"].concat(),
        ["ptrace::", "write"].concat(),
        ["POKE", "DATA"].concat(),
        ["POKE", "TEXT"].concat(),
        ["POKE", "USER"].concat(),
        ["/m", "em\""].concat(),
        ["/m", "em\")"].concat(),
        ["}/m", "em"].concat(),
    ];
    let mut files = Vec::new();
    for dir in ["src", "python_bindings/src", "fuzz/fuzz_targets"] {
        collect_rs(&repo_root().join(dir), &mut files);
    }
    assert!(files.len() >= 10, "found only {} source files", files.len());
    let mut hits = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        for (n, full) in text.lines().enumerate() {
            // Code only: comments may name what is forbidden (and say it is).
            let line = full.split("//").next().unwrap_or("");
            for p in &forbidden {
                if line.contains(p.as_str()) {
                    hits.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(hits.is_empty(), "code that could write to the target:\n{}", hits.join("\n"));
    // The scan itself works: the reader is found.
    let reader = ["process_vm_", "readv"].concat();
    assert!(files.iter().any(|f| fs::read_to_string(f).unwrap().contains(&reader)));
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Never left stopped

fn interrupted_mid_walk(sig: i32, once: bool, what: &str) {
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let fx = spawn_target(&interp, &[]);
    let pid = fx.pid.to_string();
    let mut args = vec!["top", pid.as_str(), "--json"];
    if once {
        args.push("--once");
    }
    let mut m = memspy_child(&args, &[("MEMSPY_TEST_WALK_DELAY_US", DELAY_US)]);
    wait_paused(&fx, &mut m);
    signal(m.id(), sig);
    let (status, _, stderr) = finish(m, Duration::from_secs(30));
    let status = status.unwrap_or_else(|| panic!("{what}: memspy did not exit after the signal"));
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    if sig != libc::SIGKILL {
        // A handled signal stops the walk: quick exit, one line, status 130 (--once) or 0 (live loop).
        assert!(stderr.lines().count() <= 1, "{what}: {stderr}");
        let code = status.code();
        assert!(code == Some(130) || code == Some(0), "{what}: {status:?} {stderr}");
    }
    assert_runs(&fx, what);
    eprintln!("{what}: {} — target runs afterwards", interp.label());
}

#[test]
fn sigkill_mid_walk_leaves_the_target_running() {
    interrupted_mid_walk(libc::SIGKILL, true, "SIGKILL mid-walk");
}

#[test]
fn sigint_mid_walk_once_resumes_the_target() {
    interrupted_mid_walk(libc::SIGINT, true, "SIGINT mid-walk (--once)");
}

#[test]
fn sigterm_mid_walk_in_the_live_loop_resumes_the_target() {
    interrupted_mid_walk(libc::SIGTERM, false, "SIGTERM mid-walk (refresh loop)");
}

#[test]
fn panic_in_the_walk_resumes_the_target() {
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let fx = spawn_target(&interp, &[]);
    let m = memspy_child(&["top", &fx.pid.to_string(), "--once"], &[("MEMSPY_TEST_PANIC_IN_WALK", "5000")]);
    let (status, _, stderr) = finish(m, Duration::from_secs(60));
    let line = assert_one_line_error(status, &stderr, "panic in walk");
    assert!(line.contains("internal error") && line.contains("MEMSPY_TEST_PANIC_IN_WALK"), "{line}");
    assert_eq!(status.unwrap().code(), Some(101));
    assert_runs(&fx, "panic in walk");
}

/// The same in the full walk's worker threads (past the GC lists): the panic reaches the main thread as
/// one line and the target is resumed.
#[test]
fn panic_in_a_walk_worker_resumes_the_target() {
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let fx = spawn_target(&interp, &[]);
    let (report, _) = memspy_top_json_with(fx.pid, &["--gc-only"]).expect("gc-only report");
    let tracked = report["totals"]["gc_tracked"].as_u64().expect("gc_tracked");
    let at = (tracked + 2000).to_string();
    let m = memspy_child(&["top", &fx.pid.to_string(), "--once"], &[("MEMSPY_TEST_PANIC_IN_WALK", at.as_str())]);
    let (status, _, stderr) = finish(m, Duration::from_secs(60));
    let line = assert_one_line_error(status, &stderr, "panic in a walk worker");
    assert!(line.contains("internal error") && line.contains("MEMSPY_TEST_PANIC_IN_WALK"), "{line}");
    assert_eq!(status.unwrap().code(), Some(101));
    assert_runs(&fx, "panic in a walk worker");
}

// ---------------------------------------------------------------------------------------------------
// The target exits mid-walk; time budgets

#[test]
fn target_exiting_mid_walk_is_one_line_error() {
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let mut fx = spawn_target(&interp, &[]);
    let mut m = memspy_child(&["top", &fx.pid.to_string(), "--once"], &[("MEMSPY_TEST_WALK_DELAY_US", DELAY_US)]);
    wait_paused(&fx, &mut m);
    signal(fx.pid, libc::SIGKILL);
    let (status, stdout, stderr) = finish(m, Duration::from_secs(60));
    let line = assert_one_line_error(status, &stderr, "target exited mid-walk");
    assert!(shows_error(&line, &Error::TargetExited { pid: fx.pid as i32 }), "{line}; stdout: {}", tail(&stdout, 300));
    assert!(fx.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn max_pause_resumes_the_target_and_reports_partial() {
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let fx = spawn_target(&interp, &[]);
    let start = Instant::now();
    let m = memspy_child(
        &["top", &fx.pid.to_string(), "--once", "--json", "--max-pause", "1"],
        &[("MEMSPY_TEST_WALK_DELAY_US", DELAY_US)],
    );
    let (status, stdout, stderr) = finish(m, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?} {stderr}");
    let r: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(r["partial"], Value::Bool(true), "{}", tail(&stdout, 500));
    assert_eq!(r["approximate"], Value::Bool(true));
    let pause = r["pause_ms"].as_f64().unwrap();
    assert!((900.0..10_000.0).contains(&pause), "paused {pause} ms with --max-pause 1");
    let objects = r["totals"]["objects"].as_u64().unwrap();
    assert!(objects > 0 && objects < 200_000, "a partial walk read {objects} objects");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_runs(&fx, "--max-pause");
}

#[test]
fn timeout_caps_the_walk() {
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let fx = spawn_target(&interp, &[]);
    for extra in [&["--nonblocking"][..], &["--max-pause", "30"][..]] {
        let start = Instant::now();
        let pid = fx.pid.to_string();
        let mut args = vec!["top", pid.as_str(), "--once", "--timeout", "2"];
        args.extend_from_slice(extra);
        let m = memspy_child(&args, &[("MEMSPY_TEST_WALK_DELAY_US", DELAY_US)]);
        let (status, _, stderr) = finish(m, Duration::from_secs(60));
        let line = assert_one_line_error(status, &stderr, "--timeout");
        assert!(shows_error(&line, &Error::Timeout { seconds: 2.0, what: ANY.into() }), "{extra:?}: {line}");
        assert!(start.elapsed() < Duration::from_secs(20), "{extra:?}: took {:?}", start.elapsed());
        assert_runs(&fx, "--timeout");
    }
}

// ---------------------------------------------------------------------------------------------------
// A moving target

#[test]
fn moving_target_nonblocking_and_paused() {
    let interps = interpreters(3);
    if interps.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    for interp in interps {
        let fx = spawn_target(&interp, &["--objects", "30000", "--churn", "4"]);
        let pid = fx.pid.to_string();
        for i in 0..3 {
            let start = Instant::now();
            let out =
                run_memspy(["top", pid.as_str(), "--once", "--json", "--nonblocking", "--timeout", "30"]).unwrap();
            assert!(out.success(), "{} nonblocking run {i}: {} {}", interp.label(), out.describe_status(), out.stderr);
            assert!(start.elapsed() < Duration::from_secs(40));
            let r: Value = serde_json::from_str(&out.stdout).expect("JSON");
            assert_eq!(r["approximate"], Value::Bool(true));
            assert_eq!(r["pause_ms"].as_f64(), Some(0.0));
        }
        for i in 0..5 {
            let out = run_memspy(["-v", "top", pid.as_str(), "--once", "--json"]).unwrap();
            assert!(out.success(), "{} paused run {i}: {} {}", interp.label(), out.describe_status(), out.stderr);
            assert!(!out.stderr.contains("could not be read"), "{}: {}", interp.label(), out.stderr);
            let r: Value = serde_json::from_str(&out.stdout).expect("JSON");
            assert_eq!(r["approximate"], Value::Bool(false), "{}", interp.label());
            assert_eq!(r["partial"], Value::Bool(false));
            let types = r["types"].as_array().unwrap();
            let sum = |f: &str| types.iter().map(|t| t[f].as_u64().unwrap()).sum::<u64>();
            assert_eq!(r["totals"]["objects"].as_u64(), Some(sum("count")));
            assert_eq!(r["totals"]["bytes"].as_u64(), Some(sum("bytes")));
            let gens: u64 =
                get_u64_array(&r, "gc.generations").unwrap().iter().sum::<u64>() + get_u64(&r, "gc.permanent").unwrap();
            assert_eq!(gens, get_u64(&r, "totals.gc_tracked").unwrap(), "{}", interp.label());
            assert!(sum("count") >= 30_000, "{}: {} objects", interp.label(), sum("count"));
        }
        assert_runs(&fx, "moving target");
        eprintln!("moving target: {} ok", interp.label());
    }
}

// ---------------------------------------------------------------------------------------------------
// A thread that cannot be stopped

/// The threads of `pid` in state D (uninterruptible sleep).
fn threads_in_d(pid: u32) -> Vec<String> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|tid| {
            fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
                .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('D')))
        })
        .collect()
}

#[test]
fn a_thread_in_uninterruptible_sleep_is_one_line_error_and_the_target_runs() {
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let tmp = TempDir::new("stuck").unwrap();
    let fifo = tmp.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // However the test ends, release the spawned child blocked opening the FIFO (else it outlives the test).
    struct Release(PathBuf);
    impl Drop for Release {
        fn drop(&mut self) {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&self.0);
        }
    }
    let _release = Release(fifo.clone());
    let fx = spawn_target(&interp, &["--objects", "20000", "--stuck", &fifo.display().to_string()]);
    // The spawning thread waits in state D for its vfork child, which blocks opening the FIFO.
    let mut stuck = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            stuck = threads_in_d(fx.pid);
            !stuck.is_empty()
        }),
        "{}: no thread of the fixture in state D",
        interp.label()
    );
    let tid = stuck[0].clone();
    let pid = fx.pid.to_string();
    // Found before pausing; and (with the check skipped) met while pausing: the watchdog gives up.
    for (env, what) in [
        (&[][..], "thread in D before the pause"),
        (&[("MEMSPY_TEST_SKIP_STOP_CHECK", "1")][..], "thread in D during the pause"),
    ] {
        let start = Instant::now();
        let m = memspy_child(&["top", pid.as_str(), "--once"], env);
        let (status, _, stderr) = finish(m, Duration::from_secs(60));
        let line = assert_one_line_error(status, &stderr, what);
        // The detail (which thread, in which state) is written in src/process/stop.rs.
        assert!(
            shows_error(&line, &Error::CannotStop { pid: fx.pid as i32, detail: ANY.into() })
                && line.contains("uninterruptible sleep")
                && line.contains(&format!("thread {tid} ")),
            "{what}: {line}"
        );
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: took {:?}", start.elapsed());
        assert_runs(&fx, what);
        assert!(threads_in_d(fx.pid).contains(&tid), "{what}: the stuck thread woke up");
        eprintln!("{}: {what}: {:.2} s: {line}", interp.label(), start.elapsed().as_secs_f64());
    }
    // Reading without stopping works meanwhile.
    let out = run_memspy(["top", pid.as_str(), "--once", "--json", "--nonblocking"]).unwrap();
    assert!(out.success(), "--nonblocking: {}", out.stderr);
    // Release the child (its open of the FIFO returns once a writer opens it): the thread wakes, and the
    // target can be paused again.
    let w = fs::OpenOptions::new().write(true).open(&fifo).expect("open the FIFO for writing");
    drop(w);
    assert!(wait_until(Duration::from_secs(10), || !threads_in_d(fx.pid).contains(&tid)), "the thread stays in D");
    let out = run_memspy(["top", pid.as_str(), "--once", "--json"]).unwrap();
    assert!(out.success(), "after the release: {}", out.stderr);
    assert_runs(&fx, "after the release");
}

// ---------------------------------------------------------------------------------------------------
// Bad input: one line each

fn memspy_error(args: &[&str], what: &str) -> String {
    let out = run_memspy(args).unwrap();
    assert!(!out.timed_out, "{what}: memspy hung");
    assert_one_line_error(out.status, &out.stderr, what)
}

#[test]
fn no_such_pid() {
    // Above the largest possible pid_max (2^22): never a process.
    let line = memspy_error(&["top", "4194309", "--once"], "no such PID");
    assert!(shows_error(&line, &Error::NoSuchProcess(4194309)), "{line}");
}

struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn not_a_python_process() {
    let c = Reaped(Command::new("sleep").arg("100").spawn().unwrap());
    let pid = c.0.id();
    // Wait for the exec to have happened.
    let exe = || fs::read_link(format!("/proc/{pid}/exe")).map(|p| p.to_string_lossy().into_owned());
    assert!(wait_until(Duration::from_secs(10), || exe().is_ok_and(|p| p.contains("sleep"))));
    let line = memspy_error(&["top", &pid.to_string(), "--once"], "non-Python");
    let e = Error::NotPython { pid: pid as i32, exe: exe().unwrap() };
    assert!(shows_error(&line, &e) && line.contains("sleep"), "{line}");
}

#[test]
fn zombie() {
    // `sleep 100` inherits a child that exits and is never reaped.
    let c = Reaped(Command::new("sh").args(["-c", "sleep 0.1 & exec sleep 100"]).spawn().unwrap());
    let parent = c.0.id();
    let mut zombie = None;
    wait_until(Duration::from_secs(10), || {
        let kids = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
        zombie = kids.split_whitespace().filter_map(|k| k.parse::<u32>().ok()).find(|k| proc_state(*k) == Some('Z'));
        zombie.is_some()
    });
    let z = zombie.expect("a zombie child");
    let line = memspy_error(&["top", &z.to_string(), "--once"], "zombie");
    assert!(shows_error(&line, &Error::Zombie { pid: z as i32 }), "{line}");
}

#[test]
fn own_pid() {
    // The shell prints its PID, which memspy (exec'd in its place) keeps.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("echo $$; exec '{}' top $$ --once", memspy_bin().display())]);
    let out = run_with_timeout(cmd, MEMSPY_TIMEOUT).unwrap();
    let line = assert_one_line_error(out.status, &out.stderr, "own PID");
    let pid: i32 = out.stdout.trim().parse().unwrap_or_else(|_| panic!("no PID on stdout: {:?}", out.stdout));
    assert!(shows_error(&line, &Error::SelfTarget(pid)), "{line}");
}

#[test]
fn permission_denied_names_the_remedies() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || Command::new("setpriv").arg("--version").output().is_err() {
        return skip_or_fail("needs root and setpriv");
    }
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let fx = spawn_target(&interp, &["--objects", "1000"]);
    // The unprivileged user may not be able to reach the build directory (a checkout under /root):
    // run a world-executable copy of the binary from a fresh directory instead.
    let dir = TempDir::new("perm").expect("temp dir");
    let bin = dir.path().join("memspy");
    std::fs::copy(memspy_bin(), &bin).expect("copy memspy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod memspy");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&bin).args([
        "top",
        &fx.pid.to_string(),
        "--once",
    ]);
    let mut out = run_with_timeout(cmd, MEMSPY_TIMEOUT).unwrap();
    // setpriv execs the copy itself: retry while that copy is still busy (see spawn_retrying).
    for _ in 0..50 {
        if !out.stderr.contains("Text file busy") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        let mut again = Command::new("setpriv");
        again.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&bin).args([
            "top",
            &fx.pid.to_string(),
            "--once",
        ]);
        out = run_with_timeout(again, MEMSPY_TIMEOUT).unwrap();
    }
    let line = assert_one_line_error(out.status, &out.stderr, "permission denied");
    // The text names the remedies: root, CAP_SYS_PTRACE, ptrace_scope.
    assert!(shows_error(&line, &Error::PermissionDenied { pid: fx.pid as i32, detail: ANY.into() }), "{line}");
    assert_runs(&fx, "permission denied");
}

/// Python interpreters memspy does not support, from pyenv: (version prefix, binary).
fn old_pythons() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let root = PathBuf::from(std::env::var("PYENV_ROOT").unwrap_or_else(|_| "/root/.pyenv".into())).join("versions");
    for v in ["2.7", "3.6", "3.7", "3.8"] {
        let dir = fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{v}."))));
        if let Some(d) = dir {
            let bin = d.join("bin").join(format!("python{v}"));
            if bin.exists() {
                out.push((v.to_string(), bin));
            }
        }
    }
    out
}

/// Starts `python script ready` (no -I: Python 2 lacks it) and waits for its ready file.
fn start_plain(bin: &Path, dir: &Path, env: &[(&str, &str)]) -> Reaped {
    let ready = dir.join("ready");
    let mut cmd = Command::new(bin);
    cmd.arg(fixture_script(TARGET)).arg(&ready).args(["--objects", "100"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let c = Reaped(spawn_retrying(&mut cmd).unwrap());
    assert!(wait_until(Duration::from_secs(30), || ready.exists()), "{} did not start", bin.display());
    c
}

#[test]
fn unsupported_versions_are_named() {
    let olds = old_pythons();
    if olds.is_empty() {
        return skip_or_fail("no pyenv 2.7/3.6/3.7/3.8 found");
    }
    for (v, bin) in olds {
        let tmp = TempDir::new(&format!("old-{v}")).unwrap();
        let c = start_plain(&bin, tmp.path(), &[]);
        let line = memspy_error(&["top", &c.0.id().to_string(), "--once"], &v);
        let e = Error::UnsupportedVersion { pid: c.0.id() as i32, version: ANY.into() };
        assert!(shows_error(&line, &e) && line.contains(&v), "Python {v}: {line}");
        eprintln!("Python {v}: {line}");
    }
}

#[test]
fn free_threaded_build_by_file_name() {
    // A GIL build under a free-threaded name (python3.Nt), without debug offsets to say otherwise.
    let Some(src) = ["/usr/bin/python3.11", "/usr/bin/python3.9"].into_iter().map(PathBuf::from).find(|p| p.exists())
    else {
        return skip_or_fail("no Debian static python3.11/3.9");
    };
    let tmp = TempDir::new("ft-name").unwrap();
    let name = format!("{}t", src.file_name().unwrap().to_string_lossy());
    let bin = tmp.path().join(&name);
    fs::copy(&src, &bin).unwrap();
    let c = start_plain(&bin, tmp.path(), &[("PYTHONHOME", "/usr")]);
    let line = memspy_error(&["top", &c.0.id().to_string(), "--once"], "free-threaded name");
    assert!(shows_error(&line, &Error::FreeThreaded { pid: c.0.id() as i32, version: ANY.into() }), "{line}");
}
