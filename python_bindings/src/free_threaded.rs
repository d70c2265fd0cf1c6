//! The free-threaded (`--disable-gil`, "t") builds: each version's table is the GIL table of the same
//! version plus what the free-threaded build changes.
//!
//! The object header is 32 bytes instead of 16 (`ob_tid`, `ob_flags`, `ob_mutex`, `ob_gc_bits`,
//! `ob_ref_local`, `ob_ref_shared`, `ob_type`), so every member of an object struct after the header
//! is 16 bytes further ([`shift_objects`]); the sizes of the runtime structs, the GC state, the
//! frames, and where mimalloc keeps each thread's heaps differ per version. Objects have no
//! `PyGC_Head` and are found in the heaps ([`crate::mimalloc`]), not in GC lists.
//!
//! [V: DWARF of 3.13.12t, 3.14.6t, 3.15.0b4t (`tests/dwarf_layouts.rs`); `shared/reference/free-threaded.md`]

use crate::gc::{GcLayout, GcStatsRing};
use crate::layout::*;
use crate::mimalloc::{MimallocLayout, MIMALLOC_212};
use crate::obmalloc::ObmallocLocation;
use crate::versions::{CLASSIC_GC, GC_315, GC_STATS_RING_315, INCREMENTAL_314_GC, V3_13, V3_14_5, V3_15};
use crate::Version;

/// How much further every member after the object header is (32-byte header instead of 16).
pub const HEADER_GROWTH: u64 = 16;

/// 3.13t: the classic struct plus `immortalize`.
pub const FT_313_GC: GcLayout = GcLayout { size: 248, ..CLASSIC_GC };

/// 3.14t: `young`, `old[2]`, no `generation0` pointer nor `visited_space` (only the GIL builds walk
/// lists), free-threaded counters after `callbacks`.
pub const FT_314_GC: GcLayout =
    GcLayout { size: 288, generation0_ptr: None, visited_space: None, ..INCREMENTAL_314_GC };

/// 3.15t: 3.15's compacted struct, `freeze_active` where the GIL build has `generation0`; the statistics
/// buffers keep one entry per generation (`GC_YOUNG_STATS_SIZE` = `GC_OLD_STATS_SIZE` = 1).
pub const FT_315_GC: GcLayout = GcLayout {
    generation0_ptr: None,
    stats_ring: Some(GcStatsRing {
        size: 216,
        young_items: 1,
        young_index: 64,
        old: 72,
        old_size: 72,
        old_items: 1,
        old_index: 64,
        ..GC_STATS_RING_315
    }),
    ..GC_315
};

/// One free-threaded version's own values.
struct FtTable {
    base: Layout,
    gc: GcLayout,
    runtime_size: u64,
    interp_size: u64,
    /// `sizeof(_PyThreadStateImpl)`.
    tstate_size: u64,
    type_size: u64,
    heap_type_size: u64,
    /// `_PyInterpreterFrame.localsplus` (3.14t+: after `tlbc_index`).
    localsplus: u64,
    /// 3.14t+: `_PyInterpreterFrame.tlbc_index`.
    tlbc_index: Option<u64>,
    /// `PyCodeObject.co_code_adaptive` (3.14t+: after `co_tlbc`).
    code_adaptive: u64,
    /// 3.14t+: `PyCodeObject.co_tlbc`.
    tlbc: Option<u64>,
    mimalloc: MimallocLayout,
    /// 3.14t+: deferred objects' shared count carries `_Py_REF_DEFERRED`.
    deferred_bias: bool,
    /// 3.14t+: `PyASCIIObject.state.interned` is a byte, `kind` starts at bit 8.
    str_kind_bit: u32,
    /// 3.15t: `bytesio.buf_shared` after the GIL build's members (the struct grows by 8).
    bytesio_buf_shared: Option<u64>,
}

const FT_3_13: FtTable = FtTable {
    base: V3_13,
    gc: FT_313_GC,
    runtime_size: 328384,
    interp_size: 215616,
    tstate_size: 17824,
    type_size: 432,
    heap_type_size: 944,
    localsplus: 72,
    tlbc_index: None,
    code_adaptive: 216,
    tlbc: None,
    mimalloc: MIMALLOC_212,
    deferred_bias: false,
    str_kind_bit: 2,
    bytesio_buf_shared: None,
};

const FT_3_14: FtTable = FtTable {
    base: V3_14_5,
    gc: FT_314_GC,
    runtime_size: 362368,
    interp_size: 246720,
    tstate_size: 15608,
    type_size: 432,
    heap_type_size: 960,
    localsplus: 80,
    tlbc_index: Some(72),
    code_adaptive: 232,
    tlbc: Some(224),
    mimalloc: MimallocLayout { tstate_mimalloc: 936, interp_mimalloc: 10944, ..MIMALLOC_212 },
    deferred_bias: true,
    str_kind_bit: 8,
    bytesio_buf_shared: None,
};

const FT_3_15: FtTable = FtTable {
    base: V3_15,
    gc: FT_315_GC,
    runtime_size: 405760,
    interp_size: 247104,
    tstate_size: 15792,
    type_size: 440,
    heap_type_size: 968,
    localsplus: 80,
    tlbc_index: Some(72),
    code_adaptive: 232,
    tlbc: Some(224),
    mimalloc: MimallocLayout { tstate_mimalloc: 1104, tstate_thread_id: 176, interp_mimalloc: 10944, ..MIMALLOC_212 },
    deferred_bias: true,
    str_kind_bit: 8,
    bytesio_buf_shared: Some(80),
};

/// Moves every member of an object struct that lies after the header by [`HEADER_GROWTH`].
fn shift_objects(l: &mut Layout) {
    let d = HEADER_GROWTH;
    let t = &mut l.type_;
    for f in [
        &mut t.tp_name,
        &mut t.tp_basicsize,
        &mut t.tp_itemsize,
        &mut t.tp_flags,
        &mut t.tp_doc,
        &mut t.tp_base,
        &mut t.tp_dict,
        &mut t.tp_mro,
        &mut t.tp_dictoffset,
        &mut t.tp_members,
    ] {
        *f += d;
    }
    let c = &mut l.code;
    c.filename += d;
    c.name += d;
    c.firstlineno += d;
    c.linetable += d;
    c.code_adaptive = c.code_adaptive.map(|v| v + d);
    for f in [&mut c.localsplusnames, &mut c.varnames, &mut c.cellvars, &mut c.freevars] {
        *f = f.map(|v| v + d);
    }
    if let Some(f) = &mut l.frame_object {
        f.back += d;
        f.code += d;
        f.localsplus += d;
        f.lasti += d;
    }
    l.module.md_dict += d;
    l.heap_type.ht_qualname += d;
    l.heap_type.ht_cached_keys += d;
    l.tuple.item += d;
    l.list.item += d;
    l.list.allocated += d;
    l.dict.used += d;
    l.dict.keys += d;
    l.dict.values += d;
    l.set.mask += d;
    l.set.table += d;
    l.set.smalltable += d;
    l.bytearray.alloc += d;
    l.bytearray.bytes_object = l.bytearray.bytes_object.map(|b| b + d);
    l.scalars.bytes_sval += d;
    l.scalars.float_fval += d;
    let u = &mut l.unicode;
    for f in [&mut u.length, &mut u.state, &mut u.ascii_size, &mut u.compact_size, &mut u.utf8_length, &mut u.utf8] {
        *f += d;
    }
    let s = &mut l.sizeof;
    s.code.extra += d;
    s.code.stacksize += d;
    s.code.nlocalsplus = s.code.nlocalsplus.map(|n| n + d);
    if let crate::sizeof::FrameSizeof::Embedded { frame_data } = &mut s.frame {
        *frame_data += d;
    }
    for f in [
        &mut s.deque.basicsize,
        &mut s.deque.leftindex,
        &mut s.deque.leftblock,
        &mut s.odict.basicsize,
        &mut s.odict.first,
        &mut s.odict.fast_nodes_size,
        &mut s.array.basicsize,
        &mut s.array.allocated,
        &mut s.array.descr,
        &mut s.decimal.basicsize,
        &mut s.decimal.mpd,
        &mut s.buffered.basicsize,
        &mut s.buffered.buffer,
        &mut s.buffered.buffer_size,
        &mut s.bytesio.basicsize,
        &mut s.bytesio.buf,
        &mut s.struct_.basicsize,
        &mut s.struct_.codes,
    ] {
        *f += d;
    }
    if s.bytearray_bytes_header != 0 {
        s.bytearray_bytes_header += d;
    }
    if let Some(f) = &mut l.iframe {
        f.gen_iframe += d;
        f.gen_origin += d;
        f.frame_object_frame += d;
    }
}

fn table(t: &FtTable) -> Layout {
    let mut l = t.base.clone();
    shift_objects(&mut l);
    l.object = Object { ob_refcnt: 12, ob_type: 24, ob_size: 32 };
    l.refcount = RefcountScheme::Biased { shared: 16, gc_bits: 11, deferred_bias: t.deferred_bias };
    l.preheader = PreHeader::FreeThreaded;
    l.managed_dict = ManagedDict::Inline313 { dict: 8, weakref: 16 };
    l.gc = t.gc;
    l.runtime.size = t.runtime_size;
    l.interp.size = t.interp_size;
    l.tstate.size = t.tstate_size;
    l.unicode.kind_bit = t.str_kind_bit;
    if let Some(at) = t.bytesio_buf_shared {
        l.sizeof.bytesio.buf_shared = Some(at);
        l.sizeof.bytesio.basicsize = at + 8;
    }
    l.type_.size = t.type_size;
    l.heap_type.size = t.heap_type_size;
    if let Some(f) = &mut l.iframe {
        f.localsplus = t.localsplus;
        f.tlbc_index = t.tlbc_index;
    }
    l.code.code_adaptive = Some(t.code_adaptive);
    l.code.tlbc = t.tlbc;
    l.obmalloc.location = ObmallocLocation::Unused;
    l.mimalloc = Some(t.mimalloc);
    l
}

/// The built-in table of a free-threaded build (3.13t+), or None.
pub fn builtin(version: Version) -> Option<Layout> {
    let t = match (version.major, version.minor) {
        (3, 13) => &FT_3_13,
        (3, 14) => &FT_3_14,
        (3, 15) => &FT_3_15,
        _ => return None,
    };
    Some(Layout { version, ..table(t) })
}

/// The GC layouts a free-threaded build of this minor version may have (selected by `gc.size`).
pub fn gc_layouts(minor: u8) -> &'static [GcLayout] {
    match minor {
        13 => &[FT_313_GC],
        14 => &[FT_314_GC],
        15 => &[FT_315_GC],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let l = builtin(Version::new(3, 13, 12)).unwrap();
        assert_eq!((l.tuple.item, l.type_.tp_flags, l.heap_type.ht_qualname, l.unicode.ascii_size), (40, 184, 888, 56));
        assert_eq!(l.mimalloc.unwrap().tstate_mimalloc, 344);
        let l = builtin(Version::new(3, 14, 6)).unwrap();
        assert_eq!((l.tuple.item, l.dict.keys, l.set.table), (48, 48, 56));
        assert_eq!(l.iframe.unwrap().gen_iframe, 88);
        assert_eq!(
            (l.code.linetable, l.code.code_adaptive, l.code.tlbc, l.iframe.unwrap().tlbc_index),
            (152, Some(232), Some(224), Some(72))
        );
        let l = builtin(Version::new(3, 13, 12)).unwrap();
        assert_eq!(
            (l.code.linetable, l.code.code_adaptive, l.code.tlbc, l.iframe.unwrap().tlbc_index),
            (152, Some(216), None, None)
        );
        let l = builtin(Version::new(3, 15, 0)).unwrap();
        assert_eq!((l.heap_type.ht_cached_keys, l.sizeof.bytearray_bytes_header), (904, 49));
        assert!(builtin(Version::new(3, 12, 0)).is_none());
    }

    #[test]
    fn biased_refcounts() {
        let l = builtin(Version::new(3, 14, 6)).unwrap();
        let head = |local: u32, shared: i64, bits: u8| {
            let mut h = [0u8; 32];
            h[11] = bits;
            h[12..16].copy_from_slice(&local.to_le_bytes());
            h[16..24].copy_from_slice(&shared.to_le_bytes());
            h
        };
        assert_eq!(l.refcount_of(&head(6, 0, 1)), Some((6, false)));
        assert_eq!(l.refcount_of(&head(1, (3 << 2) | 1, 1)), Some((4, false)));
        assert_eq!(l.refcount_of(&head(2, -4, 1)), Some((1, false)));
        assert_eq!(l.refcount_of(&head(u32::MAX, 0, 0)), Some((u32::MAX as u64, true)));
        let deferred = (crate::DEFERRED_BIAS + 3333) << 2 | 1;
        assert_eq!(l.refcount_of(&head(1, deferred, 65)), Some((3334, false)));
        // 3.13t has no bias.
        let l = builtin(Version::new(3, 13, 12)).unwrap();
        assert_eq!(l.refcount_of(&head(2, 3 << 2, 65)), Some((5, false)));
    }
}
