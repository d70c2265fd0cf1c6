//! Decoding CPython's objects and runtime structures from target memory, given a [`python_bindings::Layout`]:
//! types and their names, strings, dicts, `sys.getsizeof`, the GC's lists and figures, pymalloc's state.
//! Nothing here knows how the runtime was found (that is discovery, which uses this layer).

pub mod gc;
pub mod gc_stats;
pub mod lines;
pub mod mimalloc;
pub mod objects;
pub mod pymalloc;
pub mod sizeof;
pub mod types;
pub mod values;
