//! The cyclic GC's own figures, as the `gc` module reports them: `gc.isenabled()`, `gc.get_debug()`,
//! `gc.get_threshold()`, `gc.get_count()`, `len(gc.get_objects(i))`, `gc.get_freeze_count()`,
//! `gc.get_stats()`, `len(gc.garbage)`, `len(gc.callbacks)`.
//!
//! Read from `interp->gc` with the offsets of [`python_bindings::GcLayout`]; the list lengths are list
//! walks (bounded, validated) through [`super::gc::walk_list`]. Call it with the target paused for
//! consistent figures.

use python_bindings::{GcStatsRing, Layout};
use serde::{Deserialize, Serialize};

use super::gc::{walk_list, GcState, PERMANENT};
use crate::error::{Error, Result};
use crate::memory::le_u64;
use crate::memory::{Memory, ReadExt};

/// Longest `gc.garbage` / `gc.callbacks` memspy believes (beyond it the list header is misread).
const MAX_LIST_LEN: i64 = 1 << 40;

/// One entry of `gc.get_stats()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationStats {
    pub collections: u64,
    pub collected: u64,
    pub uncollectable: u64,
}

/// The GC figures of one interpreter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcFigures {
    pub enabled: bool,
    pub collecting: bool,
    /// `gc.get_debug()`.
    #[serde(rename = "debug")]
    pub debug_flags: u32,
    pub thresholds: [i64; 3],
    pub counts: [i64; 3],
    /// Objects in generations 0, 1, 2 (`len(gc.get_objects(i))`).
    pub generations: [u64; 3],
    /// Objects in the permanent generation (`gc.get_freeze_count()`).
    pub permanent: u64,
    /// `len(gc.garbage)`, `len(gc.callbacks)`.
    pub garbage: u64,
    pub callbacks: u64,
    /// `gc.get_stats()`: one entry per generation.
    pub stats: Vec<GenerationStats>,
    /// Figures this build's collector does not have, each said in one line (free-threaded builds).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub absent: Vec<String>,
}

/// What the free-threaded collector does not have, as `gc` says it.
pub const FREE_THREADED_ABSENT: &[&str] = &[
    "generations 1 and 2 hold no objects: the free-threaded collector keeps every tracked object in one \
     generation (gc.get_objects(g) ignores g), reported as generation 0",
    "GC lists: the tracked objects are counted in the mimalloc heaps of every thread (and abandoned pages)",
    "per-thread allocation counts not yet flushed into counts[0] (gc.get_count() flushes only its own thread's)",
];

/// Reads the GC figures of an interpreter whose GC state was read as `state`. With `strict`, a GC list
/// that does not hold together is an error (the target is paused); without, its walk stops there.
pub fn read<M: Memory + ?Sized>(mem: &M, l: &Layout, state: &GcState, strict: bool) -> Result<GcFigures> {
    let mut f = read_counters(mem, l, state)?;
    for (i, head) in state.heads.iter().enumerate() {
        let end = walk_list(mem, *head, l.gc_head.size, strict, |_| Ok(()))?;
        if i == PERMANENT {
            f.permanent = end.objects;
        } else {
            f.generations[l.gc.reported_generation(i)] += end.objects;
        }
    }
    Ok(f)
}

/// The GC figures that are fixed-size fields and list lengths (enabled, debug flags, thresholds, counts,
/// `gc.garbage`, `gc.callbacks`, `gc.get_stats()`): no GC list is walked, so `generations` and
/// `permanent` stay 0. A handful of reads, cheap enough to make without pausing the target (a figure
/// being updated at that moment may be off by the update).
pub fn read_counters<M: Memory + ?Sized>(mem: &M, l: &Layout, state: &GcState) -> Result<GcFigures> {
    let g = &l.gc;
    let gc = state.addr;
    let raw = mem.bytes_at(gc, g.size as usize, "interp->gc")?;
    let i32_at = |off: u64, what: &str| -> Result<i64> {
        let o = off as usize;
        raw.get(o..o + 4)
            .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64)
            .ok_or_else(|| Error::Corrupt(format!("{what} at gc+{off:#x} lies outside the GC state")))
    };
    let mut f = GcFigures {
        enabled: state.enabled,
        collecting: state.collecting,
        debug_flags: i32_at(g.debug, "gc.debug")? as u32,
        ..Default::default()
    };
    // Thresholds and counts sit in each generation's `gc_generation`, after its list head. The heads come
    // from GcState (Debian 3.13's shifted array is already accounted for).
    for i in 0..3 {
        let head = state.heads[i] - gc;
        f.thresholds[i] = i32_at(head + g.gen_threshold, "generation threshold")?;
        f.counts[i] = i32_at(head + g.gen_count, "generation count")?;
    }
    if g.visited_space.is_some() {
        // The incremental collector's `gc.get_threshold()`: (young, old[0], 0), whichever space is visited.
        f.thresholds[1] = i32_at(g.generations[1] + g.gen_threshold, "old[0] threshold")?;
        f.thresholds[2] = 0;
    }
    f.garbage = list_len(mem, l, le_u64(&raw, g.garbage).unwrap_or(0), "gc.garbage")?;
    f.callbacks = list_len(mem, l, le_u64(&raw, g.callbacks).unwrap_or(0), "gc.callbacks")?;
    f.stats = match (g.stats, g.stats_ptr, g.stats_ring) {
        (Some(off), _, _) => (0..3u64)
            .map(|i| {
                let at = off + i * g.stats_entry_size;
                let get = |k: u64| le_u64(&raw, at + 8 * k).unwrap_or(0);
                GenerationStats { collections: get(0), collected: get(1), uncollectable: get(2) }
            })
            .collect(),
        (None, Some(ptr_off), Some(ring)) => {
            let ptr = le_u64(&raw, ptr_off).unwrap_or(0);
            if ptr == 0 {
                // Not allocated yet: no collection has been recorded.
                vec![GenerationStats::default(); 3]
            } else {
                let buf = mem.bytes_at(ptr, ring.size as usize, "gc.generation_stats")?;
                ring_stats(&buf, &ring)?
            }
        }
        _ => return Err(Error::Corrupt(format!("no GC statistics layout for Python {}", l.version))),
    };
    Ok(f)
}

/// Decodes 3.15's ring buffers: the current entry of `young`, `old[0]`, `old[1]` (each cumulative).
pub fn ring_stats(buf: &[u8], r: &GcStatsRing) -> Result<Vec<GenerationStats>> {
    let entry = |base: u64, n: u64, index_off: u64, what: &str| -> Result<GenerationStats> {
        let index = *buf
            .get((base + index_off) as usize)
            .ok_or_else(|| Error::Corrupt(format!("{what}: index outside the buffer")))? as i8;
        if index < 0 || index as u64 >= n {
            return Err(Error::Corrupt(format!("{what}: ring index {index} out of 0..{n}")));
        }
        let at = base + index as u64 * r.item_size;
        let get =
            |off: u64| le_u64(buf, at + off).ok_or_else(|| Error::Corrupt(format!("{what}: entry outside the buffer")));
        Ok(GenerationStats {
            collections: get(r.collections)?,
            collected: get(r.collected)?,
            uncollectable: get(r.uncollectable)?,
        })
    };
    Ok(vec![
        entry(r.young, r.young_items, r.young_index, "gc stats (young)")?,
        entry(r.old, r.old_items, r.old_index, "gc stats (old[0])")?,
        entry(r.old + r.old_size, r.old_items, r.old_index, "gc stats (old[1])")?,
    ])
}

/// `len(list)` of a list object pointer (0 for NULL).
fn list_len<M: Memory + ?Sized>(mem: &M, l: &Layout, list: u64, what: &'static str) -> Result<u64> {
    if list == 0 {
        return Ok(0);
    }
    let n = mem.i64_at(list + l.object.ob_size, what)?;
    if !(0..MAX_LIST_LEN).contains(&n) {
        return Err(Error::Corrupt(format!("{what} has length {n}")));
    }
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use python_bindings::GC_STATS_RING_315;

    #[test]
    fn ring_buffer_current_entries() {
        let r = GC_STATS_RING_315;
        let mut buf = vec![0u8; r.size as usize];
        let put =
            |buf: &mut Vec<u8>, at: u64, v: u64| buf[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
        buf[r.young_index as usize] = 9;
        put(&mut buf, 9 * 64 + 16, 9);
        put(&mut buf, 9 * 64 + 24, 24);
        buf[(r.old + r.old_index) as usize] = 0;
        put(&mut buf, r.old + 16, 3);
        buf[(r.old + r.old_size + r.old_index) as usize] = 1;
        put(&mut buf, r.old + r.old_size + 64 + 16, 1);
        put(&mut buf, r.old + r.old_size + 64 + 32, 2);
        let s = ring_stats(&buf, &r).unwrap();
        assert_eq!(s[0], GenerationStats { collections: 9, collected: 24, uncollectable: 0 });
        assert_eq!(s[1].collections, 3);
        assert_eq!(s[2], GenerationStats { collections: 1, collected: 0, uncollectable: 2 });
        buf[r.young_index as usize] = 11;
        assert!(ring_stats(&buf, &r).is_err());
    }
}
