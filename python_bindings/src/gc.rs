//! The cyclic GC's state (`struct _gc_runtime_state`, embedded in `PyInterpreterState` as `gc`).

/// `struct _gc_runtime_state`, offsets relative to `interp->gc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcLayout {
    pub size: u64,
    pub enabled: u64,
    pub debug: u64,
    /// List heads of generations 0, 1, 2 (or young, old[0], old[1] of the incremental collector).
    pub generations: [u64; 3],
    pub permanent: u64,
    /// Offset of the `generation0` pointer, when the build has one (used to detect the Debian 3.13 patch).
    pub generation0_ptr: Option<u64>,
    pub collecting: u64,
    /// `generation_stats[3]` embedded (3 × {collections, collected, uncollectable}), or None (3.15: a
    /// heap-allocated ring buffer behind a pointer at `stats_ptr`).
    pub stats: Option<u64>,
    pub stats_ptr: Option<u64>,
    pub garbage: u64,
    pub callbacks: u64,
    /// 3.15: the frame that started the running collection (non-NULL while one runs).
    pub frame: Option<u64>,
    /// 3.14.0–3.14.4 incremental collector: `visited_space`, which of old[0]/old[1] is the visited
    /// space (its list head is read as generation 1). `gc.get_objects(1)` is empty there and
    /// `gc.get_objects(2)` both old spaces ([`GcLayout::reported_generation`]).
    pub visited_space: Option<u64>,
    /// `struct gc_generation {PyGC_Head head; int threshold; int count}`: its size (the step between
    /// two list heads of `generations[]`) and the offsets from a list head.
    pub generation_size: u64,
    pub gen_threshold: u64,
    pub gen_count: u64,
    /// Size of one embedded `gc_generation_stats` entry (`stats`); fields at 0, 8, 16.
    pub stats_entry_size: u64,
    /// 3.15: the layout of the `struct gc_stats` ring buffers behind `stats_ptr`.
    pub stats_ring: Option<GcStatsRing>,
}

impl GcLayout {
    /// The generation whose `gc.get_objects(g)` holds the objects of GC list `list` (0–2 as read; the
    /// permanent generation stays itself): the incremental collector has no generation 1, its two old
    /// spaces are both generation 2 (`_PyGC_GetObjects` of 3.14.0–3.14.4).
    pub fn reported_generation(&self, list: usize) -> usize {
        if self.visited_space.is_some() && list == 1 {
            2
        } else {
            list
        }
    }

    /// The list heads of generations 0, 1, 2 when generation 0 is at `gen0` instead of
    /// `generations[0]`: the Debian 3.13 GC-head patch makes `PyGC_Head` 4-aligned, which moves the
    /// `generations` array (found through the `generation0` pointer).
    pub fn generations_from(&self, gen0: u64) -> [u64; 3] {
        [gen0, gen0 + self.generation_size, gen0 + 2 * self.generation_size]
    }
}

/// 3.15's `struct gc_stats` (1120 bytes): `young {items[11]; int8 index}` @0, `old[2] {items[3]; int8
/// index}` @712 (200 bytes each). Each item is a `gc_generation_stats` of 64 bytes with *cumulative*
/// `collections @16, collected @24, uncollectable @32`; `gc.get_stats()[0]` is `young.items[young.index]`,
/// `[1]`/`[2]` are `old[0]`/`old[1]` at their own index. [V: DWARF of Debian 3.15.2 and a live target]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcStatsRing {
    pub size: u64,
    pub item_size: u64,
    pub collections: u64,
    pub collected: u64,
    pub uncollectable: u64,
    pub young: u64,
    pub young_items: u64,
    pub young_index: u64,
    pub old: u64,
    pub old_size: u64,
    pub old_items: u64,
    pub old_index: u64,
}
