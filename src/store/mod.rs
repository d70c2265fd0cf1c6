//! The dump file `memspy dump` writes and every analysis reads in place of a live target.
//!
//! ```text
//! magic        16 bytes  "\x89memspy dump\r\n\x1a\n"
//! format       u32 LE    FORMAT (a reader refuses a newer one)
//! header len   u32 LE
//! header       JSON      Header: memspy's version, when, which process, its Python, what is inside
//! body         one zstd frame of sections, each: tag (4 bytes), length (u64 LE), payload; "END." last
//! ```
//!
//! Sections (integers are LEB128 varints; deltas zigzag-coded):
//! - `META` JSON [`Meta`]: the walk's per-type report (what `top` shows), the analysis figures, the
//!   anchors (roots, modules, types, frames by node), the process facts. First, so `top` reads only it.
//! - `TYPE` JSON: the type table (`TypeInfo` by type number).
//! - `OBJS`: count; per object in address order: address delta / 8, type number, size, refcount + 1
//!   (0: immortal).
//! - `NATV`: count; per native block: address delta (zigzag).
//! - `ROOT` JSON: the roots (runtime, interpreters, threads, frames and their locals) and 3.9/3.10's frame
//!   objects.
//! - `EDGE`: per node (objects, native blocks, roots): its edge count; then per edge: the target's
//!   node minus the source's (zigzag) × 2, + 1 when found by a conservative scan.
//! - `LABL`: per edge its label ([`names`]); `STRS`: the strings labels name.
//! - `VALS`: per object its short value (a str's first 64 characters, bytes, int, float, a container's
//!   length); with `--no-values` only lengths, and keys that are not identifiers are not kept.
//! - `PATH`, `IDOM` (optional: a reader computes them when absent): each node's parent on its shortest
//!   path from a root, and its immediate dominator ([`held`]).
//!
//! Written to a temporary name beside the target and renamed once complete ([`write`]); read with
//! every count bounded by the bytes present ([`read`]).

pub mod codec;
mod decode;
pub mod held;
pub mod names;
mod sections;

use serde::{Deserialize, Serialize};

use crate::analysis::dominators::Dominators;
use crate::analysis::histogram::PythonInfo;
use crate::analysis::paths::Paths;
use crate::analysis::why::{Anchor, Figures};
use crate::analysis::Report;
use crate::walk::graph::Graph;
pub use names::StoredNames;
pub use sections::{assemble, body, label, merge, read, read_from, write, Labelled, Written};

pub const MAGIC: &[u8; 16] = b"\x89memspy dump\r\n\x1a\n";
/// The format this memspy writes and the newest it reads.
pub const FORMAT: u32 = 1;
/// Largest header accepted.
const MAX_HEADER: u32 = 1 << 20;
/// Largest section accepted (a section is held in memory while decoded).
const MAX_SECTION: u64 = 1 << 36;

/// The uncompressed header: enough to say what the file is without reading the rest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Header {
    /// The memspy that wrote it.
    pub memspy: String,
    pub format: u32,
    /// Seconds since the Unix epoch.
    pub created: f64,
    pub pid: i32,
    /// The target's command line, as procfs showed it.
    pub command: String,
    /// "live process" or "core file PATH".
    pub source: String,
    pub python: PythonInfo,
    /// Values (str prefixes, ints, floats, bytes, dict keys) are in the file; false: `--no-values`.
    pub values: bool,
    pub objects: u64,
    pub native_blocks: u64,
    pub roots: u64,
    pub edges: u64,
}

/// The process facts a dump keeps.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProcessFacts {
    pub rss: Option<u64>,
    /// Mappings, their bytes, and the writable ones' bytes.
    pub mappings: u64,
    pub mapped_bytes: u64,
    pub writable_bytes: u64,
}

/// The `META` section.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    pub report: Report,
    pub figures: Figures,
    pub anchors: Vec<(u32, Anchor)>,
    pub process: ProcessFacts,
    /// Conservative edges the walk dropped as stale.
    pub stale: u64,
    /// Edges whose holder no longer held the object when names were read (the target ran on).
    pub unnamed: u64,
    /// What `memspy gc` showed right after the walk: the main interpreter's figures, and how many
    /// interpreters the process had.
    #[serde(default)]
    pub gc: Option<(crate::cpython::gc_stats::GcFigures, usize)>,
}

/// A dump read back.
pub struct Dump {
    pub path: String,
    pub header: Header,
    pub meta: Meta,
    /// Absent when only the header and `META` were asked for.
    pub graph: Option<Graph>,
    pub names: StoredNames,
    /// The graph's shortest paths and dominator tree, when the file keeps them (`PATH`, `IDOM`).
    pub held: Option<(Paths, Dominators)>,
}
