//! Interpreter discovery: find `_PyRuntime` in the target's python executable or libpython, tell the
//! version and build, and fill one [`Layout`] for it (built-in tables, overridden on 3.13+ by the
//! target's own `_Py_DebugOffsets`).

pub mod elf;
pub mod pymalloc;
pub mod symbols;

use python_bindings::{debug_offsets, Layout, Version, NEWEST_MINOR, OLDEST_MINOR};
use serde::Serialize;

use crate::cpython::objects::{dict_get_str, read_str};
use crate::error::{Error, Result};
use crate::memory::{Memory, ReadExt};
use crate::process::Target;
use elf::ElfInfo;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Linkage {
    /// The runtime is in the executable (Debian's python3.X, `--disable-shared` builds).
    Static,
    /// The runtime is in a mapped libpython (pyenv, `--enable-shared`).
    Shared,
}

/// A CPython runtime found in a target.
#[derive(Clone, Debug)]
pub struct Interpreter {
    /// Address of `_PyRuntime` in the target.
    pub runtime: u64,
    pub version: Version,
    pub layout: Layout,
    /// The target's executable.
    pub executable: String,
    /// The file holding `_PyRuntime` (the executable or libpython).
    pub binary: String,
    pub linkage: Linkage,
    /// The file holding `_PyRuntime` has no `.symtab`.
    pub stripped: bool,
    pub debug_build: bool,
    /// A free-threaded (no GIL) build, as the debug offsets or else the file name say: its Layout finds
    /// objects in the mimalloc heaps (`layout.mimalloc`).
    pub free_threaded: bool,
    /// Where the version came from.
    pub version_source: &'static str,
    pub runtime_source: &'static str,
    /// Whether the layout took values from `_Py_DebugOffsets`.
    pub used_debug_offsets: bool,
}

fn unsupported(pid: i32, version: impl ToString) -> Error {
    Error::UnsupportedVersion { pid, version: version.to_string() }
}

/// Recognises Python 2 and other runtimes memspy cannot read, from file names alone.
fn python2_name(files: &[&str]) -> Option<String> {
    for f in files {
        let base = f.rsplit('/').next().unwrap_or(f);
        if let Some(at) = base.find("python2.") {
            let v: String = base[at + 6..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            return Some(v.trim_end_matches('.').to_string());
        }
    }
    None
}

/// Finds the interpreter in `target`, reading through `mem`.
pub fn discover<M: Memory + ?Sized>(target: &Target, mem: &M) -> Result<Interpreter> {
    let pid = target.pid;
    let files = target.maps.files();
    let mut found: Option<(ElfInfo, u64)> = None;
    // The first file named like a CPython binary that could not be opened, and why.
    let mut unopened: Option<(&str, std::io::Error)> = None;
    for path in elf::candidates(&target.maps, &target.exe) {
        let bytes = match target.read_file(path) {
            Ok(b) => b,
            Err(e) => {
                log::debug!("cannot open {path}: {e}");
                if unopened.is_none() && elf::version_from_name(path).is_some() {
                    unopened = Some((path, e));
                }
                continue;
            }
        };
        let info = match ElfInfo::parse(path, &bytes) {
            Ok(i) => i,
            Err(e) => {
                log::debug!("{e}");
                continue;
            }
        };
        log::debug!(
            "{path}: runtime {:?} ({}), Py_Version {:?}, symtab {}, debug symbol {}",
            info.runtime,
            info.runtime_source,
            info.py_version,
            info.has_symtab,
            info.debug_symbol
        );
        if let Some(rt) = info.runtime {
            let bias = info.load_bias(&target.maps).ok_or_else(|| Error::Layout {
                pid,
                detail: format!("{path} holds _PyRuntime but is not mapped at file offset 0"),
            })?;
            found = Some((info, rt + bias));
            break;
        }
    }
    let Some((info, runtime)) = found else {
        if let Some(v) = python2_name(&files) {
            return Err(unsupported(pid, format!("{v} (Python 2)")));
        }
        if let Some((minor, _, _)) = files.iter().find_map(|f| elf::version_from_name(f)) {
            if minor < OLDEST_MINOR {
                return Err(unsupported(pid, format!("3.{minor}")));
            }
        }
        if let Some((path, e)) = unopened {
            return Err(Error::Layout {
                pid,
                detail: format!(
                    "cannot open {path} (through /proc/{pid}/map_files, /proc/{pid}/root, or as named): {e}"
                ),
            });
        }
        return Err(Error::NotPython { pid, exe: target.exe.clone() });
    };
    let bias = runtime - info.runtime.unwrap_or(runtime);
    let name_hint = elf::version_from_name(&info.path).or_else(|| elf::version_from_name(&target.exe));
    log::debug!("_PyRuntime at {runtime:#x} in {} (hint {name_hint:?})", info.path);

    // 1. 3.13+: the debug offsets table at the start of _PyRuntime.
    let debug = runtime_debug_offsets(mem, pid, runtime).map_err(|e| target.explain(e))?;
    let mut version_source = "";
    let mut version = None;
    if let Some(d) = &debug {
        version = Some(d.version());
        version_source = "_Py_DebugOffsets";
    }
    // 2. 3.11+: Py_Version.
    if version.is_none() {
        if let Some(sym) = info.py_version {
            let hex = mem.u64_at(sym + bias, "Py_Version").map_err(|e| target.explain(e))?;
            let v = Version::from_hex(hex & 0xffff_ffff)
                .ok_or_else(|| Error::Layout { pid, detail: format!("Py_Version reads {hex:#x}") })?;
            version = Some(v);
            version_source = "Py_Version";
        }
    }
    // 3. 3.9/3.10 (and anything else): the minor version from the file name, or by trying the 3.9/3.10
    //    layout (identical interpreter offsets), then sys.version for the micro version.
    if version.is_none() {
        let minor = match name_hint {
            Some((m, _, _)) if m < OLDEST_MINOR => return Err(unsupported(pid, format!("3.{m}"))),
            Some((m, _, _)) => m,
            None => 10,
        };
        if minor > 10 {
            return Err(Error::Layout {
                pid,
                detail: format!("file name says 3.{minor} but the build has neither Py_Version nor debug offsets"),
            });
        }
        let tentative = Layout::builtin(Version::new(3, minor, 0)).expect("3.9/3.10 layouts exist");
        match sys_version(mem, &tentative, runtime) {
            Ok(v) => {
                version = Some(v);
                version_source = "sys.version";
            }
            Err(e) => {
                if !target.alive() {
                    return Err(Error::TargetExited { pid });
                }
                log::warn!("could not read sys.version ({e}); assuming 3.{minor}.0");
                version = Some(Version::new(3, minor, 0));
                version_source = "file name";
            }
        }
    }
    let version = version.expect("set above");
    if version.major != 3 || version.minor < OLDEST_MINOR || version.minor > NEWEST_MINOR {
        return Err(unsupported(pid, version));
    }
    let free_threaded = debug.as_ref().map_or(name_hint.is_some_and(|(_, _, ft)| ft), |d| d.free_threaded);
    // Free-threaded builds have `_Py_DebugOffsets` (3.13+); one without is not a build memspy knows.
    if free_threaded && debug.is_none() {
        return Err(Error::FreeThreaded { pid, version: version.to_string() });
    }
    let mut layout = Layout::builtin_build(version, free_threaded).ok_or_else(|| unsupported(pid, version))?;
    if let Some(d) = &debug {
        layout.apply_debug_offsets(d).map_err(|detail| Error::Layout { pid, detail })?;
    }
    layout.debug_build = info.debug_symbol || name_hint.is_some_and(|(_, d, _)| d);
    // A deleted file is named `PATH (deleted)` in the maps and by /proc/PID/exe alike.
    fn undeleted(p: &str) -> &str {
        p.trim_end_matches(" (deleted)")
    }
    let linkage = if undeleted(&info.path) == undeleted(&target.exe) { Linkage::Static } else { Linkage::Shared };
    Ok(Interpreter {
        runtime,
        version,
        debug_build: layout.debug_build,
        free_threaded,
        layout,
        executable: target.exe.clone(),
        binary: info.path.clone(),
        linkage,
        stripped: !info.has_symtab,
        version_source,
        runtime_source: info.runtime_source,
        used_debug_offsets: debug.is_some(),
    })
}

/// The `_Py_DebugOffsets` table at the start of `_PyRuntime` (3.13+), if there is one. Unknown schemas
/// are refused here with a one-line error.
pub fn runtime_debug_offsets<M: Memory + ?Sized>(
    mem: &M,
    pid: i32,
    runtime: u64,
) -> Result<Option<debug_offsets::DebugOffsets>> {
    let head = mem.bytes_at(runtime, debug_offsets::READ_SIZE, "_PyRuntime")?;
    if !debug_offsets::has_cookie(&head) {
        return Ok(None);
    }
    match debug_offsets::parse(&head) {
        Ok(d) => Ok(Some(d)),
        Err(debug_offsets::DebugOffsetsError::UnknownSchema(v)) => Err(unsupported(pid, v)),
        Err(e) => Err(Error::Layout { pid, detail: e.to_string() }),
    }
}

/// Reads `sys.version` through `interp->sysdict` of the first interpreter.
fn sys_version<M: Memory + ?Sized>(mem: &M, l: &Layout, runtime: u64) -> Result<Version> {
    let interp = mem.u64_at(runtime + l.runtime.interpreters_head, "interpreters.head")?;
    if interp == 0 {
        return Err(Error::Corrupt("no interpreter yet".into()));
    }
    crate::memory::check_ptr(interp, "interpreter state")?;
    let sysdict = mem.u64_at(interp + l.interp.sysdict, "interp->sysdict")?;
    let v = dict_get_str(mem, l, sysdict, "version")?.ok_or_else(|| Error::Corrupt("sys.version missing".into()))?;
    let s = read_str(mem, l, v)?;
    Version::parse(&s).ok_or_else(|| Error::Corrupt(format!("sys.version is {s:?}")))
}

/// Every interpreter of the runtime: `interpreters.head` then `next`, bounded.
pub fn interpreters<M: Memory + ?Sized>(mem: &M, interp: &Interpreter) -> Result<Vec<u64>> {
    let l = &interp.layout;
    let mut out = Vec::new();
    let mut at = mem.u64_at(interp.runtime + l.runtime.interpreters_head, "interpreters.head")?;
    while at != 0 {
        if out.len() >= 4096 || out.contains(&at) {
            return Err(Error::Corrupt("interpreter list does not end".into()));
        }
        crate::memory::check_ptr(at, "interpreter state")?;
        out.push(at);
        at = mem.u64_at(at + l.interp.next, "interp->next")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;

    #[test]
    fn debug_offsets_of_both_builds() {
        let runtime = 0x7f00_0000_0000;
        let mut f = FakeMemory::new();
        f.add(runtime, debug_offsets::synthetic_table(0x30d00f0, true).unwrap());
        let d = runtime_debug_offsets(&f, 42, runtime).unwrap().unwrap();
        assert!(d.free_threaded && d.ob_type == 24, "{d:?}");
        let msg = Error::FreeThreaded { pid: 42, version: "3.12.0".into() }.to_string();
        assert!(msg.contains("free-threaded") && msg.contains("3.12.0") && !msg.contains('\n'), "{msg}");

        // The same table with the GIL is accepted.
        let mut f = FakeMemory::new();
        f.add(runtime, debug_offsets::synthetic_table(0x30d00f0, false).unwrap());
        assert_eq!(runtime_debug_offsets(&f, 42, runtime).unwrap().unwrap().version().to_string(), "3.13.0");

        // No cookie: not 3.13+ (no table), not an error.
        let mut f = FakeMemory::new();
        f.add(runtime, vec![0; debug_offsets::READ_SIZE]);
        assert!(runtime_debug_offsets(&f, 42, runtime).unwrap().is_none());

        // A 3.16 table: no schema, refused naming the version.
        let mut t = debug_offsets::synthetic_table(0x30e00f0, false).unwrap();
        t[8..16].copy_from_slice(&0x31000f0u64.to_le_bytes());
        let mut f = FakeMemory::new();
        f.add(runtime, t);
        let e = runtime_debug_offsets(&f, 42, runtime).unwrap_err();
        assert!(matches!(e, Error::UnsupportedVersion { .. }) && e.to_string().contains("3.16"), "{e}");
    }

    #[test]
    fn free_threaded_file_names() {
        assert_eq!(elf::version_from_name("/opt/bin/python3.13t"), Some((13, false, true)));
        assert_eq!(elf::version_from_name("/opt/lib/libpython3.14td.so.1.0"), Some((14, true, true)));
    }
}
