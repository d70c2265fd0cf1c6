//! `memspy serve PID… --listen 127.0.0.1:9464` (or `-- python app.py`): samples every target in turn on
//! a schedule of its own (`--interval`, the first sample at start) and serves the last samples on
//! `/metrics` in the Prometheus text format. A scrape only renders what was sampled: it never pauses a
//! target. A target that exits or cannot be read is `memspy_up 0`; serve keeps running until Ctrl-C or
//! SIGTERM.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::commands::{sleep_unless_interrupted, Session, Spawned};
use crate::cpython::gc_stats::{self, GcFigures};
use crate::error::{Error, Result};
use crate::memory::RemoteMemory;
use crate::report::http::{Handler, Response, Server};
use crate::report::metrics::{self, LastSample, TargetMetrics};
use crate::walk::SnapshotOptions;

/// The most types `--top` may ask for per target: the series stay few (2 per type and target).
pub const MAX_TOP: usize = 100;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The processes to sample (or none, with `command`).
    pub pids: Vec<i32>,
    /// A program to start and sample (`-- python app.py`), stopped when serve ends.
    pub command: Vec<String>,
    /// With a command: how long to let it run before the first sample.
    pub delay: Duration,
    /// Where to listen, e.g. `127.0.0.1:9464` (port 0: any free port, printed on stderr).
    pub listen: String,
    pub interval: Duration,
    /// Types served per target (by bytes).
    pub top: usize,
    pub snapshot: SnapshotOptions,
}

/// What the HTTP threads read: the last sample of each target, and the scrapes served.
struct Shared {
    targets: Mutex<Vec<TargetMetrics>>,
    scrapes: AtomicU64,
}

/// A target of the sampler loop.
struct Slot {
    pid: i32,
    session: Option<Session>,
    /// The process is gone for good (exited, or never existed): no more samples, `memspy_up 0`.
    gone: bool,
    /// The last error printed for it (the same error is not printed again every interval).
    reported: Option<String>,
}

impl Slot {
    fn new(pid: i32, session: Option<Session>) -> Slot {
        Slot { pid, session, gone: false, reported: None }
    }
}

fn check(opts: &ServeOptions) -> Result<()> {
    if opts.pids.is_empty() == opts.command.is_empty() {
        return Err(Error::Other(if opts.pids.is_empty() {
            "give one or more PIDs (memspy serve PID…) or a command (memspy serve -- python app.py)".into()
        } else {
            "give either PIDs or a command after --, not both".into()
        }));
    }
    if !(1..=MAX_TOP).contains(&opts.top) {
        return Err(Error::Other(format!("--top {}: give a number of types from 1 to {MAX_TOP}", opts.top)));
    }
    let secs = opts.interval.as_secs_f64();
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(Error::Other(format!("--interval {secs}: give a number of seconds above 0")));
    }
    Ok(())
}

pub fn run(opts: &ServeOptions) -> Result<()> {
    check(opts)?;
    crate::interrupt::install_handler();
    // Listen first: a taken port is said before any program is started.
    let listener =
        TcpListener::bind(&opts.listen).map_err(|e| Error::Other(format!("cannot listen on {}: {e}", opts.listen)))?;
    let mut spawned = None;
    let mut slots = Vec::new();
    if opts.command.is_empty() {
        let mut pids = opts.pids.clone();
        pids.sort_unstable();
        pids.dedup();
        slots.extend(pids.into_iter().map(|pid| Slot::new(pid, None)));
    } else {
        let mut s = Spawned::start(&opts.command)?;
        let session = s.wait_for_python(opts.snapshot.timeout)?;
        sleep_unless_interrupted(opts.delay);
        slots.push(Slot::new(s.pid(), Some(session)));
        spawned = Some(s);
    }
    let shared = Arc::new(Shared {
        targets: Mutex::new(slots.iter().map(|s| TargetMetrics { pid: s.pid, ..Default::default() }).collect()),
        scrapes: AtomicU64::new(0),
    });
    let server = Server::start(listener, handler(Arc::clone(&shared)))
        .map_err(|e| Error::Other(format!("cannot serve on {}: {e}", opts.listen)))?;
    let pids: Vec<String> = slots.iter().map(|s| s.pid.to_string()).collect();
    eprintln!(
        "memspy: serving http://{}/metrics: PID{} {}, a sample every {} s",
        server.local_addr(),
        if pids.len() > 1 { "s" } else { "" },
        pids.join(", "),
        opts.interval.as_secs_f64()
    );
    sampler(&mut slots, &shared, opts, spawned.as_mut());
    server.stop();
    Ok(())
}

fn handler(shared: Arc<Shared>) -> Arc<Handler> {
    Arc::new(move |path: &str| match path {
        "/metrics" => {
            let scrapes = shared.scrapes.fetch_add(1, Ordering::SeqCst) + 1;
            let targets = shared.targets.lock().unwrap_or_else(|p| p.into_inner());
            Some(Response::ok(metrics::CONTENT_TYPE, metrics::exposition(&targets, scrapes)))
        }
        "/" => Some(Response::ok(
            "text/html; charset=utf-8",
            "<html><head><title>memspy</title></head><body><p>memspy: <a href=\"/metrics\">/metrics</a></p>\
             </body></html>\n"
                .into(),
        )),
        _ => None,
    })
}

/// Samples every target in turn, at `start + k × interval` (a round that overruns skips the instants
/// it missed), until Ctrl-C or SIGTERM.
fn sampler(slots: &mut [Slot], shared: &Shared, opts: &ServeOptions, mut spawned: Option<&mut Spawned>) {
    let start = Instant::now();
    'rounds: loop {
        for (i, slot) in slots.iter_mut().enumerate() {
            if crate::interrupt::requested() {
                break 'rounds;
            }
            if slot.gone {
                continue;
            }
            let result = sample(slot, opts);
            if matches!(result, Err(Error::Interrupted)) || crate::interrupt::requested() {
                break 'rounds;
            }
            say(slot, &result);
            let mut targets = shared.targets.lock().unwrap_or_else(|p| p.into_inner());
            let t = &mut targets[i];
            t.samples += 1;
            if let Some(s) = &slot.session {
                t.python = s.interp.version.to_string();
            }
            match result {
                Ok(last) => {
                    t.up = true;
                    t.last = Some(last);
                }
                Err(_) => {
                    t.up = false;
                    t.errors += 1;
                }
            }
        }
        // A program memspy started and that ended is reaped (it stays `memspy_up 0`).
        if let Some(s) = spawned.as_deref_mut() {
            let _ = s.child.try_wait();
        }
        let interval = opts.interval.as_secs_f64();
        let rounds = (start.elapsed().as_secs_f64() / interval).floor() + 1.0;
        let due = start + Duration::from_secs_f64(rounds * interval);
        sleep_unless_interrupted(due.saturating_duration_since(Instant::now()));
        if crate::interrupt::requested() {
            break;
        }
    }
}

/// One sample of a target: attaches first if it is not yet, then walks it and reads its GC counters.
fn sample(slot: &mut Slot, opts: &ServeOptions) -> Result<LastSample> {
    if slot.session.is_none() {
        match Session::attach(slot.pid) {
            Ok(s) => slot.session = Some(s),
            Err(e) => {
                slot.gone = matches!(e, Error::NoSuchProcess(_) | Error::TargetExited { .. } | Error::Zombie { .. });
                return Err(e);
            }
        }
    }
    let session = slot.session.as_ref().expect("attached above");
    let walked = if session.target.alive() {
        session.report(&opts.snapshot).map_err(|e| session.target.explain(e))
    } else {
        Err(Error::TargetExited { pid: slot.pid })
    };
    let mut report = match walked {
        Ok(r) => r,
        Err(e) => {
            slot.gone = matches!(e, Error::TargetExited { .. });
            return Err(e);
        }
    };
    let types_seen = report.types.len();
    report.types.truncate(opts.top);
    let gc = match gc_counters(session) {
        Ok(g) => Some(g),
        Err(e) => {
            log::info!("PID {}: the gc module's counters could not be read: {e}", slot.pid);
            None
        }
    };
    Ok(LastSample { report, types_seen, gc })
}

/// The main interpreter's `gc` counters (thresholds, counts, collections), read without pausing: a few
/// fixed-size fields.
fn gc_counters(session: &Session) -> Result<GcFigures> {
    let mem = RemoteMemory::new(session.target.pid);
    let interps = crate::pause::read_interps(&mem, &session.interp)?;
    let main = interps.last().ok_or_else(|| Error::Corrupt("the runtime has no interpreter".into()))?;
    gc_stats::read_counters(&mem, &session.interp.layout, &main.gc)
}

/// Tells stderr what changed for a target: a new error, the target gone, or sampling again after errors.
fn say(slot: &mut Slot, result: &Result<LastSample>) {
    match result {
        Ok(_) => {
            if slot.reported.take().is_some() {
                eprintln!("memspy: PID {}: sampled again", slot.pid);
            }
        }
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            if slot.reported.as_deref() != Some(msg.as_str()) {
                let what = if slot.gone { "memspy_up 0 from now on" } else { "memspy_up 0; tried again next interval" };
                eprintln!("memspy: PID {}: {msg} ({what})", slot.pid);
                slot.reported = Some(msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ServeOptions {
        ServeOptions {
            pids: vec![1],
            command: Vec::new(),
            delay: Duration::ZERO,
            listen: "127.0.0.1:0".into(),
            interval: Duration::from_secs(60),
            top: 20,
            snapshot: SnapshotOptions::default(),
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(check(&opts()).is_ok());
        let with = |f: fn(&mut ServeOptions)| {
            let mut o = opts();
            f(&mut o);
            check(&o).unwrap_err().to_string()
        };
        assert!(with(|o| o.pids.clear()).contains("give one or more PIDs"));
        assert!(with(|o| o.command = vec!["python3".into()]).contains("not both"));
        assert!(with(|o| o.top = 0).contains("--top 0"));
        assert!(with(|o| o.top = MAX_TOP + 1).contains(&format!("from 1 to {MAX_TOP}")));
        assert!(with(|o| o.interval = Duration::ZERO).contains("--interval"));
    }

    #[test]
    fn a_pid_that_does_not_exist_is_down_for_good() {
        // PIDs above the kernel's pid_max (at most 2^22) never exist.
        let mut slot = Slot::new(1 << 30, None);
        let r = sample(&mut slot, &opts());
        assert!(matches!(r, Err(Error::NoSuchProcess(_))), "{:?}", r.err());
        assert!(slot.gone);
    }
}
