//! The GC-tracked objects of a free-threaded build, found where its collector finds them: the GC heaps
//! of every thread state's mimalloc (objects without a pre-header at block + 0, with one at block + 16)
//! and the pages of those kinds in the interpreter's abandoned segments (threads that exited). A block
//! counts when it is allocated (on no free list: [`crate::cpython::mimalloc::live_blocks`]) and its
//! object has TRACKED set in `ob_gc_bits`; freed blocks keep stale headers, so the free lists are
//! subtracted first. FROZEN objects (`gc.freeze()`) are the permanent generation; every other tracked
//! object is reported in generation 0 (the free-threaded collector has one generation).

use python_bindings::{gc_bits, Layout, RefcountScheme};

use super::gclists::decode_tracked;
use super::{ObjectRecord, WalkSummary};
use crate::cpython::gc;
use crate::cpython::mimalloc::{self as mi, HeapCounts, PageInfo};
use crate::cpython::objects::{read_head, HEAD_BYTES};
use crate::cpython::types::{TypeInfo, Types};
use crate::error::{Error, Result};
use crate::memory::fasthash::AddrSet;
use crate::memory::Memory;
use crate::pause::{Control, Interp};

/// Names the walk of the heaps in a timeout.
pub const WHAT: &str = "walking the mimalloc heaps";

/// What a visit of the heaps is told about each tracked object: its address, head, and list
/// (0 or [`gc::PERMANENT`]).
type OnObject<'f> = dyn FnMut(u64, &[u8; HEAD_BYTES], usize) -> Result<()> + 'f;

/// One page's tracked objects.
#[allow(clippy::too_many_arguments)]
fn visit_page<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    page: &PageInfo,
    offset: u64,
    delayed: &AddrSet,
    strict: bool,
    counts: &mut HeapCounts,
    unreadable: &mut u64,
    on_object: &mut OnObject<'_>,
) -> Result<()> {
    let mut head = [0u8; HEAD_BYTES];
    let RefcountScheme::Biased { gc_bits: bits_at, .. } = l.refcount else {
        return Err(Error::Other("not a free-threaded layout".into()));
    };
    for block in mi::live_blocks(mem, page, delayed, strict, counts)? {
        let obj = block + offset;
        if !read_head(mem, obj, &mut head) {
            *unreadable += 1;
            continue;
        }
        let bits = head[bits_at as usize];
        // As the collector's own visit (`op_from_block`, `gc.get_objects()`): tracked objects only;
        // UNREACHABLE is set only inside a collection.
        if bits & gc_bits::TRACKED == 0 || bits & gc_bits::UNREACHABLE != 0 {
            continue;
        }
        on_object(obj, &head, if bits & gc_bits::FROZEN != 0 { gc::PERMANENT } else { 0 })?;
    }
    Ok(())
}

/// Visits every tracked object in the GC heaps of every thread state of every interpreter, then in
/// their abandoned segments. Returns the objects whose head could not be read.
pub fn visit_heaps<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    interps: &[Interp],
    strict: bool,
    counts: &mut HeapCounts,
    on_object: &mut OnObject<'_>,
) -> Result<u64> {
    let m = l.mimalloc.ok_or_else(|| Error::Other("not a free-threaded build".into()))?;
    let extra = if l.debug_build { m.debug_offset } else { 0 };
    let mut unreadable = 0;
    // A page is visited once, even if it moved between a thread and the pool while read unstopped.
    let mut pages_seen = AddrSet::default();
    for ip in interps {
        let states = mi::thread_states(mem, l, ip.addr)?;
        let before = counts.threads;
        for &ts in &states {
            let Some(heaps) = mi::thread_heaps(mem, l, ts)? else { continue };
            counts.threads += 1;
            for (tag, offset) in m.gc_heaps {
                let Some(&heap) = heaps.get(tag as usize) else { continue };
                counts.heaps += 1;
                let delayed = mi::delayed_free(mem, l, heap)?;
                for p in mi::heap_pages(mem, l, heap, strict)? {
                    if !pages_seen.insert(p) {
                        continue;
                    }
                    let page = mi::page_info(mem, l, p)?;
                    if page.tag as u64 != tag {
                        return Err(Error::Corrupt(format!("page {p:#x} of heap {tag} has tag {}", page.tag)));
                    }
                    counts.pages += 1;
                    visit_page(mem, l, &page, offset + extra, &delayed, strict, counts, &mut unreadable, on_object)?;
                }
            }
        }
        // A thread that runs Python has initialised its heaps: none at all means misread offsets.
        if !states.is_empty() && counts.threads == before {
            return Err(Error::Other(format!(
                "interpreter {:#x}: none of its {} thread states has mimalloc heaps where memspy looks",
                ip.addr,
                states.len()
            )));
        }
        let none = AddrSet::default();
        for seg in mi::abandoned_segments(mem, l, ip.addr)? {
            counts.abandoned_segments += 1;
            for p in mi::segment_pages(mem, l, seg)? {
                let page = mi::page_info(mem, l, p)?;
                let Some(&(_, offset)) = m.gc_heaps.iter().find(|(t, _)| *t == page.tag as u64) else { continue };
                if !pages_seen.insert(p) {
                    continue;
                }
                counts.abandoned_pages += 1;
                visit_page(mem, l, &page, offset + extra, &none, strict, counts, &mut unreadable, on_object)?;
            }
        }
    }
    Ok(unreadable)
}

/// Walks the tracked objects of the heaps ([`visit_heaps`]), each described to `sink`.
#[allow(clippy::too_many_arguments)]
pub fn walk_heaps<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    interps: &[Interp],
    types: &mut Types,
    strict: bool,
    control: &Control,
    summary: &mut WalkSummary,
    counts: &mut HeapCounts,
    mut sink: impl FnMut(&ObjectRecord, &TypeInfo),
) -> Result<()> {
    summary.interpreters = interps.len();
    summary.collecting |= interps.iter().any(|i| i.gc.collecting);
    let pages_before = counts.inconsistent_pages;
    let unreadable = visit_heaps(mem, l, interps, strict, counts, &mut |obj, head, list| {
        control.reported();
        control.tick(summary.generations[0] + summary.permanent, WHAT)?;
        let Some((rec, info)) = decode_tracked(mem, l, types, obj, head, list) else {
            summary.unreadable += 1;
            return Ok(());
        };
        if !rec.size_exact {
            summary.approximate_sizes += 1;
        }
        if list == gc::PERMANENT {
            summary.permanent += 1;
        } else {
            summary.generations[0] += 1;
        }
        sink(&rec, info);
        Ok(())
    })?;
    summary.unreadable += unreadable;
    summary.inconsistent_pages += counts.inconsistent_pages - pages_before;
    Ok(())
}

/// The tracked objects of the heaps, counted: (generation 0, frozen), as `len(gc.get_objects())` and
/// `gc.get_freeze_count()` answer on a free-threaded build.
pub fn count_tracked<M: Memory + ?Sized>(mem: &M, l: &Layout, interps: &[Interp]) -> Result<(u64, u64)> {
    let (mut young, mut frozen) = (0, 0);
    let mut counts = HeapCounts::default();
    visit_heaps(mem, l, interps, true, &mut counts, &mut |_, _, list| {
        if list == gc::PERMANENT {
            frozen += 1;
        } else {
            young += 1;
        }
        Ok(())
    })?;
    Ok((young, frozen))
}
