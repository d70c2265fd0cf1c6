//! What `why` and `retained` share: one walk that records the object graph, then (with the target
//! running again) its shortest paths, dominator tree and anchors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Session, Spawned, TargetSpec};
use crate::analysis::dominators::{self, Dominators};
use crate::analysis::growth::TypeOwners;
use crate::analysis::paths::{self, Paths};
use crate::analysis::why::{Aggregator, Anchor, Figures, Namer, PathRow, Step};
use crate::analysis::{Histogram, Report};
use crate::error::Error;
use crate::error::Result;
use crate::memory::CachedMemory;
use crate::process;
use crate::process::TargetMemory;
use crate::report::progress::progress;
use crate::store;
use crate::store::StoredNames;
use crate::walk::anchors;
use crate::walk::graph::Graph;
use crate::walk::names::EdgeNamer;
use crate::walk::{self, SnapshotOptions};
use python_bindings::Layout;

/// Where the names of edges and objects' values are read.
pub enum Names {
    /// The target, live (names read after the walk: a holder changed since names nothing) or a core file.
    Live { mem: TargetMemory, layout: Box<Layout> },
    /// What a dump stored.
    Stored(StoredNames),
}

/// The object graph of one pause, and what was computed from it.
pub struct Held {
    /// The process the graph is of.
    pub pid: i32,
    /// The dump file it was read from (None: a live target).
    pub file: Option<String>,
    pub names: Names,
    pub graph: Arc<Graph>,
    pub paths: Arc<Paths>,
    /// The dominator tree, computed on a thread of its own while the command names paths ([`Held::dom`]).
    dom: Later<Dominators>,
    pub anchors: HashMap<u32, Anchor>,
    /// How long each step took; the dominators' time is filled in by [`Held::figures`].
    figures: Figures,
    /// The per-type report of the same walk (what `top` would show).
    pub report: Report,
}

/// A result computed on another thread, waited for when first asked.
struct Later<T> {
    done: OnceLock<(T, Duration)>,
    job: Mutex<Option<Job<T>>>,
}

/// The thread computing a [`Later`]'s value and how long that took (None: it found no job to do).
type Job<T> = JoinHandle<Option<(T, Duration)>>;

impl<T: Send + 'static> Later<T> {
    fn spawn<F: FnOnce() -> T + Send + 'static>(f: F) -> Later<T> {
        let timed = move || {
            let t = Instant::now();
            let r = f();
            (r, t.elapsed())
        };
        // The job is handed over through a slot, so that it is still here when no thread can start.
        let slot = Arc::new(Mutex::new(Some(timed)));
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new().name("memspy-dominators".into()).spawn(move || {
            let job = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
            job.map(|j| j())
        });
        let later = Later { done: OnceLock::new(), job: Mutex::new(None) };
        match spawned {
            Ok(h) => *later.job.lock().unwrap_or_else(|p| p.into_inner()) = Some(h),
            Err(e) => {
                log::debug!("no thread for the dominators ({e}): computed now");
                if let Some(j) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = later.done.set(j());
                }
            }
        }
        later
    }

    /// A value already at hand (read from a dump): no time spent computing it.
    fn ready(value: T) -> Later<T> {
        let later = Later { done: OnceLock::new(), job: Mutex::new(None) };
        let _ = later.done.set((value, Duration::ZERO));
        later
    }

    fn get(&self) -> &(T, Duration) {
        self.done.get_or_init(|| {
            let h = self.job.lock().unwrap_or_else(|p| p.into_inner()).take();
            match h.map(|h| h.join()) {
                Some(Ok(Some(r))) => r,
                Some(Err(p)) => std::panic::resume_unwind(p),
                _ => unreachable!("a job runs until it is done"),
            }
        })
    }
}

/// The dominator tree of `graph`, started on a thread of its own.
fn dominators_later(graph: &Arc<Graph>, paths: &Arc<Paths>) -> Later<Dominators> {
    let (g, p) = (graph.clone(), paths.clone());
    Later::spawn(move || {
        let d = dominators::compute(&g, &p);
        log::debug!("dominators computed: memspy's RSS {} MiB", own_rss_mib());
        d
    })
}

fn own_rss_mib() -> u64 {
    process::rss_bytes(std::process::id() as i32).unwrap_or(0) >> 20
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Checks that the objects of a dump's graph are, type by type, those of its report (one walk made
/// both): a file that passes shows the same histogram whether read from its report or its graph.
fn same_histogram(g: &Graph, r: &Report) -> std::result::Result<(), String> {
    // Counted by type number first (one array), then gathered by name.
    let mut by_number = vec![(0u64, 0u64); g.type_infos.len() + 1];
    for v in 0..g.objects {
        let t = (g.types[v as usize] as usize).min(g.type_infos.len());
        by_number[t].0 += 1;
        by_number[t].1 += g.size(v);
    }
    let mut per: HashMap<&str, (u64, u64)> = HashMap::new();
    for (t, &(n, bytes)) in by_number.iter().enumerate().filter(|(_, c)| c.0 > 0) {
        let e = per.entry(g.type_infos.get(t).map_or("?", |t| t.name.as_str())).or_default();
        e.0 += n;
        e.1 += bytes;
    }
    for row in &r.types {
        let got = per.remove(row.name.as_str()).unwrap_or_default();
        if got != (row.count, row.bytes) {
            return Err(format!(
                "{}: {} objects, {} bytes in the graph, {} and {} in the report",
                row.name, got.0, got.1, row.count, row.bytes
            ));
        }
    }
    match per.into_iter().next() {
        Some((name, (n, _))) => Err(format!("{name}: {n} objects in the graph, none in the report")),
        None => Ok(()),
    }
}

impl Held {
    pub fn read(session: &Session, opts: &SnapshotOptions) -> Result<Held> {
        session.warn_if_long(opts);
        let t0 = Instant::now();
        let mut hist = Histogram::new();
        let (walked, graph) = walk::capture(&session.target, &session.interp, opts, &mut hist)?;
        let report = session.report_of(hist, &walked, opts);
        let t1 = Instant::now();
        log::debug!("graph built: memspy's RSS {} MiB", own_rss_mib());
        let paths = Arc::new(paths::shortest(&graph));
        let t2 = Instant::now();
        let graph = Arc::new(graph);
        let dom = dominators_later(&graph, &paths);
        let mem = CachedMemory::new(session.target.memory(), 64 << 20);
        let anchors = anchors::anchors(&mem, &session.interp.layout, &graph);
        let figures = Figures {
            pause_ms: ms(walked.pause),
            walk_ms: ms(walked.elapsed),
            graph_ms: ms(t1 - t0) - ms(walked.elapsed),
            paths_ms: ms(t2 - t1),
            dominators_ms: 0.0,
            objects: graph.objects as u64,
            edges: graph.targets.len() as u64,
            graph_bytes: graph.bytes(),
            partial: walked.pause_budget_spent,
            frames_without_line: crate::analysis::why::frames_without_line(anchors.values()),
            approximate: report.approximate,
            changed_under_walk: report.scan.changed_under_walk,
        };
        log::info!(
            "graph: {} objects, {} native blocks, {} roots, {} edges, {} MiB; walk {:.0} ms (paused {:.0} ms), \
             numbering {:.0} ms, paths {:.0} ms; {} held from outside the heap; {} conservative references \
             dropped as stale (the refcount is explained without them); {} frames without a decoded line",
            graph.objects,
            graph.natives,
            graph.roots.len(),
            graph.targets.len(),
            graph.bytes() >> 20,
            figures.walk_ms,
            figures.pause_ms,
            figures.graph_ms,
            figures.paths_ms,
            paths.outside.len(),
            graph.stale,
            figures.frames_without_line
        );
        let names = Names::Live { mem: session.target.memory(), layout: Box::new(session.interp.layout.clone()) };
        let file = session.file();
        Ok(Held { pid: session.target.pid, file, names, graph, paths, dom, anchors, figures, report })
    }

    /// The graph a dump file holds, with the paths and dominator tree it keeps (computed again for a
    /// file without them).
    pub fn from_dump(d: store::Dump) -> Result<Held> {
        let store::Dump { path, header, meta, graph, names, held } = d;
        let graph = graph.ok_or_else(|| Error::Other(format!("{path}: the dump was read without its graph")))?;
        let t0 = Instant::now();
        same_histogram(&graph, &meta.report).map_err(|detail| Error::InDump { path: path.clone(), detail })?;
        log::debug!("{path}: the graph's histogram is the report's (checked in {:?})", t0.elapsed());
        let t0 = Instant::now();
        // The file's own paths and dominator tree where it keeps them (read and checked with it).
        let (paths, dom, graph) = match held {
            Some((p, d)) => (Arc::new(p), Later::ready(d), Arc::new(graph)),
            None => {
                let paths = Arc::new(paths::shortest(&graph));
                let graph = Arc::new(graph);
                let dom = dominators_later(&graph, &paths);
                (paths, dom, graph)
            }
        };
        let mut figures = meta.figures;
        figures.paths_ms = ms(t0.elapsed());
        figures.dominators_ms = 0.0;
        let mut report = meta.report;
        report.file = Some(path.clone());
        // (Dumps written before the figures said so.)
        figures.approximate |= report.approximate;
        figures.changed_under_walk = figures.changed_under_walk.or(report.scan.changed_under_walk);
        Ok(Held {
            pid: header.pid,
            file: Some(path),
            names: Names::Stored(names),
            graph,
            paths,
            dom,
            anchors: meta.anchors.into_iter().collect(),
            figures,
            report,
        })
    }

    /// The graph of `memspy <name>`'s target: a dump file, a PID, or a program it starts (its handle
    /// returned: it stops the program when dropped).
    pub fn open(name: &str, spec: &TargetSpec, opts: &SnapshotOptions) -> Result<(Held, Option<Spawned>)> {
        if let Some(path) = &spec.dump {
            let pb = progress(None, &format!("reading {}", path.display()));
            let t = Instant::now();
            let d = store::read(path, true);
            pb.finish_and_clear();
            log::debug!("{} read and decoded in {:?}", path.display(), t.elapsed());
            return Ok((Held::from_dump(d?)?, None));
        }
        let (session, mut spawned) = super::open_target(name, spec, opts.timeout)?;
        let pb = progress(None, &format!("reading the heap of PID {} and its references", session.target.pid));
        let held = Held::read(&session, opts);
        pb.finish_and_clear();
        let held = held.map_err(|e| super::explain_spawned(spawned.as_mut(), e))?;
        Ok((held, spawned))
    }

    /// The dominator tree (waited for, the first time, while its thread computes it).
    pub fn dom(&self) -> &Dominators {
        &self.dom.get().0
    }

    /// How long each step took, the dominator tree's included.
    pub fn figures(&self) -> Figures {
        let mut f = self.figures.clone();
        f.dominators_ms = ms(self.dom.get().1);
        f
    }

    /// How errors and headers name where the graph came from: `PID 1234`, or the file.
    pub fn label(&self) -> String {
        match &self.file {
            Some(f) => format!("{f} (PID {})", self.pid),
            None => format!("PID {}", self.pid),
        }
    }

    /// Reads what this graph does not hold — edge names, values — from where it came from; `detail`
    /// names every index and key (one path), else list indices and big dicts' keys fold to `[*]`.
    pub fn with_namer<T>(&self, detail: bool, f: impl FnOnce(&mut dyn Namer) -> T) -> T {
        match &self.names {
            Names::Live { mem, layout } => {
                let mem = CachedMemory::new(mem.clone(), 64 << 20);
                let mut namer = EdgeNamer::new(&mem, layout, &self.graph);
                namer.detail = detail;
                f(&mut namer)
            }
            Names::Stored(s) => f(&mut s.namer(&self.graph, detail)),
        }
    }

    /// The objects whose type is named `name`: exactly, else by the part after the last dot when
    /// that is unambiguous.
    pub fn of_type(&self, name: &str) -> std::result::Result<Vec<u32>, Vec<String>> {
        let g = &self.graph;
        let mut wanted: Vec<u32> =
            g.type_infos.iter().enumerate().filter(|(_, t)| t.name == name).map(|(i, _)| i as u32).collect();
        if wanted.is_empty() {
            let short: Vec<(u32, &str)> = g
                .type_infos
                .iter()
                .enumerate()
                .filter(|(_, t)| t.name.rsplit('.').next() == Some(name))
                .map(|(i, t)| (i as u32, t.name.as_str()))
                .collect();
            let mut names: Vec<&str> = short.iter().map(|s| s.1).collect();
            names.sort_unstable();
            names.dedup();
            if names.len() > 1 {
                return Err(names.into_iter().map(String::from).collect());
            }
            wanted = short.into_iter().map(|s| s.0).collect();
        }
        Ok((0..g.objects).filter(|&v| wanted.contains(&g.types[v as usize])).collect())
    }

    /// Rows of the paths that hold `nodes` (all of one type: retained bytes are counted once per
    /// instance not dominated by another).
    pub fn rows(&self, nodes: &[u32]) -> Vec<PathRow> {
        self.with_namer(false, |namer| {
            let mut agg = Aggregator::new(&self.graph, &self.paths, &self.anchors, namer);
            // Named while the dominator tree is computed.
            let t = Instant::now();
            let sigs = agg.signatures(nodes);
            let named = t.elapsed();
            let dom = self.dom();
            let waited = t.elapsed() - named;
            let under = dominators::under_own_type(&self.graph, dom, nodes);
            let rows = agg.rows_of(nodes, &sigs, Some(dom), Some(&under));
            log::debug!(
                "paths of {} objects named in {named:?}, then {waited:?} waiting for the dominators, rows in {:?}",
                nodes.len(),
                t.elapsed() - named - waited
            );
            rows
        })
    }

    /// The path of each node, with indices and every key named.
    pub fn paths_of(&self, nodes: &[u32]) -> Vec<(Anchor, Vec<Step>)> {
        self.with_namer(true, |namer| {
            let mut agg = Aggregator::new(&self.graph, &self.paths, &self.anchors, namer);
            nodes.iter().map(|&v| agg.path(v)).collect()
        })
    }

    /// Per type: what its instances retain, and the paths that hold them (the `limit` largest by
    /// count).
    pub fn owners(&self, limit: usize) -> HashMap<String, TypeOwners> {
        let g = &self.graph;
        // Types of the program (not builtins'): what one of their instances dominates is its growth.
        let program: Vec<bool> = g.type_infos.iter().map(|t| !t.name.starts_with("builtins.")).collect();
        let (under, by_program) = dominators::under(g, self.dom(), &program);
        let retained = dominators::retained_of(g, self.dom(), &under);
        // What a type's instances own: what they retain less what instances of the program's types
        // under them retain, counting no instance under one of its type or of the program's.
        let inside = dominators::retained_inside(g, self.dom(), &program);
        let mut owned = vec![(0u64, 0u64); g.type_infos.len()];
        for v in 0..g.objects as usize {
            if !under[v] && !by_program[v] {
                owned[g.types[v] as usize].0 += self.dom().retained[v].saturating_sub(inside[v]);
            }
        }
        let mut by_type: Vec<Vec<u32>> = vec![Vec::new(); g.type_infos.len()];
        for v in 0..g.objects {
            by_type[g.types[v as usize] as usize].push(v);
        }
        self.with_namer(false, |namer| {
            let mut agg = Aggregator::new(g, &self.paths, &self.anchors, namer);
            let mut out: HashMap<String, TypeOwners> = HashMap::new();
            for (t, nodes) in by_type.iter().enumerate() {
                if nodes.is_empty() {
                    continue;
                }
                let mut rows = agg.rows(nodes, Some(self.dom()), Some(&under));
                crate::analysis::why::sort_rows(&mut rows, |r| (r.count, r.retained, r.bytes));
                rows.truncate(limit);
                let e = out.entry(g.type_infos[t].name.clone()).or_default();
                e.retained += retained[t].0;
                e.owned += owned[t].0;
                e.paths.extend(rows);
            }
            out
        })
    }
}
