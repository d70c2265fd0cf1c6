//! What the `__sizeof__` of code objects, generators, frames and some standard-library C types read.
//!
//! Each `basicsize` is the `tp_basicsize` of the C type itself: memspy recognises the type by name
//! and then checks that its basic size is this one before trusting the offsets.
//! [V: DWARF (`ptype /o`) of pyenv 3.9.18–3.13.0 (libpython, array/_struct/_decimal .so) and Debian
//! 3.9, 3.11, 3.13, 3.14, 3.15 and their debug builds]

/// The layouts `__sizeof__` formulas read, one struct per C struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeofLayout {
    pub code: CodeObject,
    pub frame: FrameSizeof,
    pub deque: Deque,
    pub odict: ODict,
    pub array: Array,
    pub decimal: Decimal,
    pub buffered: Buffered,
    pub bytesio: BytesIO,
    pub struct_: Struct,
    /// 3.15: a bytearray's buffer is a bytes object: `__sizeof__` adds its header
    /// (`PyBytesObject_SIZE`, 33) to a non-zero `ob_alloc`. 0 before.
    pub bytearray_bytes_header: u64,
}

/// `PyCodeObject`: the members `code.__sizeof__` and frame sizes read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeObject {
    /// `co_extra` (`_PyCodeObjectExtra {Py_ssize_t ce_size; void *ce_extras[ce_size]}`, set by tools
    /// that use `_PyCode_SetExtra`): `code.__sizeof__` adds `16 + (ce_size - 1) * 8`.
    pub extra: u64,
    /// 3.9/3.10 `code.__sizeof__` also counts `co_cell2arg` (8 per cell variable), and the opcache
    /// (`co_opcache_map`: one byte per code unit of `co_code`; `co_opcache_size` × 32-byte entries).
    /// None from 3.11: the code is the object's items, rounded up to 8 bytes.
    pub v39: Option<CodeSizeof39>,
    /// `co_stacksize` and `co_nlocalsplus` (3.11+; `int`s): a frame has `co_nlocalsplus +
    /// co_stacksize` slots (`_PyFrame_NumSlotsForCodeObject`).
    pub stacksize: u64,
    pub nlocalsplus: Option<u64>,
}

/// Members of the 3.9/3.10 `PyCodeObject` that `code.__sizeof__` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeSizeof39 {
    pub cellvars: u64,
    pub cell2arg: u64,
    pub code: u64,
    pub opcache: u64,
    /// `unsigned char`.
    pub opcache_size: u64,
    /// `sizeof(_PyOpcache)`.
    pub opcache_entry: u64,
}

/// What `frame.__sizeof__` (`PyFrameObject`) counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSizeof {
    /// 3.9/3.10: a frame is a var-sized object holding its locals, cells and stack (`ob_size` slots);
    /// `__sizeof__` is `tp_basicsize + (ob_size - 1) * tp_itemsize` (one slot is in the basic size).
    VarSized,
    /// 3.11+: the frame embeds its `_PyInterpreterFrame` at `offsetof(PyFrameObject, _f_frame_data)`;
    /// `__sizeof__` is that offset plus the frame's slots.
    Embedded { frame_data: u64 },
}

impl FrameSizeof {
    /// `offsetof(PyFrameObject, _f_frame_data)` (3.11+).
    pub fn frame_data(&self) -> Option<u64> {
        match *self {
            FrameSizeof::VarSized => None,
            FrameSizeof::Embedded { frame_data } => Some(frame_data),
        }
    }
}

/// `dequeobject` (`_collections`): `leftindex`; blocks (`block`) of `block_size` bytes holding
/// `block_len` items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deque {
    pub basicsize: u64,
    pub leftindex: u64,
    pub block_size: u64,
    pub block_len: u64,
    /// `leftblock` (the first block); a `block` is `{leftlink; data[block_len]; rightlink}`: its items
    /// start at `block_data`, the next block's address is at `block_rightlink`.
    pub leftblock: u64,
    pub block_data: u64,
    pub block_rightlink: u64,
}

/// `PyODictObject`: `od_first`, `od_fast_nodes_size`; one `_ODictNode` (`node_size`) per item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ODict {
    pub basicsize: u64,
    pub first: u64,
    pub fast_nodes_size: u64,
    pub node_size: u64,
}

/// `arrayobject` (`array`): `allocated`, `ob_descr`; `struct arraydescr.itemsize` (`int`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Array {
    pub basicsize: u64,
    pub allocated: u64,
    pub descr: u64,
    pub descr_itemsize: u64,
}

/// `PyDecObject` (`_decimal`): `dec` (an `mpd_t`: `uint8_t flags`, `mpd_ssize_t alloc`); digits are
/// `mpd_uint_t` (8 bytes); they count unless a flag of `MPD_DATAFLAGS` says static/shared/const.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub basicsize: u64,
    pub mpd: u64,
    pub mpd_flags: u64,
    pub mpd_alloc: u64,
    pub mpd_dataflags: u8,
}

/// `buffered` (`_io.Buffered*`): `char *buffer`, `Py_ssize_t buffer_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffered {
    pub basicsize: u64,
    pub buffer: u64,
    pub buffer_size: u64,
}

/// `bytesio` (`_io.BytesIO`): `PyObject *buf` (a bytes object, counted unless shared: refcount > 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BytesIO {
    pub basicsize: u64,
    pub buf: u64,
    /// Free-threaded 3.15: `int buf_shared` (non-zero: the buffer is shared, not counted by `__sizeof__`).
    pub buf_shared: Option<u64>,
}

/// `PyStructObject` (`_struct`): `s_codes` is a `formatcode[]` (`formatcode_size` bytes each, `fmtdef
/// @0`), ended by a NULL `fmtdef`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Struct {
    pub basicsize: u64,
    pub codes: u64,
    pub formatcode_size: u64,
}
