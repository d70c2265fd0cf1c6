//! Running commands with a time limit, and the memspy binary in particular.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{memspy_bin, tail};

/// How long one memspy invocation may take.
pub const MEMSPY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct CmdOutput {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.map(|s| s.success()).unwrap_or(false)
    }

    /// "exit status 1", "killed by signal 9", "timed out after 120 s".
    pub fn describe_status(&self) -> String {
        if self.timed_out {
            return format!("timed out after {:.0} s (killed)", self.elapsed.as_secs_f64());
        }
        match self.status {
            Some(s) => describe_exit(s),
            None => "no exit status".to_string(),
        }
    }
}

pub fn describe_exit(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = s.code() {
        format!("exit status {}", code)
    } else if let Some(sig) = s.signal() {
        format!("killed by signal {}", sig)
    } else {
        format!("{:?}", s)
    }
}

/// Run `cmd` (stdin null, stdout and stderr captured); kill it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> io::Result<CmdOutput> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait()? {
            Some(s) => break Some(s),
            None => {
                if start.elapsed() > timeout {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Ok(CmdOutput { status, stdout, stderr, timed_out, elapsed: start.elapsed() })
}

/// Run the memspy binary with `args`.
pub fn run_memspy<I, S>(args: I) -> io::Result<CmdOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_memspy_env(args, &[])
}

/// [`run_memspy`] with these environment variables set (memspy's test hooks).
pub fn run_memspy_env<I, S>(args: I, envs: &[(&str, &str)]) -> io::Result<CmdOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(memspy_bin());
    cmd.args(args);
    cmd.envs(envs.iter().copied());
    // Keep memspy's own logging from flooding stderr unless asked for.
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    run_with_timeout(cmd, MEMSPY_TIMEOUT)
}

/// `memspy top PID --once --json`, parsed.  Errors carry the exit status and stderr.
pub fn memspy_top_json(pid: u32) -> Result<(Value, CmdOutput), String> {
    memspy_top_json_with(pid, &[])
}

/// `memspy ARGS...`, its stdout parsed as JSON.  Errors carry the exit status and stderr.
pub fn run_memspy_json<S: AsRef<str>>(args: &[S]) -> Result<(Value, CmdOutput), String> {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let out = run_memspy(&args).map_err(|e| format!("could not run {}: {}", memspy_bin().display(), e))?;
    if !out.success() {
        return Err(format!(
            "`memspy {}` failed: {}; stderr: {}",
            args.join(" "),
            out.describe_status(),
            tail(&out.stderr, 2000)
        ));
    }
    match serde_json::from_str::<Value>(&out.stdout) {
        Ok(v) => Ok((v, out)),
        Err(e) => Err(format!(
            "memspy stdout is not JSON ({}): {}; stderr: {}",
            e,
            tail(&out.stdout, 1000),
            tail(&out.stderr, 1000)
        )),
    }
}

/// `memspy top PID --once --json EXTRA...`, parsed.
pub fn memspy_top_json_with(pid: u32, extra: &[&str]) -> Result<(Value, CmdOutput), String> {
    let pid = pid.to_string();
    let mut args = vec!["top", pid.as_str(), "--once", "--json"];
    args.extend_from_slice(extra);
    run_memspy_json(&args)
}

// ---------------------------------------------------------------------------
// Executing a freshly copied binary

/// Spawns `cmd`, retrying while the kernel answers ETXTBSY: a binary the test just copied can still be
/// open for writing in a child that another test thread forked during the copy (until that child execs).
pub fn spawn_retrying(cmd: &mut Command) -> io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc_etxtbsy()) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// ETXTBSY on Linux.
pub const fn libc_etxtbsy() -> i32 {
    26
}
