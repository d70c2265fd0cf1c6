//! The frame roots of `memspy why` name the line each frame is executing, exactly as the target's own
//! `sys._current_frames()[tid].f_lineno` gives it, on every interpreter of the matrix (free-threaded
//! builds included, whose threads run their own copies of the bytecode).
//!
//! fixtures/frame_lines.py parks the main thread and three others three frames deep, each frame holding
//! a `Marker` in a local (one thread parks inside a generator, one inside a coroutine), and records every
//! parked frame's function,
//! file, f_lineno and co_firstlineno from inside. `why --type Marker --json` must give one row per
//! marker, rooted at its frame with that function, file, thread, `line` (the current line) and
//! `def_line` (co_firstlineno); `why --address` of the generator's marker the same root; the table names
//! `thread TID frame FUNC (FILE:LINE)`; a dump of the process (`memspy dump`) gives the same roots once the
//! process is gone.
//!
//! Run with `cargo test --test frame_lines -- --nocapture` to see the per-interpreter lines.

mod common;

use common::*;
use serde_json::Value;

const FIXTURE: &str = "frame_lines.py";
/// Frames holding a marker: three per parked thread.
const MARKERS: usize = 12;

fn expect(errors: &mut Vec<String>, what: &str, got: impl std::fmt::Debug + PartialEq, want: impl std::fmt::Debug) {
    let (g, w) = (format!("{got:?}"), format!("{want:?}"));
    if g != w {
        errors.push(format!("{what}: got {g}, expected {w}"));
    }
}

/// A root as (kind, function, file, thread, line, def_line).
type RootKey = (Option<String>, Option<String>, Option<String>, Option<u64>, Option<u64>, Option<u64>);

fn root_key(r: &Value) -> RootKey {
    let s = |k: &str| r[k].as_str().map(String::from);
    (s("kind"), s("function"), s("file"), r["thread"].as_u64(), r["line"].as_u64(), r["def_line"].as_u64())
}

fn truth_key(m: &Value) -> RootKey {
    let s = |k: &str| m[k].as_str().map(String::from);
    (Some("frame".into()), s("function"), s("file"), m["thread"].as_u64(), m["line"].as_u64(), m["def_line"].as_u64())
}

fn check(interp: &Interpreter) -> Result<(Vec<String>, String), String> {
    let (mut fixture, truth) = start_settled(interp, FIXTURE, &[])?;
    let pid = fixture.pid.to_string();
    let markers = truth["markers"].as_array().cloned().unwrap_or_default();
    let mut e = Vec::new();
    expect(&mut e, "markers in the truth", markers.len(), MARKERS);

    let (w, _) = run_memspy_json(&["why", &pid, "--type", "Marker", "--json"])?;
    let rows = w["paths"].as_array().cloned().unwrap_or_default();
    expect(&mut e, "rows", rows.len(), MARKERS);
    let mut got: Vec<RootKey> = rows.iter().map(|r| root_key(&r["root"])).collect();
    let mut want: Vec<RootKey> = markers.iter().map(truth_key).collect();
    got.sort();
    want.sort();
    for (g, w) in got.iter().zip(&want) {
        expect(&mut e, &format!("root of {:?}'s marker", w.1.as_deref().unwrap_or("?")), g, w);
    }
    for r in &rows {
        expect(&mut e, "row count", r["count"].as_u64(), Some(1));
        let edges: Vec<&str> = r["steps"].as_array().into_iter().flatten().filter_map(|s| s["edge"].as_str()).collect();
        let want_edge = format!("marker_{}", r["root"]["function"].as_str().unwrap_or("?"));
        expect(&mut e, "row edges", edges, [want_edge.as_str()]);
    }
    let undecoded = w["analysis"]["frames_without_line"].as_u64();
    expect(&mut e, "frames without a line (analysis)", undecoded, Some(0));

    // One object's path: the marker a generator's frame holds.
    let generator = markers.iter().find(|m| m["function"] == "b_generator").cloned().unwrap_or(Value::Null);
    let address = generator["address"].as_str().unwrap_or("0x0");
    let (o, _) = run_memspy_json(&["why", &pid, "--address", address, "--json"])?;
    expect(&mut e, "--address root", root_key(&o["path"]["root"]), truth_key(&generator));

    // The table: `thread TID frame FUNC (FILE:LINE)`.
    let out = run_memspy(["why", &pid, "--type", "Marker"]).map_err(|x| x.to_string())?;
    for m in &markers {
        // 3.9/3.10 mark a frame object's local `~` (its slots are scanned conservatively).
        let text = format!(
            "thread {} frame {} ({}:{}) › ",
            m["thread"].as_u64().unwrap_or(0),
            m["function"].as_str().unwrap_or("?"),
            m["file"].as_str().unwrap_or("?"),
            m["line"].as_u64().unwrap_or(0),
        );
        let edge = format!("marker_{} __main__.Marker", m["function"].as_str().unwrap_or("?"));
        let found = out
            .stdout
            .lines()
            .any(|l| l.split_once(&text).is_some_and(|(_, rest)| rest.trim_start_matches('~') == edge));
        if !found {
            e.push(format!("the table has no `{text}{edge}`: {}", tail(&out.stdout, 1500)));
        }
    }
    // A dump keeps the roots as the pause found them: the same answers once the process is gone.
    let file = fixture.dir().join("frame_lines.memspy");
    let file = file.to_str().ok_or("a temp path that is not UTF-8")?;
    let out = run_memspy(["dump", &pid, "-o", file]).map_err(|x| x.to_string())?;
    if !out.success() {
        return Err(format!("memspy dump failed: {}", tail(&out.stderr, 500)));
    }
    fixture.kill();
    let (w, _) = run_memspy_json(&["why", file, "--type", "Marker", "--json"])?;
    let mut from_dump: Vec<RootKey> =
        w["paths"].as_array().into_iter().flatten().map(|r| root_key(&r["root"])).collect();
    from_dump.sort();
    expect(&mut e, "roots from the dump", from_dump, &want);
    let lines: Vec<String> =
        markers.iter().map(|m| format!("{}:{}", m["function"].as_str().unwrap_or("?"), m["line"])).collect();
    if !e.is_empty() {
        e.push(format!("fixture stderr: {}", tail(&fixture.stderr_text(), 300)));
    }
    Ok((e, lines.join(" ")))
}

#[test]
fn frame_roots_name_the_line_each_frame_executes() {
    on_every_interpreter(check);
}
