//! The conventions of a command-line tool: `--version` with the git revision, shell completions and man
//! pages generated from the clap definitions, exit statuses (0, 1 error, 2 usage), `NO_COLOR`.
//! No target process is needed.

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// `memspy ARGS`, with its exit code (None: killed by a signal or timed out).
fn memspy(args: &[&str]) -> (Option<i32>, String, String) {
    let out = run_memspy(args).unwrap_or_else(|e| panic!("cannot run {}: {e}", memspy_bin().display()));
    assert!(!out.timed_out, "memspy {args:?} timed out");
    (out.status.and_then(|s| s.code()), out.stdout, out.stderr)
}

/// The commands `memspy help` lists (without `help` itself).
fn commands() -> Vec<String> {
    let (code, help, _) = memspy(&["--help"]);
    assert_eq!(code, Some(0));
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n != "help")
        .collect();
    for expected in ["top", "growth", "snapshot", "diff", "gc", "stat", "completions", "man"] {
        assert!(names.iter().any(|n| n == expected), "`memspy --help` does not list {expected}: {help}");
    }
    names
}

/// `git ARGS` in the checkout, when git is there and the checkout is a work tree of its own.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(repo_root()).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_git_revision() {
    let (code, out, err) = memspy(&["--version"]);
    assert_eq!(code, Some(0), "{err}");
    let version = env!("CARGO_PKG_VERSION");
    let top = git(&["rev-parse", "--show-toplevel"]).map(std::path::PathBuf::from);
    let in_checkout = top.and_then(|t| t.canonicalize().ok()) == repo_root().canonicalize().ok();
    match git(&["rev-parse", "--short", "HEAD"]).filter(|_| in_checkout) {
        Some(rev) => assert_eq!(out.trim(), format!("memspy {version} ({rev})"), "in a git checkout at {rev}"),
        None => {
            if ci_mode() {
                panic!("not a git checkout under CI: cannot check the revision in --version");
            }
            assert_eq!(out.trim(), format!("memspy {version}"), "outside a git checkout: the version alone");
        }
    }
    // Every command answers --version the same way (clap propagates it).
    let (code, out, _) = memspy(&["stat", "--version"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(version), "{out}");
}

#[test]
fn completions_cover_every_command() {
    let names = commands();
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, err) = memspy(&["completions", shell]);
        assert_eq!(code, Some(0), "completions {shell}: {err}");
        assert!(script.len() > 500, "completions {shell}: {} bytes", script.len());
        for name in &names {
            assert!(script.contains(name.as_str()), "completions {shell} lack the command {name}");
        }
        for option in ["once", "json", "nonblocking", "max-pause", "gc-only"] {
            // fish spells a long option `-l NAME`.
            let spelled = if shell == "fish" { format!("-l {option}") } else { format!("--{option}") };
            assert!(script.contains(&spelled), "completions {shell} lack {spelled}");
        }
        eprintln!("completions {shell}: {} lines", script.lines().count());
    }
    // The bash script completes: `memspy gr<TAB>` offers growth, `memspy completions <TAB>` the shells
    // (bash calls the function with the command, the word being completed and the one before).
    let Ok(bash) = which("bash") else { return skip_or_fail("no bash to run the bash completions in") };
    let (_, script, _) = memspy(&["completions", "bash"]);
    let dir = TempDir::new("completions").expect("temp dir");
    let file = dir.path().join("memspy.bash");
    std::fs::write(&file, script).expect("write the script");
    let complete = |words: &str| {
        let line = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE=\"{words}\"; \
             COMP_POINT=${{#COMP_LINE}}; \
             _memspy memspy \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let out = Command::new(&bash).args(["--norc", "--noprofile", "-c", &line]).output().expect("run bash");
        assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect::<Vec<_>>()
    };
    let offered = complete("memspy gr");
    assert_eq!(offered, ["growth"], "memspy gr<TAB>");
    let offered = complete("memspy completions ''");
    for shell in ["bash", "zsh", "fish"] {
        assert!(offered.iter().any(|s| s == shell), "memspy completions <TAB> offers {offered:?}");
    }
    let offered = complete("memspy top --gc");
    assert_eq!(offered, ["--gc-only"], "memspy top --gc<TAB>");

    // zsh parses its script and fish completes (scripts/install-services.sh installs both for CI).
    if let Ok(zsh) = which("zsh") {
        let (_, script, _) = memspy(&["completions", "zsh"]);
        let file = dir.path().join("_memspy");
        std::fs::write(&file, script).expect("write the script");
        let out = Command::new(zsh).arg("-n").arg(&file).output().expect("run zsh");
        assert!(out.status.success(), "zsh -n _memspy: {}", String::from_utf8_lossy(&out.stderr));
    } else {
        skip_or_fail("no zsh: its completion script is not parsed");
    }
    if let Ok(fish) = which("fish") {
        let (_, script, _) = memspy(&["completions", "fish"]);
        let file = dir.path().join("memspy.fish");
        std::fs::write(&file, script).expect("write the script");
        let line = format!("source {}; complete -C 'memspy gr'", file.display());
        let out = Command::new(fish).args(["--no-config", "-c", &line]).output().expect("run fish");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "fish: {}", String::from_utf8_lossy(&out.stderr));
        let offered: Vec<&str> = text.lines().filter_map(|l| l.split('\t').next()).collect();
        assert_eq!(offered, ["growth"], "fish: memspy gr<TAB>");
    } else {
        skip_or_fail("no fish: its completion script is not run");
    }
}

/// The path of `program` on PATH.
fn which(program: &str) -> Result<std::path::PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{program} is not on PATH"))
}

#[test]
fn man_pages_describe_every_command() {
    let names = commands();
    let (code, page, err) = memspy(&["man"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(page.contains(".TH memspy 1 "), "no title: {}", tail(&page, 300));
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SUBCOMMANDS", "\"EXIT STATUS\"", "ENVIRONMENT"] {
        assert!(page.contains(&format!(".SH {section}")), "memspy.1 has no {section} section");
    }
    for name in &names {
        let reference = format!("memspy\\-{}(1)", name.replace('-', "\\-"));
        assert!(page.contains(&reference), "memspy.1 does not list {reference}");
    }
    for status in ["0", "1", "2", "101", "130"] {
        assert!(page.contains(&format!(".TP\n\\fB{status}\\fR\n")), "memspy.1 does not explain exit status {status}");
    }
    assert!(page.contains("NO_COLOR"), "memspy.1 does not mention NO_COLOR");

    // One page per command, with that command's options.
    let (code, top, err) = memspy(&["man", "top"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(top.contains(".TH memspy-top 1 "), "{}", tail(&top, 300));
    for option in ["once", "json", "max\\-pause", "nonblocking", "gc\\-only"] {
        assert!(top.contains(&format!("\\fB\\-\\-{option}\\fR")), "memspy-top.1 lacks --{option}");
    }
    let (code, _, err) = memspy(&["man", "no-such-command"]);
    assert_eq!(code, Some(1), "an unknown command's page is an error: {err}");
    assert!(err.contains("no such command"), "{err}");

    // --dir writes them all.
    let dir = TempDir::new("man").expect("temp dir");
    let (code, listed, err) = memspy(&["man", "--dir", &dir.path().display().to_string()]);
    assert_eq!(code, Some(0), "{err}");
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read the man dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    files.sort();
    let mut expected: Vec<String> = names.iter().map(|n| format!("memspy-{n}.1")).collect();
    expected.push("memspy.1".into());
    expected.sort();
    assert_eq!(files, expected, "memspy man --dir wrote: {listed}");
    assert_eq!(std::fs::read_to_string(dir.path().join("memspy.1")).expect("memspy.1"), page);

    // man itself renders the page (when man-db is installed).
    if let Ok(man) = which("man") {
        let out = Command::new(man)
            .args(["-l", &dir.path().join("memspy.1").display().to_string()])
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .expect("run man");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "man -l memspy.1: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("EXIT STATUS") && text.contains("memspy-top(1)"), "man -l memspy.1: {text}");
    }
}

#[test]
fn exit_statuses() {
    // 0: help and version.
    for args in [&["--help"][..], &["--version"], &["help", "top"], &["top", "--help"]] {
        assert_eq!(memspy(args).0, Some(0), "memspy {args:?}");
    }
    // 2: usage errors, as clap reports them.
    for args in [
        &[][..],
        &["--no-such-option"],
        &["no-such-command"],
        &["top", "--limit", "many", "1"],
        &["top", "not-a-pid", "--once"],
        &["gc"],
        &["completions", "tcsh"],
        &["top", "--full", "--gc-only", "1"],
    ] {
        let (code, _, err) = memspy(args);
        assert_eq!(code, Some(2), "memspy {args:?} is a usage error: {err}");
        // clap's message (no command at all: the help, on stderr).
        assert!(err.starts_with("error:") || err.contains("\nUsage: memspy"), "memspy {args:?}: {err}");
    }
    // 1: memspy's own errors, one line each.
    let missing = "/nonexistent/memspy-snapshot.json";
    for args in [&["top", "999999999", "--once"][..], &["stat", "999999999"], &["diff", missing, missing]] {
        let (code, out, err) = memspy(args);
        assert_eq!(code, Some(1), "memspy {args:?} fails with 1: {err}");
        assert!(out.is_empty(), "memspy {args:?} printed {out}");
        assert_eq!(err.trim().lines().count(), 1, "memspy {args:?}: one line: {err}");
        assert!(err.starts_with("memspy: "), "memspy {args:?}: {err}");
    }
}

/// Runs `memspy ARGS` with its stderr on a pseudo-terminal (so that colour is allowed), returns what
/// it wrote there.
fn stderr_in_a_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
    let mut cmd = Command::new(memspy_bin());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(slave(&pty.slave));
    for var in ["NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE"] {
        cmd.env_remove(var);
    }
    cmd.env("TERM", "xterm-256color").envs(env.iter().copied());
    let mut child = cmd.spawn().expect("spawn memspy");
    drop(cmd); // its copy of the slave
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once the last slave descriptor (memspy's) is closed.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "memspy {args:?} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    String::from_utf8_lossy(&reader.join().expect("reader")).into_owned()
}

#[test]
fn no_color_is_respected() {
    // Usage errors and help are coloured on a terminal, unless NO_COLOR is set. (The live view's
    // colours are checked in src/report/tui/view.rs and tests/growth.rs; progress bars use none.)
    let coloured = stderr_in_a_terminal(&["top", "--no-such-option"], &[]);
    assert!(coloured.contains("no-such-option"), "{coloured:?}");
    assert!(coloured.contains("\x1b["), "a usage error on a terminal is coloured: {coloured:?}");
    let plain = stderr_in_a_terminal(&["top", "--no-such-option"], &[("NO_COLOR", "1")]);
    assert!(plain.contains("no-such-option"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "NO_COLOR=1: no escape sequences: {plain:?}");
}
