//! CPython memory layouts, as data.
//!
//! One [`Layout`] describes where everything memspy reads lives in one interpreter build (x86_64,
//! default GIL build). [`Layout::builtin`] gives the table for a version from what was verified on real
//! interpreters (see `shared/reference/cpython-internals.md` and ARCHITECTURE.md); on 3.13+ the caller then
//! overrides it with what the target's own `_Py_DebugOffsets` says ([`debug_offsets`]).
//!
//! Nothing here reads memory: this crate is pure data plus the small decoding rules that differ per
//! version (refcount immortality, pre-header sizes).

pub mod debug_offsets;

use std::fmt;

/// A CPython version as `PY_VERSION_HEX` encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub micro: u8,
    /// 0xA alpha, 0xB beta, 0xC release candidate, 0xF final.
    pub level: u8,
    pub serial: u8,
}

impl Version {
    pub const fn new(major: u8, minor: u8, micro: u8) -> Version {
        Version { major, minor, micro, level: 0xF, serial: 0 }
    }

    pub fn from_hex(hex: u64) -> Option<Version> {
        let v = Version {
            major: ((hex >> 24) & 0xff) as u8,
            minor: ((hex >> 16) & 0xff) as u8,
            micro: ((hex >> 8) & 0xff) as u8,
            level: ((hex >> 4) & 0xf) as u8,
            serial: (hex & 0xf) as u8,
        };
        if hex >> 32 != 0 || v.major != 3 || v.minor > 40 || !matches!(v.level, 0xA | 0xB | 0xC | 0xF) {
            return None;
        }
        Some(v)
    }

    pub fn hex(&self) -> u64 {
        (self.major as u64) << 24
            | (self.minor as u64) << 16
            | (self.micro as u64) << 8
            | (self.level as u64) << 4
            | self.serial as u64
    }

    /// Parses "3.12.1", "3.13.0rc2", "3.15.0b4"; trailing text after the version is ignored.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).unwrap_or(s.len());
        let s = &s[..end];
        let mut parts = s.splitn(3, '.');
        let major: u8 = parts.next()?.parse().ok()?;
        let minor: u8 = parts.next()?.parse().ok()?;
        let rest = parts.next().unwrap_or("0");
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let micro: u8 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        let (level, serial) = if tail.is_empty() {
            (0xF, 0)
        } else {
            let (lvl, num) = if let Some(n) = tail.strip_prefix("rc") {
                (0xC, n)
            } else if let Some(n) = tail.strip_prefix('a') {
                (0xA, n)
            } else if let Some(n) = tail.strip_prefix('b') {
                (0xB, n)
            } else if tail == "+" {
                (0xF, "0")
            } else {
                return None;
            };
            (lvl, num.parse().ok()?)
        };
        Some(Version { major, minor, micro, level, serial })
    }

    pub fn at_least(&self, minor: u8, micro: u8) -> bool {
        (self.minor, self.micro) >= (minor, micro)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        match self.level {
            0xA => write!(f, "a{}", self.serial),
            0xB => write!(f, "b{}", self.serial),
            0xC => write!(f, "rc{}", self.serial),
            _ => Ok(()),
        }
    }
}

/// The oldest and newest minor versions memspy has layouts for.
pub const OLDEST_MINOR: u8 = 9;
pub const NEWEST_MINOR: u8 = 15;

/// How `ob_refcnt` encodes immortality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefcountScheme {
    /// 3.9–3.11: a plain counter, no immortal objects.
    Plain,
    /// 3.12+: immortal when the low 32 bits, read as i32, are negative. The reported refcount of an
    /// immortal is its low 32 bits (what `sys.getrefcount` shows).
    Immortal32,
}

/// What `sys.getsizeof` adds on top of `__sizeof__`, and what sits before an object in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreHeader {
    /// 3.9/3.10: `PyGC_Head` (16) for GC objects; type objects count as GC only when they are heap types.
    GcOnly,
    /// 3.11: 16 for GC types, plus 16 when the type has `Py_TPFLAGS_MANAGED_DICT`.
    ManagedDict,
    /// 3.12+: 16 for GC types, plus 16 when the type has `MANAGED_DICT` or `MANAGED_WEAKREF`.
    ManagedDictOrWeakref,
}

/// The layout of `PyDictKeysObject` and of split-table values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DictLayout {
    /// 3.9/3.10: `dk_refcnt @0, dk_size @8, dk_lookup @16, dk_usable @24, dk_nentries @32, indices @40`;
    /// entries of 24 bytes; split values are a plain `PyObject*[]`.
    V39,
    /// 3.11/3.12: `dk_refcnt @0, log2_size @8, log2_index_bytes @9, kind @10, dk_usable @16,
    /// dk_nentries @24, indices @32`; `PyDictValues` is `values[]` with its order bytes before it.
    V311,
    /// 3.13+: keys as in 3.11; `PyDictValues {capacity, size, embedded, valid; values[] @8}`.
    V313,
}

/// Where the unicode object's fields and payload sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnicodeLayout {
    pub length: u64,
    pub state: u64,
    /// `sizeof(PyASCIIObject)`: the payload of a compact ASCII string starts here.
    pub ascii_size: u64,
    /// `sizeof(PyCompactUnicodeObject)`.
    pub compact_size: u64,
    /// `utf8_length` and `utf8` in `PyCompactUnicodeObject`.
    pub utf8_length: u64,
    pub utf8: u64,
    /// ≤3.11: `wstr` in PyASCIIObject and `wstr_length` in PyCompactUnicodeObject.
    pub wstr: Option<u64>,
    pub wstr_length: Option<u64>,
}

/// How `int` stores its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongLayout {
    /// ≤3.11: `ob_size` holds the signed digit count.
    ObSize,
    /// 3.12+: `lv_tag @16`, digit count = `lv_tag >> 3`.
    LvTag,
}

/// The cyclic GC's state (`struct _gc_runtime_state`), offsets relative to `interp->gc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcLayout {
    pub size: u64,
    pub enabled: u64,
    pub debug: u64,
    /// List heads of generations 0, 1, 2 (or young, old[0], old[1] of the incremental collector).
    pub generations: [u64; 3],
    pub permanent: u64,
    /// Offset of the `generation0` pointer, when the build has one (used to detect the Debian 3.13 patch).
    pub generation0_ptr: Option<u64>,
    pub collecting: u64,
    /// `generation_stats[3]` embedded (3 × {collections, collected, uncollectable}), or None (3.15: a
    /// heap-allocated ring buffer behind a pointer at `stats_ptr`).
    pub stats: Option<u64>,
    pub stats_ptr: Option<u64>,
    pub garbage: u64,
    pub callbacks: u64,
    /// 3.15: the frame that started the running collection (non-NULL while one runs).
    pub frame: Option<u64>,
    /// 3.14.0–3.14.4 incremental collector: `visited_space`, which of old[0]/old[1] is
    /// `gc.get_objects(1)`.
    pub visited_space: Option<u64>,
    /// `struct gc_generation {PyGC_Head head; int threshold; int count}`: offsets from a list head.
    pub gen_threshold: u64,
    pub gen_count: u64,
    /// Size of one embedded `gc_generation_stats` entry (`stats`); fields at 0, 8, 16.
    pub stats_entry_size: u64,
    /// 3.15: the layout of the `struct gc_stats` ring buffers behind `stats_ptr`.
    pub stats_ring: Option<GcStatsRing>,
}

/// 3.15's `struct gc_stats` (1120 bytes): `young {items[11]; int8 index}` @0, `old[2] {items[3]; int8
/// index}` @712 (200 bytes each). Each item is a `gc_generation_stats` of 64 bytes with *cumulative*
/// `collections @16, collected @24, uncollectable @32`; `gc.get_stats()[0]` is `young.items[young.index]`,
/// `[1]`/`[2]` are `old[0]`/`old[1]` at their own index. [V: DWARF of Debian 3.15.2 and a live target]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcStatsRing {
    pub size: u64,
    pub item_size: u64,
    pub collections: u64,
    pub collected: u64,
    pub uncollectable: u64,
    pub young: u64,
    pub young_items: u64,
    pub young_index: u64,
    pub old: u64,
    pub old_size: u64,
    pub old_items: u64,
    pub old_index: u64,
}

pub const GC_STATS_RING_315: GcStatsRing = GcStatsRing {
    size: 1120,
    item_size: 64,
    collections: 16,
    collected: 24,
    uncollectable: 32,
    young: 0,
    young_items: 11,
    young_index: 704,
    old: 712,
    old_size: 200,
    old_items: 3,
    old_index: 192,
};

/// Where the pymalloc (obmalloc) state of an interpreter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObmallocLocation {
    /// 3.9–3.11: static globals of `Objects/obmalloc.c` (`arenas`, `maxarenas`, `usedpools`, …), local
    /// symbols found only in a `.symtab` (the binary's, or its build-id debug file's; LTO adds
    /// `.lto_priv.N` suffixes).
    StaticSymbols,
    /// 3.12: `struct _obmalloc_state` embedded in `PyInterpreterState` at this offset.
    Embedded { release: u64, debug: u64 },
    /// 3.13+: `PyInterpreterState.obmalloc` is a pointer to it at this offset (not in `_Py_DebugOffsets`).
    Pointer { release: u64, debug: u64 },
}

/// pymalloc's structures. `struct _obmalloc_state` (3.12+) offsets; the same fields are separate
/// globals on 3.9–3.11. [V: DWARF of 3.12.1, 3.13.0, 3.13.5, 3.14.10, 3.15.2 and their debug builds]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObmallocLayout {
    pub location: ObmallocLocation,
    pub pool_size: u64,
    pub arena_size: u64,
    /// `POOL_OVERHEAD`: the pool header rounded up to the alignment.
    pub pool_overhead: u64,
    /// Size classes (`NB_SMALL_SIZE_CLASSES`) and their step (`ALIGNMENT`).
    pub size_classes: u64,
    pub alignment: u64,
    // struct _obmalloc_state
    pub state_size: u64,
    pub usedpools: u64,
    pub arenas: u64,
    pub maxarenas: u64,
    pub narenas_currently_allocated: u64,
    pub ntimes_arena_allocated: u64,
    pub narenas_highwater: u64,
    // struct arena_object
    pub arena_object_size: u64,
    pub ao_address: u64,
    pub ao_pool_address: u64,
    pub ao_nfreepools: u64,
    pub ao_ntotalpools: u64,
    // struct pool_header
    pub pool_count: u64,
    pub pool_szidx: u64,
    /// `freeblock` (the first free block), `arenaindex`, `nextoffset` (blocks at or past it were never
    /// handed out).
    pub pool_freeblock: u64,
    pub pool_arenaindex: u64,
    pub pool_nextoffset: u64,
}

const OBMALLOC_310: ObmallocLayout = ObmallocLayout {
    location: ObmallocLocation::StaticSymbols,
    pool_size: 16 << 10,
    arena_size: 1 << 20,
    pool_overhead: 48,
    size_classes: 32,
    alignment: 16,
    state_size: 263248,
    usedpools: 0,
    arenas: 0x200,
    maxarenas: 0x208,
    narenas_currently_allocated: 0x428,
    ntimes_arena_allocated: 0x430,
    narenas_highwater: 0x438,
    arena_object_size: 48,
    ao_address: 0,
    ao_pool_address: 8,
    ao_nfreepools: 0x10,
    ao_ntotalpools: 0x14,
    pool_count: 0,
    pool_szidx: 0x24,
    pool_freeblock: 8,
    pool_arenaindex: 0x20,
    pool_nextoffset: 0x28,
};

/// How a thread state points to its innermost frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadFrame {
    /// 3.9/3.10: `PyFrameObject *frame` at this offset (frames are GC-tracked objects).
    Object(u64),
    /// 3.11/3.12: `_PyCFrame *cframe` at `cframe`, whose `current_frame` is at `current`.
    CFrame { cframe: u64, current: u64 },
    /// 3.13+: `_PyInterpreterFrame *current_frame` at this offset.
    Direct(u64),
}

/// `_PyInterpreterFrame` (3.11+): frames that are not objects. Offsets of the fields holding objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterpFrameLayout {
    pub code: u64,
    pub previous: u64,
    pub func: u64,
    pub globals: u64,
    pub builtins: u64,
    pub locals: u64,
    pub frame_obj: u64,
    /// `int stacktop` (3.11–3.13: number of used `localsplus` slots) or, when `stack_pointer`,
    /// `_PyStackRef *stackpointer` (3.14+).
    pub stacktop: u64,
    pub stack_pointer: bool,
    pub localsplus: u64,
    /// Slots are `_PyStackRef`s (3.14+): bit 0 is a tag, `bits & 3 == 3` a tagged int, `bits == 1` NULL.
    pub tagged: bool,
    /// Where a generator/coroutine embeds its frame (`gi_iframe`).
    pub gen_iframe: u64,
    /// `PyFrameObject.f_frame`.
    pub frame_object_frame: u64,
}

/// Where an instance's `__dict__` (or its values without a dict) lives for `MANAGED_DICT` types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagedDict {
    /// ≤3.10: no managed dicts (`tp_dictoffset` inside the object).
    None,
    /// 3.11: `PyObject *dict` at o-24, `PyDictValues *values` (a plain array) at o-32.
    Split311,
    /// 3.12: one tagged word at o-24: bit 0 set → values at `word + 1`, else a dict.
    Tagged312,
    /// 3.13+: dict at o-24; values inline at `o + tp_basicsize` (`INLINE_VALUES` types).
    Inline313,
}

/// Everything memspy needs to know about one build's memory layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub version: Version,
    pub debug_build: bool,
    // _PyRuntimeState
    pub runtime_interpreters_head: u64,
    // PyInterpreterState
    pub interp_next: u64,
    pub interp_threads_head: u64,
    pub interp_gc: u64,
    pub interp_modules: u64,
    pub interp_sysdict: u64,
    pub interp_builtins: u64,
    pub gc: GcLayout,
    pub gc_head_size: u64,
    // PyObject / PyVarObject
    pub ob_refcnt: u64,
    pub ob_type: u64,
    pub ob_size: u64,
    pub refcount: RefcountScheme,
    pub preheader: PreHeader,
    /// Whether `sys.getsizeof` adds the pre-header to *static* type objects (`int`, `list`, …).
    pub static_type_preheader: bool,
    // PyTypeObject / PyHeapTypeObject
    pub tp_name: u64,
    pub tp_basicsize: u64,
    pub tp_itemsize: u64,
    pub tp_flags: u64,
    pub tp_base: u64,
    pub tp_dict: u64,
    pub tp_mro: u64,
    pub type_size: u64,
    pub heap_type_size: u64,
    pub ht_qualname: u64,
    pub ht_cached_keys: u64,
    // containers
    pub tuple_item: u64,
    pub list_item: u64,
    pub list_allocated: u64,
    pub dict_used: u64,
    pub dict_keys: u64,
    pub dict_values: u64,
    pub dict_layout: DictLayout,
    pub set_mask: u64,
    pub set_table: u64,
    pub set_smalltable: u64,
    pub bytearray_alloc: u64,
    pub unicode: UnicodeLayout,
    pub long: LongLayout,
    /// pymalloc's state and structures.
    pub obmalloc: ObmallocLayout,
    // Full-heap walk
    pub tp_dictoffset: u64,
    /// Bytes of `_PyRuntimeState`, `PyInterpreterState` and the thread state (`_PyThreadStateImpl` on
    /// 3.13+), largest among the builds checked: the walk scans them for object pointers (roots).
    pub runtime_size: u64,
    pub interp_size: u64,
    pub tstate_size: u64,
    pub tstate_next: u64,
    pub thread_frame: ThreadFrame,
    pub iframe: Option<InterpFrameLayout>,
    pub managed_dict: ManagedDict,
    /// 3.15: `PyByteArrayObject.ob_bytes_object`.
    pub bytearray_bytes_object: Option<u64>,
    /// Objects whose own `__sizeof__` memspy recomputes (beyond the core containers).
    pub sizeof: SizeofLayout,
}

/// What the `__sizeof__` of generators, frames and some standard-library C types read.
///
/// Each `*_basicsize` is the `tp_basicsize` of the C type itself: memspy recognises the type by name
/// and then checks that its basic size is this one before trusting the offsets.
/// [V: DWARF (`ptype /o`) of pyenv 3.9.18–3.13.0 (libpython, array/_struct/_decimal .so) and Debian
/// 3.9, 3.11, 3.13, 3.14, 3.15 and their debug builds]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeofLayout {
    /// `PyCodeObject.co_extra` (`_PyCodeObjectExtra {Py_ssize_t ce_size; void *ce_extras[ce_size]}`, set by
    /// tools that use `_PyCode_SetExtra`): `code.__sizeof__` adds `16 + (ce_size - 1) * 8`.
    pub code_extra: u64,
    /// 3.9/3.10 `code.__sizeof__` also counts `co_cell2arg` (8 per cell variable), and the opcache
    /// (`co_opcache_map`: one byte per code unit of `co_code`; `co_opcache_size` × 32-byte entries).
    /// None from 3.11: the code is the object's items, rounded up to 8 bytes.
    pub code_v39: Option<CodeSizeof39>,
    /// `PyCodeObject.co_stacksize` and `co_nlocalsplus` (3.11+; `int`s): a frame has
    /// `co_nlocalsplus + co_stacksize` slots (`_PyFrame_NumSlotsForCodeObject`).
    pub code_stacksize: u64,
    pub code_nlocalsplus: Option<u64>,
    /// 3.11+: `offsetof(PyFrameObject, _f_frame_data)` (the embedded `_PyInterpreterFrame`).
    pub frame_data: Option<u64>,
    /// `dequeobject`: `leftindex`; blocks of `deque_block_size` bytes holding `deque_block_len` items.
    pub deque_basicsize: u64,
    pub deque_leftindex: u64,
    pub deque_block_size: u64,
    pub deque_block_len: u64,
    /// `PyODictObject`: `od_first`, `od_fast_nodes_size`; one `_ODictNode` per item.
    pub odict_basicsize: u64,
    pub odict_first: u64,
    pub odict_fast_nodes_size: u64,
    pub odict_node_size: u64,
    /// `arrayobject`: `allocated`, `ob_descr`; `struct arraydescr.itemsize` (`int`).
    pub array_basicsize: u64,
    pub array_allocated: u64,
    pub array_descr: u64,
    pub arraydescr_itemsize: u64,
    /// `PyDecObject.dec` (an `mpd_t`: `uint8_t flags @0`, `mpd_ssize_t alloc @32`); digits are
    /// `mpd_uint_t` (8 bytes); they count unless a flag of `MPD_DATAFLAGS` says static/shared/const.
    pub decimal_basicsize: u64,
    pub decimal_mpd: u64,
    pub mpd_flags: u64,
    pub mpd_alloc: u64,
    pub mpd_dataflags: u8,
    /// `buffered` (`_io.Buffered*`): `char *buffer`, `Py_ssize_t buffer_size`.
    pub buffered_basicsize: u64,
    pub buffered_buffer: u64,
    pub buffered_buffer_size: u64,
    /// `bytesio`: `PyObject *buf` (a bytes object, counted unless shared: refcount > 1).
    pub bytesio_basicsize: u64,
    pub bytesio_buf: u64,
    /// `PyStructObject.s_codes`: `formatcode[]` (`formatcode_size` bytes each, `fmtdef @0`), ended by a
    /// NULL `fmtdef`.
    pub struct_basicsize: u64,
    pub struct_codes: u64,
    pub formatcode_size: u64,
    /// 3.15: a bytearray's buffer is a bytes object: `__sizeof__` adds its header
    /// (`PyBytesObject_SIZE`, 33) to a non-zero `ob_alloc`. 0 before.
    pub bytearray_bytes_header: u64,
}

/// Fields of the 3.9/3.10 `PyCodeObject` that `code.__sizeof__` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeSizeof39 {
    pub cellvars: u64,
    pub cell2arg: u64,
    pub code: u64,
    pub opcache: u64,
    /// `unsigned char`.
    pub opcache_size: u64,
    pub opcache_entry: u64,
}

const SIZEOF_39: SizeofLayout = SizeofLayout {
    code_extra: 0x90,
    code_v39: Some(CodeSizeof39 {
        cellvars: 0x58,
        cell2arg: 0x60,
        code: 0x30,
        opcache: 0xa0,
        opcache_size: 0xac,
        opcache_entry: 32,
    }),
    code_stacksize: 32,
    code_nlocalsplus: None,
    frame_data: None,
    deque_basicsize: 80,
    deque_leftindex: 40,
    deque_block_size: 528,
    deque_block_len: 64,
    odict_basicsize: 112,
    odict_first: 48,
    odict_fast_nodes_size: 72,
    odict_node_size: 32,
    array_basicsize: 64,
    array_allocated: 32,
    array_descr: 40,
    arraydescr_itemsize: 4,
    decimal_basicsize: 104,
    decimal_mpd: 24,
    mpd_flags: 0,
    mpd_alloc: 32,
    mpd_dataflags: 32 | 64 | 128,
    buffered_basicsize: 152,
    buffered_buffer: 56,
    buffered_buffer_size: 120,
    bytesio_basicsize: 64,
    bytesio_buf: 16,
    struct_basicsize: 56,
    struct_codes: 32,
    formatcode_size: 32,
    bytearray_bytes_header: 0,
};

/// Type flags (`tp_flags`).
pub mod flags {
    pub const INLINE_VALUES: u64 = 1 << 2;
    pub const MANAGED_WEAKREF: u64 = 1 << 3;
    pub const MANAGED_DICT: u64 = 1 << 4;
    pub const HEAPTYPE: u64 = 1 << 9;
    pub const HAVE_GC: u64 = 1 << 14;
    pub const LONG_SUBCLASS: u64 = 1 << 24;
    pub const LIST_SUBCLASS: u64 = 1 << 25;
    pub const TUPLE_SUBCLASS: u64 = 1 << 26;
    pub const BYTES_SUBCLASS: u64 = 1 << 27;
    pub const UNICODE_SUBCLASS: u64 = 1 << 28;
    pub const DICT_SUBCLASS: u64 = 1 << 29;
    pub const BASE_EXC_SUBCLASS: u64 = 1 << 30;
    pub const TYPE_SUBCLASS: u64 = 1 << 31;
}

const CLASSIC_GC: GcLayout = GcLayout {
    size: 240,
    enabled: 0x0c,
    debug: 0x10,
    generations: [0x18, 0x30, 0x48],
    permanent: 0x68,
    generation0_ptr: Some(0x60),
    collecting: 0xc8,
    stats: Some(0x80),
    stats_ptr: None,
    garbage: 0xd0,
    callbacks: 0xd8,
    frame: None,
    visited_space: None,
    gen_threshold: 16,
    gen_count: 20,
    stats_entry_size: 24,
    stats_ring: None,
};

/// 3.14.0–3.14.4: the incremental collector (young, old[0], old[1]).
const INCREMENTAL_314_GC: GcLayout = GcLayout {
    size: 240,
    enabled: 0x0c,
    debug: 0x10,
    generations: [0x18, 0x30, 0x48],
    permanent: 0x60,
    generation0_ptr: None,
    collecting: 0xc0,
    stats: Some(0x78),
    stats_ptr: None,
    garbage: 0xc8,
    callbacks: 0xd0,
    frame: None,
    visited_space: Some(0xe8),
    gen_threshold: 16,
    gen_count: 20,
    stats_entry_size: 24,
    stats_ring: None,
};

/// 3.14.5+: the generational collector forward-ported, struct grown to 264 bytes.
const GENERATIONAL_314_GC: GcLayout = GcLayout {
    size: 264,
    enabled: 0x0c,
    debug: 0x10,
    generations: [0x18, 0x30, 0x48],
    permanent: 0x60,
    generation0_ptr: Some(0x100),
    collecting: 0xc0,
    stats: Some(0x78),
    stats_ptr: None,
    garbage: 0xc8,
    callbacks: 0xd0,
    frame: None,
    visited_space: None,
    gen_threshold: 16,
    gen_count: 20,
    stats_entry_size: 24,
    stats_ring: None,
};

/// 3.15.0b1+: compacted struct, stats behind a pointer.
const GC_315: GcLayout = GcLayout {
    size: 176,
    enabled: 0x00,
    debug: 0x04,
    generations: [0x08, 0x20, 0x38],
    permanent: 0x50,
    generation0_ptr: Some(0xa8),
    collecting: 0x70,
    stats: None,
    stats_ptr: Some(0x68),
    garbage: 0x80,
    callbacks: 0x88,
    frame: Some(0x78),
    visited_space: None,
    gen_threshold: 16,
    gen_count: 20,
    stats_entry_size: 64,
    stats_ring: Some(GC_STATS_RING_315),
};

const UNICODE_OLD: UnicodeLayout = UnicodeLayout {
    length: 16,
    state: 32,
    ascii_size: 48,
    compact_size: 72,
    utf8_length: 48,
    utf8: 56,
    wstr: Some(40),
    wstr_length: Some(64),
};

const UNICODE_312: UnicodeLayout = UnicodeLayout {
    length: 16,
    state: 32,
    ascii_size: 40,
    compact_size: 56,
    utf8_length: 40,
    utf8: 48,
    wstr: None,
    wstr_length: None,
};

impl Layout {
    /// The built-in table for a version, or None when memspy has no layout for it.
    pub fn builtin(version: Version) -> Option<Layout> {
        if version.major != 3 || version.minor < OLDEST_MINOR || version.minor > NEWEST_MINOR {
            return None;
        }
        let m = version.minor;
        // Defaults shared by every supported version; each arm below overrides what differs.
        let mut l = Layout {
            version,
            debug_build: false,
            runtime_interpreters_head: 32,
            interp_next: 0,
            interp_threads_head: 8,
            interp_gc: 616,
            interp_modules: 0x358,
            interp_sysdict: 0x368,
            interp_builtins: 0x370,
            gc: CLASSIC_GC,
            gc_head_size: 16,
            ob_refcnt: 0,
            ob_type: 8,
            ob_size: 16,
            refcount: RefcountScheme::Plain,
            preheader: PreHeader::GcOnly,
            static_type_preheader: false,
            tp_name: 24,
            tp_basicsize: 32,
            tp_itemsize: 40,
            tp_flags: 168,
            tp_base: 256,
            tp_dict: 264,
            tp_mro: 344,
            type_size: 408,
            heap_type_size: 880,
            ht_qualname: 856,
            ht_cached_keys: 864,
            tuple_item: 24,
            list_item: 24,
            list_allocated: 32,
            dict_used: 16,
            dict_keys: 32,
            dict_values: 40,
            dict_layout: DictLayout::V39,
            set_mask: 32,
            set_table: 40,
            set_smalltable: 64,
            bytearray_alloc: 24,
            unicode: UNICODE_OLD,
            long: LongLayout::ObSize,
            obmalloc: OBMALLOC_310,
            tp_dictoffset: 288,
            runtime_size: 656,
            interp_size: 5656,
            tstate_size: 264,
            tstate_next: 8,
            thread_frame: ThreadFrame::Object(24),
            iframe: None,
            managed_dict: ManagedDict::None,
            bytearray_bytes_object: None,
            sizeof: SIZEOF_39,
        };
        let iframe_312 = InterpFrameLayout {
            code: 0,
            previous: 8,
            func: 16,
            globals: 24,
            builtins: 32,
            locals: 40,
            frame_obj: 48,
            stacktop: 64,
            stack_pointer: false,
            localsplus: 72,
            tagged: false,
            gen_iframe: 72,
            frame_object_frame: 24,
        };
        match m {
            9 => {
                // 3.9: no large pools/arenas yet.
                l.obmalloc.pool_size = 4 << 10;
                l.obmalloc.arena_size = 256 << 10;
            }
            10 => {
                l.runtime_size = 672;
                l.interp_size = 113528;
                l.tstate_size = 280;
                l.heap_type_size = 888;
                l.ht_qualname = 864;
                l.ht_cached_keys = 872;
            }
            11 => {
                l.runtime_interpreters_head = 40;
                l.interp_threads_head = 16;
                l.interp_gc = 648;
                l.interp_modules = 0x378;
                l.interp_sysdict = 0x388;
                l.interp_builtins = 0x390;
                l.preheader = PreHeader::ManagedDict;
                l.static_type_preheader = true;
                l.heap_type_size = 904;
                l.ht_qualname = 864;
                l.ht_cached_keys = 872;
                l.dict_layout = DictLayout::V311;
                l.runtime_size = 166688;
                l.interp_size = 107752;
                l.tstate_size = 360;
                l.thread_frame = ThreadFrame::CFrame { cframe: 56, current: 8 };
                l.iframe = Some(InterpFrameLayout {
                    code: 32,
                    previous: 48,
                    func: 0,
                    globals: 8,
                    builtins: 16,
                    locals: 24,
                    frame_obj: 40,
                    stacktop: 64,
                    stack_pointer: false,
                    localsplus: 72,
                    tagged: false,
                    gen_iframe: 80,
                    frame_object_frame: 24,
                });
                l.managed_dict = ManagedDict::Split311;
                l.sizeof.code_stacksize = 68;
                l.sizeof.code_extra = 0xb0;
                l.sizeof.code_v39 = None;
                l.sizeof.code_nlocalsplus = Some(76);
                l.sizeof.frame_data = Some(48);
                l.sizeof.deque_basicsize = 216;
            }
            12 => {
                l.runtime_interpreters_head = 40;
                l.interp_threads_head = 72;
                l.interp_gc = 112;
                l.interp_modules = 0x3b0;
                l.interp_sysdict = 0x160;
                l.interp_builtins = 0x168;
                l.refcount = RefcountScheme::Immortal32;
                l.preheader = PreHeader::ManagedDictOrWeakref;
                l.static_type_preheader = true;
                l.type_size = 416;
                l.heap_type_size = 920;
                l.ht_qualname = 872;
                l.ht_cached_keys = 880;
                l.dict_layout = DictLayout::V311;
                l.unicode = UNICODE_312;
                l.long = LongLayout::LvTag;
                l.obmalloc.location = ObmallocLocation::Embedded { release: 3960, debug: 3960 };
                l.runtime_size = 459944;
                l.interp_size = 383552;
                l.tstate_size = 288;
                l.thread_frame = ThreadFrame::CFrame { cframe: 56, current: 0 };
                l.iframe = Some(iframe_312);
                l.managed_dict = ManagedDict::Tagged312;
                l.sizeof.code_stacksize = 64;
                l.sizeof.code_nlocalsplus = Some(72);
                l.sizeof.frame_data = Some(48);
                l.sizeof.code_extra = 0xb8;
                l.sizeof.code_v39 = None;
                l.sizeof.deque_basicsize = 216;
            }
            _ => {
                // 3.13+: the interpreter-level offsets are placeholders from 3.13.0 (pyenv); discovery
                // replaces them with the target's `_Py_DebugOffsets`.
                l.runtime_interpreters_head = 0x278;
                l.interp_next = 0x1c60;
                l.interp_threads_head = 0x1cb0;
                l.interp_gc = 0x1ce8;
                l.interp_modules = 0x1de8;
                l.interp_sysdict = 0x1dd8;
                l.interp_builtins = 0x1de0;
                l.refcount = RefcountScheme::Immortal32;
                l.preheader = PreHeader::ManagedDictOrWeakref;
                l.static_type_preheader = false;
                l.type_size = 416;
                l.heap_type_size = 928;
                l.ht_qualname = 872;
                l.ht_cached_keys = 880;
                l.dict_layout = DictLayout::V313;
                l.unicode = UNICODE_312;
                l.long = LongLayout::LvTag;
                // Debug builds have one more pointer before it (`_PyInterpreterState` grows by 8).
                l.obmalloc.location = ObmallocLocation::Pointer { release: 0x2a30, debug: 0x2a38 };
                l.runtime_size = 283320;
                l.interp_size = 194976;
                l.tstate_size = 336;
                l.thread_frame = ThreadFrame::Direct(72);
                l.iframe = Some(iframe_312);
                l.managed_dict = ManagedDict::Inline313;
                l.sizeof.code_stacksize = 64;
                l.sizeof.code_nlocalsplus = Some(72);
                l.sizeof.frame_data = Some(64);
                l.sizeof.code_extra = 0xc0;
                l.sizeof.code_v39 = None;
                l.sizeof.deque_basicsize = 216;
                if m >= 14 {
                    l.sizeof.frame_data = Some(72);
                    l.sizeof.code_extra = 0xc8;
                    l.obmalloc.location = ObmallocLocation::Pointer { release: 0x2a98, debug: 0x2aa0 };
                    l.runtime_size = 332632;
                    l.interp_size = 225880;
                    l.tstate_size = 936;
                    l.iframe =
                        Some(InterpFrameLayout { stack_pointer: true, localsplus: 80, tagged: true, ..iframe_312 });
                    l.heap_type_size = 936;
                    l.tuple_item = 32;
                    l.gc = if version.at_least(14, 5) { GENERATIONAL_314_GC } else { INCREMENTAL_314_GC };
                }
                if m >= 15 {
                    l.type_size = 424;
                    l.heap_type_size = 944;
                    l.ht_qualname = 880;
                    l.ht_cached_keys = 888;
                    l.gc = GC_315;
                    l.obmalloc.location = ObmallocLocation::Pointer { release: 0x2a80, debug: 0x2a88 };
                    l.runtime_size = 346568;
                    l.interp_size = 226240;
                    l.tstate_size = 1104;
                    l.bytearray_bytes_object = Some(56);
                    l.sizeof.struct_basicsize = 64;
                    // `bytearray_sizeof` 3.15.2: `basicsize + (ob_alloc > 0 ? ob_alloc + 33 : 0)`.
                    l.sizeof.bytearray_bytes_header = 33;
                }
            }
        }
        Some(l)
    }

    /// The GC layout that a `gc.size` value read from `_Py_DebugOffsets` points to, for the versions where
    /// the struct changed inside a patch series (3.14.0–3.14.4 incremental vs 3.14.5+ generational).
    pub fn gc_layout_for_size(&self, gc_size: u64) -> Option<GcLayout> {
        match (self.version.minor, gc_size) {
            (9..=13, 240) => Some(CLASSIC_GC),
            (14, 240) => Some(INCREMENTAL_314_GC),
            (14, 264) => Some(GENERATIONAL_314_GC),
            (15, 176) => Some(GC_315),
            _ => None,
        }
    }

    /// Decodes a raw `ob_refcnt` word into (refcount as `sys.getrefcount` reports it, immortal).
    pub fn decode_refcount(&self, raw: u64) -> (u64, bool) {
        match self.refcount {
            RefcountScheme::Plain => (raw, false),
            RefcountScheme::Immortal32 => {
                // A mortal count never reaches 2^31 (it would read as immortal), so the low word is
                // the whole count; 3.14+ keep flags in the high word.
                let low = raw as u32;
                (low as u64, (low as i32) < 0)
            }
        }
    }

    /// Bytes in front of an object of a type with these flags (`_PyType_PreHeaderSize`), which
    /// `sys.getsizeof` adds to `__sizeof__` (except where [`Self::getsizeof_preheader`] says otherwise).
    pub fn preheader_size(&self, type_flags: u64) -> u64 {
        let gc = if type_flags & flags::HAVE_GC != 0 { self.gc_head_size } else { 0 };
        let managed = match self.preheader {
            PreHeader::GcOnly => false,
            PreHeader::ManagedDict => type_flags & flags::MANAGED_DICT != 0,
            PreHeader::ManagedDictOrWeakref => type_flags & (flags::MANAGED_DICT | flags::MANAGED_WEAKREF) != 0,
        };
        gc + if managed { 16 } else { 0 }
    }

    /// What `sys.getsizeof` adds to `__sizeof__` for an object whose type has `type_flags`.
    /// `object_is_type`: the object is itself a type object; `object_flags`: its own `tp_flags` then.
    /// `type_is_exact_type`: the object's type is `type` itself (not a metaclass).
    pub fn getsizeof_preheader(
        &self,
        type_flags: u64,
        object_is_type: bool,
        type_is_exact_type: bool,
        object_flags: u64,
    ) -> u64 {
        let object_is_static_type = object_is_type && object_flags & flags::HEAPTYPE == 0;
        match self.preheader {
            // 3.9/3.10 add the GC head only when `_PyObject_IS_GC(o)`: for type objects `tp_is_gc`
            // answers "is a heap type".
            PreHeader::GcOnly => {
                if object_is_static_type {
                    0
                } else {
                    self.preheader_size(type_flags)
                }
            }
            _ => {
                if object_is_static_type && type_is_exact_type && !self.static_type_preheader {
                    0
                } else {
                    self.preheader_size(type_flags)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_round_trip() {
        let v = Version::from_hex(0x30c01f0).unwrap();
        assert_eq!(v.to_string(), "3.12.1");
        assert_eq!(v.hex(), 0x30c01f0);
        assert_eq!(Version::parse("3.13.0rc2").unwrap().hex(), 0x30d00c2);
        assert_eq!(Version::parse("3.15.2 (main, Oct 26 2026)").unwrap(), Version::new(3, 15, 2));
        assert!(Version::from_hex(0x20718f0).is_none());
        assert!(Version::parse("x.y").is_none());
    }

    #[test]
    fn every_supported_minor_has_a_layout() {
        for m in OLDEST_MINOR..=NEWEST_MINOR {
            let l = Layout::builtin(Version::new(3, m, 0)).unwrap();
            assert!(l.gc.generations.iter().all(|g| *g + 16 <= l.gc.size));
            assert!(l.gc.permanent + 16 <= l.gc.size);
        }
        assert!(Layout::builtin(Version::new(3, 8, 18)).is_none());
        assert!(Layout::builtin(Version::new(3, 16, 0)).is_none());
    }

    #[test]
    fn gc_314_patch_series() {
        assert_eq!(Layout::builtin(Version::new(3, 14, 4)).unwrap().gc.size, 240);
        assert_eq!(Layout::builtin(Version::new(3, 14, 10)).unwrap().gc.size, 264);
    }

    #[test]
    fn sizeof_layouts() {
        let l = Layout::builtin(Version::new(3, 10, 13)).unwrap();
        assert_eq!((l.sizeof.code_nlocalsplus, l.sizeof.frame_data, l.sizeof.deque_basicsize), (None, None, 80));
        for (m, frame_data, nlocals) in [(11, 48, 76), (12, 48, 72), (13, 64, 72), (14, 72, 72), (15, 72, 72)] {
            let l = Layout::builtin(Version::new(3, m, 0)).unwrap();
            assert_eq!(l.sizeof.frame_data, Some(frame_data), "3.{m}");
            assert_eq!(l.sizeof.code_nlocalsplus, Some(nlocals), "3.{m}");
            assert_eq!(l.sizeof.deque_basicsize, 216, "3.{m}");
            assert_eq!(l.sizeof.bytearray_bytes_header, if m >= 15 { 33 } else { 0 }, "3.{m}");
            assert_eq!(l.sizeof.struct_basicsize, if m >= 15 { 64 } else { 56 }, "3.{m}");
        }
    }

    #[test]
    fn refcounts() {
        let l = Layout::builtin(Version::new(3, 14, 0)).unwrap();
        assert_eq!(l.decode_refcount(0x0005_0000_c000_0000), (0xc000_0000, true));
        assert_eq!(l.decode_refcount(7), (7, false));
        let l = Layout::builtin(Version::new(3, 12, 1)).unwrap();
        assert_eq!(l.decode_refcount(0xffff_ffff), (0xffff_ffff, true));
        let l = Layout::builtin(Version::new(3, 11, 0)).unwrap();
        assert_eq!(l.decode_refcount(999_999_999), (999_999_999, false));
    }
}
