//! The `memspy growth` table: types ranked by growth, like objgraph's `show_growth`.

use std::fmt::Write as _;

use crate::analysis::growth::Growth;
use crate::report::human_bytes;

/// `+1234` / `-5` / `0`.
pub fn signed_count(v: i64) -> String {
    if v > 0 {
        format!("+{v}")
    } else {
        v.to_string()
    }
}

/// `+1.5 MiB` / `-2.0 KiB` / `0 B`.
pub fn signed_bytes(v: i64) -> String {
    let s = human_bytes(v.unsigned_abs());
    match v.signum() {
        1 => format!("+{s}"),
        -1 => format!("-{s}"),
        _ => s,
    }
}

/// The growth table: the `limit` types that grew most (types that did not grow are left out).
pub fn table(g: &Growth, limit: usize) -> String {
    let mut out = String::new();
    let first = g.samples.first();
    let last = g.samples.last();
    let _ = write!(
        out,
        "PID {}  Python {}  {}: {} samples over {:.1} s (every {:.1} s)",
        g.pid,
        g.python,
        g.coverage,
        g.samples.len(),
        g.span_s(),
        g.interval_s
    );
    if let (Some(a), Some(b)) = (first, last) {
        let _ = write!(
            out,
            "  RSS {} -> {} ({})  objects {} -> {}",
            human_bytes(a.rss),
            human_bytes(b.rss),
            signed_bytes(crate::analysis::diff::signed(b.rss, a.rss)),
            a.objects,
            b.objects
        );
    }
    out.push('\n');
    let grew: Vec<_> = g.types.iter().filter(|t| t.delta > 0).collect();
    if grew.is_empty() {
        out.push_str("no type grew\n");
        return out;
    }
    let retained = g.types.iter().any(|t| t.delta_retained.is_some());
    let _ = write!(out, "{:>10} {:>10} {:>12} {:>12} {:>10}", "COUNT", "DELTA", "BYTES", "ΔBYTES", "PER SEC");
    if retained {
        let _ = write!(out, " {:>12}", "ΔRETAINED");
    }
    let _ = writeln!(out, "  {:<7}  TYPE", "SUSPECT");
    for t in grew.iter().take(limit) {
        let _ = write!(
            out,
            "{:>10} {:>10} {:>12} {:>12} {:>10.2}",
            t.counts.last().copied().unwrap_or(0),
            signed_count(t.delta),
            human_bytes(t.bytes.last().copied().unwrap_or(0)),
            signed_bytes(t.delta_bytes),
            t.per_second,
        );
        if retained {
            let _ = write!(out, " {:>12}", t.delta_retained.map(signed_bytes).unwrap_or_default());
        }
        let _ = writeln!(out, "  {:<7}  {}", if t.monotonic { "LEAK?" } else { "" }, t.name);
        if let (true, Some(o)) = (t.monotonic, &t.owner) {
            let _ = writeln!(
                out,
                "{:>10} {:>10}  owner: {}",
                "",
                signed_count(o.delta),
                crate::report::why::path(&o.root, &o.steps)
            );
        }
    }
    if grew.len() > limit {
        let _ = writeln!(out, "({} more types grew)", grew.len() - limit);
    }
    let n = g.suspects().count();
    if n > 0 {
        let intervals = g.samples.len().saturating_sub(1);
        let _ = writeln!(
            out,
            "LEAK? = grew in every one of the {intervals} interval{} ({n} type{})",
            if intervals == 1 { "" } else { "s" },
            if n == 1 { "" } else { "s" }
        );
    }
    out
}
