//! `memspy dump PID -o app.memspy` (or `-- python app.py`): the pause of one full walk that records the
//! object graph, then a self-contained file (`store`) that `top`, `why`, `retained`, `diff` and `stat`
//! read in place of the process.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::analysis::{dominators, paths, Histogram};
use crate::error::Result;
use crate::memory::chunks::ChunkCache;
use crate::memory::CachedMemory;
use crate::report;
use crate::report::progress::progress;
use crate::store::{self, Header, Meta, ProcessFacts};
use crate::walk::graph::Graph;
use crate::walk::names::EdgeNamer;
use crate::walk::{self, anchors, SnapshotOptions};

use super::TargetSpec;

#[derive(Clone, Debug)]
pub struct DumpOptions {
    pub target: TargetSpec,
    pub output: PathBuf,
    /// Keep no contents: no str/bytes/int/float values, no dict keys but identifiers.
    pub no_values: bool,
    pub snapshot: SnapshotOptions,
}

/// What one dump took and made (printed on stderr; `bench/` reads it with `-v`).
pub fn run(opts: &DumpOptions) -> Result<()> {
    let t0 = Instant::now();
    // Ctrl-C and SIGTERM end the dump cleanly: the target resumed, no file left.
    crate::interrupt::install_handler();
    let (session, mut spawned) = super::open_target("dump", &opts.target, opts.snapshot.timeout)?;
    let pid = session.target.pid;
    let pb = progress(None, &format!("reading the heap of PID {pid} and its references"));
    let mut hist = Histogram::new();
    // The pause is a copy of the writable memory (into memory within --max-memory, else into a file
    // beside the dump), walked once the target runs again.
    let mut walk_opts = opts.snapshot.clone();
    if walk_opts.max_memory != Some(0) {
        let dir = match opts.output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        walk_opts.spill = Some(Box::leak(dir.into_boxed_path()));
    }
    let captured = walk::capture_keeping_copy(&session.target, &session.interp, &walk_opts, &mut hist);
    pb.finish_and_clear();
    let (walked, graph, copy) = captured.map_err(|e| super::explain_spawned(spawned.as_mut(), e))?;
    // Names, values and anchors are read from the copy the walk read when there is one (the same
    // instant as the graph), else from the target, which has run on since the walk.
    log::debug!("names and values read from {}", if copy.is_some() { "the copy" } else { "the live target" });
    let t_walk = t0.elapsed();
    let report = session.report_of(hist, &walked, &opts.snapshot);
    let rss = report.rss;
    let layout = &session.interp.layout;
    let mem = CachedMemory::new(session.target.memory(), 64 << 20);
    let anchors = match &copy {
        Some(c) => anchors::anchors(&CachedMemory::new(c.clone(), 64 << 20), layout, &graph),
        None => anchors::anchors(&mem, layout, &graph),
    };
    let process = match session.target.current_maps() {
        Ok(m) => ProcessFacts {
            rss: report.rss,
            mappings: m.entries.len() as u64,
            mapped_bytes: m.entries.iter().map(|e| e.end - e.start).sum(),
            writable_bytes: m.entries.iter().filter(|e| e.perms.writable()).map(|e| e.end - e.start).sum(),
        },
        Err(_) => ProcessFacts { rss: report.rss, ..ProcessFacts::default() },
    };
    let mut figures = crate::analysis::why::Figures {
        pause_ms: walked.pause.as_secs_f64() * 1000.0,
        walk_ms: walked.elapsed.as_secs_f64() * 1000.0,
        graph_ms: (t_walk.as_secs_f64() - walked.elapsed.as_secs_f64()).max(0.0) * 1000.0,
        objects: graph.objects as u64,
        edges: graph.targets.len() as u64,
        graph_bytes: graph.bytes(),
        partial: walked.pause_budget_spent,
        frames_without_line: crate::analysis::why::frames_without_line(anchors.values()),
        ..Default::default()
    };
    let command = match session.target.core() {
        Some(core) => core.core.notes.args.clone(),
        None => std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|&c| c == 0)
                    .filter(|a| !a.is_empty())
                    .map(String::from_utf8_lossy)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
    };
    let source = session.file().map_or_else(|| "live process".to_string(), |f| format!("core file {f}"));
    let header = Header {
        memspy: env!("MEMSPY_VERSION").into(),
        format: store::FORMAT,
        created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
        pid,
        command,
        source,
        python: session.python_info(),
        values: !opts.no_values,
        objects: 0,
        native_blocks: 0,
        roots: 0,
        edges: 0,
    };
    // The GC's figures (thresholds, counts, collections): from the copy the walk read (the same
    // instant, nothing stopped again), else in a pause of their own, which the stop time then includes.
    let mut gc_pause = std::time::Duration::ZERO;
    let gc = match &copy {
        Some(c) => super::gc::read_kept(&session, c),
        None => super::gc::read(&session, opts.snapshot.timeout).map(|(f, interpreters, paused)| {
            gc_pause = paused;
            (f, interpreters)
        }),
    };
    let gc = match gc {
        Ok(g) => Some(g),
        Err(e) => {
            log::info!("no GC figures in the dump: {e}");
            None
        }
    };
    figures.pause_ms += gc_pause.as_secs_f64() * 1000.0;
    let objects = report.totals.objects;
    let types = report.types.len();
    let meta =
        Meta { report, figures, anchors: anchors.into_iter().collect(), process, stale: graph.stale, unnamed: 0, gc };
    if std::env::var_os("MEMSPY_TEST_CHECK_NAMES").is_some() {
        check_names(&mem, layout, &graph)?;
    }
    let pb = progress(Some(graph.nodes() as u64), &format!("naming the references, writing {}", opts.output.display()));
    let t_names = Instant::now();
    let labelled = match copy {
        Some(c) => name_in_parallel(c, &session.target, layout, &graph, rss, opts, &pb),
        None => name_in_parallel(session.target.memory(), &session.target, layout, &graph, rss, opts, &pb),
    };
    log::debug!("references named and values read in {:?}", t_names.elapsed());
    // The shortest paths and the dominator tree, kept in the file so that every read of it starts from
    // them: computed on a thread of their own while the sections before them are compressed and
    // written (after the naming, whose caches are gone by then: memspy's peak stays that of `why`).
    let written = labelled.and_then(|names| {
        std::thread::scope(|sc| {
            let held = sc.spawn(|| {
                let t = Instant::now();
                let p = paths::shortest(&graph);
                let d = dominators::compute(&graph, &p);
                log::debug!("paths and dominators computed in {:?}", t.elapsed());
                (p, d)
            });
            store::write(&opts.output, header, meta, &graph, names, move || {
                Some(held.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            })
        })
    });
    pb.finish_and_clear();
    let w = written?;
    if w.unnamed > 0 {
        log::info!("{} references without a name: a holder that changed after the walk (the target ran on), or a field memspy cannot name", w.unnamed);
    }
    eprintln!(
        "memspy: dump of PID {pid} written to {}: {} objects of {types} types, {} references, {} ({:.1} bytes per \
         object); the target was stopped {:.0} ms, the dump took {:.1} s{}",
        opts.output.display(),
        objects,
        graph.targets.len(),
        report::human_bytes(w.bytes),
        w.bytes as f64 / objects.max(1) as f64,
        (walked.pause + gc_pause).as_secs_f64() * 1000.0,
        t0.elapsed().as_secs_f64(),
        if opts.no_values { " (without values)" } else { "" }
    );
    if walked.pause_budget_spent {
        eprintln!(
            "memspy: warning: the walk was cut short (--max-pause): {} holds part of the heap only",
            opts.output.display()
        );
    }
    Ok(())
}

/// A test hook (`MEMSPY_TEST_CHECK_NAMES`): every edge named by `name_edges` (all of a holder's edges
/// at once, what a dump stores) must read as `Namer::edge` (one edge, with detail) reads it.
fn check_names<M: crate::memory::Memory + ?Sized>(mem: &M, layout: &python_bindings::Layout, g: &Graph) -> Result<()> {
    use crate::walk::names::Namer;
    let mut batch = EdgeNamer::new(mem, layout, g);
    let mut one = EdgeNamer::new(mem, layout, g);
    one.detail = true;
    let (mut differ, mut first) = (0u64, None);
    for v in 0..g.nodes() {
        for (e, &t) in batch.name_edges(v).into_iter().zip(g.edges(v)) {
            let single = one.edge(v, t & !crate::walk::graph::CONSERVATIVE_EDGE);
            if e != single {
                differ += 1;
                first.get_or_insert_with(|| {
                    format!("node {v} ({:?}): {e:?} vs {single:?}", g.type_of(v).map(|t| &t.name))
                });
            }
        }
    }
    match first {
        Some(f) => Err(crate::error::Error::Other(format!("{differ} edges named differently, first: {f}"))),
        None => Ok(()),
    }
}

/// Most threads naming references.
const MAX_NAMING_THREADS: usize = 8;

/// Names every reference and reads every value from `source` (the walk's copy, or the target), on as
/// many threads as memspy may use (each with its own chunk cache, a share of the walk's budget), nodes
/// split in consecutive ranges.
fn name_in_parallel<S: crate::memory::Memory + Clone + Send>(
    source: S,
    target: &crate::process::Target,
    layout: &python_bindings::Layout,
    graph: &Graph,
    rss: Option<u64>,
    opts: &DumpOptions,
    pb: &indicatif::ProgressBar,
) -> Result<store::Labelled> {
    let addrs = graph.addresses();
    let ranges = target.current_maps().map(|m| crate::memory::chunks::readable_ranges(&m)).unwrap_or_default();
    // Names and values read the heap once more in 64 KiB chunks, as the walk does, within its budget.
    let budget = rss.map_or(opts.snapshot.cache_bytes, |r| (r / 16 * 3).max(64 << 20));
    let nodes = graph.nodes();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_NAMING_THREADS)
        .min((nodes as usize / 100_000).max(1));
    let per = nodes.div_ceil(threads as u32).max(1);
    let done = std::sync::atomic::AtomicU64::new(0);
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads as u32)
            .map(|i| {
                let (lo, hi) = ((i * per).min(nodes), ((i + 1) * per).min(nodes));
                let (addrs, ranges, done, source) = (&addrs, ranges.clone(), &done, source.clone());
                s.spawn(move || {
                    let chunks = ChunkCache::new(source, ranges, budget / threads as u64);
                    let mut namer = EdgeNamer::new(&chunks, layout, graph).with_addresses(addrs);
                    store::label(&mut namer, graph, lo..hi, !opts.no_values, done)
                })
            })
            .collect();
        while handles.iter().any(|h| !h.is_finished()) {
            pb.set_position(done.load(std::sync::atomic::Ordering::Relaxed));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(crate::error::Error::Other("a naming thread panicked".into()))))
            .collect::<Result<Vec<_>>>()
    })?;
    log::debug!("{threads} threads named the references");
    Ok(store::merge(parts))
}
