//! Safe to point at production: memspy never writes to the target, never leaves it stopped (SIGKILL,
//! SIGINT, SIGTERM or a panic in the middle of a walk), copes with a moving target and with a target
//! that exits mid-walk, honours --timeout and --max-pause.
//! (The targets memspy refuses are in refused_targets.rs.)
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

const DELAY_US: &str = "200";

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
    let interps = spread_interpreters(3);
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
            // How approximate: a sample of the objects found, read again after the walk.
            let c = &r["scan"]["changed_under_walk"];
            let (checked, changed) = (c["checked"].as_u64().unwrap_or(0), c["changed"].as_u64().unwrap_or(0));
            // One object in 256, chosen by address: at least one in a thousand of those found.
            let objects = r["totals"]["objects"].as_u64().unwrap_or(0);
            assert!(checked > 0 && checked * 1000 >= objects && changed <= checked, "{}: {c}", interp.label());
            eprintln!("moving target: {} nonblocking run {i}: {changed} of {checked} sampled changed", interp.label());
        }
        // `why` without a pause says the same: approximate, and how much of its sample moved.
        let out =
            run_memspy(["why", pid.as_str(), "--type", "dict", "--json", "--nonblocking", "--timeout", "30"]).unwrap();
        assert!(out.success(), "{} why --nonblocking: {} {}", interp.label(), out.describe_status(), out.stderr);
        let a = serde_json::from_str::<Value>(&out.stdout).expect("JSON")["analysis"].clone();
        assert_eq!((&a["approximate"], &a["pause_ms"]), (&Value::Bool(true), &Value::from(0.0)), "{}", interp.label());
        let c = &a["changed_under_walk"];
        assert!(c["checked"].as_u64().unwrap_or(0) > 0, "{}: why --nonblocking rechecked nothing: {a}", interp.label());
        let out = run_memspy(["why", pid.as_str(), "--type", "dict", "--nonblocking"]).unwrap();
        assert!(out.stdout.contains("[approximate: read without pausing; "), "{}: {}", interp.label(), out.stdout);
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
