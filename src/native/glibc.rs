//! glibc malloc (x86_64): is an address the start of a live chunk's user data, and how large is it?
//!
//! A chunk starts 16 bytes before the pointer `malloc` returns: `prev_size` at `p-16` (meaningful only
//! when the previous chunk is free), `size` at `p-8` with three flag bits (`0x1` the previous chunk is in
//! use, `0x2` mmapped, `0x4` not in the main arena). Chunks are 16-aligned and at least 32 bytes. The
//! checks here are the cheap ones, a few reads each, taken from the header alone:
//! - main-arena chunks lie inside the brk heap (`[heap]` in the maps) and the next chunk's size word
//!   says this one is in use;
//! - chunks of other arenas lie inside a 64 MiB-aligned heap whose `heap_info` bounds them, likewise;
//! - mmapped chunks start a mapping (`chunk - prev_size` page-aligned) whose length is a whole number of
//!   pages (`prev_size + size + 16` on glibc 2.43, `prev_size + size` before).
//!
//! They cannot prove that a chunk boundary is real (16-aligned user data that holds a plausible size word
//! passes), nor tell a chunk in a tcache or fastbin from one in use: callers validate what they find in a
//! chunk on its own terms (an object must still be an object).

use crate::memory::maps::Maps;
use crate::memory::{le_u64, Memory, ReadExt};

const PREV_INUSE: u64 = 0x1;
const IS_MMAPPED: u64 = 0x2;
const NON_MAIN_ARENA: u64 = 0x4;
const MIN_CHUNK: u64 = 32;
/// Largest chunk believed (1 TiB).
const MAX_CHUNK: u64 = 1 << 40;
/// `HEAP_MAX_SIZE` on 64-bit: the alignment of a non-main arena's heaps.
const HEAP_MAX: u64 = 64 << 20;
/// `sizeof(heap_info)`: the first chunk of a non-main heap lies at least this far into it.
const HEAP_INFO: u64 = 0x30;
const PAGE: u64 = 4096;

/// A live chunk, as far as its header tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The pointer `malloc` returned.
    pub user: u64,
    /// Bytes from `user` that belong to the chunk (what `malloc_usable_size` would say, or a little less).
    pub usable: u64,
}

/// What is known of the target's glibc heap.
#[derive(Clone, Debug, Default)]
pub struct Glibc {
    /// The brk heap (`[heap]`), where the main arena's chunks lie.
    main_heap: Option<(u64, u64)>,
}

impl Glibc {
    pub fn new(maps: &Maps) -> Glibc {
        let main_heap = maps.entries.iter().find(|m| m.path.as_deref() == Some("[heap]")).map(|m| (m.start, m.end));
        Glibc { main_heap }
    }

    /// For tests: a main heap at these bounds.
    pub fn with_main_heap(start: u64, end: u64) -> Glibc {
        Glibc { main_heap: Some((start, end)) }
    }

    /// The live chunk whose user data starts at `p`, if the header checks pass.
    pub fn chunk<M: Memory + ?Sized>(&self, mem: &M, p: u64) -> Option<Chunk> {
        if !p.is_multiple_of(16) || p < PAGE {
            return None;
        }
        let mut h = [0u8; 16];
        mem.read(p - 16, &mut h).ok()?;
        let prev_size = le_u64(&h, 0)?;
        let word = le_u64(&h, 8)?;
        let cs = word & !7;
        if !(MIN_CHUNK..MAX_CHUNK).contains(&cs) || !cs.is_multiple_of(16) {
            return None;
        }
        let chunk = p - 16;
        if word & IS_MMAPPED != 0 {
            // An mmapped chunk has neither of the other bits, starts its mapping (after `prev_size` bytes
            // of alignment padding) and ends where the mapping ends.
            if word & (PREV_INUSE | NON_MAIN_ARENA) != 0 || prev_size >= PAGE * 1024 {
                return None;
            }
            if !chunk.checked_sub(prev_size)?.is_multiple_of(PAGE) {
                return None;
            }
            let usable = if (prev_size + cs + 16).is_multiple_of(PAGE) {
                cs - 8
            } else if (prev_size + cs).is_multiple_of(PAGE) {
                cs - 16
            } else {
                return None;
            };
            // The whole chunk must be mapped.
            mem.read(chunk + cs - 8, &mut [0u8; 8]).ok()?;
            return Some(Chunk { user: p, usable });
        }
        let end = chunk.checked_add(cs)?;
        if word & NON_MAIN_ARENA != 0 {
            let heap = chunk & !(HEAP_MAX - 1);
            let mut info = [0u8; 24];
            mem.read(heap, &mut info).ok()?;
            let ar_ptr = le_u64(&info, 0)?;
            let size = le_u64(&info, 16)?;
            if ar_ptr == 0
                || !ar_ptr.is_multiple_of(8)
                || size > HEAP_MAX
                || chunk < heap + HEAP_INFO
                || end > heap + size
            {
                return None;
            }
        } else {
            let (lo, hi) = self.main_heap?;
            if chunk < lo || end > hi {
                return None;
            }
        }
        // The next chunk's size word: plausible, and saying that this chunk is in use.
        let next = mem.u64_at(end + 8, "next chunk's size").ok()?;
        let next_size = next & !7;
        if next & PREV_INUSE == 0 || next_size < 16 || !next_size.is_multiple_of(16) {
            return None;
        }
        Some(Chunk { user: p, usable: cs - 8 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;

    /// A brk heap at 0x10000 with chunks of these sizes (all in use), then a top chunk.
    fn heap(sizes: &[u64]) -> (FakeMemory, Vec<u64>) {
        let mut f = FakeMemory::new();
        f.add(0x10000, vec![0; 0x4000]);
        let mut at = 0x10000u64;
        let mut users = Vec::new();
        for &cs in sizes {
            f.put_u64(at + 8, cs | PREV_INUSE);
            users.push(at + 16);
            at += cs;
        }
        f.put_u64(at + 8, (0x14000 - at) | PREV_INUSE);
        (f, users)
    }

    #[test]
    fn chunks_of_the_main_heap() {
        let (f, users) = heap(&[32, 544, 48, 1040]);
        let g = Glibc::with_main_heap(0x10000, 0x14000);
        assert_eq!(g.chunk(&f, users[1]), Some(Chunk { user: users[1], usable: 536 }));
        for &u in &users {
            assert!(g.chunk(&f, u).is_some(), "{u:#x}");
        }
        // Inside a chunk, misaligned, outside the heap.
        assert_eq!(g.chunk(&f, users[1] + 16), None);
        assert_eq!(g.chunk(&f, users[1] + 8), None);
        assert_eq!(Glibc::with_main_heap(0x20000, 0x30000).chunk(&f, users[1]), None);
    }

    #[test]
    fn a_free_chunk_is_not_live() {
        let (mut f, users) = heap(&[32, 544, 48]);
        // The chunk after the 544-byte one says its predecessor is free.
        let next = users[1] - 16 + 544;
        f.put_u64(next + 8, 48);
        let g = Glibc::with_main_heap(0x10000, 0x14000);
        assert_eq!(g.chunk(&f, users[1]), None);
        assert!(g.chunk(&f, users[0]).is_some());
    }

    #[test]
    fn mmapped_chunks() {
        let mut f = FakeMemory::new();
        let map = 0x7f00_0000_0000u64;
        f.add(map, vec![0; 3 * PAGE as usize]);
        // glibc 2.43: size = mapping length - 16.
        f.put_u64(map + 8, (3 * PAGE - 16) | IS_MMAPPED);
        let g = Glibc::default();
        assert_eq!(g.chunk(&f, map + 16), Some(Chunk { user: map + 16, usable: 3 * PAGE - 24 }));
        // Older glibc: size = mapping length.
        f.put_u64(map + 8, (3 * PAGE) | IS_MMAPPED);
        assert_eq!(g.chunk(&f, map + 16), Some(Chunk { user: map + 16, usable: 3 * PAGE - 16 }));
        // Not a whole number of pages.
        f.put_u64(map + 8, (3 * PAGE - 48) | IS_MMAPPED);
        assert_eq!(g.chunk(&f, map + 16), None);
    }
}
