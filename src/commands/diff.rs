//! `memspy diff A.json B.json`: what changed between two snapshots (or `top --once --json` reports).

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

/// Reads a snapshot file, with a one-line error naming the file.
pub fn load(path: &str) -> Result<Report> {
    let text =
        std::fs::read_to_string(Path::new(path)).map_err(|e| Error::Other(format!("cannot read {path}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| {
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
