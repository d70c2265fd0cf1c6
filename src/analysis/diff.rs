//! What changed between two reports: per-type differences of their histograms (`memspy diff`, and the
//! Δ columns of the live `top` view). Pure computation; presentation lives in `report::`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::histogram::Report;
use crate::analysis::why::{Anchor, PathRow, Step};

/// One side of a diff: where the report came from and its totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiffSide {
    /// The file it was read from (empty for in-memory reports).
    #[serde(default)]
    pub file: String,
    pub pid: i32,
    pub python: String,
    pub coverage: String,
    pub timestamp: f64,
    pub rss: Option<u64>,
    pub objects: u64,
    pub bytes: u64,
}

impl DiffSide {
    pub fn of(r: &Report, file: &str) -> DiffSide {
        DiffSide {
            file: file.to_string(),
            pid: r.pid,
            python: r.python.version.clone(),
            coverage: r.coverage.clone(),
            timestamp: r.timestamp,
            rss: r.rss,
            objects: r.totals.objects,
            bytes: r.totals.bytes,
        }
    }
}

/// One type's change from `a` to `b` (a type absent on one side counts as 0 there).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeDiff {
    #[serde(rename = "type")]
    pub name: String,
    pub count_a: u64,
    pub count_b: u64,
    pub bytes_a: u64,
    pub bytes_b: u64,
    /// `count_b - count_a`.
    pub delta: i64,
    /// `bytes_b - bytes_a`.
    pub delta_bytes: i64,
}

impl TypeDiff {
    pub fn changed(&self) -> bool {
        self.delta != 0 || self.delta_bytes != 0
    }
}

/// The `memspy diff --json` document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    pub a: DiffSide,
    pub b: DiffSide,
    /// Seconds from `a` to `b` (by their timestamps).
    pub elapsed_s: f64,
    /// `b.rss - a.rss`, when both are known.
    pub rss_delta: Option<i64>,
    pub objects_delta: i64,
    pub bytes_delta: i64,
    /// Every type of either report, by `delta_bytes` descending, then `delta` descending, then name.
    pub types: Vec<TypeDiff>,
    /// When both sides are dumps with their graphs: for the types that grew most, how the change
    /// is held (the paths of `why`, counted on each side).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathDiff>,
}

/// The instances of one type held one way, on each side of a diff.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathDiff {
    #[serde(rename = "type")]
    pub type_name: String,
    pub count_a: u64,
    pub count_b: u64,
    pub delta: i64,
    pub bytes_delta: i64,
    pub root: Anchor,
    pub steps: Vec<Step>,
}

/// The rows of one type's paths on each side, matched by anchor and steps, largest growth first.
pub fn diff_paths(type_name: &str, a: &[PathRow], b: &[PathRow]) -> Vec<PathDiff> {
    let mut by: BTreeMap<String, PathDiff> = BTreeMap::new();
    for (side, rows) in [(0, a), (1, b)] {
        for r in rows {
            let key = serde_json::to_string(&(&r.root.identity(), &r.steps)).expect("paths serialize");
            let d = by.entry(key).or_insert_with(|| PathDiff {
                type_name: type_name.to_string(),
                count_a: 0,
                count_b: 0,
                delta: 0,
                bytes_delta: 0,
                root: r.root.clone(),
                steps: r.steps.clone(),
            });
            let bytes = r.bytes.min(i64::MAX as u64) as i64;
            if side == 1 {
                // A frame's line as the later side has it.
                d.root = r.root.clone();
            }
            if side == 0 {
                d.count_a += r.count;
                d.bytes_delta -= bytes;
            } else {
                d.count_b += r.count;
                d.bytes_delta += bytes;
            }
        }
    }
    let mut out: Vec<PathDiff> = by
        .into_values()
        .map(|mut d| {
            d.delta = signed(d.count_b, d.count_a);
            d
        })
        .filter(|d| d.delta != 0)
        .collect();
    out.sort_by_key(|d| std::cmp::Reverse((d.delta, d.bytes_delta)));
    out
}

pub fn signed(b: u64, a: u64) -> i64 {
    (b as i128 - a as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The per-type difference `b - a`.
pub fn diff_reports(a: &Report, b: &Report) -> Diff {
    diff_named(a, "", b, "")
}

/// As [`diff_reports`], recording the files the reports came from.
pub fn diff_named(a: &Report, file_a: &str, b: &Report, file_b: &str) -> Diff {
    let mut by_name: BTreeMap<&str, TypeDiff> = BTreeMap::new();
    for row in &a.types {
        let d = by_name.entry(&row.name).or_insert_with(|| TypeDiff { name: row.name.clone(), ..Default::default() });
        // Saturating: a snapshot file may say anything (two rows of one name near u64::MAX).
        d.count_a = d.count_a.saturating_add(row.count);
        d.bytes_a = d.bytes_a.saturating_add(row.bytes);
    }
    for row in &b.types {
        let d = by_name.entry(&row.name).or_insert_with(|| TypeDiff { name: row.name.clone(), ..Default::default() });
        // Saturating: a snapshot file may say anything (two rows of one name near u64::MAX).
        d.count_b = d.count_b.saturating_add(row.count);
        d.bytes_b = d.bytes_b.saturating_add(row.bytes);
    }
    let mut types: Vec<TypeDiff> = by_name
        .into_values()
        .map(|mut d| {
            d.delta = signed(d.count_b, d.count_a);
            d.delta_bytes = signed(d.bytes_b, d.bytes_a);
            d
        })
        .collect();
    types.sort_by(|x, y| (y.delta_bytes, y.delta).cmp(&(x.delta_bytes, x.delta)).then_with(|| x.name.cmp(&y.name)));
    let sa = DiffSide::of(a, file_a);
    let sb = DiffSide::of(b, file_b);
    Diff {
        elapsed_s: b.timestamp - a.timestamp,
        rss_delta: match (a.rss, b.rss) {
            (Some(x), Some(y)) => Some(signed(y, x)),
            _ => None,
        },
        objects_delta: signed(sb.objects, sa.objects),
        bytes_delta: signed(sb.bytes, sa.bytes),
        a: sa,
        b: sb,
        types,
        paths: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ts: f64, rows: &[(&str, u64, u64)]) -> Report {
        Report { timestamp: ts, rss: Some(1000), ..Report::from_rows(rows) }
    }

    #[test]
    fn differences_per_type_and_totals() {
        let a = report(10.0, &[("a.A", 5, 500), ("a.Gone", 2, 20), ("a.Same", 1, 10)]);
        let b = report(70.0, &[("a.A", 8, 800), ("a.New", 1, 50), ("a.Same", 1, 10)]);
        let d = diff_reports(&a, &b);
        assert_eq!(d.elapsed_s, 60.0);
        assert_eq!(d.objects_delta, 10 - 8);
        assert_eq!(d.bytes_delta, 860 - 530);
        assert_eq!(d.rss_delta, Some(0));
        let names: Vec<&str> = d.types.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.A", "a.New", "a.Same", "a.Gone"]);
        assert_eq!((d.types[0].delta, d.types[0].delta_bytes), (3, 300));
        assert_eq!((d.types[3].count_a, d.types[3].count_b, d.types[3].delta), (2, 0, -2));
        assert!(!d.types[2].changed());
        // The sum of the per-type deltas is the difference of the totals.
        assert_eq!(d.types.iter().map(|t| t.delta_bytes).sum::<i64>(), d.bytes_delta);
    }

    #[test]
    fn a_frame_that_moved_on_is_the_same_root() {
        let frame = |line| Anchor { line: Some(line), def_line: Some(3), thread: Some(7), ..Anchor::new("frame", "f") };
        let step = Step { edge: "x".into(), type_name: "a.A".into(), conservative: false };
        let row = |count, line| PathRow {
            count,
            bytes: count * 10,
            retained: 0,
            root: frame(line),
            steps: vec![step.clone()],
        };
        let d = diff_paths("a.A", &[row(2, 5)], &[row(5, 9)]);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].count_a, d[0].count_b, d[0].delta, d[0].root.line), (2, 5, 3, Some(9)));
    }

    #[test]
    fn rows_of_one_name_that_overflow_saturate() {
        // A hostile snapshot file: two rows of one type whose counts and bytes sum past u64::MAX.
        let a = report(0.0, &[("a.A", u64::MAX, u64::MAX), ("a.A", 2, 3)]);
        let d = diff_reports(&a, &a);
        assert_eq!((d.types[0].count_a, d.types[0].bytes_b, d.types[0].delta), (u64::MAX, u64::MAX, 0));
    }
}
