//! A target in namespaces of its own, as in a container: a PID namespace of its own (it is PID 1 there),
//! and a mount namespace in which its interpreter lives at a path that does not exist on the host. memspy
//! must find the runtime and report the GC-tracked objects per type exactly as fixtures/gc_heap.py records
//! them (the comparison of tests/gc_histogram), from the host by the host PID and from inside the
//! namespaces (`nsenter`) by PID 1.
//!
//! No container engine is involved: `unshare --mount --pid --fork --mount-proc --kill-child` runs a shell as
//! the new namespaces' PID 1. It mounts a tmpfs over a directory that is empty on the host, puts the
//! interpreter there — a pyenv prefix bind-mounted (its shared libpython found through `LD_LIBRARY_PATH`), or
//! Debian's static `python3.13` copied with its stdlib bind-mounted —, hides the originals (a tmpfs or
//! `/dev/null` mounted over them, so that nothing in the namespace can use them), bind-mounts the memspy
//! binary next to it, and execs the fixture. Three layouts:
//!
//! * `mount-ns`: the host's root, plus the private tmpfs: the interpreter is at `<tmp>/root/python`, which
//!   on the host is an empty directory;
//! * `pivot-root`: a root of its own assembled in the tmpfs (the host's `/usr`, `/etc`, `/dev` bound into it,
//!   the namespace's `/proc`) and entered with pivot_root(2), as container runtimes do: the interpreter is at
//!   `/opt/memspy-ns/python`, and the host's `/proc/PID/maps` names that path too;
//! * `chroot`: the same root entered with chroot(2) alone: the target sees `/opt/memspy-ns/python`, the host
//!   sees its files under `<tmp>/root/opt/memspy-ns/python` (paths from the mount namespace's root, not
//!   from the target's root).
//!
//! The viewers, each running `memspy top --once --json --gc-only` (compared with the truth) and `memspy top
//! --once --json` (its GC figures must equal the `--gc-only` ones, its per-type counts and bytes those of
//! every other viewer):
//!
//! * `host`: the host as root, by the host PID (memspy opens the target's files through
//!   `/proc/PID/map_files`);
//! * `host-ptrace`: the host with CAP_SYS_PTRACE as its only capability (`setpriv`; the capabilities of a
//!   container started with `--cap-add SYS_PTRACE --pid=host`, without its seccomp and LSM profiles):
//!   `/proc/PID/map_files` needs CAP_SYS_ADMIN, so memspy opens the files by their path under
//!   `/proc/PID/root` — in the `chroot` layout relative to the chroot, which `/proc/PID/root` names;
//! * `inside`: `nsenter --target PID --mount --pid` (plus `--root` in the layouts with a root of their own)
//!   running the memspy bound into the namespace, on PID 1, with Docker's default capabilities plus
//!   SYS_PTRACE.
//!
//! For a pyenv interpreter with a shared libpython (the newest found) and Debian's `/usr/bin/python3.13`.
//! Every process started is killed on every path: the namespaces' PID 1 (which takes its PID namespace
//! with it), unshare, nsenter and what it started. Under `CI=true` a missing prerequisite (no privilege to
//! create namespaces, a missing tool or interpreter) fails the tests instead of skipping them.
//!
//! A last test deletes the executable of a running target (as a package upgrade does): as root memspy
//! still reads it, through `/proc/PID/map_files`; with CAP_SYS_PTRACE alone it says which file it cannot open.
//!
//! Run with `cargo test --test containers -- --nocapture` to see one line per layout and viewer.

mod common;
// Mode::Freeze and the helpers only tests/gc_histogram.rs uses are dead code here.
#[allow(dead_code)]
#[path = "gc_histogram/compare.rs"]
mod compare;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use compare::{compare, compare_gc_figures, Findings, Mode};
use serde_json::Value;

/// Where a root of the namespace's own holds the interpreter and memspy.
const OWN_DIR: &str = "/opt/memspy-ns";
/// Debian's interpreter, statically linked (its runtime is in the executable).
const DEBIAN_PYTHON: &str = "/usr/bin/python3.13";
/// The tools the namespaces are made with (util-linux, coreutils).
const TOOLS: &[&str] = &["unshare", "nsenter", "setpriv", "mount", "umount", "pivot_root", "chroot", "ldd"];
/// PATH for everything started here: the tools live in the sbin directories too.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// What `docker run --cap-add SYS_PTRACE` leaves a container's root: Docker's default set plus SYS_PTRACE.
const DOCKER_CAPS: &str = "-all,+audit_write,+chown,+dac_override,+fowner,+fsetid,+kill,+mknod,+net_bind_service,\
                           +net_raw,+setfcap,+setgid,+setpcap,+setuid,+sys_chroot,+sys_ptrace";
/// How long a command that sets up or inspects the namespaces may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The namespaces' PID 1. Its arguments: LAYOUT ROOT KIND SRC EXE STDLIB MEMSPY FIXTURES TRUTH OWN_DIR.
/// KIND `prefix`: SRC is an installation prefix (bin/EXE, lib/libpython*, lib/python3.X), bind-mounted;
/// KIND `files`: SRC is a static executable, copied, and STDLIB its stdlib directory, bind-mounted.
const SETUP: &str = r#"
set -eu
layout=$1 root=$2 kind=$3 src=$4 exe=$5 stdlib=$6 memspy=$7 fixtures=$8 truth=$9 own=${10}
# ROOT is an empty directory on the host; here it becomes a tmpfs that only this mount namespace sees.
mount -t tmpfs -o mode=0755 memspy-ns "$root"
if [ "$layout" = mount-ns ]; then at=$root seen=$root; else at=$root$own seen=$own; fi
mkdir -p "$at/python"
case $kind in
  prefix)
    mount --bind -o ro "$src" "$at/python"
    mount -t tmpfs -o ro memspy-hidden "$src"
    export LD_LIBRARY_PATH="$seen/python/lib" ;;
  files)
    lib=$at/python/lib/${stdlib##*/}
    mkdir -p "$at/python/bin" "$lib"
    cp "$src" "$at/python/bin/$exe"
    mount --bind -o ro "$stdlib" "$lib"
    mount --bind /dev/null "$src"
    mount -t tmpfs -o ro memspy-hidden "$stdlib" ;;
esac
touch "$at/memspy"
mount --bind -o ro "$memspy" "$at/memspy"
if [ "$layout" = mount-ns ]; then
  exec "$seen/python/bin/$exe" -I "$fixtures/gc_heap.py" "$truth/truth.json"
fi
for d in usr etc dev proc tmp fixtures truth; do mkdir -p "$root/$d"; done
for d in bin lib lib64 sbin; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"
  elif [ -d "/$d" ]; then mkdir "$root/$d"; mount --rbind "/$d" "$root/$d"; fi
done
mount --rbind /usr "$root/usr"
mount --rbind /etc "$root/etc"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t tmpfs memspy-tmp "$root/tmp"
mount --bind -o ro "$fixtures" "$root/fixtures"
mount --bind "$truth" "$root/truth"
case $layout in
  chroot) exec chroot "$root" "$seen/python/bin/$exe" -I /fixtures/gc_heap.py /truth/truth.json ;;
  pivot-root)
    cd "$root"
    mkdir .old
    pivot_root . .old
    umount -l /.old
    rmdir /.old
    exec "$seen/python/bin/$exe" -I /fixtures/gc_heap.py /truth/truth.json ;;
esac
echo "unknown layout $layout" >&2
exit 2
"#;

/// One namespace setup at a time: the tests start several processes each, on a machine of few cores.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    MountNs,
    PivotRoot,
    Chroot,
}

impl Layout {
    const ALL: [Layout; 3] = [Layout::MountNs, Layout::PivotRoot, Layout::Chroot];

    fn name(self) -> &'static str {
        match self {
            Layout::MountNs => "mount-ns",
            Layout::PivotRoot => "pivot-root",
            Layout::Chroot => "chroot",
        }
    }

    /// Whether the target has a root of its own (entered by pivot_root or chroot).
    fn own_root(self) -> bool {
        self != Layout::MountNs
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Viewer {
    Host,
    HostPtraceOnly,
    Inside,
}

impl Viewer {
    const ALL: [Viewer; 3] = [Viewer::Host, Viewer::HostPtraceOnly, Viewer::Inside];

    fn name(self) -> &'static str {
        match self {
            Viewer::Host => "host",
            Viewer::HostPtraceOnly => "host-ptrace",
            Viewer::Inside => "inside",
        }
    }
}

/// An interpreter and how it is put into the namespace.
struct Placement {
    interp: Interpreter,
    /// "pyenv" or "Debian", for the output.
    origin: &'static str,
    /// `prefix` or `files` (see [`SETUP`]).
    kind: &'static str,
    /// The prefix (`prefix`) or the executable (`files`).
    src: PathBuf,
    /// The stdlib directory (`files` only).
    stdlib: Option<PathBuf>,
    /// The executable's file name.
    exe: String,
    /// The libpython file name, for a shared build.
    libpython: Option<String>,
}

/// The namespaces of one target: unshare, and the fixture that is their PID 1. Dropping it kills them.
struct Namespaces {
    unshare: Child,
    /// The fixture's host PID and its start time (`/proc/PID/stat` field 22), so that no PID reused by
    /// another process is ever signalled.
    init: Option<(u32, u64)>,
    layout: Layout,
    root: PathBuf,
    log: PathBuf,
    truth_path: PathBuf,
    dir: TempDir,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // PID 1 first: when it dies the kernel kills every process of its PID namespace (a memspy
        // started there by nsenter included). unshare's --kill-child would do it too, once unshare dies.
        if let Some((pid, start)) = self.init {
            if start_time(pid) == Some(start) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        if let Some((pid, start)) = self.init {
            let since = Instant::now();
            while start_time(pid) == Some(start) && since.elapsed() < Duration::from_secs(5) {
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Field 22 of `/proc/PID/stat` (the start time in clock ticks), if the process exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // After the command name: state is field 3, starttime field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The PIDs of a process's children (`/proc/PID/task/PID/children`).
fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The `NSpid:` line of `/proc/PID/status`: the PID in each PID namespace, outermost first.
fn ns_pids(pid: u32) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|l| l.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", PATH);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    cmd
}

/// Whether namespaces can be made here: the tools exist, and unshare may create mount and PID namespaces.
fn prerequisites() -> Result<(), String> {
    for tool in TOOLS {
        if !std::env::split_paths(PATH).any(|d| d.join(tool).is_file()) {
            return Err(format!("`{tool}` not found in {PATH} (util-linux, coreutils and libc-bin provide them)"));
        }
    }
    let mut probe = command("unshare");
    probe.args(["--mount", "--pid", "--fork", "--mount-proc", "--kill-child", "true"]);
    let out = run_with_timeout(probe, STEP_TIMEOUT).map_err(|e| format!("cannot run unshare: {e}"))?;
    if !out.success() {
        return Err(format!(
            "`unshare --mount --pid --fork --mount-proc true` failed ({}): {} (needs root, or CAP_SYS_ADMIN)",
            out.describe_status(),
            tail(&out.stderr, 300)
        ));
    }
    Ok(())
}

/// What the dynamic loader resolves for `exe` (`ldd`): (name, path) pairs; an error for a library not found.
fn needed_libraries(exe: &Path, env: &[(&str, String)]) -> Result<Vec<(String, String)>, String> {
    let mut cmd = command("ldd");
    cmd.arg(exe).envs(env.iter().map(|(k, v)| (k, v)));
    let out = run_with_timeout(cmd, STEP_TIMEOUT).map_err(|e| format!("cannot run ldd: {e}"))?;
    if !out.success() {
        return Err(format!("ldd {}: {}: {}", exe.display(), out.describe_status(), tail(&out.stderr, 300)));
    }
    let mut libs = Vec::new();
    for line in out.stdout.lines() {
        let Some((name, rest)) = line.trim().split_once(" => ") else { continue };
        let path = rest.split_whitespace().next().unwrap_or_default();
        if path == "not" {
            return Err(format!("ldd {}: {name} not found", exe.display()));
        }
        libs.push((name.to_string(), path.to_string()));
    }
    Ok(libs)
}

/// The pyenv interpreter with a shared libpython to put into the namespace: the newest found.
fn pyenv_placement() -> Result<Placement, String> {
    let d = discover_interpreters();
    let interp = d
        .interpreters
        .iter()
        .filter(|i| i.enable_shared && !i.debug)
        .filter(|i| {
            let versions = i.path.parent().and_then(Path::parent).and_then(Path::parent);
            i.path.parent().is_some_and(|b| b.ends_with("bin")) && versions.is_some_and(|v| v.ends_with("versions"))
        })
        .max_by_key(|i| i.version)
        .ok_or("no pyenv interpreter with a shared libpython (…/versions/X/bin/python3.N, Py_ENABLE_SHARED)")?;
    let prefix = interp.path.parent().and_then(Path::parent).expect("filtered above").to_path_buf();
    let libpython = format!("libpython{}.{}{}.so.1.0", interp.version.0, interp.version.1, interp.abiflags);
    if !prefix.join("lib").join(&libpython).is_file() {
        return Err(format!("{} has no lib/{libpython}", prefix.display()));
    }
    Ok(Placement {
        interp: interp.clone(),
        origin: "pyenv",
        kind: "prefix",
        exe: interp.path.file_name().unwrap().to_string_lossy().into_owned(),
        src: prefix,
        stdlib: None,
        libpython: Some(libpython),
    })
}

/// Debian's static `python3.13` and its stdlib.
fn debian_placement() -> Result<Placement, String> {
    let d = discover_interpreters();
    let interp =
        d.interpreters.iter().find(|i| i.path == Path::new(DEBIAN_PYTHON)).ok_or_else(|| {
            format!("{DEBIAN_PYTHON} not found (scripts/install-pythons.sh installs it) or not selected")
        })?;
    let stdlib = PathBuf::from(format!("/usr/lib/python{}.{}", interp.version.0, interp.version.1));
    if !stdlib.join("os.py").is_file() {
        return Err(format!("{} has no os.py", stdlib.display()));
    }
    Ok(Placement {
        interp: interp.clone(),
        origin: "Debian",
        kind: "files",
        exe: interp.path.file_name().unwrap().to_string_lossy().into_owned(),
        src: interp.path.clone(),
        stdlib: Some(stdlib),
        libpython: None,
    })
}

impl Placement {
    /// Checks that the namespace gives the interpreter everything it loads: for a static build nothing
    /// but the system libraries (which the roots of their own bind from the host's /usr), for a shared
    /// one its libpython from the prefix. Returns `ldd`'s list, for the output.
    fn check_libraries(&self) -> Result<String, String> {
        let env = match self.kind {
            "prefix" => vec![("LD_LIBRARY_PATH", self.src.join("lib").to_string_lossy().into_owned())],
            _ => vec![],
        };
        let libs = needed_libraries(&self.interp.path, &env)?;
        let mut names = Vec::new();
        for (name, path) in &libs {
            let placed = self.kind == "prefix" && Path::new(path).starts_with(&self.src);
            let system = path.starts_with("/usr/") || path.starts_with("/lib");
            match (&self.libpython, name.starts_with("libpython")) {
                (Some(lib), true) if placed && name == lib => {}
                (None, true) => return Err(format!("{} is not static: it needs {name}", self.src.display())),
                (_, true) => return Err(format!("{name} resolves to {path}, not into {}", self.src.display())),
                _ if !system => return Err(format!("{name} resolves to {path}, outside /usr and /lib")),
                _ => {}
            }
            names.push(if placed { format!("{name} (placed)") } else { name.clone() });
        }
        Ok(names.join(", "))
    }

    /// Where the interpreter's prefix is, as `viewer` sees it.
    fn prefix_seen(&self, ns: &Namespaces, viewer: Viewer) -> PathBuf {
        match (ns.layout, viewer) {
            (Layout::MountNs, _) => ns.root.join("python"),
            (Layout::PivotRoot, _) | (Layout::Chroot, Viewer::Inside) => Path::new(OWN_DIR).join("python"),
            (Layout::Chroot, _) => ns.root.join(OWN_DIR.trim_start_matches('/')).join("python"),
        }
    }

    /// The file that holds `_PyRuntime`, relative to the prefix.
    fn runtime_file(&self) -> PathBuf {
        match &self.libpython {
            Some(lib) => Path::new("lib").join(lib),
            None => Path::new("bin").join(&self.exe),
        }
    }
}

impl Namespaces {
    /// Starts the fixture as PID 1 of new namespaces in `layout`, and waits (bounded) until it has written
    /// its truth and sits in pause().
    fn start(p: &Placement, layout: Layout) -> Result<(Namespaces, Value), String> {
        let dir = TempDir::new(&format!("ns-{}-{}", p.interp.label(), layout.name())).map_err(|e| e.to_string())?;
        let (root, truth_dir, log) = (dir.path().join("root"), dir.path().join("truth"), dir.path().join("setup.log"));
        for d in [&root, &truth_dir] {
            fs::create_dir(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        let logf = fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut cmd = command("unshare");
        cmd.args(["--mount", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", SETUP, "sh"]);
        cmd.arg(layout.name()).arg(&root).arg(p.kind).arg(&p.src).arg(&p.exe);
        cmd.arg(p.stdlib.as_deref().unwrap_or(Path::new("-")));
        cmd.arg(memspy_bin()).arg(repo_root().join("fixtures")).arg(&truth_dir).arg(OWN_DIR);
        cmd.stdin(Stdio::null()).stdout(logf.try_clone().map_err(|e| e.to_string())?).stderr(logf);
        // Should this process die without unwinding (SIGKILL), the kernel kills unshare, and unshare's
        // --kill-child its PID 1, which takes the namespaces with it.
        // SAFETY: prctl is async-signal-safe, and the closure touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let unshare = cmd.spawn().map_err(|e| format!("cannot start unshare: {e}"))?;
        let mut ns =
            Namespaces { unshare, init: None, layout, root, log, truth_path: truth_dir.join("truth.json"), dir };
        // unshare forks the namespaces' PID 1 at once: its only child.
        let since = Instant::now();
        let pid = loop {
            let unshare_pid = ns.unshare.id();
            if let [pid] = children(unshare_pid)[..] {
                break pid;
            }
            ns.exited("before its child appeared")?;
            if since.elapsed() > STEP_TIMEOUT {
                return Err(format!("unshare (PID {unshare_pid}) has no child after {STEP_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(5));
        };
        ns.init = Some((pid, start_time(pid).ok_or("the namespaces' PID 1 vanished")?));
        let truth = loop {
            if ns.truth_path.exists() {
                let text = fs::read_to_string(&ns.truth_path).map_err(|e| format!("reading the truth: {e}"))?;
                break serde_json::from_str::<Value>(&text).map_err(|e| format!("the truth is not JSON: {e}"))?;
            }
            ns.exited("before the fixture wrote its truth")?;
            if since.elapsed() > FIXTURE_TIMEOUT {
                return Err(format!("no truth within {FIXTURE_TIMEOUT:?}; setup log: {}", ns.log_text()));
            }
            thread::sleep(Duration::from_millis(20));
        };
        // Between the rename of the truth and pause(), the fixture's temporaries may still be alive.
        loop {
            let syscall = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
            if syscall.split_whitespace().next() == Some("34") {
                break; // x86_64: pause
            }
            ns.exited("before the fixture reached pause()")?;
            if since.elapsed() > FIXTURE_TIMEOUT {
                return Err(format!("the fixture did not reach pause() (syscall {})", syscall.trim()));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok((ns, truth))
    }

    fn pid(&self) -> u32 {
        self.init.expect("set by start").0
    }

    fn log_text(&self) -> String {
        tail(&fs::read_to_string(&self.log).unwrap_or_default(), 2000)
    }

    /// An error if unshare (and so the namespaces) exited.
    fn exited(&mut self, when: &str) -> Result<(), String> {
        match self.unshare.try_wait() {
            Ok(Some(status)) => {
                Err(format!("unshare exited {when} ({}); setup log: {}", describe_exit(status), self.log_text()))
            }
            _ => Ok(()),
        }
    }

    /// Whether the fixture is alive and running (not left stopped).
    fn fixture_ok(&self) -> Result<(), String> {
        let (pid, start) = self.init.expect("set by start");
        if start_time(pid) != Some(start) {
            return Err("the fixture died".into());
        }
        thread::sleep(Duration::from_millis(20));
        match proc_state(pid) {
            Some('T') | Some('t') => Err("memspy left the fixture stopped (state T)".into()),
            Some('Z') | None => Err("the fixture died".into()),
            _ => Ok(()),
        }
    }

    /// `memspy top PID --once --json EXTRA` as `viewer`.
    fn memspy(&self, viewer: Viewer, extra: &[&str]) -> Result<CmdOutput, String> {
        let mut top = vec!["top".to_string()];
        top.push(match viewer {
            Viewer::Inside => "1".to_string(),
            _ => self.pid().to_string(),
        });
        top.extend(["--once", "--json"].iter().chain(extra).map(|s| s.to_string()));
        match viewer {
            Viewer::Host => run_memspy(&top).map_err(|e| format!("cannot run memspy: {e}")),
            Viewer::HostPtraceOnly => {
                let mut cmd = command("setpriv");
                cmd.args(["--bounding-set=-all,+sys_ptrace", "--inh-caps=-all", "--"]).arg(memspy_bin()).args(&top);
                run_with_timeout(cmd, MEMSPY_TIMEOUT).map_err(|e| format!("cannot run setpriv: {e}"))
            }
            Viewer::Inside => {
                let mut cmd = command("nsenter");
                cmd.args(["--target", &self.pid().to_string(), "--mount", "--pid"]);
                if self.layout.own_root() {
                    cmd.arg("--root");
                }
                cmd.args(["--", "setpriv", &format!("--bounding-set={DOCKER_CAPS}"), "--inh-caps=-all", "--"]);
                cmd.arg(self.inside_memspy()).args(&top);
                self.run_inside(cmd)
            }
        }
    }

    /// The memspy binary bound into the namespace, as the target's root sees it.
    fn inside_memspy(&self) -> PathBuf {
        match self.layout {
            Layout::MountNs => self.root.join("memspy"),
            _ => Path::new(OWN_DIR).join("memspy"),
        }
    }

    /// Runs an nsenter command with its output in files (what it starts inside the namespaces could hold
    /// pipes open past a kill of nsenter): bounded; on timeout nsenter's children and nsenter are killed.
    fn run_inside(&self, mut cmd: Command) -> Result<CmdOutput, String> {
        let (out_path, err_path) = (self.dir.path().join("inside.out"), self.dir.path().join("inside.err"));
        let file = |p: &Path| fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
        cmd.stdin(Stdio::null()).stdout(file(&out_path)?).stderr(file(&err_path)?);
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("cannot start nsenter: {e}"))?;
        let mut timed_out = false;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(s);
            }
            if start.elapsed() > MEMSPY_TIMEOUT {
                timed_out = true;
                for pid in children(child.id()) {
                    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is nsenter's child, which
                    // nsenter (alive, not reaped) has not reaped either.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
                let _ = child.kill();
                break child.wait().ok();
            }
            thread::sleep(Duration::from_millis(10));
        };
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        Ok(CmdOutput { status, stdout: read(&out_path), stderr: read(&err_path), timed_out, elapsed: start.elapsed() })
    }
}

/// memspy's report from `out`, or an error with its status and stderr.
fn report_of(out: CmdOutput, what: &str) -> Result<Value, String> {
    if !out.success() {
        return Err(format!("{what}: {}; stderr: {}", out.describe_status(), tail(&out.stderr, 1500)));
    }
    serde_json::from_str(&out.stdout)
        .map_err(|e| format!("{what}: stdout is not JSON ({e}): {}", tail(&out.stdout, 500)))
}

/// Per type name: (count, bytes).
type TypeRows = BTreeMap<String, (u64, u64)>;

/// A report's [`TypeRows`].
fn type_rows(r: &Value) -> TypeRows {
    let mut rows = BTreeMap::new();
    for t in r["types"].as_array().into_iter().flatten() {
        let e = rows.entry(t["type"].as_str().unwrap_or("?").to_string()).or_insert((0, 0));
        e.0 += t["count"].as_u64().unwrap_or(0);
        e.1 += t["bytes"].as_u64().unwrap_or(0);
    }
    rows
}

/// What the host sees of the target before memspy runs: PID 1 of its PID namespace, its executable at a
/// path that does not exist on the host (but through /proc/PID/root), its interpreter's files mapped
/// from there only.
fn check_isolation(p: &Placement, ns: &Namespaces, truth: &Value) -> Result<(), String> {
    let pid = ns.pid();
    let nspid = ns_pids(pid);
    if nspid != [pid, 1] {
        return Err(format!("NSpid of {pid} is {nspid:?}, want [{pid}, 1]"));
    }
    if truth["pid"] != 1 {
        return Err(format!("the fixture's os.getpid() is {} (want 1)", truth["pid"]));
    }
    let host_prefix = p.prefix_seen(ns, Viewer::Host);
    let exe = fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| format!("/proc/{pid}/exe: {e}"))?;
    if exe != host_prefix.join("bin").join(&p.exe) {
        return Err(format!("/proc/{pid}/exe is {} (want {}/bin/{})", exe.display(), host_prefix.display(), p.exe));
    }
    let inside_exe = p.prefix_seen(ns, Viewer::Inside).join("bin").join(&p.exe);
    if truth["executable"] != inside_exe.to_string_lossy().as_ref() {
        return Err(format!("the fixture's sys.executable is {} (want {})", truth["executable"], inside_exe.display()));
    }
    for inside in [inside_exe, ns.inside_memspy()] {
        let through_root = PathBuf::from(format!("/proc/{pid}/root{}", inside.display()));
        if !through_root.is_file() {
            return Err(format!("{} does not exist", through_root.display()));
        }
        if inside.exists() {
            return Err(format!("{} (the target's path) exists on the host", inside.display()));
        }
    }
    let files = mapped_files(pid)?;
    let interpreter_files: Vec<&PathBuf> = files.iter().filter(|f| f.starts_with(&host_prefix)).collect();
    for f in &interpreter_files {
        if f.exists() {
            return Err(format!("{} is mapped by the fixture and exists on the host", f.display()));
        }
    }
    let runtime = host_prefix.join(p.runtime_file());
    if !interpreter_files.contains(&&runtime) {
        return Err(format!("{} is not mapped; the fixture maps {interpreter_files:?}", runtime.display()));
    }
    let originals = [Some(&p.src), p.stdlib.as_ref()];
    if let Some(f) = files.iter().find(|f| originals.iter().flatten().any(|o| f.starts_with(o))) {
        return Err(format!("the fixture maps {} from the host's interpreter", f.display()));
    }
    Ok(())
}

/// One viewer's two reports, checked; returns the full-heap report and a line for the output.
fn check_viewer(
    p: &Placement,
    ns: &Namespaces,
    truth: &Value,
    binary: &BinaryInfo,
    viewer: Viewer,
) -> Result<(Value, String), String> {
    let pid = if viewer == Viewer::Inside { 1 } else { ns.pid() };
    let prefix = p.prefix_seen(ns, viewer);
    // The truth as this viewer must see it: sys.executable is the target's own path, memspy reports the
    // path /proc/PID/exe shows the viewer.
    let mut truth = truth.clone();
    truth["executable"] = Value::from(prefix.join("bin").join(&p.exe).to_string_lossy().into_owned());
    let gc_only = report_of(ns.memspy(viewer, &["--gc-only"])?, "--gc-only")?;
    ns.fixture_ok()?;
    let mut found = Findings::default();
    compare(Mode::Plain, &p.interp, Some(binary), pid, &truth, &gc_only, &mut found);
    let runtime = prefix.join(p.runtime_file());
    match gc_only["python"]["binary"].as_str() {
        Some(b) if Path::new(b) == runtime => {
            if Path::new(b).exists() {
                found.errors.push(format!("python.binary {b} exists on the host"));
            }
        }
        b => found.errors.push(format!("python.binary is {b:?}, want {}", runtime.display())),
    }
    let full = report_of(ns.memspy(viewer, &[])?, "full heap")?;
    ns.fixture_ok()?;
    compare_gc_figures(&gc_only, &full, &mut found.errors);
    if full["pid"] != pid {
        found.errors.push(format!("full heap: pid {} (want {pid})", full["pid"]));
    }
    if !found.errors.is_empty() {
        let shown: Vec<&String> = found.errors.iter().take(20).collect();
        return Err(format!("{} mismatches: {shown:?}", found.errors.len()));
    }
    let types = gc_only["types"].as_array().map_or(0, |t| t.len());
    let line = format!(
        "PID {pid}: --gc-only {} objects in {types} types = truth, full heap {} objects ({} in {})",
        gc_only["totals"]["gc_tracked"],
        full["totals"]["objects"],
        gc_only["python"]["linkage"].as_str().unwrap_or("?"),
        gc_only["python"]["binary"].as_str().unwrap_or("?"),
    );
    Ok((full, line))
}

/// Every layout and viewer for one interpreter; panics (after printing every case) if one failed.
fn run_all(placement: Result<Placement, String>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let p = match placement {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    let started = Instant::now();
    let label = format!("{} {} ({})", p.origin, p.interp.label(), p.interp.path.display());
    let libs = p.check_libraries().unwrap_or_else(|e| panic!("{label}: {e}"));
    let binary = inspect_interpreter(&p.interp).unwrap_or_else(|e| panic!("{label}: inspecting it: {e}"));
    let want_linkage = if p.libpython.is_some() { "shared" } else { "static" };
    assert_eq!(binary.linkage, want_linkage, "{label}: linkage");
    eprintln!("{label}: {} build, stripped: {}; needs {libs}", binary.linkage, binary.stripped);
    let mut failures = Vec::new();
    for layout in Layout::ALL {
        let case = Instant::now();
        let (ns, truth) = match Namespaces::start(&p, layout) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("  {:<10} FAIL  setup: {e}", layout.name());
                failures.push(format!("{}: setup: {e}", layout.name()));
                continue;
            }
        };
        eprintln!(
            "  {:<10} host PID {} = PID 1 inside; the host sees the interpreter at {} (absent on the host), the target at {}",
            layout.name(),
            ns.pid(),
            p.prefix_seen(&ns, Viewer::Host).display(),
            p.prefix_seen(&ns, Viewer::Inside).display()
        );
        if let Err(e) = check_isolation(&p, &ns, &truth) {
            eprintln!("  {:<10} FAIL  isolation: {e}", layout.name());
            failures.push(format!("{}: isolation: {e}", layout.name()));
            continue;
        }
        let mut first_full: Option<(Viewer, TypeRows)> = None;
        for viewer in Viewer::ALL {
            let result = check_viewer(&p, &ns, &truth, &binary, viewer).and_then(|(full, line)| {
                let rows = type_rows(&full);
                match &first_full {
                    None => first_full = Some((viewer, rows)),
                    Some((v, first)) if *first != rows => {
                        let differ: Vec<&String> =
                            first.keys().chain(rows.keys()).filter(|k| first.get(*k) != rows.get(*k)).collect();
                        return Err(format!("full heap differs from {}'s in {differ:?}", v.name()));
                    }
                    Some(_) => {}
                }
                Ok(line)
            });
            match result {
                Ok(line) => eprintln!("  {:<10} {:<12} ok    {line}", layout.name(), viewer.name()),
                Err(e) => {
                    eprintln!("  {:<10} {:<12} FAIL  {e}", layout.name(), viewer.name());
                    failures.push(format!("{} {}: {e}", layout.name(), viewer.name()));
                }
            }
        }
        drop(ns);
        eprintln!("  {:<10} {:.1} s", layout.name(), case.elapsed().as_secs_f64());
    }
    eprintln!("{label}: {} failures, {:.1} s", failures.len(), started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{label}:\n  {}", failures.join("\n  "));
}

#[test]
fn pyenv_shared_libpython_in_namespaces() {
    run_all(pyenv_placement());
}

#[test]
fn debian_static_in_namespaces() {
    run_all(debian_placement());
}

/// A target whose executable was deleted after it started (a package upgrade replaces the file under a
/// running service): `/proc/PID/maps` then names `PATH (deleted)`, which no path reaches. As root memspy
/// reads the mapped file itself through `/proc/PID/map_files` and reports exactly; with CAP_SYS_PTRACE
/// alone it cannot, and says which file it could not open.
#[test]
fn deleted_executable_is_read_through_map_files() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = match debian_placement() {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    if !std::env::split_paths(PATH).any(|d| d.join("setpriv").is_file()) {
        return skip_or_fail("`setpriv` not found (util-linux)");
    }
    let binary = inspect_interpreter(&p.interp).unwrap_or_else(|e| panic!("inspecting {}: {e}", p.exe));
    let dir = TempDir::new("deleted-exe").expect("temp dir");
    let copy = dir.path().join(&p.exe);
    fs::copy(&p.interp.path, &copy).expect("copying the interpreter");
    let mut interp = p.interp.clone();
    interp.path = copy.clone();
    // The copy finds its stdlib through its compiled-in prefix.
    let (fixture, truth) = start_settled(&interp, "gc_heap.py", &[]).unwrap_or_else(|e| panic!("fixture: {e}"));
    fs::remove_file(&copy).expect("deleting the interpreter");
    let exe = format!("{} (deleted)", copy.display());
    assert_eq!(fs::read_link(format!("/proc/{}/exe", fixture.pid)).unwrap().to_string_lossy(), exe);

    let mut truth = truth;
    truth["executable"] = Value::from(exe.clone());
    let (report, _) = memspy_top_json_with(fixture.pid, &["--gc-only"]).unwrap_or_else(|e| panic!("as root: {e}"));
    let mut found = Findings::default();
    compare(Mode::Plain, &interp, Some(&binary), fixture.pid, &truth, &report, &mut found);
    assert!(found.errors.is_empty(), "as root: {:?}", found.errors);
    assert_eq!(report["python"]["binary"], exe.as_str());

    let mut cmd = command("setpriv");
    cmd.args(["--bounding-set=-all,+sys_ptrace", "--inh-caps=-all", "--"]).arg(memspy_bin());
    cmd.args(["top", &fixture.pid.to_string(), "--once", "--json", "--gc-only"]);
    let out = run_with_timeout(cmd, MEMSPY_TIMEOUT).expect("running setpriv");
    let line = out.stderr.lines().last().unwrap_or_default().to_string();
    let want = memspy::error::Error::Layout {
        pid: fixture.pid as i32,
        detail: format!(
            "cannot open {exe} (through /proc/{0}/map_files, /proc/{0}/root, or as named): {ANY}",
            fixture.pid
        ),
    };
    assert!(
        out.status.and_then(|s| s.code()) == Some(1) && shows_error(&line, &want),
        "{}: {line}",
        out.describe_status()
    );
    eprintln!(
        "deleted {exe}: as root {} objects in {} types = truth; with CAP_SYS_PTRACE only: {line}",
        report["totals"]["gc_tracked"],
        report["types"].as_array().map_or(0, |t| t.len())
    );
}
