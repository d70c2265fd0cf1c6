//! The `memspy diff` table: what changed between two snapshots.

use std::fmt::Write as _;

use crate::analysis::diff::{Diff, DiffSide};
use crate::report::growth::{signed_bytes, signed_count};
use crate::report::human_bytes;

/// Seconds since the epoch as `2026-05-01 12:34:56 UTC`.
pub fn utc_time(ts: f64) -> String {
    if !ts.is_finite() || ts <= 0.0 {
        return "unknown time".into();
    }
    let secs = ts as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `3h 02m 05s`, `4m 10s`, `12.5 s`.
pub fn duration(s: f64) -> String {
    let neg = s < 0.0;
    let a = s.abs();
    let t = a as u64;
    let body = if a < 60.0 {
        format!("{a:.1} s")
    } else if t < 3600 {
        format!("{}m {:02}s", t / 60, t % 60)
    } else {
        format!("{}h {:02}m {:02}s", t / 3600, t % 3600 / 60, t % 60)
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

fn side(label: &str, s: &DiffSide) -> String {
    format!(
        "{label} {}  {}  PID {}  Python {}  {}  {} objects, {}  RSS {}",
        if s.file.is_empty() { "-" } else { &s.file },
        utc_time(s.timestamp),
        s.pid,
        s.python,
        s.coverage,
        s.objects,
        human_bytes(s.bytes),
        s.rss.map(human_bytes).unwrap_or_else(|| "?".into())
    )
}

/// The diff table: the `limit` types with the largest changes (unchanged types are left out).
pub fn table(d: &Diff, limit: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", side("A", &d.a));
    let _ = writeln!(out, "{}", side("B", &d.b));
    let _ = writeln!(
        out,
        "B - A: {} later  objects {}  bytes {}  RSS {}",
        duration(d.elapsed_s),
        signed_count(d.objects_delta),
        signed_bytes(d.bytes_delta),
        d.rss_delta.map(signed_bytes).unwrap_or_else(|| "?".into())
    );
    if d.a.pid != d.b.pid {
        let _ = writeln!(out, "note: the snapshots are of different processes (PID {} and {})", d.a.pid, d.b.pid);
    }
    if d.a.coverage != d.b.coverage {
        let _ = writeln!(out, "note: the snapshots count different objects ({} and {})", d.a.coverage, d.b.coverage);
    }
    let mut changed: Vec<_> = d.types.iter().filter(|t| t.changed()).collect();
    if changed.is_empty() {
        out.push_str("no type changed\n");
        return out;
    }
    // Largest changes first, growth and shrinkage alike.
    changed.sort_by(|x, y| {
        (y.delta_bytes.unsigned_abs(), y.delta.unsigned_abs())
            .cmp(&(x.delta_bytes.unsigned_abs(), x.delta.unsigned_abs()))
            .then_with(|| x.name.cmp(&y.name))
    });
    let _ = writeln!(
        out,
        "{:>10} {:>10} {:>10} {:>12} {:>12} {:>12}  TYPE",
        "COUNT A", "COUNT B", "DELTA", "BYTES A", "BYTES B", "ΔBYTES"
    );
    for t in changed.iter().take(limit) {
        let tag = match (t.count_a, t.count_b) {
            (0, _) => "  (new)",
            (_, 0) => "  (gone)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "{:>10} {:>10} {:>10} {:>12} {:>12} {:>12}  {}{tag}",
            t.count_a,
            t.count_b,
            signed_count(t.delta),
            human_bytes(t.bytes_a),
            human_bytes(t.bytes_b),
            signed_bytes(t.delta_bytes),
            t.name
        );
    }
    if changed.len() > limit {
        let _ = writeln!(out, "({} more types changed)", changed.len() - limit);
    }
    if !d.paths.is_empty() {
        let _ = writeln!(out, "\nwhere the types that grew most are held:");
        let _ = writeln!(out, "{:>10} {:>10} {:>10} {:>12}  HELD BY", "COUNT A", "COUNT B", "DELTA", "ΔBYTES");
        for p in &d.paths {
            let _ = writeln!(
                out,
                "{:>10} {:>10} {:>10} {:>12}  {}",
                p.count_a,
                p.count_b,
                signed_count(p.delta),
                signed_bytes(p.bytes_delta),
                super::why::path(&p.root, &p.steps)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(utc_time(0.0), "unknown time");
        assert_eq!(utc_time(1_700_000_000.0), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_time(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(duration(12.25), "12.2 s");
        assert_eq!(duration(3.0 * 3600.0 + 125.0), "3h 02m 05s");
        assert_eq!(duration(-61.0), "-1m 01s");
    }
}
