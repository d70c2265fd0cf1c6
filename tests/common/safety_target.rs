//! The target of the safety tests (fixtures/safety_target.py), which writes a heartbeat counter to a
//! file: starting it, and checking that it runs ("runs" means: not stopped, and the counter moves);
//! and the shape of memspy's error answers.

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use super::{discover_interpreters, proc_state, Fixture, Interpreter, FIXTURE_TIMEOUT};

pub const TARGET: &str = "safety_target.py";

/// Up to `n` of the interpreters found (non-debug ones if there are any), spread over the versions.
pub fn spread_interpreters(n: usize) -> Vec<Interpreter> {
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

pub fn one_interpreter() -> Option<Interpreter> {
    let i = spread_interpreters(usize::MAX);
    // Prefer a 3.12 (shared libpython), else the newest.
    i.iter().find(|i| i.version.1 == 12).or(i.last()).cloned()
}

pub fn beat_path(fx: &Fixture) -> PathBuf {
    PathBuf::from(format!("{}.beat", fx.truth_path.display()))
}

pub fn beats(fx: &Fixture) -> Option<u64> {
    fs::read_to_string(beat_path(fx)).ok()?.trim().parse().ok()
}

/// Polls `cond` every 5 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
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
pub fn assert_runs(fx: &Fixture, what: &str) {
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

pub fn spawn_target(interp: &Interpreter, args: &[&str]) -> Fixture {
    let mut fx = Fixture::spawn(interp, TARGET, args).expect("spawn target");
    fx.wait_for_truth(FIXTURE_TIMEOUT).unwrap_or_else(|e| panic!("{}: {e}", interp.label()));
    assert!(wait_until(Duration::from_secs(10), || beats(&fx).is_some()), "no heartbeat");
    fx
}

/// An error answer: non-zero exit, exactly one line on stderr, starting with "memspy: ", no panic.
pub fn assert_one_line_error(status: Option<std::process::ExitStatus>, stderr: &str, what: &str) -> String {
    let status = status.unwrap_or_else(|| panic!("{what}: memspy did not finish"));
    assert!(!status.success(), "{what}: memspy succeeded; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected one line on stderr, got: {stderr:?}");
    assert!(lines[0].starts_with("memspy: "), "{what}: {stderr:?}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{what}: {stderr:?}");
    lines[0].to_string()
}
