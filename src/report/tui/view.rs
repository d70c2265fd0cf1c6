//! What one frame of the live view shows, drawn into a ratatui frame. Pure: the same state and figures
//! give the same cells, which the tests read back from ratatui's `TestBackend`.
//!
//! ```text
//! memspy top  PID …  Python …  RSS …  full-heap: N objects, …        the target
//! last pause … ms (walk … ms)  every … s  refresh #N  since start: …  the walks
//! sort: bytes  filter: …  [PAUSED]  sampling…                        what the user chose
//!      COUNT       BYTES     ΔCOUNT       ΔBYTES   ΔC LAST      ΔB LAST  TYPE
//!        …                                                              rows, as many as fit
//! (N more)  keys: b bytes  c count  g growth  / filter  p pause  r refresh  q quit
//! ```
//!
//! Narrow windows drop the delta columns (the last-refresh pair first) before they squeeze the type
//! names.

use std::collections::HashMap;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{ViewSort, ViewState};
use crate::analysis::diff::Diff;
use crate::analysis::histogram::{Report, TypeRow};
use crate::report::growth::{signed_bytes, signed_count};
use crate::report::human_bytes;

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

/// Whether to use colour. Without it the view keeps only bold, underline and reverse video.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Palette {
    pub color: bool,
}

impl Palette {
    /// Colour unless `NO_COLOR` is set to something non-empty (<https://no-color.org>).
    pub fn from_env() -> Palette {
        Palette { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    /// Growth in red, shrinking in green, no change plain.
    fn delta(self, v: i64) -> Style {
        match v.signum() {
            1 => self.fg(Color::Red),
            -1 => self.fg(Color::Green),
            _ => Style::new(),
        }
    }
}

/// One type's line: its figures now, and its changes since the view started and since the last refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewRow<'a> {
    pub name: &'a str,
    pub count: u64,
    pub bytes: u64,
    /// (objects, bytes) gained since the view started.
    pub since_start: (i64, i64),
    /// (objects, bytes) gained since the previous refresh.
    pub since_last: (i64, i64),
}

/// The types that pass the filter (the one being typed, as it is typed), in the chosen order (ties by
/// name).
pub fn rows<'a>(state: &ViewState, f: &Frame<'a>) -> Vec<ViewRow<'a>> {
    let deltas = |d: &'a Diff| -> HashMap<&'a str, (i64, i64)> {
        d.types.iter().map(|t| (t.name.as_str(), (t.delta, t.delta_bytes))).collect()
    };
    let start = deltas(f.since_start);
    let last = f.since_last.map(deltas).unwrap_or_default();
    let needle = state.editing.as_deref().unwrap_or(&state.filter).to_lowercase();
    let row = |t: &'a TypeRow| ViewRow {
        name: &t.name,
        count: t.count,
        bytes: t.bytes,
        since_start: start.get(t.name.as_str()).copied().unwrap_or((0, 0)),
        since_last: last.get(t.name.as_str()).copied().unwrap_or((0, 0)),
    };
    let mut rows: Vec<ViewRow<'a>> = f
        .report
        .types
        .iter()
        .filter(|t| needle.is_empty() || t.name.to_lowercase().contains(&needle))
        .map(row)
        .collect();
    let key = |r: &ViewRow| -> (i128, i128) {
        match state.sort {
            ViewSort::Bytes => (r.bytes as i128, r.count as i128),
            ViewSort::Count => (r.count as i128, r.bytes as i128),
            ViewSort::Growth => (r.since_start.1 as i128, r.since_start.0 as i128),
        }
    };
    rows.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(b.name)));
    rows
}

/// The numeric columns: header and width. The type name takes what is left.
const COLUMNS: [(&str, u16); 6] =
    [("COUNT", 9), ("BYTES", 10), ("ΔCOUNT", 9), ("ΔBYTES", 11), ("ΔC LAST", 8), ("ΔB LAST", 11)];
/// Columns are dropped (in pairs, from the right) rather than leave the type names less than this.
const MIN_NAME: u16 = 30;
const SPACING: u16 = 2;

/// How many numeric columns fit in `width` next to the type names: 6, 4 or 2.
pub fn numeric_columns(width: u16) -> usize {
    let need = |n: usize| COLUMNS[..n].iter().map(|c| c.1 + SPACING).sum::<u16>() + MIN_NAME;
    [6, 4].into_iter().find(|&n| width >= need(n)).unwrap_or(2)
}

/// Draws the whole view into `out`.
pub fn render(out: &mut ratatui::Frame, state: &ViewState, f: &Frame, palette: Palette) {
    let [title, walks, status, table, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(out.area());
    out.render_widget(Paragraph::new(title_line(f.report)), title);
    out.render_widget(Paragraph::new(walks_line(f, palette)), walks);
    let (line, cursor) = status_line(state, f, palette);
    out.render_widget(Paragraph::new(line), status);
    if let Some(x) = cursor {
        // The cursor sits where the next letter of the filter goes.
        out.set_cursor_position((status.x + x.min(status.width.saturating_sub(1)), status.y));
    }
    let rows = rows(state, f);
    let shown = rows.len().min(table.height.saturating_sub(1) as usize);
    out.render_widget(rows_table(state, &rows[..shown], table, palette), table);
    out.render_widget(Paragraph::new(footer_line(state, rows.len() - shown)), footer);
}

fn title_line(r: &Report) -> Line<'static> {
    let mut rest = format!("  PID {}  Python {}", r.pid, r.python.version);
    if r.python.debug {
        rest.push_str(" (debug)");
    }
    rest.push_str(&format!(
        "  RSS {}  {}: {} objects, {}",
        r.rss.map(human_bytes).unwrap_or_else(|| "?".into()),
        r.coverage,
        r.totals.objects,
        human_bytes(r.totals.bytes)
    ));
    Line::from(vec![Span::styled("memspy top", Style::new().add_modifier(Modifier::BOLD)), Span::raw(rest)])
}

fn walks_line(f: &Frame, palette: Palette) -> Line<'static> {
    let r = f.report;
    let mut spans = vec![Span::raw(format!(
        "last pause {:.1} ms (walk {:.1} ms)  every {:.1} s  refresh #{}  since start: ",
        r.pause_ms, r.elapsed_ms, f.rate_s, f.refreshes
    ))];
    spans.push(Span::styled(
        format!("{} objects, {}", signed_count(f.since_start.objects_delta), signed_bytes(f.since_start.bytes_delta)),
        palette.delta(f.since_start.bytes_delta),
    ));
    if r.partial {
        spans.push(Span::styled("  [PARTIAL]", palette.fg(Color::Red).add_modifier(Modifier::BOLD)));
    } else if r.approximate {
        spans.push(Span::styled("  [approximate]", palette.fg(Color::Yellow)));
    }
    Line::from(spans)
}

/// The status line, and while the filter is typed, the column of the cursor in it.
fn status_line(state: &ViewState, f: &Frame, palette: Palette) -> (Line<'static>, Option<u16>) {
    let mut spans = vec![Span::raw(format!("sort: {}", state.sort.name()))];
    let mut cursor = None;
    let filter_style = palette.fg(Color::Cyan).add_modifier(Modifier::BOLD);
    match &state.editing {
        Some(t) => {
            spans.push(Span::raw("  filter: "));
            spans.push(Span::styled(t.clone(), filter_style));
            cursor = Some(Line::from(spans.clone()).width() as u16);
        }
        None if !state.filter.is_empty() => {
            spans.push(Span::raw("  filter: "));
            spans.push(Span::styled(state.filter.clone(), filter_style));
        }
        None => {}
    }
    if state.paused {
        spans.push(Span::raw("  "));
        spans.push(Span::styled("[PAUSED]", palette.fg(Color::Yellow).add_modifier(Modifier::BOLD)));
    }
    if !f.note.is_empty() {
        spans.push(Span::styled(format!("  {}", f.note), palette.fg(Color::Cyan)));
    }
    (Line::from(spans), cursor)
}

fn rows_table<'a>(state: &ViewState, rows: &[ViewRow<'a>], area: Rect, palette: Palette) -> Table<'a> {
    let n = numeric_columns(area.width);
    let sorted = match state.sort {
        ViewSort::Count => 0,
        ViewSort::Bytes => 1,
        ViewSort::Growth => 3,
    };
    let header = COLUMNS[..n]
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let style = if i == sorted { Style::new().add_modifier(Modifier::UNDERLINED) } else { Style::new() };
            Cell::from(Line::from(Span::styled(*name, style)).right_aligned())
        })
        .chain([Cell::from("TYPE")]);
    let header = Row::new(header).style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
    let body = rows.iter().map(|r| {
        let (ss, sl) = (r.since_start, r.since_last);
        let cells: [(String, Style); 6] = [
            (r.count.to_string(), Style::new()),
            (human_bytes(r.bytes), Style::new()),
            (signed_count(ss.0), palette.delta(ss.0)),
            (signed_bytes(ss.1), palette.delta(ss.1)),
            (signed_count(sl.0), palette.delta(sl.0)),
            (signed_bytes(sl.1), palette.delta(sl.1)),
        ];
        let cells =
            cells.into_iter().take(n).map(|(text, style)| Cell::from(Line::from(text).right_aligned()).style(style));
        Row::new(cells.chain([Cell::from(r.name)]))
    });
    let widths = COLUMNS[..n].iter().map(|c| Constraint::Length(c.1)).chain([Constraint::Fill(1)]);
    Table::new(body, widths).header(header).column_spacing(SPACING)
}

fn footer_line(state: &ViewState, more: usize) -> Line<'static> {
    let mut spans = Vec::new();
    if more > 0 {
        spans.push(Span::raw(format!("({more} more)  ")));
    }
    let keys: &[(&str, &str)] = if state.editing.is_some() {
        &[("Enter", "apply"), ("Esc", "clear"), ("Backspace", "delete")]
    } else {
        &[
            ("b", "bytes"),
            ("c", "count"),
            ("g", "growth"),
            ("/", "filter"),
            ("p", "pause"),
            ("r", "refresh"),
            ("q", "quit"),
        ]
    };
    spans.push(Span::raw(if state.editing.is_some() { "filter: type a part of a type name  " } else { "keys: " }));
    for (i, (key, what)) in keys.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled(*key, Style::new().add_modifier(Modifier::BOLD)));
        spans.push(Span::raw(format!(" {what}")));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::Terminal;

    use super::*;
    use crate::analysis::diff::diff_reports;
    use crate::report::tui::tests::typed;

    fn report(rows: &[(&str, u64, u64)]) -> Report {
        Report { pid: 9, ..Report::from_rows(rows) }
    }

    fn draw(state: &ViewState, f: &Frame, palette: Palette, w: u16, h: u16) -> Terminal<TestBackend> {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|out| render(out, state, f, palette)).unwrap();
        t
    }

    /// The screen as text, one string per line, trailing blanks removed.
    fn lines(b: &Buffer) -> Vec<String> {
        (0..b.area.height)
            .map(|y| {
                let l: String = (0..b.area.width).map(|x| b[(x, y)].symbol()).collect();
                l.trim_end().to_string()
            })
            .collect()
    }

    /// The type names of the rows, top to bottom.
    fn names(screen: &[String]) -> Vec<String> {
        screen
            .iter()
            .skip(4)
            .filter_map(|l| l.split_whitespace().last().filter(|w| w.starts_with("m.")).map(String::from))
            .collect()
    }

    struct Case {
        a: Report,
        b: Report,
    }

    impl Case {
        fn new() -> Case {
            Case {
                a: report(&[("m.Big", 1, 1000), ("m.Many", 50, 500), ("m.Grow", 1, 10), ("m.Gone", 3, 30)]),
                b: report(&[("m.Big", 1, 1000), ("m.Many", 50, 500), ("m.Grow", 9, 900)]),
            }
        }
    }

    #[test]
    fn sorted_filtered_rows() {
        let c = Case::new();
        let d = diff_reports(&c.a, &c.b);
        let f = Frame { report: &c.b, since_start: &d, since_last: Some(&d), refreshes: 2, rate_s: 2.0, note: "" };
        let screen = |st: &ViewState| lines(draw(st, &f, Palette { color: true }, 120, 40).backend().buffer());
        let mut st = ViewState::new(ViewSort::Bytes);
        assert_eq!(names(&screen(&st)), ["m.Big", "m.Grow", "m.Many"]);
        st.sort = ViewSort::Count;
        assert_eq!(names(&screen(&st)), ["m.Many", "m.Grow", "m.Big"]);
        st.sort = ViewSort::Growth;
        assert_eq!(names(&screen(&st))[0], "m.Grow");
        st.filter = "MAN".into();
        let s = screen(&st);
        assert_eq!(names(&s), ["m.Many"]);
        assert!(s[2].contains("sort: growth  filter: MAN"), "{s:?}");
        let r = rows(&st, &f);
        assert_eq!((r[0].count, r[0].bytes, r[0].since_start, r[0].since_last), (50, 500, (0, 0), (0, 0)));
        st.filter.clear();
        let grow = rows(&st, &f).into_iter().find(|r| r.name == "m.Grow").unwrap();
        assert_eq!((grow.since_start, grow.since_last), ((8, 890), (8, 890)));
    }

    #[test]
    fn the_screen_reads_as_before() {
        let c = Case::new();
        let d = diff_reports(&c.a, &c.b);
        let f =
            Frame { report: &c.b, since_start: &d, since_last: None, refreshes: 3, rate_s: 0.5, note: "sampling…" };
        let mut st = ViewState::new(ViewSort::Bytes);
        st.paused = true;
        let s = lines(draw(&st, &f, Palette { color: true }, 120, 12).backend().buffer());
        assert!(s[0].starts_with("memspy top  PID 9  Python ") && s[0].contains("RSS"), "{s:?}");
        assert!(s[1].starts_with("last pause") && s[1].contains("refresh #3"), "{s:?}");
        assert_eq!(s[2], "sort: bytes  [PAUSED]  sampling…");
        let header: Vec<&str> = s[3].split("  ").map(str::trim).filter(|w| !w.is_empty()).collect();
        assert_eq!(header, ["COUNT", "BYTES", "ΔCOUNT", "ΔBYTES", "ΔC LAST", "ΔB LAST", "TYPE"]);
        assert!(s[4].ends_with("  m.Big") && s[4].trim_start().starts_with("1 "), "{s:?}");
        let grow: Vec<&str> = s[5].split_whitespace().collect();
        assert_eq!(grow, ["9", "900", "B", "+8", "+890", "B", "0", "0", "B", "m.Grow"]);
        assert!(s[11].starts_with("keys: b bytes") && s[11].ends_with("q quit"), "{s:?}");
        assert!(s[7..11].iter().all(|l| l.is_empty()), "the footer is on the last line: {s:?}");
    }

    #[test]
    fn rows_that_do_not_fit_are_counted() {
        let c = Case::new();
        let d = diff_reports(&c.a, &c.b);
        let f = Frame { report: &c.b, since_start: &d, since_last: None, refreshes: 1, rate_s: 1.0, note: "" };
        let s = lines(draw(&ViewState::new(ViewSort::Bytes), &f, Palette { color: true }, 120, 7).backend().buffer());
        assert_eq!(names(&s), ["m.Big", "m.Grow"]);
        assert!(s[6].starts_with("(1 more)  keys:"), "{s:?}");
        // Tiny windows draw what fits.
        for (w, h) in [(1, 1), (5, 2), (20, 4), (0, 0)] {
            draw(&ViewState::new(ViewSort::Bytes), &f, Palette { color: true }, w, h);
        }
    }

    #[test]
    fn narrow_windows_drop_delta_columns() {
        assert_eq!((numeric_columns(200), numeric_columns(100), numeric_columns(99)), (6, 6, 4));
        assert_eq!((numeric_columns(77), numeric_columns(76), numeric_columns(10)), (4, 2, 2));
        let c = Case::new();
        let d = diff_reports(&c.a, &c.b);
        let f = Frame { report: &c.b, since_start: &d, since_last: None, refreshes: 1, rate_s: 1.0, note: "" };
        let st = ViewState::new(ViewSort::Bytes);
        for (w, want, lacks) in [(80, "ΔBYTES", "ΔC LAST"), (60, "BYTES", "ΔCOUNT")] {
            let s = lines(draw(&st, &f, Palette { color: true }, w, 10).backend().buffer());
            assert!(s[3].contains(want) && !s[3].contains(lacks) && s[3].ends_with("TYPE"), "{w}: {s:?}");
            assert!(s[4].ends_with("m.Big"), "{w}: the names stay whole: {s:?}");
        }
    }

    #[test]
    fn filter_prompt_shows_the_cursor() {
        let c = Case::new();
        let d = diff_reports(&c.a, &c.b);
        let f = Frame { report: &c.b, since_start: &d, since_last: None, refreshes: 1, rate_s: 1.0, note: "" };
        let mut st = ViewState::new(ViewSort::Count);
        for i in typed("/ma") {
            st.input(&i);
        }
        let mut t = draw(&st, &f, Palette { color: true }, 100, 10);
        let s = lines(t.backend().buffer());
        assert_eq!(s[2], "sort: count  filter: ma");
        assert!(s[9].contains("Enter apply") && !s[9].contains("q quit"), "{s:?}");
        assert_eq!(names(&s), ["m.Many"], "the filter applies while it is typed");
        assert!(t.backend().cursor_visible());
        t.backend_mut().assert_cursor_position((23, 2));
    }

    #[test]
    fn colour_unless_no_color() {
        let c = Case::new();
        let d = diff_reports(&c.a, &c.b);
        let f = Frame { report: &c.b, since_start: &d, since_last: None, refreshes: 1, rate_s: 1.0, note: "" };
        let st = ViewState::new(ViewSort::Bytes);
        // The "+8" of m.Grow (row 5) in the ΔCOUNT column, and the header bar.
        let cell_at = |palette: Palette, text: &str| {
            let t = draw(&st, &f, palette, 120, 10);
            let b = t.backend().buffer().clone();
            let line: String = (0..b.area.width).map(|x| b[(x, 5)].symbol()).collect();
            let x = line.find(text).unwrap() as u16;
            (b[(x, 5)].clone(), b[(0, 3)].clone())
        };
        let (plus, header) = cell_at(Palette { color: true }, "+8");
        assert_eq!(plus.fg, Color::Red);
        assert!(header.modifier.contains(Modifier::REVERSED | Modifier::BOLD));
        let (plus, header) = cell_at(Palette { color: false }, "+8");
        assert_eq!(plus.fg, Color::Reset);
        assert!(header.modifier.contains(Modifier::REVERSED | Modifier::BOLD), "reverse video is not colour");
    }
}
