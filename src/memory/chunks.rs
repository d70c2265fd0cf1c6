//! A read cache for the full-heap walk: target memory is copied in 64 KiB chunks (one
//! `process_vm_readv` each, clipped to the readable mappings of `/proc/PID/maps`), so that walking
//! millions of small objects costs a few thousand system calls. Reads outside readable mappings fail
//! at once without touching the target, which makes probing candidate pointers cheap.
//!
//! Lookups avoid hashing on the hot path: the last chunk hit is remembered, and chunks are found in a
//! two-level table (1 GiB directory → 16,384 slot numbers). Bounded: past `max_bytes` the oldest chunk
//! is evicted and its buffer reused (first in, first out), so the cache never reallocates.
//!
//! [`ChunkCache::prefault`] maps the buffers ahead (one arena, faulted in with
//! `MADV_POPULATE_WRITE`) before the target is stopped: the kernel's page faults then cost no pause.
//! `split` and `absorb` pass spare buffers on, so none is freed and allocated again.

use std::cell::{Cell, RefCell};
use std::io;

use crate::memory::fasthash::AddrMap;
use crate::memory::maps::Maps;
use crate::memory::Memory;

pub const CHUNK: u64 = 64 * 1024;
const CHUNK_SHIFT: u32 = 16;
use super::PAGE;
const PAGES_PER_CHUNK: u64 = CHUNK / PAGE;
/// Address space covered by one second-level table.
const DIR_SHIFT: u32 = 30;
const PER_DIR: usize = 1 << (DIR_SHIFT - CHUNK_SHIFT);
/// No slot.
const NONE: u32 = u32::MAX;

/// Memory mapped for chunk buffers ahead of a walk (zero-filled by the kernel, faulted in at once).
struct Arena {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the arena is plain memory; each of its chunks is reachable through exactly one `Buf`, so
// sharing the mapping itself between threads shares no data.
unsafe impl Send for Arena {}
unsafe impl Sync for Arena {}

impl Arena {
    /// `chunks` chunk buffers mapped and faulted in (on two threads), or None when mmap fails.
    fn new(chunks: usize) -> Option<Arena> {
        let len = chunks.checked_mul(CHUNK as usize)?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        let a = Arena { ptr: ptr as *mut u8, len };
        // Faulting in costs the kernel ≈ 1.5 µs a page on this kind of VM: two threads, half each.
        let half = (chunks / 2) * CHUNK as usize;
        let (p, l) = (a.ptr as usize, a.len);
        std::thread::scope(|s| {
            s.spawn(move || fault_in(p, half));
            fault_in(p + half, l - half);
        });
        Some(a)
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; no `Buf` refers to it any more (each holds the Arc).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Makes every page of [addr, addr+len) (page-aligned, mapped writable) resident now: one
/// `madvise(MADV_POPULATE_WRITE)`, or a write per page where the kernel lacks it (before 5.14).
fn fault_in(addr: usize, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: the range is part of an arena mapping this process owns; populating never changes
    // its contents.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
    if r != 0 {
        for off in (0..len).step_by(PAGE as usize) {
            // SAFETY: inside the mapping; the pages are zero (fresh) and no Buf exists yet. Volatile, so
            // that the write is kept.
            unsafe { std::ptr::write_volatile((addr + off) as *mut u8, 0) };
        }
    }
}

/// One chunk buffer: allocated on demand, or a chunk of an arena faulted in ahead.
enum Buf {
    Heap(Box<[u8]>),
    Arena(std::sync::Arc<Arena>, usize),
}

impl Default for Buf {
    fn default() -> Self {
        Buf::Heap(Box::default())
    }
}

impl Buf {
    fn allocate() -> Buf {
        Buf::Heap(vec![0u8; CHUNK as usize].into_boxed_slice())
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Buf::Heap(b) => b,
            // SAFETY: chunk `i` of the arena lies inside the mapping, which the Arc keeps alive; this
            // Buf is the only one made for it, and `&self` guards it like a Box would.
            Buf::Arena(a, i) => unsafe { std::slice::from_raw_parts(a.ptr.add(i * CHUNK as usize), CHUNK as usize) },
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Buf::Heap(b) => b,
            // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
            Buf::Arena(a, i) => unsafe {
                std::slice::from_raw_parts_mut(a.ptr.add(*i * CHUNK as usize), CHUNK as usize)
            },
        }
    }
}

struct Slot {
    data: Buf,
    /// Bit i: page i of the chunk was read.
    valid: u16,
    base: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkStats {
    pub chunks_read: u64,
    pub bytes_read: u64,
    pub failed: u64,
    pub evictions: u64,
}

struct State {
    /// addr >> 30 → index into `tables`.
    dir: AddrMap<u32>,
    /// Chunk number within its GiB → slot number (or NONE).
    tables: Vec<Box<[u32]>>,
    slots: Vec<Slot>,
    /// Next slot to evict once `slots` is full.
    victim: usize,
    /// Buffers allocated (and faulted in) ahead, used before new ones are allocated.
    spare: Vec<Buf>,
    stats: ChunkStats,
}

pub struct ChunkCache<M: Memory> {
    inner: M,
    /// Readable address ranges, sorted and merged.
    ranges: Vec<(u64, u64)>,
    state: RefCell<State>,
    /// (chunk base, slot) of the last hit.
    last: Cell<(u64, u32)>,
    /// (GiB number, index into `tables`) of the last lookup.
    last_dir: Cell<(u64, u32)>,
    max_chunks: usize,
}

/// Readable ranges of a process map, sorted, adjacent ones merged.
pub fn readable_ranges(maps: &Maps) -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = maps
        .entries
        .iter()
        .filter(|m| m.readable() && m.path.as_deref() != Some("[vvar]") && m.path.as_deref() != Some("[vsyscall]"))
        .map(|m| (m.start, m.end))
        .collect();
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for (s, e) in r {
        match out.last_mut() {
            Some(last) if last.1 >= s => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

impl<M: Memory> ChunkCache<M> {
    pub fn new(inner: M, ranges: Vec<(u64, u64)>, max_bytes: u64) -> Self {
        ChunkCache {
            inner,
            ranges,
            state: RefCell::new(State {
                dir: AddrMap::default(),
                tables: Vec::new(),
                slots: Vec::new(),
                victim: 0,
                spare: Vec::new(),
                stats: ChunkStats::default(),
            }),
            last: Cell::new((u64::MAX, NONE)),
            last_dir: Cell::new((u64::MAX, NONE)),
            max_chunks: (max_bytes / CHUNK).max(16) as usize,
        }
    }

    /// Splits the cache among `n` owners (one per walking thread): each gets 1/n of the budget and
    /// the cached chunks `owner(base)` assigns to it, buffers reused. `self` is left empty.
    pub fn split(&self, n: usize, owner: impl Fn(u64) -> usize) -> Vec<ChunkCache<M>>
    where
        M: Clone,
    {
        let n = n.max(1);
        let parts: Vec<ChunkCache<M>> = (0..n)
            .map(|_| ChunkCache::new(self.inner.clone(), self.ranges.clone(), (self.max_chunks / n) as u64 * CHUNK))
            .collect();
        let mut st = self.state.borrow_mut();
        let slots = std::mem::take(&mut st.slots);
        let mut spare = std::mem::take(&mut st.spare);
        st.dir.clear();
        st.tables.clear();
        st.victim = 0;
        self.last.set((u64::MAX, NONE));
        self.last_dir.set((u64::MAX, NONE));
        for slot in slots {
            let p = &parts[owner(slot.base) % n];
            let mut ps = p.state.borrow_mut();
            if ps.slots.len() >= p.max_chunks {
                // Its buffer is faulted in already: a spare for another part.
                spare.push(slot.data);
                continue;
            }
            let ti = p.table_index(&mut ps, slot.base);
            let within = ((slot.base >> CHUNK_SHIFT) as usize) & (PER_DIR - 1);
            ps.slots.push(slot);
            let s = (ps.slots.len() - 1) as u32;
            ps.tables[ti][within] = s;
        }
        // Spare buffers to the parts with room, in turn.
        let mut k = 0;
        let mut full = 0;
        while !spare.is_empty() && full < n {
            let p = &parts[k % n];
            let mut ps = p.state.borrow_mut();
            if ps.slots.len() + ps.spare.len() < p.max_chunks {
                ps.spare.push(spare.pop().expect("not empty"));
                full = 0;
            } else {
                full += 1;
            }
            k += 1;
        }
        parts
    }

    /// Allocates up to `bytes` of chunk buffers (within the budget) and faults them in now, so that
    /// filling the cache later costs no page faults: call before the target is stopped.
    pub fn prefault(&self, bytes: u64) {
        let mut st = self.state.borrow_mut();
        let want = ((bytes / CHUNK) as usize).min(self.max_chunks).saturating_sub(st.slots.len() + st.spare.len());
        if let Some(a) = Arena::new(want) {
            let a = std::sync::Arc::new(a);
            st.spare.extend((0..want).rev().map(|i| Buf::Arena(a.clone(), i)));
        }
    }

    /// Takes back the chunks (and adds the statistics) of caches made by [`Self::split`], up to this
    /// cache's budget: the inverse of a split, so that a later split hands them to their new owners.
    pub fn absorb(&self, parts: Vec<ChunkCache<M>>) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        for part in parts {
            let ps = part.state.into_inner();
            st.stats.chunks_read += ps.stats.chunks_read;
            st.stats.bytes_read += ps.stats.bytes_read;
            st.stats.failed += ps.stats.failed;
            st.stats.evictions += ps.stats.evictions;
            for slot in ps.slots {
                if st.slots.len() >= self.max_chunks {
                    break;
                }
                let ti = self.table_index(st, slot.base);
                let within = ((slot.base >> CHUNK_SHIFT) as usize) & (PER_DIR - 1);
                if st.tables[ti][within] != NONE {
                    if st.slots.len() + st.spare.len() < self.max_chunks {
                        st.spare.push(slot.data);
                    }
                    continue;
                }
                st.slots.push(slot);
                st.tables[ti][within] = (st.slots.len() - 1) as u32;
            }
            for b in ps.spare {
                if st.slots.len() + st.spare.len() >= self.max_chunks {
                    break;
                }
                st.spare.push(b);
            }
        }
        st.victim = 0;
        self.last.set((u64::MAX, NONE));
        self.last_dir.set((u64::MAX, NONE));
    }

    /// The readable address ranges, sorted and merged.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    fn table_index(&self, st: &mut State, base: u64) -> usize {
        let dkey = base >> DIR_SHIFT;
        match st.dir.get(&dkey) {
            Some(&t) => t as usize,
            None => {
                st.tables.push(vec![NONE; PER_DIR].into_boxed_slice());
                let t = st.tables.len() - 1;
                st.dir.insert(dkey, t as u32);
                t
            }
        }
    }

    pub fn stats(&self) -> ChunkStats {
        self.state.borrow().stats
    }

    /// Whether [addr, addr+len) lies inside one readable range.
    pub fn readable(&self, addr: u64, len: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 <= addr);
        match self.ranges.get(i) {
            Some(&(s, e)) => s <= addr && addr.checked_add(len).is_some_and(|end| end <= e),
            None => false,
        }
    }

    /// Whether any readable range overlaps the chunk at `base`.
    fn chunk_readable(&self, base: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 <= base);
        self.ranges.get(i).is_some_and(|&(s, _)| s < base + CHUNK)
    }

    /// Fills `data` with the chunk at `base`; returns the valid-page bits.
    fn load(&self, base: u64, data: &mut [u8], stats: &mut ChunkStats) -> u16 {
        let mut valid = 0u16;
        let end = base + CHUNK;
        let mut i = self.ranges.partition_point(|r| r.1 <= base);
        while let Some(&(s, e)) = self.ranges.get(i) {
            if s >= end {
                break;
            }
            let lo = s.max(base);
            let hi = e.min(end);
            let buf = &mut data[(lo - base) as usize..(hi - base) as usize];
            match self.inner.read(lo, buf) {
                Ok(()) => {
                    stats.chunks_read += 1;
                    stats.bytes_read += hi - lo;
                    for p in (lo - base) / PAGE..(hi - base).div_ceil(PAGE) {
                        valid |= 1 << p;
                    }
                }
                Err(_) => {
                    // The mapping changed (or is not really readable): page by page.
                    stats.failed += 1;
                    let mut p = lo;
                    while p < hi {
                        let q = (p + PAGE).min(hi);
                        let b = &mut data[(p - base) as usize..(q - base) as usize];
                        if self.inner.read(p, b).is_ok() {
                            valid |= 1 << ((p - base) / PAGE);
                        }
                        p = q;
                    }
                }
            }
            i += 1;
        }
        valid
    }

    /// The slot holding the chunk at `base`, loading it (evicting the oldest) when needed; None when
    /// no readable mapping overlaps the chunk.
    fn slot(&self, base: u64) -> Option<u32> {
        let (lb, ls) = self.last.get();
        if lb == base {
            return Some(ls);
        }
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let dkey = base >> DIR_SHIFT;
        let within = ((base >> CHUNK_SHIFT) as usize) & (PER_DIR - 1);
        let (ld, lt) = self.last_dir.get();
        let ti = if ld == dkey {
            lt as usize
        } else {
            let t = match st.dir.get(&dkey) {
                Some(&t) => t as usize,
                None => {
                    if !self.chunk_readable(base) {
                        return None;
                    }
                    st.tables.push(vec![NONE; PER_DIR].into_boxed_slice());
                    let t = st.tables.len() - 1;
                    st.dir.insert(dkey, t as u32);
                    t
                }
            };
            self.last_dir.set((dkey, t as u32));
            t
        };
        let s = st.tables[ti][within];
        if s != NONE {
            self.last.set((base, s));
            return Some(s);
        }
        if !self.chunk_readable(base) {
            return None;
        }
        let s = if st.slots.len() < self.max_chunks {
            let data = st.spare.pop().unwrap_or_else(Buf::allocate);
            st.slots.push(Slot { data, valid: 0, base });
            st.slots.len() - 1
        } else {
            // Evict the oldest chunk and reuse its buffer.
            let v = st.victim;
            st.victim = (v + 1) % st.slots.len();
            let old = st.slots[v].base;
            if let Some(&ot) = st.dir.get(&(old >> DIR_SHIFT)) {
                st.tables[ot as usize][((old >> CHUNK_SHIFT) as usize) & (PER_DIR - 1)] = NONE;
            }
            st.stats.evictions += 1;
            v
        };
        let mut data = std::mem::take(&mut st.slots[s].data);
        // Pages not read are never handed out (their valid bit is clear): no need to zero the buffer.
        let valid = self.load(base, data.bytes_mut(), &mut st.stats);
        st.slots[s] = Slot { data, valid, base };
        st.tables[ti][within] = s as u32;
        self.last.set((base, s as u32));
        Some(s as u32)
    }
}

impl<M: Memory> Memory for ChunkCache<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len() as u64;
        if len == 0 {
            return Ok(());
        }
        let efault = || io::Error::from_raw_os_error(libc::EFAULT);
        let end = addr.checked_add(len).ok_or_else(efault)?;
        // No mapping lies this high (and chunk arithmetic below stays far from overflow).
        if end > 1 << 57 {
            return Err(efault());
        }
        // Large reads (list item arrays, dict entry tables) go straight to the target.
        if len > CHUNK {
            if !self.readable(addr, len) {
                return Err(efault());
            }
            return self.inner.read(addr, buf);
        }
        let mut at = addr;
        while at < end {
            let base = at & !(CHUNK - 1);
            let n = ((base + CHUNK).min(end) - at) as usize;
            let s = self.slot(base).ok_or_else(efault)?;
            let st = self.state.borrow();
            let c = &st.slots[s as usize];
            let within = at - base;
            let first = within / PAGE;
            let last = (within + n as u64 - 1) / PAGE;
            for p in first..=last.min(PAGES_PER_CHUNK - 1) {
                if c.valid & (1 << p) == 0 {
                    return Err(efault());
                }
            }
            let o = (at - addr) as usize;
            buf[o..o + n].copy_from_slice(&c.data.bytes()[within as usize..within as usize + n]);
            at += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;
    use crate::memory::ReadExt;

    #[test]
    fn reads_within_ranges_only() {
        let mut f = FakeMemory::new();
        f.add(0x10000, (0..3 * CHUNK).map(|i| (i / 8) as u8).collect());
        let c = ChunkCache::new(&f, vec![(0x10000, 0x10000 + 3 * CHUNK)], 1 << 20);
        assert_eq!(c.u8_at(0x10000 + 80, "x").unwrap(), 10);
        let b = c.bytes_at(0x10000 + CHUNK - 4, 8, "across").unwrap();
        assert_eq!(b[0], ((CHUNK - 4) / 8) as u8);
        assert!(c.u64_at(0x10000 + 3 * CHUNK - 4, "end").is_err());
        assert!(c.u64_at(0x500, "unmapped").is_err());
        assert!(c.readable(0x10000, 16));
        assert!(!c.readable(0x10000 + 3 * CHUNK, 1));
    }

    #[test]
    fn evicts_oldest_and_stays_correct() {
        let mut f = FakeMemory::new();
        let n = 40 * CHUNK;
        f.add(0x100000, (0..n).map(|i| (i / 8 % 251) as u8).collect());
        // Room for 16 chunks only: every chunk is read twice over, evicting as it goes.
        let c = ChunkCache::new(&f, vec![(0x100000, 0x100000 + n)], 16 * CHUNK);
        for round in 0..2 {
            for k in 0..40 {
                let a = 0x100000 + k * CHUNK + 8 * (k + round);
                assert_eq!(c.u8_at(a, "x").unwrap(), ((a - 0x100000) / 8 % 251) as u8);
            }
        }
        assert!(c.stats().evictions > 0);
        assert!(c.u64_at(0x100000 + n, "past the end").is_err());
        assert!(c.u64_at(0x1_0000_0000, "other GiB").is_err());
        // Split in two: each half keeps its chunks and reads the rest again, correctly.
        let parts = c.split(2, |b| (b >> 16) as usize & 1);
        for (i, p) in parts.iter().enumerate() {
            for k in 0..40 {
                let a = 0x100000 + k * CHUNK + 8 * (k + i as u64);
                assert_eq!(p.u8_at(a, "x").unwrap(), ((a - 0x100000) / 8 % 251) as u8);
            }
        }
    }

    #[test]
    fn prefaulted_buffers_are_used_and_handed_on() {
        let mut f = FakeMemory::new();
        let n = 100 * CHUNK;
        f.add(0x100000, (0..n).map(|i| (i / 8 % 251) as u8).collect());
        let c = ChunkCache::new(&f, vec![(0x100000, 0x100000 + n)], 32 * CHUNK);
        // Asked for more than the budget: 32 buffers, all spare.
        c.prefault(1000 * CHUNK);
        assert_eq!(c.state.borrow().spare.len(), 32);
        for k in 0..20 {
            let a = 0x100000 + k * CHUNK + 8 * k;
            assert_eq!(c.u8_at(a, "x").unwrap(), ((a - 0x100000) / 8 % 251) as u8);
        }
        assert_eq!((c.state.borrow().slots.len(), c.state.borrow().spare.len()), (20, 12));
        // All 20 cached chunks belong to part 0, which has room for 16: the other 4 buffers and the 12
        // spares go to part 1 as spares (within each part's budget).
        let parts = c.split(2, |_| 0);
        let held = |p: &ChunkCache<&FakeMemory>| (p.state.borrow().slots.len(), p.state.borrow().spare.len());
        assert_eq!(held(&parts[0]), (16, 0));
        assert_eq!(held(&parts[1]), (0, 16));
        for (i, p) in parts.iter().enumerate() {
            for k in 0..100 {
                let a = 0x100000 + k * CHUNK + 8 * (k + i as u64) % 4096;
                assert_eq!(p.u8_at(a, "x").unwrap(), ((a - 0x100000) / 8 % 251) as u8);
            }
        }
        c.absorb(parts);
        let st = c.state.borrow();
        assert_eq!(st.slots.len() + st.spare.len(), 32);
        drop(st);
        assert!(c.u64_at(0x100000 + n, "past the end").is_err());
        assert_eq!(c.u8_at(0x100000 + 99 * CHUNK, "x").unwrap(), ((99 * CHUNK) / 8 % 251) as u8);
    }
}
