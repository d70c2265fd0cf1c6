//! The set of objects a full-heap walk has already seen: one bit per 8-byte word of address space, in
//! 1 MiB blocks allocated on first use. A heap of N MiB costs at most N × 16 KiB (1/64 of the heap),
//! however many objects it holds. Blocks are found without hashing on the hot path: a table per GiB
//! of address space (1,024 block numbers), the GiB of the last lookup remembered, and a hash probe
//! only when the GiB changes.

use std::cell::Cell;

use crate::memory::fasthash::AddrMap;

/// Address space covered by one block of bits.
const BLOCK_SHIFT: u32 = 20;
const WORDS_PER_BLOCK: usize = (1 << BLOCK_SHIFT) / 8 / 64;
/// Address space covered by one table of blocks.
const DIR_SHIFT: u32 = 30;
const PER_DIR: usize = 1 << (DIR_SHIFT - BLOCK_SHIFT);

#[derive(Default)]
pub struct Visited {
    /// GiB number (address >> 30) → index into `tables`.
    dirs: AddrMap<u32>,
    /// Per GiB: block number within it → index into `slab` plus 1 (0: none).
    tables: Vec<Box<[u32]>>,
    slab: Vec<Box<[u64]>>,
    /// The block number (address >> 20) of each block of `slab`.
    keys: Vec<u64>,
    count: u64,
    /// (GiB number, table index) of the last lookup.
    last_dir: Cell<Option<(u64, u32)>>,
    /// Zeroed blocks allocated (and faulted in) ahead, used before new ones are allocated.
    spare: Vec<Box<[u64]>>,
}

impl Visited {
    pub fn new() -> Self {
        Visited::default()
    }

    /// The table of the GiB of `addr`, if any.
    #[inline]
    fn table(&self, addr: u64) -> Option<usize> {
        let dkey = addr >> DIR_SHIFT;
        if let Some((k, t)) = self.last_dir.get() {
            if k == dkey {
                return Some(t as usize);
            }
        }
        let t = *self.dirs.get(&dkey)?;
        self.last_dir.set(Some((dkey, t)));
        Some(t as usize)
    }

    /// A set with `blocks` zeroed blocks allocated and faulted in now (call before the target is
    /// stopped: writing to fresh memory costs the kernel a page fault per page).
    pub fn with_spare(blocks: usize) -> Self {
        let spare = (0..blocks)
            .map(|_| {
                let mut b = vec![0u64; WORDS_PER_BLOCK].into_boxed_slice();
                crate::memory::fault_in(&mut b);
                b
            })
            .collect();
        Visited { spare, ..Visited::default() }
    }

    fn block(&mut self, addr: u64) -> &mut [u64] {
        self.block_or(addr, || None)
    }

    /// The block of `addr`, made from `new` when there is none (when it gives none: a spare block,
    /// else a new one).
    fn block_or(&mut self, addr: u64, new: impl FnOnce() -> Option<Box<[u64]>>) -> &mut [u64] {
        let t = match self.table(addr) {
            Some(t) => t,
            None => {
                self.tables.push(vec![0u32; PER_DIR].into_boxed_slice());
                let t = self.tables.len() - 1;
                self.dirs.insert(addr >> DIR_SHIFT, t as u32);
                self.last_dir.set(Some((addr >> DIR_SHIFT, t as u32)));
                t
            }
        };
        let within = ((addr >> BLOCK_SHIFT) as usize) & (PER_DIR - 1);
        let mut s = self.tables[t][within] as usize;
        if s == 0 {
            let b =
                new().or_else(|| self.spare.pop()).unwrap_or_else(|| vec![0u64; WORDS_PER_BLOCK].into_boxed_slice());
            self.slab.push(b);
            self.keys.push(addr >> BLOCK_SHIFT);
            s = self.slab.len();
            self.tables[t][within] = s as u32;
        }
        &mut self.slab[s - 1]
    }

    /// Marks `addr`; true when it was not marked before.
    pub fn insert(&mut self, addr: u64) -> bool {
        let bit = ((addr >> 3) as usize) & ((1 << (BLOCK_SHIFT - 3)) - 1);
        let b = self.block(addr);
        let (w, m) = (bit / 64, 1u64 << (bit % 64));
        if b[w] & m != 0 {
            return false;
        }
        b[w] |= m;
        self.count += 1;
        true
    }

    #[inline]
    pub fn contains(&self, addr: u64) -> bool {
        let Some(t) = self.table(addr) else { return false };
        let s = self.tables[t][((addr >> BLOCK_SHIFT) as usize) & (PER_DIR - 1)] as usize;
        if s == 0 {
            return false;
        }
        let bit = ((addr >> 3) as usize) & ((1 << (BLOCK_SHIFT - 3)) - 1);
        self.slab[s - 1][bit / 64] & (1u64 << (bit % 64)) != 0
    }

    /// Splits the set among `n` owners: each 1 MiB block (`addr >> 20`) goes to `owner(addr)`.
    pub fn split(self, n: usize, owner: impl Fn(u64) -> usize) -> Vec<Visited> {
        let mut out: Vec<Visited> = (0..n).map(|_| Visited::new()).collect();
        for (key, b) in self.keys.into_iter().zip(self.slab) {
            let addr = key << BLOCK_SHIFT;
            let v = &mut out[owner(addr) % n];
            v.count += b.iter().map(|w| w.count_ones() as u64).sum::<u64>();
            v.block_or(addr, || Some(b));
        }
        for (i, b) in self.spare.into_iter().enumerate() {
            out[i % n].spare.push(b);
        }
        out
    }

    /// The parts [`Self::split`] made, one set again (their blocks are disjoint).
    pub fn join(parts: Vec<Visited>) -> Visited {
        let mut out = Visited::new();
        for p in parts {
            out.count += p.count;
            for (key, b) in p.keys.into_iter().zip(p.slab) {
                out.block_or(key << BLOCK_SHIFT, || Some(b));
            }
            out.spare.extend(p.spare);
        }
        out
    }

    /// Objects marked.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of bitmap allocated.
    pub fn bytes(&self) -> u64 {
        (self.slab.len() * WORDS_PER_BLOCK * 8) as u64
    }
}

/// The rank of each marked address among all marked addresses in address order (for numbering the
/// objects of a walk without a map from addresses), and the inverse.
pub struct Ranks {
    /// Block numbers in ascending order.
    keys: Vec<u64>,
    /// Block number → its position in `keys`.
    index: AddrMap<u32>,
    /// Per block: marks before it.
    base: Vec<u64>,
    bits: Vec<Box<[u64]>>,
    /// Per block, per word: marks before that word within the block.
    prefix: Vec<Box<[u32]>>,
    count: u64,
}

impl Visited {
    /// The ranks of the marked addresses (the set's blocks are moved, not copied).
    pub fn ranks(self) -> Ranks {
        let mut blocks: Vec<(u64, Box<[u64]>)> = self.keys.into_iter().zip(self.slab).collect();
        blocks.sort_unstable_by_key(|b| b.0);
        let mut r = Ranks {
            keys: Vec::with_capacity(blocks.len()),
            index: AddrMap::default(),
            base: Vec::with_capacity(blocks.len()),
            bits: Vec::with_capacity(blocks.len()),
            prefix: Vec::with_capacity(blocks.len()),
            count: 0,
        };
        for (key, b) in blocks {
            let mut p = vec![0u32; b.len()].into_boxed_slice();
            let mut acc = 0u32;
            for (i, w) in b.iter().enumerate() {
                p[i] = acc;
                acc += w.count_ones();
            }
            r.index.insert(key, r.keys.len() as u32);
            r.keys.push(key);
            r.base.push(r.count);
            r.count += acc as u64;
            r.bits.push(b);
            r.prefix.push(p);
        }
        r
    }
}

impl Ranks {
    /// The rank of `addr` if it is marked.
    #[inline]
    pub fn rank(&self, addr: u64) -> Option<u64> {
        self.rank_near(addr, &mut (u64::MAX, 0))
    }

    /// [`Self::rank`], remembering in `last` the block of the previous lookup (lookups in a row often
    /// fall in the same MiB: no hashing then).
    #[inline]
    pub fn rank_near(&self, addr: u64, last: &mut (u64, usize)) -> Option<u64> {
        let key = addr >> BLOCK_SHIFT;
        let i = if last.0 == key {
            last.1
        } else {
            let i = *self.index.get(&key)? as usize;
            *last = (key, i);
            i
        };
        let bit = ((addr >> 3) as usize) & ((1 << (BLOCK_SHIFT - 3)) - 1);
        let w = self.bits[i][bit / 64];
        let m = 1u64 << (bit % 64);
        if w & m == 0 {
            return None;
        }
        Some(self.base[i] + self.prefix[i][bit / 64] as u64 + (w & (m - 1)).count_ones() as u64)
    }

    /// The marked address of rank `k`.
    pub fn select(&self, k: u64) -> Option<u64> {
        if k >= self.count {
            return None;
        }
        let i = self.base.partition_point(|&b| b <= k) - 1;
        let within = (k - self.base[i]) as u32;
        let wi = self.prefix[i].partition_point(|&p| p <= within) - 1;
        let mut w = self.bits[i][wi];
        for _ in 0..within - self.prefix[i][wi] {
            w &= w - 1;
        }
        let bit = wi as u64 * 64 + w.trailing_zeros() as u64;
        Some((self.keys[i] << BLOCK_SHIFT) + bit * 8)
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bits.iter().map(|b| b.len() as u64 * 12).sum()
    }

    /// Every marked address in order (what `select` gives for each rank, in one pass).
    pub fn addresses(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.count as usize);
        for (key, bits) in self.keys.iter().zip(&self.bits) {
            for (wi, &w) in bits.iter().enumerate() {
                let mut w = w;
                while w != 0 {
                    let bit = wi as u64 * 64 + w.trailing_zeros() as u64;
                    out.push((key << BLOCK_SHIFT) + bit * 8);
                    w &= w - 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_once() {
        let mut v = Visited::new();
        assert!(v.insert(0x7f00_0000_1000));
        assert!(!v.insert(0x7f00_0000_1000));
        assert!(v.insert(0x7f00_0000_1008));
        assert!(v.insert(0x5500_0000_0010));
        assert!(v.contains(0x5500_0000_0010));
        assert!(!v.contains(0x5500_0000_0018));
        assert!(v.contains(0x7f00_0000_1000));
        assert_eq!(v.len(), 3);
        assert_eq!(v.bytes(), 2 * 16 * 1024);
        let parts = v.split(2, |a| (a >> 20) as usize & 1);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<u64>(), 3);
        let p = parts.iter().find(|p| p.contains(0x7f00_0000_1000)).unwrap();
        assert!(p.contains(0x7f00_0000_1008));
        // Spare blocks are used first, and shared out by a split.
        let mut v = Visited::with_spare(3);
        assert!(v.insert(0x1000_0000));
        assert!(v.insert(0x2000_0000));
        assert!(!v.insert(0x1000_0000));
        assert_eq!((v.spare.len(), v.bytes()), (1, 2 * 16 * 1024));
        let parts = v.split(2, |a| (a >> 28) as usize & 1);
        assert_eq!(parts.iter().map(|p| p.spare.len()).sum::<usize>(), 1);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<u64>(), 2);
        // Split parts that marked more, joined: one set of everything.
        let mut parts = parts;
        for (i, p) in parts.iter_mut().enumerate() {
            assert!(p.insert(0x3000_0000 + ((i as u64) << 28) + 8));
        }
        let v = Visited::join(parts);
        assert_eq!(v.len(), 4);
        for a in [0x1000_0000, 0x2000_0000, 0x3000_0008, 0x4000_0008] {
            assert!(v.contains(a), "{a:#x}");
        }
        assert!(!v.contains(0x3000_0010));
    }

    #[test]
    fn ranks_in_address_order() {
        let mut v = Visited::new();
        let addrs = [0x7f00_0010_0000u64, 0x5500_0000_0010, 0x5500_0000_0018, 0x5500_0020_0ff8, 0x7f00_0000_0008];
        for a in addrs {
            v.insert(a);
        }
        let r = v.ranks();
        let mut sorted = addrs.to_vec();
        sorted.sort();
        for (k, a) in sorted.iter().enumerate() {
            assert_eq!(r.rank(*a), Some(k as u64), "{a:#x}");
            assert_eq!(r.select(k as u64), Some(*a));
        }
        assert_eq!(r.rank(0x5500_0000_0020), None);
        assert_eq!(r.rank(0x1234_0000_0000), None);
        assert_eq!(r.select(5), None);
        assert_eq!(r.len(), 5);
    }
}
