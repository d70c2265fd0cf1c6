//! pymalloc (`Objects/obmalloc.c`): where its state is and the structures memspy reads.

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
    /// Free-threaded builds: objects and buffers come from mimalloc, pymalloc is not used.
    Unused,
}

/// pymalloc's configuration and structures. [V: DWARF of 3.12.1, 3.13.0, 3.13.5, 3.14.10, 3.15.2 and
/// their debug builds]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObmallocLayout {
    pub location: ObmallocLocation,
    /// `POOL_SIZE`, `ARENA_SIZE` (compile-time constants, not struct members).
    pub pool_size: u64,
    pub arena_size: u64,
    /// `POOL_OVERHEAD`: the pool header rounded up to the alignment.
    pub pool_overhead: u64,
    /// Size classes (`NB_SMALL_SIZE_CLASSES`) and their step (`ALIGNMENT`).
    pub size_classes: u64,
    pub alignment: u64,
    pub state: ObmallocState,
    pub arena: ArenaObject,
    pub pool: PoolHeader,
}

/// `struct _obmalloc_state` (3.12+). On 3.9–3.11 the same fields are separate static globals, found
/// by their symbols (these offsets are then unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObmallocState {
    pub size: u64,
    /// `pools.used`.
    pub usedpools: u64,
    /// `mgmt.arenas`, `mgmt.maxarenas`, `mgmt.narenas_currently_allocated`, `mgmt.ntimes_arena_allocated`,
    /// `mgmt.narenas_highwater`.
    pub arenas: u64,
    pub maxarenas: u64,
    pub narenas_currently_allocated: u64,
    pub ntimes_arena_allocated: u64,
    pub narenas_highwater: u64,
}

/// `struct arena_object`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaObject {
    pub size: u64,
    pub address: u64,
    pub pool_address: u64,
    pub nfreepools: u64,
    pub ntotalpools: u64,
}

/// `struct pool_header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolHeader {
    /// `ref.count`.
    pub count: u64,
    pub szidx: u64,
    /// `freeblock`: the first free block (each free block's first word links to the next).
    pub freeblock: u64,
    /// `nextoffset`: blocks at or past this offset were never handed out.
    pub nextoffset: u64,
}
