//! `memspy diff A.json B.json`: what changed between two snapshots (or `top --once --json` reports).

use std::io::Read;
use std::path::Path;

use crate::analysis::diff::diff_named;
use crate::analysis::histogram::Report;
use crate::error::{Error, Result};
use crate::report;

#[derive(Clone, Debug)]
pub struct DiffOptions {
    pub a: String,
    pub b: String,
    pub json: bool,
    pub limit: usize,
}

/// Most bytes a snapshot file may hold (a report of every type of a large heap is a few MiB).
pub const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;

/// Reads a snapshot file, with a one-line error naming the file.
pub fn load(path: &str) -> Result<Report> {
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

pub fn run(opts: &DiffOptions) -> Result<()> {
    let a = load(&opts.a)?;
    let b = load(&opts.b)?;
    let d = diff_named(&a, &opts.a, &b, &opts.b);
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&d).expect("diff serializes"));
    } else {
        print!("{}", report::diff::table(&d, opts.limit));
    }
    Ok(())
}
