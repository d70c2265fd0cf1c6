//! Every offset and size of the Layout memspy uses, checked against the DWARF of every interpreter with
//! debug information on this machine.
//!
//! Each interpreter is started and memspy's own discovery builds the Layout it would use for it (built-in
//! table, `_Py_DebugOffsets` read live on 3.13+, debug-build detection); the GC list heads are the ones
//! `GcState::read` computes (the Debian 3.13 GC-head patch moves them). Each Layout field is mapped
//! below (`checks`) to a C struct and member path, or listed as not a C member (kinds, flags and
//! compile-time constants), so that nothing is left unchecked silently. Structs of extension modules
//! are looked for in the compilation unit of their module, in the DWARF of whatever file the
//! interpreter loaded them from.
//!
//! With `CI=true` an expected interpreter without DWARF fails the test; otherwise it is reported as
//! skipped.

mod dwarf;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use dwarf::check::{describe, dwarf_value, Mapping, What};
use dwarf::target::{ci_mode, expected, live};
use dwarf::Want;
use python_bindings::*;

/// Every field of `l`, exhaustively destructured (a new field does not compile until it is mapped).
/// `gens`: the GC list heads (offsets from `interp->gc`) as memspy reads them for this build.
fn checks(l: &Layout, gens: [u64; 3]) -> Mapping {
    let mut m = Mapping::default();
    let Layout {
        version: _,
        debug_build: _,
        runtime,
        interp,
        gc,
        gc_head,
        object,
        refcount: _,
        static_refcount: _,
        preheader: _,
        static_type_preheader: _,
        type_,
        heap_type,
        tuple,
        list,
        dict,
        set,
        bytearray,
        scalars,
        unicode,
        long,
        obmalloc,
        tstate,
        iframe,
        managed_dict: _,
        code,
        frame_object,
        module,
        sizeof,
        mimalloc,
    } = l;
    m.not_member("version", "the version discovery found");
    m.not_member("debug_build", "discovery's flag (checked against the binary's name)");
    m.not_member("refcount", "kind (RefcountScheme)");
    m.not_member("static_refcount", "the value of 3.11's static initialiser (_PyObject_IMMORTAL_INIT)");
    m.not_member("preheader", "kind (PreHeader)");
    m.not_member("static_type_preheader", "flag of sys.getsizeof's rule");
    m.not_member("managed_dict", "kind (ManagedDict)");

    let RuntimeState { interpreters_head, size } = runtime;
    m.off("runtime.interpreters_head", *interpreters_head, "_PyRuntimeState", "interpreters.head");
    m.check("runtime.size", *size, "", "_PyRuntimeState", What::LargestSize(""));

    let InterpreterState { next, threads_head, gc: gc_at, modules, sysdict, builtins, size } = interp;
    m.off("interp.next", *next, "_is", "next");
    m.off("interp.threads_head", *threads_head, "_is", "threads.head|tstate_head");
    m.off("interp.gc", *gc_at, "_is", "gc");
    m.off("interp.modules", *modules, "_is", "modules|imports.modules");
    m.off("interp.sysdict", *sysdict, "_is", "sysdict");
    m.off("interp.builtins", *builtins, "_is", "builtins");
    m.check("interp.size", *size, "", "_is", What::LargestSize(""));

    gc_checks(&mut m, gc, gens);

    let GcHead { size } = gc_head;
    m.size("gc_head.size", *size, "PyGC_Head");

    let Object { ob_refcnt, ob_type, ob_size } = object;
    match l.refcount {
        RefcountScheme::Biased { shared, gc_bits, deferred_bias: _ } => {
            m.off("object.ob_refcnt (ob_ref_local)", *ob_refcnt, "_object", "ob_ref_local");
            m.off("refcount.Biased.shared", shared, "_object", "ob_ref_shared");
            m.off("refcount.Biased.gc_bits", gc_bits, "_object", "ob_gc_bits");
            m.not_member("refcount.Biased.deferred_bias", "flag (_Py_REF_DEFERRED in the shared count, 3.14t+)");
        }
        _ => m.off("object.ob_refcnt", *ob_refcnt, "_object", "ob_refcnt"),
    }
    m.off("object.ob_type", *ob_type, "_object", "ob_type");
    m.off("object.ob_size", *ob_size, "PyVarObject", "ob_size");

    let TypeObject {
        tp_name,
        tp_basicsize,
        tp_itemsize,
        tp_flags,
        tp_doc,
        tp_base,
        tp_dict,
        tp_mro,
        tp_dictoffset,
        tp_members,
        size,
    } = type_;
    for (f, v, p) in [
        ("tp_name", tp_name, "tp_name"),
        ("tp_basicsize", tp_basicsize, "tp_basicsize"),
        ("tp_itemsize", tp_itemsize, "tp_itemsize"),
        ("tp_flags", tp_flags, "tp_flags"),
        ("tp_doc", tp_doc, "tp_doc"),
        ("tp_base", tp_base, "tp_base"),
        ("tp_dict", tp_dict, "tp_dict"),
        ("tp_mro", tp_mro, "tp_mro"),
        ("tp_dictoffset", tp_dictoffset, "tp_dictoffset"),
        ("tp_members", tp_members, "tp_members"),
    ] {
        m.off(format!("type_.{f}"), *v, "_typeobject", p);
    }
    m.size("type_.size", *size, "_typeobject");

    let HeapTypeObject { ht_qualname, ht_cached_keys, size } = heap_type;
    m.off("heap_type.ht_qualname", *ht_qualname, "_heaptypeobject", "ht_qualname");
    m.off("heap_type.ht_cached_keys", *ht_cached_keys, "_heaptypeobject", "ht_cached_keys");
    m.size("heap_type.size", *size, "_heaptypeobject");

    let TupleObject { item } = tuple;
    m.off("tuple.item", *item, "PyTupleObject", "ob_item");
    let ListObject { item, allocated } = list;
    m.off("list.item", *item, "PyListObject", "ob_item");
    m.off("list.allocated", *allocated, "PyListObject", "allocated");
    let DictObject { used, keys, values, kind: _ } = dict;
    m.off("dict.used", *used, "PyDictObject", "ma_used");
    m.off("dict.keys", *keys, "PyDictObject", "ma_keys");
    m.off("dict.values", *values, "PyDictObject", "ma_values");
    m.not_member("dict.kind", "kind (DictLayout)");
    let SetObject { mask, table, smalltable } = set;
    m.off("set.mask", *mask, "PySetObject", "mask");
    m.off("set.table", *table, "PySetObject", "table");
    m.off("set.smalltable", *smalltable, "PySetObject", "smalltable");
    let ByteArrayObject { alloc, bytes_object } = bytearray;
    m.off("bytearray.alloc", *alloc, "PyByteArrayObject", "ob_alloc");
    match bytes_object {
        Some(v) => m.off("bytearray.bytes_object", *v, "PyByteArrayObject", "ob_bytes_object"),
        None => m.not_member("bytearray.bytes_object", "None: no such member before 3.15"),
    }
    let Scalars { bytes_sval, float_fval } = scalars;
    m.off("scalars.bytes_sval", *bytes_sval, "PyBytesObject", "ob_sval");
    m.off("scalars.float_fval", *float_fval, "PyFloatObject", "ob_fval");

    let UnicodeLayout { length, state, kind_bit: _, ascii_size, compact_size, utf8_length, utf8, wstr, wstr_length } =
        unicode;
    m.not_member("unicode.kind_bit", "bit position of state.kind (every str the tests decode checks it)");
    m.off("unicode.length", *length, "PyASCIIObject", "length");
    m.off("unicode.state", *state, "PyASCIIObject", "state");
    m.size("unicode.ascii_size", *ascii_size, "PyASCIIObject");
    m.size("unicode.compact_size", *compact_size, "PyCompactUnicodeObject");
    m.off("unicode.utf8_length", *utf8_length, "PyCompactUnicodeObject", "utf8_length");
    m.off("unicode.utf8", *utf8, "PyCompactUnicodeObject", "utf8");
    match (wstr, wstr_length) {
        (Some(w), Some(n)) => {
            m.off("unicode.wstr", *w, "PyASCIIObject", "wstr");
            m.off("unicode.wstr_length", *n, "PyCompactUnicodeObject", "wstr_length");
        }
        _ => m.not_member("unicode.wstr, unicode.wstr_length", "None: no wstr from 3.12"),
    }

    match long {
        LongLayout::ObSize { .. } => m.not_member("long", "kind (LongLayout::ObSize: the digit count is ob_size)"),
        LongLayout::LvTag => {
            m.not_member("long", "kind (LongLayout::LvTag)");
            // The decoder reads `lv_tag` at `object.ob_size`.
            m.off("long.LvTag: lv_tag (read at object.ob_size)", object.ob_size, "_longobject", "long_value.lv_tag");
        }
    }

    obmalloc_checks(&mut m, obmalloc, l.debug_build);

    let ThreadState { next, frame, thread_id, size } = tstate;
    m.off("tstate.next", *next, "_ts", "next");
    m.off("tstate.thread_id", *thread_id, "_ts", "thread_id");
    match frame {
        ThreadFrame::Object(off) => m.off("tstate.frame.Object", *off, "_ts", "frame"),
        ThreadFrame::CFrame { cframe, current } => {
            m.off("tstate.frame.CFrame.cframe", *cframe, "_ts", "cframe");
            m.off("tstate.frame.CFrame.current", *current, "_PyCFrame", "current_frame");
        }
        ThreadFrame::Direct(off) => m.off("tstate.frame.Direct", *off, "_ts", "current_frame"),
    }
    m.check("tstate.size", *size, "", "_PyThreadStateImpl|_ts", What::LargestSize(""));
    // The built-in tables' sizes (replaced by the exact ones of `_Py_DebugOffsets` on 3.13+) are the
    // largest among builds too.
    let b = Layout::builtin_build(l.version, l.mimalloc.is_some()).expect("a supported version");
    m.check("runtime.size (built-in table)", b.runtime.size, "", "_PyRuntimeState", What::LargestSize(""));
    m.check("interp.size (built-in table)", b.interp.size, "", "_is", What::LargestSize(""));

    match iframe {
        Some(f) => {
            let InterpFrameLayout {
                code,
                previous,
                func,
                globals,
                builtins,
                locals,
                frame_obj,
                stacktop,
                stack_pointer: _,
                localsplus,
                tagged: _,
                gen_iframe,
                gen_origin,
                frame_object_frame,
                instr,
                tlbc_index,
                c_entry,
            } = f;
            let fr = "_PyInterpreterFrame";
            m.off("iframe.code", *code, fr, "f_code|f_executable");
            m.off("iframe.previous", *previous, fr, "previous");
            m.off("iframe.func", *func, fr, "f_func|f_funcobj");
            m.off("iframe.globals", *globals, fr, "f_globals");
            m.off("iframe.builtins", *builtins, fr, "f_builtins");
            m.off("iframe.locals", *locals, fr, "f_locals");
            m.off("iframe.frame_obj", *frame_obj, fr, "frame_obj");
            m.off("iframe.stacktop", *stacktop, fr, "stacktop|stackpointer");
            m.off("iframe.localsplus", *localsplus, fr, "localsplus");
            m.off("iframe.gen_iframe", *gen_iframe, "PyGenObject", "gi_iframe");
            m.off("iframe.gen_origin", *gen_origin, "PyGenObject", "gi_origin_or_finalizer");
            m.off("iframe.frame_object_frame", *frame_object_frame, "_frame", "f_frame");
            m.off("iframe.instr", *instr, fr, "prev_instr|instr_ptr");
            match tlbc_index {
                Some(v) => m.off("iframe.tlbc_index", *v, fr, "tlbc_index"),
                None => m.not_member("iframe.tlbc_index", "None: no thread-local bytecode in this build"),
            }
            match c_entry {
                Some(FrameOwner { at, cstack: _ }) => {
                    m.off("iframe.c_entry.at", *at, fr, "owner");
                    m.not_member("iframe.c_entry.cstack", "FRAME_OWNED_BY_CSTACK (an enum constant)");
                }
                None => m.not_member("iframe.c_entry", "None: no shim frame holds a code object"),
            }
            m.not_member("iframe.stack_pointer, iframe.tagged", "flags (_PyStackRef frames)");
        }
        None => m.not_member("iframe", "None: frames are objects before 3.11"),
    }

    let CodeLayout {
        filename,
        name,
        firstlineno,
        localsplusnames,
        varnames,
        cellvars,
        freevars,
        linetable,
        line_table: _,
        code_adaptive,
        tlbc,
    } = code;
    m.not_member("code.line_table", "kind (LineTable)");
    m.off("code.linetable", *linetable, "PyCodeObject", "co_lnotab|co_linetable");
    m.off("code.filename", *filename, "PyCodeObject", "co_filename");
    m.off("code.name", *name, "PyCodeObject", "co_name");
    m.off("code.firstlineno", *firstlineno, "PyCodeObject", "co_firstlineno");
    for (f, v, p) in [
        ("code.localsplusnames", localsplusnames, "co_localsplusnames"),
        ("code.varnames", varnames, "co_varnames"),
        ("code.cellvars", cellvars, "co_cellvars"),
        ("code.freevars", freevars, "co_freevars"),
        ("code.code_adaptive", code_adaptive, "co_code_adaptive"),
        ("code.tlbc", tlbc, "co_tlbc"),
    ] {
        match v {
            Some(off) => m.off(f, *off, "PyCodeObject", p),
            None => m.not_member(f, "None: not a member in this version"),
        }
    }
    match frame_object {
        Some(FrameObjectLayout { back, code, localsplus, lasti, lasti_unit: _ }) => {
            m.off("frame_object.lasti", *lasti, "_frame", "f_lasti");
            m.not_member("frame_object.lasti_unit", "bytes per unit of f_lasti (1 on 3.9, 2 on 3.10)");
            m.off("frame_object.back", *back, "_frame", "f_back");
            m.off("frame_object.code", *code, "_frame", "f_code");
            m.off("frame_object.localsplus", *localsplus, "_frame", "f_localsplus");
        }
        None => m.not_member("frame_object", "None: frames are not objects from 3.11"),
    }
    let ModuleObject { md_dict } = module;
    m.off("module.md_dict", *md_dict, "PyModuleObject", "md_dict");

    sizeof_checks(&mut m, sizeof);
    match mimalloc {
        Some(mi) => mimalloc_checks(&mut m, mi),
        None => m.not_member("mimalloc", "None: objects are found in the GC lists (GIL builds)"),
    }
    m
}

fn mimalloc_checks(m: &mut Mapping, mi: &MimallocLayout) {
    let MimallocLayout {
        tstate_mimalloc,
        tstate_thread_id,
        interp_mimalloc,
        thread,
        heap,
        page,
        segment,
        pool,
        gc_heaps: _,
        debug_offset: _,
    } = mi;
    m.not_member("mimalloc.gc_heaps, mimalloc.debug_offset", "constants (_Py_MIMALLOC_HEAP_GC*, debug allocator)");
    m.off("mimalloc.tstate_mimalloc", *tstate_mimalloc, "_PyThreadStateImpl", "mimalloc");
    m.off("mimalloc.tstate_thread_id", *tstate_thread_id, "_ts", "thread_id");
    m.off("mimalloc.interp_mimalloc", *interp_mimalloc, "_is", "mimalloc.abandoned_pool");
    let python_bindings::mimalloc::ThreadHeaps { heaps, heap_count, initialized } = thread;
    let t = "_mimalloc_thread_state";
    m.off("mimalloc.thread.heaps", *heaps, t, "heaps");
    m.check("mimalloc.thread.heap_count", *heap_count, "", t, What::Count("heaps"));
    m.off("mimalloc.thread.initialized", *initialized, t, "initialized");
    let python_bindings::mimalloc::Heap {
        size,
        pages,
        queues,
        queue_size,
        thread_delayed_free,
        thread_id,
        page_count,
        tag,
    } = heap;
    let h = "mi_heap_s";
    m.size("mimalloc.heap.size", *size, h);
    m.off("mimalloc.heap.pages", *pages, h, "pages");
    m.check("mimalloc.heap.queues", *queues, "", h, What::Count("pages"));
    m.size("mimalloc.heap.queue_size", *queue_size, "mi_page_queue_s");
    m.off("mimalloc.heap.queue first (at 0)", 0, "mi_page_queue_s", "first");
    m.off("mimalloc.heap.thread_delayed_free", *thread_delayed_free, h, "thread_delayed_free");
    m.off("mimalloc.heap.thread_id", *thread_id, h, "thread_id");
    m.off("mimalloc.heap.page_count", *page_count, h, "page_count");
    m.off("mimalloc.heap.tag", *tag, h, "tag");
    let python_bindings::mimalloc::Page {
        size,
        slice_count,
        flags_byte: _,
        tag_shift: _,
        capacity,
        reserved,
        free,
        used,
        xblock_size,
        local_free,
        xthread_free,
        xheap,
        next,
    } = page;
    let p = "mi_page_s";
    m.not_member("mimalloc.page.flags_byte, mimalloc.page.tag_shift", "bit-field `tag` (byte 8, bits 3-6)");
    m.size("mimalloc.page.size", *size, p);
    m.off("mimalloc.page.slice_count", *slice_count, p, "slice_count");
    m.off("mimalloc.page.capacity", *capacity, p, "capacity");
    m.off("mimalloc.page.reserved", *reserved, p, "reserved");
    m.off("mimalloc.page.free", *free, p, "free");
    m.off("mimalloc.page.used", *used, p, "used");
    m.off("mimalloc.page.xblock_size", *xblock_size, p, "xblock_size");
    m.off("mimalloc.page.local_free", *local_free, p, "local_free");
    m.off("mimalloc.page.xthread_free", *xthread_free, p, "xthread_free");
    m.off("mimalloc.page.xheap", *xheap, p, "xheap");
    m.off("mimalloc.page.next", *next, p, "next");
    let python_bindings::mimalloc::Segment { abandoned_next, slice_entries, slices, segment_size: _, slice_size: _ } =
        segment;
    let s = "mi_segment_s";
    m.not_member(
        "mimalloc.segment.segment_size, slice_size",
        "compile-time constants (MI_SEGMENT_SIZE, MI_SEGMENT_SLICE_SIZE)",
    );
    m.off("mimalloc.segment.abandoned_next", *abandoned_next, s, "abandoned_next");
    m.off("mimalloc.segment.slice_entries", *slice_entries, s, "slice_entries");
    m.off("mimalloc.segment.slices", *slices, s, "slices");
    let python_bindings::mimalloc::AbandonedPool { visited, abandoned } = pool;
    m.off("mimalloc.pool.visited", *visited, "mi_abandoned_pool_s", "abandoned_visited");
    m.off("mimalloc.pool.abandoned", *abandoned, "mi_abandoned_pool_s", "abandoned");
}

fn gc_checks(m: &mut Mapping, g: &GcLayout, gens: [u64; 3]) {
    let GcLayout {
        size,
        enabled,
        debug,
        generations,
        permanent,
        generation0_ptr,
        collecting,
        stats,
        stats_ptr,
        garbage,
        callbacks,
        frame,
        visited_space,
        generation_size,
        gen_threshold,
        gen_count,
        stats_entry_size,
        stats_ring,
    } = g;
    let s = "_gc_runtime_state";
    m.size("gc.size", *size, s);
    m.off("gc.enabled", *enabled, s, "enabled");
    m.off("gc.debug", *debug, s, "debug");
    // The heads memspy reads (GcState::read: moved by the generation0 pointer where a build is patched).
    let _ = generations;
    m.off("gc.generations[0] (as read)", gens[0], s, "generations[0]|young");
    m.off("gc.generations[1] (as read)", gens[1], s, "generations[1]|old[0]");
    m.off("gc.generations[2] (as read)", gens[2], s, "generations[2]|old[1]");
    m.off("gc.permanent", *permanent, s, "permanent_generation");
    match generation0_ptr {
        Some(v) => m.off("gc.generation0_ptr", *v, s, "generation0"),
        None => m.not_member("gc.generation0_ptr", "None: the incremental collector has none"),
    }
    m.off("gc.collecting", *collecting, s, "collecting");
    match (stats, stats_ptr) {
        (Some(v), None) => m.off("gc.stats", *v, s, "generation_stats"),
        (None, Some(v)) => m.off("gc.stats_ptr", *v, s, "generation_stats"),
        _ => panic!("gc.stats and gc.stats_ptr: exactly one is set"),
    }
    m.off("gc.garbage", *garbage, s, "garbage");
    m.off("gc.callbacks", *callbacks, s, "callbacks");
    match frame {
        Some(v) => m.off("gc.frame", *v, s, "frame"),
        None => m.not_member("gc.frame", "None: no such member before 3.15"),
    }
    match visited_space {
        Some(v) => m.off("gc.visited_space", *v, s, "visited_space"),
        None => m.not_member("gc.visited_space", "None: only the 3.14.0-3.14.4 incremental collector"),
    }
    m.size("gc.generation_size", *generation_size, "gc_generation");
    m.off("gc.gen_threshold", *gen_threshold, "gc_generation", "threshold");
    m.off("gc.gen_count", *gen_count, "gc_generation", "count");
    m.size("gc.stats_entry_size", *stats_entry_size, "gc_generation_stats");
    match stats_ring {
        Some(r) => {
            let GcStatsRing {
                size,
                item_size,
                collections,
                collected,
                uncollectable,
                young,
                young_items,
                young_index,
                old,
                old_size,
                old_items,
                old_index,
            } = r;
            let st = "gc_generation_stats";
            m.size("gc.stats_ring.size", *size, "gc_stats");
            m.size("gc.stats_ring.item_size", *item_size, st);
            m.off("gc.stats_ring.collections", *collections, st, "collections");
            m.off("gc.stats_ring.collected", *collected, st, "collected");
            m.off("gc.stats_ring.uncollectable", *uncollectable, st, "uncollectable");
            m.off("gc.stats_ring.young", *young, "gc_stats", "young");
            m.check("gc.stats_ring.young_items", *young_items, "", "gc_stats", What::Count("young.items"));
            m.check(
                "gc.stats_ring.young_index",
                *young_index,
                "",
                "gc_stats",
                What::OffsetFrom("young", "young.index"),
            );
            m.off("gc.stats_ring.old", *old, "gc_stats", "old");
            m.check("gc.stats_ring.old_size", *old_size, "", "gc_stats", What::Size("old[0]"));
            m.check("gc.stats_ring.old_items", *old_items, "", "gc_stats", What::Count("old[0].items"));
            m.check("gc.stats_ring.old_index", *old_index, "", "gc_stats", What::OffsetFrom("old[0]", "old[0].index"));
        }
        None => m.not_member("gc.stats_ring", "None: stats are embedded before 3.15"),
    }
}

fn obmalloc_checks(m: &mut Mapping, o: &ObmallocLayout, debug_build: bool) {
    let ObmallocLayout {
        location,
        pool_size: _,
        arena_size: _,
        pool_overhead,
        size_classes: _,
        alignment,
        state,
        arena,
        pool,
    } = o;
    m.not_member("obmalloc.pool_size, obmalloc.arena_size", "compile-time constants (POOL_SIZE, ARENA_SIZE)");
    m.not_member(
        "obmalloc.size_classes, obmalloc.alignment",
        "compile-time constants (NB_SMALL_SIZE_CLASSES, ALIGNMENT)",
    );
    m.check("obmalloc.pool_overhead", *pool_overhead, "", "pool_header", What::SizeRoundedUp("", *alignment));
    let in_struct = match location {
        ObmallocLocation::StaticSymbols => {
            m.not_member("obmalloc.location", "kind (StaticSymbols: found by symbol)");
            false
        }
        ObmallocLocation::Unused => {
            m.not_member("obmalloc.location", "kind (Unused: free-threaded builds allocate with mimalloc)");
            false
        }
        ObmallocLocation::Embedded { release, debug } | ObmallocLocation::Pointer { release, debug } => {
            // The offset for this build; the other one is checked on the other kind of build.
            let (which, v) = if debug_build { ("debug", debug) } else { ("release", release) };
            m.off(format!("obmalloc.location.{which}"), *v, "_is", "obmalloc");
            true
        }
    };
    let ObmallocState {
        size,
        usedpools,
        arenas,
        maxarenas,
        narenas_currently_allocated,
        ntimes_arena_allocated,
        narenas_highwater,
    } = state;
    if in_struct {
        let s = "_obmalloc_state";
        m.size("obmalloc.state.size", *size, s);
        m.off("obmalloc.state.usedpools", *usedpools, s, "pools.used");
        m.off("obmalloc.state.arenas", *arenas, s, "mgmt.arenas");
        m.off("obmalloc.state.maxarenas", *maxarenas, s, "mgmt.maxarenas");
        m.off(
            "obmalloc.state.narenas_currently_allocated",
            *narenas_currently_allocated,
            s,
            "mgmt.narenas_currently_allocated",
        );
        m.off("obmalloc.state.ntimes_arena_allocated", *ntimes_arena_allocated, s, "mgmt.ntimes_arena_allocated");
        m.off("obmalloc.state.narenas_highwater", *narenas_highwater, s, "mgmt.narenas_highwater");
    } else {
        m.not_member("obmalloc.state.*", "unused: static globals before 3.12, not used by free-threaded builds");
    }
    let ArenaObject { size, address, pool_address, nfreepools, ntotalpools } = arena;
    let a = "arena_object";
    m.size("obmalloc.arena.size", *size, a);
    m.off("obmalloc.arena.address", *address, a, "address");
    m.off("obmalloc.arena.pool_address", *pool_address, a, "pool_address");
    m.off("obmalloc.arena.nfreepools", *nfreepools, a, "nfreepools");
    m.off("obmalloc.arena.ntotalpools", *ntotalpools, a, "ntotalpools");
    let PoolHeader { count, szidx, freeblock, nextoffset } = pool;
    m.off("obmalloc.pool.count", *count, "pool_header", "ref.count");
    m.off("obmalloc.pool.szidx", *szidx, "pool_header", "szidx");
    m.off("obmalloc.pool.freeblock", *freeblock, "pool_header", "freeblock");
    m.off("obmalloc.pool.nextoffset", *nextoffset, "pool_header", "nextoffset");
}

fn sizeof_checks(m: &mut Mapping, s: &SizeofLayout) {
    let SizeofLayout { code, frame, deque, odict, array, decimal, buffered, bytesio, struct_, bytearray_bytes_header } =
        s;
    let CodeObject { extra, v39, stacksize, nlocalsplus } = code;
    let co = "PyCodeObject";
    m.off("sizeof.code.extra", *extra, co, "co_extra");
    m.off("sizeof.code.stacksize", *stacksize, co, "co_stacksize");
    match nlocalsplus {
        Some(v) => m.off("sizeof.code.nlocalsplus", *v, co, "co_nlocalsplus"),
        None => m.not_member("sizeof.code.nlocalsplus", "None: no co_nlocalsplus before 3.11"),
    }
    match v39 {
        Some(CodeSizeof39 { cellvars, cell2arg, code, opcache, opcache_size, opcache_entry }) => {
            m.off("sizeof.code.v39.cellvars", *cellvars, co, "co_cellvars");
            m.off("sizeof.code.v39.cell2arg", *cell2arg, co, "co_cell2arg");
            m.off("sizeof.code.v39.code", *code, co, "co_code");
            m.off("sizeof.code.v39.opcache", *opcache, co, "co_opcache");
            m.off("sizeof.code.v39.opcache_size", *opcache_size, co, "co_opcache_size");
            m.size("sizeof.code.v39.opcache_entry", *opcache_entry, "_PyOpcache");
        }
        None => m.not_member("sizeof.code.v39", "None: 3.9/3.10 only"),
    }
    match frame {
        FrameSizeof::VarSized => m.not_member("sizeof.frame", "kind (FrameSizeof::VarSized)"),
        FrameSizeof::Embedded { frame_data } => {
            m.off("sizeof.frame.Embedded.frame_data", *frame_data, "_frame", "_f_frame_data")
        }
    }
    let Deque { basicsize, leftindex, block_size, block_len, leftblock, block_data, block_rightlink } = deque;
    let cu = "_collectionsmodule.c";
    m.check("sizeof.deque.basicsize", *basicsize, cu, "dequeobject", What::Size(""));
    m.check("sizeof.deque.leftindex", *leftindex, cu, "dequeobject", What::Offset("leftindex"));
    m.check("sizeof.deque.block_size", *block_size, cu, "block", What::Size(""));
    m.check("sizeof.deque.block_len", *block_len, cu, "block", What::Count("data"));
    m.check("sizeof.deque.leftblock", *leftblock, cu, "dequeobject", What::Offset("leftblock"));
    m.check("sizeof.deque.block_data", *block_data, cu, "block", What::Offset("data"));
    m.check("sizeof.deque.block_rightlink", *block_rightlink, cu, "block", What::Offset("rightlink"));
    let ODict { basicsize, first, fast_nodes_size, node_size } = odict;
    let cu = "odictobject.c";
    m.check("sizeof.odict.basicsize", *basicsize, cu, "_odictobject", What::Size(""));
    m.check("sizeof.odict.first", *first, cu, "_odictobject", What::Offset("od_first"));
    m.check("sizeof.odict.fast_nodes_size", *fast_nodes_size, cu, "_odictobject", What::Offset("od_fast_nodes_size"));
    m.check("sizeof.odict.node_size", *node_size, cu, "_odictnode", What::Size(""));
    let Array { basicsize, allocated, descr, descr_itemsize } = array;
    let cu = "arraymodule.c";
    m.check("sizeof.array.basicsize", *basicsize, cu, "arrayobject", What::Size(""));
    m.check("sizeof.array.allocated", *allocated, cu, "arrayobject", What::Offset("allocated"));
    m.check("sizeof.array.descr", *descr, cu, "arrayobject", What::Offset("ob_descr"));
    m.check("sizeof.array.descr_itemsize", *descr_itemsize, cu, "arraydescr", What::Offset("itemsize"));
    let Decimal { basicsize, mpd, mpd_flags, mpd_alloc, mpd_dataflags: _ } = decimal;
    let cu = "_decimal.c";
    m.check("sizeof.decimal.basicsize", *basicsize, cu, "PyDecObject", What::Size(""));
    m.check("sizeof.decimal.mpd", *mpd, cu, "PyDecObject", What::Offset("dec"));
    m.check("sizeof.decimal.mpd_flags", *mpd_flags, cu, "mpd_t", What::Offset("flags"));
    m.check("sizeof.decimal.mpd_alloc", *mpd_alloc, cu, "mpd_t", What::Offset("alloc"));
    m.not_member("sizeof.decimal.mpd_dataflags", "compile-time constant (MPD_DATAFLAGS)");
    let Buffered { basicsize, buffer, buffer_size } = buffered;
    let cu = "bufferedio.c";
    m.check("sizeof.buffered.basicsize", *basicsize, cu, "buffered", What::Size(""));
    m.check("sizeof.buffered.buffer", *buffer, cu, "buffered", What::Offset("buffer"));
    m.check("sizeof.buffered.buffer_size", *buffer_size, cu, "buffered", What::Offset("buffer_size"));
    let BytesIO { basicsize, buf, buf_shared } = bytesio;
    match buf_shared {
        Some(v) => m.check("sizeof.bytesio.buf_shared", *v, "bytesio.c", "bytesio", What::Offset("buf_shared")),
        None => m.not_member("sizeof.bytesio.buf_shared", "None: only free-threaded 3.15 has it"),
    }
    let cu = "bytesio.c";
    m.check("sizeof.bytesio.basicsize", *basicsize, cu, "bytesio", What::Size(""));
    m.check("sizeof.bytesio.buf", *buf, cu, "bytesio", What::Offset("buf"));
    let Struct { basicsize, codes, formatcode_size } = struct_;
    let cu = "_struct.c";
    m.check("sizeof.struct_.basicsize", *basicsize, cu, "PyStructObject", What::Size(""));
    m.check("sizeof.struct_.codes", *codes, cu, "PyStructObject", What::Offset("s_codes"));
    m.check("sizeof.struct_.formatcode_size", *formatcode_size, cu, "_formatcode", What::Size(""));
    match bytearray_bytes_header {
        0 => m.not_member("sizeof.bytearray_bytes_header", "0: bytearrays own their buffer before 3.15"),
        v => m.check("sizeof.bytearray_bytes_header", *v, "", "PyBytesObject", What::OffsetPlus("ob_sval", 1)),
    }
}

#[test]
fn layouts_match_dwarf() {
    let ci = ci_mode();
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut not_members = BTreeSet::new();
    for e in expected() {
        if !e.bin.exists() {
            skipped.push(format!("{}: {} not installed", e.label, e.bin.display()));
            continue;
        }
        let started = std::time::Instant::now();
        let live = match live(&e.bin) {
            Ok(l) => l,
            Err(err) => {
                failures.push(format!("{}: {err}", e.label));
                continue;
            }
        };
        let l = &live.interp.layout;
        if l.debug_build != e.debug_build {
            failures.push(format!("{}: discovery says debug_build = {}", e.label, l.debug_build));
        }
        // The DWARF of the file holding the runtime first, then of the other mapped files (modules).
        let runtime_file = PathBuf::from(live.interp.binary.trim_end_matches(" (deleted)"));
        let Some(core_dwarf) = dwarf::debug_file_for(&runtime_file) else {
            skipped.push(format!("{}: no DWARF for {}", e.label, runtime_file.display()));
            continue;
        };
        let mut sources = vec![core_dwarf.clone()];
        let mut no_dwarf = Vec::new();
        for f in live.files.iter().filter(|f| **f != runtime_file) {
            match dwarf::debug_file_for(f) {
                Some(d) if !sources.contains(&d) => sources.push(d),
                Some(_) => {}
                None => no_dwarf.push(f.display().to_string()),
            }
        }
        let mapping = checks(l, live.gens);
        let wants: Vec<Want> = mapping
            .checks
            .iter()
            .flat_map(|c| c.ty.split('|').map(|name| Want { cu: c.cu, name }))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut found = HashMap::new();
        for s in &sources {
            match dwarf::load(s, &wants, &mut found) {
                Ok(_) => {}
                Err(err) => failures.push(format!("{}: {err}", e.label)),
            }
        }
        let (mut equal, mut mismatches, mut not_found, mut unchecked) = (0, Vec::new(), BTreeSet::new(), 0);
        for c in &mapping.checks {
            match dwarf_value(c, &found) {
                Ok(v) if v == c.value => equal += 1,
                Ok(v) if matches!(c.what, What::LargestSize(_)) && c.value >= v => equal += 1,
                Ok(v) => mismatches.push(format!(
                    "{}: Layout {} (0x{:x}), DWARF {v} (0x{v:x})",
                    describe(c),
                    c.value,
                    c.value
                )),
                Err(err) if !c.cu.is_empty() && err.contains("not found") => {
                    not_found.insert(format!("{} (from {})", c.ty, c.cu));
                    unchecked += 1;
                }
                Err(err) => mismatches.push(format!("{}: {err}", describe(c))),
            }
        }
        let shifted = if live.gens != l.gc.generations {
            let [a, b, c] = live.gens;
            format!("; GC heads as read: gc+{a:#x}, {b:#x}, {c:#x} (moved by the generation0 pointer)")
        } else {
            String::new()
        };
        println!(
            "{} ({}, {}, DWARF {}{}): {} fields checked, {} equal, {} mismatches; {} not C members{}; {:.1}s",
            e.label,
            live.interp.version,
            runtime_file.display(),
            core_dwarf.display(),
            if sources.len() > 1 { format!(" + {} module files", sources.len() - 1) } else { String::new() },
            mapping.checks.len() - unchecked,
            equal,
            mismatches.len(),
            mapping.not_members.len(),
            shifted,
            started.elapsed().as_secs_f64(),
        );
        if !not_found.is_empty() {
            println!("    not in any DWARF here: {}", not_found.into_iter().collect::<Vec<_>>().join(", "));
            if !no_dwarf.is_empty() {
                println!("    (mapped files without DWARF: {})", no_dwarf.join(", "));
            }
        }
        for mm in &mismatches {
            println!("    MISMATCH {mm}");
        }
        failures.extend(mismatches.into_iter().map(|mm| format!("{}: {mm}", e.label)));
        not_members.extend(mapping.not_members);
    }
    println!("Layout fields that are not C members (in at least one build):");
    for (f, why) in &not_members {
        println!("    {f}: {why}");
    }
    for s in &skipped {
        println!("skipped {s}");
    }
    if ci && !skipped.is_empty() {
        failures.extend(skipped.iter().map(|s| format!("expected interpreter missing under CI: {s}")));
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
