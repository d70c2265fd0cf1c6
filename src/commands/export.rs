//! `memspy export PID --format heapsnapshot -o FILE` (or a dump file, or `-- python app.py`): the object graph of one
//! walk in a format other tools open (the V8 heap snapshot: Chrome DevTools, VS Code, memlab).

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::report::heapsnapshot;
use crate::report::progress::progress;
use crate::walk::SnapshotOptions;

use super::held::Held;
use super::TargetSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    HeapSnapshot,
}

#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub target: TargetSpec,
    pub format: Format,
    pub output: PathBuf,
    pub json: bool,
    pub snapshot: SnapshotOptions,
}

/// The object that retains the most.
#[derive(Clone, Debug, Serialize)]
pub struct Largest {
    /// Its node id in the snapshot.
    pub id: u64,
    pub address: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub retained: u64,
    pub objects: u64,
}

/// What `export --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ExportSummary {
    pub pid: i32,
    pub format: &'static str,
    #[serde(flatten)]
    pub written: heapsnapshot::Written,
    pub objects: u64,
    pub export_ms: f64,
    pub largest_retained: Option<Largest>,
}

pub fn run(opts: &ExportOptions) -> Result<()> {
    let (held, _spawned) = Held::open("export", &opts.target, &opts.snapshot)?;
    let held = &held;
    let g = &held.graph;
    let Format::HeapSnapshot = opts.format;
    let pb = progress(Some(2 * g.nodes() as u64), &format!("writing {}", opts.output.display()));
    let written = held.with_namer(true, |namer| {
        heapsnapshot::write(&opts.output, g, &held.paths, &held.anchors, namer, &|done, _| pb.set_position(done))
    });
    pb.finish_and_clear();
    let written = written?;
    let largest =
        (0..g.objects).max_by_key(|&v| (held.dom().retained[v as usize], std::cmp::Reverse(v))).map(|v| Largest {
            id: heapsnapshot::node_id(written.positions.of(v)),
            address: format!("{:#x}", g.addr(v)),
            type_name: g.type_of(v).map_or_else(|| "?".into(), |t| t.name.clone()),
            retained: held.dom().retained[v as usize],
            objects: held.dom().retained_objects[v as usize] as u64,
        });
    let s = ExportSummary {
        pid: held.pid,
        format: "heapsnapshot",
        objects: g.objects as u64,
        export_ms: written.elapsed.as_secs_f64() * 1000.0,
        written,
        largest_retained: largest,
    };
    if s.written.unnamed > 0 {
        log::warn!("{} edges could not be named (their holders changed since the walk)", s.written.unnamed);
    }
    if opts.json {
        let text = serde_json::to_string_pretty(&s).map_err(|e| Error::Other(format!("JSON: {e}")))?;
        println!("{text}");
    } else {
        println!(
            "{}: {} nodes ({} objects), {} edges, {:.1} MiB, written in {:.2} s; open it in Chrome DevTools \
             (Memory → Load), VS Code, or memlab",
            s.written.path.display(),
            s.written.nodes,
            s.objects,
            s.written.edges,
            s.written.bytes as f64 / (1 << 20) as f64,
            s.export_ms / 1000.0
        );
    }
    Ok(())
}
