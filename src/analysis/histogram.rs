//! The per-type histogram and the report it becomes (the `--json` schema; add fields, never rename).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cpython::gc;
use crate::cpython::types::TypeInfo;
use crate::memory::fasthash::AddrMap;
use crate::walk::{ObjectRecord, Sink, TypeTotals};

/// One row of the report: all live objects of one type (by qualified name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeRow {
    #[serde(rename = "type")]
    pub name: String,
    pub count: u64,
    /// How many are tracked by the GC (in any generation, the permanent one included).
    pub gc_tracked: u64,
    /// How many are in the permanent generation (`gc.freeze()`).
    #[serde(default)]
    pub frozen: u64,
    /// Sum of `sys.getsizeof`.
    pub bytes: u64,
    /// Sum of the refcounts of the mortal objects (an immortal object's refcount is a marker, not a
    /// count: those are counted in `immortal`).
    pub refcount: u64,
    pub immortal: u64,
    /// `bytes` is what `sys.getsizeof` says for every object (false: the type has a `__sizeof__` of its
    /// own that memspy does not model, or a size could not be read; those objects are sized by the
    /// formula of their base).
    #[serde(default = "exact_by_default")]
    pub bytes_exact: bool,
    /// Bytes its instances retain (`top --retained`): what they dominate, not counting instances inside
    /// another instance of the type.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retained: Option<u64>,
}

fn exact_by_default() -> bool {
    true
}

/// One type's sums: the walk's own (count, bytes, refcounts, immortal, approximated), and where the
/// objects were.
#[derive(Clone, Copy, Debug, Default)]
struct Acc {
    totals: TypeTotals,
    gc_tracked: u64,
    frozen: u64,
}

/// Accumulates objects per type while walking.
#[derive(Default)]
pub struct Histogram {
    by_type: AddrMap<Acc>,
    names: AddrMap<String>,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram::default()
    }

    pub fn clear(&mut self) {
        self.by_type.clear();
        self.names.clear();
    }

    pub fn add(&mut self, rec: &ObjectRecord, ty: &TypeInfo, gc_tracked: bool) {
        let a = match self.by_type.get_mut(&rec.type_addr) {
            Some(a) => a,
            None => {
                self.names.insert(rec.type_addr, ty.name.clone());
                self.by_type.entry(rec.type_addr).or_default()
            }
        };
        a.totals.add(rec);
        if gc_tracked {
            a.gc_tracked += 1;
        }
        if rec.list == gc::PERMANENT {
            a.frozen += 1;
        }
    }

    /// Rows by qualified name (distinct type objects with the same name are merged, as
    /// `Counter(f"{t.__module__}.{t.__qualname__}")` would), sorted by bytes, then count, then name.
    pub fn rows(&self) -> Vec<TypeRow> {
        let mut merged: HashMap<&str, TypeRow> = HashMap::new();
        for (addr, a) in &self.by_type {
            let name = self.names.get(addr).map(String::as_str).unwrap_or("?");
            let r = merged.entry(name).or_insert_with(|| TypeRow {
                name: name.to_string(),
                bytes_exact: true,
                ..Default::default()
            });
            let t = &a.totals;
            r.bytes_exact &= t.approximate == 0;
            r.count += t.count;
            r.gc_tracked += a.gc_tracked;
            r.frozen += a.frozen;
            r.bytes = r.bytes.saturating_add(t.bytes);
            r.refcount = r.refcount.saturating_add(t.refcount);
            r.immortal += t.immortal;
        }
        let mut rows: Vec<TypeRow> = merged.into_values().collect();
        sort_rows(&mut rows, SortKey::Bytes);
        rows
    }
}

impl Sink for Histogram {
    fn reset(&mut self) {
        self.clear();
    }
    fn object(&mut self, rec: &ObjectRecord, ty: &TypeInfo) {
        self.add(rec, ty, rec.list != gc::UNTRACKED);
    }
    fn untracked(&mut self, t: &TypeTotals, ty: &TypeInfo) {
        if t.count == 0 {
            return;
        }
        self.names.entry(t.type_addr).or_insert_with(|| ty.name.clone());
        self.by_type.entry(t.type_addr).or_default().totals.merge(t);
    }
    fn tracked(&mut self, t: &TypeTotals, ty: &TypeInfo, list: usize) {
        if t.count == 0 {
            return;
        }
        self.names.entry(t.type_addr).or_insert_with(|| ty.name.clone());
        let a = self.by_type.entry(t.type_addr).or_default();
        a.totals.merge(t);
        a.gc_tracked += t.count;
        if list == gc::PERMANENT {
            a.frozen += t.count;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    Bytes,
    Count,
    /// Retained bytes (with `--retained`; else as bytes).
    Retained,
}

pub fn sort_rows(rows: &mut [TypeRow], key: SortKey) {
    rows.sort_by(|a, b| {
        let (ka, kb) = match key {
            SortKey::Bytes => ((a.bytes, a.count), (b.bytes, b.count)),
            SortKey::Count => ((a.count, a.bytes), (b.count, b.bytes)),
            SortKey::Retained => ((a.retained.unwrap_or(a.bytes), a.bytes), (b.retained.unwrap_or(b.bytes), b.bytes)),
        };
        kb.cmp(&ka).then_with(|| a.name.cmp(&b.name))
    });
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PythonInfo {
    pub version: String,
    pub executable: String,
    pub free_threaded: bool,
    #[serde(default)]
    pub debug: bool,
    /// "static" (runtime in the executable) or "shared" (in libpython).
    #[serde(default)]
    pub linkage: String,
    /// The file holding the runtime has no symbol table.
    #[serde(default)]
    pub stripped: bool,
    /// The file holding the runtime.
    #[serde(default)]
    pub binary: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Totals {
    pub objects: u64,
    pub bytes: u64,
    pub gc_tracked: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GcCounts {
    pub generations: [u64; 3],
    pub permanent: u64,
}

/// The report `memspy top --json` prints.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub pid: i32,
    /// The file the report was read from: a dump, or a core file (absent for a live target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub python: PythonInfo,
    /// "gc-tracked" (the GC lists) or "full-heap" (every object).
    pub coverage: String,
    /// The figures may be inconsistent: read without pausing, or cut short.
    #[serde(default)]
    pub approximate: bool,
    /// The walk was cut short (pause budget or timeout) and covers only part of the heap.
    #[serde(default)]
    pub partial: bool,
    pub pause_ms: f64,
    pub elapsed_ms: f64,
    /// Seconds since the Unix epoch when the snapshot was taken.
    #[serde(default)]
    pub timestamp: f64,
    /// The target's resident set size in bytes, when readable.
    #[serde(default)]
    pub rss: Option<u64>,
    pub totals: Totals,
    pub gc: GcCounts,
    /// Interpreters whose heaps were walked (the main one and any subinterpreters).
    #[serde(default)]
    pub interpreters: usize,
    /// Reads given up and started again before this one held (a collection running, GC lists caught
    /// mid-update while the target was stopped).
    #[serde(default)]
    pub retries: u32,
    /// What the walk could not decode or had to judge (see [`ScanCounts`]).
    #[serde(default)]
    pub scan: ScanCounts,
    pub types: Vec<TypeRow>,
}

/// What a walk could not decode or had to judge, counted (the report is marked where they matter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCounts {
    /// Objects whose type or size could not be read (skipped).
    pub unreadable: u64,
    /// Objects whose references could not be decoded (what they hold may be missing).
    pub decode_errors: u64,
    /// Read without pausing: GC lists that broke off, and free-threaded heap pages whose free lists did
    /// not add up (skipped, or their blocks taken as the lists said); what they held may be missing.
    #[serde(default)]
    pub broken_lists: u64,
    #[serde(default)]
    pub inconsistent_pages: u64,
    /// Objects sized by an approximation (a `__sizeof__` of their own that memspy does not model).
    pub approximate_sizes: u64,
    /// Candidates of conservative scans that looked like objects where no live block of theirs starts.
    pub rejected_candidates: u64,
    /// Objects taken in memory that no allocator memspy knows claims.
    pub unvalidated_objects: u64,
    /// Native blocks (a C extension's buffers) scanned for object pointers, and their bytes.
    pub native_blocks: u64,
    pub native_bytes: u64,
    /// Read without pausing: of a sample of the objects found (one in 256), how many had changed once
    /// the walk was over (gone, or another object there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_under_walk: Option<crate::walk::recheck::Changed>,
}

#[cfg(test)]
impl Report {
    /// A report with these (type, count, bytes) rows and their totals, for unit tests.
    pub(crate) fn from_rows(rows: &[(&str, u64, u64)]) -> Report {
        let mut r = Report {
            types: rows
                .iter()
                .map(|(n, c, b)| TypeRow { name: n.to_string(), count: *c, bytes: *b, ..Default::default() })
                .collect(),
            ..Default::default()
        };
        r.finish_totals();
        r
    }
}

impl Report {
    pub fn finish_totals(&mut self) {
        self.totals = Totals {
            objects: self.types.iter().fold(0u64, |s, r| s.saturating_add(r.count)),
            bytes: self.types.iter().fold(0u64, |s, r| s.saturating_add(r.bytes)),
            gc_tracked: self.types.iter().fold(0u64, |s, r| s.saturating_add(r.gc_tracked)),
        };
    }
}
