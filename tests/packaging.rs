//! How memspy reaches its users, checked end to end:
//!
//! - the wheel: `pip wheel .` (pyproject.toml, maturin's `bin` bindings) builds a wheel that carries the
//!   binary; installed into a fresh venv, `memspy --version` and `memspy top --once -- python3 APP` run
//!   from the venv's bin/;
//! - the static binary of `scripts/build-static.sh`: ldd finds no shared library, it has no program
//!   interpreter, and it inspects a Python process by PID from a chroot holding nothing but itself and
//!   /proc (the container case: memspy in one root, the target in another).
//!
//! Both build memspy in the `dev` profile (set MEMSPY_PACKAGING_PROFILE=release for the real thing):
//! the wheel's build shares this test run's target directory, so only what the dev-dependencies'
//! features change is compiled again (nix, remoteprocess, memspy); the static build has a directory of
//! its own (target/x86_64-unknown-linux-gnu/, other flags) and compiles everything once, then only what
//! changed. The wheel's build links its own build of the binary to target/debug/memspy, the path the
//! tests run: the test puts cargo's back afterwards ([`KeepBinary`]; no test of this file runs that
//! path meanwhile, and cargo runs one test binary at a time).
//!
//! maturin comes from PyPI into a venv cached outside the checkout, in
//! ${MEMSPY_CACHE:-~/.cache/memspy}/maturin-venv (pyenv's 3.11.7 runs it).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The maturin the wheel is built with (pyproject.toml accepts any 1.9+).
const MATURIN: &str = "1.16.0";

/// How long a build (cargo through maturin or the static script) may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

fn cache_dir() -> PathBuf {
    std::env::var_os("MEMSPY_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/memspy")
    })
}

fn profile() -> String {
    std::env::var("MEMSPY_PACKAGING_PROFILE").unwrap_or_else(|_| "dev".into())
}

/// The target directory of this test run (memspy_bin() is TARGET/debug/memspy).
fn target_dir() -> PathBuf {
    memspy_bin().parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// cargo, as the test run's own (cargo sets CARGO), and PATH with `first` and cargo's directory first
/// (maturin and the script call `cargo`, maturin's PEP 517 backend calls `maturin`).
fn cargo_env(cmd: &mut Command, first: &[PathBuf]) {
    let cargo = std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO")));
    let mut path: Vec<PathBuf> = first.to_vec();
    path.extend(cargo.parent().map(Path::to_path_buf));
    path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    cmd.env("CARGO", &cargo).env("PATH", std::env::join_paths(path).expect("PATH"));
}

/// The interpreter that runs maturin and makes the venvs.
fn python() -> Result<PathBuf, String> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".pyenv"));
    let py = root.join("versions/3.11.7/bin/python3");
    if py.is_file() {
        Ok(py)
    } else {
        Err(format!("{} is not installed (pyenv's 3.11.7 makes the venvs)", py.display()))
    }
}

/// Runs `cmd`, bounded by `timeout`; Err with its status and the end of its output unless it succeeds.
fn run(mut cmd: Command, what: &str, timeout: Duration) -> Result<CmdOutput, String> {
    let shown = format!("{cmd:?}");
    cmd.env_remove("RUST_LOG");
    let out = run_with_timeout(cmd, timeout).map_err(|e| format!("{what}: cannot run {shown}: {e}"))?;
    if !out.success() {
        return Err(format!(
            "{what} failed ({}): {shown}\nstdout: {}\nstderr: {}",
            out.describe_status(),
            tail(&out.stdout, 2000),
            tail(&out.stderr, 4000)
        ));
    }
    Ok(out)
}

/// An exclusive lock on `path` (created), held until the file is dropped: one maturin venv is made at
/// a time, also by other checkouts sharing the cache.
fn lock(path: &Path) -> Result<fs::File, String> {
    use std::os::fd::AsRawFd;
    let f = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("flock {}: {}", path.display(), std::io::Error::last_os_error()));
    }
    Ok(f)
}

/// The cached venv with maturin `MATURIN` (made on first use; PyPI is needed then).
fn maturin_venv() -> Result<PathBuf, String> {
    let cache = cache_dir();
    fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let _lock = lock(&cache.join("maturin-venv.lock"))?;
    let venv = cache.join("maturin-venv");
    let maturin = venv.join("bin/maturin");
    let version = |maturin: &Path| {
        Command::new(maturin).arg("--version").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    if version(&maturin).is_some_and(|v| v.trim() == format!("maturin {MATURIN}")) {
        return Ok(venv);
    }
    let start = Instant::now();
    let _ = fs::remove_dir_all(&venv);
    let mut cmd = Command::new(python()?);
    cmd.arg("-m").arg("venv").arg(&venv);
    run(cmd, "making the maturin venv", Duration::from_secs(300))?;
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", &format!("maturin=={MATURIN}")]);
    if let Err(e) = run(cmd, "installing maturin from PyPI", Duration::from_secs(600)) {
        let _ = fs::remove_dir_all(&venv);
        return Err(e);
    }
    eprintln!("made {} (maturin {MATURIN}) in {:.1} s", venv.display(), start.elapsed().as_secs_f64());
    Ok(venv)
}

/// Puts the binary at `path` back when dropped. The wheel's build (another feature set: no
/// dev-dependencies; stripped) links its own memspy to the same target/debug/memspy the tests run, and
/// cargo does not link its own back while it is up to date; the tests after this one must run the
/// binary cargo built for them. The original is kept as a hard link beside it and renamed back (atomic:
/// the path never goes missing).
struct KeepBinary {
    path: PathBuf,
    kept: PathBuf,
}

impl KeepBinary {
    fn new(path: &Path) -> KeepBinary {
        let kept =
            path.with_file_name(format!(".{}-kept-by-packaging-test", path.file_name().unwrap().to_string_lossy()));
        let _ = fs::remove_file(&kept);
        fs::hard_link(path, &kept)
            .unwrap_or_else(|e| panic!("hard link {} to {}: {e}", path.display(), kept.display()));
        KeepBinary { path: path.to_path_buf(), kept }
    }
}

impl Drop for KeepBinary {
    fn drop(&mut self) {
        if let Err(e) = fs::rename(&self.kept, &self.path) {
            eprintln!("could not put {} back: {e}", self.path.display());
        }
    }
}

/// The file names in the zip archive `path` (through Python's zipfile).
fn zip_names(python: &Path, path: &Path) -> Result<Vec<String>, String> {
    let mut cmd = Command::new(python);
    cmd.args(["-c", "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))"]).arg(path);
    Ok(run(cmd, "listing the wheel", Duration::from_secs(60))?.stdout.lines().map(str::to_string).collect())
}

/// What `memspy --version` must print: the version, and in a git checkout the revision.
fn expected_version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(repo_root()).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let top = git(&["rev-parse", "--show-toplevel"]).and_then(|t| PathBuf::from(t).canonicalize().ok());
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) if top == repo_root().canonicalize().ok() => format!("memspy {version} ({rev})"),
        _ => format!("memspy {version}"),
    }
}

#[test]
fn pip_wheel_installs_a_working_memspy() {
    let test_start = Instant::now();
    let python = match python() {
        Ok(p) => p,
        Err(e) => return skip_or_fail(&e),
    };
    let venv_m = match maturin_venv() {
        Ok(v) => v,
        Err(e) => return skip_or_fail(&format!("no maturin {MATURIN}: {e}")),
    };
    let tmp = TempDir::new("wheel").expect("temp dir");
    let dist = tmp.path().join("dist");

    // `pip wheel .` through maturin's PEP 517 backend, as a user's pip runs it; without build
    // isolation (the cached maturin instead of one fetched per run) and in this run's target dir.
    let start = Instant::now();
    let mut cmd = Command::new(venv_m.join("bin/python"));
    cmd.args(["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check"])
        .arg("--wheel-dir")
        .arg(&dist)
        .arg(repo_root())
        .current_dir(repo_root())
        .env("MATURIN_PEP517_ARGS", format!("--profile {}", profile()))
        .env("CARGO_TARGET_DIR", target_dir());
    cargo_env(&mut cmd, &[venv_m.join("bin")]);
    let built = {
        let _kept = KeepBinary::new(&memspy_bin());
        run(cmd, "pip wheel .", BUILD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    };
    let wheel_time = start.elapsed();
    let wheels: Vec<PathBuf> = fs::read_dir(&dist)
        .expect("the wheel dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "one wheel in {}: {wheels:?}\n{}", dist.display(), tail(&built.stderr, 2000));
    let wheel = &wheels[0];
    let file = wheel.file_name().unwrap().to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert!(file.starts_with(&format!("memspy-{version}-py3-none-")), "{file}");
    assert!(file.ends_with("_x86_64.whl"), "{file}");

    // The wheel carries the binary as a script (bin/ of the venv) and the metadata, no Python module.
    let names = zip_names(&python, wheel).unwrap_or_else(|e| panic!("{e}"));
    let script = format!("memspy-{version}.data/scripts/memspy");
    assert!(names.contains(&script), "{file} has no {script}: {names:?}");
    assert!(names.contains(&format!("memspy-{version}.dist-info/METADATA")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".py") || n.ends_with(".so")), "only the binary: {names:?}");
    eprintln!(
        "built {file} ({} KiB, {}) in {:.1} s",
        fs::metadata(wheel).map(|m| m.len() / 1024).unwrap_or(0),
        names.join(", "),
        wheel_time.as_secs_f64()
    );

    // A fresh venv, the wheel installed by its own pip.
    let start = Instant::now();
    let venv = tmp.path().join("venv");
    let mut cmd = Command::new(&python);
    cmd.arg("-m").arg("venv").arg(&venv);
    run(cmd, "python -m venv", Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args(["-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check"]).arg(wheel);
    run(cmd, "pip install memspy.whl", Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    let memspy = venv.join("bin/memspy");
    assert!(memspy.is_file(), "pip installed no {}", memspy.display());
    eprintln!("installed into a fresh venv in {:.1} s", start.elapsed().as_secs_f64());

    // The installed memspy, as in an activated venv: its python3 first on PATH.
    let venv_env = |cmd: &mut Command| {
        let mut path = vec![venv.join("bin")];
        path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        cmd.env("PATH", std::env::join_paths(path).expect("PATH")).env("VIRTUAL_ENV", &venv);
    };
    let mut cmd = Command::new(&memspy);
    cmd.arg("--version");
    venv_env(&mut cmd);
    let out = run(cmd, "memspy --version", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.stdout.trim(), expected_version());
    eprintln!("$ {} --version\n{}", memspy.display(), out.stdout.trim());

    let app = fixture_script("example_app.py");
    let mut cmd = Command::new(&memspy);
    cmd.args(["top", "--once", "--limit", "5", "--", "python3"]).arg(&app);
    venv_env(&mut cmd);
    let out = run(cmd, "memspy top --once -- python3 example_app.py", MEMSPY_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("$ {} top --once --limit 5 -- python3 {}\n{}", memspy.display(), app.display(), out.stdout.trim_end());
    let header = out.stdout.lines().next().unwrap_or_default();
    assert!(header.starts_with("PID ") && header.contains("Python 3.11.7"), "the venv's python3: {}", out.stdout);
    let session = out.stdout.lines().find(|l| l.trim_end().ends_with(" __main__.Session"));
    let count = session.and_then(|l| l.split_whitespace().next()).and_then(|c| c.parse::<u64>().ok());
    assert!(count.is_some_and(|c| c > 0), "the example's leak leads the table: {}", out.stdout);
    eprintln!("{}: {:.1} s", test_name(), test_start.elapsed().as_secs_f64());
}

/// The path of `program` on PATH.
fn which(program: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{program} is not on PATH"))
}

/// Whether `exe` is an ELF file with neither a program interpreter nor a needed shared library.
fn no_dynamic_dependencies(exe: &Path) -> Result<(), String> {
    let data = fs::read(exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    let elf = goblin::elf::Elf::parse(&data).map_err(|e| format!("{}: {e}", exe.display()))?;
    if let Some(interp) = elf.interpreter {
        return Err(format!("{} has a program interpreter, {interp}", exe.display()));
    }
    if !elf.libraries.is_empty() {
        return Err(format!("{} needs {:?}", exe.display(), elf.libraries));
    }
    Ok(())
}

/// Runs `ARGS` with `root` as `/` in a mount namespace of its own, /proc mounted there (the host's PID
/// namespace: its processes are visible). Retries while the kernel says the binary, copied by this test
/// a moment ago, is still open for writing (ETXTBSY from a child another test thread forked meanwhile).
fn in_root(root: &Path, args: &[&str]) -> Result<CmdOutput, String> {
    let unshare = which("unshare")?;
    for _ in 0..50 {
        let mut cmd = Command::new(&unshare);
        cmd.arg("--mount").arg(format!("--root={}", root.display())).arg("--mount-proc").args(args);
        cmd.env_clear().env("PATH", "/");
        let out = run_with_timeout(cmd, MEMSPY_TIMEOUT).map_err(|e| format!("cannot run unshare: {e}"))?;
        if out.stderr.contains("Text file busy") {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        return Ok(out);
    }
    Err(format!("{args:?}: the binary stayed busy"))
}

#[test]
fn static_binary_runs_in_a_root_without_libraries() {
    let test_start = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip_or_fail("needs root (a mount namespace and a chroot)");
    }
    let unshare_works =
        which("unshare").is_ok_and(|u| Command::new(u).args(["--mount", "true"]).status().is_ok_and(|s| s.success()));
    if !unshare_works {
        return skip_or_fail("`unshare --mount` does not work here (util-linux missing, or no CAP_SYS_ADMIN)");
    }
    let interps = &discover_interpreters().interpreters;
    // One interpreter with a shared libpython (pyenv) and one static, stripped Debian build.
    let pick = |prefix: &str, minor: (u32, u32)| {
        interps.iter().find(|i| i.path.starts_with(prefix) && i.minor() == minor && i.abiflags.is_empty())
    };
    let pyenv_root = std::env::var("PYENV_ROOT")
        .unwrap_or_else(|_| format!("{}/.pyenv", std::env::var("HOME").unwrap_or_else(|_| "/root".into())));
    let targets: Vec<&Interpreter> =
        [pick(&pyenv_root, (3, 11)), pick("/usr/bin", (3, 13))].into_iter().flatten().collect();
    if targets.is_empty() {
        return skip_or_fail("neither pyenv's 3.11 nor Debian's python3.13 is installed");
    }

    // glibc's static archives (Debian's libc6-dev, there wherever a C toolchain is).
    let libc_a = Command::new("cc").arg("-print-file-name=libc.a").output();
    let libc_a = libc_a.map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())).unwrap_or_default();
    if !libc_a.is_absolute() || !libc_a.is_file() {
        return skip_or_fail("glibc's static libc.a is not installed (Debian: libc6-dev)");
    }

    let start = Instant::now();
    let mut cmd = Command::new(repo_root().join("scripts/build-static.sh"));
    cmd.arg("--profile").arg(profile()).current_dir(repo_root());
    cargo_env(&mut cmd, &[]);
    let built = run(cmd, "scripts/build-static.sh", BUILD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let bin = repo_root().join(built.stdout.lines().last().unwrap_or_default().trim());
    eprintln!(
        "scripts/build-static.sh --profile {}: {} in {:.1} s",
        profile(),
        bin.display(),
        start.elapsed().as_secs_f64()
    );

    // ldd says so (static-pie: "statically linked"; a static non-PIE binary: "not a dynamic executable"),
    // and the ELF headers agree.
    let ldd = Command::new("ldd").arg(&bin).output().expect("run ldd");
    let said = format!("{}{}", String::from_utf8_lossy(&ldd.stdout), String::from_utf8_lossy(&ldd.stderr));
    eprintln!("$ ldd {}\n{}", bin.display(), said.trim_end());
    assert!(said.contains("statically linked") || said.contains("not a dynamic executable"), "ldd: {said}");
    no_dynamic_dependencies(&bin).unwrap_or_else(|e| panic!("{e}"));

    // The root: the binary, an empty /proc to mount on, and a dynamic program as a control (it cannot
    // run there: no loader, no libc).
    let root = TempDir::new("static-root").expect("temp dir");
    fs::create_dir(root.path().join("proc")).expect("mkdir proc");
    fs::copy(&bin, root.path().join("memspy")).expect("copy memspy");
    let control = ["/usr/bin/true", "/bin/true"].into_iter().map(PathBuf::from).find(|p| p.is_file());
    if let Some(control) = &control {
        if no_dynamic_dependencies(control).is_err() {
            fs::copy(control, root.path().join("true")).expect("copy true");
            let out = in_root(root.path(), &["/true"]).unwrap_or_else(|e| panic!("{e}"));
            assert!(!out.success(), "a dynamic program ran in the root: it is not empty of libraries");
            eprintln!("control: {} in the root: {}", control.display(), out.stderr.trim());
            fs::remove_file(root.path().join("true")).expect("rm true");
        }
    }
    let listing: Vec<String> = fs::read_dir(root.path())
        .expect("read root")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    eprintln!("the root {}: {listing:?}", root.path().display());

    let out = in_root(root.path(), &["/memspy", "--version"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.success(), "/memspy --version in the root: {} {}", out.describe_status(), out.stderr);
    assert_eq!(out.stdout.trim(), expected_version());

    // Targets outside the root, by their PID: memspy reaches their binaries through /proc/PID/root.
    let mut failures = Vec::new();
    for interp in targets {
        let mut fixture = Fixture::spawn(interp, "example_app.py", &[]).unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_millis(1500));
        if let Some(status) = fixture.exited() {
            panic!("{}: exited early ({status:?}): {}", fixture.description, fixture.stderr_text());
        }
        let pid = fixture.pid.to_string();
        let out = in_root(root.path(), &["/memspy", "top", &pid, "--once", "--json"]).unwrap_or_else(|e| panic!("{e}"));
        let what = format!("{} (PID {pid}) from the root", interp.label());
        if !out.success() {
            failures.push(format!("{what}: {}: {}", out.describe_status(), tail(&out.stderr, 1000)));
            continue;
        }
        let report: Value = match serde_json::from_str(&out.stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{what}: not JSON ({e}): {}", tail(&out.stdout, 500)));
                continue;
            }
        };
        let version = report["python"]["version"].as_str().unwrap_or_default().to_string();
        let sessions = report["types"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "__main__.Session"))
            .and_then(|t| t["count"].as_u64())
            .unwrap_or(0);
        eprintln!(
            "{what}: Python {version} ({}), {} objects, {sessions} __main__.Session",
            report["python"]["linkage"].as_str().unwrap_or("?"),
            report["totals"]["objects"].as_u64().unwrap_or(0)
        );
        if version != interp.version_string() || sessions == 0 {
            failures.push(format!("{what}: Python {version:?}, {sessions} sessions: {}", tail(&out.stdout, 500)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{}: {:.1} s", test_name(), test_start.elapsed().as_secs_f64());
}
