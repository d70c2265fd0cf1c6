//! The memspy command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use memspy::analysis::histogram::SortKey;
use memspy::commands::top::{self, TopOptions};
use memspy::heap::SnapshotOptions;

#[derive(Parser, Debug)]
#[command(
    name = "memspy",
    version,
    about = "See what lives in the heap of a running CPython process, from outside: no code injected, no restart",
    long_about = None,
    propagate_version = true
)]
struct Cli {
    /// Log diagnostics to stderr (-v: info, -vv: debug, -vvv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
struct WalkArgs {
    /// Read without stopping the target (the result may be inconsistent and is marked approximate).
    #[arg(long)]
    nonblocking: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    timeout: f64,
    /// Longest the target may stay stopped per snapshot; the walk is cut short (and marked partial) past it.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    max_pause: f64,
    /// Count every reachable object: strings, numbers, untracked tuples and dicts, … (the default).
    #[arg(long, conflicts_with = "gc_only")]
    full: bool,
    /// Count only the objects in the GC lists (what gc.get_objects() sees): faster on huge heaps.
    #[arg(long)]
    gc_only: bool,
}

impl WalkArgs {
    fn options(&self) -> SnapshotOptions {
        SnapshotOptions {
            nonblocking: self.nonblocking,
            timeout: Duration::from_secs_f64(self.timeout.max(0.1)),
            max_pause: Duration::from_secs_f64(self.max_pause.max(0.001)),
            full: !self.gc_only,
            ..Default::default()
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Object types in the heap: count, bytes, refcounts (refreshing, or --once).
    Top {
        /// PID of the Python process to inspect.
        pid: Option<i32>,
        /// Print one table (or report) and exit.
        #[arg(long)]
        once: bool,
        /// Print the JSON report instead of a table.
        #[arg(long)]
        json: bool,
        /// Rows shown in the table.
        #[arg(long, default_value_t = 25)]
        limit: usize,
        /// Sort the table by bytes or by count.
        #[arg(long, value_enum, default_value_t = SortKey::Bytes)]
        sort: SortKey,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0, value_name = "SECS")]
        rate: f64,
        /// With a command: seconds to let it run before the first snapshot.
        #[arg(long, default_value_t = 1.0, value_name = "SECS")]
        delay: f64,
        #[command(flatten)]
        walk: WalkArgs,
        /// Start this program and inspect it: memspy top -- python3 app.py
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new().filter_level(level).format_timestamp_millis().init();
    let result = match cli.command {
        Cmd::Top { pid, once, json, limit, sort, rate, delay, walk, command } => top::run(&TopOptions {
            pid,
            command,
            once,
            json,
            limit,
            sort,
            rate: Duration::from_secs_f64(rate.max(0.05)),
            delay: Duration::from_secs_f64(delay.max(0.0)),
            snapshot: walk.options(),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memspy: error: {e}");
            ExitCode::FAILURE
        }
    }
}
