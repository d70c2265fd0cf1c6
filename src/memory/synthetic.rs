//! ELF pieces for synthetic inputs (unit tests, the fuzz corpus of core files): a note as the kernel
//! and the linker write them, and the smallest file that carries a GNU build ID (what the core reader
//! checks a mapped file against).

use goblin::elf::note::NT_GNU_BUILD_ID;
use goblin::elf::program_header::PT_NOTE;

/// Appends one note: name size, descriptor size, type, the name and its NUL, the descriptor, each
/// part padded to 4 bytes.
pub fn note(out: &mut Vec<u8>, name: &str, kind: u32, desc: &[u8]) {
    for v in [name.len() as u32 + 1, desc.len() as u32, kind] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(desc);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A 64-bit little-endian ELF header, one `PT_NOTE` program header, and the note holding the GNU build
/// ID `id`.
pub fn elf_with_build_id(id: &[u8]) -> Vec<u8> {
    let mut notes = Vec::new();
    note(&mut notes, "GNU", NT_GNU_BUILD_ID, id);
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    let mut ph = vec![0u8; 56];
    ph[..4].copy_from_slice(&PT_NOTE.to_le_bytes());
    ph[8..16].copy_from_slice(&120u64.to_le_bytes());
    ph[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
    b.extend(ph);
    b.extend(notes);
    b
}
