//! `memspy report`'s page: one static, self-contained HTML file (inline CSS and script, nothing
//! fetched) with the header of one walk, the type table (sorted by clicking a column's header), the
//! objects that retain the most and the paths that hold the largest types.
//!
//! Every text that comes from the target (type names, keys and attributes in paths, file names) is
//! untrusted: it is HTML-escaped where it is written, and the tables are rendered here, so the script
//! carries no data (a `</script>` in a key stays text). Numbers to sort by sit in `data-v` attributes.

use std::fmt::Write as _;

use crate::analysis::why::{Dominator, PathRow, RetainedType};

/// What the page shows.
pub struct Page {
    /// "PID 1234", or the file it was read from.
    pub what: String,
    pub executable: String,
    pub python: String,
    /// Seconds since the Unix epoch when the walk was taken.
    pub timestamp: f64,
    pub rss: Option<u64>,
    pub objects: u64,
    pub bytes: u64,
    pub pause_ms: f64,
    pub partial: bool,
    pub types: Vec<RetainedType>,
    pub dominators: Vec<Dominator>,
    /// The largest types by bytes, and the paths that hold their instances.
    pub held: Vec<HeldType>,
    pub memspy_version: String,
}

pub struct HeldType {
    pub type_name: String,
    pub count: u64,
    pub bytes: u64,
    pub paths: Vec<PathRow>,
}

/// `s` with `& < > " '` escaped: safe as element text and as a quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Bytes as people read them (binary units).
pub fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A UTC date and time (`2026-12-01 14:15:17 UTC`) from seconds since the epoch.
pub fn utc(ts: f64) -> String {
    let secs = ts.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, written out).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.facts{display:flex;flex-wrap:wrap;gap:8px 28px;margin:12px 0}.facts div b{display:block;font-size:18px}
.facts div span{color:#5b6472;font-size:12px}
table{border-collapse:collapse;background:#fff;box-shadow:0 0 0 1px #dde1e7;min-width:60%}
th,td{padding:4px 10px;border-bottom:1px solid #eceef2;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600;white-space:nowrap}th.sortable{cursor:pointer;user-select:none}
th.sortable:hover{background:#e3e7ec}th[data-dir=desc]::after{content:' \\25BE'}th[data-dir=asc]::after{content:' \\25B4'}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font:12px/1.4 ui-monospace,monospace;word-break:break-all}
.scroll{max-height:420px;overflow:auto;display:inline-block;box-shadow:0 0 0 1px #dde1e7}.scroll table{box-shadow:none}
.scroll th{position:sticky;top:0}
.note{color:#5b6472;font-size:12px}.warn{color:#a03a00}#errors{color:#b00020}
";

/// The page's only script: sorting the tables marked `sortable` by a header's column.
const SCRIPT: &str = "
window.addEventListener('error',function(e){var d=document.getElementById('errors');if(d){d.textContent+='script error: '+e.message+'\\n';}});
function sortBy(th){
  var table=th.closest('table'),col=th.cellIndex,body=table.tBodies[0];
  var dir=th.getAttribute('data-dir')==='desc'?'asc':'desc';
  var heads=table.tHead.rows[0].cells;for(var i=0;i<heads.length;i++){heads[i].removeAttribute('data-dir');}
  th.setAttribute('data-dir',dir);
  var rows=Array.prototype.slice.call(body.rows);
  var num=th.getAttribute('data-type')==='number';
  rows.sort(function(a,b){
    var x=a.cells[col],y=b.cells[col];
    var c=num?(parseFloat(x.getAttribute('data-v'))-parseFloat(y.getAttribute('data-v'))):x.textContent.localeCompare(y.textContent);
    return dir==='asc'?c:-c;
  });
  rows.forEach(function(r){body.appendChild(r);});
  table.setAttribute('data-sorted',th.getAttribute('data-key')+'-'+dir);
}
document.addEventListener('DOMContentLoaded',function(){
  var ths=document.querySelectorAll('th.sortable');
  for(var i=0;i<ths.length;i++){ths[i].addEventListener('click',function(){sortBy(this);});}
  var first=document.querySelector('th[data-default]');if(first){sortBy(first);}
});
";

fn num_cell(out: &mut String, v: u64, text: &str) {
    let _ = write!(out, "<td class=n data-v=\"{v}\">{}</td>", escape(text));
}

/// The page (see the module doc).
pub fn render(p: &Page) -> String {
    let mut o = String::with_capacity(64 << 10);
    let title = format!("memspy report: {} ({})", p.what, p.executable);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\
         <title>{}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>\n",
        escape(&title)
    );
    let _ = write!(
        o,
        "<h1>{}</h1>\n<div class=note>Python {} · {} · memspy {}</div>\n",
        escape(&title),
        escape(&p.python),
        utc(p.timestamp),
        escape(&p.memspy_version)
    );
    o.push_str("<div class=facts>");
    let mut fact = |label: &str, value: String| {
        let _ = write!(o, "<div><b>{}</b><span>{}</span></div>", escape(&value), escape(label));
    };
    fact("objects", p.objects.to_string());
    fact("bytes (sys.getsizeof)", human(p.bytes));
    if let Some(r) = p.rss {
        fact("resident set size", human(r));
    }
    fact("types", p.types.len().to_string());
    fact("target paused", format!("{:.0} ms", p.pause_ms));
    o.push_str("</div>\n");
    if p.partial {
        o.push_str("<p class=warn>The walk was cut short (--max-pause): objects and paths are missing.</p>\n");
    }
    o.push_str("<pre id=errors></pre>\n");

    o.push_str("<h2>Types</h2>\n<p class=note>Click a column's header to sort. Retained: what the type's instances keep alive (counted once when one instance holds another).</p>\n");
    o.push_str(
        "<div class=scroll><table id=types class=sortable><thead><tr><th class=sortable data-key=type>type</th>\
                <th class=sortable data-key=count data-type=number>count</th>\
                <th class=sortable data-key=bytes data-type=number>bytes</th>\
                <th class=sortable data-key=retained data-type=number data-default>retained</th></tr></thead><tbody>\n",
    );
    for t in &p.types {
        let _ = write!(o, "<tr><td><code>{}</code></td>", escape(&t.type_name));
        num_cell(&mut o, t.count, &t.count.to_string());
        num_cell(&mut o, t.bytes, &human(t.bytes));
        num_cell(&mut o, t.retained, &human(t.retained));
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody></table></div>\n");

    o.push_str("<h2>What retains the most</h2>\n<p class=note>The objects of the dominator tree that keep the most alive (each the innermost holder of most of what it retains), and the path that holds each.</p>\n");
    o.push_str("<table id=dominators><thead><tr><th>owner</th><th>held by</th><th>retained</th><th>objects</th></tr></thead><tbody>\n");
    for d in &p.dominators {
        let _ = write!(
            o,
            "<tr><td><code>{}</code> <span class=note>{}</span></td><td><code>{}</code></td>",
            escape(&d.type_name),
            escape(&d.address),
            escape(&super::why::path(&d.path.root, &d.path.steps))
        );
        num_cell(&mut o, d.retained, &human(d.retained));
        num_cell(&mut o, d.objects, &d.objects.to_string());
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody></table>\n");

    o.push_str("<h2>What holds the largest types</h2>\n<p class=note>Per type (largest by bytes first), the shortest paths that hold its instances, aggregated as <code>memspy why --type</code> shows them.</p>\n");
    for h in &p.held {
        let _ = write!(
            o,
            "<h3><code>{}</code> <span class=note>{} objects, {}</span></h3>\n<table class=held><thead><tr><th>path</th><th>count</th><th>bytes</th><th>retained</th></tr></thead><tbody>\n",
            escape(&h.type_name),
            h.count,
            human(h.bytes)
        );
        for r in &h.paths {
            let _ = write!(o, "<tr><td><code>{}</code></td>", escape(&super::why::path(&r.root, &r.steps)));
            num_cell(&mut o, r.count, &r.count.to_string());
            num_cell(&mut o, r.bytes, &human(r.bytes));
            num_cell(&mut o, r.retained, &human(r.retained));
            o.push_str("</tr>\n");
        }
        o.push_str("</tbody></table>\n");
    }
    o.push_str("<p class=note>A growth chart over several dumps is not in this report yet.</p>\n</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::why::{Anchor, HeldPath, Step};

    #[test]
    fn target_text_is_escaped() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
        let evil = "</script><script>alert(1)</script>";
        let step = Step { edge: format!("['{evil}']"), type_name: evil.into(), conservative: false };
        let p = Page {
            what: "PID 1".into(),
            executable: evil.into(),
            python: "3.12".into(),
            timestamp: 0.0,
            rss: None,
            objects: 1,
            bytes: 1,
            pause_ms: 1.0,
            partial: false,
            types: vec![RetainedType { type_name: evil.into(), count: 1, bytes: 1, retained: 1 }],
            dominators: vec![Dominator {
                address: "0x1".into(),
                type_name: evil.into(),
                retained: 1,
                objects: 1,
                path: HeldPath { root: Anchor::new("module", evil), steps: vec![step.clone()] },
            }],
            held: vec![HeldType {
                type_name: evil.into(),
                count: 1,
                bytes: 1,
                paths: vec![PathRow {
                    count: 1,
                    bytes: 1,
                    retained: 1,
                    root: Anchor::new("module", evil),
                    steps: vec![step],
                }],
            }],
            memspy_version: "0".into(),
        };
        let html = render(&p);
        // The page's own script element is the only one; no tag of the target's survives.
        assert_eq!(html.matches("<script>").count(), 1);
        assert_eq!(html.matches("</script>").count(), 1);
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;/script&gt;&lt;script&gt;alert(1)"));
    }

    #[test]
    fn dates_and_sizes_read_as_people_read_them() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_961_717.0), "2026-11-29 14:15:17 UTC");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
