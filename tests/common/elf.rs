//! What the target process runs: linkage and strippedness, determined from /proc/PID/maps and the ELF
//! files themselves.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

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

/// Section-header level facts about an ELF64 little-endian file (cached by path).
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

fn rd_u16(d: &[u8], off: usize) -> Result<u16, String> {
    d.get(off..off + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).ok_or_else(|| "truncated ELF".to_string())
}

fn rd_u32(d: &[u8], off: usize) -> Result<u32, String> {
    d.get(off..off + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).ok_or_else(|| "truncated ELF".to_string())
}

fn rd_u64(d: &[u8], off: usize) -> Result<u64, String> {
    d.get(off..off + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).ok_or_else(|| "truncated ELF".to_string())
}

fn cstr_at(d: &[u8], off: usize) -> &[u8] {
    match d.get(off..) {
        Some(s) => &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())],
        None => &[],
    }
}

fn parse_elf(d: &[u8]) -> Result<ElfInfo, String> {
    const SHT_SYMTAB: u32 = 2;
    const SHT_DYNSYM: u32 = 11;
    if d.len() < 64 || &d[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if d[4] != 2 || d[5] != 1 {
        return Err("not ELF64 little-endian".into());
    }
    let shoff = rd_u64(d, 0x28)? as usize;
    let shentsize = rd_u16(d, 0x3a)? as usize;
    let mut shnum = rd_u16(d, 0x3c)? as usize;
    if shoff == 0 {
        return Ok(ElfInfo { has_symtab: false, defines_pyruntime: false });
    }
    if shnum == 0 {
        shnum = rd_u64(d, shoff + 32)? as usize; // extended numbering: sh_size of section 0
    }
    if shentsize < 64 {
        return Err("bad e_shentsize".into());
    }
    struct Sh {
        kind: u32,
        offset: usize,
        size: usize,
        link: usize,
        entsize: usize,
    }
    let mut shs = Vec::with_capacity(shnum);
    for i in 0..shnum {
        let b = shoff + i * shentsize;
        shs.push(Sh {
            kind: rd_u32(d, b + 4)?,
            offset: rd_u64(d, b + 24)? as usize,
            size: rd_u64(d, b + 32)? as usize,
            link: rd_u32(d, b + 40)? as usize,
            entsize: rd_u64(d, b + 56)? as usize,
        });
    }
    let has_symtab = shs.iter().any(|s| s.kind == SHT_SYMTAB);
    let mut defines_pyruntime = false;
    'outer: for s in shs.iter().filter(|s| s.kind == SHT_DYNSYM || s.kind == SHT_SYMTAB) {
        let strtab = match shs.get(s.link) {
            Some(t) => t,
            None => continue,
        };
        let ent = if s.entsize >= 24 { s.entsize } else { 24 };
        let n = s.size / ent;
        for k in 0..n {
            let e = s.offset + k * ent;
            let name_off = rd_u32(d, e)? as usize;
            let shndx = rd_u16(d, e + 6)?;
            if shndx == 0 || name_off >= strtab.size {
                continue;
            }
            if cstr_at(d, strtab.offset + name_off) == b"_PyRuntime" {
                defines_pyruntime = true;
                break 'outer;
            }
        }
    }
    Ok(ElfInfo { has_symtab, defines_pyruntime })
}
