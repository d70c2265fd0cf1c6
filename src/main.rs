//! The memspy command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use memspy::analysis::histogram::SortKey;
use memspy::commands::diff::{self, DiffOptions};
use memspy::commands::growth::{self, GrowthOptions};
use memspy::commands::serve::{self, ServeOptions};
use memspy::commands::snapshot::{self, SnapshotCmdOptions};
use memspy::commands::top::{self, TopOptions};
use memspy::commands::{dump, export, gc, report, retained, stat, why, CoreSpec, TargetSpec};
use memspy::memory::core_memory::Binaries;
use memspy::walk::SnapshotOptions;

#[derive(Parser, Debug)]
#[command(
    name = "memspy",
    // The crate version and, in a git checkout, the revision (build.rs).
    version = env!("MEMSPY_VERSION"),
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
    /// Full walk: when the target's writable memory fits in this many MiB, copy it while the target is
    /// stopped (a short freeze) and walk the copy after resuming it; otherwise walk while it is
    /// stopped. Default: half the target's RSS (0: never copy).
    #[arg(long, value_name = "MIB")]
    max_memory: Option<u64>,
    /// Threads of the full walk. Default: the CPUs memspy may run on (CPU affinity, cgroup quota), at most 8.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: Option<u16>,
}

impl WalkArgs {
    fn options(&self) -> SnapshotOptions {
        SnapshotOptions {
            nonblocking: self.nonblocking,
            timeout: Duration::from_secs_f64(self.timeout.max(0.1)),
            max_pause: Duration::from_secs_f64(self.max_pause.max(0.001)),
            full: !self.gc_only,
            max_memory: self.max_memory.map(|m| m.saturating_mul(1 << 20)),
            threads: self.threads.map(usize::from),
            ..Default::default()
        }
    }
}

/// The process to inspect: a PID, or a program to start (`-- python3 app.py`); for the commands that
/// read one, a dump file.
#[derive(clap::Args, Debug, Clone)]
struct TargetArgs {
    /// PID of the Python process to inspect (or a file `memspy dump` wrote, for top, why, retained).
    #[arg(value_name = "PID|FILE", value_parser = parse_target)]
    target: Option<String>,
    /// With a command: seconds to let it run before the first snapshot.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    delay: f64,
    /// Start this program and inspect it, e.g. `-- python3 app.py` (it is stopped when memspy is done)
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl TargetArgs {
    fn spec(self) -> TargetSpec {
        let (pid, dump) = match self.target {
            Some(t) => match t.parse::<i32>() {
                Ok(pid) => (Some(pid), None),
                Err(_) => (None, Some(PathBuf::from(t))),
            },
            None => (None, None),
        };
        let delay = Duration::from_secs_f64(self.delay.max(0.0));
        TargetSpec { pid, dump, command: self.command, delay, core: None }
    }

    /// The target, or the core file of `core`.
    fn spec_or_core(self, core: CoreArgs) -> TargetSpec {
        TargetSpec { core: core.spec(), ..self.spec() }
    }
}

/// A core file to read instead of a live process (the same walk, on the memory the core holds).
#[derive(clap::Args, Debug, Clone)]
struct CoreArgs {
    /// Read this core file (written by gdb's gcore, or `coredumpctl dump`) instead of a live process.
    #[arg(long, value_name = "FILE", conflicts_with = "target")]
    core: Option<PathBuf>,
    /// With --core: the program's executable on disk, when it is not at the path the core names.
    #[arg(long, value_name = "FILE", requires = "core")]
    exe: Option<PathBuf>,
    /// With --core: find the binaries the core names under this directory (a copy of the machine's or
    /// the container's root).
    #[arg(long, value_name = "DIR", requires = "core")]
    sysroot: Option<PathBuf>,
}

impl CoreArgs {
    fn spec(self) -> Option<CoreSpec> {
        let binaries = Binaries { exe: self.exe, sysroot: self.sysroot };
        self.core.map(|path| CoreSpec { path, binaries })
    }
}

/// Formats `memspy export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ExportFormat {
    /// The V8 heap snapshot (.heapsnapshot).
    Heapsnapshot,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Object types in the heap: count, bytes, refcounts (refreshing, or --once).
    Top {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        core: CoreArgs,
        /// Print one table (or report) and exit.
        #[arg(long)]
        once: bool,
        /// Print the JSON report instead of a table.
        #[arg(long)]
        json: bool,
        /// Rows shown in the table.
        #[arg(long, default_value_t = 25)]
        limit: usize,
        /// Sort the table by bytes, by count, or by retained bytes (with --retained).
        #[arg(long, value_enum, default_value_t = SortKey::Bytes)]
        sort: SortKey,
        /// Add a RETAINED column: the bytes each type's instances keep alive (records the object graph,
        /// as `memspy retained` does; with --once).
        #[arg(long)]
        retained: bool,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0, value_name = "SECS")]
        rate: f64,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Sample the heap at an interval and rank the types by growth (leak suspects grew every time).
    Growth {
        #[command(flatten)]
        target: TargetArgs,
        /// Seconds between samples.
        #[arg(long, default_value_t = 10.0, value_name = "SECS")]
        interval: f64,
        /// How many samples to take (at least 2 to see growth).
        #[arg(long, default_value_t = 6)]
        samples: usize,
        /// Print JSON (every type, with its counts and bytes at each sample).
        #[arg(long)]
        json: bool,
        /// Rows in the table.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Also draw RSS and the top types' bytes over time into this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<std::path::PathBuf>,
        /// Do not record the object graph at the first and last samples (no retained growth, no
        /// owners: each of those two pauses is then a plain walk).
        #[arg(long)]
        no_owners: bool,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Serve per-type counts and bytes, totals, RSS and GC figures on /metrics for Prometheus, sampled
    /// every --interval (a scrape never pauses the target).
    Serve {
        /// PIDs of the Python processes to sample (each in turn).
        pids: Vec<i32>,
        /// Address to listen on (port 0: any free port, printed on stderr).
        #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR:PORT")]
        listen: String,
        /// Seconds between samples (the first is taken at start).
        #[arg(long, default_value_t = 60.0, value_name = "SECS")]
        interval: f64,
        /// Types served per target, the largest by bytes (at most 100: the series stay few).
        #[arg(long, default_value_t = 20, value_name = "N")]
        top: usize,
        /// With a command: seconds to let it run before the first sample.
        #[arg(long, default_value_t = 1.0, value_name = "SECS")]
        delay: f64,
        /// Start this program and serve its figures, e.g. `-- python3 app.py` (stopped when memspy ends)
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Why objects are alive: how the instances of a type are held (shortest paths from the roots,
    /// aggregated, with retained bytes), the path of one object, or which types' refcounts the heap
    /// does not explain.
    Why {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        core: CoreArgs,
        /// The type whose instances to explain (`module.Qualname`, or the name after the last dot).
        #[arg(long = "type", value_name = "TYPE", required_unless_present_any = ["address", "unexplained"])]
        type_name: Option<String>,
        /// The object at this address (0x…): its path, holders, retained size.
        #[arg(long, value_name = "0xADDR", value_parser = parse_address, conflicts_with = "type_name")]
        address: Option<u64>,
        /// The types whose refcounts exceed the references found in the heap (held by C code or
        /// native memory: a C extension's leaked references, for one).
        #[arg(long, conflicts_with_all = ["type_name", "address"])]
        unexplained: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Rows in the table.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Who owns the memory: the objects that retain the most (the dominator tree) and retained bytes
    /// per type.
    Retained {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        core: CoreArgs,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Rows in each table.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Write the heap to a file — every object, the references between them with their names, the
    /// roots, short values — that top, why, retained and diff read in place of the process, anywhere.
    Dump {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        core: CoreArgs,
        /// The file to write (written under a temporary name, renamed when complete).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Leave contents out (str and bytes values, ints, floats, dict keys that are not identifiers),
        /// for heaps that hold secrets; the file says so.
        #[arg(long)]
        no_values: bool,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Write the object graph in a format other tools open: `heapsnapshot` (V8's, for Chrome
    /// DevTools' Memory tab, VS Code and memlab).
    Export {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        core: CoreArgs,
        /// The format to write.
        #[arg(long, value_enum, default_value_t = ExportFormat::Heapsnapshot)]
        format: ExportFormat,
        /// The file to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Write one static, self-contained HTML page (no server, no network): the type table, the
    /// objects that retain the most and the paths that hold the largest types.
    Report {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        core: CoreArgs,
        /// The file to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Rows in each table.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Save one report (types, totals, timestamp, RSS) to a file for `memspy diff`.
    Snapshot {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        core: CoreArgs,
        /// The file to write (default: stdout).
        #[arg(short, long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// What changed between two snapshots: per-type differences of counts and bytes.
    Diff {
        /// The earlier snapshot.
        a: String,
        /// The later snapshot.
        b: String,
        /// Print JSON (every type of either snapshot).
        #[arg(long)]
        json: bool,
        /// Rows in the table.
        #[arg(long, default_value_t = 25)]
        limit: usize,
    },
    /// The cyclic GC: enabled, thresholds, counts, objects per generation, collections, gc.garbage.
    Gc {
        /// PID of the Python process to inspect (or a file `memspy dump` wrote).
        #[arg(value_name = "PID|FILE", value_parser = parse_target, required_unless_present = "core")]
        target: Option<String>,
        #[command(flatten)]
        core: CoreArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60.0, value_name = "SECS")]
        timeout: f64,
    },
    /// Where the memory went: RSS/PSS/USS, pymalloc arenas and size classes, Python objects vs native,
    /// cgroup and rlimit headroom.
    Stat {
        /// PID of the Python process to inspect (or a file `memspy dump` wrote).
        #[arg(value_name = "PID|FILE", value_parser = parse_target, required_unless_present = "core")]
        target: Option<String>,
        #[command(flatten)]
        core: CoreArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Print a shell completion script: `memspy completions bash > /etc/bash_completion.d/memspy`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page (roff): `memspy man | man -l -`, `memspy man > memspy.1`.
    Man {
        /// The page of one command instead (memspy-COMMAND(1)).
        command: Option<String>,
        /// Write memspy.1 and one memspy-COMMAND.1 per command into this directory instead.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

/// A PID, or the path of a file that exists (a dump): anything else is a usage error.
fn parse_target(s: &str) -> Result<String, String> {
    if s.parse::<i32>().is_ok() || Path::new(s).exists() {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is neither a PID nor an existing file (a dump written by memspy dump)"))
    }
}

/// `0x7f12…` (or decimal) → an address.
fn parse_address(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not an address (give it as 0x…)"))
}

/// The exit statuses, for the man page (the README's "Exit status" says the same).
const EXIT_STATUSES: [(&str, &str); 5] = [
    ("0", "Success; also when Ctrl-C ends the refreshing top, or growth between samples (it reports them)."),
    ("1", "An error, said in one line on stderr (no such process, no permission, not Python, ...)."),
    ("2", "A usage error: an unknown option, a missing or malformed argument."),
    ("101", "An internal error: a bug in memspy (the target is resumed)."),
    ("130", "Interrupted (Ctrl-C or SIGTERM) before a result: the target was resumed."),
];

/// Writes all of `bytes` to stdout; a reader that went away (`memspy man | head`) is not an error.
fn print_stdout(bytes: &[u8]) -> memspy::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(memspy::Error::Other(format!("writing to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// The man page of memspy (`command` None) or of one of its commands, generated from the clap
/// definitions; memspy's own page also says the exit statuses and the environment.
fn man_page(command: Option<&str>) -> memspy::Result<Vec<u8>> {
    use clap_mangen::roff::{bold, roman, Roff};
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let cmd = match command {
        None => cli,
        Some(name) => cli.find_subcommand(name).filter(|s| !s.is_hide_set()).cloned().ok_or_else(|| {
            let names: Vec<&str> = cli.get_subcommands().map(|s| s.get_name()).collect();
            memspy::Error::Other(format!("memspy man {name}: no such command (commands: {})", names.join(", ")))
        })?,
    };
    let man = clap_mangen::Man::new(cmd).source(format!("memspy {}", env!("MEMSPY_VERSION")));
    let mut page = Vec::new();
    let io = |e: std::io::Error| memspy::Error::Other(format!("rendering the man page: {e}"));
    if command.is_some() {
        man.render(&mut page).map_err(io)?;
        return Ok(page);
    }
    man.render_title(&mut page).map_err(io)?;
    man.render_name_section(&mut page).map_err(io)?;
    man.render_synopsis_section(&mut page).map_err(io)?;
    man.render_description_section(&mut page).map_err(io)?;
    man.render_options_section(&mut page).map_err(io)?;
    man.render_subcommands_section(&mut page).map_err(io)?;
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (status, meaning) in EXIT_STATUSES {
        roff.control("TP", []).text([bold(status)]).text([roman(meaning)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.control("TP", []).text([bold("NO_COLOR")]).text([roman(
        "Set to a non-empty value: no colours anywhere (the live view of top, help and usage messages).",
    )]);
    roff.to_writer(&mut page).map_err(io)?;
    man.render_version_section(&mut page).map_err(io)?;
    Ok(page)
}

/// `memspy man --dir DIR`: memspy.1 and memspy-COMMAND.1 for every command, into DIR.
fn write_man_pages(dir: &Path) -> memspy::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| memspy::Error::Other(format!("creating {}: {e}", dir.display())))?;
    let mut pages = vec![("memspy.1".to_string(), man_page(None)?)];
    for sub in Cli::command().get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((format!("memspy-{}.1", sub.get_name()), man_page(Some(sub.get_name()))?));
    }
    let mut written = String::new();
    for (file, page) in pages {
        let path = dir.join(file);
        std::fs::write(&path, page).map_err(|e| memspy::Error::Other(format!("writing {}: {e}", path.display())))?;
        written += &format!("{}\n", path.display());
    }
    print_stdout(written.as_bytes())
}

fn main() -> ExitCode {
    // A fixed threshold for serving allocations with their own mappings: glibc otherwise raises it
    // (up to 32 MiB) each time such a block is freed, after which large short-lived buffers (work
    // stacks, address lists of the walk) are carved from the heap and their memory stays resident
    // after they are freed (measured: +13..40 MiB of peak RSS on a 7 M-object heap).
    // SAFETY: mallopt only sets an allocator parameter; called before any thread is started.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
    // A bug must not print a backtrace at the user: one line, exit status 101. Unwinding still runs
    // the pause guard, so the target is resumed.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("memspy: internal error (a bug; please report it): {}{at}", msg.replace('\n', " "));
    }));
    let cli = Cli::parse();
    if !matches!(cli.command, Cmd::Serve { .. } | Cmd::Man { .. } | Cmd::Completions { .. }) {
        // A reader that goes away (`memspy why PID --type T | head`) ends memspy quietly, as it ends
        // other tools, instead of a panic on the next line printed. Output is printed once the target is
        // resumed (and the kernel resumes a dead tracer's tracees). `serve` keeps SIGPIPE ignored (its
        // clients may hang up), and `man`/`completions` handle a closed pipe themselves.
        // SAFETY: restoring a signal's default disposition; no handler is involved.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let level = match cli.verbose {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new().filter_level(level).format_timestamp_millis().init();
    let result = match cli.command {
        Cmd::Top { target, core, once, json, limit, sort, rate, retained, walk } => top::run(&TopOptions {
            target: target.spec_or_core(core),
            once,
            json,
            limit,
            sort,
            rate: Duration::from_secs_f64(rate.max(0.05)),
            snapshot: walk.options(),
            retained,
        }),
        Cmd::Growth { target, interval, samples, json, limit, plot, no_owners, walk } => {
            if samples < 2 {
                Err(memspy::Error::Other(format!("--samples {samples}: growth needs at least 2 samples to compare")))
            } else if !(interval > 0.0 && interval.is_finite()) {
                Err(memspy::Error::Other(format!("--interval {interval}: give a number of seconds above 0")))
            } else {
                growth::run(&GrowthOptions {
                    target: target.spec(),
                    interval: Duration::from_secs_f64(interval),
                    samples,
                    json,
                    limit,
                    plot,
                    snapshot: walk.options(),
                    owners: !no_owners,
                })
            }
        }
        Cmd::Serve { pids, listen, interval, top, delay, command, walk } => {
            if !(interval > 0.0 && interval.is_finite()) {
                Err(memspy::Error::Other(format!("--interval {interval}: give a number of seconds above 0")))
            } else {
                serve::run(&ServeOptions {
                    pids,
                    command,
                    delay: Duration::from_secs_f64(delay.max(0.0)),
                    listen,
                    interval: Duration::from_secs_f64(interval),
                    top,
                    snapshot: walk.options(),
                })
            }
        }
        Cmd::Why { walk, .. }
        | Cmd::Retained { walk, .. }
        | Cmd::Dump { walk, .. }
        | Cmd::Export { walk, .. }
        | Cmd::Report { walk, .. }
            if walk.gc_only =>
        {
            Err(memspy::Error::Other(
                "--gc-only: why, retained, dump, export and report follow every reference; they need the full walk"
                    .into(),
            ))
        }
        Cmd::Why { target, core, type_name, address, unexplained, json, limit, walk } => why::run(&why::WhyOptions {
            target: target.spec_or_core(core),
            what: match (type_name, address, unexplained) {
                (_, Some(a), _) => why::WhatFor::Address(a),
                (_, None, true) => why::WhatFor::Unexplained,
                (t, None, false) => why::WhatFor::Type(t.unwrap_or_default()),
            },
            json,
            limit,
            snapshot: walk.options(),
        }),
        Cmd::Retained { target, core, json, limit, walk } => retained::run(&retained::RetainedOptions {
            target: target.spec_or_core(core),
            json,
            limit,
            snapshot: walk.options(),
        }),
        Cmd::Dump { target, core, output, no_values, walk } => dump::run(&dump::DumpOptions {
            target: target.spec_or_core(core),
            output,
            no_values,
            snapshot: walk.options(),
        }),
        Cmd::Export { target, core, format, output, json, walk } => export::run(&export::ExportOptions {
            target: target.spec_or_core(core),
            format: match format {
                ExportFormat::Heapsnapshot => export::Format::HeapSnapshot,
            },
            output,
            json,
            snapshot: walk.options(),
        }),
        Cmd::Report { target, core, output, limit, walk } => report::run(&report::ReportOptions {
            target: target.spec_or_core(core),
            output,
            limit,
            snapshot: walk.options(),
        }),
        Cmd::Snapshot { target, core, output, walk } => {
            snapshot::run(&SnapshotCmdOptions { target: target.spec_or_core(core), output, snapshot: walk.options() })
        }
        Cmd::Diff { a, b, json, limit } => diff::run(&DiffOptions { a, b, json, limit }),
        Cmd::Gc { target, core, json, timeout } => gc::run(&gc::GcOptions {
            target,
            core: core.spec(),
            json,
            timeout: Duration::from_secs_f64(timeout.max(0.1)),
        }),
        Cmd::Stat { target, core, json, walk } => {
            stat::run(&stat::StatOptions { target, core: core.spec(), json, snapshot: walk.options() })
        }
        Cmd::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "memspy", &mut script);
            print_stdout(&script)
        }
        Cmd::Man { command, dir } => match (command, dir) {
            (_, Some(dir)) => write_man_pages(&dir),
            (command, None) => man_page(command.as_deref()).and_then(|page| print_stdout(&page)),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(memspy::Error::Interrupted) => {
            eprintln!("memspy: {}", memspy::Error::Interrupted);
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("memspy: error: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
