//! A target in namespaces of its own, as in a container: a PID namespace of its own (it is PID 1 there),
//! and a mount namespace in which its interpreter lives at a path that does not exist on the host. memspy
//! must find the runtime and report the GC-tracked objects per type exactly as fixtures/gc_heap.py records
//! them (the comparison of tests/gc_histogram), from the host by the host PID and from inside the
//! namespaces (`nsenter`) by PID 1.
//!
//! No container engine is involved: `unshare --mount --pid --fork --mount-proc --kill-child` runs a shell as
//! the new namespaces' PID 1. It mounts a tmpfs over a directory that is empty on the host, puts the
//! interpreter there — a pyenv prefix bind-mounted (its shared libpython found through `LD_LIBRARY_PATH`), or
//! Debian's static `python3.13` copied with its stdlib bind-mounted —, hides the originals (a tmpfs or
//! `/dev/null` mounted over them, so that nothing in the namespace can use them), bind-mounts the memspy
//! binary next to it, and execs the fixture. Three layouts:
//!
//! * `mount-ns`: the host's root, plus the private tmpfs: the interpreter is at `<tmp>/root/python`, which
//!   on the host is an empty directory;
//! * `pivot-root`: a root of its own assembled in the tmpfs (the host's `/usr`, `/etc`, `/dev` bound into it,
//!   the namespace's `/proc`) and entered with pivot_root(2), as container runtimes do: the interpreter is at
//!   `/opt/memspy-ns/python`, and the host's `/proc/PID/maps` names that path too;
//! * `chroot`: the same root entered with chroot(2) alone: the target sees `/opt/memspy-ns/python`, the host
//!   sees its files under `<tmp>/root/opt/memspy-ns/python` (paths from the mount namespace's root, not
//!   from the target's root).
//!
//! The viewers, each running `memspy top --once --json --gc-only` (compared with the truth) and `memspy top
//! --once --json` (its GC figures must equal the `--gc-only` ones, its per-type counts and bytes those of
//! every other viewer):
//!
//! * `host`: the host as root, by the host PID (memspy opens the target's files through
//!   `/proc/PID/map_files`);
//! * `host-ptrace`: the host with CAP_SYS_PTRACE as its only capability (`setpriv`; the capabilities of a
//!   container started with `--cap-add SYS_PTRACE --pid=host`, without its seccomp and LSM profiles):
//!   `/proc/PID/map_files` needs CAP_SYS_ADMIN, so memspy opens the files by their path under
//!   `/proc/PID/root` — in the `chroot` layout relative to the chroot, which `/proc/PID/root` names;
//! * `inside`: `nsenter --target PID --mount --pid` (plus `--root` in the layouts with a root of their own)
//!   running the memspy bound into the namespace, on PID 1, with Docker's default capabilities plus
//!   SYS_PTRACE.
//!
//! For a pyenv interpreter with a shared libpython (the newest found) and Debian's `/usr/bin/python3.13`.
//! Every process started is killed on every path: the namespaces' PID 1 (which takes its PID namespace
//! with it), unshare, nsenter and what it started. Under `CI=true` a missing prerequisite (no privilege to
//! create namespaces, a missing tool or interpreter) fails the tests instead of skipping them.
//!
//! A last test deletes the executable of a running target (as a package upgrade does): as root memspy
//! still reads it, through `/proc/PID/map_files`; with CAP_SYS_PTRACE alone it says which file it cannot open.
//!
//! Run with `cargo test --test containers -- --nocapture` to see one line per layout and viewer.

mod common;
// Mode::Freeze and the helpers only tests/gc_histogram.rs uses are dead code here.
#[allow(dead_code)]
#[path = "gc_histogram/compare.rs"]
mod compare;
#[path = "containers/namespaces.rs"]
mod namespaces;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;
use compare::{compare, compare_gc_figures, Findings, Mode};
use namespaces::*;
use serde_json::Value;

/// memspy's report from `out`, or an error with its status and stderr.
fn report_of(out: CmdOutput, what: &str) -> Result<Value, String> {
    if !out.success() {
        return Err(format!("{what}: {}; stderr: {}", out.describe_status(), tail(&out.stderr, 1500)));
    }
    serde_json::from_str(&out.stdout)
        .map_err(|e| format!("{what}: stdout is not JSON ({e}): {}", tail(&out.stdout, 500)))
}

/// Per type name: (count, bytes).
type TypeRows = BTreeMap<String, (u64, u64)>;

/// A report's [`TypeRows`].
fn type_rows(r: &Value) -> TypeRows {
    let mut rows = BTreeMap::new();
    for t in r["types"].as_array().into_iter().flatten() {
        let e = rows.entry(t["type"].as_str().unwrap_or("?").to_string()).or_insert((0, 0));
        e.0 += t["count"].as_u64().unwrap_or(0);
        e.1 += t["bytes"].as_u64().unwrap_or(0);
    }
    rows
}

/// What the host sees of the target before memspy runs: PID 1 of its PID namespace, its executable at a
/// path that does not exist on the host (but through /proc/PID/root), its interpreter's files mapped
/// from there only.
fn check_isolation(p: &Placement, ns: &Namespaces, truth: &Value) -> Result<(), String> {
    let pid = ns.pid();
    let nspid = ns_pids(pid);
    if nspid != [pid, 1] {
        return Err(format!("NSpid of {pid} is {nspid:?}, want [{pid}, 1]"));
    }
    if truth["pid"] != 1 {
        return Err(format!("the fixture's os.getpid() is {} (want 1)", truth["pid"]));
    }
    let host_prefix = p.prefix_seen(ns, Viewer::Host);
    let exe = fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| format!("/proc/{pid}/exe: {e}"))?;
    if exe != host_prefix.join("bin").join(&p.exe) {
        return Err(format!("/proc/{pid}/exe is {} (want {}/bin/{})", exe.display(), host_prefix.display(), p.exe));
    }
    let inside_exe = p.prefix_seen(ns, Viewer::Inside).join("bin").join(&p.exe);
    if truth["executable"] != inside_exe.to_string_lossy().as_ref() {
        return Err(format!("the fixture's sys.executable is {} (want {})", truth["executable"], inside_exe.display()));
    }
    for inside in [inside_exe, ns.inside_memspy()] {
        let through_root = PathBuf::from(format!("/proc/{pid}/root{}", inside.display()));
        if !through_root.is_file() {
            return Err(format!("{} does not exist", through_root.display()));
        }
        if inside.exists() {
            return Err(format!("{} (the target's path) exists on the host", inside.display()));
        }
    }
    let files = mapped_files(pid)?;
    let interpreter_files: Vec<&PathBuf> = files.iter().filter(|f| f.starts_with(&host_prefix)).collect();
    for f in &interpreter_files {
        if f.exists() {
            return Err(format!("{} is mapped by the fixture and exists on the host", f.display()));
        }
    }
    let runtime = host_prefix.join(p.runtime_file());
    if !interpreter_files.contains(&&runtime) {
        return Err(format!("{} is not mapped; the fixture maps {interpreter_files:?}", runtime.display()));
    }
    let originals = [Some(&p.src), p.stdlib.as_ref()];
    if let Some(f) = files.iter().find(|f| originals.iter().flatten().any(|o| f.starts_with(o))) {
        return Err(format!("the fixture maps {} from the host's interpreter", f.display()));
    }
    Ok(())
}

/// One viewer's two reports, checked; returns the full-heap report and a line for the output.
fn check_viewer(
    p: &Placement,
    ns: &Namespaces,
    truth: &Value,
    binary: &BinaryInfo,
    viewer: Viewer,
) -> Result<(Value, String), String> {
    let pid = if viewer == Viewer::Inside { 1 } else { ns.pid() };
    let prefix = p.prefix_seen(ns, viewer);
    // The truth as this viewer must see it: sys.executable is the target's own path, memspy reports the
    // path /proc/PID/exe shows the viewer.
    let mut truth = truth.clone();
    truth["executable"] = Value::from(prefix.join("bin").join(&p.exe).to_string_lossy().into_owned());
    let gc_only = report_of(ns.memspy(viewer, &["--gc-only"])?, "--gc-only")?;
    ns.fixture_ok()?;
    let mut found = Findings::default();
    compare(Mode::Plain, &p.interp, Some(binary), pid, &truth, &gc_only, &mut found);
    let runtime = prefix.join(p.runtime_file());
    match gc_only["python"]["binary"].as_str() {
        Some(b) if Path::new(b) == runtime => {
            if Path::new(b).exists() {
                found.errors.push(format!("python.binary {b} exists on the host"));
            }
        }
        b => found.errors.push(format!("python.binary is {b:?}, want {}", runtime.display())),
    }
    let full = report_of(ns.memspy(viewer, &[])?, "full heap")?;
    ns.fixture_ok()?;
    compare_gc_figures(&gc_only, &full, &mut found.errors);
    if full["pid"] != pid {
        found.errors.push(format!("full heap: pid {} (want {pid})", full["pid"]));
    }
    if !found.errors.is_empty() {
        let shown: Vec<&String> = found.errors.iter().take(20).collect();
        return Err(format!("{} mismatches: {shown:?}", found.errors.len()));
    }
    let types = gc_only["types"].as_array().map_or(0, |t| t.len());
    let line = format!(
        "PID {pid}: --gc-only {} objects in {types} types = truth, full heap {} objects ({} in {})",
        gc_only["totals"]["gc_tracked"],
        full["totals"]["objects"],
        gc_only["python"]["linkage"].as_str().unwrap_or("?"),
        gc_only["python"]["binary"].as_str().unwrap_or("?"),
    );
    Ok((full, line))
}

/// Every layout and viewer for one interpreter; panics (after printing every case) if one failed.
fn run_all(placement: Result<Placement, String>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let p = match placement {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    let started = Instant::now();
    let label = format!("{} {} ({})", p.origin, p.interp.label(), p.interp.path.display());
    let libs = p.check_libraries().unwrap_or_else(|e| panic!("{label}: {e}"));
    let binary = inspect_interpreter(&p.interp).unwrap_or_else(|e| panic!("{label}: inspecting it: {e}"));
    let want_linkage = if p.libpython.is_some() { "shared" } else { "static" };
    assert_eq!(binary.linkage, want_linkage, "{label}: linkage");
    eprintln!("{label}: {} build, stripped: {}; needs {libs}", binary.linkage, binary.stripped);
    let mut failures = Vec::new();
    for layout in Layout::ALL {
        let case = Instant::now();
        let (ns, truth) = match Namespaces::start(&p, layout) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("  {:<10} FAIL  setup: {e}", layout.name());
                failures.push(format!("{}: setup: {e}", layout.name()));
                continue;
            }
        };
        eprintln!(
            "  {:<10} host PID {} = PID 1 inside; the host sees the interpreter at {} (absent on the host), the target at {}",
            layout.name(),
            ns.pid(),
            p.prefix_seen(&ns, Viewer::Host).display(),
            p.prefix_seen(&ns, Viewer::Inside).display()
        );
        if let Err(e) = check_isolation(&p, &ns, &truth) {
            eprintln!("  {:<10} FAIL  isolation: {e}", layout.name());
            failures.push(format!("{}: isolation: {e}", layout.name()));
            continue;
        }
        let mut first_full: Option<(Viewer, TypeRows)> = None;
        for viewer in Viewer::ALL {
            let result = check_viewer(&p, &ns, &truth, &binary, viewer).and_then(|(full, line)| {
                let rows = type_rows(&full);
                match &first_full {
                    None => first_full = Some((viewer, rows)),
                    Some((v, first)) if *first != rows => {
                        let differ: Vec<&String> =
                            first.keys().chain(rows.keys()).filter(|k| first.get(*k) != rows.get(*k)).collect();
                        return Err(format!("full heap differs from {}'s in {differ:?}", v.name()));
                    }
                    Some(_) => {}
                }
                Ok(line)
            });
            match result {
                Ok(line) => eprintln!("  {:<10} {:<12} ok    {line}", layout.name(), viewer.name()),
                Err(e) => {
                    eprintln!("  {:<10} {:<12} FAIL  {e}", layout.name(), viewer.name());
                    failures.push(format!("{} {}: {e}", layout.name(), viewer.name()));
                }
            }
        }
        drop(ns);
        eprintln!("  {:<10} {:.1} s", layout.name(), case.elapsed().as_secs_f64());
    }
    eprintln!("{label}: {} failures, {:.1} s", failures.len(), started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{label}:\n  {}", failures.join("\n  "));
}

#[test]
fn pyenv_shared_libpython_in_namespaces() {
    run_all(pyenv_placement());
}

#[test]
fn debian_static_in_namespaces() {
    run_all(debian_placement());
}

/// A target whose executable was deleted after it started (a package upgrade replaces the file under a
/// running service): `/proc/PID/maps` then names `PATH (deleted)`, which no path reaches. As root memspy
/// reads the mapped file itself through `/proc/PID/map_files` and reports exactly; with CAP_SYS_PTRACE
/// alone it cannot, and says which file it could not open.
#[test]
fn deleted_executable_is_read_through_map_files() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = match debian_placement() {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    if !std::env::split_paths(PATH).any(|d| d.join("setpriv").is_file()) {
        return skip_or_fail("`setpriv` not found (util-linux)");
    }
    let binary = inspect_interpreter(&p.interp).unwrap_or_else(|e| panic!("inspecting {}: {e}", p.exe));
    let dir = TempDir::new("deleted-exe").expect("temp dir");
    let copy = dir.path().join(&p.exe);
    fs::copy(&p.interp.path, &copy).expect("copying the interpreter");
    let mut interp = p.interp.clone();
    interp.path = copy.clone();
    // The copy finds its stdlib through its compiled-in prefix.
    let (fixture, truth) = start_settled(&interp, "gc_heap.py", &[]).unwrap_or_else(|e| panic!("fixture: {e}"));
    fs::remove_file(&copy).expect("deleting the interpreter");
    let exe = format!("{} (deleted)", copy.display());
    assert_eq!(fs::read_link(format!("/proc/{}/exe", fixture.pid)).unwrap().to_string_lossy(), exe);

    let mut truth = truth;
    truth["executable"] = Value::from(exe.clone());
    let (report, _) = memspy_top_json_with(fixture.pid, &["--gc-only"]).unwrap_or_else(|e| panic!("as root: {e}"));
    let mut found = Findings::default();
    compare(Mode::Plain, &interp, Some(&binary), fixture.pid, &truth, &report, &mut found);
    assert!(found.errors.is_empty(), "as root: {:?}", found.errors);
    assert_eq!(report["python"]["binary"], exe.as_str());

    let mut cmd = command("setpriv");
    cmd.args(["--bounding-set=-all,+sys_ptrace", "--inh-caps=-all", "--"]).arg(memspy_bin());
    cmd.args(["top", &fixture.pid.to_string(), "--once", "--json", "--gc-only"]);
    let out = run_with_timeout(cmd, MEMSPY_TIMEOUT).expect("running setpriv");
    let line = out.stderr.lines().last().unwrap_or_default().to_string();
    let want = memspy::error::Error::Layout {
        pid: fixture.pid as i32,
        detail: format!(
            "cannot open {exe} (through /proc/{0}/map_files, /proc/{0}/root, or as named): {ANY}",
            fixture.pid
        ),
    };
    assert!(
        out.status.and_then(|s| s.code()) == Some(1) && shows_error(&line, &want),
        "{}: {line}",
        out.describe_status()
    );
    eprintln!(
        "deleted {exe}: as root {} objects in {} types = truth; with CAP_SYS_PTRACE only: {line}",
        report["totals"]["gc_tracked"],
        report["types"].as_array().map_or(0, |t| t.len())
    );
}
