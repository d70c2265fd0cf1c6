//! A read cache for the full-heap walk: target memory is copied in 64 KiB chunks (one
//! `process_vm_readv` each, clipped to the readable mappings of `/proc/PID/maps`), so that walking
//! millions of small objects costs a few thousand system calls. Reads outside readable mappings fail
//! at once without touching the target, which makes probing candidate pointers cheap. Bounded: past
//! `max_bytes` the cache starts over.

use std::cell::RefCell;
use std::io;

use super::fasthash::AddrMap;
use crate::process::{Maps, Memory};

pub const CHUNK: u64 = 64 * 1024;
const PAGE: u64 = 4096;
const PAGES_PER_CHUNK: u64 = CHUNK / PAGE;

struct Chunk {
    data: Box<[u8]>,
    /// Bit i: page i of the chunk was read.
    valid: u16,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkStats {
    pub chunks_read: u64,
    pub bytes_read: u64,
    pub failed: u64,
    pub evictions: u64,
}

pub struct ChunkCache<M: Memory> {
    inner: M,
    /// Readable address ranges, sorted and merged.
    ranges: Vec<(u64, u64)>,
    chunks: RefCell<AddrMap<Chunk>>,
    max_chunks: usize,
    stats: RefCell<ChunkStats>,
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
            chunks: RefCell::new(AddrMap::default()),
            max_chunks: (max_bytes / CHUNK).max(16) as usize,
            stats: RefCell::new(ChunkStats::default()),
        }
    }

    pub fn stats(&self) -> ChunkStats {
        *self.stats.borrow()
    }

    /// Whether [addr, addr+len) lies inside one readable range.
    pub fn readable(&self, addr: u64, len: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 <= addr);
        match self.ranges.get(i) {
            Some(&(s, e)) => s <= addr && addr.checked_add(len).is_some_and(|end| end <= e),
            None => false,
        }
    }

    fn load(&self, base: u64) -> Chunk {
        let mut data = vec![0u8; CHUNK as usize].into_boxed_slice();
        let mut valid = 0u16;
        let end = base + CHUNK;
        let mut i = self.ranges.partition_point(|r| r.1 <= base);
        let mut stats = self.stats.borrow_mut();
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
        Chunk { data, valid }
    }
}

impl<M: Memory> Memory for ChunkCache<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len() as u64;
        if len == 0 {
            return Ok(());
        }
        if !self.readable(addr, len) {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        // Large reads (list item arrays, dict entry tables) go straight to the target.
        if len > CHUNK {
            return self.inner.read(addr, buf);
        }
        let end = addr + len;
        let mut chunks = self.chunks.borrow_mut();
        let mut at = addr;
        while at < end {
            let base = at & !(CHUNK - 1);
            let n = ((base + CHUNK).min(end) - at) as usize;
            if !chunks.contains_key(&base) {
                if chunks.len() >= self.max_chunks {
                    chunks.clear();
                    self.stats.borrow_mut().evictions += 1;
                }
                let c = self.load(base);
                chunks.insert(base, c);
            }
            let c = &chunks[&base];
            let within = at - base;
            let first = within / PAGE;
            let last = (within + n as u64 - 1) / PAGE;
            for p in first..=last.min(PAGES_PER_CHUNK - 1) {
                if c.valid & (1 << p) == 0 {
                    return Err(io::Error::from_raw_os_error(libc::EFAULT));
                }
            }
            let o = (at - addr) as usize;
            buf[o..o + n].copy_from_slice(&c.data[within as usize..within as usize + n]);
            at += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::memory::FakeMemory;
    use crate::process::ReadExt;

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
}
