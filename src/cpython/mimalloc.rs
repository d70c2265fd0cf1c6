//! The mimalloc heaps of a free-threaded CPython, read from outside: each thread state's heaps, their
//! pages, and which blocks of a page are allocated; the interpreter's abandoned segments (pages of
//! threads that exited). There is no allocation bitmap in memory: a block is allocated when it is on
//! none of its page's free lists (`free`, `local_free`, `xthread_free`) nor on its heap's
//! `thread_delayed_free` list. Every list is bounded by the page's capacity and every link checked
//! (inside the page, on a block boundary); what does not hold is an error when the target is stopped
//! (`strict`), else counted.

use python_bindings::{Layout, MimallocLayout};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::memory::fasthash::AddrSet;
use crate::memory::{le_u32, le_u64, Memory, ReadExt, MAX_USER_ADDR};

/// Most thread states, pages per heap and abandoned segments followed.
pub const MAX_THREADS: usize = 1 << 16;
const MAX_PAGES: usize = 1 << 22;
const MAX_SEGMENTS: usize = 1 << 20;
/// Most blocks on a heap's delayed-free list.
const MAX_DELAYED: usize = 1 << 26;
/// Block size from which a page is huge (one block, the size of the page).
const HUGE_BLOCK: u64 = 1 << 31;

/// One page of a heap, as read.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageInfo {
    pub addr: u64,
    pub tag: u8,
    /// Address of block 0, block size, blocks initialised.
    pub start: u64,
    pub bsize: u64,
    pub capacity: u64,
    /// Blocks that fit in the page.
    pub reserved: u64,
    pub used: u64,
    free: u64,
    local_free: u64,
    thread_free: u64,
}

impl PageInfo {
    /// The bytes the page's initialised blocks span.
    pub fn span(&self) -> u64 {
        self.capacity * self.bsize
    }

    fn block_index(&self, b: u64) -> Option<u64> {
        let off = b.checked_sub(self.start)?;
        (off.is_multiple_of(self.bsize) && off / self.bsize < self.capacity).then_some(off / self.bsize)
    }
}

/// What a read of the heaps found besides the blocks (for `stat` and the report).
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapCounts {
    pub threads: u64,
    pub heaps: u64,
    pub pages: u64,
    pub abandoned_segments: u64,
    pub abandoned_pages: u64,
    /// Allocated blocks and their bytes (block sizes).
    pub blocks: u64,
    pub block_bytes: u64,
    /// Pages whose lists did not add up (only without `strict`).
    pub inconsistent_pages: u64,
}

fn mi(l: &Layout) -> Result<&MimallocLayout> {
    l.mimalloc.as_ref().ok_or_else(|| Error::Other("not a free-threaded build: no mimalloc heaps".into()))
}

fn corrupt(strict: bool, counts: &mut HeapCounts, what: String) -> Result<()> {
    if strict {
        return Err(Error::Corrupt(what));
    }
    log::debug!("{what}");
    counts.inconsistent_pages += 1;
    Ok(())
}

/// The thread states of the interpreter at `interp` (`threads.head`, then `next`), bounded.
pub fn thread_states<M: Memory + ?Sized>(mem: &M, l: &Layout, interp: u64) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let mut seen = AddrSet::default();
    let mut ts = mem.u64_at(interp + l.interp.threads_head, "threads.head")?;
    while ts != 0 {
        if out.len() >= MAX_THREADS || !seen.insert(ts) {
            return Err(Error::Corrupt("thread state list does not end".into()));
        }
        crate::memory::check_ptr(ts, "thread state")?;
        out.push(ts);
        ts = mem.u64_at(ts + l.tstate.next, "tstate->next")?;
    }
    Ok(out)
}

/// The heaps of the thread state `ts` (`heaps[i]` for every index), None when its mimalloc state was
/// never initialised. Each heap must carry its own index as its tag and the thread's id: that checks
/// the offsets memspy cannot take from the target's debug tables.
pub fn thread_heaps<M: Memory + ?Sized>(mem: &M, l: &Layout, ts: u64) -> Result<Option<Vec<u64>>> {
    let m = mi(l)?;
    let tid = mem.u64_at(ts + m.tstate_thread_id, "tstate->thread_id")?;
    // `_PyThreadStateImpl.mimalloc` is in no debug table and moves within a patch series (3.13.12t:
    // 344, 3.13.15t: 352): the table's offset first, then its neighbours, each checked.
    let mut first_err = None;
    for delta in std::iter::once(0i64).chain((1..=MIMALLOC_SCAN / 8).flat_map(|k| [8 * k, -8 * k])) {
        let base = (ts + m.tstate_mimalloc).wrapping_add_signed(delta);
        match heaps_at(mem, m, base, tid) {
            Ok(Some(h)) if delta != 0 => {
                log::debug!("thread state {ts:#x}: mimalloc state at +{:#x}", base - ts);
                return Ok(Some(h));
            }
            Ok(h) if delta == 0 => return Ok(h),
            Ok(_) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(Error::Other(format!(
        "thread state {ts:#x}: no mimalloc heaps near +{:#x} ({}): the mimalloc offsets of this build are \
         not memspy's",
        m.tstate_mimalloc,
        first_err.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// How far from the table's offset [`thread_heaps`] looks (bytes, each way).
const MIMALLOC_SCAN: i64 = 64;

/// The heaps of a `_mimalloc_thread_state` at `base` when it is one of thread `tid` (None: initialised
/// is 0 there, which a wrong offset can read too: then only the table's offset is believed).
fn heaps_at<M: Memory + ?Sized>(mem: &M, m: &MimallocLayout, base: u64, tid: u64) -> Result<Option<Vec<u64>>> {
    let mut heaps = Vec::new();
    for i in 0..m.thread.heap_count {
        let h = base + m.thread.heaps + i * m.heap.size;
        let tag = mem.bytes_at(h + m.heap.tag, 1, "mi_heap_t.tag")?[0] as u64;
        let owner = mem.u64_at(h + m.heap.thread_id, "mi_heap_t.thread_id")?;
        if tag != i || owner != tid {
            if mem.u32_at(base + m.thread.initialized, "_mimalloc_thread_state.initialized")? == 0 {
                return Ok(None);
            }
            return Err(Error::Corrupt(format!("heap {i} at {h:#x}: tag {tag}, thread id {owner:#x}")));
        }
        heaps.push(h);
    }
    Ok(Some(heaps))
}

/// Every page of heap `heap` (its 75 queues, the full-page queue included), bounded; checked against
/// the heap's `page_count`.
pub fn heap_pages<M: Memory + ?Sized>(mem: &M, l: &Layout, heap: u64, strict: bool) -> Result<Vec<u64>> {
    let m = mi(l)?;
    let queues = mem.bytes_at(heap + m.heap.pages, (m.heap.queues * m.heap.queue_size) as usize, "mi_heap_t.pages")?;
    let mut seen = AddrSet::default();
    let mut out = Vec::new();
    for q in 0..m.heap.queues {
        let mut p = le_u64(&queues, q * m.heap.queue_size).unwrap_or(0);
        while p != 0 {
            if out.len() >= MAX_PAGES || !seen.insert(p) || p >= MAX_USER_ADDR || !p.is_multiple_of(8) {
                return Err(Error::Corrupt(format!("heap {heap:#x}: page queue {q} does not end")));
            }
            out.push(p);
            p = mem.u64_at(p + m.page.next, "mi_page_t.next")?;
        }
    }
    let count = mem.u64_at(heap + m.heap.page_count, "mi_heap_t.page_count")?;
    if strict && count != out.len() as u64 {
        return Err(Error::Corrupt(format!("heap {heap:#x}: {} pages in its queues, page_count {count}", out.len())));
    }
    Ok(out)
}

/// Reads the page descriptor at `page`: where its blocks are, how many, its lists.
pub fn page_info<M: Memory + ?Sized>(mem: &M, l: &Layout, page: u64) -> Result<PageInfo> {
    let m = mi(l)?;
    let pg = &m.page;
    let b = mem.bytes_at(page, pg.size as usize, "mi_page_t")?;
    let u16_at = |at: u64| b.get(at as usize..at as usize + 2).map(|x| u16::from_le_bytes([x[0], x[1]]) as u64);
    let bad = || Error::Corrupt(format!("page {page:#x}: descriptor"));
    let segment = page & !(m.segment.segment_size - 1);
    let slices = segment + m.segment.slices;
    if page < slices || !(page - slices).is_multiple_of(pg.size) {
        return Err(Error::Corrupt(format!("page {page:#x} is not a slice of segment {segment:#x}")));
    }
    let idx = (page - slices) / pg.size;
    let xbsize = le_u32(&b, pg.xblock_size).ok_or_else(bad)? as u64;
    let slice_count = le_u32(&b, pg.slice_count).ok_or_else(bad)? as u64;
    let capacity = u16_at(pg.capacity).ok_or_else(bad)?;
    let (bsize, capacity) =
        if xbsize >= HUGE_BLOCK { (slice_count * m.segment.slice_size, capacity.min(1)) } else { (xbsize, capacity) };
    if bsize == 0 || idx * m.segment.slice_size + capacity * bsize > m.segment.segment_size {
        return Err(Error::Corrupt(format!("page {page:#x}: {capacity} blocks of {bsize} bytes do not fit")));
    }
    Ok(PageInfo {
        addr: page,
        tag: (b[pg.flags_byte as usize] >> pg.tag_shift) & 0xf,
        start: pg.start(&m.segment, segment, idx, bsize),
        bsize,
        capacity,
        reserved: u16_at(pg.reserved).ok_or_else(bad)?.max(capacity),
        used: le_u32(&b, pg.used).ok_or_else(bad)? as u64,
        free: le_u64(&b, pg.free).ok_or_else(bad)?,
        local_free: le_u64(&b, pg.local_free).ok_or_else(bad)?,
        thread_free: le_u64(&b, pg.xthread_free).ok_or_else(bad)? & !3,
    })
}

/// The blocks on heap `heap`'s `thread_delayed_free` list (freed by other threads, not yet collected).
pub fn delayed_free<M: Memory + ?Sized>(mem: &M, l: &Layout, heap: u64) -> Result<AddrSet> {
    let m = mi(l)?;
    let mut out = AddrSet::default();
    let mut b = mem.u64_at(heap + m.heap.thread_delayed_free, "mi_heap_t.thread_delayed_free")?;
    while b != 0 {
        if out.len() >= MAX_DELAYED || !out.insert(b) || b >= MAX_USER_ADDR {
            return Err(Error::Corrupt(format!("heap {heap:#x}: delayed-free list does not end")));
        }
        b = mem.u64_at(b, "delayed-free block")?;
    }
    Ok(out)
}

/// Marks the blocks of one free list of `page` in `free` (one flag per block), bounded by the capacity.
fn mark_list<M: Memory + ?Sized>(mem: &M, page: &PageInfo, head: u64, free: &mut [bool], what: &str) -> Result<u64> {
    let mut n = 0;
    let mut b = head;
    while b != 0 {
        let i = page.block_index(b).ok_or_else(|| {
            Error::Corrupt(format!("page {:#x}: {what} link {b:#x} is not one of its blocks", page.addr))
        })?;
        if free[i as usize] {
            return Err(Error::Corrupt(format!("page {:#x}: {what} list loops at {b:#x}", page.addr)));
        }
        free[i as usize] = true;
        n += 1;
        b = mem.u64_at(b, "free block")?;
    }
    Ok(n)
}

/// The allocated blocks of `page` (addresses), given the delayed-free blocks of its heap. With
/// `strict`, lists that do not add up to the page's `used` are an error (a thread stopped between
/// unlinking a block and counting it: the read is tried again); else that is counted and the free lists,
/// which decide, are taken as they are. A list that leaves the page is an error, or skips the page.
pub fn live_blocks<M: Memory + ?Sized>(
    mem: &M,
    page: &PageInfo,
    delayed: &AddrSet,
    strict: bool,
    counts: &mut HeapCounts,
) -> Result<Vec<u64>> {
    if page.used == 0 || page.capacity == 0 {
        return Ok(Vec::new());
    }
    let mut free = vec![false; page.capacity as usize];
    let lists = (|| {
        let a = mark_list(mem, page, page.free, &mut free, "free")?;
        let b = mark_list(mem, page, page.local_free, &mut free, "local_free")?;
        mark_list(mem, page, page.thread_free, &mut free, "xthread_free")?;
        Ok::<_, Error>(a + b)
    })();
    let listed = match lists {
        Ok(n) => n,
        Err(e) => {
            corrupt(strict, counts, e.to_string())?;
            return Ok(Vec::new());
        }
    };
    // mimalloc keeps used = capacity - |free| - |local_free| (thread-freed blocks count as used until
    // their owner collects them).
    if page.used + listed != page.capacity {
        corrupt(
            strict,
            counts,
            format!("page {:#x}: used {} + {listed} free != capacity {}", page.addr, page.used, page.capacity),
        )?;
    }
    let out: Vec<u64> = (0..page.capacity)
        .filter(|i| !free[*i as usize])
        .map(|i| page.start + i * page.bsize)
        .filter(|b| !delayed.contains(b))
        .collect();
    counts.blocks += out.len() as u64;
    counts.block_bytes += out.len() as u64 * page.bsize;
    Ok(out)
}

/// The segments of the interpreter's abandoned pool (`abandoned`, then `abandoned_visited`), bounded.
pub fn abandoned_segments<M: Memory + ?Sized>(mem: &M, l: &Layout, interp: u64) -> Result<Vec<u64>> {
    let m = mi(l)?;
    let pool = interp + m.interp_mimalloc;
    let align = m.segment.segment_size;
    let mut out = Vec::new();
    let mut seen = AddrSet::default();
    let heads = [
        mem.u64_at(pool + m.pool.abandoned, "abandoned_pool.abandoned")? & !(align - 1),
        mem.u64_at(pool + m.pool.visited, "abandoned_pool.abandoned_visited")?,
    ];
    for head in heads {
        let mut s = head;
        while s != 0 {
            if out.len() >= MAX_SEGMENTS || !seen.insert(s) || !s.is_multiple_of(align) || s >= MAX_USER_ADDR {
                return Err(Error::Corrupt(format!("abandoned segment list broken at {s:#x}")));
            }
            out.push(s);
            s = mem.u64_at(s + m.segment.abandoned_next, "mi_segment_t.abandoned_next")?;
        }
    }
    Ok(out)
}

/// The pages in use of an abandoned segment: slice by slice after the segment's own info slices.
pub fn segment_pages<M: Memory + ?Sized>(mem: &M, l: &Layout, segment: u64) -> Result<Vec<u64>> {
    let m = mi(l)?;
    let pg = &m.page;
    let entries = mem.u64_at(segment + m.segment.slice_entries, "mi_segment_t.slice_entries")?;
    let max = m.segment.segment_size / m.segment.slice_size;
    if entries == 0 || entries > max {
        return Err(Error::Corrupt(format!("segment {segment:#x}: {entries} slice entries")));
    }
    let slices = segment + m.segment.slices;
    let all = mem.bytes_at(slices, (entries * pg.size) as usize, "mi_segment_t.slices")?;
    let field = |i: u64, at: u64| le_u32(&all, i * pg.size + at).unwrap_or(0) as u64;
    let mut out = Vec::new();
    let mut i = field(0, pg.slice_count).max(1);
    while i < entries {
        let count = field(i, pg.slice_count).max(1);
        if field(i, pg.xblock_size) > 0 {
            out.push(slices + i * pg.size);
        }
        i += count;
    }
    Ok(out)
}

/// A page as [`Segments`] keeps it: its tag, block 0, block size, and which blocks are allocated.
type LivePage = (u8, u64, u64, Vec<bool>);

/// Which addresses are allocated mimalloc blocks, for the checks of conservative candidates: the
/// segments of every thread's heaps (all four kinds) and of the abandoned pool, known from the start of
/// the walk; each page's free blocks decoded when first asked (cached, per walking thread).
#[derive(Clone, Debug, Default)]
pub struct Segments {
    known: AddrSet,
    /// Per page: what [`Segments::decode`] made of it (None: not a page in use).
    pages: crate::memory::fasthash::AddrMap<Option<LivePage>>,
    /// Per heap: its delayed-free blocks.
    delayed: crate::memory::fasthash::AddrMap<AddrSet>,
}

impl Segments {
    /// The segments of every heap of every thread state of `interps` and of their abandoned pools.
    pub fn read<M: Memory + ?Sized>(mem: &M, l: &Layout, interps: &[u64]) -> Result<Segments> {
        let m = mi(l)?;
        let mut s = Segments::default();
        let align = !(m.segment.segment_size - 1);
        for &ip in interps {
            for ts in thread_states(mem, l, ip)? {
                for heap in thread_heaps(mem, l, ts)?.unwrap_or_default() {
                    for p in heap_pages(mem, l, heap, false)? {
                        s.known.insert(p & align);
                    }
                }
            }
            s.known.extend(abandoned_segments(mem, l, ip)?);
        }
        Ok(s)
    }

    /// Whether `addr` is the start of an allocated block of a heap whose index is in `tags`, and its size
    /// (as pymalloc's `Block`): objects are in the object heaps (1 non-GC, 2 GC, 3 GC with pre-header),
    /// buffers in heap 0, so a buffer that happens to look like an object is refused.
    pub fn block<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        l: &Layout,
        addr: u64,
        tags: &[u8],
    ) -> crate::cpython::pymalloc::Block {
        use crate::cpython::pymalloc::Block;
        let Some(m) = l.mimalloc.as_ref() else { return Block::Outside };
        let segment = addr & !(m.segment.segment_size - 1);
        if !self.known.contains(&segment) {
            return Block::Outside;
        }
        let slice = segment + m.segment.slices + (addr - segment) / m.segment.slice_size * m.page.size;
        // A page's other slices point back to its first (`slice_offset`, in bytes).
        let Ok(back) = mem.u32_at(slice + 4, "mi_slice_t.slice_offset") else { return Block::NotInUse };
        let page = slice - back as u64;
        if !self.pages.contains_key(&page) {
            let decoded = self.decode(mem, l, m, page);
            self.pages.insert(page, decoded);
        }
        match self.pages.get(&page) {
            Some(Some((tag, start, bsize, live))) => {
                if !tags.contains(tag) {
                    return Block::NotInUse;
                }
                let Some(off) = addr.checked_sub(*start) else { return Block::NotInUse };
                let i = off / bsize;
                if off % bsize == 0 && live.get(i as usize) == Some(&true) {
                    Block::InUse(*bsize)
                } else {
                    Block::NotInUse
                }
            }
            _ => Block::NotInUse,
        }
    }

    fn decode<M: Memory + ?Sized>(&mut self, mem: &M, l: &Layout, m: &MimallocLayout, page: u64) -> Option<LivePage> {
        if mem.u32_at(page + m.page.xblock_size, "mi_page_t.xblock_size").ok()? == 0 {
            return None;
        }
        let info = page_info(mem, l, page).ok()?;
        let heap = mem.u64_at(page + m.page.xheap, "mi_page_t.xheap").ok()?;
        if heap != 0 && !self.delayed.contains_key(&heap) {
            let d = delayed_free(mem, l, heap).unwrap_or_default();
            self.delayed.insert(heap, d);
        }
        let none = AddrSet::default();
        let delayed = self.delayed.get(&heap).unwrap_or(&none);
        let mut counts = HeapCounts::default();
        let blocks = live_blocks(mem, &info, delayed, false, &mut counts).ok()?;
        let mut live = vec![false; info.capacity as usize];
        for b in blocks {
            live[((b - info.start) / info.bsize) as usize] = true;
        }
        Some((info.tag, info.start, info.bsize, live))
    }
}

/// The names of the four heaps of a thread state, by index (= page tag).
pub const HEAP_NAMES: [&str; 4] = ["mem (PyMem_Malloc buffers)", "objects (not GC)", "gc", "gc with pre-header"];

/// One kind of heap (all threads and the abandoned segments together).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HeapUsage {
    pub heap: String,
    pub pages: u64,
    /// Allocated blocks and the bytes of their blocks.
    pub blocks: u64,
    pub block_bytes: u64,
    /// Bytes the pages' blocks span (`reserved` × block size): what the pages hold, used or not.
    pub page_bytes: u64,
}

/// mimalloc's view of a free-threaded process (`memspy stat`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MimallocUsage {
    /// Thread states with initialised heaps.
    pub threads: u64,
    /// Segments holding the threads' pages, and those of the abandoned pool (threads that exited).
    pub segments: u64,
    pub abandoned_segments: u64,
    pub abandoned_pages: u64,
    /// By heap index (0 mem, 1 objects, 2 gc, 3 gc with pre-header).
    pub heaps: Vec<HeapUsage>,
    /// Pages whose free lists did not add up (skipped).
    pub inconsistent_pages: u64,
}

/// Counts the pages and allocated blocks of every heap of every thread state of `interps` and of their
/// abandoned segments.
pub fn usage<M: Memory + ?Sized>(mem: &M, l: &Layout, interps: &[u64]) -> Result<MimallocUsage> {
    let m = mi(l)?;
    let mut u = MimallocUsage {
        heaps: HEAP_NAMES.iter().map(|n| HeapUsage { heap: n.to_string(), ..Default::default() }).collect(),
        ..Default::default()
    };
    let mut segments = AddrSet::default();
    let mut counts = HeapCounts::default();
    let add = |u: &mut MimallocUsage, page: &PageInfo, delayed: &AddrSet, counts: &mut HeapCounts| -> Result<()> {
        let n = live_blocks(mem, page, delayed, false, counts)?.len() as u64;
        if let Some(h) = u.heaps.get_mut(page.tag as usize) {
            h.pages += 1;
            h.blocks += n;
            h.block_bytes += n * page.bsize;
            h.page_bytes += page.reserved * page.bsize;
        }
        Ok(())
    };
    for &ip in interps {
        for ts in thread_states(mem, l, ip)? {
            let Some(heaps) = thread_heaps(mem, l, ts)? else { continue };
            u.threads += 1;
            for heap in heaps {
                let delayed = delayed_free(mem, l, heap)?;
                for p in heap_pages(mem, l, heap, false)? {
                    segments.insert(p & !(m.segment.segment_size - 1));
                    add(&mut u, &page_info(mem, l, p)?, &delayed, &mut counts)?;
                }
            }
        }
        let none = AddrSet::default();
        for seg in abandoned_segments(mem, l, ip)? {
            u.abandoned_segments += 1;
            for p in segment_pages(mem, l, seg)? {
                u.abandoned_pages += 1;
                add(&mut u, &page_info(mem, l, p)?, &none, &mut counts)?;
            }
        }
    }
    u.segments = segments.len() as u64;
    u.inconsistent_pages = counts.inconsistent_pages;
    Ok(u)
}
