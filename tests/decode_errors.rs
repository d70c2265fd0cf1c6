//! What the report's decode counters (`scan.decode_errors`, `scan.unreadable`) read on every interpreter
//! of the matrix (the GIL builds, then the free-threaded ones) after a full-heap walk (`memspy top PID
//! --once --json`) of fixtures/full_heap.py — every kind of stdlib object it builds —, and of
//! fixtures/native_heap.py in the numpy/pandas venvs of scripts/venvs.sh. Prints the table; on these
//! fixtures, which sit still while they are read, nothing may fail to decode: both must be 0.
//!
//! Env: MEMSPY_TEST_PYTHONS=path:path limits the interpreters.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// (decode_errors, unreadable, objects) of one report.
fn counters(r: &Value) -> Result<(u64, u64, u64), String> {
    Ok((get_u64(r, "scan.decode_errors")?, get_u64(r, "scan.unreadable")?, get_u64(r, "totals.objects")?))
}

fn full_heap(interp: &Interpreter) -> Result<(u64, u64, u64), String> {
    let (fx, _truth) = start_settled(interp, "full_heap.py", &["000400"])?;
    let (report, _) = memspy_top_json(fx.pid)?;
    counters(&report)
}

fn native_heap(interp: &Interpreter) -> Result<(u64, u64, u64), String> {
    let mut fx = Fixture::spawn(interp, "native_heap.py", &["001000", "002000"])?;
    fx.wait_for_truth(FIXTURE_TIMEOUT)?;
    fx.wait_until_paused(Duration::from_secs(30))?;
    let (report, _) = memspy_top_json(fx.pid)?;
    counters(&report)
}

#[test]
fn nothing_fails_to_decode_on_the_matrix() {
    let d = discover_interpreters();
    let all = d.with_free_threaded();
    if all.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    let mut rows = Vec::new();
    let mut failures = built_coverage(&all, ci_mode());
    let mut row = |what: String, r: Result<(u64, u64, u64), String>| match r {
        Ok((decode, unreadable, objects)) => {
            if decode != 0 || unreadable != 0 {
                failures.push(format!("{what}: decode_errors {decode}, unreadable {unreadable}"));
            }
            rows.push(format!("| {what} | {objects} | {decode} | {unreadable} |"));
        }
        Err(e) => {
            failures.push(format!("{what}: {e}"));
            rows.push(format!("| {what} | - | - | - (error) |"));
        }
    };
    for interp in &all {
        row(format!("{} full_heap.py", interp.label()), full_heap(interp));
    }
    let venvs = venvs();
    if venvs.is_empty() {
        skip_or_fail("no numpy/pandas venv (scripts/venvs.sh makes them)");
    }
    for v in &venvs {
        row(format!("venv {} native_heap.py", v.name), native_heap(&v.interp));
    }
    eprintln!("| interpreter, fixture | objects | decode_errors | unreadable |\n|---|---|---|---|");
    for r in &rows {
        eprintln!("{r}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
