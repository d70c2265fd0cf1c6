//! `memspy growth PID` (or `-- python app.py`): samples the heap at an interval and ranks the types by growth.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::analysis::growth::{Growth, Series};
use crate::commands::held::Held;
use crate::commands::{sleep_unless_interrupted, Session, TargetSpec};
use crate::error::{Error, Result};
use crate::report;
use crate::report::progress::progress;
use crate::walk::SnapshotOptions;

#[derive(Clone, Debug)]
pub struct GrowthOptions {
    /// A PID, or a program to start and sample (sampling then ends early when it exits).
    pub target: TargetSpec,
    pub interval: Duration,
    pub samples: usize,
    pub json: bool,
    pub limit: usize,
    pub plot: Option<PathBuf>,
    pub snapshot: SnapshotOptions,
    /// Record the object graph at the first and the last sample: what each type retains, and the path
    /// that gained most (full walks only).
    pub owners: bool,
}

/// Paths kept per type at a sample that records the graph.
const OWNER_PATHS: usize = 50;

/// Takes the samples (all of them, or as many as were taken before Ctrl-C).
pub fn sample(session: &Session, opts: &GrowthOptions) -> Result<Growth> {
    crate::interrupt::install_handler();
    let n = opts.samples.max(1);
    let pid = session.target.pid;
    let pb = progress(Some(n as u64), &format!("sampling PID {pid} every {:.1} s", opts.interval.as_secs_f64()));
    let start = Instant::now();
    // Each report is reduced to its rows' counts and bytes as it comes (not kept whole).
    let mut series = Series::default();
    let owners = opts.owners && opts.snapshot.full && n >= 2;
    let (mut first, mut last) = (None, None);
    let mut last_end = start;
    for i in 0..n {
        if i > 0 {
            // Samples on a fixed schedule (no drift from walk times), but never less than half an
            // interval after the previous sample ended (one that recorded the graph may take longer
            // than the interval).
            let due = (start + opts.interval * i as u32).max(last_end + opts.interval / 2);
            sleep_unless_interrupted(due.saturating_duration_since(Instant::now()));
            if crate::interrupt::requested() {
                pb.println(format!("memspy: interrupted after {i} samples"));
                break;
            }
        }
        let graph = owners && (i == 0 || i + 1 == n);
        let r = if i > 0 && !session.target.alive() {
            Err(Error::TargetExited { pid })
        } else if graph {
            Held::read(session, &opts.snapshot).map(|h| {
                let o = h.owners(OWNER_PATHS);
                if i == 0 {
                    first = Some(o);
                } else {
                    last = Some(o);
                }
                h.report
            })
        } else {
            session.report(&opts.snapshot)
        };
        let r = match r {
            Ok(r) => r,
            // A program memspy started may end on its own: report the samples taken.
            Err(Error::TargetExited { .. }) if opts.target.starts_program() && !series.is_empty() => {
                pb.finish_and_clear();
                eprintln!("memspy: the program (PID {pid}) exited after {i} samples");
                break;
            }
            Err(e) => {
                pb.finish_and_clear();
                return Err(e);
            }
        };
        if r.partial {
            pb.println(format!("memspy: sample {} is partial (--max-pause reached)", i + 1));
        }
        series.push(&r);
        last_end = Instant::now();
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mut g = series.growth(opts.interval.as_secs_f64());
    if let (Some(a), Some(b)) = (first, last) {
        g.add_owners(&a, &b);
    }
    Ok(g)
}

pub fn run(opts: &GrowthOptions) -> Result<()> {
    let (session, _spawned) = super::open_target("growth", &opts.target, opts.snapshot.timeout)?;
    let g = sample(&session, opts)?;
    if let Some(path) = &opts.plot {
        std::fs::write(path, report::plot::svg(&g))
            .map_err(|e| Error::Other(format!("could not write the chart to {}: {e}", path.display())))?;
        if !opts.json {
            eprintln!("memspy: chart written to {}", path.display());
        }
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&g).expect("growth serializes"));
    } else {
        print!("{}", report::growth::table(&g, opts.limit));
    }
    Ok(())
}
