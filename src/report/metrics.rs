//! The Prometheus text exposition format (version 0.0.4) of what `memspy serve` sampled: one family per
//! metric, each with its `# HELP` and `# TYPE` lines, then its samples for every target. Pure: the
//! caller hands in the last sample of each target; nothing here reads a process.

use std::fmt::Write as _;

use crate::analysis::Report;
use crate::cpython::gc_stats::GcFigures;

/// The `Content-Type` of [`exposition`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `memspy serve` knows of one target when it is scraped.
#[derive(Clone, Debug, Default)]
pub struct TargetMetrics {
    pub pid: i32,
    /// The Python version ("3.12.1"), empty until the target was first attached.
    pub python: String,
    /// The last sample succeeded (false: the target exited, or could not be attached or read).
    pub up: bool,
    /// Samples attempted, and those that failed (attach or read errors, the target gone).
    pub samples: u64,
    pub errors: u64,
    /// The last sample that succeeded (kept after a failure: its time, pause and walk are still served;
    /// its heap figures only while `up`).
    pub last: Option<LastSample>,
}

/// One successful sample of a target.
#[derive(Clone, Debug, Default)]
pub struct LastSample {
    /// The report, its `types` cut to the top N by bytes (the totals are over every type).
    pub report: Report,
    /// How many types the walk saw (before the cut).
    pub types_seen: usize,
    /// The `gc` module's counters (thresholds, counts, collections), when they could be read.
    pub gc: Option<GcFigures>,
}

/// A metric family: name, type and help text, as listed in README's metrics table.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family { name, kind: Kind::Gauge, help }
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family { name, kind: Kind::Counter, help }
}

pub const BUILD_INFO: Family = gauge("memspy_build_info", "memspy's version (always 1).");
pub const SCRAPES: Family = counter("memspy_scrapes_total", "Scrapes of /metrics served.");
pub const UP: Family =
    gauge("memspy_up", "1 when the last sample of the target succeeded, 0 when it exited or could not be read.");
pub const SAMPLES: Family = counter("memspy_samples_total", "Samples of the target attempted (failed ones included).");
pub const SAMPLE_ERRORS: Family =
    counter("memspy_sample_errors_total", "Samples that failed (attach or read errors, the target gone).");
pub const LAST_TIMESTAMP: Family =
    gauge("memspy_last_sample_timestamp_seconds", "When the last successful sample was taken (Unix time).");
pub const LAST_PAUSE: Family =
    gauge("memspy_last_pause_seconds", "How long the target was stopped for the last successful sample.");
pub const LAST_WALK: Family = gauge("memspy_last_walk_seconds", "How long the last successful sample took.");
pub const PARTIAL: Family = gauge(
    "memspy_last_sample_partial",
    "1 when the last sample was cut short (--max-pause) and covers part of the heap.",
);
pub const APPROXIMATE: Family = gauge(
    "memspy_last_sample_approximate",
    "1 when the last sample may be inconsistent (read without pausing, or cut short).",
);
pub const OBJECTS: Family = gauge("memspy_objects", "Live objects of the type (the top types by bytes).");
pub const BYTES: Family =
    gauge("memspy_bytes", "Bytes of the type's objects, sum of sys.getsizeof (the top types by bytes).");
pub const HEAP_OBJECTS: Family = gauge("memspy_heap_objects", "Live objects found, all types.");
pub const HEAP_BYTES: Family =
    gauge("memspy_heap_bytes", "Bytes of the objects found, all types (sum of sys.getsizeof).");
pub const HEAP_GC_TRACKED: Family = gauge("memspy_heap_gc_tracked_objects", "Objects found in the GC's lists.");
pub const HEAP_TYPES: Family = gauge("memspy_heap_types", "Distinct types among the objects found.");
pub const RSS: Family = gauge("memspy_rss_bytes", "The target's resident set size.");
pub const INTERPRETERS: Family =
    gauge("memspy_interpreters", "Interpreters in the target (the main one and any subinterpreters).");
pub const GC_OBJECTS: Family = gauge(
    "memspy_gc_objects",
    "Objects in each GC generation, as len(gc.get_objects(generation)); permanent: gc.get_freeze_count().",
);
pub const GC_COUNT: Family = gauge("memspy_gc_counts", "gc.get_count() per generation.");
pub const GC_THRESHOLD: Family = gauge("memspy_gc_threshold", "gc.get_threshold() per generation.");
pub const GC_COLLECTIONS: Family =
    counter("memspy_gc_collections_total", "Collections of the generation (gc.get_stats()).");
pub const GC_COLLECTED: Family =
    counter("memspy_gc_collected_total", "Objects the generation's collections freed (gc.get_stats()).");
pub const GC_UNCOLLECTABLE: Family = counter(
    "memspy_gc_uncollectable_total",
    "Uncollectable objects the generation's collections found (gc.get_stats()).",
);
pub const GC_GARBAGE: Family = gauge("memspy_gc_garbage_objects", "len(gc.garbage).");
pub const GC_ENABLED: Family = gauge("memspy_gc_enabled", "1 when the cyclic GC is enabled (gc.isenabled()).");

/// Every family, in the order of the exposition.
pub const FAMILIES: &[Family] = &[
    BUILD_INFO,
    SCRAPES,
    UP,
    SAMPLES,
    SAMPLE_ERRORS,
    LAST_TIMESTAMP,
    LAST_PAUSE,
    LAST_WALK,
    PARTIAL,
    APPROXIMATE,
    OBJECTS,
    BYTES,
    HEAP_OBJECTS,
    HEAP_BYTES,
    HEAP_GC_TRACKED,
    HEAP_TYPES,
    RSS,
    INTERPRETERS,
    GC_OBJECTS,
    GC_COUNT,
    GC_THRESHOLD,
    GC_COLLECTIONS,
    GC_COLLECTED,
    GC_UNCOLLECTABLE,
    GC_GARBAGE,
    GC_ENABLED,
];

const GENERATIONS: [&str; 3] = ["0", "1", "2"];

/// A label value as the exposition format writes it: `\`, `"` and newline escaped.
pub fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A `# HELP` text: `\` and newline escaped.
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers as integers, and Go's spellings of the non-finite floats.
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Samples of one family, written after its HELP and TYPE lines.
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, f: &Family) {
        let _ = writeln!(self.out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(self.out, "# TYPE {} {}", f.name, f.kind.as_str());
    }

    fn sample(&mut self, f: &Family, labels: &[(&str, &str)], v: f64) {
        self.out.push_str(f.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", value(v));
    }
}

/// The `/metrics` page: every family of [`FAMILIES`], with the samples of every target.
pub fn exposition(targets: &[TargetMetrics], scrapes: u64) -> String {
    let mut w = Writer { out: String::with_capacity(4096 + targets.len() * 4096) };
    for f in FAMILIES {
        w.family(f);
        if f.name == BUILD_INFO.name {
            w.sample(f, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
            continue;
        }
        if f.name == SCRAPES.name {
            w.sample(f, &[], scrapes as f64);
            continue;
        }
        for t in targets {
            target_samples(&mut w, f, t);
        }
    }
    w.out
}

/// The samples of family `f` for target `t` (none when `t` has no figure for it).
fn target_samples(w: &mut Writer, f: &Family, t: &TargetMetrics) {
    let pid = t.pid.to_string();
    let base: [(&str, &str); 2] = [("pid", &pid), ("python", &t.python)];
    let one = |w: &mut Writer, v: f64| w.sample(f, &base, v);
    let bool_v = |b: bool| if b { 1.0 } else { 0.0 };
    match f.name {
        n if n == UP.name => return one(w, bool_v(t.up)),
        n if n == SAMPLES.name => return one(w, t.samples as f64),
        n if n == SAMPLE_ERRORS.name => return one(w, t.errors as f64),
        _ => {}
    }
    let Some(last) = &t.last else { return };
    let r = &last.report;
    match f.name {
        n if n == LAST_TIMESTAMP.name => return one(w, r.timestamp),
        n if n == LAST_PAUSE.name => return one(w, r.pause_ms / 1000.0),
        n if n == LAST_WALK.name => return one(w, r.elapsed_ms / 1000.0),
        _ => {}
    }
    // The heap's figures only while they are current.
    if !t.up {
        return;
    }
    match f.name {
        n if n == PARTIAL.name => one(w, bool_v(r.partial)),
        n if n == APPROXIMATE.name => one(w, bool_v(r.approximate)),
        n if n == OBJECTS.name || n == BYTES.name => {
            for row in &r.types {
                let v = if n == OBJECTS.name { row.count } else { row.bytes };
                w.sample(f, &[base[0], base[1], ("type", &row.name)], v as f64);
            }
        }
        n if n == HEAP_OBJECTS.name => one(w, r.totals.objects as f64),
        n if n == HEAP_BYTES.name => one(w, r.totals.bytes as f64),
        n if n == HEAP_GC_TRACKED.name => one(w, r.totals.gc_tracked as f64),
        n if n == HEAP_TYPES.name => one(w, last.types_seen as f64),
        n if n == RSS.name => {
            if let Some(rss) = r.rss {
                one(w, rss as f64)
            }
        }
        n if n == INTERPRETERS.name => one(w, r.interpreters as f64),
        n if n == GC_OBJECTS.name => {
            for (g, v) in GENERATIONS.iter().zip(r.gc.generations) {
                w.sample(f, &[base[0], base[1], ("generation", g)], v as f64);
            }
            w.sample(f, &[base[0], base[1], ("generation", "permanent")], r.gc.permanent as f64);
        }
        _ => gc_samples(w, f, &base, last.gc.as_ref()),
    }
}

/// The families read from the `gc` module's counters.
fn gc_samples(w: &mut Writer, f: &Family, base: &[(&str, &str); 2], gc: Option<&GcFigures>) {
    let Some(g) = gc else { return };
    let per_gen = |w: &mut Writer, values: [f64; 3]| {
        for (gen, v) in GENERATIONS.iter().zip(values) {
            w.sample(f, &[base[0], base[1], ("generation", gen)], v);
        }
    };
    let stat = |pick: fn(&crate::cpython::gc_stats::GenerationStats) -> u64| -> [f64; 3] {
        [0, 1, 2].map(|i| g.stats.get(i).map(|s| pick(s) as f64).unwrap_or(0.0))
    };
    match f.name {
        n if n == GC_COUNT.name => per_gen(w, g.counts.map(|c| c as f64)),
        n if n == GC_THRESHOLD.name => per_gen(w, g.thresholds.map(|c| c as f64)),
        n if n == GC_COLLECTIONS.name => per_gen(w, stat(|s| s.collections)),
        n if n == GC_COLLECTED.name => per_gen(w, stat(|s| s.collected)),
        n if n == GC_UNCOLLECTABLE.name => per_gen(w, stat(|s| s.uncollectable)),
        n if n == GC_GARBAGE.name => w.sample(f, base, g.garbage as f64),
        n if n == GC_ENABLED.name => w.sample(f, base, if g.enabled { 1.0 } else { 0.0 }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpython::gc_stats::GenerationStats;

    fn sample_target() -> TargetMetrics {
        let mut report = Report::from_rows(&[
            ("builtins.dict", 10, 2000),
            ("__main__.We\"ird\\Na\nme", 3, 300),
            ("builtins.str", 7, 100),
        ]);
        report.timestamp = 1_795_000_000.25;
        report.pause_ms = 12.5;
        report.elapsed_ms = 40.0;
        report.rss = Some(61_132_800);
        report.interpreters = 1;
        report.gc.generations = [1, 2, 3];
        report.gc.permanent = 4;
        report.types.truncate(2);
        let gc = GcFigures {
            enabled: true,
            thresholds: [2000, 10, 10],
            counts: [5, 1, 0],
            garbage: 0,
            stats: vec![GenerationStats { collections: 9, collected: 24, uncollectable: 1 }; 3],
            ..Default::default()
        };
        TargetMetrics {
            pid: 42,
            python: "3.12.1".into(),
            up: true,
            samples: 3,
            errors: 1,
            last: Some(LastSample { report, types_seen: 3, gc: Some(gc) }),
        }
    }

    /// A minimal reader of the text format: (name, labels, value) per sample line; HELP/TYPE per family.
    /// A sample line read back: name, labels, value.
    type Sample = (String, Vec<(String, String)>, String);

    fn parse(text: &str) -> (Vec<Sample>, Vec<String>) {
        let mut samples = Vec::new();
        let mut meta = Vec::new();
        for line in text.lines() {
            if let Some(m) = line.strip_prefix("# ") {
                meta.push(m.to_string());
                continue;
            }
            let (head, v) = line.rsplit_once(' ').expect("a value");
            let (name, labels) = match head.split_once('{') {
                None => (head.to_string(), Vec::new()),
                Some((n, rest)) => {
                    let rest = rest.strip_suffix('}').expect("closing brace");
                    let mut labels = Vec::new();
                    let mut chars = rest.chars().peekable();
                    while chars.peek().is_some() {
                        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                        assert_eq!(chars.next(), Some('"'));
                        let mut val = String::new();
                        loop {
                            match chars.next().expect("unterminated value") {
                                '\\' => match chars.next() {
                                    Some('n') => val.push('\n'),
                                    Some(c @ ('\\' | '"')) => val.push(c),
                                    c => panic!("bad escape {c:?}"),
                                },
                                '"' => break,
                                c => val.push(c),
                            }
                        }
                        if chars.peek() == Some(&',') {
                            chars.next();
                        }
                        labels.push((key, val));
                    }
                    (n.to_string(), labels)
                }
            };
            samples.push((name, labels, v.to_string()));
        }
        (samples, meta)
    }

    #[test]
    fn escapes_label_values_and_help() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("x\ny"), "x\\ny");
        assert_eq!(escape_label_value("plain.Name <locals>"), "plain.Name <locals>");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
    }

    #[test]
    fn values_as_the_format_spells_them() {
        assert_eq!(value(3.0), "3");
        assert_eq!(value(0.0125), "0.0125");
        assert_eq!(value(1_795_000_000.25), "1795000000.25");
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn every_family_has_help_and_type_once_and_before_its_samples() {
        let text = exposition(&[sample_target(), TargetMetrics { pid: 7, ..Default::default() }], 5);
        let (samples, meta) = parse(&text);
        for f in FAMILIES {
            let help = format!("HELP {} {}", f.name, escape_help(f.help));
            let ty = format!("TYPE {} {}", f.name, f.kind.as_str());
            assert_eq!(meta.iter().filter(|m| **m == help).count(), 1, "{}", f.name);
            assert_eq!(meta.iter().filter(|m| **m == ty).count(), 1, "{}", f.name);
            assert_eq!(f.kind == Kind::Counter, f.name.ends_with("_total"), "{}", f.name);
        }
        // Families are not interleaved: each family's lines are contiguous.
        let mut seen: Vec<String> = Vec::new();
        for line in text.lines() {
            let name = match line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
                Some(rest) => rest.split(' ').next().unwrap().to_string(),
                None => line.split(['{', ' ']).next().unwrap().to_string(),
            };
            if seen.last() != Some(&name) {
                assert!(!seen.contains(&name), "{name} is split");
                seen.push(name);
            }
        }
        assert!(text.ends_with('\n'));
        assert!(samples.iter().all(|(n, _, _)| FAMILIES.iter().any(|f| f.name == n)));
    }

    #[test]
    fn samples_of_a_target_that_is_up() {
        let text = exposition(&[sample_target()], 5);
        let (samples, _) = parse(&text);
        let get = |name: &str, extra: &[(&str, &str)]| -> Vec<String> {
            samples
                .iter()
                .filter(|(n, labels, _)| {
                    n == name
                        && extra.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
                        && (n.starts_with("memspy_build") || n == "memspy_scrapes_total" || {
                            labels.iter().any(|(k, v)| k == "pid" && v == "42")
                                && labels.iter().any(|(k, v)| k == "python" && v == "3.12.1")
                        })
                })
                .map(|(_, _, v)| v.clone())
                .collect()
        };
        assert_eq!(get("memspy_up", &[]), ["1"]);
        assert_eq!(get("memspy_scrapes_total", &[]), ["5"]);
        assert_eq!(get("memspy_samples_total", &[]), ["3"]);
        assert_eq!(get("memspy_sample_errors_total", &[]), ["1"]);
        assert_eq!(get("memspy_objects", &[("type", "builtins.dict")]), ["10"]);
        assert_eq!(get("memspy_bytes", &[("type", "builtins.dict")]), ["2000"]);
        // The name with a quote, a backslash and a newline comes back intact.
        assert_eq!(get("memspy_objects", &[("type", "__main__.We\"ird\\Na\nme")]), ["3"]);
        assert!(text.contains(r#"type="__main__.We\"ird\\Na\nme""#), "{text}");
        // Cut to the top 2 types; the totals are over all three.
        assert_eq!(get("memspy_objects", &[]).len(), 2);
        assert_eq!(get("memspy_heap_objects", &[]), ["20"]);
        assert_eq!(get("memspy_heap_bytes", &[]), ["2400"]);
        assert_eq!(get("memspy_heap_types", &[]), ["3"]);
        assert_eq!(get("memspy_rss_bytes", &[]), ["61132800"]);
        assert_eq!(get("memspy_last_pause_seconds", &[]), ["0.0125"]);
        assert_eq!(get("memspy_last_walk_seconds", &[]), ["0.04"]);
        assert_eq!(get("memspy_last_sample_timestamp_seconds", &[]), ["1795000000.25"]);
        assert_eq!(get("memspy_gc_objects", &[("generation", "2")]), ["3"]);
        assert_eq!(get("memspy_gc_objects", &[("generation", "permanent")]), ["4"]);
        assert_eq!(get("memspy_gc_threshold", &[("generation", "0")]), ["2000"]);
        assert_eq!(get("memspy_gc_counts", &[("generation", "0")]), ["5"]);
        assert_eq!(get("memspy_gc_collections_total", &[("generation", "1")]), ["9"]);
        assert_eq!(get("memspy_gc_uncollectable_total", &[("generation", "2")]), ["1"]);
        assert_eq!(get("memspy_gc_enabled", &[]), ["1"]);
        assert_eq!(get("memspy_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), ["1"]);
    }

    #[test]
    fn a_target_that_is_down_keeps_only_its_last_times() {
        let mut t = sample_target();
        t.up = false;
        t.errors = 2;
        let never = TargetMetrics { pid: 9, samples: 1, errors: 1, ..Default::default() };
        let text = exposition(&[t, never], 0);
        let (samples, _) = parse(&text);
        let of = |pid: &str| -> Vec<String> {
            samples
                .iter()
                .filter(|(_, l, _)| l.iter().any(|(k, v)| k == "pid" && v == pid))
                .map(|(n, _, v)| format!("{n} {v}"))
                .collect()
        };
        assert_eq!(
            of("42"),
            [
                "memspy_up 0",
                "memspy_samples_total 3",
                "memspy_sample_errors_total 2",
                "memspy_last_sample_timestamp_seconds 1795000000.25",
                "memspy_last_pause_seconds 0.0125",
                "memspy_last_walk_seconds 0.04",
            ]
        );
        assert_eq!(of("9"), ["memspy_up 0", "memspy_samples_total 1", "memspy_sample_errors_total 1"]);
        // A target never attached has no version yet: an empty label (Prometheus drops it).
        assert!(text.contains("memspy_up{pid=\"9\",python=\"\"} 0\n"), "{text}");
    }
}
