//! The `memspy growth --plot` chart: an SVG, written by hand, with RSS over time in the upper panel and
//! the bytes of the fastest-growing types in the lower one (like `mprof plot`). Axes carry units, lines
//! have a legend, the title names the process.

use std::fmt::Write as _;

use crate::analysis::growth::Growth;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 720.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 300.0; // room for the legend
const TOP: f64 = 60.0;
const GAP: f64 = 70.0;
const BOTTOM: f64 = 60.0;
/// Types drawn in the lower panel.
pub const MAX_TYPES: usize = 8;
const COLORS: [&str; MAX_TYPES] =
    ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// A round step for about `target` ticks up to `max` (1, 2 or 5 × 10^k).
fn nice_step(max: f64, target: f64) -> f64 {
    let raw = (max / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The binary unit that suits `max` bytes: (divisor, name).
fn byte_unit(max: f64) -> (f64, &'static str) {
    const UNITS: [(f64, &str); 4] = [(1.0, "B"), (1024.0, "KiB"), (1048576.0, "MiB"), (1073741824.0, "GiB")];
    UNITS.iter().rev().copied().find(|(d, _)| max >= *d * 2.0).unwrap_or(UNITS[0])
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn fmt_tick(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let decimals = (-step.log10().floor()) as usize;
        format!("{v:.decimals$}")
    }
}

struct Panel<'a> {
    y0: f64,
    height: f64,
    title: &'a str,
    /// (label, color, values in bytes per sample)
    series: Vec<(String, &'a str, Vec<f64>)>,
}

fn draw_panel(out: &mut String, p: &Panel, times: &[f64], t_max: f64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let max = p.series.iter().flat_map(|s| s.2.iter().copied()).fold(0.0, f64::max).max(1.0);
    let (div, unit) = byte_unit(max);
    let y_step = nice_step(max / div, 5.0);
    let y_max = ((max / div) / y_step).ceil().max(1.0) * y_step;
    let x_step = nice_step(t_max, 8.0);
    let x = |t: f64| LEFT + t / t_max * plot_w;
    let y = |v: f64| p.y0 + p.height - (v / div) / y_max * p.height;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{:.1}" font-size="15" font-weight="bold">{}</text>"#,
        p.y0 - 10.0,
        esc(p.title)
    );
    // Grid and y ticks.
    let mut v = 0.0;
    while v <= y_max + y_step / 2.0 {
        let yy = p.y0 + p.height - v / y_max * p.height;
        let _ =
            writeln!(out, r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/>"##, LEFT + plot_w);
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            yy + 4.0,
            fmt_tick(v, y_step)
        );
        v += y_step;
    }
    // x ticks.
    let mut t = 0.0;
    while t <= t_max * (1.0 + 1e-9) {
        let xx = x(t);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#999"/>"##,
            p.y0 + p.height,
            p.y0 + p.height + 5.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{xx:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            p.y0 + p.height + 18.0,
            fmt_tick(t, x_step)
        );
        t += x_step;
    }
    // Axes.
    let _ = writeln!(
        out,
        r##"<polyline points="{LEFT},{:.1} {LEFT},{:.1} {:.1},{:.1}" fill="none" stroke="#333"/>"##,
        p.y0,
        p.y0 + p.height,
        LEFT + plot_w,
        p.y0 + p.height
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="13" text-anchor="middle">memory ({unit})</text>"#,
        LEFT - 55.0,
        p.y0 + p.height / 2.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">time since the first sample (s)</text>"#,
        LEFT + plot_w / 2.0,
        p.y0 + p.height + 38.0
    );
    // Lines, points and legend.
    for (i, (label, color, values)) in p.series.iter().enumerate() {
        let pts: Vec<String> = times.iter().zip(values).map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
        let _ =
            writeln!(out, r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#, pts.join(" "));
        for (t, v) in times.iter().zip(values) {
            let _ = writeln!(out, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, x(*t), y(*v));
        }
        let ly = p.y0 + 10.0 + i as f64 * 20.0;
        let lx = WIDTH - RIGHT + 20.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/>"#,
            lx + 22.0
        );
        let _ = writeln!(out, r#"<text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#, lx + 28.0, ly + 4.0, esc(label));
    }
}

/// The chart as an SVG document.
pub fn svg(g: &Growth) -> String {
    let times: Vec<f64> = g.samples.iter().map(|s| s.t).collect();
    let t_max = times.last().copied().unwrap_or(0.0).max(1e-3);
    let mut grown: Vec<_> = g.types.iter().filter(|t| t.delta_bytes > 0).collect();
    grown.sort_by(|a, b| b.delta_bytes.cmp(&a.delta_bytes).then_with(|| a.name.cmp(&b.name)));
    if grown.is_empty() {
        // Nothing grew: show the largest types instead.
        grown = g.types.iter().collect();
        grown.sort_by(|a, b| b.bytes.last().cmp(&a.bytes.last()).then_with(|| a.name.cmp(&b.name)));
    }
    let type_series = grown
        .iter()
        .take(MAX_TYPES)
        .enumerate()
        .map(|(i, t)| {
            let mut label = t.name.clone();
            if label.chars().count() > 34 {
                label = format!(
                    "…{}",
                    label.chars().rev().take(33).collect::<Vec<_>>().into_iter().rev().collect::<String>()
                );
            }
            if t.monotonic {
                label.push_str(" (LEAK?)");
            }
            (label, COLORS[i], t.bytes.iter().map(|b| *b as f64).collect())
        })
        .collect();
    let panel_h = (HEIGHT - TOP - GAP - BOTTOM) / 2.0 - 10.0;
    let rss = Panel {
        y0: TOP + 20.0,
        height: panel_h,
        title: "Resident set size (RSS) of the process",
        series: vec![("RSS".into(), "#000", g.samples.iter().map(|s| s.rss as f64).collect())],
    };
    let types = Panel {
        y0: TOP + 20.0 + panel_h + GAP,
        height: panel_h,
        title: "Bytes of the fastest-growing types (sum of sys.getsizeof)",
        series: type_series,
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let title = format!(
        "memspy growth: PID {} (Python {}), {} samples every {:.1} s",
        g.pid,
        g.python,
        g.samples.len(),
        g.interval_s
    );
    let _ = writeln!(out, r#"<title>{}</title>"#, esc(&title));
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="30" font-size="18" font-weight="bold" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        esc(&title)
    );
    draw_panel(&mut out, &rss, &times, t_max);
    draw_panel(&mut out, &types, &times, t_max);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::growth::{Sample, TypeGrowth};

    #[test]
    fn ticks_and_units() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(0.9, 8.0), 0.2);
        assert_eq!(byte_unit(5.0 * 1048576.0).1, "MiB");
        assert_eq!(byte_unit(100.0).1, "B");
    }

    #[test]
    fn chart_has_title_axes_legend() {
        let g = Growth {
            pid: 42,
            interval_s: 1.0,
            python: "3.12.1".into(),
            samples: (0..3).map(|i| Sample { t: i as f64, rss: (10 + i as u64) << 20, ..Default::default() }).collect(),
            types: vec![TypeGrowth {
                name: "__main__.<Leak>".into(),
                bytes: vec![0, 10000, 20000],
                counts: vec![0, 1, 2],
                delta: 2,
                delta_bytes: 20000,
                monotonic: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let s = svg(&g);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("PID 42"));
        assert!(s.contains("memory (MiB)") && s.contains("memory (KiB)"));
        assert!(s.contains("time since the first sample (s)"));
        assert!(s.contains("__main__.&lt;Leak&gt; (LEAK?)"));
        assert_eq!(s.matches("<polyline").count(), 2 + 2, "two axes and two lines");
    }
}
