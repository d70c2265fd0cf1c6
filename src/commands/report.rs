//! `memspy report PID -o report.html` (or a dump file, or `-- python app.py`): one static HTML page of one walk — the
//! type table, the objects that retain the most, the paths that hold the largest types.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::report::html::{self, HeldType, Page};
use crate::walk::SnapshotOptions;

use super::TargetSpec;

/// Types whose holding paths the page shows, and paths per type.
const HELD_TYPES: usize = 5;
const HELD_PATHS: usize = 5;

#[derive(Clone, Debug)]
pub struct ReportOptions {
    pub target: TargetSpec,
    pub output: PathBuf,
    pub limit: usize,
    pub snapshot: SnapshotOptions,
}

fn cannot_write(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::CannotWrite { path: path.display().to_string(), detail: e.to_string() }
}

/// Writes `text` to `path` through a temporary name in the same folder, renamed when complete.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| cannot_write(path, "not a file name"))?;
    let tmp = dir.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
    let done = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(cannot_write(path, e));
    }
    Ok(())
}

pub fn run(opts: &ReportOptions) -> Result<()> {
    let (held, _spawned) = super::held::Held::open("report", &opts.target, &opts.snapshot)?;
    let held = &held;
    let g = &held.graph;
    let owners = super::retained::retained_report(held, opts.limit);
    // The largest types by bytes, and the paths that hold them.
    let mut by_bytes: Vec<_> = owners.by_type.iter().collect();
    by_bytes.sort_by_key(|t| std::cmp::Reverse((t.bytes, t.count)));
    let mut held_types = Vec::new();
    for t in by_bytes.into_iter().take(HELD_TYPES) {
        let Ok(nodes) = held.of_type(&t.type_name) else { continue };
        if nodes.is_empty() {
            continue;
        }
        let mut paths = held.rows(&nodes);
        paths.truncate(HELD_PATHS);
        held_types.push(HeldType { type_name: t.type_name.clone(), count: t.count, bytes: t.bytes, paths });
    }
    let r = &held.report;
    let mut types = owners.by_type;
    types.truncate(opts.limit.max(1) * 10);
    let page = Page {
        what: held.label(),
        executable: r.python.executable.clone(),
        python: r.python.version.clone(),
        timestamp: r.timestamp,
        rss: r.rss,
        objects: g.objects as u64,
        bytes: g.total_bytes(),
        pause_ms: held.figures().pause_ms,
        partial: held.figures().partial,
        types,
        dominators: owners.dominators,
        held: held_types,
        memspy_version: env!("MEMSPY_VERSION").to_string(),
    };
    let text = html::render(&page);
    write_atomically(&opts.output, &text)?;
    println!(
        "{}: {} objects, {} types, {:.0} KiB; open it in a browser (it needs no server or network)",
        opts.output.display(),
        page.objects,
        page.types.len(),
        text.len() as f64 / 1024.0
    );
    Ok(())
}
