//! Fixture processes: a script of fixtures/ under one interpreter, writing its ground truth to a file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{describe_exit, fixture_script, tail, Interpreter, TempDir};

/// How long a fixture may take to write its truth file.
pub const FIXTURE_TIMEOUT: Duration = Duration::from_secs(60);

/// A running fixture script.  The process is killed (SIGKILL) and reaped on drop,
/// and its temp dir removed.
pub struct Fixture {
    child: Child,
    pub pid: u32,
    pub truth_path: PathBuf,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    pub description: String,
    dir: TempDir,
}

impl Fixture {
    /// Start `interp -I fixtures/<script> <tmpdir>/truth.json <args...>`.
    pub fn spawn(interp: &Interpreter, script: &str, args: &[&str]) -> Result<Fixture, String> {
        Fixture::spawn_with_env(interp, script, args, &[])
    }

    /// Like [`Fixture::spawn`], with extra environment variables (e.g. PYTHONMALLOC=malloc): then `-s`
    /// instead of `-I`, which would ignore PYTHON* variables (`-s` still skips the user site).
    pub fn spawn_with_env(
        interp: &Interpreter,
        script: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Fixture, String> {
        let dir = TempDir::new(&format!("{}-{}", interp.label(), script)).map_err(|e| format!("temp dir: {}", e))?;
        let truth_path = dir.path().join("truth.json");
        let stderr_path = dir.path().join("stderr.txt");
        let stdout_path = dir.path().join("stdout.txt");
        let errf = fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let outf = fs::File::create(&stdout_path).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&interp.path);
        cmd.arg(if env.is_empty() { "-I" } else { "-s" }).arg(fixture_script(script)).arg(&truth_path).args(args);
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null()).stdout(outf).stderr(errf);
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {}", interp.path.display(), e))?;
        let pid = child.id();
        let envs: Vec<String> = env.iter().map(|(k, v)| format!("{}={} ", k, v)).collect();
        let description = format!("{}{} {} {}", envs.concat(), interp.path.display(), script, args.join(" "));
        Ok(Fixture { child, pid, truth_path, stderr_path, stdout_path, description, dir })
    }

    /// Kills the fixture and waits for it (what is left of it is its files).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// None while running; Some(status) once it exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait (bounded) for the truth file; it is written atomically by rename.
    pub fn wait_for_truth(&mut self, timeout: Duration) -> Result<Value, String> {
        let start = Instant::now();
        loop {
            if self.truth_path.exists() {
                let text = fs::read_to_string(&self.truth_path).map_err(|e| format!("reading truth: {}", e))?;
                return serde_json::from_str(&text).map_err(|e| format!("truth file is not JSON: {}", e));
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "fixture exited before writing its truth ({}); stderr: {}",
                    describe_exit(status),
                    tail(&self.stderr_text(), 2000)
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "fixture wrote no truth within {} s; stderr: {}",
                    timeout.as_secs(),
                    tail(&self.stderr_text(), 2000)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait (bounded) until the fixture sits in `pause(2)` (fixtures that block in `signal.pause()` after
    /// writing their truth): between the rename of the truth file and the pause, the temporaries of the
    /// truth-taking may still be alive, and a loaded machine can deschedule the fixture right there.
    pub fn wait_until_paused(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let syscall = fs::read_to_string(format!("/proc/{}/syscall", self.pid)).unwrap_or_default();
            // x86_64: syscall 34 is pause.
            if syscall.split_whitespace().next() == Some("34") {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(format!("fixture exited ({}) instead of pausing", describe_exit(status)));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "fixture did not reach pause() within {} s (syscall: {})",
                    timeout.as_secs(),
                    syscall.trim()
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if start.elapsed() > timeout {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process state letter from /proc/PID/stat ('S', 'R', 'T', 't', 'Z', ...).
    pub fn proc_state(&self) -> Option<char> {
        proc_state(self.pid)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{}/stat", pid)).ok()?;
    // "pid (comm) S ..." -- comm may contain spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Starts `script` under `interp`, waits for its truth and until it sits in `pause()`: the state every
/// ground-truth comparison needs. Returns the running fixture and its truth.
pub fn start_settled(interp: &Interpreter, script: &str, args: &[&str]) -> Result<(Fixture, Value), String> {
    start_settled_with_env(interp, script, args, &[])
}

/// [`start_settled`] with extra environment variables (see [`Fixture::spawn_with_env`]).
pub fn start_settled_with_env(
    interp: &Interpreter,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(Fixture, Value), String> {
    let mut fixture = Fixture::spawn_with_env(interp, script, args, env)?;
    let truth = fixture.wait_for_truth(FIXTURE_TIMEOUT)?;
    fixture.wait_until_paused(FIXTURE_TIMEOUT)?;
    Ok((fixture, truth))
}
