//! The GC lists of a stopped target walked from both ends at once, on two threads.
//!
//! Following a list's links is a chain of dependent reads over the whole heap (each read of a node
//! waits for the previous one, and most of them need a chunk copied from the target first), so one
//! thread cannot go faster than one miss at a time. The lists are doubly linked: one thread walks
//! every list forward from its head (`_gc_next`, checking each node's `_gc_prev` points back to the
//! node before), the other backward (`_gc_prev`, checking `_gc_next`), each through its own half of the
//! read cache, and each does the per-object work (head, type, `getsizeof`) for the nodes it reaches.
//! They meet in the middle: every node is *claimed* by the first thread that reaches it (an atomic
//! bitmap, 1 bit per 8 bytes of the readable address space, allocated lazily), and a thread stops at
//! the first node of a list the other has claimed.
//!
//! Strictness is kept: every link is checked in both directions (by the thread that follows it), and
//! afterwards the two halves of each list must meet exactly: the forward walk stopped at the last node
//! the backward walk visited (the head if none) and vice versa. Anything else (a cycle, another list's
//! head, a wild pointer, halves that do not meet) is [`Error::ListCheck`], naming the check; the caller retries.
//! Since each object of a consistent list is reached by exactly one thread, the counts are exact.
//!
//! A walk that records the graph (`why`, `retained`, `dump`) has each thread keep the objects it
//! reaches (address, type, size, refcount: [`Objects`]), handed to the sink as parts of their own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use python_bindings::Layout;

use crate::discovery::Interpreter;
use crate::error::{Error, Result};
use crate::memory::{le_u64, MAX_USER_ADDR};
use crate::memory::{Memory, ReadExt};

use super::full::{read_head, FullWalk};
use super::graph::Objects;
use super::shares;
use super::{Sink, TypeTotals, WalkSummary};
use crate::cpython::gc;
use crate::cpython::objects::HEAD_BYTES;
use crate::cpython::types::{TypeInfo, Types};
use crate::memory::fasthash::{AddrMap, AddrSet};
use crate::memory::readers::ThreadReaders;
use crate::pause::{Control, Interp};

/// Most address space the claim bitmap covers (1 bit per 8 bytes, so 1/64 of it in virtual memory,
/// of which only the pages around GC nodes are ever touched).
const MAX_COVERED: u64 = 1 << 36;

// The bitmap is allocated zeroed as u64 words and used as AtomicU64 words.
const _: () =
    assert!(std::mem::size_of::<AtomicU64>() == 8 && std::mem::align_of::<AtomicU64>() == std::mem::align_of::<u64>());

/// Which nodes a walking thread has reached first.
pub struct Claims {
    /// (start, end, first word) of each covered range, sorted by address.
    ranges: Vec<(u64, u64, usize)>,
    bits: Box<[AtomicU64]>,
    /// Nodes outside the covered ranges (none in a healthy process).
    others: Mutex<AddrSet>,
}

impl Claims {
    /// A bitmap over `ranges` (sorted, disjoint); None when they are too large.
    pub fn new(ranges: &[(u64, u64)]) -> Option<Claims> {
        let mut out = Vec::with_capacity(ranges.len());
        let mut words = 0usize;
        let mut covered = 0u64;
        for &(s, e) in ranges {
            let s = s & !7;
            if e <= s {
                continue;
            }
            covered = covered.saturating_add(e - s);
            if covered > MAX_COVERED {
                return None;
            }
            out.push((s, e, words));
            words += (e - s).div_ceil(8 * 64) as usize;
        }
        // vec![0; n] asks the allocator for zeroed memory: large bitmaps are mapped lazily.
        let zeroed: Box<[u64]> = vec![0u64; words].into_boxed_slice();
        // SAFETY: AtomicU64 has the same size, alignment (asserted above) and bit validity as u64, and the
        // box is not used as [u64] any more; it is freed with the same layout.
        let bits = unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [AtomicU64]) };
        Some(Claims { ranges: out, bits, others: Mutex::new(AddrSet::default()) })
    }

    /// Claims `addr` (8-aligned) for the caller: true for the first caller only, across threads.
    /// `hint` remembers the range of the last claim.
    #[inline]
    pub fn claim(&self, addr: u64, hint: &mut usize) -> bool {
        let r = match self.ranges.get(*hint) {
            Some(&r) if r.0 <= addr && addr < r.1 => r,
            _ => {
                let i = self.ranges.partition_point(|r| r.1 <= addr);
                match self.ranges.get(i) {
                    Some(&r) if r.0 <= addr => {
                        *hint = i;
                        r
                    }
                    _ => return self.others.lock().unwrap_or_else(|e| e.into_inner()).insert(addr),
                }
            }
        };
        let bit = (addr - r.0) >> 3;
        let m = 1u64 << (bit & 63);
        self.bits[r.2 + (bit >> 6) as usize].fetch_or(m, Ordering::Relaxed) & m == 0
    }
}

/// How one direction's walk of one list ended.
#[derive(Clone, Copy, Debug, Default)]
struct Leg {
    objects: u64,
    /// The last node this direction visited (the head if none).
    last: u64,
    /// The node it stopped at: the head, or a node the other direction claimed.
    end: u64,
}

/// What one direction hands back.
#[derive(Default)]
struct DirOut {
    legs: Vec<Leg>,
    /// Per list and owner (see [`shares::owner`]): the objects reported, in the order this direction
    /// reached them.
    addrs: Vec<Vec<Vec<u64>>>,
    /// Per type: totals per list (0, 1, 2, permanent).
    totals: AddrMap<[TypeTotals; 4]>,
    infos: AddrMap<TypeInfo>,
    unreadable: u64,
    approximate_sizes: u64,
    /// Stopped because the other direction failed.
    aborted: bool,
    /// A recording walk's: each object reached, for the graph ([`Objects`]), and the type objects
    /// (whose cached keys the reference walk must know: see [`FullWalk::note_type_keys`]).
    objects: Option<Objects>,
    metatypes: Vec<u64>,
}

/// What both directions share.
struct Ctl<'a> {
    l: &'a Layout,
    /// (list number, head address) of every list of every interpreter.
    lists: &'a [(usize, u64)],
    all_heads: &'a [u64],
    claims: &'a Claims,
    /// One direction failed or panicked: the other stops.
    abort: &'a AtomicBool,
    control: &'a Control,
    /// Threads of the reference walk that follows: the objects reported are split among them.
    shares: usize,
}

/// Sets `abort` when a direction ends early (an error or a panic), unless disarmed: a direction that
/// ends normally must not stop the other, which may still be finishing the last list.
struct AbortUnlessDone<'a> {
    abort: &'a AtomicBool,
    armed: bool,
}

impl Drop for AbortUnlessDone<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.abort.store(true, Ordering::SeqCst);
        }
    }
}

fn walk_direction<M: Memory + ?Sized>(mem: &M, ctl: &Ctl<'_>, forward: bool, out: &mut DirOut) -> Result<()> {
    let l = ctl.l;
    let mut types = Types::new(l);
    let mut head = [0u8; HEAD_BYTES];
    let mut hint = 0usize;
    let mut n = 0u64;
    // Offsets of the link followed and of the link that must point back.
    let (ahead, back) = if forward { (0u64, 8u64) } else { (8, 0) };
    let dir = if forward { "forward" } else { "backward" };
    for &(list, head_addr) in ctl.lists {
        let mut leg = Leg { last: head_addr, ..Default::default() };
        let mut addrs: Vec<Vec<u64>> = vec![Vec::new(); ctl.shares];
        let mut node = mem.u64_at(head_addr + ahead, "gc list head")? & !3;
        let corrupt = |check: &'static str, why: String| {
            Err(Error::ListCheck { check, detail: format!("GC list at {head_addr:#x} ({dir}): {why}") })
        };
        loop {
            if node == head_addr {
                break;
            }
            if leg.objects >= gc::MAX_LIST {
                return corrupt(gc::checks::LENGTH, format!("more than {} objects", gc::MAX_LIST));
            }
            if ctl.all_heads.contains(&node) {
                return corrupt(gc::checks::OTHER_HEAD, format!("ran into another list's head {node:#x}"));
            }
            if node == 0 || node >= MAX_USER_ADDR || node % 8 != 0 {
                return corrupt(gc::checks::POINTER, format!("wild pointer {node:#x}"));
            }
            let mut links = [0u8; 16];
            mem.read_into(node, &mut links, "PyGC_Head")?;
            let next = le_u64(&links, ahead).unwrap_or(0) & !3;
            let prev = le_u64(&links, back).unwrap_or(0) & !3;
            if prev != leg.last {
                return corrupt(
                    gc::checks::BACK_LINK,
                    format!("object {node:#x} links back to {prev:#x}, expected {:#x}", leg.last),
                );
            }
            if next == 0 || next >= MAX_USER_ADDR {
                return corrupt(gc::checks::POINTER, format!("object {node:#x} links to {next:#x}"));
            }
            if !ctl.claims.claim(node, &mut hint) {
                // The other direction got here first (or this is a cycle: the halves will not meet).
                break;
            }
            n += 1;
            ctl.control.reported();
            ctl.control.tick(n, super::gclists::WHAT)?;
            if (n.is_multiple_of(256) || ctl.control.hooks().delay.is_some()) && ctl.abort.load(Ordering::Relaxed) {
                out.aborted = true;
                return Ok(());
            }
            let obj = node + l.gc_head.size;
            leg.objects += 1;
            leg.last = node;
            node = next;
            if !read_head(mem, obj, &mut head) {
                out.unreadable += 1;
                continue;
            }
            let Some((rec, info)) = super::gclists::decode_tracked(mem, l, &mut types, obj, &head, list) else {
                out.unreadable += 1;
                continue;
            };
            if !rec.size_exact {
                out.approximate_sizes += 1;
            }
            let type_addr = rec.type_addr;
            let per_list = out.totals.entry(type_addr).or_insert_with(|| {
                out.infos.insert(type_addr, info.clone());
                Default::default()
            });
            per_list[list.min(3)].add(&rec);
            if let Some(o) = out.objects.as_mut() {
                o.object(&rec, info);
                if info.is_metatype {
                    out.metatypes.push(obj);
                }
            }
            addrs[shares::owner(obj, ctl.shares)].push(obj);
        }
        leg.end = node;
        out.legs.push(leg);
        out.addrs.push(addrs);
    }
    Ok(())
}

/// What a direction's thread hands back: its reader (to rejoin the cache), its findings, how it ended.
type Direction<'s, M> = (<M as ThreadReaders>::Reader<'s>, DirOut, Result<()>);

/// The objects of the list at `head`, from its forward and backward legs, which must meet exactly: each
/// stopped where the other's last node is (the head when that one visited nothing).
fn meet(head: u64, f: &Leg, b: &Leg) -> Result<u64> {
    if f.end != b.last || b.end != f.last {
        return Err(Error::ListCheck {
            check: gc::checks::MEET,
            detail: format!(
                "GC list at {head:#x}: forward stopped at {:#x} after {:#x}, backward at {:#x} after {:#x}",
                f.end, f.last, b.end, b.last
            ),
        });
    }
    Ok(f.objects + b.objects)
}

/// Walks the GC lists of every interpreter on two threads (see the module's documentation), reports
/// their objects to `sink` and marks them in `fw`, like [`super::walk_gc`] (strict) with a sink that
/// does so. None when that cannot be done here (one thread asked for or available, a memory that
/// cannot be forked, unknown or too large address ranges): the caller walks the lists itself.
pub fn walk_gc_parallel<M: ThreadReaders>(
    mem: &M,
    interp: &Interpreter,
    interps: &[Interp],
    fw: &mut FullWalk<'_, M>,
    control: &Control,
    summary: &mut WalkSummary,
    sink: &mut dyn Sink,
) -> Option<Result<()>> {
    // Two directions, and the objects left for the reference walk's threads split among them.
    let shares = fw.threads;
    if shares < 2 {
        return None;
    }
    let claims = Claims::new(&mem.object_ranges()).filter(|c| !c.ranges.is_empty())?;
    let l = &interp.layout;
    let mut lists = Vec::new();
    let setup = (|| -> Result<()> {
        summary.interpreters = interps.len();
        for state in interps.iter().map(|i| i.gc) {
            summary.collecting |= state.collecting;
            state.validate(mem)?;
            lists.extend(state.heads.iter().copied().enumerate());
        }
        Ok(())
    })();
    if let Err(e) = setup {
        return Some(Err(e));
    }
    let parts = mem.readers(2, &|_| 0);
    if parts.len() < 2 {
        mem.take_back(parts);
        return None;
    }
    let all_heads: Vec<u64> = lists.iter().map(|&(_, h)| h).collect();
    let abort = AtomicBool::new(false);
    let ctl = Ctl { l, lists: &lists, all_heads: &all_heads, claims: &claims, abort: &abort, control, shares };
    // A walk that records the graph keeps each direction's objects (in arrays made before the pause,
    // where there are).
    let record = fw.graph.is_some() && sink.keeps_objects();
    let mut spares = std::mem::take(&mut fw.direction_spares);
    let results: Vec<std::thread::Result<Direction<'_, M>>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .enumerate()
            .map(|(i, pm)| {
                let ctl = &ctl;
                let objects = record.then(|| spares.pop().unwrap_or_default());
                s.spawn(move || {
                    let mut stop_other = AbortUnlessDone { abort: ctl.abort, armed: true };
                    let mut out = DirOut { objects, ..DirOut::default() };
                    let r = walk_direction(&pm, ctl, i == 0, &mut out);
                    stop_other.armed = r.is_err();
                    (pm, out, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    drop(claims);
    let mut outs = Vec::with_capacity(2);
    let mut parts = Vec::with_capacity(2);
    let mut result = Ok(());
    let mut panic = None;
    for r in results {
        match r {
            Err(p) => panic = panic.or(Some(p)),
            Ok((pm, out, r)) => {
                parts.push(pm);
                outs.push(out);
                if let (Err(e), true) = (r, result.is_ok()) {
                    result = Err(e);
                }
            }
        }
    }
    mem.take_back(parts);
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
    // Only a failure stops the other direction, and that failure is the result; never report a walk
    // cut short as complete.
    if result.is_ok() && outs.iter().any(|o| o.aborted) {
        result = Err(Error::Corrupt("the walk of the GC lists stopped early".into()));
    }
    let (fwd, bwd) = (&outs[0], &outs[1]);
    for (k, &(list, head)) in lists.iter().enumerate() {
        let (Some(f), Some(b)) = (fwd.legs.get(k), bwd.legs.get(k)) else { continue };
        let objects = match meet(head, f, b) {
            Ok(n) => n,
            Err(e) => {
                if result.is_ok() {
                    result = Err(e);
                }
                continue;
            }
        };
        if list == gc::PERMANENT {
            summary.permanent += objects;
        } else {
            summary.generations[l.gc.reported_generation(list)] += objects;
        }
    }
    for out in outs.iter_mut() {
        if let Some(o) = out.objects.take() {
            sink.objects(o);
        }
        for &t in &out.metatypes {
            fw.note_type_keys(t);
        }
    }
    for out in &outs {
        summary.unreadable += out.unreadable;
        summary.approximate_sizes += out.approximate_sizes;
        for (&t, per_list) in &out.totals {
            let info = &out.infos[&t];
            for (list, tt) in per_list.iter().enumerate() {
                let mut tt = *tt;
                tt.type_addr = t;
                sink.tracked(&tt, info, list);
            }
            fw.add_good_type(t);
        }
    }
    // Left to the workers of the reference walk, which mark their own share. In stack order: the
    // reference walk (last in, first out) starts where both directions ended, whose memory is still
    // in the read cache, and works toward the ends of each list: per list, the forward half in list
    // order, then the backward half in the order it was walked.
    if let Some(&first) = outs.iter().flat_map(|o| o.addrs.iter()).flatten().flatten().next() {
        fw.learn_type_type(first);
    }
    // Per owner, the segments in that order (moved, not copied: copying would fault in fresh memory
    // while the target is stopped).
    let mut pending: Vec<Vec<Vec<u64>>> = vec![Vec::new(); shares];
    for k in 0..lists.len() {
        for out in outs.iter_mut() {
            if let Some(a) = out.addrs.get_mut(k) {
                for (o, share) in a.iter_mut().enumerate() {
                    if !share.is_empty() {
                        pending[o].push(std::mem::take(share));
                    }
                }
            }
        }
    }
    fw.set_pending(pending);
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;
    use python_bindings::Version;

    const HEAD: u64 = 0x10000;

    /// A GC list: the head at HEAD, then `n` nodes 64 bytes apart.
    fn ring(n: u64) -> (FakeMemory, Vec<u64>) {
        let mut f = FakeMemory::new();
        f.add(HEAD, vec![0; (64 * (n + 1)) as usize]);
        let all: Vec<u64> = (0..=n).map(|i| HEAD + 64 * i).collect();
        for (i, a) in all.iter().enumerate() {
            let next = all[(i + 1) % all.len()];
            let prev = all[(i + all.len() - 1) % all.len()];
            f.put_u64(*a, next | (i as u64 & 1));
            f.put_u64(*a + 8, prev | 2);
        }
        (f, all)
    }

    /// Both directions of one list, one after the other (`forward_first`) or on two threads (None).
    fn both(f: &FakeMemory, n: u64, forward_first: Option<bool>) -> Result<u64> {
        let l = Layout::builtin(Version::new(3, 11, 0)).unwrap();
        let claims = Claims::new(&[(HEAD, HEAD + 64 * (n + 1))]).unwrap();
        let lists = [(2usize, HEAD)];
        let abort = AtomicBool::new(false);
        let control = Control::unlimited();
        let ctl = Ctl {
            l: &l,
            lists: &lists,
            all_heads: &[HEAD],
            claims: &claims,
            abort: &abort,
            control: &control,
            shares: 2,
        };
        let (mut fo, mut bo) = (DirOut::default(), DirOut::default());
        match forward_first {
            Some(first) => {
                for forward in [first, !first] {
                    walk_direction(f, &ctl, forward, if forward { &mut fo } else { &mut bo })?;
                }
            }
            None => {
                let (a, b) = std::thread::scope(|s| {
                    let a = s.spawn(|| walk_direction(f, &ctl, true, &mut fo));
                    let b = s.spawn(|| walk_direction(f, &ctl, false, &mut bo));
                    (a.join().unwrap(), b.join().unwrap())
                });
                a?;
                b?;
            }
        }
        // The objects' heads are zeros (unreadable types): counted in the list, not reported.
        assert_eq!(fo.unreadable + bo.unreadable, fo.legs[0].objects + bo.legs[0].objects);
        meet(HEAD, &fo.legs[0], &bo.legs[0])
    }

    #[test]
    fn both_ends_count_every_node_once() {
        for n in [0, 1, 2, 3, 1000, 20000] {
            let (f, _) = ring(n);
            assert_eq!(both(&f, n, Some(true)).unwrap(), n);
            assert_eq!(both(&f, n, Some(false)).unwrap(), n);
            assert_eq!(both(&f, n, None).unwrap(), n);
        }
    }

    #[test]
    fn inconsistent_lists_are_errors() {
        let n = 100;
        for order in [Some(true), Some(false), None] {
            // A wrong back link.
            let (mut f, all) = ring(n);
            f.put_u64(all[40] + 8, all[10]);
            assert!(both(&f, n, order).is_err());
            // A wrong forward link (also a cycle that does not return to the head).
            let (mut f, all) = ring(n);
            f.put_u64(all[60], all[20]);
            assert!(both(&f, n, order).is_err());
            // The last node does not lead back to the head.
            let (mut f, all) = ring(n);
            f.put_u64(all[n as usize], all[1]);
            assert!(both(&f, n, order).is_err());
        }
    }

    #[test]
    fn claims_are_exclusive() {
        let c = Claims::new(&[(0x1000, 0x2000), (0x10_0000, 0x20_0000)]).unwrap();
        let mut h = 0;
        assert!(c.claim(0x1008, &mut h));
        assert!(!c.claim(0x1008, &mut h));
        assert!(c.claim(0x1010, &mut h));
        assert!(c.claim(0x10_0008, &mut h));
        assert!(!c.claim(0x10_0008, &mut 0));
        // Outside the ranges: still exact.
        assert!(c.claim(0x5000, &mut h));
        assert!(!c.claim(0x5000, &mut h));
    }
}
