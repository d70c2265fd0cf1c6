//! The full-heap walk (`memspy top PID --once --json`, coverage "full-heap") against
//! fixtures/full_heap.py on every CPython found: two fixture processes build K1 and K2 objects of
//! each of 19 kinds (tracked and untracked: float, big int, complex, ASCII and non-ASCII str, bytes,
//! bytearray, Decimal, Fraction, date, array, range, frozenset, namedtuple, dataclass, __slots__
//! class, exception, generator, closure), and memspy's per-type differences must be exactly
//! (K2 − K1) × units (counts) and (K2 − K1) × sys.getsizeof(one) (bytes, fixed-size kinds). The K2
//! fixture also records an in-process oracle (gc.get_objects() and its closure under
//! gc.get_referents() plus dict keys): memspy must find at least as many objects of every type.
//!
//! Env: MEMSPY_TEST_PYTHONS=path:path limits the interpreters; MEMSPY_KEEP_TMP keeps temp dirs.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::*;
use serde_json::Value;

const FIXTURE: &str = "full_heap.py";
const K1: u64 = 400;
const K2: u64 = 1400;

#[derive(Default, Clone, Copy, Debug)]
struct Row {
    count: u64,
    gc_tracked: u64,
    bytes: u64,
}

fn rows(report: &Value) -> Result<BTreeMap<String, Row>, String> {
    let types = report["types"].as_array().ok_or("memspy JSON has no `types` array")?;
    let mut out: BTreeMap<String, Row> = BTreeMap::new();
    for t in types {
        let name = t["type"].as_str().ok_or("a type row has no name")?.to_string();
        let r = out.entry(name).or_default();
        r.count += t["count"].as_u64().ok_or("count")?;
        r.gc_tracked += t["gc_tracked"].as_u64().ok_or("gc_tracked")?;
        r.bytes = r.bytes.saturating_add(t["bytes"].as_u64().ok_or("bytes")?);
    }
    Ok(out)
}

fn map_u64(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| o.iter().filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n))).collect())
        .unwrap_or_default()
}

struct Run {
    truth: Value,
    report: Value,
    /// The same walk with one thread and with 2, 4 or 8 gave different rows.
    threads_differ: Option<String>,
}

/// `memspy top --once --json` with the reference walk on `threads` threads (`--threads`).
fn report_with_threads(pid: u32, extra: &[&str], threads: &str) -> Result<Value, String> {
    let out = std::process::Command::new(memspy_bin())
        .args(["top", &pid.to_string(), "--once", "--json"])
        .args(extra)
        .args(["--threads", threads])
        .output()
        .map_err(|e| format!("could not run memspy: {e}"))?;
    if !out.status.success() {
        return Err(format!("memspy ({threads} threads) failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("memspy ({threads} threads): not JSON: {e}"))
}

/// `extra`: memspy options; K1 is walked with the target stopped (`--max-memory 0`), K2 on a copy
/// taken while it was stopped (`--max-memory` ample), so the exact differences also check that both
/// ways of walking agree.
fn run(interp: &Interpreter, k: u64, oracle: bool, extra: &[&str]) -> Result<Run, String> {
    // Same width for both sizes: the argument strings stay alive in sys.argv.
    let ks = format!("{k:06}");
    let mut args = vec![ks.as_str()];
    if oracle {
        args.push("--oracle");
    }
    let (fixture, truth) = start_settled(interp, FIXTURE, &args)?;
    let (report, _) = memspy_top_json_with(fixture.pid, extra)?;
    // The parallel reference walk must give exactly what one thread gives (the fixture sits still),
    // with `--threads` 2, 4 and 8 (more threads than this machine's CPUs too).
    let one = rows(&report_with_threads(fixture.pid, extra, "1")?)?;
    let mut threads_differ = None;
    for threads in ["2", "4", "8"] {
        let many = rows(&report_with_threads(fixture.pid, extra, threads)?)?;
        for name in one.keys().chain(many.keys()) {
            let (a, b) = (one.get(name).copied().unwrap_or_default(), many.get(name).copied().unwrap_or_default());
            if (a.count, a.gc_tracked, a.bytes) != (b.count, b.gc_tracked, b.bytes) {
                threads_differ = Some(format!("{name}: 1 thread {a:?}, {threads} threads {b:?} (K={k}, {extra:?})"));
                break;
            }
        }
        if threads_differ.is_some() {
            break;
        }
    }
    Ok(Run { truth, report, threads_differ })
}

/// Checks that hold for any one report.
fn check_report(label: &str, r: &Value, errors: &mut Vec<String>) {
    if r["coverage"].as_str() != Some("full-heap") {
        errors.push(format!("{label}: coverage {} (expected \"full-heap\")", r["coverage"]));
    }
    for flag in ["partial", "approximate"] {
        if r[flag].as_bool() != Some(false) {
            errors.push(format!("{label}: {flag} = {}", r[flag]));
        }
    }
    let Ok(rows) = rows(r) else {
        errors.push(format!("{label}: malformed types"));
        return;
    };
    let sum: u64 = rows.values().map(|r| r.count).sum();
    if r["totals"]["objects"].as_u64() != Some(sum) {
        errors.push(format!("{label}: totals.objects {} != sum of counts {sum}", r["totals"]["objects"]));
    }
    let tracked: u64 = rows.values().map(|r| r.gc_tracked).sum();
    if tracked >= sum {
        errors.push(format!("{label}: no untracked objects found ({tracked} tracked of {sum})"));
    }
    for (name, row) in &rows {
        if row.gc_tracked > row.count {
            errors.push(format!("{label}: {name}: gc_tracked {} > count {}", row.gc_tracked, row.count));
        }
        if row.count > 0 && row.bytes / row.count > 1 << 30 {
            errors.push(format!("{label}: {name}: implausible {} bytes for {} objects", row.bytes, row.count));
        }
    }
}

fn check_interpreter(interp: &Interpreter) -> Vec<String> {
    let mut errors = Vec::new();
    // Both run the oracle, so that the two processes execute the same code and differ only in K.
    let (a, b) =
        match (run(interp, K1, true, &["--max-memory", "0"]), run(interp, K2, true, &["--max-memory", "1000000"])) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return vec![e],
        };
    errors.extend(a.threads_differ.clone());
    errors.extend(b.threads_differ.clone());
    check_report(&format!("K={K1}"), &a.report, &mut errors);
    check_report(&format!("K={K2}"), &b.report, &mut errors);
    let (ra, rb) = match (rows(&a.report), rows(&b.report)) {
        (Ok(x), Ok(y)) => (x, y),
        _ => return errors,
    };
    let dk = K2 - K1;
    let units = map_u64(&b.truth["units"]);
    let unit_bytes = map_u64(&b.truth["unit_bytes"]);
    let fixed = b.truth["fixed"].as_object().cloned().unwrap_or_default();
    for (name, u) in &units {
        let (x, y) = (ra.get(name).copied().unwrap_or_default(), rb.get(name).copied().unwrap_or_default());
        let got = y.count as i128 - x.count as i128;
        let want = (dk * u) as i128;
        if got != want {
            errors.push(format!("{name}: count grew by {got} from K={K1} to K={K2}, expected {want}"));
            continue;
        }
        if fixed.get(name).and_then(|f| f.as_bool()) == Some(true) {
            let want = (dk * unit_bytes.get(name).copied().unwrap_or(0)) as i128;
            let got = y.bytes as i128 - x.bytes as i128;
            if got != want {
                errors.push(format!("{name}: bytes grew by {got}, expected {want} ((K2-K1) x sys.getsizeof)"));
            }
        }
    }
    // The oracle: memspy must find at least what the in-process closure finds.
    for (name, n) in map_u64(&b.truth["oracle"]) {
        let got = rb.get(&name).map(|r| r.count).unwrap_or(0);
        if got < n {
            errors.push(format!("{name}: memspy found {got}, the in-process closure {n}"));
        }
    }
    if !errors.is_empty() {
        let dir = artifact_dir("full_heap").join(sanitize(&interp.label()));
        let _ = fs::create_dir_all(&dir);
        for (tag, r) in [("k1", &a), ("k2", &b)] {
            let _ = fs::write(
                dir.join(format!("{tag}-truth.json")),
                serde_json::to_string_pretty(&r.truth).unwrap_or_default(),
            );
            let _ = fs::write(
                dir.join(format!("{tag}-memspy.json")),
                serde_json::to_string_pretty(&r.report).unwrap_or_default(),
            );
        }
        errors.push(format!("artifacts in {}", dir.display()));
    }
    errors
}

#[test]
fn full_heap_counts_every_object() {
    let d = discover_interpreters();
    assert!(!d.with_free_threaded().is_empty(), "no Python interpreter found");
    let mut failures = Vec::new();
    eprintln!("full_heap: K1={K1} K2={K2}");
    for interp in d.with_free_threaded() {
        let mut errors = check_interpreter(interp);
        if !errors.is_empty() {
            // The two fixture processes can differ in objects the interpreter makes on its own (seen once
            // under heavy load: int bytes +340 with exact counts). A real miscount repeats; retry once and
            // report the first failure either way.
            eprintln!("  {:<10} retrying after: {}", interp.label(), errors.join("; "));
            errors = check_interpreter(interp);
        }
        eprintln!(
            "  {:<10} {:<45} {}",
            interp.label(),
            interp.path.display().to_string(),
            if errors.is_empty() { "ok".to_string() } else { format!("FAILED ({} problems)", errors.len()) }
        );
        for e in errors.iter().take(40) {
            eprintln!("      {e}");
        }
        if !errors.is_empty() {
            failures.push(format!("{}: {}", interp.label(), errors.join("; ")));
        }
    }
    failures.extend(built_coverage(&d.with_free_threaded(), ci_mode()));
    assert!(failures.is_empty(), "full_heap failed:\n  {}", failures.join("\n  "));
}
