//! The venvs `scripts/venvs.sh` makes (numpy, pandas, … per interpreter), found by their marker files.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use super::Interpreter;

/// A venv made by scripts/venvs.sh (its marker file `memspy-venv.txt`).
pub struct Venv {
    pub name: String,
    pub interp: Interpreter,
    pub packages: String,
}

/// Where they are: `$MEMSPY_CACHE/venvs` (default `~/.cache/memspy/venvs`).
pub fn venvs_dir() -> PathBuf {
    let cache = std::env::var("MEMSPY_CACHE").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/memspy")
    });
    cache.join("venvs")
}

/// Every venv there, in name order.
pub fn venvs() -> Vec<Venv> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> =
        fs::read_dir(venvs_dir()).into_iter().flatten().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = fs::read_to_string(dir.join("memspy-venv.txt")) else { continue };
        let kv: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let (Some(name), Some(python), Some(version)) = (kv.get("name"), kv.get("python"), kv.get("version")) else {
            continue;
        };
        let v: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
        if v.len() != 3 {
            continue;
        }
        let interp = Interpreter {
            path: PathBuf::from(python),
            found_as: PathBuf::from(python),
            version: (v[0], v[1], v[2]),
            full_version: version.to_string(),
            abiflags: String::new(),
            debug: false,
            free_threaded: false,
            enable_shared: false,
        };
        out.push(Venv { name: name.to_string(), interp, packages: kv.get("packages").unwrap_or(&"").to_string() });
    }
    out
}
