//! What memory holds a candidate found by a conservative scan: an object counts only if the block that
//! would hold it is a live allocation of the right size — a pymalloc block in use of a size class that
//! fits it, a glibc chunk in use whose user data starts where the object (with its pre-header) starts and
//! is large enough (and, when pymalloc is in use, larger than pymalloc's 512-byte limit), or static data
//! of a loaded binary. Memory no known allocator claims is accepted and counted as unvalidated.
//!
//! The same knowledge finds the native buffers a C extension's object points to (a numpy array's data,
//! a deque's blocks): a candidate that is not an object but the start of a live block is scanned for
//! object pointers in turn.

use python_bindings::{flags, Layout};

use crate::cpython::mimalloc::Segments;
use crate::cpython::pymalloc::{Arenas, Block};
use crate::cpython::types::{SizeKind, TypeInfo};
use crate::memory::maps::Maps;
use crate::memory::{Memory, ReadExt};
use crate::native::glibc::Glibc;

/// pymalloc serves requests up to this many bytes (`SMALL_REQUEST_THRESHOLD`); larger ones go to malloc.
const SMALL_REQUEST: u64 = 512;

/// The mimalloc heap of `PyMem_Malloc`'s buffers (`_Py_MIMALLOC_HEAP_MEM`).
const BUFFERS: &[u8] = &[0];

/// What the checks of conservative candidates found in one walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Candidates that looked like objects but lie where no live block of their size starts.
    pub rejected: u64,
    /// Objects taken in memory no known allocator claims.
    pub unvalidated: u64,
    /// Native blocks (not objects) scanned for object pointers, and their bytes.
    pub native_blocks: u64,
    pub native_bytes: u64,
}

impl Scanned {
    pub fn add(&mut self, o: &Scanned) {
        self.rejected += o.rejected;
        self.unvalidated += o.unvalidated;
        self.native_blocks += o.native_blocks;
        self.native_bytes += o.native_bytes;
    }
}

/// What the memory at a candidate says of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A live allocation that can hold the object.
    Valid,
    /// No known allocator claims the memory (a private allocator, say): taken, and counted.
    Unvalidated,
    /// The memory is an allocator's, and the object is not one of its live blocks.
    Invalid,
}

/// The target's allocators as one walk sees them (cloned into each thread of the walk: the pool cache
/// is per thread).
#[derive(Clone, Debug, Default)]
pub struct Allocators {
    arenas: Option<Arenas>,
    /// Free-threaded builds: the mimalloc segments.
    mimalloc: Option<Segments>,
    glibc: Glibc,
    /// The brk heap: glibc's alone.
    brk: Option<(u64, u64)>,
    /// File-backed mappings and the anonymous ones right after them (`.bss`), sorted: static objects.
    statics: Vec<(u64, u64)>,
    /// Readable mappings, sorted: where a pointer can point.
    readable: Vec<(u64, u64)>,
}

impl Allocators {
    pub fn new(maps: &Maps, arenas: Option<Arenas>) -> Allocators {
        let mut statics: Vec<(u64, u64)> = Vec::new();
        let mut prev_file_end = None;
        for m in &maps.entries {
            let file = m.path.as_deref().is_some_and(|p| p.starts_with('/'));
            if file || (m.path.is_none() && prev_file_end == Some(m.start)) {
                statics.push((m.start, m.end));
            }
            prev_file_end = file.then_some(m.end);
        }
        statics.sort_unstable();
        let brk = maps.entries.iter().find(|m| m.path.as_deref() == Some("[heap]")).map(|m| (m.start, m.end));
        let mut readable: Vec<(u64, u64)> =
            maps.entries.iter().filter(|m| m.readable()).map(|m| (m.start, m.end)).collect();
        readable.sort_unstable();
        Allocators { arenas, mimalloc: None, glibc: Glibc::new(maps), brk, statics, readable }
    }

    /// Adds the mimalloc segments of a free-threaded build (checked before glibc: its segments are
    /// mmapped regions).
    pub fn with_mimalloc(mut self, segments: Segments) -> Allocators {
        self.mimalloc = Some(segments);
        self
    }

    /// A block of one of the allocators memspy decodes itself (pymalloc, mimalloc: of a heap in `tags`).
    fn own_block<M: Memory + ?Sized>(&mut self, mem: &M, l: &Layout, block: u64, tags: &[u8]) -> Block {
        if let Some(segments) = self.mimalloc.as_mut() {
            match segments.block(mem, l, block, tags) {
                Block::Outside => {}
                b => return b,
            }
        }
        match self.arenas.as_mut() {
            Some(arenas) => arenas.block(mem, &l.obmalloc, block),
            None => Block::Outside,
        }
    }

    /// Whether pymalloc's arenas are known.
    pub fn knows_pymalloc(&self) -> bool {
        self.arenas.is_some()
    }

    fn is_static(&self, addr: u64) -> bool {
        within(&self.statics, addr)
    }

    /// Whether `addr` lies in a readable mapping (a pointer there may point to something).
    pub fn readable(&self, addr: u64) -> bool {
        within(&self.readable, addr)
    }

    /// Whether the object at `addr`, of type `ty`, whose own allocation is at least `size` bytes without
    /// its pre-header (`sys.getsizeof` of the kinds whose data is inline), lies in memory that can hold it.
    pub fn holds<M: Memory + ?Sized>(&mut self, mem: &M, l: &Layout, addr: u64, ty: &TypeInfo, size: u64) -> Verdict {
        let pre = l.preheader_size(ty.flags);
        let verdict = self.holds_at(mem, l, addr, ty, size, AllocatedBy::Type { pre });
        // A type object that is not a heap type was not allocated by its metatype (C code allocates it,
        // statically or with malloc): it has no pre-header.
        if verdict == Verdict::Invalid && pre > 0 && ty.is_metatype && !is_heap_type(mem, l, addr) {
            return self.holds_at(mem, l, addr, ty, size, AllocatedBy::C);
        }
        verdict
    }

    fn holds_at<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        l: &Layout,
        addr: u64,
        ty: &TypeInfo,
        size: u64,
        by: AllocatedBy,
    ) -> Verdict {
        let (pre, any_api) = match by {
            AllocatedBy::Type { pre } => (pre, false),
            AllocatedBy::C => (0, true),
        };
        let Some(user) = addr.checked_sub(pre) else { return Verdict::Invalid };
        // What the debug hooks handed out starts at `addr`: an object with a pre-header cannot (its
        // pre-header would be where the hooks' header is: a module's state allocated with
        // `PyMem_Malloc` whose second word points at a GC type reads as such an object).
        if pre > 0 && debug_header(mem, addr).is_some() {
            return Verdict::Invalid;
        }
        // Under the debug hooks of the allocators (debug builds, PYTHONMALLOC=debug) each allocation has a
        // header of 16 bytes before what the caller got, and 8 guard bytes after it; twice when the
        // object allocator passes a large request on to the (hooked) raw one.
        let (mut block, mut overhead) = (user, 0);
        for i in 0..2 {
            let Some((_, api)) = debug_header_api(mem, block) else { break };
            // Objects come from the object allocator ('o': `PyObject_Malloc`, which `tp_alloc` and the
            // GC use); a struct of the memory domain's ('m': a module's state) whose second word
            // happens to point at a type is not one. (A type that C code allocated itself may have
            // come from anywhere: `AllocatedBy::C`.)
            if i == 0 && !any_api && api != b'o' {
                return Verdict::Invalid;
            }
            block -= DEBUG_HEADER;
            overhead += DEBUG_HEADER + DEBUG_TRAILER;
        }
        // A compact str is smaller than str's basic size (`PyUnicodeObject`): its own size says.
        let least = overhead + pre + if ty.kind == SizeKind::Str { size.min(ty.basicsize) } else { ty.basicsize };
        // Free-threaded builds: the mimalloc heap an object of this type is allocated from.
        let tags: &[u8] = match (ty.flags & flags::HAVE_GC != 0, pre > 0) {
            (false, _) => &[1],
            (true, false) => &[2],
            (true, true) => &[3],
        };
        match self.own_block(mem, l, block, tags) {
            Block::InUse(n) => return if n >= least { Verdict::Valid } else { Verdict::Invalid },
            Block::NotInUse => return Verdict::Invalid,
            Block::Outside => {}
        }
        if let Some(chunk) = self.glibc.chunk(mem, block) {
            if chunk.usable < least {
                return Verdict::Invalid;
            }
            // With pymalloc in use, a fixed-size object in a malloc chunk was a request over its limit.
            // Not judged by size: objects that can be resized (a `bytes` or `str` shrunk in place stays
            // where it was), and instances with inline values (larger than `sys.getsizeof` says).
            let resizable = ty.itemsize > 0 || ty.kind == SizeKind::Str;
            let inline_values = ty.flags & flags::INLINE_VALUES != 0;
            if self.arenas.is_some()
                && !resizable
                && !inline_values
                && !ty.approx
                && overhead + pre + size.max(ty.basicsize) <= SMALL_REQUEST
            {
                return Verdict::Invalid;
            }
            return Verdict::Valid;
        }
        if self.is_static(addr) {
            return Verdict::Valid;
        }
        if self.brk.is_some_and(|(s, e)| (s..e).contains(&block)) {
            return Verdict::Invalid;
        }
        Verdict::Unvalidated
    }

    /// The bytes of the live block (not an object) that starts at `addr`, when it is one: what a C
    /// extension's buffer holds is scanned for objects.
    pub fn native_block<M: Memory + ?Sized>(&mut self, mem: &M, l: &Layout, addr: u64) -> Option<u64> {
        if let Some(n) = debug_header(mem, addr) {
            // Under the debug hooks: the caller's bytes, if the block under them (past a second header
            // where the raw allocator is hooked too) is live.
            let mut block = addr - DEBUG_HEADER;
            if debug_header(mem, block).is_some() {
                block -= DEBUG_HEADER;
            }
            let live = match self.own_block(mem, l, block, BUFFERS) {
                Block::InUse(_) => true,
                Block::NotInUse => false,
                Block::Outside => self.glibc.chunk(mem, block).is_some(),
            };
            return live.then_some(n);
        }
        match self.own_block(mem, l, addr, BUFFERS) {
            Block::InUse(n) => return Some(n),
            Block::NotInUse => return None,
            Block::Outside => {}
        }
        self.glibc.chunk(mem, addr).map(|c| c.usable)
    }
}

/// Who allocated an object a conservative scan found, as [`Allocators::holds`] checks it.
#[derive(Clone, Copy)]
enum AllocatedBy {
    /// Its type's allocator, with `pre` bytes of pre-header in front (the object allocator's, 'o',
    /// under the debug hooks).
    Type { pre: u64 },
    /// C code, in whatever way (a static type allocated with malloc): no pre-header, any API.
    C,
}

/// The debug hooks' header before an allocation's bytes: the requested size (big-endian), the API's
/// letter ('r', 'm' or 'o') and 7 bytes of `FORBIDDENBYTE`.
const DEBUG_HEADER: u64 = 16;
const DEBUG_TRAILER: u64 = 8;
const FORBIDDEN: u8 = 0xfd;

/// The size the caller asked for, when the bytes at `user` are an allocation under the debug hooks.
fn debug_header<M: Memory + ?Sized>(mem: &M, user: u64) -> Option<u64> {
    debug_header_api(mem, user).map(|(n, _)| n)
}

/// [`debug_header`], with the letter of the API that allocated the bytes.
fn debug_header_api<M: Memory + ?Sized>(mem: &M, user: u64) -> Option<(u64, u8)> {
    let mut h = [0u8; 16];
    mem.read(user.checked_sub(DEBUG_HEADER)?, &mut h).ok()?;
    let api = matches!(h[8], b'r' | b'm' | b'o');
    (api && h[9..].iter().all(|&b| b == FORBIDDEN))
        .then(|| (u64::from_be_bytes(h[..8].try_into().expect("8 bytes")), h[8]))
}

/// Whether the type object at `addr` is a heap type.
fn is_heap_type<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64) -> bool {
    mem.u64_at(addr + l.type_.tp_flags, "tp_flags").is_ok_and(|f| f & flags::HEAPTYPE != 0)
}

/// Whether `addr` lies in one of the sorted, disjoint `ranges`.
fn within(ranges: &[(u64, u64)], addr: u64) -> bool {
    let i = ranges.partition_point(|&(s, _)| s <= addr);
    i > 0 && addr < ranges[i - 1].1
}
