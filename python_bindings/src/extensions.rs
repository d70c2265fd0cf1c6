//! Layouts of third-party extension types that memspy decodes. They change with the extension's own
//! version, not with CPython's, and the extensions' wheels carry no debug info: the values were checked
//! on live processes (see `shared/reference/native-memory.md`, numpy 2.0.2 and 2.5.5).

/// numpy 2's `PyArrayObject_fields` and `PyArray_Descr`. Recognised by the type's name (`numpy.ndarray`)
/// and basic size, and by the basic size of its dtype's type (numpy 1's descriptors are smaller, with an
/// `int` `elsize` elsewhere: arrays of numpy 1 are sized approximately).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumpyLayout {
    pub array_basicsize: u64,
    /// `char *data`, `int nd`, `npy_intp *dimensions`, `npy_intp *strides`, `PyObject *base`,
    /// `PyArray_Descr *descr`, `int flags`, `PyObject *weakreflist`, `PyObject *mem_handler`.
    pub data: u64,
    pub nd: u64,
    pub dimensions: u64,
    pub strides: u64,
    pub base: u64,
    pub descr: u64,
    pub flags: u64,
    pub weakreflist: u64,
    pub mem_handler: u64,
    /// `NPY_ARRAY_OWNDATA`: the array owns (and references the items of) its data.
    pub owndata: u64,
    /// The least basic size of a numpy 2 dtype's type.
    pub descr_basicsize_min: u64,
    /// `PyArray_Descr`: `int type_num`, `npy_uint64 flags`, `npy_intp elsize`.
    pub descr_type_num: u64,
    pub descr_flags: u64,
    pub descr_elsize: u64,
    /// `NPY_ITEM_REFCOUNT` (items hold references) and `NPY_OBJECT` (items are `PyObject*`).
    pub item_refcount: u64,
    pub object_type_num: u32,
    /// Most dimensions an array has (`NPY_MAXDIMS`, 64 in numpy 2).
    pub max_dims: u64,
}

pub const NUMPY_2: NumpyLayout = NumpyLayout {
    array_basicsize: 96,
    data: 16,
    nd: 24,
    dimensions: 32,
    strides: 40,
    base: 48,
    descr: 56,
    flags: 64,
    weakreflist: 72,
    mem_handler: 88,
    owndata: 0x4,
    descr_basicsize_min: 112,
    descr_type_num: 28,
    descr_flags: 32,
    descr_elsize: 40,
    item_refcount: 0x1,
    object_type_num: 17,
    max_dims: 64,
};

/// numpy's scalar types whose `__sizeof__` is `tp_basicsize + dtype.itemsize` (`gentype_sizeof`), with
/// that item size (x86_64). `numpy.str_`, `numpy.bytes_` and `numpy.void` are sized otherwise.
pub const NUMPY_SCALARS: &[(&str, u64)] = &[
    ("numpy.bool", 1),
    ("numpy.int8", 1),
    ("numpy.uint8", 1),
    ("numpy.int16", 2),
    ("numpy.uint16", 2),
    ("numpy.int32", 4),
    ("numpy.uint32", 4),
    ("numpy.int64", 8),
    ("numpy.uint64", 8),
    ("numpy.longlong", 8),
    ("numpy.ulonglong", 8),
    ("numpy.float16", 2),
    ("numpy.float32", 4),
    ("numpy.float64", 8),
    ("numpy.longdouble", 16),
    ("numpy.complex64", 8),
    ("numpy.complex128", 16),
    ("numpy.clongdouble", 32),
    ("numpy.datetime64", 8),
    ("numpy.timedelta64", 8),
];

/// The item size of the numpy scalar type named `name`, if it is one of [`NUMPY_SCALARS`].
pub fn numpy_scalar_itemsize(name: &str) -> Option<u64> {
    NUMPY_SCALARS.iter().find(|(n, _)| *n == name).map(|&(_, s)| s)
}
