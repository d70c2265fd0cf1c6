//! Writing and reading the sections of a dump (the format is in the module doc of [`super`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::codec::{need, put_varint, tag_name, zigzag};
use super::names::{Labeller, StoredNames};
use super::{Dump, Header, Meta, FORMAT, MAGIC, MAX_HEADER, MAX_SECTION};
use crate::analysis::dominators::Dominators;
use crate::analysis::paths::Paths;
use crate::cpython::values::Value;
use crate::error::{Error, Result};
use crate::memory::Memory;
use crate::outfile::Partial;
use crate::walk::graph::{Graph, CONSERVATIVE_EDGE, IMMORTAL};
use crate::walk::names::{Edge, EdgeNamer, Namer};

/// What writing a dump cost and made.
#[derive(Clone, Debug)]
pub struct Written {
    pub bytes: u64,
    pub unnamed: u64,
    pub elapsed: Duration,
}

/// A new file in `dir` without a name (O_TMPFILE), for writing.
fn unnamed_in(dir: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_TMPFILE).mode(0o644).open(dir)
}

fn cannot_write(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::CannotWrite { path: path.display().to_string(), detail: e.to_string() }
}

fn section(out: &mut impl Write, tag: &[u8; 4], payload: &[u8]) -> std::io::Result<()> {
    out.write_all(tag)?;
    out.write_all(&(payload.len() as u64).to_le_bytes())?;
    out.write_all(payload)
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("memspy's own structures serialize")
}

/// Writes the dump of graph `g` to `path`, with the edge names and values of `names` (see
/// [`label`]).
pub fn write(
    path: &Path,
    mut header: Header,
    mut meta: Meta,
    g: &Graph,
    names: Labelled,
    held: impl FnOnce() -> Option<(Paths, Dominators)>,
) -> Result<Written> {
    let t0 = Instant::now();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut partial = Partial::beside(path).ok_or_else(|| cannot_write(path, "not a file name"))?;
    // A file without a name until it is complete (O_TMPFILE): memspy killed in between, even by
    // SIGKILL, leaves nothing. Where the file system cannot, a hidden name removed on every error.
    let (file, unnamed_file) = match unnamed_in(dir) {
        Ok(f) => (f, true),
        Err(_) => (File::create(&partial.tmp).map_err(|e| cannot_write(path, e))?, false),
    };
    // Nothing to remove while the file has no name.
    partial.done = unnamed_file;
    let Labelled { names, unnamed } = names;
    if names.labels.len() != g.targets.len() || names.value_at.len() != g.objects as usize {
        return Err(Error::Other("the names do not cover the graph".into()));
    }
    meta.unnamed = unnamed;
    meta.stale = g.stale;
    header.format = FORMAT;
    header.objects = g.objects as u64;
    header.native_blocks = g.natives as u64;
    header.roots = g.roots.len() as u64;
    header.edges = g.targets.len() as u64;

    let mut out = BufWriter::with_capacity(1 << 20, file);
    let head = json(&header);
    let io = |e: std::io::Error| cannot_write(path, e);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&FORMAT.to_le_bytes()).map_err(io)?;
    out.write_all(&(head.len() as u32).to_le_bytes()).map_err(io)?;
    out.write_all(&head).map_err(io)?;
    let mut z = zstd::Encoder::new(out, 3).map_err(io)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) as u32;
    if threads > 1 {
        // Compression on worker threads, when the zstd library has them.
        let _ = z.multithread(threads);
    }
    section(&mut z, b"META", &json(&meta)).map_err(io)?;
    section(&mut z, b"TYPE", &json(&g.type_infos)).map_err(io)?;
    section(&mut z, b"OBJS", &objects(g)).map_err(io)?;
    let mut b = Vec::new();
    put_varint(&mut b, g.natives as u64);
    let mut prev = 0u64;
    for &a in g.native_addrs() {
        put_varint(&mut b, zigzag(a.wrapping_sub(prev) as i64));
        prev = a;
    }
    section(&mut z, b"NATV", &b).map_err(io)?;
    section(&mut z, b"ROOT", &json(&(&g.roots, &g.frame_objects))).map_err(io)?;
    section(&mut z, b"EDGE", &edges(g)).map_err(io)?;
    let mut b = Vec::with_capacity(names.labels.len() * 2);
    for &l in &names.labels {
        put_varint(&mut b, l as u64);
    }
    section(&mut z, b"LABL", &b).map_err(io)?;
    let mut b = Vec::new();
    put_varint(&mut b, names.strings.len() as u64);
    for s in &names.strings {
        super::codec::put_bytes(&mut b, s.as_bytes());
    }
    section(&mut z, b"STRS", &b).map_err(io)?;
    section(&mut z, b"VALS", &names.value_bytes).map_err(io)?;
    // Asked for last: the caller may still be computing them.
    if let Some((p, d)) = held() {
        section(&mut z, b"PATH", &super::held::encode_paths(&p)).map_err(io)?;
        section(&mut z, b"IDOM", &super::held::encode_idom(&d)).map_err(io)?;
    }
    section(&mut z, b"END.", &[]).map_err(io)?;
    let out = z.finish().map_err(io)?;
    let file = out.into_inner().map_err(|e| cannot_write(path, e.error()))?;
    file.sync_all().map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    if unnamed_file {
        // The complete file gets its temporary name, then the final one.
        use std::os::fd::AsRawFd;
        let _ = std::fs::remove_file(&partial.tmp);
        let from = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL");
        let to = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(partial.tmp.as_os_str()))
            .map_err(|e| cannot_write(path, e))?;
        // SAFETY: two NUL-terminated paths; linkat only reads them.
        let r = unsafe {
            libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
        };
        if r != 0 {
            return Err(cannot_write(path, std::io::Error::last_os_error()));
        }
        partial.done = false;
    }
    drop(file);
    log::debug!("dump: written and synced at {:?}", t0.elapsed());
    std::fs::rename(&partial.tmp, path).map_err(io)?;
    partial.done = true;
    Ok(Written { bytes, unnamed, elapsed: t0.elapsed() })
}

/// What [`label`] found: the names, and how many edges it could not name.
pub struct Labelled {
    pub names: StoredNames,
    pub unnamed: u64,
}

/// Names the edges of `nodes` and reads the values of the objects among them through `namer` (after
/// the walk, on the live target); `values` false keeps only lengths (`--no-values`). `done` counts
/// the nodes named, for a progress bar.
pub fn label<M: Memory + ?Sized>(
    namer: &mut EdgeNamer<'_, M>,
    g: &Graph,
    nodes: std::ops::Range<u32>,
    values: bool,
    done: &std::sync::atomic::AtomicU64,
) -> Result<Labelled> {
    let mut lab = Labeller::default();
    lab.redact = !values;
    let mut unnamed = 0u64;
    for v in nodes.clone() {
        if v % 4096 == 0 {
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            done.fetch_add(4096.min(nodes.end - v) as u64, std::sync::atomic::Ordering::Relaxed);
        }
        for e in namer.name_edges(v) {
            unnamed += (e == Edge::Unknown) as u64;
            let l = lab.label(&e);
            lab.names.labels.push(l);
        }
    }
    for v in nodes.start.min(g.objects)..nodes.end.min(g.objects) {
        let value = namer.value(v);
        let value = if values { value } else { value.filter(|v| matches!(v, Value::Len { .. })) };
        lab.value(value.as_ref());
    }
    Ok(Labelled { names: lab.names, unnamed })
}

/// The names of consecutive ranges of nodes, [`label`]ed apart (on several threads), as one.
pub fn merge(parts: Vec<Labelled>) -> Labelled {
    let mut out = Labelled { names: StoredNames::default(), unnamed: 0 };
    let mut ids: HashMap<String, u32> = HashMap::new();
    for p in parts {
        out.unnamed += p.unnamed;
        let remap: Vec<u32> = p
            .names
            .strings
            .into_iter()
            .map(|s| {
                let next = out.names.strings.len() as u32;
                *ids.entry(s).or_insert_with_key(|k| {
                    out.names.strings.push(k.clone());
                    next
                })
            })
            .collect();
        out.names.labels.extend(p.names.labels.into_iter().map(|l| super::names::remap(l, &remap)));
        let base = out.names.value_bytes.len() as u32;
        out.names.value_at.extend(p.names.value_at.into_iter().map(|a| a + base));
        out.names.value_bytes.extend(p.names.value_bytes);
    }
    out
}

fn objects(g: &Graph) -> Vec<u8> {
    let mut b = Vec::with_capacity(g.objects as usize * 5);
    put_varint(&mut b, g.objects as u64);
    let mut prev = 0u64;
    for (v, a) in g.addresses().into_iter().enumerate() {
        let v = v as u32;
        put_varint(&mut b, (a - prev) >> 3);
        prev = a;
        put_varint(&mut b, g.types[v as usize] as u64);
        put_varint(&mut b, g.size(v));
        let rc = g.refcounts[v as usize];
        put_varint(&mut b, if rc == IMMORTAL { 0 } else { rc as u64 + 1 });
    }
    b
}

fn edges(g: &Graph) -> Vec<u8> {
    let mut b = Vec::with_capacity(g.targets.len() * 4 + g.nodes() as usize);
    for v in 0..g.nodes() {
        put_varint(&mut b, g.edges(v).len() as u64);
    }
    for v in 0..g.nodes() {
        for &t in g.edges(v) {
            let to = (t & !CONSERVATIVE_EDGE) as i64;
            put_varint(&mut b, zigzag(to - v as i64) * 2 + (t & CONSERVATIVE_EDGE != 0) as u64);
        }
    }
    b
}

/// Reads the dump at `path`; with `graph` false only its header and `META` (what `top` needs).
pub fn read(path: &Path, graph: bool) -> Result<Dump> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::Other(format!("cannot open {shown}: {e}")))?;
    read_from(BufReader::with_capacity(1 << 20, file), &shown, graph)
}

/// [`read`] from any reader (`shown` names it in errors).
pub fn read_from<R: Read>(mut f: R, shown: &str, graph: bool) -> Result<Dump> {
    let shown = shown.to_string();
    let bad = |detail: String| Error::InDump { path: shown.clone(), detail };
    let mut magic = [0u8; 16];
    if f.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(Error::NotADump { path: shown });
    }
    let mut w = [0u8; 4];
    f.read_exact(&mut w).map_err(|e| bad(format!("header: {e}")))?;
    let format = u32::from_le_bytes(w);
    if format > FORMAT || format == 0 {
        return Err(Error::DumpTooNew {
            path: shown,
            found: format,
            supported: FORMAT,
            ours: env!("CARGO_PKG_VERSION").into(),
        });
    }
    f.read_exact(&mut w).map_err(|e| bad(format!("header: {e}")))?;
    let n = u32::from_le_bytes(w);
    if n > MAX_HEADER {
        return Err(bad(format!("a header of {n} bytes")));
    }
    let mut head = vec![0u8; n as usize];
    f.read_exact(&mut head).map_err(|e| bad(format!("header: {e}")))?;
    let header: Header = serde_json::from_slice(&head).map_err(|e| bad(format!("header: {e}")))?;
    let t0 = std::time::Instant::now();
    let mut z = zstd::Decoder::new(f).map_err(|e| bad(format!("body: {e}")))?;
    let mut sections: HashMap<[u8; 4], Vec<u8>> = HashMap::new();
    // The graph's sections are decoded while the next ones are decompressed.
    let mut decoding = super::decode::Decoding::default();
    loop {
        let mut tag = [0u8; 4];
        let mut len = [0u8; 8];
        z.read_exact(&mut tag).and_then(|_| z.read_exact(&mut len)).map_err(|e| bad(format!("body: {e}")))?;
        let len = u64::from_le_bytes(len);
        if &tag == b"END." {
            break;
        }
        if len > MAX_SECTION {
            return Err(bad(format!("a section of {len} bytes")));
        }
        // Reserved as the length says (up to 64 MiB: a length is not trusted before the bytes are there).
        let mut buf = Vec::with_capacity(len.min(64 << 20) as usize);
        (&mut z).take(len).read_to_end(&mut buf).map_err(|e| bad(format!("section {}: {e}", tag_name(&tag))))?;
        if buf.len() as u64 != len {
            return Err(bad(format!("section {} ends after {} of {len} bytes", tag_name(&tag), buf.len())));
        }
        if graph && super::decode::GRAPH_SECTIONS.contains(&&tag) {
            decoding.add(tag, buf).map_err(|e| bad(e.to_string()))?;
            continue;
        }
        let meta_only = &tag == b"META" && !graph;
        sections.insert(tag, buf);
        if meta_only {
            break;
        }
    }
    let meta: Meta = serde_json::from_slice(need(&sections, b"META").map_err(&bad)?)
        .map_err(|e| bad(format!("section META: {e}")))?;
    if !graph {
        return Ok(Dump { path: shown, header, meta, graph: None, names: StoredNames::default(), held: None });
    }
    drop(sections);
    let t1 = std::time::Instant::now();
    let (g, names, raw) = decoding.finish().map_err(|e| bad(e.to_string()))?;
    let t2 = std::time::Instant::now();
    let held = match raw {
        Some((paths, idom)) => Some(super::held::checked(&g, paths, idom).map_err(|e| bad(e.to_string()))?),
        None => None,
    };
    log::debug!(
        "{shown}: sections decompressed (and decoding started) in {:?}, decoded {:?} later, paths and \
         dominators checked in {:?}",
        t1 - t0,
        t2 - t1,
        t2.elapsed()
    );
    Ok(Dump { path: shown, header, meta, graph: Some(g), names, held })
}

/// The body of a dump (the bytes after its header, decompressed): what the fuzz target mutates.
pub fn body(file: &[u8]) -> Option<Vec<u8>> {
    let n = u32::from_le_bytes(file.get(20..24)?.try_into().ok()?) as usize;
    let start = 24usize.checked_add(n)?;
    let mut out = Vec::new();
    zstd::Decoder::new(file.get(start..)?).ok()?.take(64 << 20).read_to_end(&mut out).ok()?;
    Some(out)
}

/// A dump file made of `header` and an uncompressed `body` (compressed here): the fuzz target's input.
pub fn assemble(header: &Header, body: &[u8]) -> Vec<u8> {
    let head = json(header);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&zstd::encode_all(body, 1).expect("compressing in memory"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpython::types::TypeInfo;
    use crate::memory::FakeMemory;
    use crate::walk::graph::{GraphParts, Root, RootKind};

    /// Three objects (a list holding two ints), one native block, one root holding the list.
    pub fn tiny_graph() -> Graph {
        let t = |addr, name: &str| TypeInfo::plain(addr, name, 32);
        Graph::from_parts(GraphParts {
            addrs: vec![0x1000, 0x1040, 0x1080],
            types: vec![0, 1, 1],
            sizes: vec![72, 28, 5 << 32],
            refcounts: vec![1, 2, IMMORTAL],
            type_infos: vec![t(0x9000, "builtins.list"), t(0x9100, "builtins.int")],
            native_addrs: vec![0x5000],
            roots: vec![Root { kind: RootKind::Thread { thread_id: 7 }, addr: 0x8000, locals: vec![] }],
            frame_objects: vec![],
            // list → both ints and the native block; the root → the list (conservative).
            offsets: vec![0, 3, 3, 3, 3, 4],
            targets: vec![1, 2, 3, CONSERVATIVE_EDGE],
            stale: 0,
        })
        .expect("a consistent graph")
    }

    /// Every edge of `g` named (no target memory: the tiny graph's names come from its shape).
    fn names_of(g: &Graph) -> Labelled {
        let mem = FakeMemory::new();
        let l = python_bindings::versions::V3_12;
        let mut namer = EdgeNamer::new(&mem, &l, g);
        label(&mut namer, g, 0..g.nodes(), true, &Default::default()).expect("named")
    }

    /// A fresh directory for one test's files.
    fn test_dir(what: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("memspy-store-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_dump_reads_back_as_written() {
        let g = tiny_graph();
        let names = names_of(&g);
        let dir = test_dir("test");
        let path = dir.join("tiny.memspy");
        let header = Header { pid: 42, values: true, ..Header::default() };
        let p = crate::analysis::paths::shortest(&g);
        let dom = crate::analysis::dominators::compute(&g, &p);
        let kept = (crate::analysis::paths::shortest(&g), crate::analysis::dominators::compute(&g, &p));
        let w = write(&path, header, Meta::default(), &g, names, move || Some(kept)).expect("written");
        assert!(w.bytes > 0);
        let d = read(&path, true).expect("read back");
        let (kept_paths, kept_dom) = d.held.as_ref().expect("the paths and dominators kept");
        assert_eq!((&kept_paths.parent, &kept_dom.idom, &kept_dom.retained), (&p.parent, &dom.idom, &dom.retained));
        let h = d.graph.expect("graph");
        assert_eq!((d.header.pid, d.header.objects, d.header.edges), (42, 3, 4));
        assert_eq!(h.addresses(), g.addresses());
        assert_eq!((h.types.clone(), h.refcounts.clone()), (g.types.clone(), g.refcounts.clone()));
        assert_eq!((0..3).map(|v| h.size(v)).collect::<Vec<_>>(), vec![72, 28, 5 << 32]);
        assert_eq!((h.offsets.clone(), h.targets.clone()), (g.offsets.clone(), g.targets.clone()));
        assert_eq!(h.native_addrs(), g.native_addrs());
        assert_eq!(d.names.labels.len(), 4);
        // Only the header and META: no graph.
        assert!(read(&path, false).expect("read").graph.is_none());
        // The body round-trips through the fuzz target's helpers.
        let bytes = std::fs::read(&path).expect("file");
        let again = assemble(&d.header, &body(&bytes).expect("body"));
        assert!(read_from(&again[..], "again", true).expect("reassembled").graph.is_some());
        if let Ok(dir) = std::env::var("MEMSPY_WRITE_FUZZ_CORPUS") {
            std::fs::write(Path::new(&dir).join("tiny.body"), body(&bytes).expect("body")).expect("corpus");
        }
        // Without the paths and dominators (an older memspy's file): the graph alone.
        let names = names_of(&g);
        write(&path, Header { pid: 42, values: true, ..Header::default() }, Meta::default(), &g, names, || None)
            .expect("written");
        let without = read(&path, true).expect("read back");
        assert!(without.graph.is_some() && without.held.is_none());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// The sections of a body: (tag, payload), in file order.
    fn sections_of(body: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 12 <= body.len() {
            let tag: [u8; 4] = body[at..at + 4].try_into().expect("4 bytes");
            let len = u64::from_le_bytes(body[at + 4..at + 12].try_into().expect("8 bytes")) as usize;
            out.push((tag, body[at + 12..at + 12 + len].to_vec()));
            at += 12 + len;
        }
        out
    }

    fn body_of(sections: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (tag, payload) in sections {
            b.extend_from_slice(tag);
            b.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            b.extend_from_slice(payload);
        }
        b
    }

    /// Each group of sections is decoded as soon as it is in, whatever the order; a section given
    /// twice is refused, as is a graph section missing.
    #[test]
    fn sections_read_in_any_order_once_each() {
        let g = tiny_graph();
        let names = names_of(&g);
        let dir = test_dir("order");
        let path = dir.join("tiny.memspy");
        let p = crate::analysis::paths::shortest(&g);
        let kept = (crate::analysis::paths::shortest(&g), crate::analysis::dominators::compute(&g, &p));
        write(&path, Header::default(), Meta::default(), &g, names, move || Some(kept)).expect("written");
        let bytes = std::fs::read(&path).expect("file");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        let header = Header::default();
        let sections = sections_of(&body(&bytes).expect("body"));
        assert_eq!(sections.last().map(|s| &s.0), Some(b"END."));
        // Reversed (META first still, END. last).
        let mut reordered = vec![sections[0].clone()];
        reordered.extend(sections[1..sections.len() - 1].iter().rev().cloned());
        reordered.push(sections[sections.len() - 1].clone());
        let d = read_from(&assemble(&header, &body_of(&reordered))[..], "reordered", true).expect("read");
        let h = d.graph.expect("graph");
        assert_eq!((&h.offsets, &h.targets, h.addresses()), (&g.offsets, &g.targets, g.addresses()));
        assert!(d.held.is_some());
        // A section twice.
        let mut twice = sections.clone();
        let edge = twice.iter().position(|s| &s.0 == b"EDGE").expect("EDGE");
        twice.insert(edge, twice[edge].clone());
        let e = read_from(&assemble(&header, &body_of(&twice))[..], "twice", true).err().expect("refused");
        assert!(e.to_string().contains("section EDGE twice"), "{e}");
        // A section missing.
        let without: Vec<_> = sections.iter().filter(|s| &s.0 != b"LABL").cloned().collect();
        let e = read_from(&assemble(&header, &body_of(&without))[..], "without", true).err().expect("refused");
        assert!(e.to_string().contains("no section LABL"), "{e}");
        // What the fuzzer found (fuzz/corpus/dump/edge-count-past-the-bytes.body): an EDGE section that
        // counts 2^31 edges in a few bytes. Refused in one line, before an array that size is allocated.
        let mut huge = sections.clone();
        let edge = huge.iter().position(|s| &s.0 == b"EDGE").expect("EDGE");
        // The first node's edge count (LEB128), then a count of 0 for each of the others.
        huge[edge].1 = [0x80, 0x80, 0x80, 0x80, 0x08].into_iter().chain([0; 1000]).collect();
        let e = read_from(&assemble(&header, &body_of(&huge))[..], "huge", true).err().expect("refused");
        assert!(e.to_string().contains("2147483648 edges in"), "{e}");
    }
}
