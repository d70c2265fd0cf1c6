//! An ELF core file (gdb's `gcore`, systemd-coredump, the kernel): mapped read-only, its program headers
//! (`PT_LOAD`: the dumped memory) and notes decoded with bounds — `NT_FILE` (the file mappings),
//! `NT_PRSTATUS` (one per thread), `NT_PRPSINFO` (PID, command), `NT_AUXV` (the entry point, which names
//! the executable). [`super::core_memory`] reads the process's memory from it.

use std::fs::File;
use std::path::Path;

use goblin::elf::header::{ELFCLASS64, ELFMAG, ET_CORE, SELFMAG};
use goblin::elf::program_header::{ProgramHeader, PT_LOAD, PT_NOTE};

use crate::error::{Error, Result};
use crate::memory::{le_u32, le_u64};

/// A file mapped read-only into memspy (a core file, or a binary it names). Never written. (A file cut
/// short by someone else while it is mapped would fault on the lost pages: cores are not files in use.)
/// Tests and the fuzz harness hand over bytes already in memory instead ([`Mapped::from_vec`]).
pub struct Mapped {
    ptr: *const u8,
    len: usize,
    /// Bytes owned rather than mapped (`ptr` is then unused).
    owned: Option<Vec<u8>>,
}

// SAFETY: the mapping is read-only (PROT_READ, MAP_PRIVATE) and never changed through this type; shared
// references to its bytes may cross threads.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps `path` read-only (an empty file maps to no bytes).
    pub fn open(path: &Path) -> std::io::Result<Mapped> {
        Mapped::of_file(&File::open(path)?)
    }

    /// Maps an open file read-only (the mapping outlives the descriptor).
    pub fn of_file(file: &File) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
        }
        let len = usize::try_from(meta.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "file too large"))?;
        if len == 0 {
            return Ok(Mapped::from_vec(Vec::new()));
        }
        // SAFETY: a fresh read-only private mapping of an open file; checked for failure below.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr: ptr as *const u8, len, owned: None })
    }

    /// Bytes in memory, read as a mapped file's would be.
    pub fn from_vec(bytes: Vec<u8>) -> Mapped {
        Mapped { ptr: std::ptr::null(), len: 0, owned: Some(bytes) }
    }

    pub fn bytes(&self) -> &[u8] {
        if let Some(b) = &self.owned {
            return b;
        }
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} bytes)", self.bytes().len())
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 && self.owned.is_none() {
            // SAFETY: unmaps exactly what `open` mapped; no reference to the bytes outlives `self`.
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
        }
    }
}

/// One `PT_LOAD` segment: `memsz` bytes at `vaddr`, the first `filesz` of them at `offset` in the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    /// PF_R, PF_W, PF_X.
    pub flags: u32,
}

impl Segment {
    pub fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.memsz)
    }
}

/// One mapping of the `NT_FILE` note: `[start, end)` maps `path` from byte `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub path: String,
}

/// What the notes say of the process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessNotes {
    pub pid: i32,
    /// The command name (`comm`, at most 15 bytes) and its arguments as `ps` shows them.
    pub command: String,
    pub args: String,
    /// Thread IDs, one per `NT_PRSTATUS`, in the core's order (the first is the thread that crashed).
    pub threads: Vec<i32>,
    pub files: Vec<FileMapping>,
    /// `AT_ENTRY` of the auxiliary vector: the executable's entry point.
    pub entry: Option<u64>,
}

/// A core file, mapped.
pub struct CoreFile {
    pub path: String,
    map: Mapped,
    /// Sorted by address.
    pub segments: Vec<Segment>,
    pub notes: ProcessNotes,
    /// Where the `PT_NOTE` segments lie in the file (offset, size), checked to be within it.
    note_segments: Vec<(usize, usize)>,
}

const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_FILE: u32 = 0x4649_4c45;
const AT_ENTRY: u64 = 9;
/// Most notes, threads and file mappings decoded (a corrupt count cannot make memspy loop for long).
const MAX_NOTES: usize = 1 << 20;
const MAX_SEGMENTS: usize = 1 << 20;

impl CoreFile {
    /// Opens and checks a core file: an ELF file, 64-bit, of type ET_CORE, whose notes are within it.
    pub fn open(path: &Path) -> Result<CoreFile> {
        use super::unpack::{self, Packing, UnpackError};
        let shown = path.display().to_string();
        let cannot_open = |e: std::io::Error| Error::Other(format!("cannot open core file {shown}: {e}"));
        let map = match unpack::packing_of(path).map_err(cannot_open)? {
            Packing::Plain => Mapped::open(path).map_err(cannot_open)?,
            // systemd-coredump's: decompressed into a file without a name, mapped like a plain core.
            Packing::Zstd => match unpack::unzstd(path) {
                Ok((file, _)) => Mapped::of_file(&file).map_err(cannot_open)?,
                Err(UnpackError::Corrupt(e)) => return Err(Error::CoreUnpack { path: shown, detail: e.to_string() }),
                Err(UnpackError::NoRoom(e) | UnpackError::Write(e)) => {
                    let dir = std::env::temp_dir().display().to_string();
                    return Err(Error::CoreNoRoom { path: shown, dir, detail: e.to_string() });
                }
            },
            Packing::Other { format, command } => {
                return Err(Error::CorePacked { path: shown, format: format.into(), command: command.into() })
            }
        };
        let core = CoreFile::parse(shown, map)?;
        Ok(core)
    }

    /// Reads a core file's bytes already in memory (tests, the fuzz harness); `path` names it in errors.
    pub fn from_bytes(path: &str, bytes: Vec<u8>) -> Result<CoreFile> {
        CoreFile::parse(path.to_string(), Mapped::from_vec(bytes))
    }

    fn parse(path: String, map: Mapped) -> Result<CoreFile> {
        let bytes = map.bytes();
        let not_core = |why: String| Error::NotCore { path: path.clone(), why };
        if bytes.len() < SELFMAG || &bytes[..SELFMAG] != ELFMAG {
            return Err(not_core("not an ELF file".into()));
        }
        let header = goblin::elf::Elf::parse_header(bytes).map_err(|e| not_core(format!("bad ELF header: {e}")))?;
        if header.e_ident[goblin::elf::header::EI_CLASS] != ELFCLASS64 {
            return Err(not_core("not a 64-bit ELF file".into()));
        }
        if header.e_type != ET_CORE {
            return Err(not_core(format!(
                "an ELF file of type {}, not a core",
                goblin::elf::header::et_to_str(header.e_type)
            )));
        }
        let phnum = header.e_phnum as usize;
        if phnum > MAX_SEGMENTS {
            return Err(not_core(format!("{phnum} program headers")));
        }
        let end_of_headers =
            (header.e_phoff as usize).saturating_add(phnum.saturating_mul(header.e_phentsize as usize));
        if end_of_headers > bytes.len() {
            return Err(Error::CoreTruncated { path, detail: "its program headers lie beyond the end".into() });
        }
        let ctx = goblin::container::Ctx::new(goblin::container::Container::Big, goblin::container::Endian::Little);
        let phdrs = ProgramHeader::parse(bytes, header.e_phoff as usize, phnum, ctx)
            .map_err(|e| not_core(format!("bad program headers: {e}")))?;
        let mut segments = Vec::new();
        let mut notes = ProcessNotes::default();
        let mut note_segments = Vec::new();
        for ph in &phdrs {
            match ph.p_type {
                PT_LOAD => segments.push(Segment {
                    vaddr: ph.p_vaddr,
                    memsz: ph.p_memsz,
                    offset: ph.p_offset,
                    filesz: ph.p_filesz.min(ph.p_memsz),
                    flags: ph.p_flags,
                }),
                PT_NOTE => {
                    let end = ph.p_offset.checked_add(ph.p_filesz).filter(|&e| e <= bytes.len() as u64);
                    let Some(end) = end else {
                        return Err(Error::CoreTruncated { path, detail: "its notes lie beyond the end".into() });
                    };
                    decode_notes(&bytes[ph.p_offset as usize..end as usize], &mut notes);
                    note_segments.push((ph.p_offset as usize, (end - ph.p_offset) as usize));
                }
                _ => {}
            }
        }
        segments.sort_by_key(|s| s.vaddr);
        Ok(CoreFile { path, map, segments, notes, note_segments })
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    /// Every note of the core's `PT_NOTE` segments: (name, type, descriptor), in file order, bounded.
    pub fn each_note(&self, mut f: impl FnMut(&[u8], u32, &[u8])) {
        for &(at, len) in &self.note_segments {
            each_note(&self.bytes()[at..at + len], &mut f);
        }
    }

    /// Bytes the segments' dumped parts miss because the file ends early (0: not truncated).
    pub fn missing_bytes(&self) -> u64 {
        let len = self.bytes().len() as u64;
        self.segments
            .iter()
            .map(|s| s.offset.saturating_add(s.filesz).saturating_sub(len.max(s.offset)).min(s.filesz))
            .fold(0u64, u64::saturating_add)
    }
}

/// Calls `f` with each note of one PT_NOTE segment (4-byte aligned name and descriptor; the name without
/// its NUL), bounded; stops at the first note that does not fit.
fn each_note(buf: &[u8], f: &mut impl FnMut(&[u8], u32, &[u8])) {
    let align4 = |n: u64| n.saturating_add(3) & !3;
    let mut at = 0u64;
    for _ in 0..MAX_NOTES {
        let (Some(namesz), Some(descsz), Some(kind)) = (le_u32(buf, at), le_u32(buf, at + 4), le_u32(buf, at + 8))
        else {
            return;
        };
        let name_at = at + 12;
        let desc_at = name_at + align4(namesz as u64);
        let next = desc_at + align4(descsz as u64);
        let Some(desc) = buf.get(desc_at as usize..(desc_at + descsz as u64) as usize) else { return };
        let name = buf.get(name_at as usize..(name_at + namesz as u64) as usize).unwrap_or(&[]);
        f(name.split(|b| *b == 0).next().unwrap_or(&[]), kind, desc);
        if next <= at {
            return;
        }
        at = next;
    }
}

/// Decodes the process's notes (name "CORE") of one PT_NOTE segment.
fn decode_notes(buf: &[u8], out: &mut ProcessNotes) {
    each_note(buf, &mut |name, kind, desc| {
        if name != b"CORE" {
            return;
        }
        match kind {
            // struct elf_prstatus: pr_pid after siginfo (12), cursig (2 + 2), sigpend, sighold (8 + 8).
            NT_PRSTATUS => {
                if let Some(tid) = le_u32(desc, 32) {
                    if out.threads.len() < MAX_NOTES {
                        out.threads.push(tid as i32);
                    }
                }
            }
            // struct elf_prpsinfo: state, sname, zomb, nice, pad, flag (8), uid, gid, pid, ppid, pgrp,
            // sid, fname[16], psargs[80].
            NT_PRPSINFO => {
                if let Some(pid) = le_u32(desc, 24) {
                    out.pid = pid as i32;
                }
                out.command = c_string(desc.get(40..56).unwrap_or(&[]));
                out.args = c_string(desc.get(56..136).unwrap_or(&[]));
            }
            NT_AUXV => {
                let mut i = 0u64;
                while let (Some(k), Some(v)) = (le_u64(desc, i), le_u64(desc, i + 8)) {
                    if k == AT_ENTRY {
                        out.entry = Some(v);
                    }
                    if k == 0 {
                        break;
                    }
                    i += 16;
                }
            }
            NT_FILE => out.files = decode_nt_file(desc),
            _ => {}
        }
    });
}

/// NT_FILE: count, page size, count × (start, end, offset in pages), then count NUL-terminated paths.
fn decode_nt_file(desc: &[u8]) -> Vec<FileMapping> {
    let (Some(count), Some(page)) = (le_u64(desc, 0), le_u64(desc, 8)) else { return Vec::new() };
    // Each entry takes 24 bytes plus at least one for its name: a larger count cannot fit.
    let count = count.min(desc.len() as u64 / 25) as usize;
    let mut names = desc.get(16 + count * 24..).unwrap_or(&[]).split(|b| *b == 0);
    let mut out = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let at = 16 + i * 24;
        let (Some(start), Some(end), Some(pages)) = (le_u64(desc, at), le_u64(desc, at + 8), le_u64(desc, at + 16))
        else {
            break;
        };
        let Some(name) = names.next() else { break };
        if end <= start {
            continue;
        }
        out.push(FileMapping {
            start,
            end,
            offset: pages.saturating_mul(page),
            path: String::from_utf8_lossy(name).into_owned(),
        });
    }
    out
}

fn c_string(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or(&[])).trim_end().to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One note: name "CORE", type, descriptor, 4-byte aligned.
    /// One note named `CORE`, as the kernel writes them.
    pub fn note(kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        crate::memory::synthetic::note(&mut n, "CORE", kind, desc);
        n
    }

    pub fn nt_file(entries: &[(u64, u64, u64, &str)]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        d.extend_from_slice(&4096u64.to_le_bytes());
        for (s, e, o, _) in entries {
            for v in [s, e, o] {
                d.extend_from_slice(&v.to_le_bytes());
            }
        }
        for (_, _, _, p) in entries {
            d.extend_from_slice(p.as_bytes());
            d.push(0);
        }
        d
    }

    #[test]
    fn notes_decode() {
        let mut prps = vec![0u8; 136];
        prps[24..28].copy_from_slice(&4321u32.to_le_bytes());
        prps[40..47].copy_from_slice(b"python3");
        prps[56..70].copy_from_slice(b"python3 app.py");
        let mut prstatus = vec![0u8; 336];
        prstatus[32..36].copy_from_slice(&4322u32.to_le_bytes());
        let mut auxv = Vec::new();
        for v in [AT_ENTRY, 0x401000, 0, 0] {
            auxv.extend_from_slice(&v.to_le_bytes());
        }
        let mut buf = note(NT_PRPSINFO, &prps);
        buf.extend(note(NT_PRSTATUS, &prstatus));
        buf.extend(note(NT_AUXV, &auxv));
        buf.extend(note(
            NT_FILE,
            &nt_file(&[(0x400000, 0x401000, 0, "/usr/bin/python3"), (0x500000, 0x400000, 0, "/bad")]),
        ));
        let mut n = ProcessNotes::default();
        decode_notes(&buf, &mut n);
        assert_eq!((n.pid, n.command.as_str(), n.args.as_str()), (4321, "python3", "python3 app.py"));
        assert_eq!(n.threads, vec![4322]);
        assert_eq!(n.entry, Some(0x401000));
        assert_eq!(
            n.files,
            vec![FileMapping { start: 0x400000, end: 0x401000, offset: 0, path: "/usr/bin/python3".into() }]
        );
        // Truncated anywhere: no panic, what was whole is kept.
        for cut in 0..buf.len() {
            let mut n = ProcessNotes::default();
            decode_notes(&buf[..cut], &mut n);
        }
        // A huge count in NT_FILE is bounded by the descriptor's size.
        let mut d = nt_file(&[(1, 2, 0, "/x")]);
        d[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_nt_file(&d).len() <= 1);
    }
}
