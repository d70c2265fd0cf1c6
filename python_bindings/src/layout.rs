//! The shape of a [`Layout`]: one Rust struct per C struct memspy reads (offsets of the members it
//! uses, and the struct's size where memspy needs it), plus the *kind* enums where the code branches
//! because a structure changed shape between versions.
//!
//! The values live in [`crate::versions`]; which C member each field is (and the fields that are
//! computed constants, not members) is written once in the DWARF check of the main crate
//! (`tests/dwarf_layouts.rs`).

use crate::gc::GcLayout;
use crate::mimalloc::MimallocLayout;
use crate::obmalloc::ObmallocLayout;
use crate::sizeof::SizeofLayout;
use crate::{flags, Version};

/// Everything memspy needs to know about one build's memory layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub version: Version,
    pub debug_build: bool,
    pub runtime: RuntimeState,
    pub interp: InterpreterState,
    /// The cyclic GC's state, embedded in `PyInterpreterState` at `interp.gc`.
    pub gc: GcLayout,
    pub gc_head: GcHead,
    pub object: Object,
    pub refcount: RefcountScheme,
    /// The count the runtime's statically allocated objects start at, where they have one (3.11's
    /// deep-frozen strings, latin-1 characters, small ints and singletons: 999,999,999, before 3.12 made
    /// them immortal): references no heap object holds. 0 when there is none.
    pub static_refcount: u64,
    pub preheader: PreHeader,
    /// Whether `sys.getsizeof` adds the pre-header to *static* type objects (`int`, `list`, …).
    pub static_type_preheader: bool,
    pub type_: TypeObject,
    pub heap_type: HeapTypeObject,
    pub tuple: TupleObject,
    pub list: ListObject,
    pub dict: DictObject,
    pub set: SetObject,
    pub bytearray: ByteArrayObject,
    pub scalars: Scalars,
    pub unicode: UnicodeLayout,
    pub long: LongLayout,
    /// pymalloc's state and structures.
    pub obmalloc: ObmallocLayout,
    pub tstate: ThreadState,
    /// `_PyInterpreterFrame` (3.11+).
    pub iframe: Option<InterpFrameLayout>,
    pub managed_dict: ManagedDict,
    /// `PyCodeObject`: the members that name a frame and its locals.
    pub code: CodeLayout,
    /// 3.9/3.10: `PyFrameObject` (frames are objects; `None` from 3.11, see [`Self::iframe`]).
    pub frame_object: Option<FrameObjectLayout>,
    /// `PyModuleObject`.
    pub module: ModuleObject,
    /// Objects whose own `__sizeof__` memspy recomputes (beyond the core containers).
    pub sizeof: SizeofLayout,
    /// Free-threaded builds: the GC lists stay empty and objects are found in the mimalloc heaps of
    /// every thread state (and the interpreter's abandoned segments). None: the GC lists hold them.
    pub mimalloc: Option<MimallocLayout>,
}

/// `_PyRuntimeState` (`_PyRuntime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeState {
    /// `interpreters.head`.
    pub interpreters_head: u64,
    /// Bytes of the struct: the full walk scans it for object pointers (roots). The built-in tables
    /// have the largest size among the builds checked; on 3.13+ `_Py_DebugOffsets` gives the exact one.
    pub size: u64,
}

/// `PyInterpreterState` (`struct _is`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterpreterState {
    pub next: u64,
    /// `threads.head`.
    pub threads_head: u64,
    /// The embedded `struct _gc_runtime_state gc` (see [`GcLayout`] for its members).
    pub gc: u64,
    pub modules: u64,
    pub sysdict: u64,
    pub builtins: u64,
    /// Bytes of the struct, largest among the builds checked (scanned for roots like
    /// [`RuntimeState::size`]).
    pub size: u64,
}

/// `PyGC_Head`: what sits before a GC-tracked object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcHead {
    pub size: u64,
}

/// `PyObject` / `PyVarObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object {
    /// `ob_refcnt`; on free-threaded builds `ob_ref_local` (see [`RefcountScheme::Biased`]).
    pub ob_refcnt: u64,
    pub ob_type: u64,
    /// `PyVarObject.ob_size`.
    pub ob_size: u64,
}

/// `PyTypeObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeObject {
    pub tp_name: u64,
    pub tp_basicsize: u64,
    pub tp_itemsize: u64,
    pub tp_flags: u64,
    /// `const char *tp_doc`: text (a heap type's is a copy of its own, in an allocation of its own).
    pub tp_doc: u64,
    pub tp_base: u64,
    pub tp_dict: u64,
    pub tp_mro: u64,
    pub tp_dictoffset: u64,
    /// `PyMemberDef *tp_members`: the type's C-level attributes (`__slots__` of heap types among them).
    pub tp_members: u64,
    /// `sizeof(PyTypeObject)`: what `type.__sizeof__` reports for a static type.
    pub size: u64,
}

/// `PyHeapTypeObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapTypeObject {
    pub ht_qualname: u64,
    pub ht_cached_keys: u64,
    /// `sizeof(PyHeapTypeObject)`.
    pub size: u64,
}

/// `PyTupleObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TupleObject {
    /// `ob_item`.
    pub item: u64,
}

/// `PyListObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListObject {
    /// `ob_item`.
    pub item: u64,
    pub allocated: u64,
}

/// `PyDictObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DictObject {
    /// `ma_used`.
    pub used: u64,
    /// `ma_keys`.
    pub keys: u64,
    /// `ma_values`.
    pub values: u64,
    /// The layout of the keys object and of split-table values.
    pub kind: DictLayout,
}

/// `PySetObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetObject {
    pub mask: u64,
    pub table: u64,
    pub smalltable: u64,
}

/// Where the values of `bytes` and `float` objects are (the short values a dump keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scalars {
    /// `PyBytesObject.ob_sval`.
    pub bytes_sval: u64,
    /// `PyFloatObject.ob_fval`.
    pub float_fval: u64,
}

/// `PyByteArrayObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteArrayObject {
    /// `ob_alloc`.
    pub alloc: u64,
    /// 3.15: `ob_bytes_object`.
    pub bytes_object: Option<u64>,
}

/// `PyThreadState` (`_PyThreadStateImpl` on 3.13+ for the size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadState {
    pub next: u64,
    /// How the thread state points to its innermost frame.
    pub frame: ThreadFrame,
    /// `unsigned long thread_id`: what `threading.get_ident()` returns for the thread.
    pub thread_id: u64,
    /// Bytes of the struct, largest among the builds checked (scanned for roots).
    pub size: u64,
}

/// How `ob_refcnt` encodes immortality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefcountScheme {
    /// 3.9–3.11: a plain counter, no immortal objects.
    Plain,
    /// 3.12+: immortal when the low 32 bits, read as i32, are negative. The reported refcount of an
    /// immortal is its low 32 bits (what `sys.getrefcount` shows).
    Immortal32,
    /// Free-threaded builds: `ob_ref_local` (u32, at `object.ob_refcnt`; `u32::MAX` = immortal) plus
    /// `ob_ref_shared` (i64 at `shared`, the count shifted left by 2 over a 2-bit state; the shift is
    /// arithmetic). `ob_gc_bits` (u8 at `gc_bits`) holds TRACKED, FROZEN, DEFERRED…; with
    /// `deferred_bias` (3.14t+) a DEFERRED object's shared count carries [`DEFERRED_BIAS`], which the
    /// decoded count leaves out.
    Biased { shared: u64, gc_bits: u64, deferred_bias: bool },
}

/// `_Py_REF_DEFERRED` (3.14t+): the bias in the shared count of objects with deferred refcounts.
pub const DEFERRED_BIAS: i64 = 0x0FFF_FFFF_FFFF_FFFF;

/// `ob_gc_bits` of free-threaded builds (`_PyGC_BITS_*`).
pub mod gc_bits {
    pub const TRACKED: u8 = 1;
    pub const UNREACHABLE: u8 = 4;
    pub const FROZEN: u8 = 8;
    pub const DEFERRED: u8 = 64;
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
    /// Free-threaded builds: no GC head in front of objects; 16 when the type has `MANAGED_DICT` or
    /// `MANAGED_WEAKREF`.
    FreeThreaded,
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

/// `PyASCIIObject` / `PyCompactUnicodeObject`: where the unicode object's fields and payload sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnicodeLayout {
    pub length: u64,
    pub state: u64,
    /// The bit of the `state` word where `kind` (3 bits) starts; `compact` and `ascii` follow it. 2, or 8
    /// on free-threaded 3.14+, whose `interned` is a whole byte.
    pub kind_bit: u32,
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

/// How `int` (`PyLongObject`) stores its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongLayout {
    /// ≤3.11: `ob_size` holds the signed digit count. `int.__sizeof__` is
    /// `offsetof(PyLongObject, ob_digit) + 4 * |ob_size|`; with `min_one_digit` (3.11) it counts at
    /// least one digit (zero has one).
    ObSize { min_one_digit: bool },
    /// 3.12+: `lv_tag @16`, digit count = `lv_tag >> 3`.
    LvTag,
}

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
    /// Where a generator/coroutine embeds its frame (`PyGenObject.gi_iframe`).
    pub gen_iframe: u64,
    /// `PyGenObject.gi_origin_or_finalizer`: a reference in coroutines (origin) and async generators
    /// (finalizer); a plain generator never writes it, so it holds what its memory held before.
    pub gen_origin: u64,
    /// `PyFrameObject.f_frame`.
    pub frame_object_frame: u64,
    /// The instruction the frame runs: `prev_instr` (3.11/3.12: the last one started, one code unit
    /// before the bytecode when none has) or `instr_ptr` (3.13+: the one running), a pointer into the
    /// code object's bytecode (see [`CodeLayout::code_adaptive`]).
    pub instr: u64,
    /// Free-threaded 3.14t+: `int32_t tlbc_index`, which of the code object's bytecode copies
    /// ([`CodeLayout::tlbc`]) the frame runs.
    pub tlbc_index: Option<u64>,
    /// 3.12: how a C entry's shim frame is told (it holds the `<interpreter trampoline>` code object,
    /// and runs none of it). None: no shim frame holds a code object (3.11 has none; 3.13+ entry frames
    /// hold `None`).
    pub c_entry: Option<FrameOwner>,
}

/// `char owner` of a `_PyInterpreterFrame`: at `at`, `FRAME_OWNED_BY_CSTACK` is `cstack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameOwner {
    pub at: u64,
    pub cstack: u8,
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
    /// 3.13+: the dict `dict` bytes and the weakref list `weakref` bytes before the object (24 and 32;
    /// 8 and 16 on free-threaded builds, which have no GC head); values inline at `o + tp_basicsize`
    /// (`INLINE_VALUES` types).
    Inline313 { dict: u64, weakref: u64 },
}

impl Layout {
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
            // Only the local count is in `raw`: see `refcount_of`.
            RefcountScheme::Biased { .. } => ((raw as u32) as u64, raw as u32 == u32::MAX),
        }
    }

    /// Decodes an object's refcount from its head (the bytes at the object's address, at least the
    /// header): (refcount as `sys.getrefcount` reports it less its own reference, immortal). None when
    /// the head is too short.
    pub fn refcount_of(&self, head: &[u8]) -> Option<(u64, bool)> {
        let u64_at =
            |at: u64| head.get(at as usize..at as usize + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
        match self.refcount {
            RefcountScheme::Plain | RefcountScheme::Immortal32 => {
                Some(self.decode_refcount(u64_at(self.object.ob_refcnt)?))
            }
            RefcountScheme::Biased { shared, gc_bits, deferred_bias } => {
                let at = self.object.ob_refcnt as usize;
                let local = u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?);
                if local == u32::MAX {
                    return Some((local as u64, true));
                }
                let mut shared = (u64_at(shared)? as i64) >> 2;
                let bits = *head.get(gc_bits as usize)?;
                if deferred_bias && bits & gc_bits::DEFERRED != 0 {
                    shared = shared.wrapping_sub(DEFERRED_BIAS);
                }
                Some(((local as i64).saturating_add(shared).max(0) as u64, false))
            }
        }
    }

    /// `ob_gc_bits` of a free-threaded object from its head (None on other builds).
    pub fn gc_bits_of(&self, head: &[u8]) -> Option<u8> {
        match self.refcount {
            RefcountScheme::Biased { gc_bits, .. } => head.get(gc_bits as usize).copied(),
            _ => None,
        }
    }

    /// Bytes in front of an object of a type with these flags (`_PyType_PreHeaderSize`), which
    /// `sys.getsizeof` adds to `__sizeof__` (except where [`Self::getsizeof_preheader`] says otherwise).
    pub fn preheader_size(&self, type_flags: u64) -> u64 {
        let gc = if type_flags & flags::HAVE_GC != 0 { self.gc_head.size } else { 0 };
        let managed = match self.preheader {
            PreHeader::GcOnly => false,
            PreHeader::ManagedDict => type_flags & flags::MANAGED_DICT != 0,
            PreHeader::ManagedDictOrWeakref => type_flags & (flags::MANAGED_DICT | flags::MANAGED_WEAKREF) != 0,
            PreHeader::FreeThreaded => {
                return if type_flags & (flags::MANAGED_DICT | flags::MANAGED_WEAKREF) != 0 { 16 } else { 0 }
            }
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
    use crate::{Layout, Version};

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

/// `PyCodeObject`: the members that name a frame (function, file, line) and its local variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeLayout {
    pub filename: u64,
    pub name: u64,
    /// `int co_firstlineno`.
    pub firstlineno: u64,
    /// 3.11+: `co_localsplusnames`, a tuple naming every slot of a frame's `localsplus` (locals, cells, free
    /// variables).
    pub localsplusnames: Option<u64>,
    /// 3.9/3.10: `co_varnames`, `co_cellvars`, `co_freevars`, which name `f_localsplus` in that order.
    pub varnames: Option<u64>,
    pub cellvars: Option<u64>,
    pub freevars: Option<u64>,
    /// The line table, a bytes object: `co_lnotab` (3.9), `co_linetable` (3.10+).
    pub linetable: u64,
    /// How the line table reads.
    pub line_table: LineTable,
    /// 3.11+: `co_code_adaptive`, the bytecode inline in the code object (`ob_size` code units of 2
    /// bytes). None: a frame's position is an offset already ([`FrameObjectLayout::lasti`]).
    pub code_adaptive: Option<u64>,
    /// Free-threaded 3.14t+: `_PyCodeArray *co_tlbc` (`Py_ssize_t size`, then `size` pointers, the
    /// first the bytecode at `code_adaptive`): the threads' own copies of the bytecode.
    pub tlbc: Option<u64>,
}

/// The format of a code object's line table: what maps a bytecode offset (in bytes) to a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineTable {
    /// 3.9 `co_lnotab`: (offset increment: u8, line increment: i8) pairs.
    Lnotab,
    /// 3.10 `co_linetable` (PEP 626): (range length in bytes: u8, line delta: i8, -128 for no line) pairs.
    Pep626,
    /// 3.11+ `co_linetable`, the location table (PEP 657): entries of a header byte (bit 7 set, a
    /// code in bits 3–6, the length in code units less one in bits 0–2) and varints.
    Locations,
}

/// 3.9/3.10 `PyFrameObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameObjectLayout {
    pub back: u64,
    pub code: u64,
    /// `f_localsplus`: locals, cells, free variables, then the value stack.
    pub localsplus: u64,
    /// `int f_lasti`: the last instruction started, -1 before the first.
    pub lasti: u64,
    /// Bytes per unit of `f_lasti`: 1 on 3.9 (a byte offset), 2 on 3.10 (code units).
    pub lasti_unit: u64,
}

/// `PyModuleObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleObject {
    /// `md_dict`: the module's globals.
    pub md_dict: u64,
}
