//! `memspy top PID --once --json` against fixtures/gc_heap.py, on every CPython
//! (3.9+, GIL builds) found on the machine, compared exactly with the ground truth
//! the fixture records about itself.
//!
//! Run with `cargo test --test gc_histogram -- --nocapture` to see the tables.
//! Env: CI=true additionally requires coverage of 3.9..=3.15, of a static stripped
//! build and of a shared-libpython build; MEMSPY_TEST_PYTHONS=path:path limits the
//! interpreters; MEMSPY_KEEP_TMP keeps the fixtures' temp dirs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::Value;

const FIXTURE: &str = "gc_heap.py";
/// The 3.x minor versions CI must cover.
const REQUIRED_MINORS: std::ops::RangeInclusive<u32> = 9..=15;
/// Bytes beyond which a per-type sum can only come from reading garbage (the
/// fixture's whole heap is a few MiB).
const IMPLAUSIBLE_BYTES: u64 = 1 << 40;
/// Mismatch lines printed per interpreter (all of them are saved as an artifact).
const MAX_LINES: usize = 80;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Plain,
    Freeze,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Freeze => "freeze",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Mode::Plain => &[],
            Mode::Freeze => &["--freeze"],
        }
    }
}

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

/// Types whose bytes are compared exactly (plain mode, where memspy reports frozen == 0).
fn bytes_compared(name: &str) -> bool {
    matches!(
        name,
        "builtins.list"
            | "builtins.dict"
            | "builtins.set"
            | "builtins.frozenset"
            | "builtins.function"
            | "builtins.type"
            | "builtins.tuple"
            // types with their own __sizeof__ that memspy recomputes
            | "builtins.generator"
            | "builtins.coroutine"
            | "builtins.async_generator"
            | "builtins.frame"
            | "collections.deque"
            | "collections.OrderedDict"
            | "_io.BytesIO"
            | "_io.BufferedReader"
            | "_io.BufferedWriter"
            | "_io.BufferedRandom"
            | "_struct.Struct"
    ) || name.starts_with("__main__.")
}

#[derive(Default, Clone, Copy, Debug)]
struct Row {
    count: u64,
    gc_tracked: u64,
    frozen: u64,
    bytes: u64,
    entries: u32,
}

impl Row {
    fn live(&self) -> i128 {
        self.gc_tracked as i128 - self.frozen as i128
    }
}

fn u64_map(v: &Value, path: &str) -> Result<BTreeMap<String, u64>, String> {
    let x = lookup(v, path)?;
    let obj = x.as_object().ok_or_else(|| format!("truth `{}` is not an object", path))?;
    obj.iter()
        .map(|(k, v)| {
            v.as_u64().map(|n| (k.clone(), n)).ok_or_else(|| format!("truth `{}.{}` is not an integer", path, k))
        })
        .collect()
}

/// memspy's type rows, keyed by type name (rows with the same name are summed).
fn memspy_rows(report: &Value, errors: &mut Vec<String>, warnings: &mut Vec<String>) -> BTreeMap<String, Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let types = match report.get("types").and_then(|t| t.as_array()) {
        Some(t) => t,
        None => {
            errors.push("memspy JSON has no `types` array".into());
            return rows;
        }
    };
    for (i, t) in types.iter().enumerate() {
        let name = match t.get("type").and_then(|n| n.as_str()) {
            Some(n) => n.to_string(),
            None => {
                errors.push(format!("memspy types[{}] has no string `type`: {}", i, t));
                continue;
            }
        };
        let mut field = |f: &str| match t.get(f).and_then(|x| x.as_u64()) {
            Some(x) => x,
            None => {
                errors.push(format!("memspy type {}: field `{}` missing or not an unsigned integer: {}", name, f, t));
                0
            }
        };
        let (count, gc_tracked, frozen, bytes) = (field("count"), field("gc_tracked"), field("frozen"), field("bytes"));
        let r = rows.entry(name.clone()).or_default();
        r.count += count;
        r.gc_tracked += gc_tracked;
        r.frozen += frozen;
        r.bytes = r.bytes.saturating_add(bytes);
        r.entries += 1;
        if frozen > gc_tracked {
            errors.push(format!("memspy type {}: frozen {} > gc_tracked {}", name, frozen, gc_tracked));
        }
        if count != gc_tracked {
            warnings.push(format!(
                "memspy type {}: count {} != gc_tracked {} (coverage is gc-tracked)",
                name, count, gc_tracked
            ));
        }
    }
    for (name, r) in &rows {
        if r.entries > 1 {
            warnings.push(format!("memspy lists type name {} {} times (summed)", name, r.entries));
        }
    }
    rows
}

fn compare(
    mode: Mode,
    interp: &Interpreter,
    binary: Option<&BinaryInfo>,
    fixture_pid: u32,
    truth: &Value,
    report: &Value,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let mut check = |what: &str, r: Result<(), String>| {
        if let Err(e) = r {
            errors.push(format!("{}: {}", what, e));
        }
    };

    // --- header: pid, python block
    check(
        "pid",
        get_u64(report, "pid").and_then(|p| {
            if p == fixture_pid as u64 {
                Ok(())
            } else {
                Err(format!("expected {} got {}", fixture_pid, p))
            }
        }),
    );
    let truth_version = truth["version"].as_str().unwrap_or_default().to_string();
    let truth_full = truth["full_version"].as_str().unwrap_or_default().to_string();
    check(
        "python.version",
        get_str(report, "python.version").and_then(|v| {
            if v == truth_version || (!truth_full.is_empty() && v == truth_full) {
                Ok(())
            } else {
                Err(format!("expected {} got {}", truth_version, v))
            }
        }),
    );
    check(
        "python.debug",
        get_bool(report, "python.debug").and_then(|d| {
            let want = truth["debug"].as_bool().unwrap_or(interp.debug);
            if d == want {
                Ok(())
            } else {
                Err(format!("expected {} got {}", want, d))
            }
        }),
    );
    check(
        "python.free_threaded",
        get_bool(report, "python.free_threaded").and_then(|f| {
            let want = get_bool(truth, "free_threaded").map_err(|e| format!("truth: {e}"))?;
            if f == want {
                Ok(())
            } else {
                Err(format!("expected {} (Py_GIL_DISABLED) got {}", want, f))
            }
        }),
    );
    check(
        "python.executable",
        get_str(report, "python.executable").and_then(|e| {
            let got = fs::canonicalize(e).unwrap_or_else(|_| PathBuf::from(e));
            let want_raw = truth["executable"].as_str().unwrap_or_default();
            let want = fs::canonicalize(want_raw).unwrap_or_else(|_| PathBuf::from(want_raw));
            if got == want || got == interp.path {
                Ok(())
            } else {
                Err(format!("expected {} got {}", want.display(), e))
            }
        }),
    );
    if let Some(b) = binary {
        check(
            "python.linkage",
            get_str(report, "python.linkage").and_then(|l| {
                if l == b.linkage {
                    Ok(())
                } else {
                    Err(format!("expected {} (_PyRuntime in {}) got {}", b.linkage, b.runtime_elf.display(), l))
                }
            }),
        );
        check(
            "python.stripped",
            get_bool(report, "python.stripped").and_then(|s| {
                if s == b.stripped {
                    Ok(())
                } else {
                    Err(format!("expected {} ({}) got {}", b.stripped, b.runtime_elf.display(), s))
                }
            }),
        );
    }
    check(
        "coverage",
        get_str(report, "coverage").and_then(|c| {
            if c == "gc-tracked" {
                Ok(())
            } else {
                Err(format!("expected \"gc-tracked\" got {:?}", c))
            }
        }),
    );
    // Optional flags: a blocking snapshot of a quiet process is neither partial nor approximate.
    for flag in ["partial", "approximate"] {
        if let Some(v) = report.get(flag) {
            check(flag, if v.as_bool() == Some(false) { Ok(()) } else { Err(format!("expected false got {}", v)) });
        }
    }

    // --- generations and the permanent generation
    let truth_gens = get_u64_array(truth, "generations").unwrap_or_default();
    let truth_frozen = truth["freeze_count"].as_u64().unwrap_or(0);
    let gens = get_u64_array(report, "gc.generations");
    check(
        "gc.generations",
        gens.clone().and_then(|g| {
            if g == truth_gens {
                Ok(())
            } else {
                Err(format!("expected {:?} got {:?}", truth_gens, g))
            }
        }),
    );
    let permanent = get_u64(report, "gc.permanent");
    check(
        "gc.permanent",
        permanent.clone().and_then(|p| {
            if p == truth_frozen {
                Ok(())
            } else {
                Err(format!("expected {} (gc.get_freeze_count()) got {}", truth_frozen, p))
            }
        }),
    );

    // --- per type
    let counts = match u64_map(truth, "gc_counts") {
        Ok(c) => c,
        Err(e) => {
            errors.push(e);
            return;
        }
    };
    let sizes = u64_map(truth, "sizes").unwrap_or_default();
    let rows = memspy_rows(report, errors, warnings);
    let names: BTreeSet<&String> = counts.keys().chain(rows.keys()).collect();
    for name in names {
        let want = counts.get(name).copied().unwrap_or(0) as i128;
        let row = rows.get(name);
        let got = row.map(|r| r.live()).unwrap_or(0);
        if want != got {
            let detail = match row {
                None => "type missing from memspy output".to_string(),
                Some(r) => format!(
                    "gc_tracked {} - frozen {}{}",
                    r.gc_tracked,
                    r.frozen,
                    if want == 0 { "; type not in gc.get_objects()" } else { "" }
                ),
            };
            errors.push(format!("type {}: expected {} in generations 0-2, got {} ({})", name, want, got, detail));
        }
    }

    // --- exact frozen counts of the fixture's own classes
    let per_part = u64_map(truth, "own_per_part").unwrap_or_default();
    let frozen_parts = truth["frozen_parts"].as_u64().unwrap_or(0);
    for (name, n) in &per_part {
        let want = n * frozen_parts;
        let got = rows.get(name).map(|r| r.frozen).unwrap_or(0);
        if want != got {
            errors.push(format!("type {}: expected {} frozen (permanent generation), got {}", name, want, got));
        }
    }

    // --- bytes
    for (name, row) in &rows {
        let want = match sizes.get(name) {
            Some(w) => *w,
            None => continue,
        };
        if row.live() != counts.get(name).copied().unwrap_or(0) as i128 {
            continue; // already reported; bytes cannot match
        }
        if row.frozen == 0 {
            if row.bytes != want {
                let diff = row.bytes as i128 - want as i128;
                let msg = format!(
                    "bytes of {}: expected {} (sum of sys.getsizeof) got {} (diff {:+}, {} objects)",
                    name, want, row.bytes, diff, row.gc_tracked
                );
                if mode == Mode::Plain && bytes_compared(name) {
                    errors.push(msg);
                } else {
                    warnings.push(msg);
                }
            }
        } else if row.bytes < want && bytes_compared(name) {
            errors.push(format!(
                "bytes of {}: {} (incl. {} frozen objects) is less than the {} of the unfrozen objects alone",
                name, row.bytes, row.frozen, want
            ));
        }
    }

    // --- no type's bytes may be absurd (garbage read as a size), whatever the type
    for (name, row) in &rows {
        if row.bytes > IMPLAUSIBLE_BYTES {
            errors.push(format!(
                "bytes of {}: implausible {} for {} objects (sys.getsizeof sum {})",
                name,
                row.bytes,
                row.gc_tracked,
                sizes.get(name).map(|s| s.to_string()).unwrap_or_else(|| "n/a".into())
            ));
        }
    }

    // --- memspy's own totals must add up
    let sum_tracked: u64 = rows.values().map(|r| r.gc_tracked).sum();
    let sum_frozen: u64 = rows.values().map(|r| r.frozen).sum();
    let sum_bytes: u128 = rows.values().map(|r| r.bytes as u128).sum();
    if let Ok(t) = get_u64(report, "totals.gc_tracked") {
        if t != sum_tracked {
            errors.push(format!("memspy totals.gc_tracked {} != sum over types {}", t, sum_tracked));
        }
    } else {
        errors.push("memspy JSON lacks totals.gc_tracked".into());
    }
    if let Ok(t) = get_u64(report, "totals.bytes") {
        if t as u128 != sum_bytes {
            warnings.push(format!("memspy totals.bytes {} != sum over types {}", t, sum_bytes));
        }
    }
    if let (Ok(g), Ok(p)) = (gens, permanent) {
        let gen_sum: u64 = g.iter().sum();
        if gen_sum + p != sum_tracked {
            errors.push(format!(
                "memspy inconsistent: generations {:?} + permanent {} = {} but types' gc_tracked sum to {}",
                g,
                p,
                gen_sum + p,
                sum_tracked
            ));
        }
        if p != sum_frozen {
            errors.push(format!("memspy inconsistent: gc.permanent {} but types' frozen sum to {}", p, sum_frozen));
        }
    }
}

fn check_interpreter(interp: &Interpreter, mode: Mode) -> Outcome {
    let mut out = Outcome::new(interp);
    let artifacts = artifact_dir("gc_histogram").join(format!("{}-{}", sanitize(&interp.label()), mode.name()));
    let _ = fs::remove_dir_all(&artifacts); // stale ones from an earlier run
    let (mut fixture, truth) = match start_settled(interp, FIXTURE, mode.args()) {
        Ok(x) => x,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    if truth["pid"].as_u64() != Some(fixture.pid as u64) {
        out.errors.push(format!("truth pid {} is not the fixture's pid {}", truth["pid"], fixture.pid));
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
            compare(
                mode,
                interp,
                out.binary.as_ref(),
                fixture.pid,
                &truth,
                &report,
                &mut out.errors,
                &mut out.warnings,
            );
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

/// The GC figures of a full-heap report must equal those of the --gc-only report.
fn compare_gc_figures(gc_only: &Value, full: &Value, errors: &mut Vec<String>) {
    for path in ["gc.generations"] {
        let (a, b) = (get_u64_array(gc_only, path), get_u64_array(full, path));
        if a != b {
            errors.push(format!("full-heap walk: {path} {b:?}, --gc-only {a:?}"));
        }
    }
    let (a, b) = (lookup(gc_only, "gc.permanent").ok(), lookup(full, "gc.permanent").ok());
    if a != b {
        errors.push(format!("full-heap walk: gc.permanent {b:?}, --gc-only {a:?}"));
    }
    let per_type = |r: &Value| -> std::collections::BTreeMap<String, (u64, u64)> {
        r["types"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| {
                        let tracked = row["gc_tracked"].as_u64().unwrap_or(0);
                        let frozen = row["frozen"].as_u64().unwrap_or(0);
                        (tracked + frozen > 0)
                            .then(|| (row["type"].as_str().unwrap_or("?").to_string(), (tracked, frozen)))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (per_type(gc_only), per_type(full));
    for name in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (x, y) = (a.get(name).copied().unwrap_or_default(), b.get(name).copied().unwrap_or_default());
        if x != y {
            errors.push(format!("full-heap walk: type {name}: gc_tracked/frozen {y:?}, --gc-only {x:?}"));
        }
    }
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
    let outcomes: Vec<Outcome> = discovery.interpreters.iter().map(|i| check_interpreter(i, mode)).collect();
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

/// The fixture's own consistency check (no memspy involved): after writing its
/// truth it takes the snapshot again from where it would block and compares.
#[test]
fn fixture_selfcheck() {
    let discovery = discover_interpreters();
    let mut outcomes = Vec::new();
    for interp in &discovery.interpreters {
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
