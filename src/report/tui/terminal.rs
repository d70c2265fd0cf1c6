//! The real terminal: raw mode (keys one by one, no echo, Ctrl-C as a key), the alternate screen, a
//! hidden cursor, input and resize events. [`Screen`] puts the terminal back when dropped, and a panic
//! hook does so before the panic's message is printed.

use std::io::{self, BufWriter, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::Duration;

use crossterm::event::{self, Event, KeyEventKind};
use crossterm::terminal::{
    self, BeginSynchronizedUpdate, Clear, ClearType, EndSynchronizedUpdate, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::{cursor, execute, queue};
use ratatui::backend::{CrosstermBackend, WindowSize};
use ratatui::layout::{Position, Size};
use ratatui::Terminal;

use super::view::{self, Frame, Palette};
use super::{Input, ViewState};

static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Puts the terminal back: leaves the alternate screen, shows the cursor, restores the modes memspy
/// found and drops keys typed but not read (so they do not land in the shell). Idempotent; safe to call
/// from the panic hook.
pub fn restore_terminal() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    let _ = execute!(out, EndSynchronizedUpdate, LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
    // SAFETY: tcflush on fd 0 only discards pending input.
    unsafe {
        libc::tcflush(0, libc::TCIFLUSH);
    }
}

/// stdout while the view is up. Once the terminal is restored, what ratatui still writes is dropped: its
/// drop shows the cursor again (restore did), and a frame cut short by a panic must not land on the
/// normal screen (nor, on a terminal that hung up, fail and be reported on a stderr that is gone too).
struct Gate(Stdout);

impl Write for Gate {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if ACTIVE.load(Ordering::SeqCst) {
            self.0.write(b)
        } else {
            Ok(b.len())
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if ACTIVE.load(Ordering::SeqCst) {
            self.0.flush()
        } else {
            Ok(())
        }
    }
}

/// The size a window that reports none (0×0) is drawn at.
const FALLBACK_SIZE: Size = Size { width: 80, height: 24 };

/// crossterm's backend, but a window that reports no size is taken to be 80×24, as before.
struct Backend(CrosstermBackend<BufWriter<Gate>>);

impl ratatui::backend::Backend for Backend {
    type Error = io::Error;

    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a ratatui::buffer::Cell)>,
    {
        self.0.draw(content)
    }
    fn hide_cursor(&mut self) -> io::Result<()> {
        self.0.hide_cursor()
    }
    fn show_cursor(&mut self) -> io::Result<()> {
        self.0.show_cursor()
    }
    fn get_cursor_position(&mut self) -> io::Result<Position> {
        self.0.get_cursor_position()
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        self.0.set_cursor_position(position)
    }
    fn clear(&mut self) -> io::Result<()> {
        self.0.clear()
    }
    fn clear_region(&mut self, clear_type: ratatui::backend::ClearType) -> io::Result<()> {
        self.0.clear_region(clear_type)
    }
    fn size(&self) -> io::Result<Size> {
        let size = self.0.size()?;
        Ok(if size.width == 0 || size.height == 0 { FALLBACK_SIZE } else { size })
    }
    fn window_size(&mut self) -> io::Result<WindowSize> {
        let mut w = self.0.window_size()?;
        if w.columns_rows.width == 0 || w.columns_rows.height == 0 {
            w.columns_rows = FALLBACK_SIZE;
        }
        Ok(w)
    }
    fn flush(&mut self) -> io::Result<()> {
        ratatui::backend::Backend::flush(&mut self.0)
    }
}

/// The full-screen mode, for as long as this lives.
pub struct Screen {
    terminal: Terminal<Backend>,
    palette: Palette,
}

impl Screen {
    /// Enters the full-screen mode (stdin and stdout must be the terminal).
    pub fn enter() -> io::Result<Screen> {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let screen = Screen::start().inspect_err(|_| restore_terminal())?;
        // The event reader (and its SIGWINCH handler) starts now, so that a resize from here on is seen.
        let _ = event::poll(Duration::ZERO);
        Ok(screen)
    }

    fn start() -> io::Result<Screen> {
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide, Clear(ClearType::All))?;
        // A frame is written whole (one write for most frames), not in line-sized pieces.
        let backend = Backend(CrosstermBackend::new(BufWriter::with_capacity(1 << 16, Gate(io::stdout()))));
        let terminal = Terminal::new(backend)?;
        Ok(Screen { terminal, palette: Palette::from_env() })
    }

    /// Draws one frame: only the cells that changed since the last one, at the window's current size
    /// (after a resize, the whole screen). Terminals that know synchronized updates show it at once.
    pub fn draw(&mut self, state: &ViewState, frame: &Frame) -> io::Result<()> {
        let palette = self.palette;
        queue!(self.terminal.backend_mut().0, BeginSynchronizedUpdate)?;
        self.terminal.draw(|out| view::render(out, state, frame, palette))?;
        execute!(self.terminal.backend_mut().0, EndSynchronizedUpdate)
    }

    /// Waits up to `timeout` for input; returns what came (nothing on timeout).
    pub fn read_input(&mut self, timeout: Duration) -> Vec<Input> {
        // The terminal itself is polled for the wait, and checked before each read: the event reader
        // would spin on a terminal that hung up.
        if let Readable::Closed = wait_readable(timeout) {
            return vec![Input::Closed];
        }
        // What is ready now (typed keys; a resize, which also ends the wait above), without blocking.
        let mut got = Vec::new();
        loop {
            if let Readable::Closed = wait_readable(Duration::ZERO) {
                got.push(Input::Closed);
                break;
            }
            match event::poll(Duration::ZERO) {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    got.push(Input::Closed);
                    break;
                }
            }
            match event::read() {
                Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => got.push(Input::Key(k)),
                Ok(Event::Resize(..)) => got.push(Input::Resize),
                Ok(_) => {}
                Err(_) => {
                    got.push(Input::Closed);
                    break;
                }
            }
        }
        got
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

enum Readable {
    /// Input is waiting, or a signal ended the wait.
    Yes,
    No,
    /// Hung up or gone.
    Closed,
}

/// Waits up to `timeout` for stdin to have input. A signal (SIGWINCH after a resize) ends the wait
/// early, as input would.
fn wait_readable(timeout: Duration) -> Readable {
    let mut pfd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n <= 0 {
        return if n < 0 { Readable::Yes } else { Readable::No };
    }
    if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        Readable::Closed
    } else {
        Readable::Yes
    }
}
