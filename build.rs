//! `memspy --version`: the crate version, and the git revision when built from a git checkout of
//! memspy itself (`0.1.0 (4aecd7a)`); the version alone otherwise (a packaged crate, a source tarball).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let long = match revision(&dir) {
        Some(rev) => format!("{version} ({rev})"),
        None => version,
    };
    println!("cargo:rustc-env=MEMSPY_VERSION={long}");
}

/// `git` in `dir` with `args`: its trimmed stdout when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The short revision of HEAD, if `dir` is the top of a git work tree (not a crate unpacked somewhere
/// inside another repository, e.g. under target/package/). Asks cargo to rerun this script when HEAD
/// moves (a commit, a checkout, a rebase) by watching the files git changes then.
fn revision(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), dir) {
        return None;
    }
    let rev = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let mut watch = vec!["HEAD".to_string(), "logs/HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        // --git-path resolves worktrees (HEAD in the worktree's own directory, refs in the common one).
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = if Path::new(&path).is_absolute() { PathBuf::from(path) } else { dir.join(path) };
            // A missing file would make cargo rerun the script on every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(rev)
}
