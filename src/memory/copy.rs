//! Copy-then-walk: while the target is stopped, copy its writable and anonymous mappings (where every
//! object lives) with large batched reads, resume it, then walk the copy. The target is frozen only
//! for the copy (at memory-copy speed) instead of the whole walk, at the price of memspy holding a
//! copy of those mappings: used only when they fit in the memory budget (`--max-memory`; by default
//! half the target's RSS). Mappings that are not copied (read-only files: code, constant strings such
//! as `tp_name`) do not change while the target runs and are read live.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use crate::memory::maps::Maps;
use crate::memory::Memory;

use super::PAGE;
/// Largest single read while copying (one `process_vm_readv`).
const PIECE: u64 = 8 << 20;

/// Mappings to copy: readable, and writable or anonymous (not `[vvar]`/`[vsyscall]`), sorted.
pub fn regions_to_copy(maps: &Maps) -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = maps
        .entries
        .iter()
        .filter(|m| m.readable())
        .filter(|m| {
            !matches!(m.path.as_deref(), Some("[vvar]") | Some("[vvar_vclock]") | Some("[vsyscall]") | Some("[vdso]"))
        })
        .filter(|m| m.perms.writable() || m.path.is_none() || m.inode == 0)
        .map(|m| (m.start, m.end))
        .collect();
    r.sort_unstable();
    r
}

/// Bytes a copy of `regions` takes.
pub fn copy_size(regions: &[(u64, u64)]) -> u64 {
    regions.iter().map(|(s, e)| e - s).sum()
}

struct Region {
    start: u64,
    data: Vec<u8>,
    /// Pages that could not be read (sorted addresses); reads touching them fail.
    holes: Vec<u64>,
}

/// A copy of the target's writable memory, in front of the live target for everything else.
pub struct CopiedMemory<M: Memory> {
    regions: Vec<Region>,
    live: M,
}

impl<M: Memory> CopiedMemory<M> {
    /// Allocates the copy of `regions` and touches every page of it, so that the copy itself (done
    /// while the target is stopped) is only memory traffic, not page faults. Bounded by the regions'
    /// total size, which the caller has checked against the budget.
    pub fn prepare(live: M, regions: &[(u64, u64)]) -> Self {
        let t = Instant::now();
        let regions = regions
            .iter()
            .map(|&(start, end)| {
                let mut data = vec![0u8; (end - start) as usize];
                for p in data.iter_mut().step_by(PAGE as usize) {
                    // A write faults the page in now rather than during the copy (volatile: not elided).
                    // SAFETY: `p` is a valid, exclusive reference to a byte of `data`.
                    unsafe { std::ptr::write_volatile(p, 0) };
                }
                Region { start, data, holes: Vec::new() }
            })
            .collect();
        log::debug!("copy buffers ready in {:?}", t.elapsed());
        CopiedMemory { regions, live }
    }

    /// The copied address ranges.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.regions.iter().map(|r| (r.start, r.start + r.data.len() as u64)).collect()
    }

    /// Copies the regions from the target (which must be stopped), in pieces of up to 8 MiB per
    /// `process_vm_readv`; pages that cannot be read become holes.
    pub fn fill(&mut self) {
        let t = Instant::now();
        let mut holes_total = 0usize;
        let mut bytes = 0u64;
        for r in &mut self.regions {
            let start = r.start;
            let end = start + r.data.len() as u64;
            bytes += end - start;
            let mut at = start;
            while at < end {
                let n = (end - at).min(PIECE);
                let buf = &mut r.data[(at - start) as usize..(at - start + n) as usize];
                if self.live.read(at, buf).is_err() {
                    // Part of the mapping cannot be read: page by page.
                    let mut p = at;
                    while p < at + n {
                        let q = (p + PAGE).min(at + n);
                        if self.live.read(p, &mut r.data[(p - start) as usize..(q - start) as usize]).is_err() {
                            r.holes.push(p & !(PAGE - 1));
                        }
                        p = q;
                    }
                }
                at += n;
            }
            holes_total += r.holes.len();
        }
        log::debug!(
            "copied {} mappings, {} MiB, {} unreadable pages, in {:?}",
            self.regions.len(),
            bytes >> 20,
            holes_total,
            t.elapsed()
        );
    }

    /// [`Self::prepare`] then [`Self::fill`].
    pub fn copy(live: M, regions: &[(u64, u64)]) -> Self {
        let mut c = Self::prepare(live, regions);
        c.fill();
        c
    }
}

/// Serves a read of a copy made region by region: `region(addr)` is the number, end and unreadable
/// pages of the copied region holding `addr`, `copied(number, addr, buf)` reads within it, and what no
/// region holds is read `live` (read-only file mappings, which do not change). A read spanning two
/// regions is served piecewise.
fn read_copy<'a, R, C, L>(addr: u64, buf: &mut [u8], region: &R, copied: &C, live: &L) -> io::Result<()>
where
    R: Fn(u64) -> Option<(usize, u64, &'a [u64])>,
    C: Fn(usize, u64, &mut [u8]) -> io::Result<()>,
    L: Fn(u64, &mut [u8]) -> io::Result<()>,
{
    let len = buf.len() as u64;
    if len == 0 {
        return Ok(());
    }
    let efault = || io::Error::from_raw_os_error(libc::EFAULT);
    let end = addr.checked_add(len).ok_or_else(efault)?;
    let Some((i, rend, holes)) = region(addr) else { return live(addr, buf) };
    if end > rend {
        let (a, b) = buf.split_at_mut((rend - addr) as usize);
        read_copy(addr, a, region, copied, live)?;
        return read_copy(rend, b, region, copied, live);
    }
    let h = holes.partition_point(|&p| p + PAGE <= addr);
    if holes.get(h).is_some_and(|&p| p < end) {
        return Err(efault());
    }
    copied(i, addr, buf)
}

impl<M: Memory> Memory for CopiedMemory<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let regions = &self.regions;
        read_copy(
            addr,
            buf,
            &|a| {
                let i = regions.partition_point(|r| r.start <= a).checked_sub(1)?;
                let r = &regions[i];
                let end = r.start + r.data.len() as u64;
                (a < end).then_some((i, end, r.holes.as_slice()))
            },
            &|i, a, b| {
                let r = &regions[i];
                let o = (a - r.start) as usize;
                b.copy_from_slice(&r.data[o..o + b.len()]);
                Ok(())
            },
            &|a, b| self.live.read(a, b),
        )
    }
}

/// A copy of the target's writable memory in a temporary file (unlinked when made): its bytes sit in the
/// page cache, which the kernel writes back and reclaims as it needs, not in memspy's memory; read with
/// `pread` (put a [`super::chunks::ChunkCache`] in front), in front of the live target for the rest.
/// The file takes the regions' size on disk while a clone of it lives.
#[derive(Clone)]
pub struct FileCopy<M: Memory + Clone> {
    file: Arc<File>,
    /// (start, end, offset in the file), sorted.
    regions: Arc<Vec<(u64, u64, u64)>>,
    /// Pages that could not be read (sorted addresses).
    holes: Arc<Vec<u64>>,
    live: M,
}

impl<M: Memory + Clone> FileCopy<M> {
    /// A file in `dir` sized for `regions`, written through once with zeros, so that the copy made while
    /// the target is stopped overwrites page cache pages that exist rather than allocating them.
    pub fn prepare(live: M, regions: &[(u64, u64)], dir: &std::path::Path) -> io::Result<Self> {
        let t = Instant::now();
        let file = super::unnamed::unnamed_in(dir, "copy")?;
        let mut at = 0u64;
        let regions: Vec<(u64, u64, u64)> = regions
            .iter()
            .map(|&(s, e)| {
                at += e - s;
                (s, e, at - (e - s))
            })
            .collect();
        let zeros = vec![0u8; PIECE as usize];
        let mut off = 0;
        while off < at {
            let n = (at - off).min(PIECE) as usize;
            file.write_all_at(&zeros[..n], off)?;
            off += n as u64;
        }
        log::debug!("copy file ready in {:?} ({} MiB)", t.elapsed(), at >> 20);
        Ok(FileCopy { file: Arc::new(file), regions: Arc::new(regions), holes: Arc::new(Vec::new()), live })
    }

    /// Copies the regions from the target (which must be stopped) into the file, in pieces of up to
    /// 8 MiB; pages that cannot be read become holes.
    pub fn fill(&mut self) -> io::Result<()> {
        let t = Instant::now();
        let mut holes = Vec::new();
        // This thread reads the target while another writes what was read: the two copies overlap.
        let (to_writer, pieces) = std::sync::mpsc::sync_channel::<(Vec<u8>, u64)>(2);
        let (to_reader, spent) = std::sync::mpsc::channel::<Vec<u8>>();
        for _ in 0..3 {
            let _ = to_reader.send(vec![0u8; PIECE as usize]);
        }
        let file = self.file.clone();
        let writer = std::thread::spawn(move || -> io::Result<()> {
            for (buf, off) in pieces {
                file.write_all_at(&buf, off)?;
                let _ = to_reader.send(buf);
            }
            Ok(())
        });
        'regions: for &(start, end, base) in self.regions.iter() {
            let mut at = start;
            while at < end {
                let n = (end - at).min(PIECE) as usize;
                let Ok(mut buf) = spent.recv() else { break 'regions };
                buf.resize(n, 0);
                if self.live.read(at, &mut buf).is_err() {
                    for (i, page) in buf.chunks_mut(PAGE as usize).enumerate() {
                        let p = at + i as u64 * PAGE;
                        if self.live.read(p, page).is_err() {
                            page.fill(0);
                            holes.push(p & !(PAGE - 1));
                        }
                    }
                }
                if to_writer.send((buf, base + (at - start))).is_err() {
                    break 'regions;
                }
                at += n as u64;
            }
        }
        drop(to_writer);
        writer.join().map_err(|_| io::Error::other("the copy's writer thread panicked"))??;
        holes.sort_unstable();
        log::debug!(
            "copied {} mappings into the file, {} unreadable pages, in {:?}",
            self.regions.len(),
            holes.len(),
            t.elapsed()
        );
        self.holes = Arc::new(holes);
        Ok(())
    }

    /// The address ranges the file holds (sorted).
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.regions.iter().map(|&(s, e, _)| (s, e)).collect()
    }
}

impl<M: Memory + Clone> Memory for FileCopy<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let regions = &self.regions;
        read_copy(
            addr,
            buf,
            &|a| {
                let i = regions.partition_point(|r| r.0 <= a).checked_sub(1)?;
                (a < regions[i].1).then_some((i, regions[i].1, self.holes.as_slice()))
            },
            &|i, a, b| {
                let (start, _, base) = regions[i];
                self.file.read_exact_at(b, base + (a - start))
            },
            &|a, b| self.live.read(a, b),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;
    use crate::memory::ReadExt;

    #[test]
    fn a_copy_in_a_file_reads_as_one_in_memory() {
        let mut f = FakeMemory::new();
        f.add(0x10000, (0..3 * PAGE).map(|i| (i / 8) as u8).collect());
        f.add(0x90000, vec![7u8; PAGE as usize]);
        let regions = [(0x10000, 0x10000 + 2 * PAGE), (0x10000 + 2 * PAGE, 0x10000 + 4 * PAGE)];
        let mut c = FileCopy::prepare(f.clone(), &regions, &std::env::temp_dir()).expect("a file copy");
        c.fill().expect("filled");
        let m = CopiedMemory::copy(&f, &regions);
        for (at, n) in [(0x10000 + 80, 8), (0x10000 + 2 * PAGE - 8, 16), (0x10000 + PAGE, 100)] {
            assert_eq!(c.bytes_at(at, n, "x").unwrap(), m.bytes_at(at, n, "x").unwrap());
        }
        assert!(c.u64_at(0x10000 + 3 * PAGE + 8, "hole").is_err());
        assert_eq!(c.u8_at(0x90010, "live").unwrap(), 7);
    }

    #[test]
    fn copy_serves_reads_and_falls_back_to_live() {
        let mut f = FakeMemory::new();
        f.add(0x10000, (0..3 * PAGE).map(|i| (i / 8) as u8).collect());
        f.add(0x10000 + 3 * PAGE, (0..PAGE).map(|i| (i / 8) as u8).collect());
        f.add(0x90000, vec![7u8; PAGE as usize]);
        // The second region's last page is missing: it becomes a hole.
        let c = CopiedMemory::copy(&f, &[(0x10000, 0x10000 + 3 * PAGE), (0x10000 + 3 * PAGE, 0x10000 + 5 * PAGE)]);
        assert_eq!(c.u8_at(0x10000 + 80, "x").unwrap(), 10);
        // Across the two copied mappings.
        let b = c.bytes_at(0x10000 + 3 * PAGE - 8, 16, "across").unwrap();
        assert_eq!(b[0], ((3 * PAGE - 8) / 8) as u8);
        assert!(c.u64_at(0x10000 + 4 * PAGE + 8, "hole").is_err());
        assert_eq!(c.u8_at(0x90010, "live").unwrap(), 7);
        assert!(c.u64_at(0x500, "unmapped").is_err());
    }
}
