//! Watching a leak: `memspy growth` and `snapshot` + `diff` against fixtures/leaky.py, whose exact ticks
//! (common/leaky.rs) make the checks exact; and the commands that start the program themselves
//! (`memspy top|growth|snapshot -- python app.py`). The full-screen `top`: growth.rs.
//!
//! Env: MEMSPY_TEST_PYTHONS=path:path limits the interpreters (growth runs on every one found; the
//! other tests on one).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn type_entry<'a>(g: &'a Value, name: &str) -> Option<&'a Value> {
    g["types"].as_array()?.iter().find(|t| t["type"] == name)
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// `memspy growth` on one interpreter; returns the mismatches.
fn check_growth(interp: &Interpreter, samples: usize, interval: f64, plot: Option<&std::path::Path>) -> Vec<String> {
    let mut errors = Vec::new();
    let mut leaky = match Leaky::start(interp) {
        Ok(l) => l,
        Err(e) => return vec![e],
    };
    // A paused target does not tick, and samples are due every `interval` from the start: the walk must
    // take well under the interval even on a busy machine. The first interpreter (the one that draws the
    // chart) uses the full-heap walk with a long interval; the others the fast GC-list walk.
    // Free-threaded builds (unstripped, with DWARF: more to read on a cold cache) get the long interval too.
    let interval = if plot.is_some() || interp.free_threaded { interval.max(1.0) } else { interval };
    let mut args = vec![
        "growth".to_string(),
        leaky.pid(),
        "--interval".into(),
        interval.to_string(),
        "--samples".into(),
        samples.to_string(),
        "--json".into(),
        // Ranked by count, as this test checks (the ranking by owned growth: tests/why.rs).
        "--no-owners".into(),
    ];
    if plot.is_none() {
        args.push("--gc-only".into());
    }
    if let Some(p) = plot {
        args.push("--plot".into());
        args.push(p.display().to_string());
    }
    let out = match run_memspy(&args) {
        Ok(o) => o,
        Err(e) => return vec![format!("running memspy: {e}")],
    };
    leaky.check_running(&mut errors);
    if !out.success() {
        errors.push(format!("memspy growth failed: {}; stderr: {}", out.describe_status(), tail(&out.stderr, 1000)));
        return errors;
    }
    let g: Value = match serde_json::from_str(&out.stdout) {
        Ok(v) => v,
        Err(e) => return vec![format!("growth output is not JSON ({e}): {}", tail(&out.stdout, 500))],
    };
    if g["pid"].as_u64() != Some(leaky.fixture.pid as u64) {
        errors.push(format!("pid {} (expected {})", g["pid"], leaky.fixture.pid));
    }
    if g["interval_s"].as_f64() != Some(interval) {
        errors.push(format!("interval_s {} (expected {interval})", g["interval_s"]));
    }
    let n = g["samples"].as_array().map(|a| a.len()).unwrap_or(0);
    if n != samples {
        errors.push(format!("{n} samples (expected {samples})"));
    }
    let ts: Vec<f64> =
        g["samples"].as_array().map(|a| a.iter().filter_map(|s| s["t"].as_f64()).collect()).unwrap_or_default();
    if ts.first() != Some(&0.0) || ts.windows(2).any(|w| w[1] <= w[0]) {
        errors.push(format!("sample times {ts:?} do not start at 0 and increase"));
    }
    for s in g["samples"].as_array().into_iter().flatten() {
        if s["rss"].as_u64().unwrap_or(0) == 0 || s["objects"].as_u64().unwrap_or(0) == 0 {
            errors.push(format!("sample without rss or objects: {s}"));
        }
    }
    // Sorted by delta, descending; the leak first.
    let deltas: Vec<i64> = g["types"].as_array().into_iter().flatten().filter_map(|t| t["delta"].as_i64()).collect();
    if deltas.windows(2).any(|w| w[0] < w[1]) {
        errors.push("types are not sorted by delta descending".into());
    }
    if g["types"][0]["type"] != LEAKED {
        errors.push(format!("first type is {} (expected {LEAKED})", g["types"][0]["type"]));
    }
    let (Some(leaked), Some(tick), Some(churn)) = (type_entry(&g, LEAKED), type_entry(&g, TICK), type_entry(&g, CHURN))
    else {
        errors.push("Leaked, Tick or Churn missing from the growth report".into());
        return errors;
    };
    let (lc, tc, cc) = (u64s(&leaked["counts"]), u64s(&tick["counts"]), u64s(&churn["counts"]));
    if lc.len() != samples || tc.len() != samples || cc.len() != samples {
        errors.push(format!("counts of the wrong length: {lc:?} {tc:?} {cc:?}"));
        return errors;
    }
    // The fixture rewrites its file just after a tick: a sample may see a tick whose file is not yet
    // written when memspy exits (a loaded machine). The counter must catch up, never stay behind.
    let seen = tc.iter().copied().max().unwrap_or(0);
    wait_until(Duration::from_secs(5), || leaky.ticks().unwrap_or(0) >= seen);
    let final_ticks = leaky.ticks().unwrap_or(0);
    // Exact, per sample: the leak is PER_TICK times the fixture's own counter at that instant, the churn
    // is what that tick left, and the counter never runs ahead of the fixture's file.
    for i in 0..samples {
        if lc[i] != leaky.per_tick * tc[i] {
            errors.push(format!(
                "sample {i}: {} Leaked, expected {} x {} Tick = {}",
                lc[i],
                leaky.per_tick,
                tc[i],
                leaky.per_tick * tc[i]
            ));
        }
        if cc[i] != leaky.churn_after(tc[i]) {
            errors.push(format!(
                "sample {i}: {} Churn, expected {} after tick {}",
                cc[i],
                leaky.churn_after(tc[i]),
                tc[i]
            ));
        }
        if tc[i] == 0 || tc[i] > final_ticks {
            errors.push(format!("sample {i}: tick {} outside 1..={final_ticks} (the fixture's counter)", tc[i]));
        }
    }
    let lb = u64s(&leaked["bytes"]);
    let per_obj = lb.first().copied().unwrap_or(0) / lc[0].max(1);
    if per_obj == 0 || lb.iter().zip(&lc).any(|(b, c)| *b != c * per_obj) {
        errors.push(format!("Leaked bytes {lb:?} are not counts {lc:?} times one object's size"));
    }
    let want_delta = (lc[samples - 1] - lc[0]) as i64;
    if leaked["delta"].as_i64() != Some(want_delta) || want_delta != (leaky.per_tick * (tc[samples - 1] - tc[0])) as i64
    {
        errors.push(format!("Leaked delta {} (counts {lc:?}, ticks {tc:?})", leaked["delta"]));
    }
    if leaked["delta_bytes"].as_i64() != Some(lb[samples - 1] as i64 - lb[0] as i64) {
        errors.push(format!("Leaked delta_bytes {}", leaked["delta_bytes"]));
    }
    let span = ts.last().copied().unwrap_or(0.0);
    let ps = leaked["per_second"].as_f64().unwrap_or(-1.0);
    if span > 0.0 && (ps - want_delta as f64 / span).abs() > 1e-6 * ps.abs().max(1.0) {
        errors.push(format!("per_second {ps}, expected {}", want_delta as f64 / span));
    }
    let grew_every_time = lc.windows(2).all(|w| w[1] > w[0]);
    if leaked["monotonic"] != Value::Bool(grew_every_time) || !grew_every_time {
        errors.push(format!(
            "Leaked counts {lc:?}, monotonic {} (the fixture ticks 20 times per interval)",
            leaked["monotonic"]
        ));
    }
    if tick["monotonic"] != Value::Bool(true) {
        errors.push(format!("Tick counts {tc:?} not marked monotonic"));
    }
    if churn["monotonic"] != Value::Bool(false) {
        errors.push(format!("Churn counts {cc:?} marked monotonic"));
    }
    if let Some(p) = plot {
        match fs::read_to_string(p) {
            Ok(svg) => {
                for want in [
                    "<svg",
                    "</svg>",
                    "memory (",
                    "time since the first sample (s)",
                    LEAKED,
                    "RSS",
                    &format!("PID {}", leaky.fixture.pid),
                ] {
                    if !svg.contains(want) {
                        errors.push(format!("chart lacks {want:?}"));
                    }
                }
            }
            Err(e) => errors.push(format!("no chart at {}: {e}", p.display())),
        }
    }
    errors
}

#[test]
fn growth_ranks_the_leak_exactly() {
    let d = discover_interpreters();
    assert!(!d.with_free_threaded().is_empty(), "no interpreter found");
    let dir = artifact_dir("growth");
    let mut failures = Vec::new();
    eprintln!("\n== growth ==");
    for (i, interp) in d.with_free_threaded().into_iter().enumerate() {
        let plot = (i == 0).then(|| dir.join("growth.svg"));
        let errors = check_growth(interp, 4, 0.8, plot.as_deref());
        eprintln!(
            "{:<10} {:<52} {}",
            interp.label(),
            interp.path.display().to_string(),
            if errors.is_empty() { "PASS".to_string() } else { format!("FAIL ({})", errors.len()) }
        );
        for e in &errors {
            eprintln!("   {e}");
            failures.push(format!("{}: {e}", interp.label()));
        }
    }
    assert!(failures.is_empty(), "growth failed:\n  {}", failures.join("\n  "));
}

#[test]
fn growth_table_marks_suspects() {
    let interp = &discover_interpreters().interpreters[0];
    let mut leaky = Leaky::start(interp).expect("fixture");
    // The fast GC-list walk and intervals well above the fixture's tick keep every interval growing even
    // when the machine is busy (a paused target does not tick).
    let out = run_memspy(["growth", &leaky.pid(), "--interval", "0.6", "--samples", "3", "--gc-only"]).expect("memspy");
    let mut errors = Vec::new();
    leaky.check_running(&mut errors);
    assert!(out.success(), "{}: {}", out.describe_status(), out.stderr);
    assert!(errors.is_empty(), "{errors:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with(&format!("PID {}", leaky.fixture.pid)), "{}", out.stdout);
    assert!(lines[1].contains("DELTA") && lines[1].contains("SUSPECT"), "{}", out.stdout);
    assert!(lines[2].ends_with(LEAKED) && lines[2].contains("LEAK?"), "{}", out.stdout);
    let churn = lines.iter().find(|l| l.ends_with(CHURN));
    assert!(churn.is_none_or(|l| !l.contains("LEAK?")), "{}", out.stdout);
}

// ---------------------------------------------------------------------------
// snapshot + diff

#[test]
fn diff_is_the_difference_of_the_histograms() {
    // The oldest GIL build and every free-threaded one.
    let d = discover_interpreters();
    for interp in d.interpreters.iter().take(1).chain(&d.free_threaded) {
        eprintln!("diff: {}", interp.label());
        check_diff(interp);
    }
}

fn check_diff(interp: &Interpreter) {
    let mut leaky = Leaky::start(interp).expect("fixture");
    let tmp = TempDir::new("diff").expect("tmp");
    let (a, b) = (tmp.path().join("a.json"), tmp.path().join("b.json"));
    for (i, p) in [&a, &b].into_iter().enumerate() {
        if i == 1 {
            thread::sleep(Duration::from_millis(400));
        }
        let out = run_memspy(["snapshot", &leaky.pid(), "-o", &p.display().to_string()]).expect("memspy");
        assert!(out.success(), "snapshot: {}: {}", out.describe_status(), out.stderr);
        assert!(out.stdout.is_empty(), "snapshot -o prints nothing on stdout");
    }
    let mut errors = Vec::new();
    leaky.check_running(&mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let load = |p: &std::path::Path| -> Value { serde_json::from_str(&fs::read_to_string(p).unwrap()).unwrap() };
    let (ra, rb) = (load(&a), load(&b));
    for r in [&ra, &rb] {
        assert!(
            r["timestamp"].as_f64().unwrap_or(0.0) > 1e9 && r["rss"].as_u64().unwrap_or(0) > 0,
            "timestamp and rss: {r}"
        );
        assert_eq!(r["pid"].as_u64(), Some(leaky.fixture.pid as u64));
    }
    let hist = |r: &Value| -> BTreeMap<String, (u64, u64)> {
        let mut m = BTreeMap::new();
        for t in r["types"].as_array().unwrap() {
            let e = m.entry(t["type"].as_str().unwrap().to_string()).or_insert((0, 0));
            e.0 += t["count"].as_u64().unwrap();
            e.1 += t["bytes"].as_u64().unwrap();
        }
        m
    };
    let (ha, hb) = (hist(&ra), hist(&rb));

    let out = run_memspy(["diff", &a.display().to_string(), &b.display().to_string(), "--json"]).expect("memspy");
    assert!(out.success(), "diff: {}: {}", out.describe_status(), out.stderr);
    let d: Value = serde_json::from_str(&out.stdout).expect("diff JSON");
    // Every type of either side, once, with b - a.
    let names: BTreeSet<&String> = ha.keys().chain(hb.keys()).collect();
    let types = d["types"].as_array().unwrap();
    assert_eq!(types.len(), names.len(), "one row per type of either snapshot");
    for t in types {
        let name = t["type"].as_str().unwrap().to_string();
        let (ca, ba) = ha.get(&name).copied().unwrap_or((0, 0));
        let (cb, bb) = hb.get(&name).copied().unwrap_or((0, 0));
        let got = (
            t["count_a"].as_u64(),
            t["count_b"].as_u64(),
            t["bytes_a"].as_u64(),
            t["bytes_b"].as_u64(),
            t["delta"].as_i64(),
            t["delta_bytes"].as_i64(),
        );
        let want = (Some(ca), Some(cb), Some(ba), Some(bb), Some(cb as i64 - ca as i64), Some(bb as i64 - ba as i64));
        assert_eq!(got, want, "{name}");
    }
    let total = |r: &Value, k: &str| r["totals"][k].as_i64().unwrap();
    assert_eq!(d["objects_delta"].as_i64(), Some(total(&rb, "objects") - total(&ra, "objects")));
    assert_eq!(d["bytes_delta"].as_i64(), Some(total(&rb, "bytes") - total(&ra, "bytes")));
    assert_eq!(d["rss_delta"].as_i64(), Some(rb["rss"].as_i64().unwrap() - ra["rss"].as_i64().unwrap()));
    assert_eq!(d["elapsed_s"].as_f64(), Some(rb["timestamp"].as_f64().unwrap() - ra["timestamp"].as_f64().unwrap()));
    // And the leak shows: whole ticks between the snapshots.
    let row = |n: &str| types.iter().find(|t| t["type"] == n).unwrap();
    let dl = row(LEAKED)["delta"].as_i64().unwrap();
    assert!(dl > 0 && dl == leaky.per_tick as i64 * row(TICK)["delta"].as_i64().unwrap(), "Leaked delta {dl}");

    // The table: the same file names, the leak among the changes.
    let out = run_memspy(["diff", &a.display().to_string(), &b.display().to_string()]).expect("memspy");
    assert!(out.success());
    assert!(out.stdout.starts_with(&format!("A {}", a.display())), "{}", out.stdout);
    assert!(out.stdout.lines().any(|l| l.ends_with(LEAKED) && l.contains(&format!("+{dl}"))), "{}", out.stdout);

    // A file that is not a snapshot: one line, failure.
    fs::write(tmp.path().join("bad.json"), "{}").unwrap();
    let out = run_memspy(["diff", &a.display().to_string(), &tmp.path().join("bad.json").display().to_string()])
        .expect("memspy");
    assert!(!out.success());
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("bad.json is not a memspy snapshot"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// Commands that start the program (`memspy top|growth|snapshot -- python app.py`)

/// Waits (bounded) for a process to be gone (memspy stops and reaps the program it started).
fn gone(pid: u64) -> bool {
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        if start.elapsed() > Duration::from_secs(10) {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn commands_that_start_the_program() {
    let interp = &discover_interpreters().interpreters[0];
    let py = interp.path.display().to_string();
    let app = fixture_script("example_app.py").display().to_string();
    let session_type = "__main__.Session";

    // top --once: the program's heap, then the program is stopped.
    let out = run_memspy(["top", "--once", "--json", "--delay", "0.5", "--", &py, &app]).expect("memspy");
    assert!(out.success(), "top -- app: {}: {}", out.describe_status(), out.stderr);
    let r: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let pid = r["pid"].as_u64().unwrap();
    let sessions =
        r["types"].as_array().unwrap().iter().find(|t| t["type"] == session_type).map(|t| t["count"].as_u64().unwrap());
    assert!(sessions.is_some_and(|n| n > 0), "no {session_type} in the report");
    assert!(gone(pid), "top: the program {pid} is still running");

    // growth: three samples; the never-pruned sessions grow in every interval.
    let out = run_memspy(["growth", "--interval", "1", "--samples", "3", "--json", "--delay", "0.3", "--", &py, &app])
        .expect("memspy");
    assert!(out.success(), "growth -- app: {}: {}", out.describe_status(), out.stderr);
    let g: Value = serde_json::from_str(&out.stdout).expect("growth JSON");
    assert_eq!(g["samples"].as_array().unwrap().len(), 3);
    let row = g["types"].as_array().unwrap().iter().find(|t| t["type"] == session_type).expect("Session row");
    assert!(row["monotonic"] == Value::Bool(true) && row["delta"].as_i64().unwrap() > 0, "{row}");
    assert!(gone(g["pid"].as_u64().unwrap()), "growth: the program is still running");

    // growth of a program that ends before the last sample: the samples taken so far.
    let short = "import time\nkeep = [[i] for i in range(5000)]\ntime.sleep(1.5)\n";
    let out = run_memspy([
        "growth",
        "--interval",
        "0.4",
        "--samples",
        "20",
        "--json",
        "--delay",
        "0.2",
        "--",
        &py,
        "-c",
        short,
    ])
    .expect("memspy");
    assert!(out.success(), "growth -- short program: {}: {}", out.describe_status(), out.stderr);
    let g: Value = serde_json::from_str(&out.stdout).expect("growth JSON");
    let n = g["samples"].as_array().unwrap().len();
    assert!((1..20).contains(&n), "{n} samples of a program that ran ~1.5 s");
    assert!(out.stderr.contains(&format!("exited after {n} samples")), "{}", out.stderr);

    // snapshot -o: written, then usable by diff; the program is stopped.
    let tmp = TempDir::new("snap-cmd").unwrap();
    let file = tmp.path().join("a.json");
    let out =
        run_memspy(["snapshot", "-o", &file.display().to_string(), "--delay", "0.3", "--", &py, &app]).expect("memspy");
    assert!(out.success(), "snapshot -- app: {}: {}", out.describe_status(), out.stderr);
    let s: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).expect("snapshot JSON");
    assert!(s["types"].as_array().unwrap().iter().any(|t| t["type"] == session_type));
    assert!(gone(s["pid"].as_u64().unwrap()), "snapshot: the program is still running");
    let out = run_memspy(["diff", &file.display().to_string(), &file.display().to_string(), "--json"]).expect("memspy");
    assert!(out.success(), "{}", out.stderr);

    // Both a PID and a command, or neither: one line.
    for args in [&["growth", "1", "--", &py, &app][..], &["snapshot"][..]] {
        let out = run_memspy(args).expect("memspy");
        assert!(!out.success() && out.stderr.trim().lines().count() == 1, "{args:?}: {}", out.stderr);
    }
}
