//! `memspy export --format heapsnapshot` and `memspy report` against fixtures/retention.py:
//! - memlab (npm, in ~/.cache/memspy/npm from scripts/install-services.sh) loads the .heapsnapshot and
//!   its own figures agree with memspy's of the same walk, on every CPython of the matrix: the node
//!   count, the total self size, the object memlab's dominator computation finds retaining the most
//!   (the same node, the same bytes), what the holder list `REGISTRY['cache']` retains (the fixture's
//!   `sys.getsizeof` sum) and what one leaked object retains, and memlab's retainer trace of that
//!   leaked object (its path below the module's globals, as `memspy why --type Leak` gives it);
//! - Chrome DevTools' own heap snapshot loader (the front end Chromium bundles, run in headless
//!   Chromium: tests/export/devtools_view.js) loads it, on every CPython of the matrix, and the figures
//!   of its Summary view agree with memspy's of the same walk (a dump, exported, and `top` of it): the
//!   node count, the total self size, and per class named as a type of `memspy top` (every one but the
//!   type objects, named each by its own name) its count and self size;
//! - VS Code's heap snapshot viewer's parser (@vscode/v8-heap-parser, npm, beside memlab) decodes it,
//!   on every CPython of the matrix: the node count, the total self size, per class named as a type of
//!   `memspy top` of the same dump its count and self size, the leaks' retained size by class (the
//!   fixture's sum) and one leak's retainers, up through a Holder to the holder list, which retains
//!   the fixture's sum;
//! - the HTML page renders in headless Chromium (Debian's): its script ran without an error (it
//!   sorted the type table by retained bytes, largest first), the largest owner is the holder list,
//!   the page fetches nothing, and a screenshot is left in the test's output folder.
//!
//! Run with `cargo test --test export -- --nocapture` to see the per-interpreter figures.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const FIXTURE: &str = "retention.py";
const K: u64 = 3000;
const M: u64 = 70;
const C: u64 = 9;
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

fn npm_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/memspy/npm/node_modules")
}

/// What is missing to run memlab, if anything.
fn memlab_missing() -> Option<String> {
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        return Some("node is not installed (scripts/install-services.sh installs it)".into());
    }
    let m = npm_dir().join("@memlab/heap-analysis/package.json");
    (!m.exists()).then(|| format!("memlab is not installed ({} missing; scripts/install-services.sh)", m.display()))
}

fn expect(errors: &mut Vec<String>, what: &str, got: impl std::fmt::Debug, want: impl std::fmt::Debug) {
    let (g, w) = (format!("{got:?}"), format!("{want:?}"));
    if g != w {
        errors.push(format!("{what}: memlab/export {g}, memspy/fixture {w}"));
    }
}

/// A path's edges as both tools name them, compared: `['cache']` and `.items` are `cache` and
/// `items`, indices `*`, and a `__dict__` step is left out.
fn normalized(edges: &[String]) -> Vec<String> {
    edges
        .iter()
        .filter(|e| *e != "__dict__" && *e != ".__dict__")
        .map(|e| {
            let e = e.trim_start_matches('.');
            let e = e.strip_prefix("['").and_then(|x| x.strip_suffix("']")).unwrap_or(e);
            if e == "[*]" || e.parse::<u64>().is_ok() {
                "*".to_string()
            } else {
                e.to_string()
            }
        })
        .collect()
}

fn memlab_view(file: &Path) -> Result<Value, String> {
    let script = repo_root().join("tests/export/memlab_view.js");
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(file).env("NODE_PATH", npm_dir());
    let out = run_with_timeout(cmd, TOOL_TIMEOUT).map_err(|e| format!("could not run node: {e}"))?;
    if !out.success() {
        return Err(format!("memlab_view.js failed: {}; stderr: {}", out.describe_status(), tail(&out.stderr, 1500)));
    }
    serde_json::from_str(&out.stdout)
        .map_err(|e| format!("memlab_view.js printed no JSON ({e}): {}", tail(&out.stdout, 500)))
}

/// Exports `target` (a PID or a dump file), loads it in memlab and compares (errors into `e`).
fn compare(target: &str, file: &Path, truth: &Value, what: &str, e: &mut Vec<String>) -> Result<(), String> {
    let file_s = file.display().to_string();
    let (x, _) = run_memspy_json(&["export", target, "--format", "heapsnapshot", "-o", &file_s, "--json"])?;
    let v = memlab_view(file)?;
    let before = e.len();
    expect(e, "node count", v["nodes"].as_u64(), x["nodes"].as_u64());
    expect(e, "total self size", v["self_size"].as_u64(), x["self_size"].as_u64());
    let largest = &x["largest_retained"];
    expect(
        e,
        "largest retained object: id, retained bytes",
        (v["largest"]["id"].as_u64(), v["largest"]["retained"].as_u64()),
        (largest["id"].as_u64(), largest["retained"].as_u64()),
    );
    expect(e, "holder list: retained", v["holder_list"]["retained"].as_u64(), truth["holder_list_retained"].as_u64());
    expect(e, "one leak: retained × K", v["leak"]["retained"].as_u64().map(|r| r * K), truth["leak_retained"].as_u64());
    // The retainer trace: from memlab's root, to the leak, through the module's globals.
    let trace: Vec<(String, String)> = v["trace"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|s| (s["edge"].as_str().unwrap_or("?").to_string(), s["to"].as_str().unwrap_or("?").to_string()))
                .collect()
        })
        .unwrap_or_default();
    expect(e, "trace: starts at", trace.first().map(|s| s.1.clone()), Some("(memspy roots)"));
    expect(e, "trace: ends at", trace.last().map(|s| s.1.clone()), Some("__main__.Leak"));
    let w = run_memspy_json(&["why", target, "--type", "Leak", "--json"])?.0;
    let steps: Vec<String> = w["paths"][0]["steps"]
        .as_array()
        .map(|s| s.iter().map(|x| x["edge"].as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default();
    match trace.iter().position(|s| s.0 == "REGISTRY") {
        Some(i) if i > 0 => {
            let edges: Vec<String> = trace[i..].iter().map(|s| s.0.clone()).collect();
            expect(e, "trace below the module's globals", normalized(&edges), normalized(&steps));
            expect(e, "trace: the globals", trace[i - 1].1.as_str(), "builtins.dict");
        }
        _ => e.push(format!("trace: no REGISTRY edge below a dict in {trace:?}")),
    }
    eprintln!(
        "           {what}: memlab {} nodes, {} bytes, largest retained {} ({} B), holder list {} B; trace {}",
        v["nodes"],
        v["self_size"],
        v["largest"]["name"],
        v["largest"]["retained"],
        v["holder_list"]["retained"],
        trace.iter().map(|s| format!("{} → {}", s.0, s.1)).collect::<Vec<_>>().join(" | ")
    );
    for x in &mut e[before..] {
        *x = format!("{what}: {x}");
    }
    if e.len() > before {
        e.push(format!("{what}: snapshot kept at {file_s}"));
    } else {
        let _ = std::fs::remove_file(file);
    }
    Ok(())
}

fn check_memlab(interp: &Interpreter, dir: &Path) -> Result<Vec<String>, String> {
    let (k, m, c) = (K.to_string(), M.to_string(), C.to_string());
    let mut fixture = Fixture::spawn(interp, FIXTURE, &[&k, &m, &c])?;
    let truth = fixture.wait_for_truth(FIXTURE_TIMEOUT)?;
    fixture.wait_until_paused(FIXTURE_TIMEOUT)?;
    let pid = fixture.pid.to_string();
    let label = sanitize(&interp.label());
    let mut e = Vec::new();
    compare(&pid, &dir.join(format!("retention-{label}.heapsnapshot")), &truth, "live", &mut e)?;
    // The same from a dump file, exported once the process is gone.
    let dump = fixture.dir().join("retention.memspy");
    let dump_s = dump.to_str().ok_or("a temp path that is not UTF-8")?;
    let out = run_memspy(["dump", pid.as_str(), "-o", dump_s]).map_err(|x| x.to_string())?;
    if !out.success() {
        return Err(format!("memspy dump failed: {}", tail(&out.stderr, 500)));
    }
    let stderr = fixture.stderr_text();
    fixture.kill();
    compare(dump_s, &dir.join(format!("retention-{label}-dump.heapsnapshot")), &truth, "dump", &mut e)?;
    if !e.is_empty() {
        e.push(format!("fixture stderr: {}", tail(&stderr, 300)));
    }
    Ok(e)
}

#[test]
fn memlab_loads_the_heapsnapshot_and_agrees_with_memspy() {
    if let Some(why) = memlab_missing() {
        return skip_or_fail(&why);
    }
    let d = discover_interpreters();
    if d.interpreters.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    let dir = artifact_dir("export-memlab");
    let mut failed = 0;
    for interp in &d.interpreters {
        let errors = check_memlab(interp, &dir).unwrap_or_else(|e| vec![e]);
        eprintln!("{:<10} {}", interp.label(), if errors.is_empty() { "ok" } else { "FAIL" });
        for x in &errors {
            eprintln!("    {x}");
        }
        failed += usize::from(!errors.is_empty());
    }
    assert_eq!(failed, 0, "{failed} of {} interpreters differ (see above)", d.interpreters.len());
}

/// The flag node needs for a WebSocket client: none from node 22 on, `--experimental-websocket` on 20.
fn node_websocket_flag() -> Option<Vec<&'static str>> {
    let has = |flags: &[&'static str]| {
        Command::new("node")
            .args(flags)
            .args(["-e", "process.exit(typeof WebSocket === 'undefined' ? 1 : 0)"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    [vec![], vec!["--experimental-websocket"]].into_iter().find(|f| has(f))
}

/// One interpreter's fixture, dumped while paused, that dump exported, and `top` of the same dump (one
/// walk): what the viewers' figures are checked against.
struct Exported {
    label: String,
    file: String,
    export: Value,
    top: Value,
    truth: Value,
}

fn exported_dumps(interpreters: &[Interpreter], dir: &Path) -> Vec<Exported> {
    let (k, m, c) = (K.to_string(), M.to_string(), C.to_string());
    let mut all = Vec::new();
    for interp in interpreters {
        let mut fixture = Fixture::spawn(interp, FIXTURE, &[&k, &m, &c]).expect("fixture");
        let truth = fixture.wait_for_truth(FIXTURE_TIMEOUT).expect("truth");
        fixture.wait_until_paused(FIXTURE_TIMEOUT).expect("paused");
        let pid = fixture.pid.to_string();
        let label = sanitize(&interp.label());
        let dump = dir.join(format!("retention-{label}.memspy")).display().to_string();
        let out = run_memspy(["dump", pid.as_str(), "-o", dump.as_str()]).expect("memspy runs");
        assert!(out.success(), "{}: dump: {}", interp.label(), tail(&out.stderr, 500));
        fixture.kill();
        let file = dir.join(format!("retention-{label}.heapsnapshot")).display().to_string();
        let (export, _) = run_memspy_json(&["export", &dump, "--format", "heapsnapshot", "-o", &file, "--json"])
            .unwrap_or_else(|e| panic!("{}: export: {e}", interp.label()));
        let (top, _) = run_memspy_json(&["top", &dump, "--once", "--json"])
            .unwrap_or_else(|e| panic!("{}: top: {e}", interp.label()));
        let _ = std::fs::remove_file(&dump);
        all.push(Exported { label: interp.label(), file, export, top, truth });
    }
    all
}

/// A viewer's node count and total self size, and per class named as a type of `top` (every one but
/// the type objects, each a node named by its own name) its count and self size, against memspy's;
/// returns how many classes were compared.
fn same_summary(
    e: &mut Vec<String>,
    x: &Exported,
    v: &Value,
    classes: &std::collections::HashMap<&str, (u64, u64)>,
) -> usize {
    expect(e, "file", v["file"].as_str(), Some(x.file.as_str()));
    expect(e, "node count", v["nodes"].as_u64(), x.export["nodes"].as_u64());
    expect(e, "total self size", v["self_size"].as_u64(), x.export["self_size"].as_u64());
    let mut matched = 0;
    for t in x.top["types"].as_array().into_iter().flatten() {
        let name = t["type"].as_str().unwrap_or("?");
        if name == "builtins.type" {
            continue;
        }
        if let Some(&(count, bytes)) = classes.get(name) {
            matched += 1;
            expect(e, name, (count, bytes), (t["count"].as_u64().unwrap_or(0), t["bytes"].as_u64().unwrap_or(0)));
        }
    }
    matched
}

/// The JSON lines a viewer script printed, one per snapshot of `all`.
fn one_per_snapshot(out: &CmdOutput, script: &str, all: &[Exported]) -> Vec<Value> {
    assert!(out.success(), "{script} failed: {}; stderr: {}", out.describe_status(), tail(&out.stderr, 2000));
    let seen: Vec<Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(seen.len(), all.len(), "one result per snapshot: {}", tail(&out.stdout, 1000));
    seen
}

#[test]
fn chrome_devtools_loads_the_heapsnapshot_and_agrees_with_memspy() {
    let Some(bin) = chromium() else {
        return skip_or_fail("chromium is not installed (scripts/install-services.sh installs it)");
    };
    let Some(flags) = node_websocket_flag() else {
        return skip_or_fail("node with a WebSocket client is not installed (scripts/install-services.sh)");
    };
    let d = discover_interpreters();
    if d.interpreters.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    let expected = exported_dumps(&d.interpreters, &artifact_dir("export-devtools"));
    let profile = TempDir::new("devtools-profile").expect("profile dir");
    let mut cmd = Command::new("node");
    cmd.args(&flags)
        .arg(repo_root().join("tests/export/devtools_view.js"))
        .arg(&bin)
        .arg(profile.path())
        .args(expected.iter().map(|x| x.file.as_str()));
    let out = run_with_timeout(cmd, TOOL_TIMEOUT).expect("node runs");
    let seen = one_per_snapshot(&out, "devtools_view.js", &expected);
    let mut failed = 0;
    for (x, v) in expected.iter().zip(&seen) {
        let mut e = Vec::new();
        let classes: std::collections::HashMap<&str, (u64, u64)> = v["classes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["name"].as_str()?, (c["count"].as_u64()?, c["self"].as_u64()?))))
            .collect();
        let matched = same_summary(&mut e, x, v, &classes);
        for must in ["__main__.Leak", "__main__.Holder", "builtins.dict", "builtins.list"] {
            if !classes.contains_key(must) {
                e.push(format!("no class {must} in DevTools' summary"));
            }
        }
        let leak = classes.get("__main__.Leak").copied().unwrap_or_default();
        eprintln!(
            "{:<10} {}: DevTools {} nodes, {} bytes, {matched} classes as memspy's types; __main__.Leak {} objects, {} bytes",
            x.label,
            if e.is_empty() { "ok" } else { "FAIL" },
            v["nodes"],
            v["self_size"],
            leak.0,
            leak.1
        );
        for x in &e {
            eprintln!("    {x}");
        }
        failed += usize::from(!e.is_empty());
    }
    assert_eq!(failed, 0, "{failed} of {} interpreters differ (see above)", expected.len());
}

/// What is missing to run VS Code's heap snapshot parser, if anything.
fn vscode_parser_missing() -> Option<String> {
    if let Some(m) = memlab_missing().filter(|m| m.starts_with("node")) {
        return Some(m);
    }
    let p = npm_dir().join("@vscode/v8-heap-parser/package.json");
    (!p.exists()).then(|| {
        format!(
            "VS Code's heap snapshot parser is not installed ({} missing; scripts/install-services.sh)",
            p.display()
        )
    })
}

#[test]
fn vscode_heap_snapshot_parser_loads_the_heapsnapshot_and_agrees_with_memspy() {
    if let Some(why) = vscode_parser_missing() {
        return skip_or_fail(&why);
    }
    let d = discover_interpreters();
    if d.interpreters.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    let expected = exported_dumps(&d.interpreters, &artifact_dir("export-vscode"));
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", npm_dir())
        .arg(repo_root().join("tests/export/vscode_view.js"))
        .args(expected.iter().map(|x| x.file.as_str()));
    let out = run_with_timeout(cmd, TOOL_TIMEOUT).expect("node runs");
    let seen = one_per_snapshot(&out, "vscode_view.js", &expected);
    let mut failed = 0;
    for (x, v) in expected.iter().zip(&seen) {
        let mut e = Vec::new();
        let classes: std::collections::HashMap<&str, (u64, u64, u64)> = v["classes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((c["name"].as_str()?, (c["count"].as_u64()?, c["self"].as_u64()?, c["retained"].as_u64()?)))
            })
            .collect();
        let sizes = classes.iter().map(|(&n, &(count, bytes, _))| (n, (count, bytes))).collect();
        let matched = same_summary(&mut e, x, v, &sizes);
        let truth = &x.truth;
        // What the leaks retain, as the viewer sums it by class (no leak holds another).
        let leak = classes.get("__main__.Leak").copied().unwrap_or_default();
        expect(
            &mut e,
            "__main__.Leak: count, retained",
            (leak.0, leak.2),
            (K, truth["leak_retained"].as_u64().unwrap_or(0)),
        );
        // One leak's retainers, up to the holder list REGISTRY['cache']: through a Holder, whose
        // retained size is the fixture's sum.
        let chain: Vec<(&str, u64)> = v["chain"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (s["name"].as_str().unwrap_or("?"), s["retained"].as_u64().unwrap_or(0)))
            .collect();
        let want = truth["holder_list_retained"].as_u64().unwrap_or(0);
        match chain.iter().position(|&(_, r)| r == want) {
            Some(i) => {
                expect(&mut e, "the holder list's class", chain[i].0, "builtins.list");
                if !chain[1..i].iter().any(|&(n, _)| n == "__main__.Holder") {
                    e.push(format!("no __main__.Holder between the leak and the holder list: {chain:?}"));
                }
            }
            None => e.push(format!("no retainer of the leak retains {want} bytes (the holder list): {chain:?}")),
        }
        eprintln!(
            "{:<10} {}: VS Code's parser {} nodes, {} bytes, {matched} classes as memspy's types; __main__.Leak {} \
             objects retaining {} bytes; chain {}",
            x.label,
            if e.is_empty() { "ok" } else { "FAIL" },
            v["nodes"],
            v["self_size"],
            leak.0,
            leak.2,
            chain.iter().map(|c| format!("{} ({} B)", c.0, c.1)).collect::<Vec<_>>().join(" ← ")
        );
        for x in &e {
            eprintln!("    {x}");
        }
        failed += usize::from(!e.is_empty());
    }
    assert_eq!(failed, 0, "{failed} of {} interpreters differ (see above)", expected.len());
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Headless Chromium on `url` with `args` (a fresh profile each time; nothing fetched from outside).
fn headless(bin: &Path, profile: &Path, args: &[&str], url: &str) -> Result<CmdOutput, String> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url);
    let out = run_with_timeout(cmd, TOOL_TIMEOUT).map_err(|e| format!("could not run chromium: {e}"))?;
    if !out.success() {
        return Err(format!("chromium failed: {}; stderr: {}", out.describe_status(), tail(&out.stderr, 1500)));
    }
    Ok(out)
}

/// The `data-v` numbers of column `col` of the table with id `id`, in the order of the DOM.
fn column(dom: &str, id: &str, col: usize) -> Vec<u64> {
    let Some(start) = dom.find(&format!("<table id=\"{id}\"")) else { return Vec::new() };
    let table = &dom[start..start + dom[start..].find("</table>").unwrap_or(dom.len() - start)];
    table
        .split("<tr>")
        .skip(2)
        .filter_map(|row| {
            let cell = row.split("<td").nth(col + 1)?;
            let v = cell.split("data-v=\"").nth(1)?;
            v.split('"').next()?.parse().ok()
        })
        .collect()
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        return skip_or_fail("chromium is not installed (scripts/install-services.sh installs it)");
    };
    let d = discover_interpreters();
    let Some(interp) = d.interpreters.last() else { return skip_or_fail(NO_INTERPRETER) };
    let (k, m, c) = (K.to_string(), M.to_string(), C.to_string());
    let mut fixture = Fixture::spawn(interp, FIXTURE, &[&k, &m, &c]).expect("fixture");
    let truth = fixture.wait_for_truth(FIXTURE_TIMEOUT).expect("truth");
    fixture.wait_until_paused(FIXTURE_TIMEOUT).expect("paused");
    let dir = artifact_dir("export-report");
    let page = dir.join("report.html");
    let (pid, page_s) = (fixture.pid.to_string(), page.display().to_string());
    let out = run_memspy(["report", pid.as_str(), "-o", page_s.as_str()]).expect("memspy");
    assert!(out.success(), "memspy report failed: {}; {}", out.describe_status(), out.stderr);
    let html = std::fs::read_to_string(&page).expect("the page");
    // Self-contained: nothing to load, from anywhere.
    for needle in [" src=", " href=", "http://", "https://", "@import", "url("] {
        assert!(!html.contains(needle), "the page refers to something outside it ({needle:?})");
    }
    let url = format!("file://{}", page.display());
    let profile = TempDir::new("memspy-chromium").expect("profile dir");
    let dom = headless(&bin, &profile.path().join("a"), &["--dump-dom"], &url).expect("dump-dom");
    let mut errors = Vec::new();
    if !dom.stdout.contains("data-sorted=\"retained-desc\"") {
        errors.push("the script did not sort the type table (no data-sorted=\"retained-desc\")".to_string());
    }
    if !dom.stdout.contains("<pre id=\"errors\"></pre>") {
        errors.push("the page's script reported an error".to_string());
    }
    let console: Vec<&str> = dom.stderr.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    if !console.is_empty() {
        errors.push(format!("console messages: {console:?}"));
    }
    let retained = column(&dom.stdout, "types", 3);
    if retained.len() < 10 || retained.windows(2).any(|w| w[0] < w[1]) {
        errors.push(format!("the type table is not sorted by retained bytes, largest first: {retained:?}"));
    }
    let owners = column(&dom.stdout, "dominators", 2);
    if owners.first().copied() != truth["holder_list_retained"].as_u64() {
        errors.push(format!(
            "largest owner retains {:?}, the holder list {}",
            owners.first(),
            truth["holder_list_retained"]
        ));
    }
    if !dom.stdout.contains(truth["holder_list"].as_str().unwrap_or("?")) {
        errors.push("the holder list's address is not on the page".into());
    }
    let shot = dir.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    headless(&bin, &profile.path().join("b"), &[&arg, "--window-size=1400,1000"], &url).expect("screenshot");
    match std::fs::read(&shot) {
        Ok(b) if b.starts_with(b"\x89PNG") && b.len() > 10_000 => eprintln!("screenshot: {}", shot.display()),
        Ok(b) => errors.push(format!("the screenshot is not a picture of a page ({} bytes)", b.len())),
        Err(e) => errors.push(format!("no screenshot at {}: {e}", shot.display())),
    }
    assert!(errors.is_empty(), "{} ({}): {}", page.display(), interp.label(), errors.join("; "));
}

#[test]
fn the_report_shows_the_targets_html_and_script_as_text() {
    let Some(bin) = chromium() else {
        return skip_or_fail("chromium is not installed (scripts/install-services.sh installs it)");
    };
    let d = discover_interpreters();
    let Some(interp) = d.interpreters.last() else { return skip_or_fail(NO_INTERPRETER) };
    let mut fixture = Fixture::spawn(interp, "hostile_names.py", &[]).expect("fixture");
    let truth = fixture.wait_for_truth(FIXTURE_TIMEOUT).expect("truth");
    fixture.wait_until_paused(FIXTURE_TIMEOUT).expect("paused");
    let dir = artifact_dir("export-report");
    let page = dir.join("hostile.html");
    let (pid, page_s) = (fixture.pid.to_string(), page.display().to_string());
    let out = run_memspy(["report", pid.as_str(), "-o", page_s.as_str()]).expect("memspy");
    assert!(out.success(), "memspy report failed: {}; {}", out.describe_status(), out.stderr);
    let html = std::fs::read_to_string(&page).expect("the page");
    let mut errors = Vec::new();
    if html.matches("<script").count() != 1 || html.contains("<img") {
        errors.push("a tag of the target's text is in the page".to_string());
    }
    let profile = TempDir::new("memspy-chromium").expect("profile dir");
    let dom = headless(&bin, profile.path(), &["--dump-dom"], &format!("file://{page_s}")).expect("dump-dom");
    let title = format!("<title>memspy report: PID {pid} (");
    if !dom.stdout.contains(&title) {
        errors.push("the target's script changed the page's title".into());
    }
    if dom.stdout.contains("<img") {
        errors.push("the target's <img> became an element".into());
    }
    // The class name in the type table, and the dict key (its first 60 characters) in a path, as text.
    let type_text =
        truth["type"].as_str().unwrap_or("?").replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    if !dom.stdout.contains(&type_text) {
        errors.push("the class name is not shown as text".into());
    }
    if !dom.stdout.contains("[&#39;&lt;/script&gt;&lt;script&gt;document.title=")
        && !dom.stdout.contains("['&lt;/script&gt;&lt;script&gt;document.title=")
    {
        errors.push("the dict key is not shown as text in the paths".into());
    }
    assert!(errors.is_empty(), "{page_s}: {}", errors.join("; "));
}

#[test]
fn an_export_that_cannot_be_written_says_so_in_one_line_and_leaves_no_file() {
    let d = discover_interpreters();
    let Some(interp) = d.interpreters.last() else { return skip_or_fail(NO_INTERPRETER) };
    let (k, m, c) = (K.to_string(), M.to_string(), C.to_string());
    let mut fixture = Fixture::spawn(interp, FIXTURE, &[&k, &m, &c]).expect("fixture");
    fixture.wait_for_truth(FIXTURE_TIMEOUT).expect("truth");
    fixture.wait_until_paused(FIXTURE_TIMEOUT).expect("paused");
    let pid = fixture.pid.to_string();
    let dir = TempDir::new("memspy-export").expect("temp dir");
    // A folder where the file should be: the rename at the end fails, after the whole file was written.
    let target = dir.path().join("taken");
    std::fs::create_dir_all(target.join("x")).expect("dir");
    for (cmd, path) in
        [("export", target.clone()), ("report", target.clone()), ("export", dir.path().join("no/such/dir/f"))]
    {
        let p = path.display().to_string();
        let out = run_memspy([cmd, pid.as_str(), "-o", p.as_str()]).expect("memspy");
        let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let want = memspy::Error::CannotWrite { path: p.clone(), detail: ANY.into() };
        assert!(
            !out.success() && out.status.and_then(|s| s.code()) == Some(1),
            "{cmd} -o {p}: {}",
            out.describe_status()
        );
        assert!(lines.len() == 1 && shows_error(lines[0], &want), "{cmd} -o {p}: stderr {:?}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{cmd}: {}", out.stderr);
    }
    // Nothing left beside: no temporary file.
    let left: Vec<_> =
        std::fs::read_dir(dir.path()).expect("list").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("taken")], "files left in {}", dir.path().display());
}
