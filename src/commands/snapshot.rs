//! `memspy snapshot PID -o FILE` (or `-- python app.py`): saves one report (with its timestamp and RSS) for a later `memspy diff`.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::report;
use crate::report::progress::progress;
use crate::walk::SnapshotOptions;

#[derive(Clone, Debug)]
pub struct SnapshotCmdOptions {
    /// A PID, or a program to start and snapshot.
    pub target: super::TargetSpec,
    /// Where to write; stdout when None.
    pub output: Option<PathBuf>,
    pub snapshot: SnapshotOptions,
}

pub fn run(opts: &SnapshotCmdOptions) -> Result<()> {
    let (session, mut spawned) = super::open_target("snapshot", &opts.target, opts.snapshot.timeout)?;
    let pb = progress(None, &format!("reading the heap of PID {}", session.target.pid));
    let r = session.report(&opts.snapshot);
    pb.finish_and_clear();
    let r = r.map_err(|e| super::explain_spawned(spawned.as_mut(), e))?;
    let text = report::json(&r) + "\n";
    match &opts.output {
        Some(path) => {
            std::fs::write(path, text)
                .map_err(|e| Error::Other(format!("could not write the snapshot to {}: {e}", path.display())))?;
            eprintln!(
                "memspy: snapshot of PID {} ({} types, {} objects, {}) written to {}",
                r.pid,
                r.types.len(),
                r.totals.objects,
                report::human_bytes(r.totals.bytes),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}
