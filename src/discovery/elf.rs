//! The ELF files of a target: symbols and sections of the python executable or libpython (opened by
//! [`crate::process::Target::read_file`]).

use goblin::elf::{program_header::PT_LOAD, Elf};

use crate::memory::maps::Maps;

/// What memspy needs from one ELF file.
#[derive(Clone, Debug, Default)]
pub struct ElfInfo {
    /// The path as the target maps it.
    pub path: String,
    /// ET_DYN (shared object or PIE) vs ET_EXEC.
    pub relocatable: bool,
    /// Whether the file has a `.symtab` (not stripped).
    pub has_symtab: bool,
    /// `_PyRuntime`, from `.dynsym`, `.symtab` or the `.PyRuntime` section (file addresses).
    pub runtime: Option<u64>,
    pub runtime_source: &'static str,
    /// `Py_Version` (3.11+).
    pub py_version: Option<u64>,
    /// Present only in `Py_DEBUG` builds.
    pub debug_symbol: bool,
    /// The address range of the first PT_LOAD with file offset 0, to compute the load bias.
    pub first_load_vaddr: u64,
}

impl ElfInfo {
    pub fn parse(path: &str, bytes: &[u8]) -> Result<ElfInfo, String> {
        let elf = Elf::parse(bytes).map_err(|e| format!("{path}: not an ELF file we can read: {e}"))?;
        let mut info = ElfInfo {
            path: path.to_string(),
            relocatable: elf.header.e_type == goblin::elf::header::ET_DYN,
            has_symtab: elf.section_headers.iter().any(|s| s.sh_type == goblin::elf::section_header::SHT_SYMTAB),
            ..Default::default()
        };
        let mut look = |name: &str, value: u64, source: &'static str| match name {
            "_PyRuntime" if info.runtime.is_none() => {
                info.runtime = Some(value);
                info.runtime_source = source;
            }
            "Py_Version" if info.py_version.is_none() => info.py_version = Some(value),
            "_Py_NegativeRefcount" | "_Py_RefTotal" | "_Py_GetRefTotal" => info.debug_symbol = true,
            _ => {}
        };
        for sym in elf.dynsyms.iter() {
            if sym.st_value != 0 {
                if let Some(name) = elf.dynstrtab.get_at(sym.st_name) {
                    look(name, sym.st_value, ".dynsym");
                }
            }
        }
        for sym in elf.syms.iter() {
            if sym.st_value != 0 {
                if let Some(name) = elf.strtab.get_at(sym.st_name) {
                    look(name, sym.st_value, ".symtab");
                }
            }
        }
        if info.runtime.is_none() {
            for sh in &elf.section_headers {
                if elf.shdr_strtab.get_at(sh.sh_name) == Some(".PyRuntime") {
                    info.runtime = Some(sh.sh_addr);
                    info.runtime_source = ".PyRuntime section";
                }
            }
        }
        info.first_load_vaddr = elf
            .program_headers
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .find(|p| p.p_offset == 0)
            .map(|p| p.p_vaddr)
            .unwrap_or(0);
        Ok(info)
    }

    /// The load bias of this file in the target: 0 for ET_EXEC; for ET_DYN, where the mapping with file
    /// offset 0 starts minus the vaddr of the PT_LOAD segment with file offset 0.
    pub fn load_bias(&self, maps: &Maps) -> Option<u64> {
        if !self.relocatable {
            return Some(0);
        }
        let start = maps.of_file(&self.path).find(|m| m.offset == 0).map(|m| m.start)?;
        start.checked_sub(self.first_load_vaddr)
    }
}

/// The files that may hold the CPython runtime: libpython if one is mapped, then the executable, then
/// any other mapped file whose name suggests Python (embedders).
pub fn candidates<'a>(maps: &'a Maps, exe: &'a str) -> Vec<&'a str> {
    let files = maps.files();
    let mut out: Vec<&str> = Vec::new();
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    for f in &files {
        if base(f).starts_with("libpython3") {
            out.push(f);
        }
    }
    if let Some(f) = files.iter().find(|f| **f == exe || f.trim_end_matches(" (deleted)") == exe) {
        out.push(f);
    }
    for f in &files {
        let b = base(f);
        if !out.contains(f) && b.contains("python") && !b.ends_with(".pyc") && !f.contains("/lib-dynload/") {
            out.push(f);
        }
    }
    out
}

/// The minor version and ABI flags a file name suggests (`python3.12`, `libpython3.13d.so.1.0`,
/// `python3.14t`): (minor, debug, free_threaded).
pub fn version_from_name(path: &str) -> Option<(u8, bool, bool)> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let at = base.find("python3.")? + "python3.".len();
    let rest = &base[at..];
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let minor: u8 = rest[..digits].parse().ok()?;
    let abi: String = rest[digits..].chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    Some((minor, abi.contains('d'), abi.contains('t')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(version_from_name("/usr/bin/python3.12"), Some((12, false, false)));
        assert_eq!(version_from_name("/usr/bin/python3.13d"), Some((13, true, false)));
        assert_eq!(version_from_name("/x/libpython3.14t.so.1.0"), Some((14, false, true)));
        assert_eq!(version_from_name("/x/libpython3.9.so.1.0"), Some((9, false, false)));
        assert_eq!(version_from_name("/usr/bin/uwsgi"), None);
    }
}
