//! Where the bytes of a target come from, behind one read interface ([`Memory`], with [`ReadExt`]'s
//! typed reads that name what they read for the error message): the live process ([`RemoteMemory`],
//! `process_vm_readv`, read-only), a page cache in front of it ([`CachedMemory`]), the full walk's
//! chunk cache ([`chunks`]), a copy taken while the target is stopped ([`copy`]), synthetic images for
//! tests ([`FakeMemory`]); the address-space map ([`maps`]) and one reader per walking thread
//! ([`readers`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;

use crate::error::{Error, Result};

pub mod chunks;
pub mod copy;
pub mod core;
mod core_maps;
pub mod core_memory;
pub mod fasthash;
pub mod maps;
pub mod readers;
pub mod synthetic;
pub mod unnamed;
pub mod unpack;

/// A source of target memory: the live process, a cache in front of it, or a synthetic image in tests.
pub trait Memory {
    /// Fills `buf` from `addr`, wholly or not at all.
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl<M: Memory + ?Sized> Memory for &M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read(addr, buf)
    }
}

/// The live target, read with `process_vm_readv`. It only ever reads.
#[derive(Clone, Copy, Debug)]
pub struct RemoteMemory {
    pid: i32,
}

impl RemoteMemory {
    pub fn new(pid: i32) -> RemoteMemory {
        RemoteMemory { pid }
    }
}

impl Memory for RemoteMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if addr == 0 || addr.checked_add(buf.len() as u64).is_none() {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: addr as usize as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: `local` describes `buf`, which we exclusively borrow for the call; the remote iovec is
        // only read by the kernel, which checks it against the target's address space.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != buf.len() {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        Ok(())
    }
}

/// Mappings are page-granular.
pub const PAGE: u64 = 4096;

/// Faults in every page of a freshly zeroed buffer (call before the target is stopped: the kernel maps
/// zeroed memory lazily, and a first write during the pause would cost a page fault per page).
pub fn fault_in(buf: &mut [u64]) {
    for i in (0..buf.len()).step_by((PAGE / 8) as usize) {
        // SAFETY: i < buf.len(); volatile, so that the write (of the value already there) is kept.
        unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(i), 0) };
    }
}

/// Faults in the pages of the first `n` items of `v`'s spare room (before the target is stopped, as
/// [`fault_in`]); nothing is added to `v`.
pub fn fault_in_room<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    let step = (PAGE as usize / std::mem::size_of::<T>().max(1)).max(1);
    let spare = v.spare_capacity_mut();
    for i in (0..spare.len().min(n)).step_by(step) {
        // SAFETY: `i` is within the spare room, which the vector owns; the write (volatile, so that it is
        // kept) stores a valid `T` in memory that stays outside the vector's length.
        unsafe { std::ptr::write_volatile(spare.as_mut_ptr().add(i), std::mem::MaybeUninit::new(T::default())) };
    }
}

/// Largest single read memspy makes. Lengths often come from the target's own (possibly corrupt or
/// changing) data: a length past this is refused before anything is allocated.
pub const MAX_READ: usize = 64 << 20;

/// Highest user-space address on x86_64 (47-bit canonical lower half). A pointer read from the target
/// above it cannot be valid, and adding a field offset to it could overflow.
pub const MAX_USER_ADDR: u64 = 1 << 47;

/// Checks that a pointer read from the target can be a user-space address (non-NULL, below
/// [`MAX_USER_ADDR`]), so that `ptr + field_offset` neither overflows nor wraps around.
pub fn check_ptr(ptr: u64, what: &'static str) -> Result<u64> {
    if ptr == 0 || ptr >= MAX_USER_ADDR {
        return Err(Error::Corrupt(format!("{what}: implausible pointer {ptr:#x}")));
    }
    Ok(ptr)
}

/// A page cache in front of another [`Memory`]. Only valid while the target does not change (paused), or
/// for an approximate read (`--nonblocking`). Bounded: when `max_pages` is reached it starts over.
pub struct CachedMemory<M: Memory> {
    inner: M,
    pages: RefCell<HashMap<u64, Box<[u8]>>>,
    max_pages: usize,
    stats: RefCell<CacheStats>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub direct: u64,
}

impl<M: Memory> CachedMemory<M> {
    pub fn new(inner: M, max_bytes: u64) -> Self {
        CachedMemory {
            inner,
            pages: RefCell::new(HashMap::new()),
            max_pages: (max_bytes / PAGE).max(16) as usize,
            stats: RefCell::new(CacheStats::default()),
        }
    }

    pub fn stats(&self) -> CacheStats {
        *self.stats.borrow()
    }

    pub fn clear(&self) {
        self.pages.borrow_mut().clear();
    }
}

impl<M: Memory> Memory for CachedMemory<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len() as u64;
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        // Large reads bypass the cache.
        if len > 4 * PAGE {
            self.stats.borrow_mut().direct += 1;
            return self.inner.read(addr, buf);
        }
        let mut pages = self.pages.borrow_mut();
        let mut at = addr;
        while at < end {
            let page = at & !(PAGE - 1);
            let within = (at - page) as usize;
            let n = ((page + PAGE).min(end) - at) as usize;
            let out = &mut buf[(at - addr) as usize..(at - addr) as usize + n];
            if let Some(p) = pages.get(&page) {
                self.stats.borrow_mut().hits += 1;
                out.copy_from_slice(&p[within..within + n]);
            } else {
                self.stats.borrow_mut().misses += 1;
                let mut p = vec![0u8; PAGE as usize].into_boxed_slice();
                match self.inner.read(page, &mut p) {
                    Ok(()) => {
                        out.copy_from_slice(&p[within..within + n]);
                        if pages.len() >= self.max_pages {
                            pages.clear();
                        }
                        pages.insert(page, p);
                    }
                    // Part of the page may be unmapped: read just what was asked for.
                    Err(_) => self.inner.read(at, out)?,
                }
            }
            at += n as u64;
        }
        Ok(())
    }
}

/// Typed reads with context for the error, on any [`Memory`].
pub trait ReadExt {
    fn bytes_at(&self, addr: u64, len: usize, what: &'static str) -> Result<Vec<u8>>;
    fn read_into(&self, addr: u64, buf: &mut [u8], what: &'static str) -> Result<()>;
    fn u64_at(&self, addr: u64, what: &'static str) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_into(addr, &mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }
    fn i64_at(&self, addr: u64, what: &'static str) -> Result<i64> {
        Ok(self.u64_at(addr, what)? as i64)
    }
    fn u32_at(&self, addr: u64, what: &'static str) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_into(addr, &mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u8_at(&self, addr: u64, what: &'static str) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read_into(addr, &mut b, what)?;
        Ok(b[0])
    }
    /// A NUL-terminated string of at most `max` bytes.
    fn cstr_at(&self, addr: u64, max: usize, what: &'static str) -> Result<String> {
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < max {
            // Read up to the end of the page, so as not to cross into an unmapped one.
            let mut chunk = ((PAGE - (at % PAGE)) as usize).min(max - out.len()).min(64);
            // The string may end just before unreadable memory: shrink the read until it succeeds.
            let b = loop {
                match self.bytes_at(at, chunk, what) {
                    Ok(b) => break b,
                    Err(_) if chunk > 1 => chunk /= 2,
                    Err(e) => return Err(e),
                }
            };
            if let Some(nul) = b.iter().position(|c| *c == 0) {
                out.extend_from_slice(&b[..nul]);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            out.extend_from_slice(&b);
            at += chunk as u64;
        }
        Err(Error::Corrupt(format!("{what} at {addr:#x}: no NUL within {max} bytes")))
    }
}

impl<M: Memory + ?Sized> ReadExt for M {
    fn bytes_at(&self, addr: u64, len: usize, what: &'static str) -> Result<Vec<u8>> {
        if len > MAX_READ {
            return Err(Error::Corrupt(format!("{what} at {addr:#x}: refusing to read {len} bytes")));
        }
        let mut b = vec![0u8; len];
        self.read_into(addr, &mut b, what)?;
        Ok(b)
    }
    fn read_into(&self, addr: u64, buf: &mut [u8], what: &'static str) -> Result<()> {
        self.read(addr, buf).map_err(|source| Error::Read { addr, len: buf.len(), what, source })
    }
}

/// Little-endian field access on a byte buffer already read, with bounds.
pub fn le_u64(buf: &[u8], at: u64) -> Option<u64> {
    let at = at as usize;
    buf.get(at..at.checked_add(8)?).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

pub fn le_u32(buf: &[u8], at: u64) -> Option<u32> {
    let at = at as usize;
    buf.get(at..at.checked_add(4)?).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// A synthetic address space for unit tests and fuzzing: a few regions of bytes.
#[derive(Clone, Debug, Default)]
pub struct FakeMemory {
    /// Sorted by address (add them with [`FakeMemory::add`]; their bytes may be changed in place).
    pub regions: Vec<(u64, Vec<u8>)>,
    /// Whether two regions overlap (so that a read the last region starting before it cannot serve may
    /// lie within an earlier, longer one).
    overlapping: bool,
    /// `reach[i]`: the highest end among `regions[..=i]`, so that a read that misses looks back only
    /// as far as a region could still hold it.
    reach: Vec<u64>,
}

impl FakeMemory {
    pub fn new() -> Self {
        FakeMemory::default()
    }
    /// Adds a region; regions are kept sorted by address (reads use a binary search).
    pub fn add(&mut self, addr: u64, bytes: Vec<u8>) {
        let at = self.regions.partition_point(|(s, _)| *s <= addr);
        let end = addr.saturating_add(bytes.len() as u64);
        let before = at.checked_sub(1).map(|i| &self.regions[i]);
        self.overlapping |= before.is_some_and(|(s, b)| s.saturating_add(b.len() as u64) > addr)
            || self.regions.get(at).is_some_and(|(s, _)| *s < end);
        self.regions.insert(at, (addr, bytes));
        self.reach.truncate(at);
        let mut high = at.checked_sub(1).map_or(0, |i| self.reach[i]);
        for (start, bytes) in &self.regions[at..] {
            high = high.max(start.saturating_add(bytes.len() as u64));
            self.reach.push(high);
        }
    }
    pub fn put_u64(&mut self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes());
    }
    pub fn write(&mut self, addr: u64, data: &[u8]) {
        for (start, bytes) in &mut self.regions {
            if *start <= addr && addr + data.len() as u64 <= *start + bytes.len() as u64 {
                let o = (addr - *start) as usize;
                bytes[o..o + data.len()].copy_from_slice(data);
                return;
            }
        }
        panic!("FakeMemory::write outside regions at {addr:#x}");
    }
}

impl Memory for FakeMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let fits = |start: u64, bytes: &Vec<u8>| {
            let end = start + bytes.len() as u64;
            start <= addr && addr.checked_add(buf.len() as u64).is_some_and(|e| e <= end)
        };
        // Fast path: regions added with `add` are sorted; the candidate is the last one starting at or
        // before `addr`.
        let at = self.regions.partition_point(|(s, _)| *s <= addr);
        if at > 0 {
            let (start, bytes) = &self.regions[at - 1];
            if fits(*start, bytes) {
                let o = (addr - *start) as usize;
                buf.copy_from_slice(&bytes[o..o + buf.len()]);
                return Ok(());
            }
        }
        // Overlapping regions: an earlier one may hold the bytes (sorted, disjoint ones cannot), but
        // none before the last index whose reach ends at or below the read's end.
        if !self.overlapping {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        let Some(want) = addr.checked_add(buf.len() as u64) else {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        };
        for i in (0..at.saturating_sub(1)).rev() {
            // (`regions` is public: were one pushed without `add`, `reach` falls short and every
            // earlier region is looked at.)
            if self.reach.get(i).is_some_and(|&r| r < want) {
                break;
            }
            let (start, bytes) = &self.regions[i];
            if fits(*start, bytes) {
                let o = (addr - *start) as usize;
                buf.copy_from_slice(&bytes[o..o + buf.len()]);
                return Ok(());
            }
        }
        Err(io::Error::from_raw_os_error(libc::EFAULT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_reads_across_pages_and_falls_back() {
        let mut f = FakeMemory::new();
        f.add(0x10000, (0..3 * PAGE).map(|i| i as u8).collect());
        let c = CachedMemory::new(&f, 1 << 20);
        let mut b = [0u8; 16];
        c.read(0x10000 + PAGE - 8, &mut b).unwrap();
        assert_eq!(b[0], ((PAGE - 8) % 256) as u8);
        assert_eq!(b[8], 0);
        assert!(c.read(0x10000 + 3 * PAGE - 4, &mut b).is_err());
        assert_eq!(c.u32_at(0x10004, "x").unwrap(), u32::from_le_bytes([4, 5, 6, 7]));
        assert!(matches!(c.u64_at(0x5, "nothing"), Err(Error::Read { what: "nothing", .. })));
    }

    /// Disjoint regions: a read is served by the one region holding it, or fails; an overlapping,
    /// longer region added earlier still serves what a later, shorter one cannot.
    #[test]
    fn fake_memory_disjoint_and_overlapping_regions() {
        let mut f = FakeMemory::new();
        f.add(0x3000, vec![3; 0x10]);
        f.add(0x1000, vec![1; 0x1000]);
        let mut b = [0u8; 8];
        f.read(0x1ff8, &mut b).unwrap();
        assert_eq!(b, [1; 8]);
        assert!(f.read(0x1ffc, &mut b).is_err() && f.read(0x300c, &mut b).is_err() && f.read(0x2000, &mut b).is_err());
        // [0x1800, 0x1810) inside [0x1000, 0x2000): its own bytes where it holds the read, the longer
        // region's past its end.
        f.add(0x1800, vec![2; 0x10]);
        f.read(0x1808, &mut b).unwrap();
        assert_eq!(b, [2; 8]);
        f.read(0x180c, &mut b).unwrap();
        assert_eq!(b, [1; 8]);
        assert!(f.read(0x1ffc, &mut b).is_err());
        // Two nested regions after the longer one: a read past both goes back to it; one past every
        // region's reach fails.
        f.add(0x1900, vec![4; 8]);
        f.add(0x0800, vec![5; 0x10]);
        f.read(0x1a00, &mut b).unwrap();
        assert_eq!(b, [1; 8]);
        f.read(0x1900, &mut b).unwrap();
        assert_eq!(b, [4; 8]);
        f.read(0x0808, &mut b).unwrap();
        assert_eq!(b, [5; 8]);
        assert!(f.read(0x2ff8, &mut b).is_err() && f.read(0x080c, &mut b).is_err());
    }
    #[test]
    fn cstr_bounded() {
        let mut f = FakeMemory::new();
        f.add(0x1000, b"builtins.dict\0xxxx".to_vec());
        assert_eq!(f.cstr_at(0x1000, 100, "tp_name").unwrap(), "builtins.dict");
        f.add(0x9000, vec![b'a'; 300]);
        assert!(f.cstr_at(0x9000, 200, "tp_name").is_err());
    }
}
