//! Watching a leak: `memspy growth`, `snapshot` + `diff`, and the full-screen `top`, against
//! fixtures/leaky.py, which leaks exactly PER_TICK `Leaked` objects per tick and counts its ticks in the
//! heap (one `Tick` object per tick). Ticks run while the GC says a collection is running, which memspy
//! waits out, so every snapshot sees whole ticks and the checks below are exact.
//!
//! Env: MEMSPY_TEST_PYTHONS=path:path limits the interpreters (growth runs on every one found; the
//! snapshot/diff and terminal tests on one).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const FIXTURE: &str = "leaky.py";
const LEAKED: &str = "__main__.Leaked";
const TICK: &str = "__main__.Tick";
const CHURN: &str = "__main__.Churn";

struct Leaky {
    fixture: Fixture,
    per_tick: u64,
    churn_even: u64,
    churn_odd: u64,
}

impl Leaky {
    fn start(interp: &Interpreter) -> Result<Leaky, String> {
        let mut fixture = Fixture::spawn(interp, FIXTURE, &[])?;
        let state = fixture.wait_for_truth(FIXTURE_TIMEOUT)?;
        Ok(Leaky {
            per_tick: get_u64(&state, "per_tick")?,
            churn_even: get_u64(&state, "churn_even")?,
            churn_odd: get_u64(&state, "churn_odd")?,
            fixture,
        })
    }

    fn pid(&self) -> String {
        self.fixture.pid.to_string()
    }

    /// The fixture's own tick counter, from its state file.
    fn ticks(&self) -> Result<u64, String> {
        let text = fs::read_to_string(&self.fixture.truth_path).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        get_u64(&v, "ticks")
    }

    fn churn_after(&self, ticks: u64) -> u64 {
        if ticks.is_multiple_of(2) {
            self.churn_even
        } else {
            self.churn_odd
        }
    }

    /// Alive and not left stopped by memspy.
    fn check_running(&mut self, errors: &mut Vec<String>) {
        if let Some(s) = self.fixture.exited() {
            errors.push(format!(
                "fixture died: {}; stderr: {}",
                describe_exit(s),
                tail(&self.fixture.stderr_text(), 500)
            ));
        } else {
            thread::sleep(Duration::from_millis(20));
            if matches!(self.fixture.proc_state(), Some('T') | Some('t')) {
                errors.push("memspy left the fixture stopped".into());
            }
        }
    }
}

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
    let interval = if plot.is_some() { interval.max(1.0) } else { interval };
    let mut args = vec![
        "growth".to_string(),
        leaky.pid(),
        "--interval".into(),
        interval.to_string(),
        "--samples".into(),
        samples.to_string(),
        "--json".into(),
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
    let final_ticks = leaky.ticks().unwrap_or(0);
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
    assert!(!d.interpreters.is_empty(), "no interpreter found");
    let dir = artifact_dir("growth");
    let mut failures = Vec::new();
    eprintln!("\n== growth ==");
    for (i, interp) in d.interpreters.iter().enumerate() {
        let plot = (i == 0).then(|| dir.join("growth.svg"));
        let errors = check_growth(interp, 4, 0.4, plot.as_deref());
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
    let interp = &discover_interpreters().interpreters[0];
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
// The full-screen view, driven in a pseudo-terminal

const ENTER_ALT: &str = "\x1b[?1049h";
const LEAVE_ALT: &str = "\x1b[?1049l";
const SHOW_CURSOR: &str = "\x1b[?25h";
/// The view draws each frame as one synchronized update: a frame is complete at its end.
const FRAME_END: &[u8] = b"\x1b[?2026l";

/// What memspy wrote to the terminal, and the screen as a terminal shows it after each complete frame.
struct Output {
    raw: Vec<u8>,
    /// `raw[..fed]` went through the emulator (up to the end of the last complete frame).
    fed: usize,
    emulator: vt100::Parser,
    /// Each complete frame that differed from the one before, as screen lines (trailing blanks removed).
    frames: Vec<Vec<String>>,
}

impl Output {
    fn new(rows: u16, cols: u16) -> Output {
        let size = |n: u16| std::num::NonZeroU16::new(n).unwrap();
        Output { raw: Vec::new(), fed: 0, emulator: vt100::Parser::new(size(rows), size(cols), 0), frames: Vec::new() }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        while let Some(i) = self.raw[self.fed..].windows(FRAME_END.len()).position(|w| w == FRAME_END) {
            let end = self.fed + i + FRAME_END.len();
            self.emulator.process(&self.raw[self.fed..end]);
            self.fed = end;
            let screen = self.emulator.screen();
            let lines: Vec<String> = screen.rows(0, screen.size().1.get()).map(|l| l.trim_end().to_string()).collect();
            if self.frames.last() != Some(&lines) {
                self.frames.push(lines);
            }
        }
    }
}

struct Pty {
    child: std::process::Child,
    master: std::fs::File,
    slave: OwnedFd,
    output: Arc<Mutex<Output>>,
}

impl Pty {
    fn spawn(args: &[&str]) -> Pty {
        Pty::spawn_env(args, &[])
    }

    fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Pty {
        let (rows, cols) = (40, 140);
        let ws = nix::pty::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        let mut cmd = Command::new(memspy_bin());
        cmd.args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(io(&pty.slave))
            .stdout(io(&pty.slave))
            .stderr(io(&pty.slave));
        // As in a terminal window: the pty is memspy's controlling terminal (its size, SIGWINCH on resize).
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn memspy");
        let master = std::fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(Output::new(rows, cols)));
        let (mut reader, sink) = (master.try_clone().expect("dup"), output.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push(&buf[..n]);
            }
        });
        Pty { child, master, slave: pty.slave, output }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap().raw).into_owned()
    }

    /// The screen after the last complete frame, one string per line.
    fn last_frame(&self) -> Vec<String> {
        self.output.lock().unwrap().frames.last().cloned().unwrap_or_default()
    }

    /// Whether any frame so far satisfied `ok`.
    fn any_frame(&self, ok: impl Fn(&[String]) -> bool) -> bool {
        self.output.lock().unwrap().frames.iter().any(|f| ok(f))
    }

    /// Resizes the window, as a terminal does (the kernel signals memspy).
    fn resize(&self, rows: u16, cols: u16) {
        let mut out = self.output.lock().unwrap();
        let size = |n: u16| std::num::NonZeroU16::new(n).unwrap();
        out.emulator.set_size(size(rows), size(cols));
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("write keys");
    }

    /// Waits (bounded) for a frame satisfying `ok`.
    fn wait_frame(&self, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        let start = Instant::now();
        loop {
            let f = self.last_frame();
            if ok(&f) {
                return f;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!(
                    "no frame with {what}; last frame:\n{}\n(raw tail: {:?})",
                    f.join("\n"),
                    tail(&self.text(), 600)
                );
            }
            thread::sleep(Duration::from_millis(30));
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                thread::sleep(Duration::from_millis(100)); // let the reader drain
                return s;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                panic!("memspy did not exit; output tail: {:?}", tail(&self.text(), 600));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The terminal is back: the alternate screen left after it was entered, the cursor shown, and
    /// line editing and echo on again.
    fn assert_restored(&self) {
        let t = self.text();
        let entered = t.find(ENTER_ALT).expect("alternate screen never entered");
        let left = t.rfind(LEAVE_ALT).expect("alternate screen not left");
        assert!(left > entered, "left before entering");
        assert!(t[entered..].contains(SHOW_CURSOR), "cursor not shown again");
        let attrs = nix::sys::termios::tcgetattr(self.slave.as_fd()).expect("tcgetattr");
        use nix::sys::termios::LocalFlags as L;
        assert!(
            attrs.local_flags.contains(L::ICANON | L::ECHO | L::ISIG),
            "terminal modes not restored: {:?}",
            attrs.local_flags
        );
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The rows of a frame: (count, name).
fn rows(frame: &[String]) -> Vec<(u64, String)> {
    frame
        .iter()
        .skip(4)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let count = w.first()?.parse().ok()?;
            Some((count, w.last()?.to_string()))
        })
        .collect()
}

#[test]
fn live_top_in_a_terminal() {
    let interp = &discover_interpreters().interpreters[0];
    let mut leaky = Leaky::start(interp).expect("fixture");
    let pid = leaky.pid();
    let mut t = Pty::spawn(&["top", &pid, "--rate", "0.3"]);
    let f = t.wait_frame("the leak row after a refresh", |f| {
        f.first().is_some_and(|l| l.contains(&format!("PID {pid}")) && l.contains("RSS"))
            && f.iter().any(|l| l.contains("refresh #3"))
            && rows(f).iter().any(|r| r.1 == LEAKED)
    });
    assert!(f[1].contains("last pause") && f[2].contains("sort: bytes"), "{}", f.join("\n"));
    assert!(f[3].contains("ΔCOUNT") && f[3].contains("ΔC LAST"), "{}", f.join("\n"));
    assert!(f.last().unwrap().contains("q quit"));

    t.send("c");
    let f = t.wait_frame("sort: count", |f| f.get(2).is_some_and(|l| l.contains("sort: count")));
    let counts: Vec<u64> = rows(&f).iter().map(|r| r.0).collect();
    assert!(counts.len() > 3 && counts.windows(2).all(|w| w[0] >= w[1]), "not by count: {}", f.join("\n"));

    t.send("g");
    t.wait_frame("sort: growth, the leak first", |f| {
        f.get(2).is_some_and(|l| l.contains("sort: growth")) && rows(f).first().is_some_and(|r| r.1 == LEAKED)
    });

    t.send("/churn\r");
    let f =
        t.wait_frame("filter: churn", |f| f.get(2).is_some_and(|l| l.contains("filter: churn") && !l.contains('_')));
    let r = rows(&f);
    assert!(!r.is_empty() && r.iter().all(|r| r.1.to_lowercase().contains("churn")), "filter: {}", f.join("\n"));

    t.send("p");
    t.wait_frame("[PAUSED]", |f| f.get(2).is_some_and(|l| l.contains("[PAUSED]")));

    // A resize redraws the view at the new size: narrower drops the last-refresh columns, the footer
    // moves to the new last line; and back.
    for (height, width, last_columns) in [(24u16, 90u16, false), (40, 140, true)] {
        t.resize(height, width);
        let f = t.wait_frame(&format!("the view redrawn at {width}x{height}"), |f| {
            f.len() == height as usize
                && f.last().is_some_and(|l| l.contains("q quit"))
                && f.get(3).is_some_and(|l| l.contains("ΔCOUNT") && l.contains("ΔC LAST") == last_columns)
        });
        assert!(f[2].contains("filter: churn") && f[2].contains("[PAUSED]"), "{}", f.join("\n"));
        assert!(rows(&f).iter().all(|r| r.1.to_lowercase().contains("churn")), "{}", f.join("\n"));
    }

    t.send("q");
    let status = t.wait_exit();
    assert!(status.success(), "exit {status:?}");
    t.assert_restored();
    let mut errors = Vec::new();
    leaky.check_running(&mut errors);
    assert!(errors.is_empty(), "{errors:?}");

    // Ctrl-C quits cleanly too.
    let mut t = Pty::spawn(&["top", &pid, "--rate", "0.3"]);
    t.wait_frame("a frame", |f| rows(f).iter().any(|r| r.1 == LEAKED));
    t.send("\x03");
    assert!(t.wait_exit().success());
    t.assert_restored();

    // A bug under the view (a forced panic in the middle of the third walk, with the target stopped):
    // the terminal is restored, one line says what happened, and the target runs on.
    let knobs = [("MEMSPY_TEST_PANIC_IN_WALK", "50"), ("MEMSPY_TEST_PANIC_FROM_SNAPSHOT", "3")];
    let mut t = Pty::spawn_env(&["top", &pid, "--rate", "0.2"], &knobs);
    let status = t.wait_exit();
    assert!(!status.success(), "a panic must fail: {status:?}");
    t.assert_restored();
    let all = t.text();
    let after = &all[all.rfind(LEAVE_ALT).unwrap()..];
    assert!(
        after.contains("memspy: internal error") && after.contains("MEMSPY_TEST_PANIC_IN_WALK"),
        "after leaving: {after:?}"
    );
    assert!(!after.contains("RUST_BACKTRACE"), "{after:?}");
    assert!(
        t.any_frame(|f| f.iter().any(|l| l.contains("refresh #2"))),
        "the view ran before the panic: {:?}",
        tail(&all, 600)
    );
    let mut errors = Vec::new();
    leaky.check_running(&mut errors);
    assert!(errors.is_empty(), "after a panic: {errors:?}");

    // The target exiting under the view: the terminal is restored and memspy says why.
    let mut t = Pty::spawn(&["top", &pid, "--rate", "0.2"]);
    t.wait_frame("a frame", |f| rows(f).iter().any(|r| r.1 == LEAKED));
    drop(leaky);
    t.wait_exit();
    t.assert_restored();
    let after = t.text();
    let after = &after[after.rfind(LEAVE_ALT).unwrap()..];
    assert!(after.contains(&format!("PID {pid}")) && after.contains("memspy"), "no message after leaving: {after:?}");
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
    let out =
        run_memspy(["growth", "--interval", "0.4", "--samples", "3", "--json", "--delay", "0.3", "--", &py, &app])
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
