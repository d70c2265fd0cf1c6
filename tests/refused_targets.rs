//! Every target memspy cannot or must not read gets one line naming why, and the target runs on: no
//! such PID, not a Python process, a zombie, memspy itself, no permission, a Python version memspy
//! does not support, a free-threaded build.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use memspy::error::Error;

fn memspy_error(args: &[&str], what: &str) -> String {
    let out = run_memspy(args).unwrap();
    assert!(!out.timed_out, "{what}: memspy hung");
    assert_one_line_error(out.status, &out.stderr, what)
}

#[test]
fn no_such_pid() {
    // Above the largest possible pid_max (2^22): never a process.
    let line = memspy_error(&["top", "4194309", "--once"], "no such PID");
    assert!(shows_error(&line, &Error::NoSuchProcess(4194309)), "{line}");
}

struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn not_a_python_process() {
    let c = Reaped(Command::new("sleep").arg("100").spawn().unwrap());
    let pid = c.0.id();
    // Wait for the exec to have happened.
    let exe = || fs::read_link(format!("/proc/{pid}/exe")).map(|p| p.to_string_lossy().into_owned());
    assert!(wait_until(Duration::from_secs(10), || exe().is_ok_and(|p| p.contains("sleep"))));
    let line = memspy_error(&["top", &pid.to_string(), "--once"], "non-Python");
    let e = Error::NotPython { pid: pid as i32, exe: exe().unwrap() };
    assert!(shows_error(&line, &e) && line.contains("sleep"), "{line}");
}

#[test]
fn zombie() {
    // `sleep 100` inherits a child that exits and is never reaped.
    let c = Reaped(Command::new("sh").args(["-c", "sleep 0.1 & exec sleep 100"]).spawn().unwrap());
    let parent = c.0.id();
    let mut zombie = None;
    wait_until(Duration::from_secs(10), || {
        let kids = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
        zombie = kids.split_whitespace().filter_map(|k| k.parse::<u32>().ok()).find(|k| proc_state(*k) == Some('Z'));
        zombie.is_some()
    });
    let z = zombie.expect("a zombie child");
    let line = memspy_error(&["top", &z.to_string(), "--once"], "zombie");
    assert!(shows_error(&line, &Error::Zombie { pid: z as i32 }), "{line}");
}

#[test]
fn own_pid() {
    // The shell prints its PID, which memspy (exec'd in its place) keeps.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("echo $$; exec '{}' top $$ --once", memspy_bin().display())]);
    let out = run_with_timeout(cmd, MEMSPY_TIMEOUT).unwrap();
    let line = assert_one_line_error(out.status, &out.stderr, "own PID");
    let pid: i32 = out.stdout.trim().parse().unwrap_or_else(|_| panic!("no PID on stdout: {:?}", out.stdout));
    assert!(shows_error(&line, &Error::SelfTarget(pid)), "{line}");
}

#[test]
fn permission_denied_names_the_remedies() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || Command::new("setpriv").arg("--version").output().is_err() {
        return skip_or_fail("needs root and setpriv");
    }
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let fx = spawn_target(&interp, &["--objects", "1000"]);
    // The unprivileged user may not be able to reach the build directory (a checkout under /root):
    // run a world-executable copy of the binary from a fresh directory instead.
    let dir = TempDir::new("perm").expect("temp dir");
    let bin = dir.path().join("memspy");
    std::fs::copy(memspy_bin(), &bin).expect("copy memspy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod memspy");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&bin).args([
        "top",
        &fx.pid.to_string(),
        "--once",
    ]);
    let mut out = run_with_timeout(cmd, MEMSPY_TIMEOUT).unwrap();
    // setpriv execs the copy itself: retry while that copy is still busy (see spawn_retrying).
    for _ in 0..50 {
        if !out.stderr.contains("Text file busy") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        let mut again = Command::new("setpriv");
        again.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&bin).args([
            "top",
            &fx.pid.to_string(),
            "--once",
        ]);
        out = run_with_timeout(again, MEMSPY_TIMEOUT).unwrap();
    }
    let line = assert_one_line_error(out.status, &out.stderr, "permission denied");
    // The text names the remedies: root, CAP_SYS_PTRACE, ptrace_scope.
    assert!(
        shows_error(
            &line,
            &Error::PermissionDenied {
                pid: fx.pid as i32,
                detail: ANY.into(),
                remedy: memspy::error::NOT_ROOT_REMEDY.into(),
            }
        ),
        "{line}"
    );
    assert_runs(&fx, "permission denied");
}

#[test]
fn permission_denied_as_root_names_what_blocks() {
    // As root the permission is there unless something blocks it: here another tracer (gdb) holds the
    // target, and the line names it instead of advising to run as root.
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || Command::new("gdb").arg("--version").output().is_err() {
        return skip_or_fail("needs root and gdb");
    }
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let fx = spawn_target(&interp, &["--objects", "1000"]);
    let gdb = Reaped(
        Command::new("gdb")
            .args(["-p", &fx.pid.to_string(), "-batch", "-nx", "-ex", "shell sleep 60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gdb"),
    );
    let tracer = || {
        let status = fs::read_to_string(format!("/proc/{}/status", fx.pid)).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("TracerPid:").map(|v| v.trim().to_string())).unwrap_or_default()
    };
    let traced = wait_until(Duration::from_secs(30), || tracer() == gdb.0.id().to_string());
    assert!(traced, "gdb did not attach to PID {} (TracerPid {})", fx.pid, tracer());
    let line = memspy_error(&["top", &fx.pid.to_string(), "--once"], "permission denied");
    let remedy = format!(
        "PID {} is already traced by PID {} (gdb): a debugger or another tool holds it; detach it first",
        fx.pid,
        gdb.0.id()
    );
    let e = Error::PermissionDenied { pid: fx.pid as i32, detail: ANY.into(), remedy };
    assert!(shows_error(&line, &e), "{line}");
    assert!(!line.contains("Run memspy as root"), "{line}");
    drop(gdb);
    assert_runs(&fx, "gdb detached");
}

/// Python interpreters memspy does not support, from pyenv: (version prefix, binary).
fn old_pythons() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let root = PathBuf::from(std::env::var("PYENV_ROOT").unwrap_or_else(|_| "/root/.pyenv".into())).join("versions");
    for v in ["2.7", "3.6", "3.7", "3.8"] {
        let dir = fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{v}."))));
        if let Some(d) = dir {
            let bin = d.join("bin").join(format!("python{v}"));
            if bin.exists() {
                out.push((v.to_string(), bin));
            }
        }
    }
    out
}

/// Starts `python script ready` (no -I: Python 2 lacks it) and waits for its ready file.
fn start_plain(bin: &Path, dir: &Path, env: &[(&str, &str)]) -> Reaped {
    let ready = dir.join("ready");
    let mut cmd = Command::new(bin);
    cmd.arg(fixture_script(TARGET)).arg(&ready).args(["--objects", "100"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let c = Reaped(spawn_retrying(&mut cmd).unwrap());
    assert!(wait_until(Duration::from_secs(30), || ready.exists()), "{} did not start", bin.display());
    c
}

#[test]
fn unsupported_versions_are_named() {
    let olds = old_pythons();
    if olds.is_empty() {
        return skip_or_fail("no pyenv 2.7/3.6/3.7/3.8 found");
    }
    for (v, bin) in olds {
        let tmp = TempDir::new(&format!("old-{v}")).unwrap();
        let c = start_plain(&bin, tmp.path(), &[]);
        let line = memspy_error(&["top", &c.0.id().to_string(), "--once"], &v);
        let e = Error::UnsupportedVersion { pid: c.0.id() as i32, version: ANY.into() };
        assert!(shows_error(&line, &e) && line.contains(&v), "Python {v}: {line}");
        eprintln!("Python {v}: {line}");
    }
}

#[test]
fn free_threaded_build_by_file_name() {
    // A GIL build under a free-threaded name (python3.Nt), without debug offsets to say otherwise.
    let Some(src) = ["/usr/bin/python3.11", "/usr/bin/python3.9"].into_iter().map(PathBuf::from).find(|p| p.exists())
    else {
        return skip_or_fail("no Debian static python3.11/3.9");
    };
    let tmp = TempDir::new("ft-name").unwrap();
    let name = format!("{}t", src.file_name().unwrap().to_string_lossy());
    let bin = tmp.path().join(&name);
    fs::copy(&src, &bin).unwrap();
    let c = start_plain(&bin, tmp.path(), &[("PYTHONHOME", "/usr")]);
    let line = memspy_error(&["top", &c.0.id().to_string(), "--once"], "free-threaded name");
    assert!(shows_error(&line, &Error::FreeThreaded { pid: c.0.id() as i32, version: ANY.into() }), "{line}");
}

#[test]
fn a_program_that_exits_first_is_named_so() {
    // The program exits before memspy can look at it (a missing script): that, not a permission problem.
    let Some(interp) = one_interpreter() else { return skip_or_fail(NO_INTERPRETER) };
    let python = interp.path.display().to_string();
    for _ in 0..3 {
        let out = run_memspy(["top", "--once", "--", &python, "/no/such/file.py"]).unwrap();
        assert!(!out.timed_out && out.status.is_some_and(|s| !s.success()), "{:?}", out.stderr);
        // The program's own complaint comes first (its stderr is the terminal's), then memspy's one line.
        let ours: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("memspy")).collect();
        assert_eq!(ours.len(), 1, "{:?}", out.stderr);
        let line = ours[0];
        assert!(
            shows_error(line, &Error::Other("the program exited (exit status: 2) before it could be inspected".into())),
            "{line}"
        );
    }
}

#[test]
fn growth_refuses_what_cannot_show_growth() {
    let line = memspy_error(&["growth", "1", "--samples", "1"], "one sample");
    assert!(
        shows_error(&line, &Error::Other("--samples 1: growth needs at least 2 samples to compare".into())),
        "{line}"
    );
    for interval in ["0", "-1"] {
        let line = memspy_error(&["growth", "1", &format!("--interval={interval}")], "interval");
        let text = format!("--interval {interval}: give a number of seconds above 0");
        assert!(shows_error(&line, &Error::Other(text)), "{line}");
    }
}
