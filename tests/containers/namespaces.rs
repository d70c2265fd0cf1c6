//! The namespaces of tests/containers.rs: a shell as PID 1 of new mount and PID namespaces, the
//! interpreter placed at a path only that namespace has, the three roots (its own mount namespace,
//! pivot_root, chroot) and the readers memspy runs as.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// Where a root of the namespace's own holds the interpreter and memspy.
pub const OWN_DIR: &str = "/opt/memspy-ns";
/// Debian's interpreter, statically linked (its runtime is in the executable).
pub const DEBIAN_PYTHON: &str = "/usr/bin/python3.13";
/// The tools the namespaces are made with (util-linux, coreutils).
pub const TOOLS: &[&str] = &["unshare", "nsenter", "setpriv", "mount", "umount", "pivot_root", "chroot", "ldd"];
/// PATH for everything started here: the tools live in the sbin directories too.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// What `docker run --cap-add SYS_PTRACE` leaves a container's root: Docker's default set plus SYS_PTRACE.
pub const DOCKER_CAPS: &str = "-all,+audit_write,+chown,+dac_override,+fowner,+fsetid,+kill,+mknod,+net_bind_service,\
                           +net_raw,+setfcap,+setgid,+setpcap,+setuid,+sys_chroot,+sys_ptrace";
/// How long a command that sets up or inspects the namespaces may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The namespaces' PID 1. Its arguments: LAYOUT ROOT KIND SRC EXE STDLIB MEMSPY FIXTURES TRUTH OWN_DIR.
/// KIND `prefix`: SRC is an installation prefix (bin/EXE, lib/libpython*, lib/python3.X), bind-mounted;
/// KIND `files`: SRC is a static executable, copied, and STDLIB its stdlib directory, bind-mounted.
pub const SETUP: &str = r#"
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
pub static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    MountNs,
    PivotRoot,
    Chroot,
}

impl Layout {
    pub const ALL: [Layout; 3] = [Layout::MountNs, Layout::PivotRoot, Layout::Chroot];

    pub fn name(self) -> &'static str {
        match self {
            Layout::MountNs => "mount-ns",
            Layout::PivotRoot => "pivot-root",
            Layout::Chroot => "chroot",
        }
    }

    /// Whether the target has a root of its own (entered by pivot_root or chroot).
    pub fn own_root(self) -> bool {
        self != Layout::MountNs
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Viewer {
    Host,
    HostPtraceOnly,
    Inside,
}

impl Viewer {
    pub const ALL: [Viewer; 3] = [Viewer::Host, Viewer::HostPtraceOnly, Viewer::Inside];

    pub fn name(self) -> &'static str {
        match self {
            Viewer::Host => "host",
            Viewer::HostPtraceOnly => "host-ptrace",
            Viewer::Inside => "inside",
        }
    }
}

/// An interpreter and how it is put into the namespace.
pub struct Placement {
    pub interp: Interpreter,
    /// "pyenv" or "Debian", for the output.
    pub origin: &'static str,
    /// `prefix` or `files` (see [`SETUP`]).
    pub kind: &'static str,
    /// The prefix (`prefix`) or the executable (`files`).
    pub src: PathBuf,
    /// The stdlib directory (`files` only).
    pub stdlib: Option<PathBuf>,
    /// The executable's file name.
    pub exe: String,
    /// The libpython file name, for a shared build.
    pub libpython: Option<String>,
}

/// The namespaces of one target: unshare, and the fixture that is their PID 1. Dropping it kills them.
pub struct Namespaces {
    pub unshare: Child,
    /// The fixture's host PID and its start time (`/proc/PID/stat` field 22), so that no PID reused by
    /// another process is ever signalled.
    pub init: Option<(u32, u64)>,
    pub layout: Layout,
    pub root: PathBuf,
    pub log: PathBuf,
    pub truth_path: PathBuf,
    pub dir: TempDir,
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
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // After the command name: state is field 3, starttime field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The PIDs of a process's children (`/proc/PID/task/PID/children`).
pub fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The `NSpid:` line of `/proc/PID/status`: the PID in each PID namespace, outermost first.
pub fn ns_pids(pid: u32) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|l| l.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

pub fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", PATH);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    cmd
}

/// Whether namespaces can be made here: the tools exist, and unshare may create mount and PID namespaces.
pub fn prerequisites() -> Result<(), String> {
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
pub fn needed_libraries(exe: &Path, env: &[(&str, String)]) -> Result<Vec<(String, String)>, String> {
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
pub fn pyenv_placement() -> Result<Placement, String> {
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
pub fn debian_placement() -> Result<Placement, String> {
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
    pub fn check_libraries(&self) -> Result<String, String> {
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
    pub fn prefix_seen(&self, ns: &Namespaces, viewer: Viewer) -> PathBuf {
        match (ns.layout, viewer) {
            (Layout::MountNs, _) => ns.root.join("python"),
            (Layout::PivotRoot, _) | (Layout::Chroot, Viewer::Inside) => Path::new(OWN_DIR).join("python"),
            (Layout::Chroot, _) => ns.root.join(OWN_DIR.trim_start_matches('/')).join("python"),
        }
    }

    /// The file that holds `_PyRuntime`, relative to the prefix.
    pub fn runtime_file(&self) -> PathBuf {
        match &self.libpython {
            Some(lib) => Path::new("lib").join(lib),
            None => Path::new("bin").join(&self.exe),
        }
    }
}

impl Namespaces {
    /// Starts the fixture as PID 1 of new namespaces in `layout`, and waits (bounded) until it has written
    /// its truth and sits in pause().
    pub fn start(p: &Placement, layout: Layout) -> Result<(Namespaces, Value), String> {
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

    pub fn pid(&self) -> u32 {
        self.init.expect("set by start").0
    }

    pub fn log_text(&self) -> String {
        tail(&fs::read_to_string(&self.log).unwrap_or_default(), 2000)
    }

    /// An error if unshare (and so the namespaces) exited.
    pub fn exited(&mut self, when: &str) -> Result<(), String> {
        match self.unshare.try_wait() {
            Ok(Some(status)) => {
                Err(format!("unshare exited {when} ({}); setup log: {}", describe_exit(status), self.log_text()))
            }
            _ => Ok(()),
        }
    }

    /// Whether the fixture is alive and running (not left stopped).
    pub fn fixture_ok(&self) -> Result<(), String> {
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
    pub fn memspy(&self, viewer: Viewer, extra: &[&str]) -> Result<CmdOutput, String> {
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
    pub fn inside_memspy(&self) -> PathBuf {
        match self.layout {
            Layout::MountNs => self.root.join("memspy"),
            _ => Path::new(OWN_DIR).join("memspy"),
        }
    }

    /// Runs an nsenter command with its output in files (what it starts inside the namespaces could hold
    /// pipes open past a kill of nsenter): bounded; on timeout nsenter's children and nsenter are killed.
    pub fn run_inside(&self, mut cmd: Command) -> Result<CmdOutput, String> {
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
