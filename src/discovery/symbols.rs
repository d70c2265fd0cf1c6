//! Local (static) symbols of the target's runtime binary: from its own `.symtab`, or, when it is
//! stripped, from its separate debug file found by build ID (`/usr/lib/debug/.build-id/xx/yyyy.debug`,
//! looked up through `/proc/PID/root` first so that containers resolve to their own files; a core's under
//! `--sysroot`).
//!
//! Used for what is not reachable from `_PyRuntime`: the 3.9–3.11 pymalloc globals.

use std::collections::HashMap;

use goblin::elf::Elf;

use super::elf::ElfInfo;
use crate::process::Target;

/// Where symbols were found, for messages.
#[derive(Clone, Debug)]
pub struct FoundSymbols {
    /// Runtime addresses (load bias applied), by name without any `.lto_priv.N` / `.N` suffix.
    pub addrs: HashMap<String, u64>,
    /// The file the `.symtab` came from.
    pub source: String,
}

/// The GNU build ID of an ELF file, as lowercase hex.
pub fn build_id(elf: &Elf, bytes: &[u8]) -> Option<String> {
    let notes = elf.iter_note_sections(bytes, None).or_else(|| elf.iter_note_headers(bytes))?;
    for note in notes.flatten() {
        if note.n_type == goblin::elf::note::NT_GNU_BUILD_ID && note.name == "GNU" && !note.desc.is_empty() {
            return Some(note.desc.iter().map(|b| format!("{b:02x}")).collect());
        }
    }
    None
}

/// Looks up `names` (local symbols, LTO suffixes ignored) for the mapped file `path` of `target`.
/// Err says why they are not reachable (stripped and no debug file, …).
pub fn find(target: &Target, path: &str, names: &[&str]) -> Result<FoundSymbols, String> {
    let bytes = target.read_file(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let info = ElfInfo::parse(path, &bytes)?;
    let bias = info.load_bias(&target.maps).ok_or_else(|| format!("{path} is not mapped at file offset 0"))?;
    let elf = Elf::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let mut tried = Vec::new();
    if info.has_symtab {
        let addrs = collect(&elf, names, bias);
        if names.iter().all(|n| addrs.contains_key(*n)) {
            return Ok(FoundSymbols { addrs, source: path.to_string() });
        }
        tried.push(format!("{path} (.symtab without them)"));
    } else {
        tried.push(format!("{path} (stripped)"));
    }
    let Some(id) = build_id(&elf, &bytes) else {
        return Err(format!("{} and it has no build ID to find a debug file", tried.join(", ")));
    };
    if id.len() < 3 {
        return Err(format!("{path}: build ID {id} is too short"));
    }
    let rel = format!("/usr/lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..]);
    for candidate in target.root_paths(&rel) {
        let Ok(dbg) = std::fs::read(&candidate) else {
            continue;
        };
        let Ok(delf) = Elf::parse(&dbg) else {
            tried.push(format!("{candidate} (not ELF)"));
            continue;
        };
        let addrs = collect(&delf, names, bias);
        if names.iter().all(|n| addrs.contains_key(*n)) {
            return Ok(FoundSymbols { addrs, source: candidate });
        }
        tried.push(format!("{candidate} (without them)"));
    }
    tried.push(format!("no debug file {rel}"));
    Err(tried.join(", "))
}

fn collect(elf: &Elf, names: &[&str], bias: u64) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for sym in elf.syms.iter() {
        if sym.st_value == 0 || sym.is_function() {
            continue;
        }
        let Some(name) = elf.strtab.get_at(sym.st_name) else { continue };
        let base = name.split('.').next().unwrap_or(name);
        if names.contains(&base) {
            // Prefer the exact name over a suffixed duplicate.
            if base == name || !out.contains_key(base) {
                out.insert(base.to_string(), sym.st_value.wrapping_add(bias));
            }
        }
    }
    out
}
