//! `memspy gc PID --json` and `memspy stat PID --json` against fixtures/gc_stat.py, on every CPython
//! (3.9+, GIL and free-threaded builds) found on the machine. The GC figures must equal what the
//! fixture's own `gc` module reported, exactly; pymalloc's must be within 1% of its
//! `sys._debugmallocstats()`; on free-threaded builds mimalloc's GC heaps must hold at least every
//! tracked object (those builds compile no allocator statistics to compare with).
//!
//! Run with `cargo test --test gc_stat -- --nocapture` to see the per-interpreter table.
//! Env: MEMSPY_TEST_PYTHONS=path:path limits the interpreters.

mod common;

use common::*;
use serde_json::Value;

const FIXTURE: &str = "gc_stat.py";
/// Most relative error allowed on pymalloc figures.
const PYMALLOC_TOLERANCE: f64 = 0.01;

fn memspy_json(args: &[&str]) -> Result<Value, String> {
    run_memspy_json(args).map(|(v, _)| v)
}

fn i64_array(v: &Value) -> Option<Vec<i64>> {
    v.as_array()?.iter().map(|x| x.as_i64()).collect()
}

/// Compares the GC part exactly; returns mismatches.
fn compare_gc(truth: &Value, got: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for key in ["enabled", "debug", "thresholds", "counts", "generations", "permanent", "garbage", "callbacks"] {
        let t = &truth[key];
        let g = &got[key];
        let same = match (i64_array(t), i64_array(g)) {
            (Some(a), Some(b)) => a == b,
            _ => t == g,
        };
        if !same {
            errs.push(format!("gc {}: memspy {} vs target {}", key, g, t));
        }
    }
    let got_stats: Vec<Vec<u64>> = got["stats"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    ["collections", "collected", "uncollectable"]
                        .iter()
                        .map(|k| s[*k].as_u64().unwrap_or(u64::MAX))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let want_stats: Vec<Vec<u64>> = truth["stats"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_array().map(|x| x.iter().filter_map(|n| n.as_u64()).collect()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    if got_stats != want_stats {
        errs.push(format!("gc stats: memspy {:?} vs target {:?}", got_stats, want_stats));
    }
    if got["collecting"] != Value::Bool(false) {
        errs.push(format!("collecting: {}", got["collecting"]));
    }
    errs
}

/// Compares pymalloc totals within the tolerance; returns (mismatches, largest relative error seen).
fn compare_pymalloc(truth: &Value, got: &Value) -> (Vec<String>, f64) {
    let mut errs = Vec::new();
    let mut worst: f64 = 0.0;
    let pairs = [
        ("arenas_current", "arenas_current"),
        ("arenas_highwater", "arenas_highwater"),
        ("arenas_allocated_total", "arenas_allocated_total"),
        ("bytes_in_use", "bytes_in_use"),
        ("bytes_free", "bytes_free"),
        ("unused_pool_bytes", "unused_pool_bytes"),
        ("pool_header_bytes", "pool_header_bytes"),
        ("arena_alignment_bytes", "arena_alignment_bytes"),
    ];
    for (tk, gk) in pairs {
        let (Some(t), Some(g)) = (truth[tk].as_u64(), got[gk].as_u64()) else {
            errs.push(format!("pymalloc {}: target {} memspy {}", tk, truth[tk], got[gk]));
            continue;
        };
        // Totals are compared with themselves; the small components (free blocks, unused pools,
        // headers, alignment) with what pymalloc holds in all, since one pool moving between states in
        // the instant between the target's own report and memspy's read is 4–16 KiB.
        let scale = if matches!(tk, "bytes_in_use") || tk.starts_with("arenas_") {
            t.max(g) as f64
        } else {
            truth["arena_bytes"].as_f64().unwrap_or(0.0).max(t.max(g) as f64)
        }
        .max(1.0);
        let rel = (t as f64 - g as f64).abs() / scale;
        worst = worst.max(rel);
        if rel > PYMALLOC_TOLERANCE {
            errs.push(format!("pymalloc {}: memspy {} vs target {} ({:.2}%)", tk, g, t, rel * 100.0));
        }
    }
    (errs, worst)
}

struct Outcome {
    label: String,
    errors: Vec<String>,
    pymalloc: String,
}

fn check(interp: &Interpreter) -> Outcome {
    let mut out = Outcome { label: interp.label(), errors: Vec::new(), pymalloc: String::new() };
    let (fixture, truth) = match start_settled(interp, FIXTURE, &[]) {
        Ok(x) => x,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    if truth["rounds"].as_u64().unwrap_or(99) >= 20 {
        out.errors.push("fixture: its GC figures never settled".into());
    }
    let pid = fixture.pid.to_string();
    match memspy_json(&["gc", &pid, "--json"]) {
        Ok(got) => out.errors.extend(compare_gc(&truth["gc"], &got)),
        Err(e) => out.errors.push(e),
    }
    match memspy_json(&["stat", &pid, "--json"]) {
        Ok(got) if interp.free_threaded => {
            // mimalloc instead of pymalloc: its GC heaps hold at least every tracked object (the figures
            // of the target's own allocator statistics are not compiled into these builds).
            if got["pymalloc"]["status"] != "not_in_use" {
                out.errors.push(format!("pymalloc on a free-threaded build: {}", got["pymalloc"]));
            }
            let heaps = got["mimalloc"]["heaps"].as_array().cloned().unwrap_or_default();
            let gc_blocks: u64 = heaps.iter().skip(2).filter_map(|h| h["blocks"].as_u64()).sum();
            let tracked = truth["gc"]["generations"][0].as_u64().unwrap_or(u64::MAX)
                + truth["gc"]["permanent"].as_u64().unwrap_or(0);
            if heaps.len() != 4 || gc_blocks < tracked || heaps.iter().any(|h| h["pages"].as_u64().unwrap_or(0) == 0) {
                out.errors.push(format!(
                    "mimalloc: {} GC blocks for {tracked} tracked objects: {}",
                    gc_blocks, got["mimalloc"]
                ));
            }
            out.pymalloc = format!("mimalloc: {gc_blocks} GC blocks, {tracked} tracked objects");
        }
        Ok(got) => {
            let status = got["pymalloc"]["status"].as_str().unwrap_or("?").to_string();
            if status == "ok" {
                let (errs, worst) = compare_pymalloc(&truth["pymalloc"], &got["pymalloc"]["stats"]);
                out.errors.extend(errs);
                out.pymalloc = format!("max error {:.3}%", worst * 100.0);
            } else {
                out.pymalloc = format!("{}: {}", status, got["pymalloc"]["detail"]);
                out.errors.push(format!("pymalloc {}: {}", status, got["pymalloc"]["detail"]));
            }
            if got["memory"]["rss"].as_u64().unwrap_or(0) == 0 {
                out.errors.push("stat: no RSS".into());
            }
            if got["python_objects"]["bytes"].as_u64().unwrap_or(0) == 0 {
                out.errors.push("stat: no Python object bytes".into());
            }
            if !got["summary"].as_str().unwrap_or("").contains("% of RSS") {
                out.errors.push(format!("stat: summary {}", got["summary"]));
            }
        }
        Err(e) => out.errors.push(e),
    }
    if !out.errors.is_empty() {
        out.errors.push(format!("fixture stderr: {}", tail(&fixture.stderr_text(), 500)));
    }
    out
}

#[test]
fn gc_and_pymalloc_figures_match_the_target() {
    let d = discover_interpreters();
    if d.interpreters.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    let results: Vec<Outcome> = d.with_free_threaded().into_iter().map(check).collect();
    let mut failed = 0;
    for r in &results {
        let ok = r.errors.is_empty();
        eprintln!("{:<10} {}  pymalloc {}", r.label, if ok { "ok  " } else { "FAIL" }, r.pymalloc);
        for e in &r.errors {
            eprintln!("    {}", e);
        }
        failed += usize::from(!ok);
    }
    assert_eq!(failed, 0, "{} of {} interpreters differ (see above)", failed, results.len());
}

#[test]
fn pymalloc_off_is_reported_plainly() {
    let d = discover_interpreters();
    let Some(interp) = d.interpreters.iter().find(|i| !i.debug).or_else(|| d.interpreters.first()) else {
        return skip_or_fail(NO_INTERPRETER);
    };
    let mut fixture = Fixture::spawn_with_env(interp, FIXTURE, &[], &[("PYTHONMALLOC", "malloc")]).expect("spawn");
    let truth = fixture.wait_for_truth(FIXTURE_TIMEOUT).expect("truth");
    fixture.wait_until_paused(FIXTURE_TIMEOUT).expect("fixture pauses");
    assert_eq!(truth["pymalloc"]["found"], Value::Bool(false), "the target itself reports pymalloc stats");
    let got = memspy_json(&["stat", &fixture.pid.to_string(), "--json"]).expect("memspy stat");
    assert_eq!(got["pymalloc"]["status"], "not_in_use", "{}", got["pymalloc"]);
    assert!(got["pymalloc"]["stats"].is_null());
    assert!(got["summary"].as_str().unwrap_or("").contains("pymalloc not in use"), "{}", got["summary"]);
    // The GC is still read exactly.
    let g = memspy_json(&["gc", &fixture.pid.to_string(), "--json"]).expect("memspy gc");
    let errs = compare_gc(&truth["gc"], &g);
    assert!(errs.is_empty(), "{:?}", errs);
}

/// `stat` on one run of fixtures/c_held.py: (pymalloc's bytes in use less those of the objects memspy found
/// in its arenas, the summary line, the truth).
fn c_held(interp: &Interpreter, k: &str) -> Result<(i64, String, Value), String> {
    let mut fixture = Fixture::spawn(interp, "c_held.py", &[k])?;
    let truth = fixture.wait_for_truth(FIXTURE_TIMEOUT)?;
    fixture.wait_until_paused(FIXTURE_TIMEOUT)?;
    let got = memspy_json(&["stat", &fixture.pid.to_string(), "--json"])?;
    let in_use = got["pymalloc"]["stats"]["bytes_in_use"].as_i64().ok_or("no pymalloc figures")?;
    let found = got["breakdown"]["pymalloc_objects"].as_i64().ok_or("no bytes of objects in pymalloc")?;
    let unreached = in_use - found;
    Ok((unreached, got["summary"].as_str().unwrap_or("").to_string(), truth))
}

#[test]
fn objects_only_c_holds_are_said_before_native() {
    // K1 and K2 objects held only through Py_IncRef: the pymalloc bytes that hold no object memspy
    // reached grow by (K2 - K1) blocks, and the summary says so before its native remainder.
    let (k1, k2) = (2000u64, 12000u64);
    let d = discover_interpreters();
    if d.interpreters.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    let mut failed = Vec::new();
    for interp in &d.interpreters {
        let r = c_held(interp, &k1.to_string()).and_then(|a| Ok((a, c_held(interp, &k2.to_string())?)));
        let ((u1, _, _), (u2, summary, truth)) = match r {
            Ok(r) => r,
            Err(e) => {
                failed.push(format!("{}: {e}", interp.label()));
                continue;
            }
        };
        let expected = (k2 - k1) * truth["block"].as_u64().unwrap_or(0);
        let grown = u2 - u1;
        // Besides the leaked blocks, two processes differ by a few blocks of their own.
        let ok = (grown - expected as i64).unsigned_abs() * 100 <= expected
            && summary
                .find("hold no object memspy reached")
                .is_some_and(|at| summary.find("native/other").is_some_and(|n| at < n));
        eprintln!(
            "{:<10} {}  unreached {u1} -> {u2} (+{grown}, expected +{expected})",
            interp.label(),
            if ok { "ok  " } else { "FAIL" }
        );
        if !ok {
            failed.push(format!(
                "{}: unreached grew by {grown}, expected {expected}; summary: {summary}",
                interp.label()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
