//! `memspy diff A.json B.json`: what changed between two snapshots (or `top --once --json` reports).

use std::io::Read;
use std::path::Path;

use crate::analysis::diff::{diff_named, diff_paths};
use crate::analysis::histogram::Report;
use crate::commands::held::Held;
use crate::error::{Error, Result};
use crate::report;
use crate::store;

#[derive(Clone, Debug)]
pub struct DiffOptions {
    pub a: String,
    pub b: String,
    pub json: bool,
    pub limit: usize,
}

/// Most bytes a snapshot file may hold (a report of every type of a large heap is a few MiB).
pub const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;

/// Whether the file at `path` is a dump (`memspy dump`) rather than a JSON snapshot.
fn is_dump(path: &str) -> bool {
    let mut magic = [0u8; 16];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == store::MAGIC
}

/// Reads a snapshot file or a dump's report, with a one-line error naming the file.
pub fn load(path: &str) -> Result<Report> {
    if is_dump(path) {
        let mut r = store::read(Path::new(path), false)?.meta.report;
        r.file = Some(path.to_string());
        return Ok(r);
    }
    let cannot = |e: std::io::Error| Error::Other(format!("cannot read {path}: {e}"));
    let file = std::fs::File::open(Path::new(path)).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_SNAPSHOT_BYTES + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > MAX_SNAPSHOT_BYTES {
        return Err(Error::Other(format!(
            "{path} is larger than {} MiB: not a memspy snapshot",
            MAX_SNAPSHOT_BYTES >> 20
        )));
    }
    parse(path, &bytes)
}

/// Parses a snapshot's bytes (`path` names it in the error).
pub fn parse(path: &str, bytes: &[u8]) -> Result<Report> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Other(format!("{path} is not a memspy snapshot (memspy snapshot -o FILE or top --once --json): {e}"))
    })
}

/// How many of the types that grew most get their paths compared.
const PATH_TYPES: usize = 5;

/// The paths of the types that grew most, on both sides.
fn by_path(a: &str, b: &str, d: &crate::analysis::diff::Diff) -> Result<Vec<crate::analysis::diff::PathDiff>> {
    let ha = Held::from_dump(store::read(Path::new(a), true)?)?;
    let hb = Held::from_dump(store::read(Path::new(b), true)?)?;
    let mut grown: Vec<_> = d.types.iter().filter(|t| t.delta > 0).collect();
    grown.sort_by_key(|t| std::cmp::Reverse((t.delta, t.delta_bytes)));
    let mut out = Vec::new();
    for t in grown.into_iter().take(PATH_TYPES) {
        let rows = |h: &Held| h.of_type(&t.name).map(|nodes| h.rows(&nodes)).unwrap_or_default();
        out.extend(diff_paths(&t.name, &rows(&ha), &rows(&hb)).into_iter().take(3));
    }
    Ok(out)
}

pub fn run(opts: &DiffOptions) -> Result<()> {
    let a = load(&opts.a)?;
    let b = load(&opts.b)?;
    let mut d = diff_named(&a, &opts.a, &b, &opts.b);
    if is_dump(&opts.a) && is_dump(&opts.b) {
        d.paths = by_path(&opts.a, &opts.b, &d)?;
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&d).expect("diff serializes"));
    } else {
        print!("{}", report::diff::table(&d, opts.limit));
    }
    Ok(())
}
