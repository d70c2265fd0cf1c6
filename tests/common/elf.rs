//! What the target process runs: linkage and strippedness, determined from /proc/PID/maps and the ELF
//! files themselves.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use goblin::elf::section_header::SHN_UNDEF;
use goblin::elf::section_header::SHT_SYMTAB;
use goblin::elf::sym::Symtab;
use goblin::elf::Elf;
use goblin::strtab::Strtab;

use super::Interpreter;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryInfo {
    /// "shared" if _PyRuntime lives in a mapped libpython, "static" if in the executable.
    pub linkage: &'static str,
    /// The ELF file that defines _PyRuntime.
    pub runtime_elf: PathBuf,
    /// That file has no .symtab section.
    pub stripped: bool,
    /// Whether any mapping of the process is a libpython (cross-check of `linkage`).
    pub maps_libpython: bool,
}

/// Mapped file paths of a process, in order of first appearance.
pub fn mapped_files(pid: u32) -> Result<Vec<PathBuf>, String> {
    let maps =
        fs::read_to_string(format!("/proc/{}/maps", pid)).map_err(|e| format!("reading /proc/{}/maps: {}", pid, e))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode pathname
        let rest: String = line.split_whitespace().skip(5).collect::<Vec<_>>().join(" ");
        if rest.starts_with('/') && !rest.ends_with("(deleted)") && seen.insert(rest.clone()) {
            out.push(PathBuf::from(rest));
        }
    }
    Ok(out)
}

pub fn inspect_process(pid: u32) -> Result<BinaryInfo, String> {
    let exe = fs::read_link(format!("/proc/{}/exe", pid)).map_err(|e| format!("reading /proc/{}/exe: {}", pid, e))?;
    let files = mapped_files(pid)?;
    let libpythons: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).map(|n| n.starts_with("libpython")).unwrap_or(false))
        .collect();
    let exe_elf = elf_info(&exe)?;
    let (linkage, runtime_elf, stripped) = if exe_elf.defines_pyruntime {
        ("static", exe.clone(), !exe_elf.has_symtab)
    } else {
        let mut found = None;
        for lib in &libpythons {
            let info = elf_info(lib)?;
            if info.defines_pyruntime {
                found = Some(((*lib).clone(), !info.has_symtab));
                break;
            }
        }
        match found {
            Some((lib, stripped)) => ("shared", lib, stripped),
            None => {
                return Err(format!(
                    "no ELF defining _PyRuntime: not {} and not any of {:?}",
                    exe.display(),
                    libpythons
                ))
            }
        }
    };
    Ok(BinaryInfo { linkage, runtime_elf, stripped, maps_libpython: !libpythons.is_empty() })
}

/// Linkage / strippedness of an interpreter without a fixture: start it idle
/// (blocked reading stdin), inspect the process, kill it.  Cached per path.
pub fn inspect_interpreter(interp: &Interpreter) -> Result<BinaryInfo, String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, BinaryInfo>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(b) = cache.lock().unwrap().get(&interp.path) {
        return Ok(b.clone());
    }
    let mut child = Command::new(&interp.path)
        .args(["-I", "-c", "import sys; sys.stdin.read()"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {}", interp.path.display(), e))?;
    let start = Instant::now();
    // The dynamic loader maps libpython shortly after exec; retry until it is there.
    let result = loop {
        match inspect_process(child.id()) {
            Ok(b) => break Ok(b),
            Err(e) if start.elapsed() > Duration::from_secs(10) => break Err(e),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Ok(b) = &result {
        cache.lock().unwrap().insert(interp.path.clone(), b.clone());
    }
    result
}

#[derive(Clone, Copy, Debug)]
pub struct ElfInfo {
    pub has_symtab: bool,
    pub defines_pyruntime: bool,
}

/// Section-header level facts about an ELF file (cached by path).
pub fn elf_info(path: &Path) -> Result<ElfInfo, String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, ElfInfo>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(i) = cache.lock().unwrap().get(path) {
        return Ok(*i);
    }
    let data = fs::read(path).map_err(|e| format!("reading {}: {}", path.display(), e))?;
    let info = parse_elf(&data).map_err(|e| format!("{}: {}", path.display(), e))?;
    cache.lock().unwrap().insert(path.to_path_buf(), info);
    Ok(info)
}

/// Whether the file has a `.symtab`, and whether `.dynsym` or `.symtab` defines `_PyRuntime` (a symbol of
/// that name in a section, not an undefined reference to it).
fn parse_elf(d: &[u8]) -> Result<ElfInfo, String> {
    let elf = Elf::parse(d).map_err(|e| format!("not a readable ELF file: {e}"))?;
    let has_symtab = elf.section_headers.iter().any(|s| s.sh_type == SHT_SYMTAB);
    let defines = |syms: &Symtab, names: &Strtab| {
        syms.iter().any(|s| s.st_shndx != SHN_UNDEF as usize && names.get_at(s.st_name) == Some("_PyRuntime"))
    };
    let defines_pyruntime = defines(&elf.dynsyms, &elf.dynstrtab) || defines(&elf.syms, &elf.strtab);
    Ok(ElfInfo { has_symtab, defines_pyruntime })
}
