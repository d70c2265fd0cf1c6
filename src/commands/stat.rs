//! `memspy stat PID [--json]`: where the memory went. The kernel's view (RSS, PSS, USS, anonymous vs
//! file-backed), pymalloc's arenas, pools and size classes, the bytes of (GC-tracked) Python objects,
//! and the limits that apply (cgroup memory, RLIMIT_AS, RLIMIT_DATA) with the headroom left.

use std::fmt::Write as _;

use serde::Serialize;

use crate::analysis::histogram::PythonInfo;
use crate::commands::Session;
use crate::cpython::mimalloc::{self, MimallocUsage};
use crate::cpython::pymalloc::{Arenas, Pymalloc, PymallocStats};
use crate::cpython::types::TypeInfo;
use crate::discovery::pymalloc;
use crate::error::Result;
use crate::memory::readers::ThreadReaders;
use crate::pause::{self, ReadOptions, Source, View, Work};
use crate::process::usage::{self, CgroupMemory, Limits, Rollup};
use crate::report::human_bytes;
use crate::walk::{self, ObjectRecord, Sink, SnapshotOptions};
use python_bindings::Layout;

#[derive(Clone, Debug)]
pub struct StatOptions {
    /// A PID, or a dump file (which holds what was read of the process when it was written).
    pub target: Option<String>,
    /// A core file instead.
    pub core: Option<crate::commands::CoreSpec>,
    pub json: bool,
    pub snapshot: SnapshotOptions,
}

/// pymalloc in the report: the figures, or why there are none.
#[derive(Clone, Debug, Serialize)]
pub struct PymallocReport {
    /// "ok", "not_in_use" or "unreachable".
    pub status: String,
    /// How the state was found, or why not.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<PymallocStats>,
}

/// Bytes of the Python objects memspy walked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ObjectBytes {
    /// "full-heap" (every object memspy reaches) or "gc-tracked" (`--gc-only`: containers only).
    pub coverage: String,
    pub objects: u64,
    pub bytes: u64,
}

/// RSS split by who holds it (bytes; see README).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Breakdown {
    pub python_objects: u64,
    /// Of those, the bytes of objects whose blocks pymalloc holds (when its arenas were readable).
    pub pymalloc_objects: Option<u64>,
    /// pymalloc's bytes in blocks in use beyond those objects, when more than a few percent of them.
    pub pymalloc_unreached: Option<u64>,
    /// Held by pymalloc but not in allocated blocks (free blocks, unused pools, headers, alignment).
    pub pymalloc_free: Option<u64>,
    pub file_backed: u64,
    /// The rest: C extensions, glibc malloc, interpreter structures, untracked objects.
    pub native_remainder: u64,
    /// Share of RSS outside Python objects (0..1).
    pub outside_python_objects: f64,
}

/// The `memspy stat --json` schema (fields are only ever added).
#[derive(Clone, Debug, Serialize)]
pub struct StatReport {
    pub pid: i32,
    pub python: PythonInfo,
    pub summary: String,
    pub memory: Option<Rollup>,
    pub pymalloc: PymallocReport,
    /// Free-threaded builds: mimalloc's pages and blocks, which hold the objects instead of pymalloc.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mimalloc: Option<MimallocUsage>,
    pub python_objects: ObjectBytes,
    pub breakdown: Breakdown,
    pub cgroup: Option<CgroupMemory>,
    pub limits: Option<Limits>,
}

#[derive(Default)]
struct Bytes {
    objects: u64,
    bytes: u64,
    /// pymalloc's arenas, and the bytes of the objects found in them.
    arenas: Option<Arenas>,
    layout: Option<Layout>,
    in_pymalloc: u64,
}

/// pymalloc's blocks in use beyond the objects found there are worth a line above this share.
const UNREACHED_PERCENT: u64 = 5;

impl Sink for Bytes {
    fn reset(&mut self) {
        (self.objects, self.bytes, self.in_pymalloc) = (0, 0, 0);
    }
    fn object(&mut self, rec: &ObjectRecord, ty: &TypeInfo) {
        self.objects += 1;
        self.bytes += rec.size;
        if let (Some(a), Some(l)) = (&self.arenas, &self.layout) {
            if a.contains(rec.addr.saturating_sub(l.preheader_size(ty.flags)), l.obmalloc.arena_size) {
                self.in_pymalloc += rec.size;
            }
        }
    }
    fn untracked(&mut self, t: &walk::TypeTotals, _ty: &TypeInfo) {
        self.objects += t.count;
        self.bytes += t.bytes;
    }
    fn tracked(&mut self, t: &walk::TypeTotals, _ty: &TypeInfo, _list: usize) {
        self.objects += t.count;
        self.bytes += t.bytes;
    }
}

pub fn report(session: &Session, opts: &SnapshotOptions) -> Result<StatReport> {
    let pid = session.target.pid;
    // procfs figures: a live process's only (a core records none of them).
    let live = !session.target.is_core();
    let memory = live.then(|| usage::rollup(pid).map_err(|e| log::warn!("smaps_rollup: {e}")).ok()).flatten();
    let cgroup = live.then(|| usage::cgroup_memory(pid)).flatten();
    let limits = live.then(|| usage::limits(pid).map_err(|e| log::warn!("limits: {e}")).ok()).flatten();
    // Free-threaded builds: mimalloc's pages and blocks, in their own pause (pymalloc is not used).
    let mimalloc = if session.interp.layout.mimalloc.is_some() {
        struct MimallocRead<'a>(&'a Session);
        impl Work for MimallocRead<'_> {
            type Output = MimallocUsage;
            fn what(&self) -> &'static str {
                "reading the mimalloc heaps"
            }
            fn run<M: ThreadReaders>(&mut self, view: &View<'_, M>) -> Result<MimallocUsage> {
                let interps: Vec<u64> = view.interps.iter().map(|i| i.addr).collect();
                mimalloc::usage(view.mem, &self.0.interp.layout, &interps)
            }
        }
        let read = ReadOptions { source: Source::Cached { bytes: 64 << 20 }, ..opts.read_options() };
        Some(pause::read(&session.target, &session.interp, &read, &mut MimallocRead(session))?.value)
    } else {
        None
    };
    // pymalloc first, in its own short pause; then the object walk (which pauses by itself).
    let pymalloc = if mimalloc.is_some() {
        let detail = "free-threaded build: objects and buffers are allocated by mimalloc (see mimalloc)".to_string();
        (PymallocReport { status: "not_in_use".into(), detail, stats: None }, None)
    } else {
        struct PymallocRead<'a>(&'a Session);
        impl Work for PymallocRead<'_> {
            type Output = (Pymalloc, Option<Arenas>);
            fn what(&self) -> &'static str {
                "reading pymalloc's state"
            }
            fn run<M: ThreadReaders>(&mut self, view: &View<'_, M>) -> Result<(Pymalloc, Option<Arenas>)> {
                let (target, interp) = (&self.0.target, &self.0.interp);
                let p = pymalloc::pymalloc(target, view.mem, interp, view.main()?.addr)?;
                let arenas = pymalloc::located(target, interp)
                    .and_then(|at| Arenas::read(view.mem, &interp.layout, &at).ok().flatten());
                Ok((p, arenas))
            }
        }
        let read = ReadOptions { source: Source::Cached { bytes: 16 << 20 }, ..opts.read_options() };
        let (p, arenas) = pause::read(&session.target, &session.interp, &read, &mut PymallocRead(session))?.value;
        let report = match p {
            Pymalloc::Stats { stats, how } => PymallocReport { status: "ok".into(), detail: how, stats: Some(stats) },
            Pymalloc::NotInUse(d) => PymallocReport { status: "not_in_use".into(), detail: d, stats: None },
            Pymalloc::Unreachable(d) => PymallocReport { status: "unreachable".into(), detail: d, stats: None },
        };
        (report, arenas)
    };
    let (pymalloc, arenas) = pymalloc;
    let mut sink = Bytes { arenas, layout: Some(session.interp.layout.clone()), ..Default::default() };
    // Each object's address tells whether pymalloc holds it: the walk reports them one by one.
    let per_object = SnapshotOptions { per_object: sink.arenas.is_some(), ..opts.clone() };
    walk::snapshot(&session.target, &session.interp, &per_object, &mut sink)?;
    let coverage = if opts.full { "full-heap" } else { "gc-tracked" };
    let python_objects = ObjectBytes { coverage: coverage.into(), objects: sink.objects, bytes: sink.bytes };
    let rss = memory.map(|m| m.rss).or_else(|| session.target.rss()).unwrap_or(0);
    let file_backed = memory.map(|m| m.file_backed).unwrap_or(0);
    let pymalloc_free = pymalloc.stats.as_ref().map(|s| s.arena_bytes.saturating_sub(s.bytes_in_use));
    // pymalloc's blocks in use that hold no object memspy reached: objects only C code holds, or small
    // buffers of C extensions. Said before anything is put down to native memory.
    let unreached = pymalloc
        .stats
        .as_ref()
        .filter(|_| sink.arenas.is_some())
        .map(|s| s.bytes_in_use.saturating_sub(sink.in_pymalloc))
        .filter(|&u| pymalloc.stats.as_ref().is_some_and(|s| u * 100 > s.bytes_in_use * UNREACHED_PERCENT));
    let native_remainder = rss
        .saturating_sub(file_backed)
        .saturating_sub(python_objects.bytes)
        .saturating_sub(pymalloc_free.unwrap_or(0))
        .saturating_sub(unreached.unwrap_or(0));
    let outside = if rss > 0 { 1.0 - (python_objects.bytes.min(rss) as f64 / rss as f64) } else { 0.0 };
    let breakdown = Breakdown {
        python_objects: python_objects.bytes,
        pymalloc_objects: sink.arenas.is_some().then_some(sink.in_pymalloc),
        pymalloc_unreached: unreached,
        pymalloc_free,
        file_backed,
        native_remainder,
        outside_python_objects: outside,
    };
    let summary = if rss == 0 && !live {
        "a core file records no RSS: the objects and the allocators' figures are the core's".into()
    } else {
        summary_line(rss, &breakdown, &pymalloc, &python_objects.coverage)
    };
    Ok(StatReport {
        pid,
        python: session.python_info(),
        summary,
        memory,
        pymalloc,
        mimalloc,
        python_objects,
        breakdown,
        cgroup,
        limits,
    })
}

fn summary_line(rss: u64, b: &Breakdown, p: &PymallocReport, coverage: &str) -> String {
    if rss == 0 {
        return "RSS unknown (smaps_rollup and statm unreadable)".into();
    }
    let mut parts = Vec::new();
    if let Some(u) = b.pymalloc_unreached {
        parts.push(format!(
            "{} in pymalloc blocks in use that hold no object memspy reached (objects only C code holds, or a C \
             extension's small buffers)",
            human_bytes(u)
        ));
    }
    if let Some(f) = b.pymalloc_free {
        parts.push(format!("{} free inside pymalloc", human_bytes(f)));
    }
    parts.push(format!("{} file-backed (code, libraries)", human_bytes(b.file_backed)));
    let (objects, other) = if coverage == "gc-tracked" {
        ("GC-tracked Python objects", "native/other (C extensions, glibc, untracked str/int/bytes)")
    } else {
        ("Python objects", "native/other (C extensions, glibc, interpreter)")
    };
    parts.push(format!("{} {other}", human_bytes(b.native_remainder)));
    let mut s = format!(
        "{:.0}% of RSS ({}) is outside {objects}: {}",
        b.outside_python_objects * 100.0,
        human_bytes(rss),
        parts.join(", ")
    );
    if p.stats.is_none() {
        let _ = write!(s, " (pymalloc {})", p.status.replace('_', " "));
    }
    s
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map(human_bytes).unwrap_or_else(|| "unlimited".into())
}

pub fn text(r: &StatReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "PID {}  Python {}{}", r.pid, r.python.version, if r.python.debug { " (debug)" } else { "" });
    let _ = writeln!(s, "{}", r.summary);
    let _ = writeln!(s);
    if let Some(m) = &r.memory {
        let _ = writeln!(
            s,
            "memory      RSS {}  PSS {}  USS {}  anonymous {}  file-backed {}  swap {}",
            human_bytes(m.rss),
            human_bytes(m.pss),
            human_bytes(m.uss),
            human_bytes(m.anonymous),
            human_bytes(m.file_backed),
            human_bytes(m.swap)
        );
    }
    let _ = writeln!(
        s,
        "objects     {} in {} {} Python objects (sys.getsizeof)",
        human_bytes(r.python_objects.bytes),
        r.python_objects.objects,
        if r.python_objects.coverage == "gc-tracked" { "GC-tracked" } else { "live" }
    );
    match &r.pymalloc.stats {
        Some(p) => {
            let _ = writeln!(
                s,
                "pymalloc    arenas {} in use ({} each, {} held), high-water {}, allocated {} / reclaimed {} in total",
                p.arenas_current,
                human_bytes(p.arena_size),
                human_bytes(p.arena_bytes),
                p.arenas_highwater,
                p.arenas_allocated_total,
                p.arenas_reclaimed
            );
            let _ = writeln!(
                s,
                "            blocks: {} used, {} free in used pools; {} unused pools ({}); headers {}, quantization {}, alignment {}; fragmentation {:.1}%",
                human_bytes(p.bytes_in_use),
                human_bytes(p.bytes_free),
                p.unused_pools,
                human_bytes(p.unused_pool_bytes),
                human_bytes(p.pool_header_bytes),
                human_bytes(p.quantization_bytes),
                human_bytes(p.arena_alignment_bytes),
                p.fragmentation() * 100.0
            );
            let _ = writeln!(
                s,
                "            {:>5} {:>5} {:>7} {:>12} {:>12}",
                "CLASS", "SIZE", "POOLS", "BLOCKS USED", "BLOCKS FREE"
            );
            for c in &p.classes {
                let _ = writeln!(
                    s,
                    "            {:>5} {:>5} {:>7} {:>12} {:>12}",
                    c.class, c.size, c.pools, c.blocks_in_use, c.blocks_free
                );
            }
        }
        None => {
            let _ = writeln!(s, "pymalloc    {}", r.pymalloc.detail);
        }
    }
    if let Some(m) = &r.mimalloc {
        let _ = writeln!(
            s,
            "mimalloc    {} threads, {} segments; abandoned (threads that exited): {} segments, {} pages",
            m.threads, m.segments, m.abandoned_segments, m.abandoned_pages
        );
        let _ = writeln!(
            s,
            "            {:<28} {:>7} {:>10} {:>12} {:>12}",
            "HEAP", "PAGES", "BLOCKS", "IN USE", "PAGE BYTES"
        );
        for h in &m.heaps {
            let _ = writeln!(
                s,
                "            {:<28} {:>7} {:>10} {:>12} {:>12}",
                h.heap,
                h.pages,
                h.blocks,
                human_bytes(h.block_bytes),
                human_bytes(h.page_bytes)
            );
        }
    }
    match &r.cgroup {
        Some(c) => {
            let _ = writeln!(
                s,
                "cgroup      {} {}: usage {}, limit {}{}{}",
                c.version,
                c.path,
                opt_bytes(c.usage),
                opt_bytes(c.limit),
                c.limit_from.as_ref().filter(|f| **f != c.path).map(|f| format!(" (set on {f})")).unwrap_or_default(),
                c.headroom.map(|h| format!(", headroom {}", human_bytes(h))).unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(s, "cgroup      no readable memory controller");
        }
    }
    if let Some(l) = &r.limits {
        for (name, x) in [("RLIMIT_AS", &l.address_space), ("RLIMIT_DATA", &l.data)] {
            let _ = writeln!(
                s,
                "{name:<12}{} (hard {}), using {}{}",
                opt_bytes(x.soft),
                opt_bytes(x.hard),
                opt_bytes(x.used),
                x.headroom.map(|h| format!(", headroom {}", human_bytes(h))).unwrap_or_default()
            );
        }
    }
    s
}

/// `memspy stat FILE --json`: what a dump holds of where the memory went (the allocators' figures
/// and procfs's are read live only).
#[derive(Clone, Debug, Serialize)]
pub struct DumpStat {
    pub pid: i32,
    pub file: String,
    pub python: PythonInfo,
    pub rss: Option<u64>,
    pub mappings: u64,
    pub mapped_bytes: u64,
    pub writable_bytes: u64,
    pub python_objects: ObjectBytes,
    /// RSS not in Python objects: the allocators' free space, native memory, file-backed pages.
    pub outside_python_objects: Option<u64>,
    /// Bytes of the native blocks the walk scanned (C extensions' buffers that hold objects).
    pub native_blocks_scanned: u64,
}

fn from_dump(path: &str) -> Result<DumpStat> {
    let d = crate::store::read(std::path::Path::new(path), false)?;
    let (r, p) = (&d.meta.report, &d.meta.process);
    Ok(DumpStat {
        pid: d.header.pid,
        file: path.to_string(),
        python: d.header.python.clone(),
        rss: p.rss,
        mappings: p.mappings,
        mapped_bytes: p.mapped_bytes,
        writable_bytes: p.writable_bytes,
        python_objects: ObjectBytes { coverage: r.coverage.clone(), objects: r.totals.objects, bytes: r.totals.bytes },
        outside_python_objects: p.rss.map(|rss| rss.saturating_sub(r.totals.bytes)),
        native_blocks_scanned: r.scan.native_bytes,
    })
}

fn dump_text(s: &DumpStat) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: PID {}  Python {}  (from the dump)", s.file, s.pid, s.python.version);
    let _ = writeln!(
        out,
        "RSS {}   mappings {} ({} mapped, {} writable)",
        s.rss.map(human_bytes).unwrap_or_else(|| "unknown".into()),
        s.mappings,
        human_bytes(s.mapped_bytes),
        human_bytes(s.writable_bytes)
    );
    let _ = writeln!(
        out,
        "Python objects ({}): {} objects, {}",
        s.python_objects.coverage,
        s.python_objects.objects,
        human_bytes(s.python_objects.bytes)
    );
    if let Some(o) = s.outside_python_objects {
        let _ = writeln!(
            out,
            "outside Python objects: {} (allocators' free space, native memory, file pages)",
            human_bytes(o)
        );
    }
    let _ =
        writeln!(out, "(pymalloc's arenas, smaps and cgroup figures are read from a live process: memspy stat PID)");
    out
}

pub fn run(opts: &StatOptions) -> Result<()> {
    let session = match (&opts.target, &opts.core) {
        (None, Some(core)) => Session::open_core(core)?,
        (Some(target), None) => {
            let Ok(pid) = target.parse::<i32>() else {
                let s = from_dump(target)?;
                if opts.json {
                    println!("{}", serde_json::to_string_pretty(&s).expect("serializes"));
                } else {
                    print!("{}", dump_text(&s));
                }
                return Ok(());
            };
            Session::attach(pid)?
        }
        _ => return Err(crate::error::Error::Other("give a PID, a dump file or --core FILE".into())),
    };
    let r = report(&session, &opts.snapshot)?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&r).expect("serializes"));
    } else {
        print!("{}", text(&r));
    }
    Ok(())
}
