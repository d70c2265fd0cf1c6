//! Tables of `why` and `retained`: paths as one line each, `›` between steps.

use std::fmt::Write as _;

use super::human_bytes;
use crate::analysis::why::{
    Anchor, Figures, HeldPath, ObjectReport, RetainedReport, Step, UnexplainedReport, WhyReport,
};

/// Containers whose type a step does not repeat (the edge says enough).
const PLAIN: [&str; 4] = ["builtins.dict", "builtins.list", "builtins.tuple", "builtins.set"];

/// How a path's start reads: `module app`, `type app.Cache`, `thread 140… frame main (app.py:12)`.
pub fn anchor(a: &Anchor) -> String {
    match a.kind.as_str() {
        "module" => format!("module {}", a.name),
        "type" => format!("type {}", a.name),
        "frame" => {
            let at = match (&a.file, a.line) {
                (Some(f), Some(l)) => format!(" ({f}:{l})"),
                (Some(f), None) => format!(" ({f})"),
                _ => String::new(),
            };
            match a.thread {
                Some(t) => format!("thread {t} frame {}{at}", a.name),
                None => format!("frame {}{at}", a.name),
            }
        }
        _ => match a.thread {
            Some(t) => format!("{} of thread {t}", a.name),
            None => a.name.clone(),
        },
    }
}

/// A path on one line; steps a conservative scan found are marked `~`.
pub fn path(root: &Anchor, steps: &[Step]) -> String {
    let mut s = anchor(root);
    for (i, st) in steps.iter().enumerate() {
        s.push_str(" › ");
        if st.conservative {
            s.push('~');
        }
        s.push_str(&st.edge);
        let last = i + 1 == steps.len();
        if last || !PLAIN.contains(&st.type_name.as_str()) {
            if !st.edge.is_empty() {
                s.push(' ');
            }
            s.push_str(&st.type_name);
        }
    }
    s
}

fn held_path(p: &HeldPath) -> String {
    path(&p.root, &p.steps)
}

fn costs(f: &Figures) -> String {
    format!(
        "paused {:.0} ms, walk {:.0} ms, graph {:.0} ms, paths {:.0} ms, dominators {:.0} ms",
        f.pause_ms, f.walk_ms, f.graph_ms, f.paths_ms, f.dominators_ms
    )
}

/// The line under a header that says the walk was cut short, or read a moving heap (and how much of
/// it moved).
fn marks(s: &mut String, f: &Figures, missing: &str) {
    if f.partial {
        let _ = writeln!(s, "[PARTIAL: the walk was cut short; {missing} missing]");
    } else if f.approximate {
        s.push_str("[approximate: read without pausing");
        if let Some(c) = f.changed_under_walk {
            let _ = write!(s, "; {:.1}% of the objects sampled changed under the walk", c.percent());
        }
        s.push_str("]\n");
    }
}

/// The header's prefix naming the dump file a report was read from.
fn from_file(file: &Option<String>) -> String {
    file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
}

pub fn table(r: &WhyReport, f: &Figures, limit: usize) -> String {
    let mut s = format!(
        "{}PID {}  why {}: {} objects, {}, retaining {}  ({})\n",
        from_file(&r.file),
        r.pid,
        r.type_name,
        r.count,
        human_bytes(r.bytes),
        human_bytes(r.retained),
        costs(f)
    );
    marks(&mut s, f, "some objects and paths are");
    let _ = writeln!(s, "{:>10} {:>10} {:>10}  HELD BY", "OBJECTS", "BYTES", "RETAINED");
    for p in r.paths.iter().take(limit) {
        let _ = writeln!(
            s,
            "{:>10} {:>10} {:>10}  {}",
            p.count,
            human_bytes(p.bytes),
            human_bytes(p.retained),
            path(&p.root, &p.steps)
        );
    }
    if r.paths.len() > limit {
        let rest: u64 = r.paths[limit..].iter().map(|p| p.count).sum();
        let _ = writeln!(s, "… {} more paths ({rest} objects); --limit to see them", r.paths.len() - limit);
    }
    if r.paths.iter().any(|p| p.steps.iter().any(|st| st.conservative)) {
        s.push_str("~ a reference found by a conservative scan of a C object (it may overstate what holds it)\n");
    }
    s.trim_end().to_string()
}

pub fn object(r: &ObjectReport) -> String {
    let mut s = format!("PID {}  {} {}: {}", r.pid, r.type_name, r.address, human_bytes(r.size));
    match r.refcount {
        Some(rc) => {
            let _ = write!(s, ", refcount {rc} ({} references found in the heap)", r.references_found);
        }
        None => s.push_str(", immortal"),
    }
    let _ = writeln!(s, ", retains {} in {} objects", human_bytes(r.retained), r.retained_objects);
    marks(&mut s, &r.analysis, "some referrers may be");
    let _ = writeln!(s, "held by: {}", held_path(&r.path));
    if !r.referrers.is_empty() {
        s.push_str("referenced from:\n");
        for x in &r.referrers {
            let _ = writeln!(s, "  {}{} {} {}", if x.conservative { "~" } else { "" }, x.edge, x.type_name, x.address);
        }
    }
    s.trim_end().to_string()
}

pub fn unexplained(r: &UnexplainedReport, limit: usize) -> String {
    let mut s =
        format!("PID {}  types with references the heap does not explain (held by C code or native memory)\n", r.pid);
    marks(&mut s, &r.analysis, "some references are");
    let _ = writeln!(s, "{:>10} {:>12} {:>12} {:>10}  TYPE", "OBJECTS", "MISSING REFS", "ONLY OUTSIDE", "BYTES");
    for u in r.types.iter().take(limit) {
        let _ = writeln!(
            s,
            "{:>10} {:>12} {:>12} {:>10}  {}",
            u.objects,
            u.missing_references,
            u.only_outside,
            human_bytes(u.bytes),
            u.type_name
        );
    }
    s.trim_end().to_string()
}

pub fn retained(r: &RetainedReport, f: &Figures, limit: usize) -> String {
    let mut s = format!(
        "{}PID {}  retained: {} in the heap  ({})\n",
        from_file(&r.file),
        r.pid,
        human_bytes(r.total_bytes),
        costs(f)
    );
    marks(&mut s, f, "some objects are");
    s.push_str("\nLargest owners (each the innermost object holding most of what it retains):\n");
    let _ = writeln!(s, "{:>10} {:>10}  {:<24} {:<16} HELD BY", "RETAINED", "OBJECTS", "TYPE", "ADDRESS");
    for d in r.dominators.iter().take(limit) {
        let _ = writeln!(
            s,
            "{:>10} {:>10}  {:<24} {:<16} {}",
            human_bytes(d.retained),
            d.objects,
            d.type_name,
            d.address,
            held_path(&d.path)
        );
    }
    s.push_str("\nRetained per type (instances not inside another instance of the same type):\n");
    let _ = writeln!(s, "{:>10} {:>10} {:>10}  TYPE", "RETAINED", "OBJECTS", "BYTES");
    for t in r.by_type.iter().take(limit) {
        let _ = writeln!(
            s,
            "{:>10} {:>10} {:>10}  {}",
            human_bytes(t.retained),
            t.count,
            human_bytes(t.bytes),
            t.type_name
        );
    }
    s.trim_end().to_string()
}
