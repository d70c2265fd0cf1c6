//! The ELF files of a target: symbols and sections of the python executable or libpython, opened through
//! `/proc/PID/map_files` or `/proc/PID/root` so that targets in containers resolve to their own files.

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

/// Opens a file the target maps (`path` as its `/proc/PID/maps` names it), trying in turn:
///
/// 1. `/proc/PID/map_files/START-END` of one of its mappings: the very file mapped, whatever the mount
///    namespace, chroot, or a later replacement or deletion of the path. Opening it needs CAP_SYS_ADMIN
///    (or CAP_CHECKPOINT_RESTORE) in the initial user namespace: root on the host, not a container.
/// 2. The path under `/proc/PID/root` (the target's root: a container's own files). The kernel names
///    mapped files from the root of the target's mount namespace, which is the target's root unless the
///    target is chrooted inside that namespace; then `/proc/PID/root` reads as the chroot's path from that
///    same root, and the path is taken relative to it.
/// 3. The path as this process sees it (no namespace of its own, or an old kernel).
pub fn read_target_file(pid: i32, maps: &Maps, path: &str) -> std::io::Result<Vec<u8>> {
    if let Some(m) = maps.of_file(path).next() {
        let link = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
        match std::fs::read(&link) {
            Ok(bytes) => {
                log::debug!("{path}: read through {link}");
                return Ok(bytes);
            }
            Err(e) => log::debug!("cannot open {link} ({path}): {e}"),
        }
    }
    let clean = path.trim_end_matches(" (deleted)");
    let root = std::fs::read_link(format!("/proc/{pid}/root")).ok();
    let mut tried = Vec::new();
    if let Some(inner) = root.as_deref().and_then(|r| r.to_str()).and_then(|r| relative_to_root(clean, r)) {
        tried.push(format!("/proc/{pid}/root{inner}"));
    }
    tried.push(format!("/proc/{pid}/root{clean}"));
    tried.push(clean.to_string());
    let mut last = None;
    for candidate in &tried {
        match std::fs::read(candidate) {
            Ok(bytes) => {
                log::debug!("{path}: read through {candidate}");
                return Ok(bytes);
            }
            Err(e) => {
                log::debug!("cannot open {candidate}: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.expect("at least one candidate"))
}

/// `path` (absolute, from the mount namespace's root) relative to `root` (the target's root, as its
/// `/proc/PID/root` link reads), when `root` is not `/` and holds `path`.
fn relative_to_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return None;
    }
    path.strip_prefix(root).filter(|rest| rest.starts_with('/'))
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
    fn paths_relative_to_a_chroot() {
        let path = "/srv/jail/opt/py/bin/python3.13";
        assert_eq!(relative_to_root(path, "/srv/jail"), Some("/opt/py/bin/python3.13"));
        assert_eq!(relative_to_root(path, "/srv/jail/"), Some("/opt/py/bin/python3.13"));
        assert_eq!(relative_to_root(path, "/"), None);
        assert_eq!(relative_to_root(path, "/srv/ja"), None);
        assert_eq!(relative_to_root(path, "/other"), None);
    }

    #[test]
    fn names() {
        assert_eq!(version_from_name("/usr/bin/python3.12"), Some((12, false, false)));
        assert_eq!(version_from_name("/usr/bin/python3.13d"), Some((13, true, false)));
        assert_eq!(version_from_name("/x/libpython3.14t.so.1.0"), Some((14, false, true)));
        assert_eq!(version_from_name("/x/libpython3.9.so.1.0"), Some((9, false, false)));
        assert_eq!(version_from_name("/usr/bin/uwsgi"), None);
    }
}
