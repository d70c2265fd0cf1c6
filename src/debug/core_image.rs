//! Heap images written as ELF core files, for the core reader's fuzz target: the image's regions as
//! `PT_LOAD` segments, some of them left out of the core (no segment, or a segment with no bytes dumped,
//! as gcore and the kernel leave out read-only file mappings) and held by a file the `NT_FILE` note maps
//! there instead; `NT_PRPSINFO`, `NT_PRSTATUS`, `NT_AUXV` as the kernel writes them. The files and what
//! a walk needs to start (version, `_PyRuntime`, flags) travel in notes named `MEMSPY`, so that one
//! input is one ELF core file and the harness never opens a file of the host.
//!
//! Notes `MEMSPY`: type 1 = version hex, `_PyRuntime` address, flags ([`super::Image::flags`]), 8 bytes
//! each; type 2 = a file: its path, a NUL, its bytes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use python_bindings::Version;

use super::{interpreter_of, walk_memory, Image};
use crate::analysis::Histogram;
use crate::error::{Error, Result};
use crate::memory::core::{CoreFile, Mapped};
use crate::memory::core_memory::{Binaries, CoreMemory};
use crate::memory::synthetic::{elf_with_build_id, note};
use crate::memory::{le_u64, Memory};
use crate::walk::WalkSummary;

/// What the stable harness splices into cores: note names and types, ELF magic, small sizes.
pub const TOKENS: &[&[u8]] = &[b"CORE\0\0\0\0", b"MEMSPY\0\0", b"ELIF", b"\x7fELF", &[0; 8], &[0xff; 8], &[4, 0, 0, 0]];

const NOTE_START: u32 = 1;
const NOTE_FILE: u32 = 2;
/// Most files the harness takes from one input's notes.
const MAX_FILES: usize = 8;
const EXE: &str = "/usr/bin/python3";
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_R: u32 = 4;
const PF_W: u32 = 2;

/// `img` as an ELF core file (see the module's description): every third region held by the
/// executable's file instead of the core (alternately with no segment and with an empty one).
pub fn core_from_image(img: &Image) -> Vec<u8> {
    let end = img.mem.regions.iter().map(|(a, b)| a + b.len() as u64).max().unwrap_or(0);
    let exe_base = (end + 0x1_ffff) & !0xffff;
    let head = elf_with_build_id(b"memspy\x00\x01");
    // The executable's file: its head, then the bytes of the regions it maps.
    let mut file = head.clone();
    // (address, size in memory, dumped bytes, flags) of each PT_LOAD; NT_FILE (start, end, offset).
    let mut loads: Vec<(u64, u64, &[u8], u32)> = vec![(exe_base, head.len() as u64, &head[..], PF_R)];
    let mut mapped = vec![(exe_base, exe_base + head.len() as u64, 0u64)];
    for (i, (addr, bytes)) in img.mem.regions.iter().enumerate() {
        if i % 3 == 2 {
            mapped.push((*addr, addr + bytes.len() as u64, file.len() as u64));
            file.extend_from_slice(bytes);
            if i % 6 == 5 {
                loads.push((*addr, bytes.len() as u64, &[], PF_R));
            }
        } else {
            loads.push((*addr, bytes.len() as u64, bytes, PF_R | PF_W));
        }
    }
    let mut notes = Vec::new();
    let mut prps = vec![0u8; 136];
    prps[24..28].copy_from_slice(&4242u32.to_le_bytes());
    prps[40..47].copy_from_slice(b"python3");
    prps[56..69].copy_from_slice(b"python3 -I -S");
    note(&mut notes, "CORE", 3, &prps);
    let mut prstatus = vec![0u8; 336];
    prstatus[32..36].copy_from_slice(&4242u32.to_le_bytes());
    note(&mut notes, "CORE", 1, &prstatus);
    let auxv: Vec<u8> = [9, exe_base + 16, 0, 0].iter().flat_map(|v: &u64| v.to_le_bytes()).collect();
    note(&mut notes, "CORE", 6, &auxv);
    // NT_FILE, its page size 1 so that a region's bytes need not start a page of the file.
    let mut nt_file: Vec<u8> = [mapped.len() as u64 + 1, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let missing = exe_base + 0x10000;
    for (s, e, o) in mapped.iter().copied().chain([(missing, missing + 0x1000, 0)]) {
        nt_file.extend([s, e, o].iter().flat_map(|v| v.to_le_bytes()));
    }
    for _ in &mapped {
        nt_file.extend_from_slice(EXE.as_bytes());
        nt_file.push(0);
    }
    nt_file.extend_from_slice(b"/usr/lib/libmissing.so\0");
    note(&mut notes, "CORE", 0x4649_4c45, &nt_file);
    let start: Vec<u8> = [img.version.hex(), img.runtime, img.flags()].iter().flat_map(|v| v.to_le_bytes()).collect();
    note(&mut notes, "MEMSPY", NOTE_START, &start);
    let mut f = EXE.as_bytes().to_vec();
    f.push(0);
    f.extend_from_slice(&file);
    note(&mut notes, "MEMSPY", NOTE_FILE, &f);

    let n = 1 + loads.len();
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4..7].copy_from_slice(&[2, 1, 1]);
    out[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&(n as u16).to_le_bytes());
    let ph = |out: &mut Vec<u8>, kind: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64| {
        let mut p = [0u8; 56];
        p[..4].copy_from_slice(&kind.to_le_bytes());
        p[4..8].copy_from_slice(&flags.to_le_bytes());
        for (at, v) in [(8, offset), (16, vaddr), (24, vaddr), (32, filesz), (40, memsz), (48, 1)] {
            p[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&p);
    };
    let mut at = 64 + 56 * n as u64;
    ph(&mut out, PT_NOTE, 0, at, 0, notes.len() as u64, 0);
    at += notes.len() as u64;
    for (vaddr, memsz, bytes, flags) in &loads {
        ph(&mut out, PT_LOAD, *flags, at, *vaddr, bytes.len() as u64, *memsz);
        at += bytes.len() as u64;
    }
    out.extend_from_slice(&notes);
    for (_, _, bytes, _) in &loads {
        out.extend_from_slice(bytes);
    }
    out
}

/// Where a walk starts: version, `_PyRuntime`, flags.
pub type Start = (Version, u64, u64);

/// An input read as the core reader reads a core file: its headers and notes, the files its `MEMSPY`
/// notes hold standing in for the host's, and where a walk starts (version, `_PyRuntime`, flags).
pub fn open_core(data: &[u8]) -> Result<(CoreMemory, Option<Start>)> {
    let core = CoreFile::from_bytes("fuzz.core", data.to_vec())?;
    let mut files: Vec<(PathBuf, Arc<Mapped>)> = Vec::new();
    let mut start = None;
    core.each_note(|name, kind, desc| {
        if name != b"MEMSPY" {
            return;
        }
        match kind {
            NOTE_START => {
                if let (Some(v), Some(runtime), Some(flags)) = (le_u64(desc, 0), le_u64(desc, 8), le_u64(desc, 16)) {
                    start = Version::from_hex(v).map(|v| (v, runtime, flags));
                }
            }
            NOTE_FILE if files.len() < MAX_FILES => {
                let mut parts = desc.splitn(2, |b| *b == 0);
                let path = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
                let bytes = parts.next().unwrap_or(&[]).to_vec();
                files.push((PathBuf::from(path), Arc::new(Mapped::from_vec(bytes))));
            }
            _ => {}
        }
    });
    let binaries = Binaries { in_memory: Some(Arc::new(files)), ..Default::default() };
    Ok((CoreMemory::new(core, &binaries), start))
}

/// Reads the core `data` and walks the tracked objects of the memory it yields (as
/// [`super::Image::walk`] does an image's).
pub fn walk_core(data: &[u8], strict: bool, budget: Duration) -> Result<(Histogram, WalkSummary)> {
    let (mem, start) = open_core(data)?;
    let (version, runtime, flags) = start.ok_or_else(|| Error::Corrupt("core: no MEMSPY start note".into()))?;
    walk_memory(&mem, &interpreter_of(&mem, version, runtime, flags)?, strict, budget)
}

/// The fuzzing entry point of the core reader: `data` is an ELF core file's bytes. Whatever they hold,
/// reading the core (headers, notes, segments, the files it maps), its address-space map and a walk of
/// its memory (strict and lenient) must return without panicking or allocating without bound.
pub fn fuzz_core(data: &[u8]) {
    let Ok((mem, start)) = open_core(data) else { return };
    let _ = mem.core.missing_bytes();
    let _ = (mem.readable_ranges(), mem.mapped_bytes(), mem.files().count());
    let mut buf = [0u8; 64];
    for m in mem.maps.entries.iter().take(64) {
        let _ = mem.read(m.start, &mut buf);
        let _ = mem.read(m.end.saturating_sub(32), &mut buf);
    }
    let Some((version, runtime, flags)) = start else { return };
    let Ok(interp) = interpreter_of(&mem, version, runtime, flags) else { return };
    for strict in [true, false] {
        let _ = walk_memory(&mem, &interp, strict, Duration::from_secs(2));
    }
}
