//! Growth over a series of reports (`memspy growth`): per-type counts and bytes at each sample, ranked
//! by how much they grew, with the types that grew in every interval marked as leak suspects.
//! Pure computation; the table and the SVG chart live in `report::`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use crate::analysis::diff::signed;
use crate::analysis::histogram::Report;
use crate::analysis::why::{Anchor, PathRow, Step};

/// What the instances of one type retain at one sample, and the paths that hold them.
#[derive(Clone, Debug, Default)]
pub struct TypeOwners {
    pub retained: u64,
    /// What its instances retain less what instances of the program's types (not builtins) under them
    /// retain; instances under one of those count for none.
    pub owned: u64,
    pub paths: Vec<PathRow>,
}

/// The path that holds most of what a type gained: its count and retained bytes from the first
/// sample to the last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub root: Anchor,
    pub steps: Vec<Step>,
    pub delta: i64,
    pub delta_retained: i64,
}

/// Whole-process figures at one sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the first sample.
    pub t: f64,
    /// Resident set size in bytes (0 when unreadable).
    pub rss: u64,
    pub objects: u64,
    pub bytes: u64,
}

/// One type across the samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TypeGrowth {
    #[serde(rename = "type")]
    pub name: String,
    /// Objects at each sample (0 where the type was absent).
    pub counts: Vec<u64>,
    /// Bytes at each sample.
    pub bytes: Vec<u64>,
    /// Last count minus first count.
    pub delta: i64,
    /// Last bytes minus first bytes.
    pub delta_bytes: i64,
    /// `delta` per second over the whole run.
    pub per_second: f64,
    /// The count grew in every interval (a leak suspect). False with fewer than two samples.
    pub monotonic: bool,
    /// Retained bytes, last sample minus first (when both samples recorded the object graph).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delta_retained: Option<i64>,
    /// Growth of what its instances own: their retained bytes less what instances of the program's types
    /// (not builtins) inside them retain, not counting instances inside one of those. The ranking's
    /// key: a leaking class ranks above the dicts and strings it drags along, and above the list or
    /// dict that accumulates it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delta_owned: Option<i64>,
    /// The path whose objects of this type grew the most.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub owner: Option<Owner>,
}

/// The `memspy growth --json` document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Growth {
    pub pid: i32,
    /// The requested interval between samples.
    pub interval_s: f64,
    #[serde(default)]
    pub python: String,
    #[serde(default)]
    pub coverage: String,
    pub samples: Vec<Sample>,
    /// Every type seen in any sample, by `delta` descending, then `delta_bytes` descending, then name.
    pub types: Vec<TypeGrowth>,
}

/// The samples of a growth run as they are taken: per sample its totals, per type its count and bytes —
/// what [`Growth`] is made of, not the reports themselves (a long run grows by 16 bytes per type and
/// sample, not by a report).
#[derive(Default)]
pub struct Series {
    pid: i32,
    python: String,
    coverage: String,
    t0: f64,
    samples: Vec<Sample>,
    by_name: BTreeMap<String, (Vec<u64>, Vec<u64>)>,
}

impl Series {
    /// Adds the next sample.
    pub fn push(&mut self, r: &Report) {
        if self.samples.is_empty() {
            self.pid = r.pid;
            self.python = r.python.version.clone();
            self.coverage = r.coverage.clone();
            self.t0 = r.timestamp;
        }
        let i = self.samples.len();
        self.samples.push(Sample {
            t: r.timestamp - self.t0,
            rss: r.rss.unwrap_or(0),
            objects: r.totals.objects,
            bytes: r.totals.bytes,
        });
        for row in &r.types {
            if !self.by_name.contains_key(&row.name) {
                self.by_name.insert(row.name.clone(), Default::default());
            }
            let (counts, bytes) = self.by_name.get_mut(&row.name).expect("inserted above");
            counts.resize(i + 1, 0);
            bytes.resize(i + 1, 0);
            counts[i] += row.count;
            bytes[i] += row.bytes;
        }
    }

    /// Samples taken so far.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The growth table of the samples, for samples `interval_s` apart.
    pub fn growth(self, interval_s: f64) -> Growth {
        let n = self.samples.len();
        let span = self.samples.last().map(|s| s.t).unwrap_or(0.0);
        let mut types: Vec<TypeGrowth> = self
            .by_name
            .into_iter()
            .map(|(name, (mut counts, mut bytes))| {
                // A type absent from the last samples had none there.
                counts.resize(n, 0);
                bytes.resize(n, 0);
                let delta = signed(*counts.last().unwrap_or(&0), *counts.first().unwrap_or(&0));
                let delta_bytes = signed(*bytes.last().unwrap_or(&0), *bytes.first().unwrap_or(&0));
                TypeGrowth {
                    name,
                    monotonic: counts.len() >= 2 && counts.windows(2).all(|w| w[1] > w[0]),
                    per_second: if span > 0.0 { delta as f64 / span } else { 0.0 },
                    counts,
                    bytes,
                    delta,
                    delta_bytes,
                    delta_retained: None,
                    delta_owned: None,
                    owner: None,
                }
            })
            .collect();
        types.sort_by(|x, y| (y.delta, y.delta_bytes).cmp(&(x.delta, x.delta_bytes)).then_with(|| x.name.cmp(&y.name)));
        Growth { pid: self.pid, interval_s, python: self.python, coverage: self.coverage, samples: self.samples, types }
    }
}

impl Growth {
    /// Builds the growth table from reports taken in order.
    pub fn from_reports(interval_s: f64, reports: &[Report]) -> Growth {
        let mut s = Series::default();
        for r in reports {
            s.push(r);
        }
        s.growth(interval_s)
    }

    /// Adds what the first and the last sample's object graphs say: each type's retained growth and
    /// the path that gained the most of it; then ranks by owned growth (a type that drags others
    /// along ranks above them), then by retained growth, then by count.
    pub fn add_owners(&mut self, first: &HashMap<String, TypeOwners>, last: &HashMap<String, TypeOwners>) {
        let none = TypeOwners::default();
        for t in &mut self.types {
            let (a, b) = (first.get(&t.name).unwrap_or(&none), last.get(&t.name).unwrap_or(&none));
            t.delta_retained = Some(signed(b.retained, a.retained));
            t.delta_owned = Some(signed(b.owned, a.owned));
            // Frames match whatever line they reached in between (`Anchor::identity`).
            let before: HashMap<(Anchor, &[Step]), &PathRow> =
                a.paths.iter().map(|p| ((p.root.identity(), p.steps.as_slice()), p)).collect();
            t.owner = b
                .paths
                .iter()
                .map(|p| {
                    let old = before.get(&(p.root.identity(), p.steps.as_slice()));
                    let delta = signed(p.count, old.map_or(0, |o| o.count));
                    let delta_retained = signed(p.retained, old.map_or(0, |o| o.retained));
                    (delta, delta_retained, p)
                })
                .filter(|(d, r, _)| *d > 0 || *r > 0)
                .max_by_key(|(d, r, _)| (*d, *r))
                .map(|(delta, delta_retained, p)| Owner {
                    root: p.root.clone(),
                    steps: p.steps.clone(),
                    delta,
                    delta_retained,
                });
        }
        // Types whose count grew first: a container whose count did not (the list a leak is appended
        // to) is the owner of the growth, not what grew. Among those, the suspects (grown in every
        // interval) first: one object caught in flight at the last sample (a request's buffered
        // reader, owning its 8 KiB buffer) may own more than a slow leak gained, but it is no leak.
        let key = |t: &TypeGrowth| {
            (
                t.delta > 0,
                t.monotonic,
                t.delta_owned.unwrap_or(0),
                t.delta_retained.unwrap_or(0),
                t.delta,
                t.delta_bytes,
            )
        };
        self.types.sort_by(|x, y| key(y).cmp(&key(x)).then_with(|| x.name.cmp(&y.name)));
    }

    /// The types that grew in every interval.
    pub fn suspects(&self) -> impl Iterator<Item = &TypeGrowth> {
        self.types.iter().filter(|t| t.monotonic)
    }

    /// Seconds from the first to the last sample.
    pub fn span_s(&self) -> f64 {
        self.samples.last().map(|s| s.t).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ts: f64, rows: &[(&str, u64)]) -> Report {
        let rows: Vec<(&str, u64, u64)> = rows.iter().map(|&(n, c)| (n, c, c * 10)).collect();
        Report { pid: 7, timestamp: ts, rss: Some(4096), ..Report::from_rows(&rows) }
    }

    #[test]
    fn ranks_by_growth_and_marks_monotonic() {
        let reports = [
            report(100.0, &[("m.Leak", 10), ("m.Churn", 50), ("m.Gone", 3)]),
            report(110.0, &[("m.Leak", 20), ("m.Churn", 80), ("m.New", 1)]),
            report(120.0, &[("m.Leak", 30), ("m.Churn", 60), ("m.New", 1)]),
        ];
        let g = Growth::from_reports(10.0, &reports);
        assert_eq!(g.pid, 7);
        assert_eq!(g.samples.iter().map(|s| s.t).collect::<Vec<_>>(), [0.0, 10.0, 20.0]);
        let names: Vec<&str> = g.types.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["m.Leak", "m.Churn", "m.New", "m.Gone"]);
        let leak = &g.types[0];
        assert_eq!((leak.counts.clone(), leak.delta, leak.delta_bytes), (vec![10, 20, 30], 20, 200));
        assert_eq!(leak.per_second, 1.0);
        assert!(leak.monotonic);
        assert!(!g.types[1].monotonic, "grew then shrank");
        assert!(!g.types[2].monotonic, "grew only once");
        assert_eq!(g.types[3].counts, [3, 0, 0]);
        assert_eq!(g.suspects().count(), 1);
    }

    fn owners(owned: &[(&str, u64)]) -> HashMap<String, TypeOwners> {
        owned.iter().map(|&(n, o)| (n.to_string(), TypeOwners { retained: o, owned: o, paths: Vec::new() })).collect()
    }

    #[test]
    fn a_suspect_ranks_above_an_object_in_flight_that_owns_more() {
        let reports = [
            report(100.0, &[("m.Leak", 10), ("builtins.str", 100)]),
            report(110.0, &[("m.Leak", 15), ("builtins.str", 150)]),
            report(120.0, &[("m.Leak", 20), ("builtins.str", 200), ("io.BufferedReader", 1)]),
        ];
        let mut g = Growth::from_reports(10.0, &reports);
        let first = owners(&[("m.Leak", 8_000), ("builtins.str", 0)]);
        let last = owners(&[("m.Leak", 16_000), ("builtins.str", 0), ("io.BufferedReader", 8_400)]);
        g.add_owners(&first, &last);
        let names: Vec<&str> = g.types.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["m.Leak", "builtins.str", "io.BufferedReader"]);
        assert_eq!(g.types[0].delta_owned, Some(8_000));
        assert_eq!(g.types[2].delta_owned, Some(8_400));
    }

    #[test]
    fn one_sample_has_no_suspects() {
        let g = Growth::from_reports(1.0, &[report(5.0, &[("m.A", 1)])]);
        assert_eq!(g.suspects().count(), 0);
        assert_eq!(g.types[0].per_second, 0.0);
    }
}
