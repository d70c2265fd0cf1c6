//! mimalloc as free-threaded CPython bundles it (`Objects/mimalloc`, version 2.1.2 in 3.13t–3.15.0bt):
//! where each thread's heaps and the interpreter's pool of abandoned segments are, and the structures
//! memspy reads to enumerate their allocated blocks. Release builds: no encoded free lists, no
//! `page_start` member (the start of a page's blocks is computed from its slice).
//!
//! [V: DWARF of 3.13.12t, 3.14.6t and 3.15.0b4t; `tests/dwarf_layouts.rs`]

/// Everything memspy needs to find the objects of a free-threaded build in its mimalloc heaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MimallocLayout {
    /// `_PyThreadStateImpl.mimalloc` (`struct _mimalloc_thread_state`), from the thread state.
    pub tstate_mimalloc: u64,
    /// `PyThreadState.thread_id` (the owner's `pthread_self()`, as `mi_heap_t.thread_id`).
    pub tstate_thread_id: u64,
    /// `PyInterpreterState.mimalloc` (`struct _mimalloc_interp_state`, whose first member is the
    /// `mi_abandoned_pool_t`).
    pub interp_mimalloc: u64,
    pub thread: ThreadHeaps,
    pub heap: Heap,
    pub page: Page,
    pub segment: Segment,
    pub pool: AbandonedPool,
    /// (heap index = page tag, where the object starts in its block): the heaps of GC objects, without
    /// and with the 16-byte pre-header (`_Py_MIMALLOC_HEAP_GC`, `_Py_MIMALLOC_HEAP_GC_PRE`).
    pub gc_heaps: [(u64, u64); 2],
    /// Added to the object's place in its block when the debug allocator is on (`Py_DEBUG` builds).
    pub debug_offset: u64,
}

/// `struct _mimalloc_thread_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadHeaps {
    /// `heaps[_Py_MIMALLOC_HEAP_COUNT]`.
    pub heaps: u64,
    pub heap_count: u64,
    /// `int initialized`: a thread state whose heaps were never set up is skipped.
    pub initialized: u64,
}

/// `mi_heap_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heap {
    /// `sizeof(mi_heap_t)`: the stride of `heaps[]`.
    pub size: u64,
    /// `pages[MI_BIN_FULL + 1]`: page queues (`mi_page_queue_t`).
    pub pages: u64,
    pub queues: u64,
    /// `sizeof(mi_page_queue_t)`; its `first` is at 0.
    pub queue_size: u64,
    /// `thread_delayed_free`: blocks other threads freed into full pages.
    pub thread_delayed_free: u64,
    pub thread_id: u64,
    pub page_count: u64,
    /// `tag` (u8): the heap's index, which its pages carry too.
    pub tag: u64,
}

/// `mi_page_t` (also the element of `mi_segment_t.slices[]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub size: u64,
    pub slice_count: u64,
    /// The bit-field byte holding `is_committed`, `is_zero_init`, `use_qsbr` and `tag` (bits 3–6).
    pub flags_byte: u64,
    pub tag_shift: u32,
    /// u16 `capacity` (blocks initialised) and `reserved` (blocks that fit).
    pub capacity: u64,
    pub reserved: u64,
    pub free: u64,
    /// u32 `used`.
    pub used: u64,
    /// u32 `xblock_size` (at least 2^31 for a huge page, whose block is the whole page).
    pub xblock_size: u64,
    pub local_free: u64,
    /// `xthread_free`: a block list whose low 2 bits are the delayed-free state.
    pub xthread_free: u64,
    /// `xheap`: the owning heap (0 in abandoned segments).
    pub xheap: u64,
    pub next: u64,
}

/// `mi_segment_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub abandoned_next: u64,
    pub slice_entries: u64,
    /// `slices[]` (`mi_slice_t` = `mi_page_t`).
    pub slices: u64,
    /// `MI_SEGMENT_SIZE` (segments are aligned to it) and `MI_SEGMENT_SLICE_SIZE` (compile-time constants).
    pub segment_size: u64,
    pub slice_size: u64,
}

/// `mi_abandoned_pool_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbandonedPool {
    /// `abandoned_visited`: a plain segment list.
    pub visited: u64,
    /// `abandoned`: a tagged pointer (ABA counter in the bits below the segment alignment).
    pub abandoned: u64,
}

/// mimalloc 2.1.2 as CPython 3.13t–3.15.0bt bundle it (release builds).
pub const MIMALLOC_212: MimallocLayout = MimallocLayout {
    tstate_mimalloc: 344,
    tstate_thread_id: 152,
    interp_mimalloc: 10816,
    thread: ThreadHeaps { heaps: 8, heap_count: 4, initialized: 13872 },
    heap: Heap {
        size: 3064,
        pages: 1040,
        queues: 75,
        queue_size: 24,
        thread_delayed_free: 2840,
        thread_id: 2848,
        page_count: 3024,
        tag: 3057,
    },
    page: Page {
        size: 96,
        slice_count: 0,
        flags_byte: 8,
        tag_shift: 3,
        capacity: 10,
        reserved: 12,
        free: 16,
        used: 24,
        xblock_size: 28,
        local_free: 32,
        xthread_free: 40,
        xheap: 48,
        next: 56,
    },
    segment: Segment {
        abandoned_next: 176,
        slice_entries: 248,
        slices: 264,
        segment_size: 32 << 20,
        slice_size: 64 << 10,
    },
    pool: AbandonedPool { visited: 0, abandoned: 64 },
    gc_heaps: [(2, 0), (3, 16)],
    debug_offset: 16,
};

impl Page {
    /// Where the blocks of the page whose descriptor is slice `idx` of `segment` start, for blocks of
    /// `bsize` bytes (`_mi_segment_page_start_from_slice`: small blocks start a few blocks in).
    pub fn start(&self, s: &Segment, segment: u64, idx: u64, bsize: u64) -> u64 {
        let offset = if (8..=64).contains(&bsize) {
            3 * bsize
        } else if (65..=512).contains(&bsize) {
            bsize
        } else {
            0
        };
        segment + idx * s.slice_size + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_start() {
        let m = MIMALLOC_212;
        let seg = 0x7f00_0000_0000;
        assert_eq!(m.page.start(&m.segment, seg, 1, 32), seg + 0x10000 + 96);
        assert_eq!(m.page.start(&m.segment, seg, 2, 80), seg + 0x20000 + 80);
        assert_eq!(m.page.start(&m.segment, seg, 2, 1024), seg + 0x20000);
    }
}
