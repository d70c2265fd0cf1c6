//! `memspy serve`: scraped by a real Prometheus (Debian's `prometheus` package, started here on loopback
//! with a temporary config and storage), whose HTTP API must then return the per-type counts the
//! fixtures (fixtures/gc_heap.py, one per Python minor version) know exactly; a target that exits becomes
//! `memspy_up 0` while serve goes on. Also: serve starting a program (`-- python …`) read over plain HTTP,
//! its text checked by `promtool check metrics`, ended by SIGTERM; and the options it refuses.
//!
//! Env: MEMSPY_TEST_PYTHONS=path:path limits the interpreters; CI=true makes a missing prometheus fail.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The fixture whose truth holds the exact GC-tracked count of every type.
const FIXTURE: &str = "gc_heap.py";
/// How long serve may take to start listening (it waits for nothing but a bind with PIDs).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a figure may take to show up in Prometheus (scrapes and samples are 1 s apart).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long serve may take to end after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Polls `f` every 200 ms until it gives `Some` or `limit` passes (then the last error).
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Result<Option<T>, String>) -> Result<T, String> {
    let start = Instant::now();
    let mut last = String::from("nothing yet");
    while start.elapsed() < limit {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!("not within {} s (last: {last})", limit.as_secs()))
}

/// Waits (bounded) for `child` to exit.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A running `memspy serve`, killed on drop (SIGTERM first, then SIGKILL).
struct Serve {
    child: Child,
    stderr_path: PathBuf,
    /// "127.0.0.1:PORT", from its first line on stderr.
    addr: String,
}

impl Serve {
    /// Starts `memspy serve ARGS --listen 127.0.0.1:0` and waits for the address it listens on.
    fn start(args: &[String], dir: &Path) -> Result<Serve, String> {
        let stderr_path = dir.join("serve.stderr");
        let err = fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(memspy_bin());
        cmd.arg("serve").args(["--listen", "127.0.0.1:0"]).args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("starting memspy serve: {e}"))?;
        let mut serve = Serve { child, stderr_path, addr: String::new() };
        let found = poll(START_TIMEOUT, || {
            let text = serve.stderr();
            if let Some(rest) = text.split("serving http://").nth(1) {
                return Ok(rest.split("/metrics").next().map(str::to_string));
            }
            match serve.child.try_wait() {
                Ok(Some(s)) => Err(format!("memspy serve exited ({}): {}", describe_exit(s), tail(&text, 1500))),
                _ => Ok(None),
            }
        });
        match found {
            Ok(addr) => {
                serve.addr = addr;
                Ok(serve)
            }
            // Dropping `serve` kills it.
            Err(e) => Err(format!("memspy serve did not say where it listens: {e}; stderr: {}", serve.stderr())),
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, and its exit status within STOP_TIMEOUT.
    fn terminate(&mut self) -> Result<ExitStatus, String> {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        wait_exit(&mut self.child, STOP_TIMEOUT)
            .ok_or_else(|| format!("memspy serve still runs {} s after SIGTERM", STOP_TIMEOUT.as_secs()))
    }

    fn metrics(&self) -> Result<HttpResponse, String> {
        http_get(&self.addr, "/metrics", HTTP_TIMEOUT)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.running() && self.terminate().is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Prometheus server of the test's own: temporary config and storage, loopback only; killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    log: PathBuf,
}

/// One sample of an instant vector: its labels and value.
type Series = (BTreeMap<String, String>, f64);

impl Prometheus {
    /// Starts `binary` scraping `target` every second (a few tries, should the port be taken meanwhile).
    fn start(binary: &Path, target: &str, dir: &Path) -> Result<Prometheus, String> {
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: memspy\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let mut last = String::new();
        for attempt in 0..3 {
            let port = free_port()?;
            let addr = format!("127.0.0.1:{port}");
            let log = dir.join(format!("prometheus-{attempt}.log"));
            let logf = fs::File::create(&log).map_err(|e| e.to_string())?;
            let child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join(format!("data-{attempt}")).display()))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logf)
                .spawn()
                .map_err(|e| format!("starting {}: {e}", binary.display()))?;
            let mut p = Prometheus { child, addr, log };
            let ready = poll(Duration::from_secs(60), || {
                if let Ok(Some(s)) = p.child.try_wait() {
                    return Err(format!("prometheus exited ({})", describe_exit(s)));
                }
                Ok(http_get(&p.addr, "/-/ready", HTTP_TIMEOUT).ok().filter(|r| r.status == 200).map(|_| ()))
            });
            match ready {
                Ok(()) => return Ok(p),
                Err(e) => last = format!("{e}; log: {}", tail(&fs::read_to_string(&p.log).unwrap_or_default(), 1500)),
            }
        }
        Err(format!("prometheus did not become ready: {last}"))
    }

    /// The JSON answer of an instant query through the HTTP API.
    fn query_json(&self, promql: &str) -> Result<String, String> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        Ok(http_get(&self.addr, &path, HTTP_TIMEOUT)?.body)
    }

    /// An instant query through the HTTP API: every series of the vector it returns.
    fn query(&self, promql: &str) -> Result<Vec<Series>, String> {
        let body = self.query_json(promql)?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{promql}: not JSON ({e}): {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{promql}: {body}"));
        }
        let result = v["data"]["result"].as_array().ok_or_else(|| format!("{promql}: no result in {body}"))?;
        result
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                    .unwrap_or_default();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse::<f64>().ok())
                    .ok_or_else(|| format!("{promql}: bad value in {s}"))?;
                Ok((labels, value))
            })
            .collect()
    }

    /// The value of a query that returns one series.
    fn scalar(&self, promql: &str) -> Result<Option<f64>, String> {
        let v = self.query(promql)?;
        match v.len() {
            0 => Ok(None),
            1 => Ok(Some(v[0].1)),
            n => Err(format!("{promql}: {n} series, expected one")),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        if wait_exit(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One interpreter per minor version (non-debug builds first), each with a settled gc_heap fixture.
fn fixtures_per_minor() -> Result<Vec<(Fixture, Value)>, String> {
    let mut by_minor: BTreeMap<(u32, u32), Interpreter> = BTreeMap::new();
    for i in spread_interpreters(usize::MAX) {
        by_minor.entry(i.minor()).or_insert(i);
    }
    let mut started = Vec::new();
    for interp in by_minor.values() {
        started.push(Fixture::spawn(interp, FIXTURE, &[])?);
    }
    let mut out = Vec::new();
    for mut f in started {
        let truth = f.wait_for_truth(FIXTURE_TIMEOUT)?;
        f.wait_until_paused(FIXTURE_TIMEOUT)?;
        out.push((f, truth));
    }
    Ok(out)
}

fn truth_counts(truth: &Value) -> BTreeMap<String, u64> {
    truth["gc_counts"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
        .unwrap_or_default()
}

/// The checks of one fixture's series in Prometheus against its truth. The truth counts the objects of
/// generations 0-2 (`gc.get_objects()`); memspy's counts include the permanent generation, which some
/// interpreters fill at startup (`gc.freeze()` in a site hook): there, a type may have up to the
/// `freeze_count` more, never fewer, and the fixture's own classes (never frozen) are exact.
fn compare_target(prom: &Prometheus, pid: u32, truth: &Value, top: usize, errors: &mut Vec<String>) {
    let counts = truth_counts(truth);
    let frozen = truth["freeze_count"].as_u64().unwrap_or(0);
    let version = truth["version"].as_str().unwrap_or("?");
    let full_version = truth["full_version"].as_str().unwrap_or("?");
    let series = match prom.query(&format!("memspy_objects{{pid=\"{pid}\"}}")) {
        Ok(s) => s,
        Err(e) => return errors.push(e),
    };
    let want_series = top.min(counts.len());
    if series.len() != want_series {
        errors.push(format!("PID {pid}: {} memspy_objects series, expected {want_series}", series.len()));
    }
    let mut beyond = 0u64;
    let mut own = 0;
    for (labels, value) in &series {
        let ty = labels.get("type").map(String::as_str).unwrap_or("?");
        let python = labels.get("python").map(String::as_str).unwrap_or("");
        if python != version && python != full_version {
            errors.push(format!("PID {pid}: python label {python:?}, the fixture runs {full_version}"));
        }
        let want = counts.get(ty).copied();
        let exact = frozen == 0 || ty.starts_with("__main__.");
        own += ty.starts_with("__main__.") as usize;
        match want {
            Some(w) if w as f64 == *value => {}
            Some(w) if !exact && *value > w as f64 => beyond += *value as u64 - w,
            _ => errors.push(format!("PID {pid} ({full_version}): type {ty}: Prometheus has {value}, truth {want:?}")),
        }
    }
    if own < 6 {
        errors.push(format!("PID {pid}: only {own} of the fixture's own types among the top {top}"));
    }
    if beyond > frozen {
        errors.push(format!("PID {pid}: {beyond} objects beyond the truth's counts, {frozen} frozen"));
    }
    let total = (truth["total"].as_u64().unwrap_or(0) + frozen) as f64;
    match prom.scalar(&format!("memspy_heap_gc_tracked_objects{{pid=\"{pid}\"}}")) {
        Ok(Some(v)) if v == total => {}
        r => errors.push(format!("PID {pid}: memspy_heap_gc_tracked_objects {r:?}, truth {total} (frozen included)")),
    }
    let gens = get_u64_array(truth, "generations").unwrap_or_default();
    for (g, want) in gens.iter().enumerate() {
        match prom.scalar(&format!("memspy_gc_objects{{pid=\"{pid}\",generation=\"{g}\"}}")) {
            Ok(Some(v)) if v == *want as f64 => {}
            r => errors.push(format!("PID {pid}: memspy_gc_objects generation {g}: {r:?}, truth {want}")),
        }
    }
    match prom.scalar(&format!("memspy_gc_objects{{pid=\"{pid}\",generation=\"permanent\"}}")) {
        Ok(Some(v)) if v == frozen as f64 => {}
        r => errors.push(format!("PID {pid}: memspy_gc_objects permanent: {r:?}, gc.get_freeze_count() {frozen}")),
    }
    for name in ["memspy_rss_bytes", "memspy_last_pause_seconds", "memspy_last_walk_seconds"] {
        match prom.scalar(&format!("{name}{{pid=\"{pid}\"}}")) {
            Ok(Some(v)) if v > 0.0 => {}
            r => errors.push(format!("PID {pid}: {name} {r:?}, expected a positive value")),
        }
    }
    match prom.query(&format!("memspy_gc_threshold{{pid=\"{pid}\"}}")) {
        Ok(s) if s.len() == 3 => {}
        r => errors.push(format!("PID {pid}: memspy_gc_threshold: {r:?}, expected 3 generations")),
    }
}

#[test]
fn prometheus_scrapes_serve_and_gets_the_fixtures_counts() {
    let Some(prometheus) = find_in_path("prometheus") else {
        return skip_or_fail("no prometheus binary (Debian's prometheus package: scripts/install-services.sh)");
    };
    if spread_interpreters(usize::MAX).is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    let started = Instant::now();
    let dir = TempDir::new("serve-prometheus").expect("temp dir");
    let fixtures = fixtures_per_minor().expect("fixtures");
    // The target that exits during the test: a second fixture on the first interpreter.
    let victim_interp = spread_interpreters(1).remove(0);
    let (victim, _) = start_settled(&victim_interp, FIXTURE, &[]).expect("the fixture that exits");
    let victim_pid = victim.pid;
    let top = 100usize;
    let mut args: Vec<String> = fixtures.iter().map(|(f, _)| f.pid.to_string()).collect();
    args.push(victim_pid.to_string());
    args.extend(["--interval", "1", "--top", &top.to_string(), "--gc-only"].map(String::from));
    let mut serve = Serve::start(&args, dir.path()).expect("memspy serve");
    let prom = Prometheus::start(&prometheus, &serve.addr, dir.path()).expect("prometheus");
    eprintln!("prometheus on {} scrapes memspy serve on {} ({} targets)", prom.addr, serve.addr, fixtures.len() + 1);

    // Two successful scrapes at least.
    let scrapes =
        poll(SETTLE_TIMEOUT, || Ok(prom.scalar("sum_over_time(up{job=\"memspy\"}[5m])")?.filter(|n| *n >= 2.0)));
    let scrapes = scrapes.unwrap_or_else(|e| panic!("two scrapes: {e}; serve: {}", serve.stderr()));
    // Every fixture sampled: its __main__.Rec count is there.
    let rec_query = "memspy_objects{type=\"__main__.Rec\"}";
    let recs = poll(SETTLE_TIMEOUT, || {
        let s = prom.query(rec_query)?;
        Ok((s.len() == fixtures.len() + 1).then_some(s))
    })
    .unwrap_or_else(|e| panic!("{rec_query} for every target: {e}; serve: {}", serve.stderr()));
    let mut errors = Vec::new();
    println!("after {scrapes} scrapes, {rec_query}:");
    println!("  {}", prom.query_json(rec_query).unwrap_or_else(|e| e));
    for (labels, value) in &recs {
        let pid = labels.get("pid").cloned().unwrap_or_default();
        println!("  pid={pid} python={} -> {value}", labels.get("python").map(String::as_str).unwrap_or("?"));
        if let Some((_, truth)) = fixtures.iter().find(|(f, _)| f.pid.to_string() == pid) {
            let want = truth_counts(truth).get("__main__.Rec").copied();
            if want.map(|w| w as f64) != Some(*value) {
                errors.push(format!("{rec_query} pid {pid}: {value}, the fixture has {want:?}"));
            }
        }
    }
    for (f, truth) in &fixtures {
        compare_target(&prom, f.pid, truth, top, &mut errors);
    }
    assert!(errors.is_empty(), "{} mismatches:\n{}", errors.len(), errors.join("\n"));
    let compared = Instant::now();

    // The victim exits: memspy_up 0 for it, the others stay up, serve goes on being scraped.
    drop(victim);
    let up = |pid: u32| prom.scalar(&format!("memspy_up{{pid=\"{pid}\"}}"));
    poll(SETTLE_TIMEOUT, || Ok(up(victim_pid)?.filter(|v| *v == 0.0)))
        .unwrap_or_else(|e| panic!("memspy_up 0 for the exited PID {victim_pid}: {e}; serve: {}", serve.stderr()));
    assert!(serve.running(), "memspy serve ended when a target exited: {}", serve.stderr());
    let errs = prom.scalar(&format!("memspy_sample_errors_total{{pid=\"{victim_pid}\"}}"));
    assert!(matches!(errs, Ok(Some(n)) if n >= 1.0), "sample errors of the exited PID: {errs:?}");
    // Later samples and scrapes still come: a fresh scrape of serve itself, then Prometheus' view.
    let after_exit = serve.metrics().expect("a scrape after the exit");
    assert_eq!(after_exit.status, 200);
    assert!(after_exit.body.contains(&format!("memspy_up{{pid=\"{victim_pid}\",")), "{}", after_exit.body);
    for (f, _) in &fixtures {
        assert_eq!(up(f.pid), Ok(Some(1.0)), "memspy_up of PID {} after another target exited", f.pid);
    }
    assert_eq!(prom.scalar("up{job=\"memspy\"}"), Ok(Some(1.0)), "Prometheus' own up for memspy");
    let status = serve.terminate().expect("serve ends on SIGTERM");
    assert!(status.success(), "serve after SIGTERM: {}; stderr: {}", describe_exit(status), serve.stderr());
    assert!(
        serve.stderr().contains(&format!("PID {victim_pid}:")),
        "serve said nothing of the exit: {}",
        serve.stderr()
    );
    println!(
        "compared {} targets in {:.1} s; the exit seen in {:.1} s more",
        fixtures.len(),
        (compared - started).as_secs_f64(),
        compared.elapsed().as_secs_f64()
    );
}

/// A minimal reader of the exposition text: (name with labels, value) per sample line.
fn samples(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

#[test]
fn serve_a_program_it_starts_then_sigterm() {
    let Some(interp) = one_interpreter() else {
        return skip_or_fail(NO_INTERPRETER);
    };
    let dir = TempDir::new("serve-command").expect("temp dir");
    let truth_path = dir.path().join("truth.json");
    // --top 100: the fixture's own classes are not among the 20 largest types.
    let args: Vec<String> =
        ["--interval", "1", "--top", "100", "--delay", "0", "--", interp.path.to_str().unwrap(), "-I"]
            .iter()
            .map(|s| s.to_string())
            .chain([fixture_script(FIXTURE).display().to_string(), truth_path.display().to_string()])
            .collect();
    let mut serve = Serve::start(&args, dir.path()).expect("memspy serve -- python");
    let truth: Value = poll(Duration::from_secs(60), || {
        Ok(fs::read_to_string(&truth_path).ok().and_then(|t| serde_json::from_str(&t).ok()))
    })
    .unwrap_or_else(|e| panic!("the fixture's truth: {e}; serve: {}", serve.stderr()));
    let program = truth["pid"].as_u64().expect("pid in the truth") as u32;
    let want = truth_counts(&truth)["__main__.Rec"];
    // The default full-heap walk: every __main__.Rec is GC-tracked, so the truth's count is the count.
    let key = format!("memspy_objects{{pid=\"{program}\",python=\"");
    let metrics = poll(Duration::from_secs(60), || {
        let r = serve.metrics()?;
        let rec = samples(&r.body)
            .into_iter()
            .find(|(k, _)| k.starts_with(&key) && k.ends_with(",type=\"__main__.Rec\"}"))
            .map(|(_, v)| v);
        Ok((rec == Some(want.to_string())).then_some(r))
    })
    .unwrap_or_else(|e| panic!("__main__.Rec = {want} on /metrics: {e}; serve: {}", serve.stderr()));
    let ct = metrics.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "Content-Type: {ct}");
    for name in ["memspy_up", "memspy_objects", "memspy_bytes", "memspy_sample_errors_total"] {
        assert!(metrics.body.contains(&format!("# HELP {name} ")), "no HELP for {name}");
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        assert!(metrics.body.contains(&format!("# TYPE {name} {kind}\n")), "no TYPE for {name}");
    }
    assert!(metrics.body.contains(&format!("memspy_up{{pid=\"{program}\",python=\"")), "{}", metrics.body);
    // Prometheus' own linter, when the package is there.
    if let Some(promtool) = find_in_path("promtool") {
        let path = dir.path().join("metrics.txt");
        fs::write(&path, &metrics.body).unwrap();
        let out = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(fs::File::open(&path).unwrap())
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        skip_or_fail("no promtool (Debian's prometheus package): the exposition text was not linted");
    }
    // Other paths: 404; the index links to /metrics.
    assert_eq!(http_get(&serve.addr, "/nothing", HTTP_TIMEOUT).map(|r| r.status), Ok(404));
    assert!(http_get(&serve.addr, "/", HTTP_TIMEOUT).map(|r| r.body).unwrap_or_default().contains("/metrics"));
    let status = serve.terminate().expect("serve ends on SIGTERM");
    assert!(status.success(), "serve after SIGTERM: {}; stderr: {}", describe_exit(status), serve.stderr());
    // The program serve started is stopped with it.
    let gone = poll(Duration::from_secs(10), || Ok((!Path::new(&format!("/proc/{program}")).exists()).then_some(())));
    assert!(gone.is_ok(), "the program serve started (PID {program}) outlived it");
}

#[test]
fn serve_refuses_bad_options_and_a_taken_port() {
    let run = |args: &[&str]| {
        let out = run_memspy(std::iter::once("serve").chain(args.iter().copied())).expect("memspy runs");
        (out.status.and_then(|s| s.code()), out.stderr)
    };
    let me = std::process::id().to_string();
    for (args, says) in [
        (vec![], "give one or more PIDs"),
        (vec![me.as_str(), "--top", "0"], "--top 0: give a number of types from 1 to 100"),
        (vec![me.as_str(), "--top", "101"], "--top 101"),
        (vec![me.as_str(), "--interval", "0"], "--interval 0"),
        (vec![me.as_str(), "--", "python3"], "not both"),
    ] {
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(1), "memspy serve {args:?}: {stderr}");
        assert!(stderr.contains(says), "memspy serve {args:?}: {stderr}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run(&[me.as_str(), "--listen", &addr]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
}
