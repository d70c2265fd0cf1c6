//! `memspy top`: the type histogram, once or refreshing.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::analysis::diff::{diff_reports, Diff};
use crate::analysis::histogram::SortKey;
use crate::commands::held::Held;
use crate::commands::{sleep_unless_interrupted, Session, Spawned, TargetSpec};
use crate::error::{Error, Result};
use crate::report;
use crate::report::progress::progress;
use crate::report::tui::{Frame, Screen, ViewSort, ViewState};
use crate::walk::SnapshotOptions;

#[derive(Clone, Debug)]
pub struct TopOptions {
    pub target: TargetSpec,
    pub once: bool,
    pub json: bool,
    pub limit: usize,
    pub sort: SortKey,
    pub rate: Duration,
    pub snapshot: SnapshotOptions,
    /// Add each type's retained bytes (records the object graph; `--once` only).
    pub retained: bool,
}

pub fn run(opts: &TopOptions) -> Result<()> {
    if opts.retained && !opts.once {
        return Err(Error::Other(
            "--retained works with --once (every refresh would record the whole object graph)".into(),
        ));
    }
    if opts.retained && !opts.snapshot.full {
        return Err(Error::Other("--retained follows every reference: it needs the full walk, not --gc-only".into()));
    }
    if let Some(path) = &opts.target.dump {
        return from_dump(path, opts);
    }
    let (session, mut spawned) = super::open_target("top", &opts.target, opts.snapshot.timeout)?;
    if opts.once {
        crate::interrupt::install_handler();
        return print_once(&session, opts).map_err(|e| super::explain_spawned(spawned.as_mut(), e));
    }
    if opts.json {
        // A refreshing JSON view makes no sense: print one JSON report per refresh, one per line.
        crate::interrupt::install_handler();
        loop {
            let r = match session.report(&opts.snapshot) {
                Err(Error::Interrupted) => return Ok(()),
                r => r?,
            };
            println!("{}", serde_json::to_string(&r).expect("serializes"));
            if !wait_or_exit(opts.rate, &session, spawned.as_mut()) {
                return Ok(());
            }
        }
    }
    crate::interrupt::install_handler();
    let tty = std::io::stdout().is_terminal();
    if tty && std::io::stdin().is_terminal() {
        return live_view(&session, opts, spawned.as_mut());
    }
    loop {
        let r = match session.report(&opts.snapshot) {
            Err(Error::Interrupted) => return Ok(()),
            r => r?,
        };
        let mut out = std::io::stdout().lock();
        if tty {
            // Clear the screen and home the cursor.
            let _ = write!(out, "\x1b[2J\x1b[H");
        }
        let _ = write!(out, "{}", report::table(&r, opts.sort, opts.limit));
        if !tty {
            let _ = writeln!(out);
        }
        let _ = out.flush();
        drop(out);
        if !wait_or_exit(opts.rate, &session, spawned.as_mut()) {
            return Ok(());
        }
    }
}

/// `top` of a dump file: its report (one; a file does not change), with retained bytes computed from
/// its graph when asked.
fn from_dump(path: &std::path::Path, opts: &TopOptions) -> Result<()> {
    let r = if opts.retained {
        let d = crate::store::read(path, true)?;
        retained_report(&Held::from_dump(d)?)
    } else {
        let mut r = crate::store::read(path, false)?.meta.report;
        r.file = Some(path.display().to_string());
        r
    };
    if opts.json {
        println!("{}", report::json(&r));
    } else {
        print!("{}", report::table(&r, opts.sort, opts.limit));
    }
    Ok(())
}

/// The report of a walk that recorded the graph, each type with its retained bytes.
fn with_retained(session: &Session, opts: &TopOptions) -> Result<crate::analysis::Report> {
    Ok(retained_report(&Held::read(session, &opts.snapshot)?))
}

fn retained_report(held: &Held) -> crate::analysis::Report {
    let per = crate::analysis::dominators::retained_by_type(&held.graph, held.dom());
    let mut by_name: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (t, (bytes, _)) in held.graph.type_infos.iter().zip(&per) {
        *by_name.entry(t.name.as_str()).or_default() += bytes;
    }
    let mut r = held.report.clone();
    for row in &mut r.types {
        row.retained = Some(by_name.get(row.name.as_str()).copied().unwrap_or(0));
    }
    r
}

fn print_once(session: &Session, opts: &TopOptions) -> Result<()> {
    let r = if opts.retained { with_retained(session, opts)? } else { session.report(&opts.snapshot)? };
    if opts.json {
        println!("{}", report::json(&r));
    } else {
        print!("{}", report::table(&r, opts.sort, opts.limit));
    }
    Ok(())
}

/// Sleeps until the next refresh; false when it is time to stop (Ctrl-C, or the target is gone).
fn wait_or_exit(rate: Duration, session: &Session, spawned: Option<&mut Spawned>) -> bool {
    sleep_unless_interrupted(rate);
    if crate::interrupt::requested() {
        return false;
    }
    if let Some(s) = spawned {
        if let Ok(Some(_)) = s.child.try_wait() {
            eprintln!("memspy: the program exited");
            return false;
        }
    }
    if !session.target.alive() {
        eprintln!("memspy: PID {} exited", session.target.pid);
        return false;
    }
    true
}

/// The full-screen view (stdin and stdout are terminals). The terminal is restored when this returns,
/// whatever the path (the guard's drop; a panic hook covers panics).
fn live_view(session: &Session, opts: &TopOptions, mut spawned: Option<&mut Spawned>) -> Result<()> {
    let pb = progress(None, &format!("reading the heap of PID {}", session.target.pid));
    let first = session.report(&opts.snapshot);
    pb.finish_and_clear();
    let first = first?;
    let mut term = Screen::enter().map_err(|e| Error::Other(format!("cannot set up the terminal: {e}")))?;
    let mut state = ViewState::new(match opts.sort {
        SortKey::Bytes | SortKey::Retained => ViewSort::Bytes,
        SortKey::Count => ViewSort::Count,
    });
    let start = first.clone();
    let mut current = first;
    let mut since_start = diff_reports(&start, &current);
    let mut since_last: Option<Diff> = None;
    let mut refreshes = 1u64;
    let mut next = Instant::now() + opts.rate;
    let mut gone: Option<String> = None;
    // The longest a wait for input lasts before the clock and Ctrl-C/SIGTERM are looked at again.
    const MAX_WAIT: Duration = Duration::from_millis(250);
    loop {
        let mut draw = |state: &ViewState,
                        note: &str,
                        current: &crate::analysis::Report,
                        since_start: &Diff,
                        since_last: Option<&Diff>| {
            let frame =
                Frame { report: current, since_start, since_last, refreshes, rate_s: opts.rate.as_secs_f64(), note };
            // A frame that cannot be written (the terminal went away) is dropped; input then says so.
            let _ = term.draw(state, &frame);
        };
        draw(&state, "", &current, &since_start, since_last.as_ref());
        if state.quit || crate::interrupt::requested() {
            break;
        }
        let now = Instant::now();
        if state.refresh || (!state.paused && now >= next) {
            state.refresh = false;
            if let Some(s) = spawned.as_deref_mut() {
                if let Ok(Some(_)) = s.child.try_wait() {
                    gone = Some("the program exited".into());
                    break;
                }
            }
            if !session.target.alive() {
                gone = Some(format!("PID {} exited", session.target.pid));
                break;
            }
            draw(&state, "sampling…", &current, &since_start, since_last.as_ref());
            let r = session.report(&opts.snapshot)?;
            since_start = diff_reports(&start, &r);
            since_last = Some(diff_reports(&current, &r));
            current = r;
            refreshes += 1;
            next = Instant::now() + opts.rate;
            continue;
        }
        let wait = if state.paused { MAX_WAIT } else { next.saturating_duration_since(now).min(MAX_WAIT) };
        for input in term.read_input(wait) {
            state.input(&input);
        }
    }
    drop(term);
    if let Some(msg) = gone {
        eprintln!("memspy: {msg}");
    }
    Ok(())
}
