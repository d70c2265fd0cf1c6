//! `memspy why PID --type T` (or `--address A`, `--unexplained`; or `-- python app.py`): how objects
//! are held — their shortest paths from the roots, aggregated — and which types' refcounts the heap
//! does not explain.

use crate::analysis::why::{HeldPath, ObjectReport, Referrer, Unexplained, UnexplainedReport, WhyReport};
use crate::error::{Error, Result};
use crate::report;
use crate::walk::graph::{CONSERVATIVE_EDGE, IMMORTAL};
use crate::walk::SnapshotOptions;

use super::held::Held;
use super::TargetSpec;

/// Most referrers listed for one object.
const MAX_REFERRERS: usize = 20;

#[derive(Clone, Debug)]
pub enum WhatFor {
    Type(String),
    Address(u64),
    Unexplained,
}

#[derive(Clone, Debug)]
pub struct WhyOptions {
    pub target: TargetSpec,
    pub what: WhatFor,
    pub json: bool,
    pub limit: usize,
    pub snapshot: SnapshotOptions,
}

pub fn run(opts: &WhyOptions) -> Result<()> {
    let (held, _spawned) = Held::open("why", &opts.target, &opts.snapshot)?;
    let text = match &opts.what {
        WhatFor::Type(t) => {
            let r = by_type(&held, t)?;
            if opts.json {
                serde_json::to_string_pretty(&r).map_err(|e| Error::Other(format!("JSON: {e}")))?
            } else {
                report::why::table(&r, &held.figures(), opts.limit)
            }
        }
        WhatFor::Address(a) => {
            let r = object(&held, *a)?;
            if opts.json {
                serde_json::to_string_pretty(&r).map_err(|e| Error::Other(format!("JSON: {e}")))?
            } else {
                report::why::object(&r)
            }
        }
        WhatFor::Unexplained => {
            let r = unexplained(&held);
            if opts.json {
                serde_json::to_string_pretty(&r).map_err(|e| Error::Other(format!("JSON: {e}")))?
            } else {
                report::why::unexplained(&r, opts.limit)
            }
        }
    };
    println!("{text}");
    Ok(())
}

fn by_type(held: &Held, name: &str) -> Result<WhyReport> {
    let nodes = held.of_type(name).map_err(|names| {
        Error::Other(format!("type {name:?} is ambiguous: {}; give the full name", names.join(", ")))
    })?;
    if nodes.is_empty() {
        return Err(Error::Other(format!("{}: no object of type {name:?} in the heap", held.label())));
    }
    let g = &held.graph;
    let full_name = g.type_of(nodes[0]).map(|t| t.name.clone()).unwrap_or_else(|| name.to_string());
    let paths = held.rows(&nodes);
    Ok(WhyReport {
        pid: held.pid,
        file: held.file.clone(),
        type_name: full_name,
        count: nodes.len() as u64,
        bytes: nodes.iter().map(|&v| g.size(v)).sum(),
        retained: paths.iter().map(|p| p.retained).sum(),
        paths,
        partial: held.figures().partial,
        analysis: held.figures(),
    })
}

fn object(held: &Held, addr: u64) -> Result<ObjectReport> {
    let g = &held.graph;
    let v = g
        .node_at(addr)
        .ok_or_else(|| Error::Other(format!("{}: no object at {addr:#x} (not found by the walk)", held.label())))?;
    let (root, steps) = held.paths_of(&[v]).pop().expect("one path");
    // Who references it: every node with an edge to it (a scan of the edges; one object only).
    let mut holders = Vec::new();
    for u in 0..g.nodes() {
        if holders.len() >= MAX_REFERRERS {
            break;
        }
        if let Some(&e) = g.edges(u).iter().find(|&&e| e & !CONSERVATIVE_EDGE == v) {
            holders.push((u, e));
        }
    }
    let named: Vec<String> = held.with_namer(true, |namer| {
        holders.iter().map(|&(u, _)| crate::analysis::why::render_plain(&namer.edge(u, v))).collect()
    });
    let mut referrers = Vec::new();
    for (&(u, e), edge) in holders.iter().zip(named) {
        {
            let type_name = match g.root_of(u) {
                Some(_) => held.anchors.get(&u).map_or_else(|| "root".to_string(), |a| a.name.clone()),
                None if g.is_native(u) => "native block".into(),
                None => g.type_of(u).map_or_else(|| "?".into(), |t| t.name.clone()),
            };
            referrers.push(Referrer {
                address: format!("{:#x}", g.addr(u)),
                type_name,
                edge,
                conservative: e & CONSERVATIVE_EDGE != 0,
            });
        }
    }
    let rc = g.refcounts[v as usize];
    Ok(ObjectReport {
        pid: held.pid,
        address: format!("{addr:#x}"),
        type_name: g.type_of(v).map_or_else(|| "?".into(), |t| t.name.clone()),
        size: g.size(v),
        refcount: (rc != IMMORTAL).then_some(rc as u64),
        references_found: g.edges_to(v),
        retained: held.dom().retained[v as usize],
        retained_objects: held.dom().retained_objects[v as usize] as u64,
        dominator: match held.dom().idom[v as usize] {
            d if d != crate::analysis::dominators::TOP && g.is_object(d) => Some(Referrer {
                address: format!("{:#x}", g.addr(d)),
                type_name: g.type_of(d).map_or_else(|| "?".into(), |t| t.name.clone()),
                edge: String::new(),
                conservative: false,
            }),
            _ => None,
        },
        path: HeldPath { root, steps },
        referrers,
        analysis: held.figures(),
    })
}

fn unexplained(held: &Held) -> UnexplainedReport {
    let g = &held.graph;
    let mut per: Vec<Unexplained> = g
        .type_infos
        .iter()
        .map(|t| Unexplained {
            type_name: t.name.clone(),
            objects: 0,
            missing_references: 0,
            only_outside: 0,
            bytes: 0,
        })
        .collect();
    let mut outside = vec![false; g.objects as usize];
    for &(v, _) in &held.paths.outside {
        outside[v as usize] = true;
    }
    let indegree = crate::analysis::paths::indegree(g);
    // 3.11's static objects count from a base no reference accounts for.
    let base = python_bindings::Version::parse(&held.report.python.version)
        .and_then(python_bindings::Layout::builtin)
        .map_or(0, |l| u32::try_from(l.static_refcount).unwrap_or(0));
    for v in 0..g.objects as usize {
        let rc = match g.refcounts[v] {
            rc if base > 0 && rc != IMMORTAL && rc >= base => rc - base,
            rc => rc,
        };
        let found = indegree[v];
        if rc == IMMORTAL || rc <= found {
            continue;
        }
        let u = &mut per[g.types[v] as usize];
        u.objects += 1;
        u.missing_references += (rc - found) as u64;
        u.only_outside += outside[v] as u64;
        u.bytes += g.size(v as u32);
    }
    per.retain(|u| u.objects > 0);
    per.sort_by(|a, b| {
        (b.only_outside, b.missing_references, b.objects)
            .cmp(&(a.only_outside, a.missing_references, a.objects))
            .then_with(|| a.type_name.cmp(&b.type_name))
    });
    UnexplainedReport { pid: held.pid, types: per, analysis: held.figures() }
}
