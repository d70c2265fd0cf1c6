//! Tools for testing memspy itself (hidden from the docs): heap images of a live target that a
//! [`FakeMemory`] can load, a fuzzing entry point that walks an image, a small mutator for the stable
//! fuzz harness, and a builder of synthetic heaps.
//!
//! Image format (little-endian): `MSPYIMG1`, version hex, `_PyRuntime` address, flags (bit 0: the layout
//! takes `_Py_DebugOffsets`, bit 1: debug build, bit 2: free-threaded), region count N, N × (address, length), then the regions'
//! bytes one after the other.

pub mod core_image;
mod minimise;

use std::time::{Duration, Instant};

use python_bindings::{Layout, Version};

use crate::analysis::Histogram;
use crate::cpython::types::Types;
use crate::discovery::{self, Interpreter, Linkage};
use crate::error::{Error, Result};
use crate::memory::readers::ThreadReaders;
use crate::memory::FakeMemory;
use crate::memory::Memory;
use crate::pause::{self, Control, ReadOptions, Source, View, Work};
use crate::process::Target;
use crate::walk::{self, WalkSummary};

const MAGIC: &[u8; 8] = b"MSPYIMG1";
/// Most regions and bytes an image may describe (images come from files: bound them like remote data).
const MAX_REGIONS: u64 = 1 << 20;

/// A captured (or synthetic) heap image.
#[derive(Clone, Debug)]
pub struct Image {
    pub version: Version,
    pub runtime: u64,
    pub debug_offsets: bool,
    pub debug_build: bool,
    pub free_threaded: bool,
    pub mem: FakeMemory,
}

/// Records every successful read, to be saved as an image.
pub(super) struct Recorder<M: Memory> {
    pub(super) inner: M,
    pub(super) reads: std::cell::RefCell<Vec<(u64, Vec<u8>)>>,
}

impl<M: Memory> Memory for Recorder<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(addr, buf)?;
        self.reads.borrow_mut().push((addr, buf.to_vec()));
        Ok(())
    }
}

/// Merges overlapping or adjacent reads into regions.
pub(super) fn coalesce(mut reads: Vec<(u64, Vec<u8>)>) -> FakeMemory {
    reads.sort_by_key(|(a, b)| (*a, std::cmp::Reverse(b.len())));
    let mut regions: Vec<(u64, Vec<u8>)> = Vec::new();
    for (addr, bytes) in reads {
        if let Some((start, data)) = regions.last_mut() {
            let end = *start + data.len() as u64;
            if addr <= end {
                let new_end = addr + bytes.len() as u64;
                if new_end > end {
                    data.extend_from_slice(&bytes[(end - addr) as usize..]);
                }
                continue;
            }
        }
        regions.push((addr, bytes));
    }
    let mut mem = FakeMemory::new();
    for (addr, bytes) in regions {
        mem.add(addr, bytes);
    }
    mem
}

impl Image {
    /// Captures what a walk of `interp` in `target` reads (the runtime's head, the GC lists, every object
    /// header, type and name it decodes), in one consistent read of the target.
    pub fn capture(target: &Target, interp: &Interpreter, max_pause: Duration) -> Result<Image> {
        struct Capture<'a> {
            interp: &'a Interpreter,
            pid: i32,
        }
        impl Work for Capture<'_> {
            type Output = FakeMemory;
            fn what(&self) -> &'static str {
                "capturing a heap image"
            }
            fn run<M: ThreadReaders>(&mut self, view: &View<'_, M>) -> Result<FakeMemory> {
                let rec = Recorder { inner: view.mem, reads: Default::default() };
                // Read again through the recorder, so that the image holds what a walk of it reads.
                discovery::runtime_debug_offsets(&rec, self.pid, self.interp.runtime)?;
                walk_memory(&rec, self.interp, true, Duration::from_secs(60))?;
                Ok(coalesce(rec.reads.into_inner()))
            }
        }
        let opts = ReadOptions {
            nonblocking: false,
            timeout: max_pause + Duration::from_secs(5),
            max_pause,
            collection_retries: 50,
            source: Source::Cached { bytes: 256 << 20 },
        };
        let mem = pause::read(target, interp, &opts, &mut Capture { interp, pid: target.pid })?.value;
        Ok(Image {
            version: interp.version,
            runtime: interp.runtime,
            debug_offsets: interp.used_debug_offsets,
            debug_build: interp.debug_build,
            free_threaded: interp.free_threaded,
            mem,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for v in [self.version.hex(), self.runtime, self.flags(), self.mem.regions.len() as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (addr, bytes) in &self.mem.regions {
            out.extend_from_slice(&addr.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        }
        for (_, bytes) in &self.mem.regions {
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Parses an image; any inconsistency is an error (never a panic, never an allocation larger than
    /// the input).
    pub fn from_bytes(b: &[u8]) -> Result<Image> {
        let bad = |what: &str| Error::Corrupt(format!("heap image: {what}"));
        let u = |at: usize| -> Result<u64> {
            b.get(at..at.checked_add(8).ok_or_else(|| bad("offset"))?)
                .map(|s| u64::from_le_bytes(s.try_into().expect("8")))
                .ok_or_else(|| bad("truncated"))
        };
        if b.len() < 40 || &b[..8] != MAGIC {
            return Err(bad("no MSPYIMG1 header"));
        }
        let version = Version::from_hex(u(8)?).ok_or_else(|| bad("version"))?;
        let runtime = u(16)?;
        let flags = u(24)?;
        let n = u(32)?;
        if n > MAX_REGIONS || n * 16 > b.len() as u64 {
            return Err(bad("region count"));
        }
        let mut data_at = 40 + 16 * n as usize;
        let mut mem = FakeMemory::new();
        for i in 0..n as usize {
            let addr = u(40 + 16 * i)?;
            let len = u(48 + 16 * i)?;
            let end = (data_at as u64)
                .checked_add(len)
                .filter(|e| *e <= b.len() as u64)
                .ok_or_else(|| bad("region length"))?;
            if addr.checked_add(len).is_none() {
                return Err(bad("region address"));
            }
            mem.add(addr, b[data_at..end as usize].to_vec());
            data_at = end as usize;
        }
        Ok(Image {
            version,
            runtime,
            debug_offsets: flags & 1 != 0,
            debug_build: flags & 2 != 0,
            free_threaded: flags & 4 != 0,
            mem,
        })
    }

    /// The interpreter description a walk of this image needs (the layout as discovery would fill it).
    pub fn interpreter(&self) -> Result<Interpreter> {
        interpreter_of(&self.mem, self.version, self.runtime, self.flags())
    }

    /// The header's flags: bit 0 the layout takes `_Py_DebugOffsets`, bit 1 a debug build, bit 2
    /// free-threaded.
    pub fn flags(&self) -> u64 {
        self.debug_offsets as u64 | (self.debug_build as u64) << 1 | (self.free_threaded as u64) << 2
    }

    /// Walks the image (strict, as when paused, or not) into a histogram.
    pub fn walk(&self, strict: bool, budget: Duration) -> Result<(Histogram, WalkSummary)> {
        walk_memory(&self.mem, &self.interpreter()?, strict, budget)
    }
}

/// The interpreter description a walk of `mem` needs, its `_PyRuntime` at `runtime` (the layout as
/// discovery would fill it; `flags` as [`Image::flags`]).
pub fn interpreter_of<M: Memory + ?Sized>(mem: &M, version: Version, runtime: u64, flags: u64) -> Result<Interpreter> {
    let (debug_offsets, debug_build, free_threaded) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let unsupported = || Error::UnsupportedVersion { pid: 0, version: version.to_string() };
    let mut layout = Layout::builtin_build(version, free_threaded).ok_or_else(unsupported)?;
    if debug_offsets {
        let d = discovery::runtime_debug_offsets(mem, 0, runtime)?
            .ok_or_else(|| Error::Corrupt("heap image: no _Py_DebugOffsets".into()))?;
        if d.free_threaded != free_threaded {
            return Err(Error::Corrupt("heap image: _Py_DebugOffsets disagree on the build".into()));
        }
        layout.apply_debug_offsets(&d).map_err(|detail| Error::Layout { pid: 0, detail })?;
    }
    layout.debug_build = debug_build;
    Ok(Interpreter {
        runtime,
        version,
        debug_build,
        free_threaded,
        layout,
        executable: "(image)".into(),
        binary: "(image)".into(),
        linkage: Linkage::Static,
        stripped: true,
        version_source: "image",
        runtime_source: "image",
        used_debug_offsets: debug_offsets,
    })
}

/// The tracked objects of `mem` walked as a paused (`strict`) or `--nonblocking` walk finds them: the
/// GC lists, or a free-threaded build's mimalloc heaps; at most `budget` long.
pub fn walk_memory<M: Memory + ?Sized>(
    mem: &M,
    interp: &Interpreter,
    strict: bool,
    budget: Duration,
) -> Result<(Histogram, WalkSummary)> {
    let mut hist = Histogram::new();
    let mut summary = WalkSummary::default();
    let mut types = Types::new(&interp.layout);
    let interps = pause::read_interps(mem, interp)?;
    let control = Control::new(Some(Instant::now() + budget));
    let l = &interp.layout;
    let sink = |r: &walk::ObjectRecord, t: &crate::cpython::types::TypeInfo| hist.add(r, t, true);
    if l.mimalloc.is_some() {
        let mut counts = Default::default();
        walk::ftheaps::walk_heaps(mem, l, &interps, &mut types, strict, &control, &mut summary, &mut counts, sink)?;
    } else {
        walk::walk_gc(mem, l, &interps, &mut types, strict, &control, &mut summary, sink)?;
    }
    Ok((hist, summary))
}

/// The fuzzing entry point: `data` is a heap image (usually a mutated capture). Whatever it holds, this
/// must return (within the walk's time budget) without panicking or allocating without bound.
pub fn fuzz_one(data: &[u8]) {
    if let Ok(img) = Image::from_bytes(data) {
        for strict in [true, false] {
            let _ = img.walk(strict, Duration::from_secs(2));
        }
    }
}

/// The fuzzing entry point of the snapshot reader (`memspy diff`): `data` is a snapshot file's bytes.
/// Whatever they hold, parsing them, diffing the report with itself and with an empty one, and rendering
/// the diffs as a table and as JSON must return without panicking or allocating without bound.
pub fn fuzz_snapshot(data: &[u8]) {
    let Ok(r) = crate::commands::diff::parse("fuzz.json", data) else { return };
    let empty = crate::analysis::histogram::Report::default();
    for (a, b) in [(&r, &r), (&empty, &r), (&r, &empty)] {
        let d = crate::analysis::diff::diff_named(a, "a.json", b, "b.json");
        let _ = crate::report::diff::table(&d, 25);
        let _ = serde_json::to_string(&d);
    }
}

/// The fuzzing entry point of the dump reader: `body` is a dump's body (its sections, uncompressed).
/// Whatever it holds, reading it (compressed behind a valid header, and as a whole file on its own) and
/// running what `why`, `retained` and `top --retained` compute on the graph must return without
/// panicking or allocating without bound.
pub fn fuzz_dump(body: &[u8]) {
    let _ = crate::store::read_from(body, "fuzz.memspy", true);
    let file = crate::store::assemble(&crate::store::Header::default(), body);
    let Ok(d) = crate::store::read_from(&file[..], "fuzz.memspy", true) else { return };
    let Ok(held) = crate::commands::held::Held::from_dump(d) else { return };
    let g = &held.graph;
    if let Some(t) = g.type_infos.first() {
        if let Ok(nodes) = held.of_type(&t.name) {
            let _ = held.rows(&nodes);
        }
    }
    let some: Vec<u32> = (0..g.objects.min(8)).collect();
    let _ = held.paths_of(&some);
    let _ = held.owners(3);
    let _ = crate::analysis::dominators::retained_by_type(g, held.dom());
}

/// The stable fuzz harness shared by the byte-input targets: arguments `[DIR] [SECONDS] [SEED]` (the
/// corpus directory defaulting to `default_dir`); mutates the corpus files' bytes (bit flips, one of
/// `tokens` spliced in, cuts) and calls `target` on each, for that long; prints the executions.
pub fn mutate_corpus(default_dir: &str, tokens: &[&[u8]], target: fn(&[u8])) {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| default_dir.into());
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let bases: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    assert!(!bases.is_empty(), "no files in {dir}");
    let mut rng = Rng(seed | 1);
    let start = std::time::Instant::now();
    let mut execs = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut b = bases[rng.below(bases.len() as u64) as usize].clone();
        mutate_bytes(&mut b, &mut rng, tokens);
        target(&b);
        execs += 1;
    }
    println!("{execs} executions in {:.1} s, {} base files, seed {seed}", start.elapsed().as_secs_f64(), bases.len());
}

/// Mutates a file's bytes 1–8 times: bit flips, a little-endian word overwritten with an interesting
/// value (0, -1, a power of two, a nearby value), one of `tokens` spliced in, a cut.
pub fn mutate_bytes(b: &mut Vec<u8>, rng: &mut Rng, tokens: &[&[u8]]) {
    for _ in 0..1 + rng.below(8) {
        if b.is_empty() {
            break;
        }
        let at = rng.below(b.len() as u64) as usize;
        match rng.below(6) {
            0..=2 => b[at] ^= 1 << rng.below(8),
            3 => {
                let old = b.get(at..at + 8).map_or(0, |w| u64::from_le_bytes(w.try_into().expect("8")));
                let v = match rng.below(4) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => 1 << rng.below(64),
                    _ => old.wrapping_add(rng.below(64)).wrapping_sub(32),
                };
                let n = 8.min(b.len() - at);
                b[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
            }
            4 => {
                let t = tokens[rng.below(tokens.len() as u64) as usize];
                b.splice(at..at, t.iter().copied());
            }
            _ => b.truncate(at),
        }
    }
}

/// A small deterministic PRNG (xorshift64*) for the stable fuzz harness.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Mutates an image in place the way hostile memory would look: flipped bits, words replaced by
/// interesting values (0, -1, huge, pointers elsewhere in the image, pointers to themselves).
pub fn mutate(img: &mut Image, rng: &mut Rng, rounds: u32) {
    if img.mem.regions.is_empty() {
        return;
    }
    let addrs: Vec<u64> = img.mem.regions.iter().map(|(a, _)| *a).collect();
    for _ in 0..rounds {
        let r = rng.below(img.mem.regions.len() as u64) as usize;
        let (start, bytes) = &mut img.mem.regions[r];
        if bytes.len() < 8 {
            continue;
        }
        let at = (rng.below(bytes.len() as u64 - 7) & !7) as usize;
        let here = *start + at as u64;
        let v = match rng.below(10) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << rng.below(64),
            3 => here,
            4 => addrs[rng.below(addrs.len() as u64) as usize] + (rng.below(64) & !7),
            5 => here.wrapping_add(rng.below(512)).wrapping_sub(256),
            6 => u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8")) ^ (1 << rng.below(64)),
            7 => rng.next_u64(),
            8 => i64::MIN as u64,
            _ => {
                // Overwrite one byte (names, flags, log2 sizes).
                bytes[at + rng.below(8) as usize] = rng.next_u64() as u8;
                continue;
            }
        };
        bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// Builds synthetic heaps for a 3.12 layout (no debug offsets needed): a runtime, one interpreter, its
/// GC state, type objects and GC objects linked into generation lists.
pub struct Synth {
    pub layout: Layout,
    pub mem: FakeMemory,
    pub runtime: u64,
    pub interp: u64,
    next_free: u64,
    /// Objects added per list (GC head addresses), in order.
    lists: [Vec<u64>; 4],
}

impl Default for Synth {
    fn default() -> Self {
        Self::new()
    }
}

impl Synth {
    pub const ARENA: u64 = 0x10_0000;
    pub const ARENA_SIZE: usize = 4 << 20;

    pub fn new() -> Synth {
        let layout = Layout::builtin(Version::new(3, 12, 1)).expect("3.12 layout");
        let mut mem = FakeMemory::new();
        mem.add(Self::ARENA, vec![0; Self::ARENA_SIZE]);
        let runtime = Self::ARENA;
        let interp = Self::ARENA + 0x1000;
        mem.put_u64(runtime + layout.runtime.interpreters_head, interp);
        mem.put_u64(interp + layout.interp.next, 0);
        let mut s = Synth { layout, mem, runtime, interp, next_free: Self::ARENA + 0x10000, lists: Default::default() };
        for h in s.heads() {
            s.mem.put_u64(h, h);
            s.mem.put_u64(h + 8, h);
        }
        s
    }

    pub fn heads(&self) -> [u64; 4] {
        let gc = self.interp + self.layout.interp.gc;
        let g = &self.layout.gc;
        [gc + g.generations[0], gc + g.generations[1], gc + g.generations[2], gc + g.permanent]
    }

    /// Reserves `n` zeroed bytes (8-aligned).
    pub fn alloc(&mut self, n: u64) -> u64 {
        let at = self.next_free;
        self.next_free += (n + 15) & !15;
        assert!(self.next_free < Self::ARENA + Self::ARENA_SIZE as u64, "synthetic arena full");
        at
    }

    pub fn cstr(&mut self, s: &str) -> u64 {
        let at = self.alloc(s.len() as u64 + 1);
        self.mem.write(at, s.as_bytes());
        at
    }

    /// A static type object named `name` (`tp_name`), with its basic and item sizes.
    pub fn static_type(&mut self, name: &str, basicsize: u64, itemsize: u64) -> u64 {
        let l = self.layout.clone();
        let t = self.alloc(l.type_.size);
        let n = self.cstr(name);
        self.mem.put_u64(t + l.type_.tp_name, n);
        self.mem.put_u64(t + l.type_.tp_basicsize, basicsize);
        self.mem.put_u64(t + l.type_.tp_itemsize, itemsize);
        self.mem.put_u64(t + l.type_.tp_flags, python_bindings::flags::HAVE_GC);
        t
    }

    /// A GC object of `ty` with `size` bytes after its GC head, appended to `list` (0–2, 3 permanent).
    /// Returns the object's address (after the GC head).
    pub fn object(&mut self, ty: u64, size: u64, list: usize) -> u64 {
        let l = self.layout.clone();
        let gc = self.alloc(l.gc_head.size + size.max(l.object.ob_size + 8));
        let obj = gc + l.gc_head.size;
        self.mem.put_u64(obj + l.object.ob_refcnt, 1);
        self.mem.put_u64(obj + l.object.ob_type, ty);
        let head = self.heads()[list];
        let last = *self.lists[list].last().unwrap_or(&head);
        self.mem.put_u64(last, gc);
        self.mem.put_u64(gc + 8, last);
        self.mem.put_u64(gc, head);
        self.mem.put_u64(head + 8, gc);
        self.lists[list].push(gc);
        obj
    }

    /// GC heads of the objects of one list, in order.
    pub fn list(&self, list: usize) -> &[u64] {
        &self.lists[list]
    }

    pub fn image(&self) -> Image {
        Image {
            version: self.layout.version,
            runtime: self.runtime,
            debug_offsets: false,
            debug_build: false,
            free_threaded: false,
            mem: self.mem.clone(),
        }
    }
}
