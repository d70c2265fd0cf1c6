//! The full-screen `memspy top` view: rendering (pure: a report and its differences in, screen lines
//! out), key decoding, and the terminal guard that puts the terminal back on every exit path (normal
//! return, error, panic, Ctrl-C).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use nix::sys::termios::{self, InputFlags, LocalFlags, SetArg, Termios};

use crate::analysis::diff::Diff;
use crate::analysis::histogram::Report;
use crate::report::growth::{signed_bytes, signed_count};
use crate::report::human_bytes;

/// Enter the alternate screen, hide the cursor.
pub const ENTER: &str = "\x1b[?1049h\x1b[?25l";
/// Show the cursor, leave the alternate screen.
pub const LEAVE: &str = "\x1b[?25h\x1b[?1049l";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewSort {
    Bytes,
    Count,
    /// Bytes gained since the view started.
    Growth,
}

impl ViewSort {
    pub fn name(self) -> &'static str {
        match self {
            ViewSort::Bytes => "bytes",
            ViewSort::Count => "count",
            ViewSort::Growth => "growth",
        }
    }
}

/// What the user controls.
#[derive(Clone, Debug)]
pub struct ViewState {
    pub sort: ViewSort,
    /// Show only types whose name contains this (case-insensitive).
    pub filter: String,
    /// `Some(text)` while the filter is being typed.
    pub editing: Option<String>,
    pub paused: bool,
    pub quit: bool,
    /// Refresh now (r).
    pub refresh: bool,
}

impl ViewState {
    pub fn new(sort: ViewSort) -> ViewState {
        ViewState { sort, filter: String::new(), editing: None, paused: false, quit: false, refresh: false }
    }

    /// Applies typed bytes. Keys: b/c/g sort, / filter (Enter applies, Esc clears), p or space pause,
    /// r refresh now, q or Ctrl-C quit.
    pub fn keys(&mut self, input: &[u8]) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            if b == 0x03 {
                self.quit = true;
                return;
            }
            if b == 0x1b {
                // An escape sequence (arrow keys…) is skipped; a lone Esc cancels filter editing.
                if input.get(i) == Some(&b'[') || input.get(i) == Some(&b'O') {
                    i += 1;
                    while i < input.len() && !(0x40..=0x7e).contains(&input[i]) {
                        i += 1;
                    }
                    i += 1;
                } else if self.editing.take().is_some() {
                    self.filter.clear();
                }
                continue;
            }
            if let Some(text) = self.editing.as_mut() {
                match b {
                    b'\r' | b'\n' => {
                        self.filter = self.editing.take().unwrap_or_default();
                    }
                    0x7f | 0x08 => {
                        text.pop();
                    }
                    0x20..=0x7e => text.push(b as char),
                    _ => {}
                }
                continue;
            }
            match b {
                b'q' | b'Q' => {
                    self.quit = true;
                    return;
                }
                b'b' => self.sort = ViewSort::Bytes,
                b'c' => self.sort = ViewSort::Count,
                b'g' => self.sort = ViewSort::Growth,
                b'/' | b'f' => self.editing = Some(String::new()),
                b'p' | b' ' => self.paused = !self.paused,
                b'r' => self.refresh = true,
                _ => {}
            }
        }
    }
}

/// Everything one frame shows.
pub struct Frame<'a> {
    pub report: &'a Report,
    pub since_start: &'a Diff,
    pub since_last: Option<&'a Diff>,
    pub refreshes: u64,
    pub rate_s: f64,
    /// A note for the status line ("sampling…", an error that did not stop the view).
    pub note: &'a str,
}

fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        s.chars().take(width).collect()
    }
}

/// The screen as lines (at most `height`, each at most `width` characters).
pub fn render(state: &ViewState, f: &Frame, width: usize, height: usize) -> Vec<String> {
    let r = f.report;
    let width = width.max(20);
    let mut lines = Vec::new();
    let mut l1 = format!("memspy top  PID {}  Python {}", r.pid, r.python.version);
    if r.python.debug {
        l1.push_str(" (debug)");
    }
    let _ = write!(
        l1,
        "  RSS {}  {}: {} objects, {}",
        r.rss.map(human_bytes).unwrap_or_else(|| "?".into()),
        r.coverage,
        r.totals.objects,
        human_bytes(r.totals.bytes)
    );
    lines.push(l1);
    let mut l2 = format!(
        "last pause {:.1} ms (walk {:.1} ms)  every {:.1} s  refresh #{}  since start: {} objects, {}",
        r.pause_ms,
        r.elapsed_ms,
        f.rate_s,
        f.refreshes,
        signed_count(f.since_start.objects_delta),
        signed_bytes(f.since_start.bytes_delta)
    );
    if r.partial {
        l2.push_str("  [PARTIAL]");
    } else if r.approximate {
        l2.push_str("  [approximate]");
    }
    lines.push(l2);
    let mut l3 = format!("sort: {}", state.sort.name());
    match &state.editing {
        Some(t) => {
            let _ = write!(l3, "  filter: {t}_  (Enter apply, Esc clear)");
        }
        None if !state.filter.is_empty() => {
            let _ = write!(l3, "  filter: {}", state.filter);
        }
        None => {}
    }
    if state.paused {
        l3.push_str("  [PAUSED]");
    }
    if !f.note.is_empty() {
        let _ = write!(l3, "  {}", f.note);
    }
    lines.push(l3);
    lines.push(format!(
        "{:>10} {:>11} {:>10} {:>12} {:>9} {:>11}  TYPE",
        "COUNT", "BYTES", "ΔCOUNT", "ΔBYTES", "ΔC LAST", "ΔB LAST"
    ));

    let start: HashMap<&str, (i64, i64)> =
        f.since_start.types.iter().map(|t| (t.name.as_str(), (t.delta, t.delta_bytes))).collect();
    let last: HashMap<&str, (i64, i64)> = f
        .since_last
        .map(|d| d.types.iter().map(|t| (t.name.as_str(), (t.delta, t.delta_bytes))).collect())
        .unwrap_or_default();
    let needle = state.filter.to_lowercase();
    let mut rows: Vec<_> = r
        .types
        .iter()
        .filter(|t| needle.is_empty() || t.name.to_lowercase().contains(&needle))
        .map(|t| {
            let s = start.get(t.name.as_str()).copied().unwrap_or((0, 0));
            let l = last.get(t.name.as_str()).copied().unwrap_or((0, 0));
            (t, s, l)
        })
        .collect();
    rows.sort_by(|(a, sa, _), (b, sb, _)| {
        let (ka, kb) = match state.sort {
            ViewSort::Bytes => ((a.bytes as i128, a.count as i128), (b.bytes as i128, b.count as i128)),
            ViewSort::Count => ((a.count as i128, a.bytes as i128), (b.count as i128, b.bytes as i128)),
            ViewSort::Growth => ((sa.1 as i128, sa.0 as i128), (sb.1 as i128, sb.0 as i128)),
        };
        kb.cmp(&ka).then_with(|| a.name.cmp(&b.name))
    });
    let room = height.saturating_sub(lines.len() + 1);
    let shown = rows.len().min(room);
    for (t, s, l) in rows.iter().take(shown) {
        lines.push(format!(
            "{:>10} {:>11} {:>10} {:>12} {:>9} {:>11}  {}",
            t.count,
            human_bytes(t.bytes),
            signed_count(s.0),
            signed_bytes(s.1),
            signed_count(l.0),
            signed_bytes(l.1),
            t.name
        ));
    }
    let more = if rows.len() > shown { format!("({} more)  ", rows.len() - shown) } else { String::new() };
    lines.push(format!("{more}keys: b bytes  c count  g growth  / filter  p pause  r refresh  q quit"));
    lines.into_iter().take(height.max(1)).map(|l| fit(&l, width)).collect()
}

/// The lines as one frame to write: home, each line cleared to its end, the rest of the screen cleared.
pub fn frame_bytes(lines: &[String]) -> String {
    let mut s = String::from("\x1b[H");
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            s.push_str("\r\n");
        }
        s.push_str(l);
        s.push_str("\x1b[K");
    }
    s.push_str("\x1b[J");
    s
}

// ---------------------------------------------------------------------------
// The terminal

static ACTIVE: AtomicBool = AtomicBool::new(false);
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);
static HOOK: Once = Once::new();

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Puts the terminal back (idempotent; safe to call from the panic hook).
pub fn restore_terminal() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = std::io::stdout();
    let _ = out.write_all(LEAVE.as_bytes());
    let _ = out.flush();
    let saved = match SAVED.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    };
    if let Some(t) = saved {
        let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSAFLUSH, &t);
    }
}

/// The full-screen mode: raw keys (no echo, no line buffering, Ctrl-C as a key), the alternate screen,
/// no cursor. Dropping it (or a panic) restores the terminal.
pub struct TerminalGuard(());

impl TerminalGuard {
    pub fn enter() -> std::io::Result<TerminalGuard> {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        let saved = termios::tcgetattr(stdin_fd()).map_err(std::io::Error::from)?;
        let mut raw = saved.clone();
        raw.local_flags.remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG | LocalFlags::IEXTEN);
        raw.input_flags.remove(InputFlags::IXON | InputFlags::ICRNL);
        termios::tcsetattr(stdin_fd(), SetArg::TCSANOW, &raw).map_err(std::io::Error::from)?;
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = std::io::stdout();
        out.write_all(ENTER.as_bytes())?;
        out.flush()?;
        Ok(TerminalGuard(()))
    }

    /// (columns, rows) of the terminal; 80×24 when unknown.
    pub fn size(&self) -> (usize, usize) {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass.
        let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0;
        if ok && ws.ws_col > 0 && ws.ws_row > 0 {
            (ws.ws_col as usize, ws.ws_row as usize)
        } else {
            (80, 24)
        }
    }

    pub fn draw(&self, lines: &[String]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(frame_bytes(lines).as_bytes());
        let _ = out.flush();
    }

    /// Waits up to `timeout_ms` for keys; returns what was typed (empty on timeout or a signal).
    pub fn read_keys(&self, timeout_ms: i32) -> Vec<u8> {
        let mut pfd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms.max(0)) };
        if n <= 0 || pfd.revents & libc::POLLIN == 0 {
            if n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                // The terminal went away: quit.
                return vec![b'q'];
            }
            return Vec::new();
        }
        let mut buf = [0u8; 256];
        // SAFETY: reading into a local buffer of the given length.
        let got = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if got == 0 {
            return vec![b'q'];
        }
        if got < 0 {
            return Vec::new();
        }
        buf[..got as usize].to_vec()
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::diff::diff_reports;

    fn report(rows: &[(&str, u64, u64)]) -> Report {
        Report { pid: 9, ..Report::from_rows(rows) }
    }

    #[test]
    fn keys() {
        let mut s = ViewState::new(ViewSort::Bytes);
        s.keys(b"c");
        assert_eq!(s.sort, ViewSort::Count);
        s.keys(b"/Sessx\x7f\r");
        assert_eq!((s.filter.as_str(), s.editing.is_none()), ("Sess", true));
        s.keys(b"\x1b[Ag p");
        assert_eq!((s.sort, s.paused), (ViewSort::Growth, false), "p and space toggle twice");
        s.keys(b"/ab\x1b");
        assert!(s.filter.is_empty() && s.editing.is_none());
        s.keys(b"\x03");
        assert!(s.quit);
    }

    #[test]
    fn renders_sorted_filtered_rows() {
        let a = report(&[("m.Big", 1, 1000), ("m.Many", 50, 500), ("m.Grow", 1, 10)]);
        let b = report(&[("m.Big", 1, 1000), ("m.Many", 50, 500), ("m.Grow", 9, 900)]);
        let d = diff_reports(&a, &b);
        let f = Frame { report: &b, since_start: &d, since_last: Some(&d), refreshes: 2, rate_s: 2.0, note: "" };
        let names = |st: &ViewState| -> Vec<String> {
            render(st, &f, 120, 40)
                .iter()
                .skip(4)
                .filter_map(|l| l.split_whitespace().last().filter(|w| w.starts_with("m.")).map(String::from))
                .collect()
        };
        let mut st = ViewState::new(ViewSort::Bytes);
        assert_eq!(names(&st), ["m.Big", "m.Grow", "m.Many"]);
        st.sort = ViewSort::Count;
        assert_eq!(names(&st), ["m.Many", "m.Grow", "m.Big"]);
        st.sort = ViewSort::Growth;
        assert_eq!(names(&st)[0], "m.Grow");
        st.filter = "MAN".into();
        assert_eq!(names(&st), ["m.Many"]);
        let lines = render(&st, &f, 120, 6);
        assert!(lines.len() <= 6 && lines.last().unwrap().contains("q quit"));
        assert!(render(&st, &f, 30, 40).iter().all(|l| l.chars().count() <= 30));
    }
}
