//! The full-screen `top`, driven in a pseudo-terminal, watching a leak (common/leaky.rs: exact ticks of
//! fixtures/leaky.py): keys, sorting, filtering, pausing, and the terminal restored however memspy ends.
//! (`memspy growth`, `snapshot` + `diff` and the commands that start the program: growth_diff.rs.)
//!
//! Env: MEMSPY_TEST_PYTHONS=path:path limits the interpreters (the test runs on the first).

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const ENTER_ALT: &str = "\x1b[?1049h";
const LEAVE_ALT: &str = "\x1b[?1049l";
const SHOW_CURSOR: &str = "\x1b[?25h";
/// The view draws each frame as one synchronized update: a frame is complete at its end.
const FRAME_END: &[u8] = b"\x1b[?2026l";

/// What memspy wrote to the terminal, and the screen as a terminal shows it after each complete frame.
struct Output {
    raw: Vec<u8>,
    /// `raw[..fed]` went through the emulator (up to the end of the last complete frame).
    fed: usize,
    emulator: vt100::Parser,
    /// Each complete frame that differed from the one before, as screen lines (trailing blanks removed).
    frames: Vec<Vec<String>>,
}

impl Output {
    fn new(rows: u16, cols: u16) -> Output {
        let size = |n: u16| std::num::NonZeroU16::new(n).unwrap();
        Output { raw: Vec::new(), fed: 0, emulator: vt100::Parser::new(size(rows), size(cols), 0), frames: Vec::new() }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        while let Some(i) = self.raw[self.fed..].windows(FRAME_END.len()).position(|w| w == FRAME_END) {
            let end = self.fed + i + FRAME_END.len();
            self.emulator.process(&self.raw[self.fed..end]);
            self.fed = end;
            let screen = self.emulator.screen();
            let lines: Vec<String> = screen.rows(0, screen.size().1.get()).map(|l| l.trim_end().to_string()).collect();
            if self.frames.last() != Some(&lines) {
                self.frames.push(lines);
            }
        }
    }
}

struct Pty {
    child: std::process::Child,
    master: std::fs::File,
    slave: OwnedFd,
    output: Arc<Mutex<Output>>,
}

impl Pty {
    fn spawn(args: &[&str]) -> Pty {
        Pty::spawn_env(args, &[])
    }

    fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Pty {
        let (rows, cols) = (40, 140);
        let ws = nix::pty::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        let mut cmd = Command::new(memspy_bin());
        cmd.args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(io(&pty.slave))
            .stdout(io(&pty.slave))
            .stderr(io(&pty.slave));
        // As in a terminal window: the pty is memspy's controlling terminal (its size, SIGWINCH on resize).
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn memspy");
        let master = std::fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(Output::new(rows, cols)));
        let (mut reader, sink) = (master.try_clone().expect("dup"), output.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push(&buf[..n]);
            }
        });
        Pty { child, master, slave: pty.slave, output }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap().raw).into_owned()
    }

    /// The screen after the last complete frame, one string per line.
    fn last_frame(&self) -> Vec<String> {
        self.output.lock().unwrap().frames.last().cloned().unwrap_or_default()
    }

    /// Whether any frame so far satisfied `ok`.
    fn any_frame(&self, ok: impl Fn(&[String]) -> bool) -> bool {
        self.output.lock().unwrap().frames.iter().any(|f| ok(f))
    }

    /// Resizes the window, as a terminal does (the kernel signals memspy).
    fn resize(&self, rows: u16, cols: u16) {
        let mut out = self.output.lock().unwrap();
        let size = |n: u16| std::num::NonZeroU16::new(n).unwrap();
        out.emulator.set_size(size(rows), size(cols));
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("write keys");
    }

    /// Waits (bounded) for a frame satisfying `ok`.
    fn wait_frame(&self, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        let start = Instant::now();
        loop {
            let f = self.last_frame();
            if ok(&f) {
                return f;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!(
                    "no frame with {what}; last frame:\n{}\n(raw tail: {:?})",
                    f.join("\n"),
                    tail(&self.text(), 600)
                );
            }
            thread::sleep(Duration::from_millis(30));
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                thread::sleep(Duration::from_millis(100)); // let the reader drain
                return s;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                panic!("memspy did not exit; output tail: {:?}", tail(&self.text(), 600));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The terminal is back: the alternate screen left after it was entered, the cursor shown, and
    /// line editing and echo on again.
    fn assert_restored(&self) {
        let t = self.text();
        let entered = t.find(ENTER_ALT).expect("alternate screen never entered");
        let left = t.rfind(LEAVE_ALT).expect("alternate screen not left");
        assert!(left > entered, "left before entering");
        assert!(t[entered..].contains(SHOW_CURSOR), "cursor not shown again");
        let attrs = nix::sys::termios::tcgetattr(self.slave.as_fd()).expect("tcgetattr");
        use nix::sys::termios::LocalFlags as L;
        assert!(
            attrs.local_flags.contains(L::ICANON | L::ECHO | L::ISIG),
            "terminal modes not restored: {:?}",
            attrs.local_flags
        );
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The rows of a frame: (count, name).
fn rows(frame: &[String]) -> Vec<(u64, String)> {
    frame
        .iter()
        .skip(4)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let count = w.first()?.parse().ok()?;
            Some((count, w.last()?.to_string()))
        })
        .collect()
}

#[test]
fn live_top_in_a_terminal() {
    let interp = &discover_interpreters().interpreters[0];
    let mut leaky = Leaky::start(interp).expect("fixture");
    let pid = leaky.pid();
    let mut t = Pty::spawn(&["top", &pid, "--rate", "0.3"]);
    let f = t.wait_frame("the leak row after a refresh", |f| {
        f.first().is_some_and(|l| l.contains(&format!("PID {pid}")) && l.contains("RSS"))
            && f.iter().any(|l| l.contains("refresh #3"))
            && rows(f).iter().any(|r| r.1 == LEAKED)
    });
    assert!(f[1].contains("last pause") && f[2].contains("sort: bytes"), "{}", f.join("\n"));
    assert!(f[3].contains("ΔCOUNT") && f[3].contains("ΔC LAST"), "{}", f.join("\n"));
    assert!(f.last().unwrap().contains("q quit"));

    t.send("c");
    let f = t.wait_frame("sort: count", |f| f.get(2).is_some_and(|l| l.contains("sort: count")));
    let counts: Vec<u64> = rows(&f).iter().map(|r| r.0).collect();
    assert!(counts.len() > 3 && counts.windows(2).all(|w| w[0] >= w[1]), "not by count: {}", f.join("\n"));

    t.send("g");
    t.wait_frame("sort: growth, the leak first", |f| {
        f.get(2).is_some_and(|l| l.contains("sort: growth")) && rows(f).first().is_some_and(|r| r.1 == LEAKED)
    });

    t.send("/churn\r");
    let f =
        t.wait_frame("filter: churn", |f| f.get(2).is_some_and(|l| l.contains("filter: churn") && !l.contains('_')));
    let r = rows(&f);
    assert!(!r.is_empty() && r.iter().all(|r| r.1.to_lowercase().contains("churn")), "filter: {}", f.join("\n"));

    t.send("p");
    t.wait_frame("[PAUSED]", |f| f.get(2).is_some_and(|l| l.contains("[PAUSED]")));

    // A resize redraws the view at the new size: narrower drops the last-refresh columns, the footer
    // moves to the new last line; and back.
    for (height, width, last_columns) in [(24u16, 90u16, false), (40, 140, true)] {
        t.resize(height, width);
        let f = t.wait_frame(&format!("the view redrawn at {width}x{height}"), |f| {
            f.len() == height as usize
                && f.last().is_some_and(|l| l.contains("q quit"))
                && f.get(3).is_some_and(|l| l.contains("ΔCOUNT") && l.contains("ΔC LAST") == last_columns)
        });
        assert!(f[2].contains("filter: churn") && f[2].contains("[PAUSED]"), "{}", f.join("\n"));
        assert!(rows(&f).iter().all(|r| r.1.to_lowercase().contains("churn")), "{}", f.join("\n"));
    }

    t.send("q");
    let status = t.wait_exit();
    assert!(status.success(), "exit {status:?}");
    t.assert_restored();
    let mut errors = Vec::new();
    leaky.check_running(&mut errors);
    assert!(errors.is_empty(), "{errors:?}");

    // Ctrl-C quits cleanly too.
    let mut t = Pty::spawn(&["top", &pid, "--rate", "0.3"]);
    t.wait_frame("a frame", |f| rows(f).iter().any(|r| r.1 == LEAKED));
    t.send("\x03");
    assert!(t.wait_exit().success());
    t.assert_restored();

    // A bug under the view (a forced panic in the middle of the third walk, with the target stopped):
    // the terminal is restored, one line says what happened, and the target runs on.
    let knobs = [("MEMSPY_TEST_PANIC_IN_WALK", "50"), ("MEMSPY_TEST_PANIC_FROM_SNAPSHOT", "3")];
    let mut t = Pty::spawn_env(&["top", &pid, "--rate", "0.2"], &knobs);
    let status = t.wait_exit();
    assert!(!status.success(), "a panic must fail: {status:?}");
    t.assert_restored();
    let all = t.text();
    let after = &all[all.rfind(LEAVE_ALT).unwrap()..];
    assert!(
        after.contains("memspy: internal error") && after.contains("MEMSPY_TEST_PANIC_IN_WALK"),
        "after leaving: {after:?}"
    );
    assert!(!after.contains("RUST_BACKTRACE"), "{after:?}");
    assert!(
        t.any_frame(|f| f.iter().any(|l| l.contains("refresh #2"))),
        "the view ran before the panic: {:?}",
        tail(&all, 600)
    );
    let mut errors = Vec::new();
    leaky.check_running(&mut errors);
    assert!(errors.is_empty(), "after a panic: {errors:?}");

    // The target exiting under the view: the terminal is restored and memspy says why.
    let mut t = Pty::spawn(&["top", &pid, "--rate", "0.2"]);
    t.wait_frame("a frame", |f| rows(f).iter().any(|r| r.1 == LEAKED));
    drop(leaky);
    t.wait_exit();
    t.assert_restored();
    let after = t.text();
    let after = &after[after.rfind(LEAVE_ALT).unwrap()..];
    assert!(after.contains(&format!("PID {pid}")) && after.contains("memspy"), "no message after leaving: {after:?}");
}
