//! Helpers shared by memspy's integration tests: interpreter discovery (interpreters), fixture
//! processes killed on drop (fixtures, safety_target, leaky), running the memspy binary with a time limit
//! (run), a small HTTP client (http), a little ELF / procfs inspection to cross-check what memspy reports
//! (elf), memspy's own error texts (errors), JSON field access (json); here: paths, skips, temporary
//! directories.
//!
//! Use from a test file with `mod common;`.
#![allow(dead_code)]

mod elf;
mod errors;
mod fixtures;
mod http;
mod interpreters;
mod json;
mod leaky;
mod run;
mod safety_target;
mod venvs;

// Each test binary uses only some of these.
#[allow(unused_imports)]
pub use {
    elf::*, errors::*, fixtures::*, http::*, interpreters::*, json::*, leaky::*, run::*, safety_target::*, venvs::*,
};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Paths

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture_script(name: &str) -> PathBuf {
    repo_root().join("fixtures").join(name)
}

pub fn memspy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_memspy"))
}

/// A directory (under cargo's per-test tmp dir) where tests may leave artifacts
/// (truth files, memspy output) for a human to look at after a failure.
pub fn artifact_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = fs::create_dir_all(&dir);
    dir
}

/// True when the environment says we run under CI (`CI=true` or `CI=1`).
pub fn ci_mode() -> bool {
    match std::env::var("CI") {
        Ok(v) => {
            let v = v.trim().to_ascii_lowercase();
            v == "true" || v == "1" || v == "yes"
        }
        Err(_) => false,
    }
}

/// The name of the running test (libtest runs each test on a thread named after it).
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

/// What a test does when a prerequisite is missing (no interpreter, not root, no old Python...): under
/// CI ([`ci_mode`]) the test fails, since a skipped test must not pass there; elsewhere it prints one
/// `SKIPPED: <test>: <reason>` line and the caller returns (`return skip_or_fail("...")`).
#[track_caller]
pub fn skip_or_fail(reason: &str) {
    let test = test_name();
    if ci_mode() {
        panic!("{test}: cannot run under CI: {reason}");
    }
    eprintln!("SKIPPED: {test}: {reason}");
}

// ---------------------------------------------------------------------------
// Temporary directories

static TMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop (unless
/// MEMSPY_KEEP_TMP is set).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let n = TMP_COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "memspy-{}-{}-{}-{:08x}",
            sanitize(prefix),
            std::process::id(),
            n,
            nanos
        ));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("MEMSPY_KEEP_TMP").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A string usable in file names.
pub fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The last `max` bytes of `s` (on a char boundary), trimmed.
pub fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}
