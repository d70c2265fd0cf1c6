//! CPython memory layouts, as data.
//!
//! One [`Layout`] describes where everything memspy reads lives in one interpreter build (x86_64,
//! default GIL build), grouped by C struct ([`layout`]). [`Layout::builtin`] gives the table for a
//! version ([`versions`]: each version written as the previous one plus its differences); on 3.13+ the
//! caller then overrides it with what the target's own `_Py_DebugOffsets` says ([`debug_offsets`]).
//!
//! Nothing here reads memory: this crate is pure data plus the small decoding rules that differ per
//! version (refcount immortality, pre-header sizes).

pub mod builds;
pub mod debug_offsets;
pub mod extensions;
pub mod free_threaded;
pub mod gc;
pub mod layout;
pub mod mimalloc;
pub mod obmalloc;
pub mod sizeof;
pub mod version;
pub mod versions;

pub use gc::{GcLayout, GcStatsRing};
pub use layout::*;
pub use mimalloc::MimallocLayout;
pub use obmalloc::{ArenaObject, ObmallocLayout, ObmallocLocation, ObmallocState, PoolHeader};
pub use sizeof::*;
pub use version::{Version, NEWEST_MINOR, OLDEST_MINOR};
pub use versions::GC_STATS_RING_315;

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
