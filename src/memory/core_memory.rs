//! The memory of a process as a core file holds it ([`CoreMemory`], a [`Memory`] source): the dumped
//! bytes of each `PT_LOAD` segment; past a segment's dumped part (`p_filesz < p_memsz`) the bytes of the
//! file mapped there (`NT_FILE`: gcore and the kernel leave out read-only file mappings, which the file
//! itself holds), else zeros. The files are found as the core names them, under `--sysroot` if given,
//! the executable at `--exe` if given, and each is checked against the build ID the core's copy of its
//! first page carries. The address-space map is rebuilt from the segments and `NT_FILE`.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::core::{CoreFile, FileMapping, Mapped, Segment};
use super::maps::Maps;
use super::{le_u32, le_u64, Memory};

/// Where the binaries a core names are found.
#[derive(Clone, Debug, Default)]
pub struct Binaries {
    /// The main executable on disk (`--exe`), instead of the path the core names.
    pub exe: Option<PathBuf>,
    /// A directory the core's paths are taken relative to (`--sysroot`).
    pub sysroot: Option<PathBuf>,
    /// Files held in memory, by the path they would be looked for at (tests, the fuzz harness): when
    /// set, these are the only files opened and nothing is read from the host's disk.
    pub in_memory: Option<Arc<InMemoryFiles>>,
}

/// Files in memory, by path (see [`Binaries::in_memory`]).
pub type InMemoryFiles = Vec<(PathBuf, Arc<Mapped>)>;

/// What became of one file the core maps.
#[derive(Clone)]
pub enum FileState {
    /// Opened at this path; the build ID matched (or could not be checked).
    Found { disk: PathBuf, map: Arc<Mapped> },
    /// Not opened: where it was looked for, and why not.
    Missing { disk: PathBuf, error: String },
    /// The file on disk is another build than the one the process mapped.
    Mismatch { disk: PathBuf, core_id: String, file_id: String },
}

/// A core file as a source of target memory.
pub struct CoreMemory {
    pub core: CoreFile,
    /// The file behind each `NT_FILE` mapping, sorted by start: (index into the core's
    /// `notes.files`, index into `states`).
    backings: Vec<(usize, usize)>,
    states: Vec<(String, FileState)>,
    /// The main executable, as the core names it.
    pub exe: String,
    pub maps: Maps,
}

fn unavailable(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, what)
}

impl CoreMemory {
    /// Opens every file the core maps (see [`Binaries`]) and rebuilds its address-space map.
    pub fn new(core: CoreFile, binaries: &Binaries) -> CoreMemory {
        let files = &core.notes.files;
        let exe = core
            .notes
            .entry
            .and_then(|e| files.iter().find(|f| f.start <= e && e < f.end))
            .or_else(|| files.iter().min_by_key(|f| f.start))
            .map(|f| f.path.clone())
            .unwrap_or_default();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut states: Vec<(String, FileState)> = Vec::new();
        let mut backings = Vec::with_capacity(files.len());
        for (j, f) in files.iter().enumerate() {
            let i = *index.entry(f.path.as_str()).or_insert_with(|| {
                let disk = disk_path(&f.path, f.path == exe, binaries);
                let first = files.iter().filter(|g| g.path == f.path && g.offset == 0).min_by_key(|g| g.start);
                let core_id = first.and_then(|g| build_id(|off, len| dumped(&core, g.start.checked_add(off)?, len)));
                states.push((f.path.clone(), open_checked(disk, core_id, binaries)));
                states.len() - 1
            });
            backings.push((j, i));
        }
        backings.sort_by_key(|&(j, _)| files[j].start);
        let maps = super::core_maps::rebuild(&core.segments, files, &exe);
        CoreMemory { core, backings, states, exe, maps }
    }

    /// What became of each file the core maps, by the path the core names.
    pub fn files(&self) -> impl Iterator<Item = (&str, &FileState)> {
        self.states.iter().map(|(p, s)| (p.as_str(), s))
    }

    pub fn file(&self, path: &str) -> Option<&FileState> {
        self.states.iter().find(|(p, _)| p == path).map(|(_, s)| s)
    }

    /// The sorted, merged address ranges of the readable segments.
    pub fn readable_ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for s in self.core.segments.iter().filter(|s| s.flags & goblin::elf::program_header::PF_R != 0) {
            match out.last_mut() {
                Some(last) if last.1 >= s.vaddr => last.1 = last.1.max(s.end()),
                _ => out.push((s.vaddr, s.end())),
            }
        }
        out
    }

    /// Bytes of the segments: what the process had mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.core.segments.iter().fold(0u64, |n, s| n.saturating_add(s.memsz))
    }

    fn segment(&self, addr: u64) -> Option<&Segment> {
        let segs = &self.core.segments;
        let i = segs.partition_point(|s| s.vaddr <= addr);
        segs.get(i.checked_sub(1)?).filter(|s| addr < s.end())
    }

    /// The `NT_FILE` mapping at `addr` and the index of its file's state.
    fn backing(&self, addr: u64) -> Option<(&FileMapping, usize)> {
        let files = &self.core.notes.files;
        let i = self.backings.partition_point(|&(j, _)| files[j].start <= addr);
        let &(j, state) = self.backings.get(i.checked_sub(1)?)?;
        Some((&files[j], state)).filter(|(f, _)| addr < f.end)
    }

    /// Fills `out` from the file mapped at `addr` (zeros past the file's end, as the kernel maps them);
    /// returns how many bytes it filled (up to the mapping's end).
    fn read_file_at(&self, addr: u64, out: &mut [u8]) -> io::Result<usize> {
        let Some((f, i)) = self.backing(addr) else { return Err(io::Error::from_raw_os_error(libc::EFAULT)) };
        let n = out.len().min((f.end - addr) as usize);
        let (path, state) = &self.states[i];
        let FileState::Found { map, .. } = state else {
            return Err(unavailable(format!("{path}, mapped there, is not available")));
        };
        let bytes = map.bytes();
        let at = f.offset.saturating_add(addr - f.start);
        // The file's bytes from `at` (none when it ends before: a file shorter than the process saw).
        let src = usize::try_from(at).ok().and_then(|at| bytes.get(at..)).unwrap_or(&[]);
        let have = src.len().min(n);
        out[..have].copy_from_slice(&src[..have]);
        out[have..n].fill(0);
        Ok(n)
    }
}

/// The bytes the core itself holds at `[addr, addr + len)`, within one segment's dumped part.
fn dumped(core: &CoreFile, addr: u64, len: usize) -> Option<&[u8]> {
    let segs = &core.segments;
    let s = segs.get(segs.partition_point(|s| s.vaddr <= addr).checked_sub(1)?)?;
    let within = addr.checked_sub(s.vaddr)?;
    if within.checked_add(len as u64)? > s.filesz {
        return None;
    }
    let at = s.offset.checked_add(within)? as usize;
    core.bytes().get(at..at.checked_add(len)?)
}

impl Memory for CoreMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        if addr.checked_add(buf.len() as u64).is_none() {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        let core = self.core.bytes();
        let mut done = 0usize;
        while done < buf.len() {
            let at = addr + done as u64;
            let out = &mut buf[done..];
            let n = match self.segment(at) {
                Some(s) => {
                    let within = at - s.vaddr;
                    let n = out.len().min((s.end() - at) as usize);
                    if within < s.filesz {
                        let n = n.min((s.filesz - within) as usize);
                        let from = s.offset.saturating_add(within);
                        let src = usize::try_from(from)
                            .ok()
                            .and_then(|from| core.get(from..from.checked_add(n)?))
                            .ok_or_else(|| {
                                io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    format!("beyond the end of the truncated core file {}", self.core.path),
                                )
                            })?;
                        out[..n].copy_from_slice(src);
                        n
                    } else if self.backing(at).is_some() {
                        self.read_file_at(at, &mut out[..n])?
                    } else {
                        // Not dumped and no file: memory the process never wrote.
                        out[..n].fill(0);
                        n
                    }
                }
                None => self.read_file_at(at, out)?,
            };
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::EFAULT));
            }
            done += n;
        }
        Ok(())
    }
}

/// Where the file the core names `path` is looked for.
fn disk_path(path: &str, is_exe: bool, b: &Binaries) -> PathBuf {
    if let (true, Some(exe)) = (is_exe, &b.exe) {
        return exe.clone();
    }
    let clean = path.trim_end_matches(" (deleted)");
    match &b.sysroot {
        Some(root) => root.join(clean.trim_start_matches('/')),
        None => PathBuf::from(clean),
    }
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn open_checked(disk: PathBuf, core_id: Option<Vec<u8>>, b: &Binaries) -> FileState {
    let opened = match &b.in_memory {
        Some(files) => files
            .iter()
            .find(|(p, _)| *p == disk)
            .map(|(_, m)| m.clone())
            .ok_or_else(|| "not among the files in memory".to_string()),
        None => Mapped::open(&disk).map(Arc::new).map_err(|e| e.to_string()),
    };
    let map = match opened {
        Ok(m) => m,
        Err(error) => return FileState::Missing { disk, error },
    };
    if let Some(core_id) = core_id {
        let file_id = build_id(|off, len| {
            let off = usize::try_from(off).ok()?;
            map.bytes().get(off..off.checked_add(len)?)
        });
        if file_id.as_deref() != Some(core_id.as_slice()) {
            let file_id = file_id.map(|id| hex(&id)).unwrap_or_else(|| "none".into());
            return FileState::Mismatch { disk, core_id: hex(&core_id), file_id };
        }
        log::debug!("{}: build ID {} as the core has it", disk.display(), hex(&core_id));
    } else {
        log::debug!("{}: the core holds no build ID to check it against", disk.display());
    }
    FileState::Found { disk, map }
}

/// The GNU build ID of an ELF image read through `read(file offset, len)`: its program headers'
/// `PT_NOTE`s, decoded with bounds.
pub fn build_id<'a>(read: impl Fn(u64, usize) -> Option<&'a [u8]>) -> Option<Vec<u8>> {
    let eh = read(0, 64)?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 {
        return None;
    }
    let phoff = le_u64(eh, 0x20)?;
    let phentsize = u16::from_le_bytes([eh[0x36], eh[0x37]]) as u64;
    let phnum = u16::from_le_bytes([eh[0x38], eh[0x39]]) as u64;
    if phentsize < 56 {
        return None;
    }
    for i in 0..phnum.min(64) {
        let ph = read(phoff.checked_add(i * phentsize)?, 56)?;
        if le_u32(ph, 0)? != goblin::elf::program_header::PT_NOTE {
            continue;
        }
        let (off, size) = (le_u64(ph, 8)?, le_u64(ph, 32)?.min(4096));
        let Some(notes) = read(off, size as usize) else { continue };
        let mut at = 0u64;
        while let (Some(namesz), Some(descsz), Some(kind)) =
            (le_u32(notes, at), le_u32(notes, at + 4), le_u32(notes, at + 8))
        {
            let name_at = at + 12;
            let desc_at = name_at + ((namesz as u64 + 3) & !3);
            let desc = notes.get(desc_at as usize..(desc_at + descsz as u64) as usize)?;
            let name = notes.get(name_at as usize..(name_at + namesz as u64) as usize)?;
            if kind == goblin::elf::note::NT_GNU_BUILD_ID && name.starts_with(b"GNU") && !desc.is_empty() {
                return Some(desc.to_vec());
            }
            at = desc_at + ((descsz as u64 + 3) & !3);
        }
    }
    None
}

/// The core's memory walked from several threads: each reads the mapped file itself.
impl super::readers::ThreadReaders for CoreMemory {
    type Reader<'s> = &'s CoreMemory;
    fn readers(&self, n: usize, _owner: &dyn Fn(u64) -> usize) -> Vec<Self::Reader<'_>> {
        vec![self; n]
    }
    fn object_ranges(&self) -> Vec<(u64, u64)> {
        self.readable_ranges()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::core::tests::{note, nt_file};
    use crate::memory::ReadExt;

    /// A minimal ELF image: a header, one PT_NOTE with a GNU build ID, padded to `len` with `fill`.
    fn elf_with_id(id: &[u8; 4], len: usize, fill: u8) -> Vec<u8> {
        let mut b = crate::memory::synthetic::elf_with_build_id(id);
        b.resize(len, fill);
        b
    }

    /// An ELF core: header, program headers (PT_NOTE first, as the kernel writes them), notes, data.
    fn core_bytes(loads: &[(u64, u64, u64, &[u8])], notes: &[u8], truncated_load: Option<(u64, u64)>) -> Vec<u8> {
        let n = 1 + loads.len() + truncated_load.is_some() as usize;
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[6] = 1;
        h[16..18].copy_from_slice(&goblin::elf::header::ET_CORE.to_le_bytes());
        h[18..20].copy_from_slice(&62u16.to_le_bytes());
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[52..54].copy_from_slice(&64u16.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&(n as u16).to_le_bytes());
        let data_at = 64 + 56 * n as u64;
        let ph = |kind: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64| {
            let mut p = vec![0u8; 56];
            p[..4].copy_from_slice(&kind.to_le_bytes());
            p[4..8].copy_from_slice(&flags.to_le_bytes());
            for (at, v) in [(8, offset), (16, vaddr), (32, filesz), (40, memsz)] {
                p[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            p
        };
        let mut out = h;
        out.extend(ph(PT_NOTE_, 0, data_at, 0, notes.len() as u64, 0));
        let mut at = data_at + notes.len() as u64;
        let mut data = notes.to_vec();
        for (vaddr, memsz, flags, bytes) in loads {
            out.extend(ph(goblin::elf::program_header::PT_LOAD, *flags as u32, at, *vaddr, bytes.len() as u64, *memsz));
            at += bytes.len() as u64;
            data.extend_from_slice(bytes);
        }
        if let Some((vaddr, size)) = truncated_load {
            out.extend(ph(goblin::elf::program_header::PT_LOAD, 6, at + 0x10000, vaddr, size, size));
        }
        out.extend(data);
        out
    }
    const PT_NOTE_: u32 = goblin::elf::program_header::PT_NOTE;

    #[test]
    fn reads_segments_files_zeros_and_refuses_beyond_the_end() {
        let dir = std::env::temp_dir().join(format!("memspy-core-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join("lib.so");
        std::fs::write(&lib, elf_with_id(b"\xaa\xbb\xcc\xdd", 0x3000, 0x5a)).unwrap();
        let other = dir.join("other.so");
        std::fs::write(&other, elf_with_id(b"\x11\x22\x33\x44", 0x1000, 0)).unwrap();
        let (l, o) = (lib.display().to_string(), other.display().to_string());
        let mut notes = note(3, &{
            let mut p = vec![0u8; 136];
            p[24..28].copy_from_slice(&77u32.to_le_bytes());
            p
        });
        notes.extend(note(
            0x4649_4c45,
            &nt_file(&[(0x20000, 0x21000, 1, &l), (0x30000, 0x31000, 0, &l), (0x60000, 0x61000, 0, &o)]),
        ));
        let dumped_header = elf_with_id(b"\x99\x99\x99\x99", 0x1000, 0);
        let first: Vec<u8> = (0..0x1000u32).map(|i| i as u8).collect();
        let bytes = core_bytes(
            &[(0x10000, 0x2000, 6, &first), (0x20000, 0x1000, 4, &[]), (0x60000, 0x1000, 4, &dumped_header)],
            &notes,
            Some((0x40000, 0x1000)),
        );
        let path = dir.join("core");
        std::fs::write(&path, &bytes).unwrap();
        let core = CoreFile::open(&path).unwrap();
        assert_eq!(core.notes.pid, 77);
        assert_eq!(core.missing_bytes(), 0x1000);
        let mem = CoreMemory::new(core, &Binaries::default());
        // Dumped bytes, then zeros past p_filesz (no file there).
        let mut b = [0u8; 8];
        mem.read(0x10ffc, &mut b).unwrap();
        assert_eq!(b, [0xfc, 0xfd, 0xfe, 0xff, 0, 0, 0, 0]);
        // Not dumped, file-backed: the file at the mapping's offset (page 1), and a mapping with no
        // segment at all.
        assert_eq!(mem.u8_at(0x20000, "x").unwrap(), 0x5a);
        assert_eq!(mem.bytes_at(0x30000, 4, "x").unwrap(), b"\x7fELF");
        // Beyond the end of the truncated core: an error naming it; unmapped: EFAULT.
        let e = mem.u64_at(0x40008, "thing").unwrap_err();
        assert!(e.to_string().contains("0x40008") && e.to_string().contains("truncated"), "{e}");
        assert!(mem.read(0x50000, &mut b).is_err());
        // The build IDs: the core has none for lib.so (its first page is not dumped); other.so's
        // dumped header names another build than the file.
        assert!(matches!(mem.file(&l), Some(FileState::Found { .. })));
        match mem.file(&o) {
            Some(FileState::Mismatch { core_id, file_id, .. }) => {
                assert_eq!((core_id.as_str(), file_id.as_str()), ("99999999", "11223344"))
            }
            _ => panic!("other.so should mismatch"),
        }
        // The rebuilt map: every segment, and the mapping without one.
        let starts: Vec<(u64, &str)> = mem.maps.entries.iter().map(|m| (m.start, m.perms.as_str())).collect();
        assert_eq!(
            starts,
            vec![(0x10000, "rw-p"), (0x20000, "r--p"), (0x30000, "r--p"), (0x40000, "rw-p"), (0x60000, "r--p")]
        );
        assert_eq!(
            mem.readable_ranges(),
            vec![(0x10000, 0x12000), (0x20000, 0x21000), (0x40000, 0x41000), (0x60000, 0x61000)]
        );
        // A missing file: its pages are unreadable, with its name.
        let gone = Binaries { sysroot: Some(dir.join("nowhere")), ..Default::default() };
        let mem = CoreMemory::new(CoreFile::open(&path).unwrap(), &gone);
        let e = mem.u8_at(0x20000, "x").unwrap_err();
        assert!(e.to_string().contains("lib.so"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_cores_never_panic() {
        let dir = std::env::temp_dir().join(format!("memspy-core-unit-mut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut notes = note(3, &[1u8; 136]);
        notes.extend(note(0x4649_4c45, &nt_file(&[(0x10000, 0x12000, 0, "/nonexistent/x.so")])));
        notes.extend(note(6, &[9u8; 64]));
        let clean = core_bytes(&[(0x10000, 0x2000, 6, &[7u8; 0x100])], &notes, Some((0x30000, 0x1000)));
        let path = dir.join("core");
        // Deterministic byte flips in the headers and notes (xorshift).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..600 {
            let mut b = clean.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x % (64 + 56 * 3 + notes.len() as u64)) as usize;
                b[at] = (x >> 32) as u8;
            }
            std::fs::write(&path, &b).unwrap();
            if let Ok(core) = CoreFile::open(&path) {
                let _ = core.missing_bytes();
                let mem = CoreMemory::new(core, &Binaries::default());
                let mut buf = [0u8; 64];
                for addr in [0, 0x10000, 0x11ff0, 0x30000, u64::MAX - 8] {
                    let _ = mem.read(addr, &mut buf);
                }
                let _ = mem.readable_ranges();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn not_cores() {
        let dir = std::env::temp_dir().join(format!("memspy-core-unit-not-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("text");
        std::fs::write(&text, "hello").unwrap();
        assert!(matches!(CoreFile::open(&text), Err(crate::error::Error::NotCore { .. })));
        let lib = dir.join("lib.so");
        std::fs::write(&lib, elf_with_id(b"\x01\x02\x03\x04", 0x200, 0)).unwrap();
        assert!(matches!(CoreFile::open(&lib), Err(crate::error::Error::NotCore { .. })));
        // Cut anywhere: an error or a core, never a panic.
        let bytes = core_bytes(&[(0x10000, 0x1000, 6, &[7u8; 0x1000])], &note(3, &[0u8; 136]), None);
        for cut in (0..bytes.len()).step_by(97) {
            std::fs::write(&text, &bytes[..cut]).unwrap();
            let _ = CoreFile::open(&text);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file that ends before the offset a mapping names (a shorter file than the process mapped):
    /// zeros, not a panic (found by the core_file fuzz target).
    #[test]
    fn a_mapping_past_the_end_of_its_file_reads_zeros() {
        let notes = note(0x4649_4c45, &nt_file(&[(0x20000, 0x22000, 1, "/x.so")]));
        let core = CoreFile::from_bytes("core", core_bytes(&[(0x10000, 0x10, 6, &[1u8; 0x10])], &notes, None)).unwrap();
        let small = Arc::new(Mapped::from_vec(vec![7u8; 0x100]));
        let b = Binaries { in_memory: Some(Arc::new(vec![(PathBuf::from("/x.so"), small)])), ..Default::default() };
        let mem = CoreMemory::new(core, &b);
        assert!(matches!(mem.file("/x.so"), Some(FileState::Found { .. })));
        assert_eq!(mem.u64_at(0x21ff8, "x").unwrap(), 0);
        // Not a file on disk: the files in memory are the only ones looked at.
        let mem = CoreMemory::new(
            CoreFile::from_bytes("core", core_bytes(&[], &notes, None)).unwrap(),
            &Binaries { in_memory: Some(Arc::new(Vec::new())), ..Default::default() },
        );
        assert!(matches!(mem.file("/x.so"), Some(FileState::Missing { .. })));
    }

    /// File mappings that overlap, each spanning every gap between the segments (a corrupt core): each
    /// gap is one entry of the rebuilt map, not one per mapping (which would be files × segments).
    #[test]
    fn overlapping_file_mappings_do_not_multiply_the_map() {
        let gaps: Vec<(u64, u64, u64, &[u8])> =
            (0..100u64).map(|i| (0x10000 + i * 0x2000, 0x1000, 6, &[][..])).collect();
        let spans: Vec<(u64, u64, u64, &str)> =
            (0..200u64).map(|i| (0x10000 + i * 8, 0x1000_0000, 0, "/x.so")).collect();
        let core = core_bytes(&gaps, &note(0x4649_4c45, &nt_file(&spans)), None);
        let mem = CoreMemory::new(CoreFile::from_bytes("core", core).unwrap(), &Binaries::default());
        let e = &mem.maps.entries;
        // 100 segments, the 99 gaps between them and what follows the last: 200 entries, in order.
        assert_eq!(e.len(), 200);
        assert!(e.windows(2).all(|w| w[0].end <= w[1].start), "sorted, disjoint");
        assert_eq!((e[1].start, e[1].end, e[1].perms.as_str()), (0x11000, 0x12000, "r--p"));
        assert_eq!((e[199].start, e[199].end), (0x10000 + 99 * 0x2000 + 0x1000, 0x1000_0000));
        assert!(e.iter().all(|m| m.path.as_deref() == Some("/x.so")));
    }

    /// Segments whose sizes add up past 2^64 (found by the core_file fuzz target): the total saturates.
    #[test]
    fn mapped_bytes_saturate() {
        let huge: &[u8] = &[];
        let core = core_bytes(&[(0x10000, u64::MAX / 2, 6, huge), (0x20000, u64::MAX / 2 + 8, 6, huge)], &[], None);
        let mem = CoreMemory::new(CoreFile::from_bytes("core", core).unwrap(), &Binaries::default());
        assert_eq!(mem.mapped_bytes(), u64::MAX);
    }
}
