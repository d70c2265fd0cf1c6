//! pymalloc (obmalloc): from the allocator state (found by discovery's pymalloc module), compute what
//! `sys._debugmallocstats()` prints: arenas allocated / reclaimed / high-water / current, pools and
//! blocks per size class, bytes in used and free blocks, unused pools, pool headers, quantization and
//! arena alignment.
//!
//! Where the state is ([`ObmallocLocation`]): 3.9–3.11 static globals (found in a `.symtab`, see
//! discovery); 3.12 embedded in `PyInterpreterState`; 3.13+ behind the
//! `interp->obmalloc` pointer. Every candidate is validated by the shape of `usedpools` (each empty size
//! class points to itself minus two pointers; a used one to a pool-aligned header) before anything is
//! trusted; when the table offset fails, nearby offsets are scanned (bounded).
//!
//! The walk reads the arena array and one pool header per carved pool (both bounded by `maxarenas` and
//! the arena size). Call it with the target paused.

use python_bindings::{Layout, ObmallocLayout};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::memory::fasthash::AddrMap;
use crate::memory::{le_u32, le_u64};
use crate::memory::{Memory, ReadExt};

/// Most arena slots memspy believes (1 Ti of 1 MiB arenas).
const MAX_ARENAS: u64 = 1 << 20;

/// Where the allocator state was found.
#[derive(Clone, Debug)]
pub enum StateAddrs {
    /// 3.12+: one `struct _obmalloc_state`.
    Struct(u64),
    /// 3.9–3.11: the globals.
    Globals { usedpools: u64, arenas: u64, maxarenas: u64, current: u64, total: u64, highwater: u64 },
}

/// pymalloc, located.
#[derive(Clone, Debug)]
pub struct Located {
    pub addrs: StateAddrs,
    /// How it was found ("interp->obmalloc at +0x2a30", "symbols from /usr/lib/debug/…").
    pub how: String,
}

/// One size class, as the table of `sys._debugmallocstats()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SizeClass {
    pub class: u32,
    pub size: u64,
    pub pools: u64,
    pub blocks_in_use: u64,
    pub blocks_free: u64,
}

/// pymalloc's state, as `sys._debugmallocstats()` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PymallocStats {
    pub arena_size: u64,
    pub pool_size: u64,
    /// `# arenas allocated total`, `reclaimed`, `highwater mark`, `allocated current`.
    pub arenas_allocated_total: u64,
    pub arenas_reclaimed: u64,
    pub arenas_highwater: u64,
    pub arenas_current: u64,
    /// `arenas_current × arena_size`: what pymalloc holds from the system.
    pub arena_bytes: u64,
    /// Size classes with at least one pool in use.
    pub classes: Vec<SizeClass>,
    pub pools_in_use: u64,
    pub unused_pools: u64,
    /// Bytes in allocated blocks (used) and in free blocks of used pools.
    pub bytes_in_use: u64,
    pub bytes_free: u64,
    pub unused_pool_bytes: u64,
    pub pool_header_bytes: u64,
    pub quantization_bytes: u64,
    pub arena_alignment_bytes: u64,
}

impl PymallocStats {
    /// Share of what pymalloc holds that is not in allocated blocks (0..1).
    pub fn fragmentation(&self) -> f64 {
        if self.arena_bytes == 0 {
            0.0
        } else {
            1.0 - self.bytes_in_use as f64 / self.arena_bytes as f64
        }
    }
}

/// The answer for one target: the stats, or why there are none.
#[derive(Clone, Debug)]
pub enum Pymalloc {
    Stats {
        stats: PymallocStats,
        how: String,
    },
    /// The process does not allocate through pymalloc (`PYTHONMALLOC=malloc`, …).
    NotInUse(String),
    /// The state could not be found (stripped binary without debug file, …).
    Unreachable(String),
}

/// Does `at` look like a `usedpools` array? Returns how many size classes are empty.
pub fn usedpools_shape<M: Memory + ?Sized>(mem: &M, o: &ObmallocLayout, at: u64) -> Option<u64> {
    let n = o.size_classes;
    let buf = mem.bytes_at(at, (16 * n) as usize, "usedpools").ok()?;
    let mut empty = 0;
    for i in 0..n {
        let a = le_u64(&buf, 16 * i)?;
        let b = le_u64(&buf, 16 * i + 8)?;
        let own = (at + 16 * i).wrapping_sub(16);
        if a == own && b == own {
            empty += 1;
        } else if a == 0 || b == 0 || a % o.pool_size != 0 || b % o.pool_size != 0 {
            return None;
        }
    }
    Some(empty)
}

/// A plausible `struct _obmalloc_state` at `at`?
pub fn valid_state<M: Memory + ?Sized>(mem: &M, o: &ObmallocLayout, at: u64) -> bool {
    if at == 0 || !at.is_multiple_of(8) || usedpools_shape(mem, o, at + o.state.usedpools).is_none() {
        return false;
    }
    let max = mem.u32_at(at + o.state.maxarenas, "maxarenas").unwrap_or(u32::MAX) as u64;
    let cur = mem.u64_at(at + o.state.narenas_currently_allocated, "narenas").unwrap_or(u64::MAX);
    max <= MAX_ARENAS && cur <= max
}

/// Reads the allocator figures from a located state.
pub fn read_stats<M: Memory + ?Sized>(mem: &M, l: &Layout, at: &Located) -> Result<Option<PymallocStats>> {
    let o = &l.obmalloc;
    let (arenas, maxarenas, current, total, highwater) = match at.addrs {
        StateAddrs::Struct(s) => (
            mem.u64_at(s + o.state.arenas, "obmalloc arenas")?,
            mem.u32_at(s + o.state.maxarenas, "obmalloc maxarenas")? as u64,
            mem.u64_at(s + o.state.narenas_currently_allocated, "narenas_currently_allocated")?,
            mem.u64_at(s + o.state.ntimes_arena_allocated, "ntimes_arena_allocated")?,
            mem.u64_at(s + o.state.narenas_highwater, "narenas_highwater")?,
        ),
        StateAddrs::Globals { arenas, maxarenas, current, total, highwater, .. } => (
            mem.u64_at(arenas, "arenas")?,
            mem.u32_at(maxarenas, "maxarenas")? as u64,
            mem.u64_at(current, "narenas_currently_allocated")?,
            mem.u64_at(total, "ntimes_arena_allocated")?,
            mem.u64_at(highwater, "narenas_highwater")?,
        ),
    };
    // pymalloc allocates its first arena on the first small request; a running interpreter that never
    // did allocates through something else.
    if total == 0 || arenas == 0 {
        return Ok(None);
    }
    if maxarenas > MAX_ARENAS || current > maxarenas || highwater > total.max(maxarenas) {
        return Err(Error::Corrupt(format!(
            "pymalloc counters implausible: maxarenas {maxarenas}, current {current}, highwater {highwater}"
        )));
    }
    let table = mem.bytes_at(arenas, (maxarenas * o.arena.size) as usize, "arena_object array")?;
    let n = o.size_classes as usize;
    let mut classes: Vec<SizeClass> = (0..n)
        .map(|i| SizeClass { class: i as u32, size: (i as u64 + 1) * o.alignment, ..Default::default() })
        .collect();
    let mut s = PymallocStats {
        arena_size: o.arena_size,
        pool_size: o.pool_size,
        arenas_allocated_total: total,
        arenas_reclaimed: total.saturating_sub(current),
        arenas_highwater: highwater,
        ..Default::default()
    };
    let pools_per_arena = o.arena_size / o.pool_size;
    let mut header = [0u8; 48];
    for i in 0..maxarenas {
        let ao = i * o.arena.size;
        let address = le_u64(&table, ao + o.arena.address).unwrap_or(0);
        if address == 0 {
            continue;
        }
        s.arenas_current += 1;
        s.unused_pools += le_u32(&table, ao + o.arena.nfreepools).unwrap_or(0) as u64;
        let pool_address = le_u64(&table, ao + o.arena.pool_address).unwrap_or(0);
        let mut base = address;
        if !base.is_multiple_of(o.pool_size) {
            s.arena_alignment_bytes += o.pool_size;
            base += o.pool_size - base % o.pool_size;
        }
        if pool_address < base || pool_address > address + o.arena_size {
            return Err(Error::Corrupt(format!("arena {i}: pool_address {pool_address:#x} outside {address:#x}")));
        }
        let mut pool = base;
        let mut k = 0;
        while pool < pool_address && k < pools_per_arena {
            k += 1;
            mem.read_into(pool, &mut header, "pool_header")?;
            let count = le_u32(&header, o.pool.count).unwrap_or(0) as u64;
            let szidx = le_u32(&header, o.pool.szidx).unwrap_or(0) as usize;
            pool += o.pool_size;
            if count == 0 {
                continue;
            }
            let Some(c) = classes.get_mut(szidx) else {
                return Err(Error::Corrupt(format!("pool at {:#x}: size class {szidx}", pool - o.pool_size)));
            };
            let capacity = (o.pool_size - o.pool_overhead) / c.size;
            if count > capacity {
                return Err(Error::Corrupt(format!(
                    "pool at {:#x}: {count} blocks of {} bytes",
                    pool - o.pool_size,
                    c.size
                )));
            }
            c.pools += 1;
            c.blocks_in_use += count;
            c.blocks_free += capacity - count;
        }
    }
    for c in &classes {
        s.pools_in_use += c.pools;
        s.bytes_in_use += c.blocks_in_use * c.size;
        s.bytes_free += c.blocks_free * c.size;
        s.pool_header_bytes += c.pools * o.pool_overhead;
        s.quantization_bytes += c.pools * ((o.pool_size - o.pool_overhead) % c.size);
    }
    s.unused_pool_bytes = s.unused_pools * o.pool_size;
    s.arena_bytes = s.arenas_current * o.arena_size;
    if s.arenas_current != current {
        log::warn!("pymalloc: {} arenas in the table but narenas_currently_allocated = {current}", s.arenas_current);
    }
    s.classes = classes.into_iter().filter(|c| c.pools > 0).collect();
    Ok(Some(s))
}

/// The arenas of one snapshot: is an address a pymalloc block in use, and of what size. Built once per
/// walk from the arena table; pool headers are read when an address in the pool is first asked about.
#[derive(Clone, Debug, Default)]
pub struct Arenas {
    /// (address, pool_address) of every arena, sorted: the pools carved so far lie below `pool_address`.
    arenas: Vec<(u64, u64)>,
    /// Pools read so far, by address (None: not in use).
    pools: AddrMap<Option<Pool>>,
}

/// A pool in use.
#[derive(Clone, Debug)]
struct Pool {
    block: u64,
    /// Blocks at or past this offset were never handed out.
    nextoffset: u64,
    /// Offsets of the blocks on the pool's free list, sorted.
    free: Vec<u32>,
}

/// What pymalloc says of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// Not inside an arena.
    Outside,
    /// The start of a block in use, of this size.
    InUse(u64),
    /// Inside an arena but not the start of a block in use (free, misaligned, in an unused pool).
    NotInUse,
}

impl Arenas {
    /// The arenas of the allocator state at `at` (None: pymalloc holds no arena).
    pub fn read<M: Memory + ?Sized>(mem: &M, l: &Layout, at: &Located) -> Result<Option<Arenas>> {
        let o = &l.obmalloc;
        let (table, maxarenas) = match at.addrs {
            StateAddrs::Struct(s) => (
                mem.u64_at(s + o.state.arenas, "obmalloc arenas")?,
                mem.u32_at(s + o.state.maxarenas, "maxarenas")? as u64,
            ),
            StateAddrs::Globals { arenas, maxarenas, .. } => {
                (mem.u64_at(arenas, "arenas")?, mem.u32_at(maxarenas, "maxarenas")? as u64)
            }
        };
        if table == 0 || maxarenas == 0 {
            return Ok(None);
        }
        if maxarenas > MAX_ARENAS {
            return Err(Error::Corrupt(format!("pymalloc maxarenas {maxarenas}")));
        }
        let bytes = mem.bytes_at(table, (maxarenas * o.arena.size) as usize, "arena_object array")?;
        let mut arenas = Vec::new();
        for i in 0..maxarenas {
            let ao = i * o.arena.size;
            let address = le_u64(&bytes, ao + o.arena.address).unwrap_or(0);
            let pool_address = le_u64(&bytes, ao + o.arena.pool_address).unwrap_or(0);
            if address != 0 && pool_address >= address && pool_address <= address + o.arena_size {
                arenas.push((address, pool_address));
            }
        }
        arenas.sort_unstable();
        Ok((!arenas.is_empty()).then(|| Arenas { arenas, pools: AddrMap::default() }))
    }

    /// Whether `addr` lies inside one of the arenas.
    pub fn contains(&self, addr: u64, arena_size: u64) -> bool {
        let i = self.arenas.partition_point(|&(a, _)| a <= addr);
        i > 0 && addr < self.arenas[i - 1].0 + arena_size
    }

    /// What pymalloc says of `addr` as the start of a block.
    pub fn block<M: Memory + ?Sized>(&mut self, mem: &M, o: &ObmallocLayout, addr: u64) -> Block {
        let i = self.arenas.partition_point(|&(a, _)| a <= addr);
        let Some(&(base, carved)) = i.checked_sub(1).and_then(|i| self.arenas.get(i)) else { return Block::Outside };
        if addr >= base + o.arena_size {
            return Block::Outside;
        }
        let pool = addr & !(o.pool_size - 1);
        if pool < base || pool >= carved {
            return Block::NotInUse;
        }
        let entry = self.pools.entry(pool).or_insert_with(|| read_pool(mem, o, pool));
        let Some(p) = entry else { return Block::NotInUse };
        let Some(off) = (addr - pool).checked_sub(o.pool_overhead) else { return Block::NotInUse };
        if off % p.block != 0 || addr - pool >= p.nextoffset || p.free.binary_search(&(off as u32)).is_ok() {
            return Block::NotInUse;
        }
        Block::InUse(p.block)
    }
}

/// Most free blocks followed in one pool (a 256 KiB pool of 16-byte blocks has fewer).
const MAX_FREE_BLOCKS: usize = 1 << 14;

/// The header and free list of the pool at `pool`, if it is in use and holds together.
fn read_pool<M: Memory + ?Sized>(mem: &M, o: &ObmallocLayout, pool: u64) -> Option<Pool> {
    let mut h = [0u8; 48];
    mem.read(pool, &mut h).ok()?;
    let count = le_u32(&h, o.pool.count)? as u64;
    let szidx = le_u32(&h, o.pool.szidx)? as u64;
    let nextoffset = le_u32(&h, o.pool.nextoffset)? as u64;
    if count == 0 || szidx >= o.size_classes || nextoffset > o.pool_size {
        return None;
    }
    let block = (szidx + 1) * o.alignment;
    let mut free = Vec::new();
    let mut f = le_u64(&h, o.pool.freeblock)?;
    while f != 0 {
        if f < pool + o.pool_overhead || f >= pool + o.pool_size || free.len() >= MAX_FREE_BLOCKS {
            return None;
        }
        free.push((f - pool - o.pool_overhead) as u32);
        f = mem.u64_at(f, "pool free list").ok()?;
    }
    free.sort_unstable();
    Some(Pool { block, nextoffset, free })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;
    use python_bindings::Version;

    #[test]
    fn usedpools_signature() {
        let l = Layout::builtin(Version::new(3, 13, 0)).unwrap();
        let o = &l.obmalloc;
        let at = 0x10000;
        let mut f = FakeMemory::new();
        f.add(at, vec![0; 0x1000]);
        for i in 0..32u64 {
            f.put_u64(at + 16 * i, at + 16 * i - 16);
            f.put_u64(at + 16 * i + 8, at + 16 * i - 16);
        }
        assert_eq!(usedpools_shape(&f, o, at), Some(32));
        f.put_u64(at + 16, 0x7f00_0000_4000);
        f.put_u64(at + 24, 0x7f00_0000_8000);
        assert_eq!(usedpools_shape(&f, o, at), Some(31));
        f.put_u64(at + 24, 0x7f00_0000_8010);
        assert_eq!(usedpools_shape(&f, o, at), None);
    }

    #[test]
    fn blocks_in_use() {
        let l = Layout::builtin(Version::new(3, 12, 0)).unwrap();
        let o = &l.obmalloc;
        let (arena, pool) = (0x7f00_0000_1000u64, 0x7f00_0000_4000u64);
        let mut f = FakeMemory::new();
        f.add(0x1000, vec![0; 0x100]);
        f.add(pool, vec![0; o.pool_size as usize]);
        // One arena whose first two pools were carved; the state's arena table at 0x1000.
        f.put_u64(0x1000 + o.arena.address, arena);
        f.put_u64(0x1000 + o.arena.pool_address, pool + 2 * o.pool_size);
        // A pool of 32-byte blocks (szidx 1): 5 handed out, the 2nd and 4th freed.
        let block = |i: u64| pool + o.pool_overhead + 32 * i;
        f.put_u64(pool + o.pool.count, 3);
        f.write(pool + o.pool.szidx, &1u32.to_le_bytes());
        f.write(pool + o.pool.nextoffset, &((o.pool_overhead + 5 * 32) as u32).to_le_bytes());
        f.put_u64(pool + o.pool.freeblock, block(1));
        f.put_u64(block(1), block(3));
        let mut state = f.clone();
        let located = Located { addrs: StateAddrs::Struct(0x2000), how: String::new() };
        state.add(0x2000, vec![0; o.state.size as usize]);
        state.put_u64(0x2000 + o.state.arenas, 0x1000);
        state.write(0x2000 + o.state.maxarenas, &1u32.to_le_bytes());
        let mut a = Arenas::read(&state, &l, &located).unwrap().unwrap();
        assert_eq!(a.block(&state, o, block(0)), Block::InUse(32));
        assert_eq!(a.block(&state, o, block(2)), Block::InUse(32));
        assert_eq!(a.block(&state, o, block(1)), Block::NotInUse, "free");
        assert_eq!(a.block(&state, o, block(3)), Block::NotInUse, "free");
        assert_eq!(a.block(&state, o, block(5)), Block::NotInUse, "never handed out");
        assert_eq!(a.block(&state, o, block(0) + 8), Block::NotInUse, "misaligned");
        assert_eq!(a.block(&state, o, pool + o.pool_size + 64), Block::NotInUse, "pool not in use");
        assert_eq!(a.block(&state, o, pool + 4 * o.pool_size), Block::NotInUse, "pool never carved");
        assert_eq!(a.block(&state, o, arena + o.arena_size + 64), Block::Outside);
    }
}
