//! The built-in tables: one [`Layout`] per supported version, each written as the previous version
//! plus what changed. Values were verified on real interpreters (see `shared/reference/cpython-internals.md`
//! and ARCHITECTURE.md) and are checked against the DWARF of every interpreter on the machine by the
//! main crate's `tests/dwarf_layouts.rs`.
//!
//! On 3.13+ the interpreter-level offsets here are placeholders (from pyenv's 3.13.0): discovery
//! replaces them with the target's own `_Py_DebugOffsets` ([`crate::debug_offsets`]).

use crate::gc::{GcLayout, GcStatsRing};
use crate::layout::*;
use crate::obmalloc::*;
use crate::sizeof::*;
use crate::{Version, NEWEST_MINOR, OLDEST_MINOR};

/// 3.9–3.13 (`struct _gc_runtime_state` with three generations and a `generation0` pointer).
pub const CLASSIC_GC: GcLayout = GcLayout {
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
    generation_size: 24,
    gen_threshold: 16,
    gen_count: 20,
    stats_entry_size: 24,
    stats_ring: None,
};

/// 3.9.
pub const V3_9: Layout = Layout {
    version: Version::new(3, 9, 0),
    debug_build: false,
    runtime: RuntimeState { interpreters_head: 32, size: 656 },
    interp: InterpreterState {
        next: 0,
        threads_head: 8,
        gc: 616,
        modules: 0x358,
        sysdict: 0x368,
        builtins: 0x370,
        size: 5656,
    },
    gc: CLASSIC_GC,
    gc_head: GcHead { size: 16 },
    object: Object { ob_refcnt: 0, ob_type: 8, ob_size: 16 },
    refcount: RefcountScheme::Plain,
    static_refcount: 0,
    preheader: PreHeader::GcOnly,
    static_type_preheader: false,
    type_: TypeObject {
        tp_name: 24,
        tp_basicsize: 32,
        tp_itemsize: 40,
        tp_flags: 168,
        tp_doc: 176,
        tp_base: 256,
        tp_dict: 264,
        tp_mro: 344,
        tp_dictoffset: 288,
        tp_members: 0xf0,
        size: 408,
    },
    heap_type: HeapTypeObject { ht_qualname: 856, ht_cached_keys: 864, size: 880 },
    tuple: TupleObject { item: 24 },
    list: ListObject { item: 24, allocated: 32 },
    dict: DictObject { used: 16, keys: 32, values: 40, kind: DictLayout::V39 },
    set: SetObject { mask: 32, table: 40, smalltable: 64 },
    bytearray: ByteArrayObject { alloc: 24, bytes_object: None },
    scalars: Scalars { bytes_sval: 32, float_fval: 16 },
    unicode: UnicodeLayout {
        length: 16,
        state: 32,
        kind_bit: 2,
        ascii_size: 48,
        compact_size: 72,
        utf8_length: 48,
        utf8: 56,
        wstr: Some(40),
        wstr_length: Some(64),
    },
    long: LongLayout::ObSize { min_one_digit: false },
    obmalloc: ObmallocLayout {
        location: ObmallocLocation::StaticSymbols,
        // No large pools/arenas yet.
        pool_size: 4 << 10,
        arena_size: 256 << 10,
        pool_overhead: 48,
        size_classes: 32,
        alignment: 16,
        state: ObmallocState {
            size: 263248,
            usedpools: 0,
            arenas: 0x200,
            maxarenas: 0x208,
            narenas_currently_allocated: 0x428,
            ntimes_arena_allocated: 0x430,
            narenas_highwater: 0x438,
        },
        arena: ArenaObject { size: 48, address: 0, pool_address: 8, nfreepools: 0x10, ntotalpools: 0x14 },
        pool: PoolHeader { count: 0, szidx: 0x24, freeblock: 8, nextoffset: 0x28 },
    },
    tstate: ThreadState { next: 8, frame: ThreadFrame::Object(24), thread_id: 0xb0, size: 264 },
    iframe: None,
    managed_dict: ManagedDict::None,
    code: CodeLayout {
        filename: 0x68,
        name: 0x70,
        firstlineno: 0x28,
        localsplusnames: None,
        varnames: Some(0x48),
        cellvars: Some(0x58),
        freevars: Some(0x50),
        linetable: 0x78,
        line_table: LineTable::Lnotab,
        code_adaptive: None,
        tlbc: None,
    },
    frame_object: Some(FrameObjectLayout { back: 0x18, code: 0x20, localsplus: 0x168, lasti: 0x68, lasti_unit: 1 }),
    module: ModuleObject { md_dict: 0x10 },
    sizeof: SizeofLayout {
        code: CodeObject {
            extra: 0x90,
            v39: Some(CodeSizeof39 {
                cellvars: 0x58,
                cell2arg: 0x60,
                code: 0x30,
                opcache: 0xa0,
                opcache_size: 0xac,
                opcache_entry: 32,
            }),
            stacksize: 32,
            nlocalsplus: None,
        },
        frame: FrameSizeof::VarSized,
        deque: Deque {
            basicsize: 80,
            leftindex: 40,
            block_size: 528,
            block_len: 64,
            leftblock: 24,
            block_data: 8,
            block_rightlink: 520,
        },
        odict: ODict { basicsize: 112, first: 48, fast_nodes_size: 72, node_size: 32 },
        array: Array { basicsize: 64, allocated: 32, descr: 40, descr_itemsize: 4 },
        decimal: Decimal { basicsize: 104, mpd: 24, mpd_flags: 0, mpd_alloc: 32, mpd_dataflags: 32 | 64 | 128 },
        buffered: Buffered { basicsize: 152, buffer: 56, buffer_size: 120 },
        bytesio: BytesIO { basicsize: 64, buf: 16, buf_shared: None },
        struct_: Struct { basicsize: 56, codes: 32, formatcode_size: 32 },
        bytearray_bytes_header: 0,
    },
    mimalloc: None,
};

/// 3.10: large pools and arenas; `PyHeapTypeObject` grows (`ht_module`); PEP 626's line table,
/// `f_lasti` in code units.
pub const V3_10: Layout = Layout {
    version: Version::new(3, 10, 0),
    runtime: RuntimeState { size: 672, ..V3_9.runtime },
    interp: InterpreterState { size: 113528, ..V3_9.interp },
    heap_type: HeapTypeObject { ht_qualname: 864, ht_cached_keys: 872, size: 888 },
    obmalloc: ObmallocLayout { pool_size: 16 << 10, arena_size: 1 << 20, ..V3_9.obmalloc },
    tstate: ThreadState { size: 280, ..V3_9.tstate },
    code: CodeLayout { line_table: LineTable::Pep626, ..V3_9.code },
    frame_object: Some(FrameObjectLayout { back: 0x18, code: 0x20, localsplus: 0x160, lasti: 0x60, lasti_unit: 2 }),
    ..V3_9
};

/// 3.11's `_PyInterpreterFrame`.
pub const IFRAME_311: InterpFrameLayout = InterpFrameLayout {
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
    gen_origin: 64,
    frame_object_frame: 24,
    instr: 56,
    tlbc_index: None,
    c_entry: None,
};

/// 3.11: frames are no longer objects (`_PyCFrame`, `_PyInterpreterFrame`), managed dicts, new dict
/// keys, `Py_Version`.
pub const V3_11: Layout = Layout {
    version: Version::new(3, 11, 0),
    runtime: RuntimeState { interpreters_head: 40, size: 166688 },
    interp: InterpreterState {
        threads_head: 16,
        gc: 648,
        modules: 0x378,
        sysdict: 0x388,
        builtins: 0x390,
        size: 107752,
        ..V3_10.interp
    },
    static_refcount: 999_999_999,
    preheader: PreHeader::ManagedDict,
    static_type_preheader: true,
    heap_type: HeapTypeObject { size: 904, ..V3_10.heap_type },
    dict: DictObject { kind: DictLayout::V311, ..V3_10.dict },
    long: LongLayout::ObSize { min_one_digit: true },
    tstate: ThreadState {
        frame: ThreadFrame::CFrame { cframe: 56, current: 8 },
        thread_id: 0x98,
        size: 360,
        ..V3_10.tstate
    },
    iframe: Some(IFRAME_311),
    managed_dict: ManagedDict::Split311,
    code: CodeLayout {
        filename: 0x70,
        name: 0x78,
        firstlineno: 0x48,
        localsplusnames: Some(0x60),
        varnames: None,
        cellvars: None,
        freevars: None,
        linetable: 136,
        line_table: LineTable::Locations,
        code_adaptive: Some(184),
        tlbc: None,
    },
    frame_object: None,
    sizeof: SizeofLayout {
        code: CodeObject { extra: 0xb0, v39: None, stacksize: 68, nlocalsplus: Some(76) },
        frame: FrameSizeof::Embedded { frame_data: 48 },
        deque: Deque { basicsize: 216, ..V3_10.sizeof.deque },
        ..V3_10.sizeof
    },
    ..V3_10
};

/// 3.12's `_PyInterpreterFrame` (also 3.13's).
pub const IFRAME_312: InterpFrameLayout = InterpFrameLayout {
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
    gen_origin: 56,
    frame_object_frame: 24,
    instr: 56,
    tlbc_index: None,
    c_entry: None,
};

/// 3.12: immortal objects, `lv_tag` ints, no `wstr`, pymalloc state inside the interpreter, tagged
/// managed dicts.
pub const V3_12: Layout = Layout {
    version: Version::new(3, 12, 0),
    runtime: RuntimeState { size: 459944, ..V3_11.runtime },
    interp: InterpreterState {
        threads_head: 72,
        gc: 112,
        modules: 0x3b0,
        sysdict: 0x160,
        builtins: 0x168,
        size: 383552,
        ..V3_11.interp
    },
    refcount: RefcountScheme::Immortal32,
    static_refcount: 0,
    preheader: PreHeader::ManagedDictOrWeakref,
    type_: TypeObject { size: 416, ..V3_11.type_ },
    heap_type: HeapTypeObject { ht_qualname: 872, ht_cached_keys: 880, size: 920 },
    unicode: UnicodeLayout {
        length: 16,
        state: 32,
        kind_bit: 2,
        ascii_size: 40,
        compact_size: 56,
        utf8_length: 40,
        utf8: 48,
        wstr: None,
        wstr_length: None,
    },
    long: LongLayout::LvTag,
    obmalloc: ObmallocLayout { location: ObmallocLocation::Embedded { release: 3960, debug: 3960 }, ..V3_11.obmalloc },
    tstate: ThreadState {
        frame: ThreadFrame::CFrame { cframe: 56, current: 0 },
        thread_id: 0x88,
        size: 288,
        ..V3_11.tstate
    },
    iframe: Some(InterpFrameLayout { c_entry: Some(FrameOwner { at: 70, cstack: 3 }), ..IFRAME_312 }),
    managed_dict: ManagedDict::Tagged312,
    code: CodeLayout { firstlineno: 0x44, code_adaptive: Some(192), ..V3_11.code },
    sizeof: SizeofLayout {
        code: CodeObject { extra: 0xb8, stacksize: 64, nlocalsplus: Some(72), ..V3_11.sizeof.code },
        ..V3_11.sizeof
    },
    ..V3_11
};

/// 3.13: `_Py_DebugOffsets` (the interpreter-level offsets below are pyenv 3.13.0's placeholders),
/// inline values, `current_frame` in the thread state, `interp->obmalloc` a pointer.
pub const V3_13: Layout = Layout {
    version: Version::new(3, 13, 0),
    runtime: RuntimeState { interpreters_head: 0x278, size: 299392 },
    interp: InterpreterState {
        next: 0x1c60,
        threads_head: 0x1cb0,
        gc: 0x1ce8,
        modules: 0x1de8,
        sysdict: 0x1dd8,
        builtins: 0x1de0,
        size: 194992,
    },
    static_type_preheader: false,
    heap_type: HeapTypeObject { size: 928, ..V3_12.heap_type },
    dict: DictObject { kind: DictLayout::V313, ..V3_12.dict },
    obmalloc: ObmallocLayout {
        // Debug builds have one more pointer before it (`_PyInterpreterState` grows by 8).
        location: ObmallocLocation::Pointer { release: 0x2a30, debug: 0x2a38 },
        ..V3_12.obmalloc
    },
    tstate: ThreadState { frame: ThreadFrame::Direct(72), thread_id: 0x98, size: 336, ..V3_12.tstate },
    iframe: Some(IFRAME_312),
    managed_dict: ManagedDict::Inline313 { dict: 24, weakref: 32 },
    code: CodeLayout { code_adaptive: Some(200), ..V3_12.code },
    sizeof: SizeofLayout {
        code: CodeObject { extra: 0xc0, ..V3_12.sizeof.code },
        frame: FrameSizeof::Embedded { frame_data: 64 },
        ..V3_12.sizeof
    },
    ..V3_12
};

/// 3.14.0–3.14.4: the incremental collector (young, old[0], old[1]).
pub const INCREMENTAL_314_GC: GcLayout = GcLayout {
    permanent: 0x60,
    generation0_ptr: None,
    collecting: 0xc0,
    stats: Some(0x78),
    garbage: 0xc8,
    callbacks: 0xd0,
    visited_space: Some(0xe8),
    ..CLASSIC_GC
};

/// 3.14.0–3.14.4: `_PyStackRef` frames, tuples with a cached hash, the incremental collector.
pub const V3_14: Layout = Layout {
    version: Version::new(3, 14, 0),
    runtime: RuntimeState { size: 332632, ..V3_13.runtime },
    interp: InterpreterState { size: 225880, ..V3_13.interp },
    gc: INCREMENTAL_314_GC,
    heap_type: HeapTypeObject { size: 936, ..V3_13.heap_type },
    tuple: TupleObject { item: 32 },
    // 3.14.4's DWARF (the debug value follows the other versions' +8, unchecked).
    obmalloc: ObmallocLayout {
        location: ObmallocLocation::Pointer { release: 0x2a80, debug: 0x2a88 },
        ..V3_13.obmalloc
    },
    tstate: ThreadState { size: 936, ..V3_13.tstate },
    iframe: Some(InterpFrameLayout { stack_pointer: true, localsplus: 80, tagged: true, ..IFRAME_312 }),
    code: CodeLayout { code_adaptive: Some(208), ..V3_13.code },
    sizeof: SizeofLayout {
        code: CodeObject { extra: 0xc8, ..V3_13.sizeof.code },
        frame: FrameSizeof::Embedded { frame_data: 72 },
        ..V3_13.sizeof
    },
    ..V3_13
};

/// 3.14.5+: the generational collector forward-ported, struct grown to 264 bytes.
pub const GENERATIONAL_314_GC: GcLayout =
    GcLayout { size: 264, generation0_ptr: Some(0x100), visited_space: None, ..INCREMENTAL_314_GC };

/// 3.14.5+: 3.14.0 with the generational collector (and `interp->obmalloc` 24 bytes further).
pub const V3_14_5: Layout = Layout {
    version: Version::new(3, 14, 5),
    gc: GENERATIONAL_314_GC,
    obmalloc: ObmallocLayout {
        location: ObmallocLocation::Pointer { release: 0x2a98, debug: 0x2aa0 },
        ..V3_14.obmalloc
    },
    ..V3_14
};

/// 3.15: the GC's statistics ring buffers behind `gc.generation_stats`.
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

/// 3.15.0b1+: compacted struct, stats behind a pointer.
pub const GC_315: GcLayout = GcLayout {
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
    generation_size: 24,
    gen_threshold: 16,
    gen_count: 20,
    stats_entry_size: 64,
    stats_ring: Some(GC_STATS_RING_315),
};

/// 3.15: `PyTypeObject` grows, bytearrays keep a bytes object, GC statistics behind a pointer.
pub const V3_15: Layout = Layout {
    version: Version::new(3, 15, 0),
    runtime: RuntimeState { size: 362592, ..V3_14_5.runtime },
    interp: InterpreterState { size: 226256, ..V3_14_5.interp },
    gc: GC_315,
    type_: TypeObject { size: 424, ..V3_14_5.type_ },
    heap_type: HeapTypeObject { ht_qualname: 880, ht_cached_keys: 888, size: 944 },
    bytearray: ByteArrayObject { bytes_object: Some(56), ..V3_14_5.bytearray },
    obmalloc: ObmallocLayout {
        location: ObmallocLocation::Pointer { release: 0x2a80, debug: 0x2a88 },
        ..V3_14_5.obmalloc
    },
    tstate: ThreadState { thread_id: 0xb0, size: 1104, ..V3_14_5.tstate },
    sizeof: SizeofLayout {
        struct_: Struct { basicsize: 64, ..V3_14_5.sizeof.struct_ },
        // `bytearray_sizeof` 3.15.2: `basicsize + (ob_alloc > 0 ? ob_alloc + 33 : 0)`.
        bytearray_bytes_header: 33,
        ..V3_14_5.sizeof
    },
    ..V3_14_5
};

impl Layout {
    /// The built-in table for a version, or None when memspy has no layout for it.
    pub fn builtin(version: Version) -> Option<Layout> {
        if version.major != 3 || version.minor < OLDEST_MINOR || version.minor > NEWEST_MINOR {
            return None;
        }
        let table = match version.minor {
            9 => V3_9,
            10 => V3_10,
            11 => V3_11,
            12 => V3_12,
            13 => V3_13,
            14 if version.at_least(14, 5) => V3_14_5,
            14 => V3_14,
            _ => V3_15,
        };
        Some(Layout { version, ..table })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_minor_has_a_layout() {
        for m in OLDEST_MINOR..=NEWEST_MINOR {
            let l = Layout::builtin(Version::new(3, m, 0)).unwrap();
            assert!(l.gc.generations.iter().all(|g| *g + 16 <= l.gc.size));
            assert!(l.gc.permanent + 16 <= l.gc.size);
            assert_eq!(l.gc.generations, l.gc.generations_from(l.gc.generations[0]), "3.{m}");
        }
        assert!(Layout::builtin(Version::new(3, 8, 18)).is_none());
        assert!(Layout::builtin(Version::new(3, 16, 0)).is_none());
    }

    #[test]
    fn gc_314_patch_series() {
        assert_eq!(Layout::builtin(Version::new(3, 14, 4)).unwrap().gc.size, 240);
        assert_eq!(Layout::builtin(Version::new(3, 14, 10)).unwrap().gc.size, 264);
        let l = Layout::builtin(Version::new(3, 14, 2)).unwrap();
        assert_eq!(l.gc_layout_for_size(264), Some(GENERATIONAL_314_GC));
        assert_eq!(l.gc_layout_for_size(240), Some(INCREMENTAL_314_GC));
        assert_eq!(l.gc_layout_for_size(248), None);
    }

    #[test]
    fn debian_313_gc_shift() {
        // The patched `PyGC_Head` (4-aligned) puts generation 0 at gc+0x14.
        let l = Layout::builtin(Version::new(3, 13, 5)).unwrap();
        assert_eq!(l.gc.generations_from(0x14), [0x14, 0x2c, 0x44]);
    }

    #[test]
    fn sizeof_layouts() {
        let l = Layout::builtin(Version::new(3, 10, 13)).unwrap();
        let s = l.sizeof;
        assert_eq!((s.code.nlocalsplus, s.frame, s.deque.basicsize), (None, FrameSizeof::VarSized, 80));
        for (m, frame_data, nlocals) in [(11, 48, 76), (12, 48, 72), (13, 64, 72), (14, 72, 72), (15, 72, 72)] {
            let s = Layout::builtin(Version::new(3, m, 0)).unwrap().sizeof;
            assert_eq!(s.frame.frame_data(), Some(frame_data), "3.{m}");
            assert_eq!(s.code.nlocalsplus, Some(nlocals), "3.{m}");
            assert_eq!(s.deque.basicsize, 216, "3.{m}");
            assert_eq!(s.bytearray_bytes_header, if m >= 15 { 33 } else { 0 }, "3.{m}");
            assert_eq!(s.struct_.basicsize, if m >= 15 { 64 } else { 56 }, "3.{m}");
        }
    }

    #[test]
    fn pinned_values() {
        // A few values per version, as the flat tables had them before they were grouped by struct.
        let get = |v: &str| Layout::builtin(Version::parse(v).unwrap()).unwrap();
        let l = get("3.9.18");
        assert_eq!((l.obmalloc.pool_size, l.obmalloc.arena_size, l.heap_type.size), (4 << 10, 256 << 10, 880));
        assert_eq!(l.long, LongLayout::ObSize { min_one_digit: false });
        let l = get("3.10.13");
        assert_eq!((l.obmalloc.pool_size, l.interp.size, l.heap_type.ht_qualname), (16 << 10, 113528, 864));
        let l = get("3.11.7");
        assert_eq!((l.runtime.interpreters_head, l.interp.gc, l.interp.builtins), (40, 648, 0x390));
        assert_eq!(l.long, LongLayout::ObSize { min_one_digit: true });
        assert_eq!(l.tstate.frame, ThreadFrame::CFrame { cframe: 56, current: 8 });
        let l = get("3.12.1");
        assert_eq!((l.interp.threads_head, l.interp.sysdict, l.type_.size, l.heap_type.size), (72, 0x160, 416, 920));
        assert_eq!(l.obmalloc.location, ObmallocLocation::Embedded { release: 3960, debug: 3960 });
        let l = get("3.13.0");
        assert_eq!((l.interp.next, l.interp.gc, l.sizeof.code.extra, l.tstate.size), (0x1c60, 0x1ce8, 0xc0, 336));
        let l = get("3.14.10");
        assert_eq!((l.tuple.item, l.heap_type.size, l.gc.generation0_ptr), (32, 936, Some(0x100)));
        assert_eq!(l.iframe.unwrap().localsplus, 80);
        // Where frames say which instruction runs, and the line tables (DWARF of pyenv's and Debian's builds).
        let f = get("3.9.18").frame_object.unwrap();
        assert_eq!((f.lasti, f.lasti_unit, get("3.9.18").code.linetable), (104, 1, 120));
        let f = get("3.10.13").frame_object.unwrap();
        assert_eq!((f.lasti, f.lasti_unit, get("3.10.13").code.line_table), (96, 2, LineTable::Pep626));
        for (v, adaptive) in [("3.11.7", 184), ("3.12.1", 192), ("3.13.0", 200), ("3.14.4", 208), ("3.15.2", 208)] {
            let l = get(v);
            assert_eq!(
                (l.iframe.unwrap().instr, l.code.linetable, l.code.code_adaptive),
                (56, 136, Some(adaptive)),
                "{v}"
            );
            assert_eq!(l.code.line_table, LineTable::Locations, "{v}");
        }
        let l = get("3.15.2");
        assert_eq!((l.type_.size, l.heap_type.ht_cached_keys, l.bytearray.bytes_object), (424, 888, Some(56)));
        assert_eq!((l.gc.size, l.gc.stats_ptr, l.sizeof.struct_.basicsize), (176, Some(0x68), 64));
    }
}
