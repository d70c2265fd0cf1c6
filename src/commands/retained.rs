//! `memspy retained PID` (or `-- python app.py`): who owns the memory — the objects that retain the
//! most (the dominator tree's heaviest nodes, each the innermost holder of most of what it retains)
//! and the retained size per type.

use crate::analysis::dominators::{self, Dominators, TOP};
use crate::analysis::why::{Dominator, HeldPath, RetainedReport, RetainedType};
use crate::error::{Error, Result};
use crate::report;
use crate::walk::graph::Graph;
use crate::walk::SnapshotOptions;

use super::held::Held;
use super::TargetSpec;

#[derive(Clone, Debug)]
pub struct RetainedOptions {
    pub target: TargetSpec,
    pub json: bool,
    pub limit: usize,
    pub snapshot: SnapshotOptions,
}

/// A holder is listed instead of its dominator when it retains at least this share of what that
/// dominator retains (9/10): a chain module → dict → list shows the list.
const INNERMOST: (u64, u64) = (9, 10);

pub fn run(opts: &RetainedOptions) -> Result<()> {
    let (held, _spawned) = Held::open("retained", &opts.target, &opts.snapshot)?;
    let r = retained_report(&held, opts.limit);
    let text = if opts.json {
        serde_json::to_string_pretty(&r).map_err(|e| Error::Other(format!("JSON: {e}")))?
    } else {
        report::why::retained(&r, &held.figures(), opts.limit)
    };
    println!("{text}");
    Ok(())
}

/// What `memspy retained` shows of `held`: the `limit` heaviest owners (innermost) and retained bytes
/// per type.
pub fn retained_report(held: &Held, limit: usize) -> RetainedReport {
    let g = &held.graph;
    let d = held.dom();
    // The retained size by type (a walk down the whole dominator tree) on a thread of its own, while
    // this one picks the top dominators and their paths.
    std::thread::scope(|sc| {
        let per_type = sc.spawn(|| by_type(g, d));
        let dominators = top_dominators(held, limit);
        RetainedReport {
            pid: held.pid,
            file: held.file.clone(),
            total_bytes: g.total_bytes(),
            by_type: per_type.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            dominators,
            partial: held.figures().partial,
            analysis: held.figures(),
        }
    })
}

/// The objects that retain the most (not those a dominated object holds most of), with their paths.
fn top_dominators(held: &Held, limit: usize) -> Vec<Dominator> {
    let g = &held.graph;
    let d = held.dom();
    // Objects with a dominated object that holds most of what they retain are not listed.
    let mut heavy = vec![false; g.nodes() as usize];
    for v in 0..g.objects {
        let p = d.idom[v as usize];
        if p != TOP && d.retained[v as usize] * INNERMOST.1 >= d.retained[p as usize] * INNERMOST.0 {
            heavy[p as usize] = true;
        }
    }
    let mut top: Vec<u32> =
        (0..g.objects).filter(|&v| !heavy[v as usize] && d.retained_objects[v as usize] > 1).collect();
    // Ties in address order (objects are numbered so): the same list whatever walked the heap.
    top.sort_by_key(|&v| (std::cmp::Reverse(d.retained[v as usize]), v));
    top.truncate(limit);
    let paths = held.paths_of(&top);
    top.iter()
        .zip(paths)
        .map(|(&v, (root, steps))| Dominator {
            address: format!("{:#x}", g.addr(v)),
            type_name: g.type_of(v).map_or_else(|| "?".into(), |t| t.name.clone()),
            retained: d.retained[v as usize],
            objects: d.retained_objects[v as usize] as u64,
            path: HeldPath { root, steps },
        })
        .collect()
}

/// Per type: count, bytes and retained bytes (see [`dominators::retained_by_type`]), largest first.
fn by_type(g: &Graph, d: &Dominators) -> Vec<RetainedType> {
    let per = dominators::retained_by_type(g, d);
    let mut counts = vec![(0u64, 0u64); g.type_infos.len()];
    for v in 0..g.objects as usize {
        let c = &mut counts[g.types[v] as usize];
        c.0 += 1;
        c.1 += g.size(v as u32);
    }
    let mut by_type: Vec<RetainedType> = g
        .type_infos
        .iter()
        .enumerate()
        .map(|(i, t)| RetainedType {
            type_name: t.name.clone(),
            count: counts[i].0,
            bytes: counts[i].1,
            retained: per[i].0,
        })
        .filter(|t| t.count > 0)
        .collect();
    by_type.sort_by(|a, b| {
        (b.retained, b.bytes, b.count).cmp(&(a.retained, a.bytes, a.count)).then_with(|| a.type_name.cmp(&b.type_name))
    });
    by_type
}
