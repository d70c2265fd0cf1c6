//! Presentation: plain tables for people, JSON for scripts, the Prometheus text format (and the small
//! HTTP server that serves it).

pub mod diff;
pub mod growth;
pub mod heapsnapshot;
pub mod html;
pub mod http;
pub mod metrics;
pub mod plot;
pub mod progress;
pub mod tui;
pub mod why;

use std::fmt::Write as _;

use crate::analysis::histogram::{sort_rows, Report, SortKey};

/// `12345678` → `11.8 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The one-line header above a table.
pub fn header(r: &Report) -> String {
    let mut s = format!(
        "{}PID {}  Python {}{}  {}: {} objects, {}",
        r.file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(),
        r.pid,
        r.python.version,
        if r.python.debug { " (debug)" } else { "" },
        r.coverage,
        r.totals.objects,
        human_bytes(r.totals.bytes)
    );
    if let Some(rss) = r.rss {
        let _ = write!(s, "  RSS {}", human_bytes(rss));
    }
    let _ = write!(
        s,
        "  gen {}/{}/{} perm {}  paused {:.1} ms, took {:.1} ms",
        r.gc.generations[0], r.gc.generations[1], r.gc.generations[2], r.gc.permanent, r.pause_ms, r.elapsed_ms
    );
    let sc = &r.scan;
    if sc.decode_errors > 0 || sc.unreadable > 0 {
        let _ = write!(
            s,
            "  [{} objects not decoded, {} unreadable: what they hold may be missing; -v]",
            sc.decode_errors, sc.unreadable
        );
    }
    if r.partial {
        s.push_str("  [PARTIAL: cut short]");
    } else if r.approximate {
        s.push_str("  [approximate: read without pausing");
        if let Some(c) = sc.changed_under_walk {
            let _ = write!(s, "; {:.1}% of the objects sampled changed under the walk", c.percent());
        }
        if sc.broken_lists > 0 || sc.inconsistent_pages > 0 {
            let _ =
                write!(s, "; {} lists broke off, {} heap pages inconsistent", sc.broken_lists, sc.inconsistent_pages);
        }
        s.push(']');
    }
    s
}

/// The table of types: the top `limit` rows by `sort`.
pub fn table(r: &Report, sort: SortKey, limit: usize) -> String {
    let mut rows = r.types.clone();
    sort_rows(&mut rows, sort);
    let total_bytes = r.totals.bytes.max(1);
    let mut out = String::new();
    let _ = writeln!(out, "{}", header(r));
    let retained = rows.iter().any(|r| r.retained.is_some());
    let _ = write!(out, "{:>10} {:>10} {:>12} {:>6}", "COUNT", "GC", "BYTES", "%");
    if retained {
        let _ = write!(out, " {:>12}", "RETAINED");
    }
    let _ = writeln!(out, " {:>12} {:>9}  TYPE", "REFCOUNT", "IMMORTAL");
    for row in rows.iter().take(limit) {
        // `~`: sizes approximated (a `__sizeof__` memspy does not model).
        let bytes = if row.bytes_exact { human_bytes(row.bytes) } else { format!("~{}", human_bytes(row.bytes)) };
        let _ = write!(
            out,
            "{:>10} {:>10} {:>12} {:>5.1}%",
            row.count,
            row.gc_tracked,
            bytes,
            row.bytes as f64 * 100.0 / total_bytes as f64,
        );
        if retained {
            let _ = write!(out, " {:>12}", row.retained.map(human_bytes).unwrap_or_default());
        }
        let _ = writeln!(out, " {:>12} {:>9}  {}", row.refcount, row.immortal, row.name);
    }
    if rows.len() > limit {
        let rest: u64 = rows[limit..].iter().map(|r| r.bytes).sum();
        let n: u64 = rows[limit..].iter().map(|r| r.count).sum();
        let _ =
            writeln!(out, "{:>10} {:>10} {:>12}         ({} more types)", n, "", human_bytes(rest), rows.len() - limit);
    }
    if rows.iter().take(limit).any(|r| !r.bytes_exact) {
        let _ = writeln!(out, "~ bytes approximated: the type has a __sizeof__ of its own that memspy does not model");
    }
    out
}

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("reports serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_says_what_could_not_be_decoded() {
        let mut r = Report::from_rows(&[("builtins.dict", 3, 300)]);
        assert!(!header(&r).contains("not decoded"), "{}", header(&r));
        r.scan.decode_errors = 2;
        assert!(header(&r).contains("[2 objects not decoded, 0 unreadable"), "{}", header(&r));
        r.approximate = true;
        assert!(header(&r).ends_with("[approximate: read without pausing]"), "{}", header(&r));
        r.scan.inconsistent_pages = 3;
        assert!(
            header(&r).ends_with("[approximate: read without pausing; 0 lists broke off, 3 heap pages inconsistent]"),
            "{}",
            header(&r)
        );
        r.scan.changed_under_walk = Some(crate::walk::recheck::Changed { checked: 1000, changed: 25 });
        assert!(
            header(&r).ends_with(
                "[approximate: read without pausing; 2.5% of the objects sampled changed under the walk; 0 lists \
                 broke off, 3 heap pages inconsistent]"
            ),
            "{}",
            header(&r)
        );
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
