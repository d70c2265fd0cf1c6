//! `memspy top --core` on core files that gdb's `gcore` writes of fixtures/gc_heap.py, under every
//! interpreter of the matrix (GIL and free-threaded builds): the `--gc-only` report of the core against
//! the fixture's own truth, exactly, and the full walk of the core against the live full walk of the same
//! stopped state (the fixture idles after writing its truth: gcore stops it, writes the core and lets it
//! go; the live walk right after sees the same heap) — every type's figures, the totals, the GC
//! generations, what the scans judged. On one shared and one static build, `retained` and `why` too, and
//! `dump --core`, whose file must hold the core's report.
//! Then the one-line errors: a core of `sleep`, a truncated core, a wrong `--exe`, an empty `--sysroot`,
//! files that are not cores.
//!
//! gdb comes from Debian (scripts/install-services.sh). The cores go to temporary directories, removed
//! after each interpreter (a free-threaded build's core holds mimalloc's 1 GiB reservation: ~1.1 GB).

mod common;
// Shared with tests/gc_histogram.rs (which uses its freeze mode too).
#[allow(dead_code)]
#[path = "gc_histogram/compare.rs"]
mod compare;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use compare::{compare, compare_gc_figures, Findings, Mode};
use memspy::error::Error;
use serde_json::Value;

const FIXTURE: &str = "gc_heap.py";
const GCORE_TIMEOUT: Duration = Duration::from_secs(180);

fn gcore_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("gcore")).find(|p| p.is_file())
}

/// `gcore -o DIR/core PID`: the core's path and how long gcore took.
fn gcore(pid: u32, dir: &Path) -> Result<(PathBuf, Duration), String> {
    let gcore = gcore_path().ok_or("gcore is not on PATH")?;
    let mut cmd = Command::new(gcore);
    cmd.arg("-o").arg(dir.join("core")).arg(pid.to_string());
    let t0 = Instant::now();
    let out = run_with_timeout(cmd, GCORE_TIMEOUT).map_err(|e| format!("running gcore: {e}"))?;
    let took = t0.elapsed();
    let core = dir.join(format!("core.{pid}"));
    if !out.success() || !core.is_file() {
        return Err(format!("gcore {pid} failed: {}; {}", out.describe_status(), tail(&out.stderr, 1000)));
    }
    Ok((core, took))
}

fn core_args<'a>(core: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["top", "--core", core, "--once", "--json"];
    args.extend_from_slice(extra);
    args
}

/// `v` without what differs from read to read (times, the RSS a core does not record, retries).
fn steady(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["pause_ms", "elapsed_ms", "timestamp", "rss", "retries", "file"] {
            o.remove(k);
        }
        if let Some(a) = o.get_mut("analysis").and_then(Value::as_object_mut) {
            a.retain(|k, _| !k.ends_with("_ms"));
        }
    }
    v
}

/// Mismatches between the live report and the core's, field by field (types by name).
fn compare_reports(what: &str, live: &Value, core: &Value, errors: &mut Vec<String>) {
    let (live, core) = (steady(live), steady(core));
    if live == core {
        return;
    }
    let (Some(l), Some(c)) = (live.as_object(), core.as_object()) else {
        return errors.push(format!("{what}: not JSON objects"));
    };
    for (k, lv) in l {
        let cv = c.get(k).unwrap_or(&Value::Null);
        if k == "types" {
            let rows = |v: &Value| -> std::collections::BTreeMap<String, Value> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| (r["type"].as_str().unwrap_or("?").to_string(), r.clone()))
                    .collect()
            };
            let (lr, cr) = (rows(lv), rows(cv));
            for name in lr.keys().chain(cr.keys()).collect::<std::collections::BTreeSet<_>>() {
                if lr.get(name) != cr.get(name) {
                    errors.push(format!("{what}: type {name}: live {:?}, core {:?}", lr.get(name), cr.get(name)));
                }
            }
        } else if lv != cv {
            errors.push(format!("{what}: {k}: live {lv}, core {cv}"));
        }
    }
    for k in c.keys().filter(|k| !l.contains_key(*k)) {
        errors.push(format!("{what}: {k} only in the core's report"));
    }
}

struct Outcome {
    label: String,
    errors: Vec<String>,
    gcore: Duration,
    walk: Duration,
    core_mb: u64,
}

fn check_interpreter(interp: &Interpreter, with_graph: bool) -> Outcome {
    let mut out =
        Outcome { label: interp.label(), errors: Vec::new(), gcore: Duration::ZERO, walk: Duration::ZERO, core_mb: 0 };
    let (fixture, truth) = match start_settled(interp, FIXTURE, &[]) {
        Ok(x) => x,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    let binary = inspect_process(fixture.pid).map_err(|e| out.errors.push(format!("inspecting: {e}"))).ok();
    let tmp = match TempDir::new("memspy-core") {
        Ok(t) => t,
        Err(e) => {
            out.errors.push(format!("temp dir: {e}"));
            return out;
        }
    };
    let (core, took) = match gcore(fixture.pid, tmp.path()) {
        Ok(x) => x,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    out.gcore = took;
    out.core_mb = std::fs::metadata(&core).map(|m| m.len() >> 20).unwrap_or(0);
    let core = core.display().to_string();
    let pid = fixture.pid.to_string();
    let mut run = |args: &[&str]| run_memspy_json(args).map(|(v, _)| v).map_err(|e| out.errors.push(e)).ok();
    let live = run(&["top", &pid, "--once", "--json"]);
    let live_graph = with_graph.then(|| {
        (run(&["retained", &pid, "--json", "--limit", "10"]), run(&["why", &pid, "--type", "__main__.Rec", "--json"]))
    });
    let t0 = Instant::now();
    let full = run(&core_args(&core, &[]));
    let walk = t0.elapsed();
    let gc_only = run(&core_args(&core, &["--gc-only"]));
    let core_graph = with_graph.then(|| {
        (
            run(&["retained", "--core", &core, "--json", "--limit", "10"]),
            run(&["why", "--core", &core, "--type", "__main__.Rec", "--json"]),
        )
    });
    out.walk = walk;
    // `dump --core`: the file holds the core's walk.
    let dumped = with_graph.then(|| {
        let file = tmp.path().join("core.memspy").display().to_string();
        run_memspy(["dump", "--core", &core, "-o", &file])
            .map_err(|e| e.to_string())
            .and_then(|o| if o.success() { Ok(()) } else { Err(format!("dump --core: {}", tail(&o.stderr, 500))) })
            .and_then(|()| run_memspy_json(&["top", &file, "--once", "--json"]).map(|(v, _)| v))
    });
    if let Some(g) = &gc_only {
        let mut found = Findings::default();
        compare(Mode::Plain, interp, binary.as_ref(), fixture.pid, &truth, g, &mut found);
        out.errors.extend(found.errors.into_iter().map(|e| format!("core --gc-only vs truth: {e}")));
        if let Some(f) = &full {
            compare_gc_figures(g, f, &mut out.errors);
        }
    }
    if let (Some(l), Some(c)) = (&live, &full) {
        compare_reports("core vs live (full walk)", l, c, &mut out.errors);
        if c["pause_ms"].as_f64() != Some(0.0) {
            out.errors.push(format!("a core is never paused, yet pause_ms is {}", c["pause_ms"]));
        }
    }
    match (&dumped, &full) {
        (Some(Ok(d)), Some(c)) => compare_reports("top of dump --core vs top --core", c, d, &mut out.errors),
        (Some(Err(e)), _) => out.errors.push(e.clone()),
        _ => {}
    }
    if let (Some((lr, lw)), Some((cr, cw))) = (&live_graph, &core_graph) {
        if let (Some(l), Some(c)) = (lr, cr) {
            compare_reports("retained", l, c, &mut out.errors);
        }
        if let (Some(l), Some(c)) = (lw, cw) {
            compare_reports("why --type __main__.Rec", l, c, &mut out.errors);
        }
    }
    drop(tmp);
    drop(fixture);
    out
}

#[test]
fn core_walk_is_the_live_walk() {
    let d = discover_interpreters();
    let all = d.with_free_threaded();
    if all.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    if gcore_path().is_none() {
        return skip_or_fail("gcore (Debian's gdb) is not installed: scripts/install-services.sh installs it");
    }
    let mut jobs = Vec::new();
    let (mut shared_done, mut static_done) = (false, false);
    for interp in &all {
        // retained and why on the first shared and the first static GIL build.
        let shared = inspect_interpreter(interp).is_ok_and(|b| b.linkage == "shared");
        let graph = !interp.free_threaded && if shared { !shared_done } else { !static_done };
        if graph {
            if shared {
                shared_done = true
            } else {
                static_done = true
            }
        }
        jobs.push((*interp, graph));
    }
    // Two interpreters at a time (each fixture is its own process; gcore mostly writes).
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((interp, graph)) = jobs.get(i) else { break };
                let o = check_interpreter(interp, *graph);
                done.lock().expect("outcomes").push((i, o));
            });
        }
    });
    let mut outcomes = done.into_inner().expect("outcomes");
    outcomes.sort_by_key(|(i, _)| *i);
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(_, o)| o).collect();
    eprintln!("\n== core files: the core's walk vs the fixture's truth and the live walk ==");
    eprintln!("{:<12} {:>9} {:>9} {:>10}  core equals live and truth", "interpreter", "gcore s", "walk s", "core MiB");
    let mut failures = Vec::new();
    for o in &outcomes {
        eprintln!(
            "{:<12} {:>9.2} {:>9.2} {:>10}  {}",
            o.label,
            o.gcore.as_secs_f64(),
            o.walk.as_secs_f64(),
            o.core_mb,
            if o.errors.is_empty() { "yes".to_string() } else { format!("NO ({} mismatches)", o.errors.len()) }
        );
        failures.extend(o.errors.iter().take(40).map(|e| format!("{}: {e}", o.label)));
    }
    for s in &d.skipped {
        eprintln!("{:<12} SKIP: {}", s.version, s.reason);
    }
    failures.extend(built_coverage(&all, ci_mode()));
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// The one line of a failed run of memspy (status 1, not a panic) is `e`.
fn expect_error(args: &[&str], e: &Error, failures: &mut Vec<String>) {
    let out = match run_memspy(args) {
        Ok(o) => o,
        Err(err) => return failures.push(format!("running memspy {args:?}: {err}")),
    };
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.starts_with("memspy: warning:")).collect();
    let ok = out.status.and_then(|s| s.code()) == Some(1) && lines.len() == 1 && shows_error(lines[0], e);
    if !ok {
        failures.push(format!(
            "memspy {}: {}, stderr {:?}; expected one line ending in {e}",
            args.join(" "),
            out.describe_status(),
            out.stderr
        ));
    }
}

#[test]
fn core_files_memspy_refuses() {
    let d = discover_interpreters();
    // A shared build: its executable is not the file holding the runtime, so a wrong --exe is found
    // by its build ID and not by the runtime missing.
    let shared = |i: &&Interpreter| inspect_interpreter(i).is_ok_and(|b| b.linkage == "shared");
    let Some(interp) = d.interpreters.iter().find(|i| shared(i) && !i.debug).or(d.interpreters.first()) else {
        return skip_or_fail(NO_INTERPRETER);
    };
    if gcore_path().is_none() {
        return skip_or_fail("gcore (Debian's gdb) is not installed: scripts/install-services.sh installs it");
    }
    let tmp = TempDir::new("memspy-core-errors").expect("temp dir");
    let mut failures = Vec::new();

    // A core of sleep: not Python.
    let mut sleep = Command::new("sleep").arg("600").spawn().expect("sleep");
    let sleep_core = gcore(sleep.id(), tmp.path());
    let _ = sleep.kill();
    let _ = sleep.wait();
    match sleep_core {
        Ok((core, _)) => {
            let c = core.display().to_string();
            let e = Error::CoreNotPython { core: c.clone(), pid: sleep.id() as i32, exe: ANY.into() };
            expect_error(&["top", "--core", &c, "--once"], &e, &mut failures);
        }
        Err(e) => failures.push(e),
    }

    let (fixture, _truth) = start_settled(interp, FIXTURE, &[]).expect("fixture");
    let (core, _) = gcore(fixture.pid, tmp.path()).expect("gcore of the fixture");
    drop(fixture);
    let c = core.display().to_string();

    // The right binaries given explicitly read the same.
    let plain = run_memspy_json(&core_args(&c, &[])).map(|(v, _)| v);
    let exe = interp.path.display().to_string();
    let explicit = run_memspy_json(&core_args(&c, &["--exe", &exe, "--sysroot", "/"])).map(|(v, _)| v);
    match (plain, explicit) {
        (Ok(a), Ok(b)) => compare_reports("--exe and --sysroot / vs neither", &a, &b, &mut failures),
        (a, b) => failures.extend([a.err(), b.err()].into_iter().flatten()),
    }

    // Another binary as --exe: its build ID is not the one the core mapped.
    let e = Error::CoreBuildIdMismatch {
        path: ANY.into(),
        disk: "/bin/sleep".into(),
        core_id: ANY.into(),
        file_id: ANY.into(),
    };
    expect_error(&["top", "--core", &c, "--once", "--exe", "/bin/sleep"], &e, &mut failures);

    // An empty sysroot: the binaries are missing.
    let empty = tmp.path().join("empty-root");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let root = empty.display().to_string();
    let e = Error::CoreBinaryMissing { path: ANY.into(), disk: format!("{root}{ANY}"), error: ANY.into() };
    expect_error(&["top", "--core", &c, "--once", "--sysroot", &root], &e, &mut failures);

    // Compressed as systemd-coredump keeps its cores: zstd reads as the plain core; a zstd stream cut
    // short, and lz4 (which memspy does not decompress), are refused in one line.
    let zst = tmp.path().join("core.zst");
    let packed = std::fs::File::open(&core)
        .and_then(|src| zstd::stream::copy_encode(src, std::fs::File::create(&zst)?, 1))
        .map(|()| zst.display().to_string());
    match packed {
        Ok(z) => {
            let plain = run_memspy_json(&core_args(&c, &[])).map(|(v, _)| v);
            match (plain, run_memspy_json(&core_args(&z, &[])).map(|(v, _)| v)) {
                (Ok(a), Ok(b)) => compare_reports("the zstd core vs the core", &a, &b, &mut failures),
                (a, b) => failures.extend([a.err(), b.err()].into_iter().flatten()),
            }
            let bytes = std::fs::read(&zst).expect("zstd core");
            let cut = tmp.path().join("cut.zst");
            std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
            let cut = cut.display().to_string();
            let e = Error::CoreUnpack { path: cut.clone(), detail: ANY.into() };
            expect_error(&["top", "--core", &cut, "--once"], &e, &mut failures);
        }
        Err(e) => failures.push(format!("compressing the core with zstd: {e}")),
    }
    let lz4 = tmp.path().join("core.lz4");
    std::fs::write(&lz4, [0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7, 0, 0, 0, 0]).expect("write");
    let l = lz4.display().to_string();
    let e = Error::CorePacked { path: l.clone(), format: "lz4".into(), command: "lz4 -d".into() };
    expect_error(&["top", "--core", &l, "--once"], &e, &mut failures);

    // A truncated copy (gcore writes its notes last: they are gone).
    let truncated = tmp.path().join("truncated.core");
    let len = std::fs::metadata(&core).expect("core").len();
    let bytes = std::fs::read(&core).expect("core");
    std::fs::write(&truncated, &bytes[..(len / 2) as usize]).expect("write");
    drop(bytes);
    let t = truncated.display().to_string();
    let e = Error::CoreTruncated { path: t.clone(), detail: ANY.into() };
    expect_error(&["top", "--core", &t, "--once"], &e, &mut failures);
    let e = Error::CoreTruncated { path: t.clone(), detail: ANY.into() };
    expect_error(&["gc", "--core", &t], &e, &mut failures);

    // Not core files.
    let script = fixture_script(FIXTURE).display().to_string();
    let e = Error::NotCore { path: script.clone(), why: "not an ELF file".into() };
    expect_error(&["top", "--core", &script, "--once"], &e, &mut failures);
    let e = Error::NotCore { path: "/bin/sleep".into(), why: ANY.into() };
    expect_error(&["why", "--core", "/bin/sleep", "--type", "dict"], &e, &mut failures);

    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Where the kernel writes the core of a process that dies of a signal, when it writes it as a file in
/// the process's directory (`core_pattern` a plain name, not a pipe to systemd-coredump or apport).
fn kernel_core_name() -> Result<String, String> {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").map_err(|e| e.to_string())?;
    let pattern = pattern.trim();
    if pattern.is_empty() || pattern.starts_with('|') || pattern.contains('/') || pattern.contains('%') {
        return Err(format!("kernel.core_pattern is {pattern:?}: the kernel does not write a plain core file"));
    }
    Ok(pattern.to_string())
}

/// A kernel-written core (what systemd-coredump keeps): the fixture is killed by SIGABRT once it has
/// written its truth; its core's `--gc-only` report must be the truth, exactly; a truncated copy, in
/// which the kernel's notes come first, refuses in one line naming what lies beyond the end.
#[test]
fn kernel_core_of_an_aborted_fixture() {
    let d = discover_interpreters();
    let name = match kernel_core_name() {
        Ok(n) => n,
        Err(e) => return skip_or_fail(&e),
    };
    let linkage = |i: &Interpreter| inspect_interpreter(i).map(|b| b.linkage).unwrap_or_default();
    let shared = d.interpreters.iter().find(|i| linkage(i) == "shared");
    let fixed = d.interpreters.iter().find(|i| linkage(i) == "static");
    let picked: Vec<&Interpreter> = [shared, fixed, d.free_threaded.first()].into_iter().flatten().collect();
    if picked.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    let mut failures = Vec::new();
    let labels: Vec<String> = picked.iter().map(|i| i.label()).collect();
    for interp in picked {
        let label = interp.label();
        let tmp = TempDir::new("memspy-kernel-core").expect("temp dir");
        let truth_path = tmp.path().join("truth.json");
        // The core's size limit lifted for the fixture alone; it runs in the temporary directory, where
        // the kernel writes its core.
        let script = format!(
            "ulimit -c unlimited && exec \"$0\" -I {} {}",
            fixture_script(FIXTURE).display(),
            truth_path.display()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&interp.path)
            .current_dir(tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the fixture");
        let pid = child.id();
        let t0 = Instant::now();
        while !truth_path.is_file() && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Then it blocks in signal.pause(): sleeping, not running.
        while proc_state(pid) != Some('S') && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let truth: Option<Value> =
            std::fs::read_to_string(&truth_path).ok().and_then(|t| serde_json::from_str(&t).ok());
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGABRT);
        let _ = child.wait();
        let Some(truth) = truth else {
            failures.push(format!("{label}: the fixture wrote no truth"));
            continue;
        };
        let core = [tmp.path().join(&name), tmp.path().join(format!("{name}.{pid}"))].into_iter().find(|p| p.is_file());
        let Some(core) = core else {
            failures.push(format!("{label}: no core file {name} in {} after SIGABRT", tmp.path().display()));
            continue;
        };
        let c = core.display().to_string();
        let gc_only = run_memspy_json(&core_args(&c, &["--gc-only"])).map(|(v, _)| v);
        let full = run_memspy_json(&core_args(&c, &[])).map(|(v, _)| v);
        match (gc_only, full) {
            (Ok(g), Ok(f)) => {
                let mut found = Findings::default();
                compare(Mode::Plain, interp, None, pid, &truth, &g, &mut found);
                let mut errors = found.errors;
                compare_gc_figures(&g, &f, &mut errors);
                failures.extend(errors.into_iter().map(|e| format!("{label}: kernel core: {e}")));
            }
            (g, f) => failures.extend([g.err(), f.err()].into_iter().flatten().map(|e| format!("{label}: {e}"))),
        }
        // Cut in the middle: the notes are whole, the runtime's memory (libpython's data, or the heap's
        // GC lists) is not.
        let truncated = tmp.path().join("truncated.core");
        let bytes = std::fs::read(&core).expect("core");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
        drop(bytes);
        let t = truncated.display().to_string();
        let e = Error::CoreTruncated { path: t.clone(), detail: format!("the {ANY} at 0x{ANY} lies beyond its end") };
        let mut errors = Vec::new();
        expect_error(&["top", "--core", &t, "--once"], &e, &mut errors);
        match run_memspy(["top", "--core", &t, "--once"]) {
            Ok(o)
                if o.stderr
                    .lines()
                    .any(|l| l.starts_with("memspy: warning: the core file") && l.contains("truncated")) => {}
            Ok(o) => errors.push(format!("no warning that the core is truncated: {:?}", o.stderr)),
            Err(e) => errors.push(e.to_string()),
        }
        failures.extend(errors.into_iter().map(|e| format!("{label}: {e}")));
    }
    eprintln!("kernel cores checked against the truth: {}", labels.join(", "));
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
