//! What `why` and `retained` share: one walk that records the object graph, then (with the target
//! running again) its shortest paths, dominator tree and anchors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Session;
use crate::analysis::dominators::{self, Dominators};
use crate::analysis::growth::TypeOwners;
use crate::analysis::paths::{self, Paths};
use crate::analysis::why::{Aggregator, Anchor, Figures, PathRow, Step};
use crate::analysis::{Histogram, Report};
use crate::error::Result;
use crate::memory::CachedMemory;
use crate::process;
use crate::walk::graph::Graph;
use crate::walk::names::{self, EdgeNamer};
use crate::walk::{self, SnapshotOptions, Walked};

/// The object graph of one pause, and what was computed from it.
pub struct Held {
    pub graph: Graph,
    pub paths: Paths,
    pub dom: Dominators,
    pub anchors: HashMap<u32, Anchor>,
    pub walked: Walked,
    pub figures: Figures,
    /// The per-type report of the same walk (what `top` would show).
    pub report: Report,
}

fn own_rss_mib() -> u64 {
    process::rss_bytes(std::process::id() as i32).unwrap_or(0) >> 20
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Held {
    pub fn read(session: &Session, opts: &SnapshotOptions) -> Result<Held> {
        let t0 = Instant::now();
        let mut hist = Histogram::new();
        let (walked, graph) = walk::capture(&session.target, &session.interp, opts, &mut hist)?;
        let report = session.report_of(hist, &walked, opts);
        let t1 = Instant::now();
        log::debug!("graph built: memspy's RSS {} MiB", own_rss_mib());
        let paths = paths::shortest(&graph);
        let t2 = Instant::now();
        let dom = dominators::compute(&graph, &paths);
        let t3 = Instant::now();
        log::debug!("dominators computed: memspy's RSS {} MiB", own_rss_mib());
        let mem = CachedMemory::new(session.target.memory(), 64 << 20);
        let anchors = names::anchors(&mem, &session.interp.layout, &graph);
        let figures = Figures {
            pause_ms: ms(walked.pause),
            walk_ms: ms(walked.elapsed),
            graph_ms: ms(t1 - t0) - ms(walked.elapsed),
            paths_ms: ms(t2 - t1),
            dominators_ms: ms(t3 - t2),
            objects: graph.objects as u64,
            edges: graph.targets.len() as u64,
            graph_bytes: graph.bytes(),
            partial: walked.pause_budget_spent,
        };
        log::info!(
            "graph: {} objects, {} native blocks, {} roots, {} edges, {} MiB; walk {:.0} ms (paused {:.0} ms), \
             numbering {:.0} ms, paths {:.0} ms, dominators {:.0} ms; {} held from outside the heap; {} \
             conservative references dropped as stale (the refcount is explained without them)",
            graph.objects,
            graph.natives,
            graph.roots.len(),
            graph.targets.len(),
            graph.bytes() >> 20,
            figures.walk_ms,
            figures.pause_ms,
            figures.graph_ms,
            figures.paths_ms,
            figures.dominators_ms,
            paths.outside.len(),
            graph.stale
        );
        Ok(Held { graph, paths, dom, anchors, walked, figures, report })
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
    pub fn rows(&self, session: &Session, nodes: &[u32]) -> Vec<PathRow> {
        let mem = CachedMemory::new(session.target.memory(), 64 << 20);
        let namer = EdgeNamer::new(&mem, &session.interp.layout, &self.graph);
        let under = dominators::under_same_type(&self.graph, &self.dom);
        let mut agg = Aggregator::new(&self.graph, &self.paths, &self.anchors, namer);
        agg.rows(nodes, Some(&self.dom), Some(&under))
    }

    /// The path of each node, with indices and every key named.
    pub fn paths_of(&self, session: &Session, nodes: &[u32]) -> Vec<(Anchor, Vec<Step>)> {
        let mem = CachedMemory::new(session.target.memory(), 64 << 20);
        let mut namer = EdgeNamer::new(&mem, &session.interp.layout, &self.graph);
        namer.detail = true;
        let mut agg = Aggregator::new(&self.graph, &self.paths, &self.anchors, namer);
        nodes.iter().map(|&v| agg.path(v)).collect()
    }

    /// Per type: what its instances retain, and the paths that hold them (the `limit` largest by
    /// count).
    pub fn owners(&self, session: &Session, limit: usize) -> HashMap<String, TypeOwners> {
        let g = &self.graph;
        // Types of the program (not builtins'): what one of their instances dominates is its growth.
        let program: Vec<bool> = g.type_infos.iter().map(|t| !t.name.starts_with("builtins.")).collect();
        let (under, by_program) = dominators::under(g, &self.dom, &program);
        let retained = dominators::retained_of(g, &self.dom, &under);
        // What a type's instances own: what they retain less what instances of the program's types
        // under them retain, counting no instance under one of its type or of the program's.
        let inside = dominators::retained_inside(g, &self.dom, &program);
        let mut owned = vec![(0u64, 0u64); g.type_infos.len()];
        for v in 0..g.objects as usize {
            if !under[v] && !by_program[v] {
                owned[g.types[v] as usize].0 += self.dom.retained[v].saturating_sub(inside[v]);
            }
        }
        let mut by_type: Vec<Vec<u32>> = vec![Vec::new(); g.type_infos.len()];
        for v in 0..g.objects {
            by_type[g.types[v as usize] as usize].push(v);
        }
        let mem = CachedMemory::new(session.target.memory(), 64 << 20);
        let namer = EdgeNamer::new(&mem, &session.interp.layout, g);
        let mut agg = Aggregator::new(g, &self.paths, &self.anchors, namer);
        let mut out: HashMap<String, TypeOwners> = HashMap::new();
        for (t, nodes) in by_type.iter().enumerate() {
            if nodes.is_empty() {
                continue;
            }
            let mut rows = agg.rows(nodes, Some(&self.dom), Some(&under));
            rows.sort_by_key(|r| std::cmp::Reverse((r.count, r.retained)));
            rows.truncate(limit);
            let e = out.entry(g.type_infos[t].name.clone()).or_default();
            e.retained += retained[t].0;
            e.owned += owned[t].0;
            e.paths.extend(rows);
        }
        out
    }
}
