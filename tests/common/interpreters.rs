//! The CPython interpreters on this machine: pyenv's builds, the distribution's, anything on PATH.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::{run_with_timeout, tail};

/// How long probing one interpreter may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a test that needs an interpreter cannot run (see [`super::skip_or_fail`]).
pub const NO_INTERPRETER: &str = "no CPython 3.9+ (GIL build) found, or none selected by MEMSPY_TEST_PYTHONS";

#[derive(Clone, Debug)]
pub struct Interpreter {
    /// Canonical path of the interpreter binary (realpath of sys.executable).
    pub path: PathBuf,
    /// The candidate path it was found under (may be a symlink).
    pub found_as: PathBuf,
    /// (major, minor, micro) from sys.version_info.
    pub version: (u32, u32, u32),
    /// sys.version's first word, e.g. "3.13.0rc1".
    pub full_version: String,
    pub abiflags: String,
    pub debug: bool,
    pub free_threaded: bool,
    /// sysconfig Py_ENABLE_SHARED (informational; linkage is determined from the process).
    pub enable_shared: bool,
}

impl Interpreter {
    pub fn version_string(&self) -> String {
        format!("{}.{}.{}", self.version.0, self.version.1, self.version.2)
    }

    /// e.g. "3.12.1" or "3.13.5d".
    pub fn label(&self) -> String {
        format!("{}{}", self.version_string(), self.abiflags)
    }

    pub fn minor(&self) -> (u32, u32) {
        (self.version.0, self.version.1)
    }
}

#[derive(Clone, Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub version: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// Interpreters the tests should run against (>= 3.9, not free-threaded).
    pub interpreters: Vec<Interpreter>,
    /// Free-threaded interpreters (3.13t+): the exact tests that cover them take them from here
    /// ([`Discovery::with_free_threaded`]).
    pub free_threaded: Vec<Interpreter>,
    /// Interpreters found but not used, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Is `name` "python3.N", "python3.Nd", "python3.Nt", "python3.Ntd"...?
fn is_versioned_python3(name: &str) -> bool {
    let rest = match name.strip_prefix("python3.") {
        Some(r) => r,
        None => return false,
    };
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && rest[digits..].chars().all(|c| c == 'd' || c == 't')
}

fn pyenv_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(r) = std::env::var_os("PYENV_ROOT") {
        roots.push(PathBuf::from(r));
    }
    if let Some(h) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(h).join(".pyenv"));
    }
    roots.push(PathBuf::from("/root/.pyenv"));
    roots
}

/// Where `scripts/build-pythons.sh` installs the interpreters it builds from source (one prefix per
/// build, e.g. `3.14.4` or `3.13.12t`).
pub fn built_pythons_dir() -> PathBuf {
    match std::env::var_os("MEMSPY_PYTHONS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/memspy/pythons"),
    }
}

/// The builds `scripts/build-pythons.sh` makes: (prefix name, binary name, free-threaded). Under CI each
/// must be found and covered.
pub const BUILT_PYTHONS: &[(&str, &str, bool)] = &[
    ("3.14.4", "python3.14", false),
    ("3.13.12t", "python3.13t", true),
    ("3.14.6t", "python3.14t", true),
    ("3.15.0b4t", "python3.15t", true),
];

/// The interpreter binary of one of [`BUILT_PYTHONS`].
pub fn built_python(prefix: &str) -> Option<PathBuf> {
    let (_, bin, _) = BUILT_PYTHONS.iter().find(|b| b.0 == prefix)?;
    Some(built_pythons_dir().join(prefix).join("bin").join(bin))
}

fn candidate_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    // The builds of scripts/build-pythons.sh.
    for (prefix, _, _) in BUILT_PYTHONS {
        out.extend(built_python(prefix));
    }
    // pyenv versions
    for root in pyenv_roots() {
        let versions = root.join("versions");
        let mut dirs: Vec<PathBuf> = match fs::read_dir(&versions) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect(),
            Err(_) => continue,
        };
        dirs.sort();
        for bin in dirs {
            push_versioned_in(&bin, &mut out);
        }
    }
    // Debian / distribution builds
    for n in 9..=15 {
        for suffix in ["", "d", "t"] {
            out.push(PathBuf::from(format!("/usr/bin/python3.{}{}", n, suffix)));
        }
    }
    // Anything on PATH (pyenv shims are skipped: the versions are enumerated above,
    // and a shim for a version that is not selected just prints an error).
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.ends_with("shims") && pyenv_roots().iter().any(|r| dir.starts_with(r)) {
                continue;
            }
            push_versioned_in(&dir, &mut out);
        }
    }
    out
}

fn push_versioned_in(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut found: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().map(is_versioned_python3).unwrap_or(false))
            .map(|e| e.path())
            .collect(),
        Err(_) => return,
    };
    found.sort();
    out.extend(found);
}

const PROBE: &str = r#"
import json, os, sys, sysconfig
print(json.dumps({
    "executable": sys.executable,
    "realpath": os.path.realpath(sys.executable),
    "version": list(sys.version_info[:3]),
    "full_version": sys.version.split()[0],
    "abiflags": getattr(sys, "abiflags", ""),
    "debug": bool(sysconfig.get_config_var("Py_DEBUG")) or hasattr(sys, "gettotalrefcount"),
    "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
}))
"#;

fn probe(path: &Path) -> Result<Interpreter, String> {
    let mut cmd = Command::new(path);
    cmd.args(["-I", "-c", PROBE]);
    let out = run_with_timeout(cmd, PROBE_TIMEOUT).map_err(|e| format!("cannot run: {}", e))?;
    if !out.success() {
        return Err(format!("probe failed: {}: {}", out.describe_status(), tail(&out.stderr, 300)));
    }
    let v: Value = serde_json::from_str(out.stdout.trim())
        .map_err(|e| format!("probe printed no JSON ({}): {}", e, tail(&out.stdout, 300)))?;
    let ver: Vec<u32> = v["version"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect())
        .unwrap_or_default();
    if ver.len() != 3 {
        return Err(format!("probe: bad version {:?}", v["version"]));
    }
    let real = v["realpath"].as_str().unwrap_or_default();
    let real = if real.is_empty() {
        fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    } else {
        PathBuf::from(real)
    };
    Ok(Interpreter {
        path: real,
        found_as: path.to_path_buf(),
        version: (ver[0], ver[1], ver[2]),
        full_version: v["full_version"].as_str().unwrap_or_default().to_string(),
        abiflags: v["abiflags"].as_str().unwrap_or_default().to_string(),
        debug: v["debug"].as_bool().unwrap_or(false),
        free_threaded: v["gil_disabled"].as_bool().unwrap_or(false)
            || v["abiflags"].as_str().unwrap_or_default().contains('t'),
        enable_shared: v["shared"].as_bool().unwrap_or(false),
    })
}

fn discover_uncached() -> Discovery {
    let mut seen_candidates = BTreeSet::new();
    let mut seen_real = BTreeSet::new();
    let mut d = Discovery::default();
    for cand in candidate_paths() {
        let canon = match fs::canonicalize(&cand) {
            Ok(c) => c,
            Err(_) => continue, // does not exist
        };
        if !canon.is_file() || !seen_candidates.insert(canon.clone()) {
            continue;
        }
        let interp = match probe(&cand) {
            Ok(i) => i,
            Err(reason) => {
                d.skipped.push(Skipped { path: cand.clone(), version: "?".into(), reason });
                continue;
            }
        };
        if !seen_real.insert(interp.path.clone()) {
            continue;
        }
        if interp.version < (3, 9, 0) {
            d.skipped.push(Skipped {
                path: interp.path.clone(),
                version: interp.label(),
                reason: "older than 3.9 (covered by another test)".into(),
            });
        } else if interp.free_threaded {
            d.free_threaded.push(interp);
        } else {
            d.interpreters.push(interp);
        }
    }
    d.interpreters.sort_by(|a, b| (a.version, &a.abiflags, &a.path).cmp(&(b.version, &b.abiflags, &b.path)));
    d.free_threaded.sort_by(|a, b| (a.version, &a.abiflags, &a.path).cmp(&(b.version, &b.abiflags, &b.path)));
    d
}

impl Discovery {
    /// The GIL interpreters, then the free-threaded ones.
    pub fn with_free_threaded(&self) -> Vec<&Interpreter> {
        self.interpreters.iter().chain(&self.free_threaded).collect()
    }
}

/// All interpreters on this machine (computed once per test binary).
///
/// Set MEMSPY_TEST_PYTHONS to a colon-separated list of paths to test only those.
pub fn discover_interpreters() -> &'static Discovery {
    static CACHE: OnceLock<Discovery> = OnceLock::new();
    CACHE.get_or_init(|| {
        let mut d = discover_uncached();
        if let Some(only) = std::env::var_os("MEMSPY_TEST_PYTHONS") {
            let wanted: Vec<PathBuf> =
                std::env::split_paths(&only).map(|p| fs::canonicalize(&p).unwrap_or(p)).collect();
            let (keep, mut drop): (Vec<_>, Vec<_>) = d.interpreters.into_iter().partition(|i| wanted.contains(&i.path));
            d.interpreters = keep;
            let (keep, ft_drop): (Vec<_>, Vec<_>) = d.free_threaded.into_iter().partition(|i| wanted.contains(&i.path));
            d.free_threaded = keep;
            drop.extend(ft_drop);
            d.skipped.extend(drop.into_iter().map(|i| Skipped {
                path: i.path.clone(),
                version: i.label(),
                reason: "not selected by MEMSPY_TEST_PYTHONS".into(),
            }));
        }
        d
    })
}

/// Which of [`BUILT_PYTHONS`] the interpreters in `covered` include: one line for the log, and under
/// CI one failure per build not covered (the test command builds them all: scripts/build-pythons.sh).
pub fn built_coverage(covered: &[&Interpreter], require: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let mut line = Vec::new();
    for (prefix, _, _) in BUILT_PYTHONS {
        let want = built_python(prefix).map(|p| fs::canonicalize(&p).unwrap_or(p));
        let hit = want.as_ref().is_some_and(|w| covered.iter().any(|i| &i.path == w));
        line.push(format!("{prefix} {}", if hit { "covered" } else { "NOT covered" }));
        if !hit && require {
            failures.push(format!(
                "CI: built interpreter {prefix} ({}) not covered (scripts/build-pythons.sh builds it)",
                want.map(|w| w.display().to_string()).unwrap_or_default()
            ));
        }
    }
    eprintln!("built interpreters: {}", line.join(", "));
    failures
}

/// Runs `check` on every interpreter of the matrix, the free-threaded builds included: a line each (its
/// label, ok or FAIL, and the summary `check` gave), then its errors; fails if any interpreter failed
/// or, under CI, a built one is missing.
pub fn on_every_interpreter(check: impl Fn(&Interpreter) -> Result<(Vec<String>, String), String>) {
    let d = discover_interpreters();
    if d.interpreters.is_empty() {
        return super::skip_or_fail(NO_INTERPRETER);
    }
    let all = d.with_free_threaded();
    let mut failed = 0;
    for interp in all.iter().copied() {
        let (errors, summary) = check(interp).unwrap_or_else(|e| (vec![e], String::new()));
        eprintln!("{:<10} {}  {summary}", interp.label(), if errors.is_empty() { "ok" } else { "FAIL" });
        for x in &errors {
            eprintln!("    {x}");
        }
        failed += usize::from(!errors.is_empty());
    }
    let missing = built_coverage(&all, super::ci_mode());
    for m in &missing {
        eprintln!("{m}");
    }
    assert_eq!(failed, 0, "{failed} of {} interpreters differ (see above)", all.len());
    assert!(missing.is_empty(), "{}", missing.join("; "));
}
