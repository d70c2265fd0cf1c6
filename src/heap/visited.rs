//! The set of objects a full-heap walk has already seen: one bit per 8-byte word of address space, in
//! 1 MiB blocks allocated on first use. A heap of N MiB costs at most N × 16 KiB (1/64 of the heap),
//! however many objects it holds; lookups are one hash probe per block plus a bit test.

use super::fasthash::AddrMap;

/// Address space covered by one block of bits.
const BLOCK_SHIFT: u32 = 20;
const WORDS_PER_BLOCK: usize = (1 << BLOCK_SHIFT) / 8 / 64;

#[derive(Default)]
pub struct Visited {
    /// Block number (address >> 20) → index into `slab`.
    blocks: AddrMap<u32>,
    slab: Vec<Box<[u64]>>,
    count: u64,
    /// The block of the last lookup (addresses close to each other are common).
    last: Option<(u64, usize)>,
}

impl Visited {
    pub fn new() -> Self {
        Visited::default()
    }

    fn block(&mut self, key: u64) -> &mut [u64] {
        if let Some((k, i)) = self.last {
            if k == key {
                return &mut self.slab[i];
            }
        }
        let slab = &mut self.slab;
        let i = *self.blocks.entry(key).or_insert_with(|| {
            slab.push(vec![0u64; WORDS_PER_BLOCK].into_boxed_slice());
            (slab.len() - 1) as u32
        }) as usize;
        self.last = Some((key, i));
        &mut self.slab[i]
    }

    /// Marks `addr`; true when it was not marked before.
    pub fn insert(&mut self, addr: u64) -> bool {
        let word = addr >> 3;
        let key = addr >> BLOCK_SHIFT;
        let bit = (word as usize) & ((1 << (BLOCK_SHIFT - 3)) - 1);
        let b = self.block(key);
        let (w, m) = (bit / 64, 1u64 << (bit % 64));
        if b[w] & m != 0 {
            return false;
        }
        b[w] |= m;
        self.count += 1;
        true
    }

    pub fn contains(&self, addr: u64) -> bool {
        let key = addr >> BLOCK_SHIFT;
        let bit = ((addr >> 3) as usize) & ((1 << (BLOCK_SHIFT - 3)) - 1);
        if let Some((k, i)) = self.last {
            if k == key {
                return self.slab[i][bit / 64] & (1u64 << (bit % 64)) != 0;
            }
        }
        match self.blocks.get(&key) {
            Some(&i) => self.slab[i as usize][bit / 64] & (1u64 << (bit % 64)) != 0,
            None => false,
        }
    }

    /// Splits the set among `n` owners: each 1 MiB block (`addr >> 20`) goes to `owner(addr)`.
    pub fn split(self, n: usize, owner: impl Fn(u64) -> usize) -> Vec<Visited> {
        let mut out: Vec<Visited> = (0..n).map(|_| Visited::new()).collect();
        let mut slab: Vec<Option<Box<[u64]>>> = self.slab.into_iter().map(Some).collect();
        for (key, i) in self.blocks {
            let Some(b) = slab[i as usize].take() else { continue };
            let v = &mut out[owner(key << BLOCK_SHIFT) % n];
            v.count += b.iter().map(|w| w.count_ones() as u64).sum::<u64>();
            v.slab.push(b);
            v.blocks.insert(key, (v.slab.len() - 1) as u32);
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
    }
}
