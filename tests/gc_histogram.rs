//! `memspy top PID --once --json` against fixtures/gc_heap.py, on every CPython
//! (3.9+, GIL builds) found on the machine, compared exactly with the ground truth
//! the fixture records about itself.
//!
//! Run with `cargo test --test gc_histogram -- --nocapture` to see the tables.
//! Env: CI=true additionally requires coverage of 3.9..=3.15, of a static stripped
//! build and of a shared-libpython build; MEMSPY_TEST_PYTHONS=path:path limits the
//! interpreters; MEMSPY_KEEP_TMP keeps the fixtures' temp dirs.

mod common;
// Not a test target of its own: cargo only builds tests/*.rs and tests/*/main.rs.
#[path = "gc_histogram/compare.rs"]
mod compare;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use compare::{compare, compare_gc_figures, u64_map, Findings, Mode};
use serde_json::Value;

const FIXTURE: &str = "gc_heap.py";
/// The 3.x minor versions CI must cover.
const REQUIRED_MINORS: std::ops::RangeInclusive<u32> = 9..=15;
/// Mismatch lines printed per interpreter (all of them are saved as an artifact).
const MAX_LINES: usize = 80;

struct Outcome {
    interp: Interpreter,
    binary: Option<BinaryInfo>,
    errors: Vec<String>,
    warnings: Vec<String>,
    artifacts: Option<PathBuf>,
}

impl Outcome {
    fn new(interp: &Interpreter) -> Outcome {
        Outcome { interp: interp.clone(), binary: None, errors: Vec::new(), warnings: Vec::new(), artifacts: None }
    }

    fn passed(&self) -> bool {
        self.errors.is_empty()
    }
}

fn check_interpreter(interp: &Interpreter, mode: Mode, env: &[(&str, &str)]) -> Outcome {
    let mut out = Outcome::new(interp);
    let tag = if env.is_empty() { mode.name().to_string() } else { format!("{}-env", mode.name()) };
    let artifacts = artifact_dir("gc_histogram").join(format!("{}-{tag}", sanitize(&interp.label())));
    let _ = fs::remove_dir_all(&artifacts); // stale ones from an earlier run
    let (mut fixture, truth) = match start_settled_with_env(interp, FIXTURE, mode.args(), env) {
        Ok(x) => x,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    if truth["pid"].as_u64() != Some(fixture.pid as u64) {
        out.errors.push(format!("truth pid {} is not the fixture's pid {}", truth["pid"], fixture.pid));
    }
    if env.contains(&("PYTHON_GIL", "1")) && truth["gil_enabled"] != Value::Bool(true) {
        out.errors.push(format!("PYTHON_GIL=1 but the fixture says sys._is_gil_enabled() = {}", truth["gil_enabled"]));
    }
    match inspect_process(fixture.pid) {
        Ok(b) => {
            if (b.linkage == "shared") != b.maps_libpython {
                out.warnings.push(format!(
                    "linkage {} (from the ELF defining _PyRuntime) but libpython mapped: {}",
                    b.linkage, b.maps_libpython
                ));
            }
            out.binary = Some(b);
        }
        Err(e) => out.errors.push(format!("inspecting the fixture process: {}", e)),
    }

    let result = memspy_top_json_with(fixture.pid, &["--gc-only"]);

    // memspy must leave the target as it found it: alive, not stopped.
    if let Some(status) = fixture.exited() {
        out.errors.push(format!("fixture died while memspy ran: {}", describe_exit(status)));
    } else {
        thread_sleep_ms(20);
        match fixture.proc_state() {
            Some('T') | Some('t') => out.errors.push("memspy left the fixture stopped (state T)".into()),
            _ => {}
        }
    }

    // The full-heap walk (the default; its GC lists are walked from both ends on two threads) must
    // report exactly the GC figures of the --gc-only walk checked below: generations, the permanent
    // generation, and per type the tracked and frozen counts.
    if let Ok((gc_only, _)) = &result {
        match memspy_top_json_with(fixture.pid, &[]) {
            Ok((full, _)) => compare_gc_figures(gc_only, &full, &mut out.errors),
            Err(e) => out.errors.push(format!("full-heap walk: {e}")),
        }
    }

    let report = match result {
        Ok((report, _)) => {
            let mut found = Findings::default();
            compare(mode, interp, out.binary.as_ref(), fixture.pid, &truth, &report, &mut found);
            out.errors.extend(found.errors);
            out.warnings.extend(found.warnings);
            Some(report)
        }
        Err(e) => {
            out.errors.push(e);
            None
        }
    };

    if !out.errors.is_empty() {
        let dir = artifacts;
        let _ = fs::create_dir_all(&dir);
        let _ = fs::write(dir.join("truth.json"), serde_json::to_string_pretty(&truth).unwrap_or_default());
        if let Some(r) = &report {
            let _ = fs::write(dir.join("memspy.json"), serde_json::to_string_pretty(r).unwrap_or_default());
        }
        let _ = fs::write(dir.join("mismatches.txt"), out.errors.join("\n") + "\n");
        let _ = fs::write(dir.join("fixture-stderr.txt"), fixture.stderr_text());
        out.artifacts = Some(dir);
    }
    drop(fixture); // kills it
    out
}

fn thread_sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Print the table of interpreters, the mismatches and a summary line; return the
/// list of problems that must fail the test.
fn report(title: &str, outcomes: &[Outcome], skipped: &[Skipped], require_coverage: bool) -> Vec<String> {
    let mut failures = Vec::new();
    eprintln!();
    eprintln!("== {} ==", title);
    eprintln!("{:<10} {:<52} {:<7} {:<6} {:<9} result", "version", "interpreter", "linkage", "debug", "stripped");
    for o in outcomes {
        let (linkage, stripped) = match &o.binary {
            Some(b) => (b.linkage, yes_no(b.stripped)),
            None => ("?", "?"),
        };
        let result = if o.passed() {
            if o.warnings.is_empty() {
                "PASS".to_string()
            } else {
                format!("PASS ({} warnings)", o.warnings.len())
            }
        } else {
            format!("FAIL ({} mismatches)", o.errors.len())
        };
        eprintln!(
            "{:<10} {:<52} {:<7} {:<6} {:<9} {}",
            o.interp.label(),
            o.interp.path.display().to_string(),
            linkage,
            yes_no(o.interp.debug),
            stripped,
            result
        );
    }
    for s in skipped {
        eprintln!(
            "{:<10} {:<52} {:<7} {:<6} {:<9} SKIP: {}",
            s.version,
            s.path.display().to_string(),
            "-",
            "-",
            "-",
            s.reason
        );
    }
    for o in outcomes {
        if o.errors.is_empty() && o.warnings.is_empty() {
            continue;
        }
        eprintln!();
        eprintln!(
            "-- {} {}: {} mismatches, {} warnings{}",
            o.interp.label(),
            o.interp.path.display(),
            o.errors.len(),
            o.warnings.len(),
            o.artifacts.as_ref().map(|d| format!(" (artifacts in {})", d.display())).unwrap_or_default()
        );
        for e in o.errors.iter().take(MAX_LINES) {
            eprintln!("   MISMATCH {}", e);
        }
        if o.errors.len() > MAX_LINES {
            eprintln!("   ... and {} more", o.errors.len() - MAX_LINES);
        }
        for w in o.warnings.iter().take(MAX_LINES / 2) {
            eprintln!("   warning  {}", w);
        }
        if o.warnings.len() > MAX_LINES / 2 {
            eprintln!("   ... and {} more warnings", o.warnings.len() - MAX_LINES / 2);
        }
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed()).collect();
    for o in &failed {
        failures.push(format!("{} ({}): {} mismatches", o.interp.label(), o.interp.path.display(), o.errors.len()));
    }
    if outcomes.is_empty() {
        failures.push("no interpreter (>= 3.9, GIL build) found".into());
    }
    let tested: Vec<&Interpreter> = outcomes.iter().map(|o| &o.interp).collect();
    failures.extend(built_coverage(&tested, require_coverage));
    if require_coverage {
        let covered: BTreeSet<(u32, u32)> = outcomes.iter().map(|o| o.interp.minor()).collect();
        for m in REQUIRED_MINORS {
            if !covered.contains(&(3, m)) {
                failures.push(format!("CI: Python 3.{} not covered", m));
            }
        }
        let has = |linkage: &str, stripped: Option<bool>| {
            outcomes.iter().any(|o| {
                o.binary
                    .as_ref()
                    .map(|b| b.linkage == linkage && stripped.map(|s| s == b.stripped).unwrap_or(true))
                    .unwrap_or(false)
            })
        };
        if !has("static", Some(true)) {
            failures.push("CI: no statically linked, stripped build covered".into());
        }
        if !has("shared", None) {
            failures.push("CI: no shared-libpython build covered".into());
        }
    }
    eprintln!();
    eprintln!(
        "{}: {} interpreters, {} passed, {} failed, {} skipped{}{}",
        title,
        outcomes.len(),
        outcomes.len() - failed.len(),
        failed.len(),
        skipped.len(),
        if require_coverage { " [CI coverage required]" } else { "" },
        if failures.is_empty() { "" } else { " -- FAILED" }
    );
    failures
}

fn run_mode(mode: Mode) {
    let discovery = discover_interpreters();
    let outcomes: Vec<Outcome> =
        discovery.with_free_threaded().into_iter().map(|i| check_interpreter(i, mode, &[])).collect();
    let failures = report(&format!("gc_histogram [{}]", mode.name()), &outcomes, &discovery.skipped, ci_mode());
    assert!(failures.is_empty(), "gc_histogram [{}] failed:\n  {}", mode.name(), failures.join("\n  "));
}

#[test]
fn gc_histogram_plain() {
    run_mode(Mode::Plain);
}

#[test]
fn gc_histogram_freeze() {
    run_mode(Mode::Freeze);
}

/// A free-threaded build run with the GIL enabled again (`PYTHON_GIL=1`): the same layout, the same walk
/// of the heaps, the same exact counts.
#[test]
fn gc_histogram_free_threaded_with_the_gil() {
    let discovery = discover_interpreters();
    if discovery.free_threaded.is_empty() {
        return skip_or_fail("no free-threaded interpreter (scripts/build-pythons.sh builds them)");
    }
    let outcomes: Vec<Outcome> =
        discovery.free_threaded.iter().map(|i| check_interpreter(i, Mode::Plain, &[("PYTHON_GIL", "1")])).collect();
    let failures = report("gc_histogram [free-threaded, PYTHON_GIL=1]", &outcomes, &[], false);
    assert!(failures.is_empty(), "gc_histogram with PYTHON_GIL=1 failed:\n  {}", failures.join("\n  "));
}

/// The fixture's own consistency check (no memspy involved): after writing its
/// truth it takes the snapshot again from where it would block and compares.
#[test]
fn fixture_selfcheck() {
    let discovery = discover_interpreters();
    let mut outcomes = Vec::new();
    for interp in discovery.with_free_threaded() {
        let mut out = Outcome::new(interp);
        match inspect_interpreter(interp) {
            Ok(b) => out.binary = Some(b),
            Err(e) => out.errors.push(format!("inspecting the interpreter: {}", e)),
        }
        for mode in [Mode::Plain, Mode::Freeze] {
            let mut args = mode.args().to_vec();
            args.push("--selfcheck");
            let mut fixture = match Fixture::spawn(interp, FIXTURE, &args) {
                Ok(f) => f,
                Err(e) => {
                    out.errors.push(format!("[{}] {}", mode.name(), e));
                    continue;
                }
            };
            match fixture.wait_exit(FIXTURE_TIMEOUT) {
                Some(s) if s.success() => {}
                Some(s) => {
                    let lines: Vec<String> = fixture.stderr_text().lines().map(|l| l.to_string()).collect();
                    out.errors.push(format!("[{}] selfcheck {}: {}", mode.name(), describe_exit(s), lines.join(" | ")));
                    continue;
                }
                None => {
                    out.errors.push(format!("[{}] selfcheck did not finish within {:?}", mode.name(), FIXTURE_TIMEOUT));
                    continue;
                }
            }
            let truth: Value = match fs::read_to_string(&fixture.truth_path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            {
                Ok(t) => t,
                Err(e) => {
                    out.errors.push(format!("[{}] truth file: {}", mode.name(), e));
                    continue;
                }
            };
            // Sanity of the truth itself.
            let gens = get_u64_array(&truth, "generations").unwrap_or_default();
            let total = truth["total"].as_u64().unwrap_or(0);
            let counts = u64_map(&truth, "gc_counts").unwrap_or_default();
            if gens.len() != 3 || gens.iter().sum::<u64>() != total || counts.values().sum::<u64>() != total {
                out.errors.push(format!(
                    "[{}] truth inconsistent: generations {:?}, total {}, sum of counts {}",
                    mode.name(),
                    gens,
                    total,
                    counts.values().sum::<u64>()
                ));
            }
            let frozen_parts = truth["frozen_parts"].as_u64().unwrap_or(0);
            for (name, n) in u64_map(&truth, "own_per_part").unwrap_or_default() {
                let got = counts.get(&name).copied().unwrap_or(0);
                // Two parts, minus the frozen one; Rec also has young instances.
                let want = n * (2 - frozen_parts);
                if (name == "__main__.Rec" && got < want) || (name != "__main__.Rec" && got != want) {
                    out.errors.push(format!("[{}] truth: {} count {} (expected {})", mode.name(), name, got, want));
                }
            }
            if mode == Mode::Freeze && truth["freeze_count"].as_u64().unwrap_or(0) == 0 {
                out.errors.push("[freeze] truth: freeze_count is 0".into());
            }
        }
        outcomes.push(out);
    }
    let failures = report("fixture selfcheck", &outcomes, &discovery.skipped, ci_mode());
    assert!(failures.is_empty(), "fixture selfcheck failed:\n  {}", failures.join("\n  "));
}
