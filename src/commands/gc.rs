//! `memspy gc PID [--json]`: the cyclic GC's state as the target's `gc` module would report it.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::analysis::histogram::PythonInfo;
use crate::commands::Session;
use crate::cpython::gc_stats::{self, GcFigures};
use crate::error::Result;
use crate::memory::readers::ThreadReaders;
use crate::pause::{self, ReadOptions, Source, View, Work};

/// How many times to let a running collection finish and try again.
const COLLECTION_RETRIES: u32 = 50;

#[derive(Clone, Debug)]
pub struct GcOptions {
    /// A PID, or a dump file (which holds the figures read when it was written).
    pub target: Option<String>,
    /// A core file instead.
    pub core: Option<crate::commands::CoreSpec>,
    pub json: bool,
    pub timeout: Duration,
}

/// The `memspy gc --json` schema (fields are only ever added).
#[derive(Clone, Debug, Serialize)]
pub struct GcReport {
    pub pid: i32,
    /// The dump file the figures were read from (absent for a live target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub python: PythonInfo,
    /// Interpreters in the process; the figures are the main interpreter's.
    pub interpreters: usize,
    #[serde(flatten)]
    pub gc: GcFigures,
    pub pause_ms: f64,
}

/// The main interpreter's GC figures and the number of interpreters, read in one pause.
struct GcRead<'a> {
    layout: &'a python_bindings::Layout,
}

impl Work for GcRead<'_> {
    type Output = (GcFigures, usize);
    fn what(&self) -> &'static str {
        "reading the GC state"
    }
    fn run<M: ThreadReaders>(&mut self, view: &View<'_, M>) -> Result<(GcFigures, usize)> {
        let main = view.main()?;
        let l = self.layout;
        let f = if l.mimalloc.is_some() {
            // Free-threaded: no GC lists; the tracked objects are counted where the collector finds them.
            let mut f = gc_stats::read_counters(view.mem, l, &main.gc)?;
            let (young, frozen) = crate::walk::ftheaps::count_tracked(view.mem, l, std::slice::from_ref(main))?;
            f.generations = [young, 0, 0];
            f.permanent = frozen;
            f.absent = gc_stats::FREE_THREADED_ABSENT.iter().map(|s| s.to_string()).collect();
            f
        } else {
            gc_stats::read(view.mem, l, &main.gc, true)?
        };
        Ok((f, view.interps.len()))
    }
}

/// Reads the main interpreter's GC figures with the target paused (waiting out a running collection).
pub fn read(session: &Session, timeout: Duration) -> Result<(GcFigures, usize, Duration)> {
    let opts = ReadOptions {
        nonblocking: false,
        timeout,
        max_pause: timeout,
        collection_retries: COLLECTION_RETRIES,
        source: Source::Cached { bytes: 64 << 20 },
    };
    let o = pause::read(&session.target, &session.interp, &opts, &mut GcRead { layout: &session.interp.layout })?;
    Ok((o.value.0, o.value.1, o.pause))
}

/// The main interpreter's GC figures and the number of interpreters, read from a copy a walk kept
/// (`dump`: the instant of its graph, without stopping the target again).
pub fn read_kept(session: &Session, copy: &crate::walk::Copy) -> Result<(GcFigures, usize)> {
    pause::read_kept(&session.interp, copy, 64 << 20, &mut GcRead { layout: &session.interp.layout })
}

pub fn report(session: &Session, timeout: Duration) -> Result<GcReport> {
    let (f, interpreters, paused) = read(session, timeout)?;
    Ok(GcReport {
        pid: session.target.pid,
        file: session.file(),
        python: session.python_info(),
        interpreters,
        gc: f,
        pause_ms: paused.as_secs_f64() * 1000.0,
    })
}

pub fn text(r: &GcReport) -> String {
    let g = &r.gc;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}PID {}  Python {}{}  GC {}{}{}",
        r.file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(),
        r.pid,
        r.python.version,
        if r.python.debug { " (debug)" } else { "" },
        if g.enabled { "enabled" } else { "DISABLED" },
        if g.collecting { ", collecting now" } else { "" },
        if g.debug_flags != 0 { format!(", debug flags {:#x}", g.debug_flags) } else { String::new() },
    );
    let _ = writeln!(
        s,
        "{:<12} {:>10} {:>10} {:>12} {:>12} {:>12} {:>14}",
        "GENERATION", "THRESHOLD", "COUNT", "OBJECTS", "COLLECTIONS", "COLLECTED", "UNCOLLECTABLE"
    );
    for i in 0..3 {
        let st = g.stats.get(i).copied().unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<12} {:>10} {:>10} {:>12} {:>12} {:>12} {:>14}",
            i, g.thresholds[i], g.counts[i], g.generations[i], st.collections, st.collected, st.uncollectable
        );
    }
    let _ = writeln!(s, "{:<12} {:>10} {:>10} {:>12}", "permanent", "", "", g.permanent);
    let _ =
        writeln!(s, "gc.garbage: {} objects   gc.callbacks: {}   paused {:.1} ms", g.garbage, g.callbacks, r.pause_ms);
    if r.interpreters > 1 {
        let _ = writeln!(s, "({} interpreters; figures of the main one)", r.interpreters);
    }
    for a in &g.absent {
        let _ = writeln!(s, "not on this build: {a}");
    }
    s
}

pub fn run(opts: &GcOptions) -> Result<()> {
    let r = match (&opts.target, &opts.core) {
        (None, Some(core)) => report(&Session::open_core(core)?, opts.timeout)?,
        (Some(target), None) => match target.parse::<i32>() {
            Ok(pid) => report(&Session::attach(pid)?, opts.timeout)?,
            Err(_) => {
                let d = crate::store::read(std::path::Path::new(target), false)?;
                let (gc, interpreters) = d
                    .meta
                    .gc
                    .ok_or_else(|| crate::error::Error::Other(format!("{target}: the dump holds no GC figures")))?;
                GcReport {
                    pid: d.header.pid,
                    file: Some(target.clone()),
                    python: d.header.python,
                    interpreters,
                    gc,
                    pause_ms: 0.0,
                }
            }
        },
        _ => return Err(crate::error::Error::Other("give a PID, a dump file or --core FILE".into())),
    };
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&r).expect("serializes"));
    } else {
        print!("{}", text(&r));
    }
    Ok(())
}
