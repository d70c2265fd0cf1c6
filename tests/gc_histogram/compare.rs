//! The comparison of one `memspy top --json` report with the fixture's ground truth (and with the
//! full-heap report of the same process), as lists of mismatches and warnings.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use super::common::*;

/// How the fixture builds its heap: in one go, or half of it frozen (`gc.freeze()`, `--freeze`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Plain,
    Freeze,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Freeze => "freeze",
        }
    }

    pub fn args(self) -> &'static [&'static str] {
        match self {
            Mode::Plain => &[],
            Mode::Freeze => &["--freeze"],
        }
    }
}

/// Bytes beyond which a per-type sum can only come from reading garbage (the
/// fixture's whole heap is a few MiB).
const IMPLAUSIBLE_BYTES: u64 = 1 << 40;

/// Mismatches (they fail the test) and warnings (printed) found by [`compare`].
#[derive(Default)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Types whose bytes are compared exactly (plain mode, where memspy reports frozen == 0).
fn bytes_compared(name: &str) -> bool {
    matches!(
        name,
        "builtins.list"
            | "builtins.dict"
            | "builtins.set"
            | "builtins.frozenset"
            | "builtins.function"
            | "builtins.type"
            | "builtins.tuple"
            // types with their own __sizeof__ that memspy recomputes
            | "builtins.generator"
            | "builtins.coroutine"
            | "builtins.async_generator"
            | "builtins.frame"
            | "collections.deque"
            | "collections.OrderedDict"
            | "_io.BytesIO"
            | "_io.BufferedReader"
            | "_io.BufferedWriter"
            | "_io.BufferedRandom"
            | "_struct.Struct"
    ) || name.starts_with("__main__.")
}

#[derive(Default, Clone, Copy, Debug)]
struct Row {
    count: u64,
    gc_tracked: u64,
    frozen: u64,
    bytes: u64,
    entries: u32,
}

impl Row {
    fn live(&self) -> i128 {
        self.gc_tracked as i128 - self.frozen as i128
    }
}

pub fn u64_map(v: &Value, path: &str) -> Result<BTreeMap<String, u64>, String> {
    let x = lookup(v, path)?;
    let obj = x.as_object().ok_or_else(|| format!("truth `{}` is not an object", path))?;
    obj.iter()
        .map(|(k, v)| {
            v.as_u64().map(|n| (k.clone(), n)).ok_or_else(|| format!("truth `{}.{}` is not an integer", path, k))
        })
        .collect()
}

/// memspy's type rows, keyed by type name (rows with the same name are summed).
fn memspy_rows(report: &Value, errors: &mut Vec<String>, warnings: &mut Vec<String>) -> BTreeMap<String, Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let types = match report.get("types").and_then(|t| t.as_array()) {
        Some(t) => t,
        None => {
            errors.push("memspy JSON has no `types` array".into());
            return rows;
        }
    };
    for (i, t) in types.iter().enumerate() {
        let name = match t.get("type").and_then(|n| n.as_str()) {
            Some(n) => n.to_string(),
            None => {
                errors.push(format!("memspy types[{}] has no string `type`: {}", i, t));
                continue;
            }
        };
        let mut field = |f: &str| match t.get(f).and_then(|x| x.as_u64()) {
            Some(x) => x,
            None => {
                errors.push(format!("memspy type {}: field `{}` missing or not an unsigned integer: {}", name, f, t));
                0
            }
        };
        let (count, gc_tracked, frozen, bytes) = (field("count"), field("gc_tracked"), field("frozen"), field("bytes"));
        let r = rows.entry(name.clone()).or_default();
        r.count += count;
        r.gc_tracked += gc_tracked;
        r.frozen += frozen;
        r.bytes = r.bytes.saturating_add(bytes);
        r.entries += 1;
        if frozen > gc_tracked {
            errors.push(format!("memspy type {}: frozen {} > gc_tracked {}", name, frozen, gc_tracked));
        }
        if count != gc_tracked {
            warnings.push(format!(
                "memspy type {}: count {} != gc_tracked {} (coverage is gc-tracked)",
                name, count, gc_tracked
            ));
        }
    }
    for (name, r) in &rows {
        if r.entries > 1 {
            warnings.push(format!("memspy lists type name {} {} times (summed)", name, r.entries));
        }
    }
    rows
}

/// Compares `report` (of the fixture `fixture_pid` under `interp`, in `mode`) with the fixture's `truth`.
pub fn compare(
    mode: Mode,
    interp: &Interpreter,
    binary: Option<&BinaryInfo>,
    fixture_pid: u32,
    truth: &Value,
    report: &Value,
    found: &mut Findings,
) {
    let (errors, warnings) = (&mut found.errors, &mut found.warnings);
    let mut check = |what: &str, r: Result<(), String>| {
        if let Err(e) = r {
            errors.push(format!("{}: {}", what, e));
        }
    };

    // --- header: pid, python block
    check(
        "pid",
        get_u64(report, "pid").and_then(|p| {
            if p == fixture_pid as u64 {
                Ok(())
            } else {
                Err(format!("expected {} got {}", fixture_pid, p))
            }
        }),
    );
    let truth_version = truth["version"].as_str().unwrap_or_default().to_string();
    let truth_full = truth["full_version"].as_str().unwrap_or_default().to_string();
    check(
        "python.version",
        get_str(report, "python.version").and_then(|v| {
            if v == truth_version || (!truth_full.is_empty() && v == truth_full) {
                Ok(())
            } else {
                Err(format!("expected {} got {}", truth_version, v))
            }
        }),
    );
    check(
        "python.debug",
        get_bool(report, "python.debug").and_then(|d| {
            let want = truth["debug"].as_bool().unwrap_or(interp.debug);
            if d == want {
                Ok(())
            } else {
                Err(format!("expected {} got {}", want, d))
            }
        }),
    );
    check(
        "python.free_threaded",
        get_bool(report, "python.free_threaded").and_then(|f| {
            let want = get_bool(truth, "free_threaded").map_err(|e| format!("truth: {e}"))?;
            if f == want {
                Ok(())
            } else {
                Err(format!("expected {} (Py_GIL_DISABLED) got {}", want, f))
            }
        }),
    );
    check(
        "python.executable",
        get_str(report, "python.executable").and_then(|e| {
            let got = fs::canonicalize(e).unwrap_or_else(|_| PathBuf::from(e));
            let want_raw = truth["executable"].as_str().unwrap_or_default();
            let want = fs::canonicalize(want_raw).unwrap_or_else(|_| PathBuf::from(want_raw));
            if got == want || got == interp.path {
                Ok(())
            } else {
                Err(format!("expected {} got {}", want.display(), e))
            }
        }),
    );
    if let Some(b) = binary {
        check(
            "python.linkage",
            get_str(report, "python.linkage").and_then(|l| {
                if l == b.linkage {
                    Ok(())
                } else {
                    Err(format!("expected {} (_PyRuntime in {}) got {}", b.linkage, b.runtime_elf.display(), l))
                }
            }),
        );
        check(
            "python.stripped",
            get_bool(report, "python.stripped").and_then(|s| {
                if s == b.stripped {
                    Ok(())
                } else {
                    Err(format!("expected {} ({}) got {}", b.stripped, b.runtime_elf.display(), s))
                }
            }),
        );
    }
    check(
        "coverage",
        get_str(report, "coverage").and_then(|c| {
            if c == "gc-tracked" {
                Ok(())
            } else {
                Err(format!("expected \"gc-tracked\" got {:?}", c))
            }
        }),
    );
    // Optional flags: a blocking snapshot of a quiet process is neither partial nor approximate.
    for flag in ["partial", "approximate"] {
        if let Some(v) = report.get(flag) {
            check(flag, if v.as_bool() == Some(false) { Ok(()) } else { Err(format!("expected false got {}", v)) });
        }
    }

    // --- generations and the permanent generation
    let truth_gens = get_u64_array(truth, "generations").unwrap_or_default();
    let truth_frozen = truth["freeze_count"].as_u64().unwrap_or(0);
    let gens = get_u64_array(report, "gc.generations");
    check(
        "gc.generations",
        gens.clone().and_then(|g| {
            if g == truth_gens {
                Ok(())
            } else {
                Err(format!("expected {:?} got {:?}", truth_gens, g))
            }
        }),
    );
    let permanent = get_u64(report, "gc.permanent");
    check(
        "gc.permanent",
        permanent.clone().and_then(|p| {
            if p == truth_frozen {
                Ok(())
            } else {
                Err(format!("expected {} (gc.get_freeze_count()) got {}", truth_frozen, p))
            }
        }),
    );

    // --- per type
    let counts = match u64_map(truth, "gc_counts") {
        Ok(c) => c,
        Err(e) => {
            errors.push(e);
            return;
        }
    };
    let sizes = u64_map(truth, "sizes").unwrap_or_default();
    let rows = memspy_rows(report, errors, warnings);
    let names: BTreeSet<&String> = counts.keys().chain(rows.keys()).collect();
    for name in names {
        let want = counts.get(name).copied().unwrap_or(0) as i128;
        let row = rows.get(name);
        let got = row.map(|r| r.live()).unwrap_or(0);
        if want != got {
            let detail = match row {
                None => "type missing from memspy output".to_string(),
                Some(r) => format!(
                    "gc_tracked {} - frozen {}{}",
                    r.gc_tracked,
                    r.frozen,
                    if want == 0 { "; type not in gc.get_objects()" } else { "" }
                ),
            };
            errors.push(format!("type {}: expected {} in generations 0-2, got {} ({})", name, want, got, detail));
        }
    }

    // --- exact frozen counts of the fixture's own classes
    let per_part = u64_map(truth, "own_per_part").unwrap_or_default();
    let frozen_parts = truth["frozen_parts"].as_u64().unwrap_or(0);
    for (name, n) in &per_part {
        let want = n * frozen_parts;
        let got = rows.get(name).map(|r| r.frozen).unwrap_or(0);
        if want != got {
            errors.push(format!("type {}: expected {} frozen (permanent generation), got {}", name, want, got));
        }
    }

    // --- bytes
    for (name, row) in &rows {
        let want = match sizes.get(name) {
            Some(w) => *w,
            None => continue,
        };
        if row.live() != counts.get(name).copied().unwrap_or(0) as i128 {
            continue; // already reported; bytes cannot match
        }
        if row.frozen == 0 {
            if row.bytes != want {
                let diff = row.bytes as i128 - want as i128;
                let msg = format!(
                    "bytes of {}: expected {} (sum of sys.getsizeof) got {} (diff {:+}, {} objects)",
                    name, want, row.bytes, diff, row.gc_tracked
                );
                if mode == Mode::Plain && bytes_compared(name) {
                    errors.push(msg);
                } else {
                    warnings.push(msg);
                }
            }
        } else if row.bytes < want && bytes_compared(name) {
            errors.push(format!(
                "bytes of {}: {} (incl. {} frozen objects) is less than the {} of the unfrozen objects alone",
                name, row.bytes, row.frozen, want
            ));
        }
    }

    // --- no type's bytes may be absurd (garbage read as a size), whatever the type
    for (name, row) in &rows {
        if row.bytes > IMPLAUSIBLE_BYTES {
            errors.push(format!(
                "bytes of {}: implausible {} for {} objects (sys.getsizeof sum {})",
                name,
                row.bytes,
                row.gc_tracked,
                sizes.get(name).map(|s| s.to_string()).unwrap_or_else(|| "n/a".into())
            ));
        }
    }

    // --- memspy's own totals must add up
    let sum_tracked: u64 = rows.values().map(|r| r.gc_tracked).sum();
    let sum_frozen: u64 = rows.values().map(|r| r.frozen).sum();
    let sum_bytes: u128 = rows.values().map(|r| r.bytes as u128).sum();
    if let Ok(t) = get_u64(report, "totals.gc_tracked") {
        if t != sum_tracked {
            errors.push(format!("memspy totals.gc_tracked {} != sum over types {}", t, sum_tracked));
        }
    } else {
        errors.push("memspy JSON lacks totals.gc_tracked".into());
    }
    if let Ok(t) = get_u64(report, "totals.bytes") {
        if t as u128 != sum_bytes {
            warnings.push(format!("memspy totals.bytes {} != sum over types {}", t, sum_bytes));
        }
    }
    if let (Ok(g), Ok(p)) = (gens, permanent) {
        let gen_sum: u64 = g.iter().sum();
        if gen_sum + p != sum_tracked {
            errors.push(format!(
                "memspy inconsistent: generations {:?} + permanent {} = {} but types' gc_tracked sum to {}",
                g,
                p,
                gen_sum + p,
                sum_tracked
            ));
        }
        if p != sum_frozen {
            errors.push(format!("memspy inconsistent: gc.permanent {} but types' frozen sum to {}", p, sum_frozen));
        }
    }
}

/// The GC figures of a full-heap report must equal those of the --gc-only report.
pub fn compare_gc_figures(gc_only: &Value, full: &Value, errors: &mut Vec<String>) {
    let (a, b) = (get_u64_array(gc_only, "gc.generations"), get_u64_array(full, "gc.generations"));
    if a != b {
        errors.push(format!("full-heap walk: gc.generations {b:?}, --gc-only {a:?}"));
    }
    let (a, b) = (lookup(gc_only, "gc.permanent").ok(), lookup(full, "gc.permanent").ok());
    if a != b {
        errors.push(format!("full-heap walk: gc.permanent {b:?}, --gc-only {a:?}"));
    }
    let per_type = |r: &Value| -> std::collections::BTreeMap<String, (u64, u64)> {
        r["types"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| {
                        let tracked = row["gc_tracked"].as_u64().unwrap_or(0);
                        let frozen = row["frozen"].as_u64().unwrap_or(0);
                        (tracked + frozen > 0)
                            .then(|| (row["type"].as_str().unwrap_or("?").to_string(), (tracked, frozen)))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (per_type(gc_only), per_type(full));
    for name in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (x, y) = (a.get(name).copied().unwrap_or_default(), b.get(name).copied().unwrap_or_default());
        if x != y {
            errors.push(format!("full-heap walk: type {name}: gc_tracked/frozen {y:?}, --gc-only {x:?}"));
        }
    }
}
