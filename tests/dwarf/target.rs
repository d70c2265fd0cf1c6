//! The interpreters the check expects on this machine, and what memspy's discovery makes of each one
//! running.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use memspy::cpython::gc::GcState;
use memspy::discovery;
use memspy::memory::RemoteMemory;
use memspy::process::Target;

/// One interpreter this machine is expected to have (with its DWARF).
pub struct Expected {
    pub label: String,
    pub bin: PathBuf,
    pub debug_build: bool,
}

pub fn expected() -> Vec<Expected> {
    let mut out = Vec::new();
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
        .unwrap_or_default();
    for v in ["3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0"] {
        let minor: String = v.rsplit_once('.').map(|(mm, _)| mm.to_string()).unwrap_or_default();
        let bin = pyenv.join("versions").join(v).join("bin").join(format!("python{minor}"));
        out.push(Expected { label: format!("pyenv {v}"), bin, debug_build: false });
    }
    for minor in ["3.9", "3.11", "3.13", "3.14", "3.15"] {
        for d in [false, true] {
            let name = format!("python{minor}{}", if d { "d" } else { "" });
            out.push(Expected {
                label: format!("Debian {name}"),
                bin: PathBuf::from("/usr/bin").join(&name),
                debug_build: d,
            });
        }
    }
    // The builds of scripts/build-pythons.sh (upstream sources, with DWARF).
    let built = std::env::var_os("MEMSPY_PYTHONS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/memspy/pythons")))
        .unwrap_or_default();
    for (prefix, bin) in [
        ("3.14.4", "python3.14"),
        ("3.13.12t", "python3.13t"),
        ("3.14.6t", "python3.14t"),
        ("3.15.0b4t", "python3.15t"),
    ] {
        out.push(Expected {
            label: format!("built {prefix}"),
            bin: built.join(prefix).join("bin").join(bin),
            debug_build: false,
        });
    }
    out
}

pub fn ci_mode() -> bool {
    std::env::var("CI").is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// What memspy's discovery makes of a running interpreter, and the files it has mapped.
pub struct Live {
    pub interp: discovery::Interpreter,
    pub gens: [u64; 3],
    pub files: Vec<PathBuf>,
}

const SCRIPT: &str = "import sys, array, _struct, _decimal, _io, collections\n\
                      sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()\n";

pub fn live(bin: &Path) -> Result<Live, String> {
    let mut child = Command::new(bin)
        .args(["-S", "-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let result = (|| {
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            return Err(format!("{} did not start: {line:?}", bin.display()));
        }
        let pid = child.id() as i32;
        let target = Target::open(pid).map_err(|e| e.to_string())?;
        let mem = RemoteMemory::new(pid);
        let interp = discovery::discover(&target, &mem).map_err(|e| e.to_string())?;
        let main =
            *discovery::interpreters(&mem, &interp).map_err(|e| e.to_string())?.first().ok_or("no interpreter")?;
        let gc = GcState::read(&mem, &interp.layout, main).map_err(|e| e.to_string())?;
        let mut gens = [gc.heads[0] - gc.addr, gc.heads[1] - gc.addr, gc.heads[2] - gc.addr];
        if interp.layout.gc.visited_space.is_some() && gens[1] > gens[2] {
            gens.swap(1, 2);
        }
        let files: BTreeSet<PathBuf> = target
            .maps
            .files()
            .into_iter()
            .filter(|f| f.contains("python") && !f.ends_with(".pyc"))
            .map(|f| PathBuf::from(f.trim_end_matches(" (deleted)")))
            .collect();
        Ok(Live { interp, gens, files: files.into_iter().collect() })
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
