//! The full-screen `memspy top` view, in three parts:
//! - this module: what the user controls ([`ViewState`]) and how input changes it (pure);
//! - [`view`]: what one frame shows, drawn into a ratatui buffer (pure: state and figures in, cells out);
//! - [`terminal`]: the real terminal (raw mode, the alternate screen, input, resize), put back on every
//!   exit path (normal return, error, panic, Ctrl-C).

pub mod terminal;
pub mod view;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

pub use terminal::Screen;
pub use view::{Frame, Palette};

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

/// What the terminal told us between two frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Key(KeyEvent),
    /// The window changed size (the next frame is drawn at the new size).
    Resize,
    /// The terminal went away (hang-up, end of input).
    Closed,
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

    pub fn input(&mut self, input: &Input) {
        match input {
            Input::Key(k) => self.key(k),
            Input::Resize => {}
            Input::Closed => self.quit = true,
        }
    }

    /// Keys: b/c/g sort, / (or f) filter (Enter applies, Esc clears), p or space pause, r refresh now,
    /// q or Ctrl-C quit.
    pub fn key(&mut self, key: &KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            self.quit = true;
            return;
        }
        if let Some(text) = self.editing.as_mut() {
            match key.code {
                KeyCode::Enter => self.filter = self.editing.take().unwrap_or_default(),
                KeyCode::Esc => {
                    self.editing = None;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) if !ctrl && !c.is_control() => text.push(c),
                _ => {}
            }
            return;
        }
        if ctrl {
            return;
        }
        match key.code {
            KeyCode::Char('q' | 'Q') => self.quit = true,
            KeyCode::Char('b') => self.sort = ViewSort::Bytes,
            KeyCode::Char('c') => self.sort = ViewSort::Count,
            KeyCode::Char('g') => self.sort = ViewSort::Growth,
            KeyCode::Char('/' | 'f') => self.editing = Some(String::new()),
            KeyCode::Char('p' | ' ') => self.paused = !self.paused,
            KeyCode::Char('r') => self.refresh = true,
            _ => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The key events of typing `text` (`\r` Enter, `\x1b` Esc, `\x7f` Backspace, `^` + letter Ctrl).
    pub(crate) fn typed(text: &str) -> Vec<Input> {
        let mut out = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let (code, mods) = match c {
                '\r' => (KeyCode::Enter, KeyModifiers::NONE),
                '\x1b' => (KeyCode::Esc, KeyModifiers::NONE),
                '\x7f' => (KeyCode::Backspace, KeyModifiers::NONE),
                '^' => (KeyCode::Char(chars.next().expect("a letter after ^")), KeyModifiers::CONTROL),
                c => (KeyCode::Char(c), KeyModifiers::NONE),
            };
            out.push(Input::Key(KeyEvent::new(code, mods)));
        }
        out
    }

    fn apply(s: &mut ViewState, text: &str) {
        for i in typed(text) {
            s.input(&i);
        }
    }

    #[test]
    fn keys() {
        let mut s = ViewState::new(ViewSort::Bytes);
        apply(&mut s, "c");
        assert_eq!(s.sort, ViewSort::Count);
        apply(&mut s, "/Sessx\x7f");
        assert_eq!(s.editing.as_deref(), Some("Sess"));
        apply(&mut s, "q\x7f\r");
        assert_eq!((s.filter.as_str(), s.editing.is_none(), s.quit), ("Sess", true, false), "q is typed, not quit");
        s.input(&Input::Key(KeyEvent::new(KeyCode::Up, KeyModifiers::NONE)));
        apply(&mut s, "g p");
        assert_eq!((s.sort, s.paused), (ViewSort::Growth, false), "p and space toggle twice");
        apply(&mut s, "/ab\x1b");
        assert!(s.filter.is_empty() && s.editing.is_none(), "Esc clears the filter");
        apply(&mut s, "r");
        assert!(s.refresh);
        s.input(&Input::Resize);
        assert!(!s.quit);
        apply(&mut s, "/ab^c");
        assert!(s.quit, "Ctrl-C quits even while typing a filter");
        let mut s = ViewState::new(ViewSort::Bytes);
        s.input(&Input::Closed);
        assert!(s.quit);
        let mut s = ViewState::new(ViewSort::Bytes);
        apply(&mut s, "Q");
        assert!(s.quit);
    }

    #[test]
    fn key_releases_are_ignored() {
        let mut s = ViewState::new(ViewSort::Bytes);
        let mut k = KeyEvent::new(KeyCode::Char('p'), KeyModifiers::NONE);
        k.kind = KeyEventKind::Release;
        s.key(&k);
        assert!(!s.paused);
    }
}
