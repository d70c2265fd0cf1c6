#!/usr/bin/env python3
"""memspy full-heap benchmark: a target with N records (an instance with an id, a name str, a list
[float, str] and a dict {"k": i} each), measured side by side with in-process tools, and one or more
memspy builds compared against the same target.

Usage: python3 bench/run.py [--records N] [--runs K] [--memspy LABEL=PATH]... [--max-memory MIB]
                            [--shuffled] [--no-heapy] [--no-build] [--out FILE] [PYTHON...]
(options: see --help or main() below)

For each interpreter one target is started; the builds then run alternately against it (A B A B ...,
K runs each), each run `memspy top PID --once --json [--max-memory MIB]`, and for each build the script
reports the median, min and max of: memspy's wall time, how long the target was frozen (the longest gap
of a 1 ms heartbeat thread inside the target while memspy ran), memspy's peak RSS (and its ratio
to the target's RSS), plus memspy's own pause_ms; the ratios of each build's medians to the first's;
and whether the totals (objects, bytes, GC-tracked) are identical in every run of every build (the
target is idle between runs, so they should be: a difference is a correctness signal, printed with the
per-type rows that differ; only one to three floats more or fewer in a run is the target's heartbeat
thread, stopped in the middle of a step, and is said so). After the memspy runs, once per target:
gc.get_objects()+Counter, the in-process closure (gc.get_referents + dict keys) and guppy3's
hpy().heap(). Goals, per build (medians): totals within 3% of the closure's, memspy wall <= 1/10 of
heapy's, frozen <= 500 ms, memspy peak RSS <= 0.5 x the target's RSS.

The output ends with one Markdown table (a row per interpreter and build) and the command line that
reproduces it.
"""

import argparse
import collections
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

from driver import Driven

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REPO_BUILD = os.path.join(ROOT, "target", "release", "memspy")
DEFAULT_LABEL = "this build"
USAGE = """python3 bench/run.py [--records N] [--runs K] [--memspy LABEL=PATH]... [--max-memory MIB]
                            [--shuffled] [--no-heapy] [--no-build] [--out FILE] [PYTHON...]"""
SETTLE_S = 0.2  # idle time before each memspy run (not measured)


class Build:
    def __init__(self, label, path, options=()):
        self.label = label
        self.path = os.path.abspath(path)
        # memspy options of this build's runs (e.g. `--threads 4`: one binary measured several ways).
        self.options = list(options)
        self._describe = None

    def shown_path(self):
        """The path as the reproducing command gives it (relative to the repository's root if inside it),
        with the build's options."""
        rel = os.path.relpath(self.path, ROOT)
        return shlex.join([self.path if rel.startswith("..") else rel] + self.options)

    def describe(self):
        if self._describe is None:
            self._describe = self._identify()
        return self._describe

    def _identify(self):
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        ver = subprocess.run([self.path, "--version"], capture_output=True, text=True).stdout.strip()
        when = datetime.datetime.fromtimestamp(os.path.getmtime(self.path)).strftime("%Y-%m-%d %H:%M")
        return "%s, sha256 %s, built %s" % (ver or "?", h.hexdigest()[:12], when)


def build_arg(text):
    label, sep, path = text.partition("=")
    if not sep:
        label, path = os.path.basename(text), text
    words = shlex.split(path)
    if not label or not words:
        raise argparse.ArgumentTypeError("expected LABEL=PATH [OPTIONS], got %r" % text)
    return Build(label, words[0], words[1:])


def venv_with_guppy(python):
    """(python of a venv of `python` with guppy3, or None; guppy3's version, or why not). One venv per
    interpreter binary (two builds of the same X.Y, e.g. pyenv's and the distribution's, must not share one)."""
    out = subprocess.run([python, "-c", "import sys, platform; print(platform.python_version(), sys.executable)"],
                         capture_output=True, text=True).stdout.split()
    if len(out) != 2:
        return None, "%s does not run" % python
    ver, exe = out
    tag = hashlib.sha1(os.path.realpath(exe).encode()).hexdigest()[:6]
    venv = os.path.join(HERE, ".venv-%s-%s" % (ver, tag))
    vpy = os.path.join(venv, "bin", "python")
    if not os.path.exists(vpy):
        # Debian's interpreters have no ensurepip unless python3.X-venv is installed: then a venv without
        # pip that sees the system's site-packages (where Debian's pip is).
        if subprocess.run([python, "-m", "venv", venv], capture_output=True).returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            if subprocess.run([python, "-m", "venv", "--without-pip", "--system-site-packages", venv],
                              capture_output=True).returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                return None, "no venv for %s" % python
    version = [vpy, "-c", "import importlib.metadata as m; print(m.version('guppy3'))"]
    got = subprocess.run(version, capture_output=True, text=True)
    if got.returncode != 0:
        # The venv's own pip first; then this script's (pip >= 22.3 installs into another interpreter's
        # environment with --python: Debian's pip 23.0 does not run on 3.12+).
        for pip in ([vpy, "-m", "pip"], [sys.executable, "-m", "pip", "--python", vpy]):
            res = subprocess.run(pip + ["install", "-q", "guppy3"], capture_output=True, text=True)
            got = subprocess.run(version, capture_output=True, text=True)
            if got.returncode == 0:
                break
        else:
            err = [line for line in (res.stderr or "").splitlines() if line.strip()]
            return None, "pip install guppy3 into %s failed%s" % (os.path.relpath(venv, ROOT),
                                                                  (": " + err[-1][:200]) if err else "")
    return vpy, "guppy3 " + got.stdout.strip()


class Target(Driven):
    def __init__(self, python, n, shuffled):
        args = [python, os.path.join(HERE, "target.py"), str(n)] + (["shuffled"] if shuffled else [])
        try:
            super().__init__(args)
        except RuntimeError as e:
            raise SystemExit(str(e))


def run_memspy(build, pid, extra):
    """One `memspy top PID --once --json`: (report, wall seconds, peak RSS bytes, (start, end) in
    time.monotonic(), the heartbeat log's clock)."""
    start = time.monotonic()
    p = subprocess.Popen([build.path, "top", str(pid), "--once", "--json"] + build.options + extra, stdout=subprocess.PIPE,
                         text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    end = time.monotonic()
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    if p.returncode != 0:
        raise SystemExit("memspy (%s, %s) failed with status %d" % (build.label, build.path, p.returncode))
    return json.loads(out), end - start, usage.ru_maxrss * 1024, (start, end)


def rss_of(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def frozen_ms(gaps, window):
    """The longest logged heartbeat gap overlapping a run's (start, end), in ms (0 if none was logged)."""
    start, end = window
    return max([(e - s) * 1000 for s, e in gaps if e > start and s < end], default=0.0)


def mib(b):
    return "%.1f MiB" % (b / 2**20)


def count(n):
    if n >= 1e6:
        return "%.2f M" % (n / 1e6)
    if n >= 1e4:
        return "%.0f k" % (n / 1e3)
    return "%d" % n


def spread(values):
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def origin(python):
    """Where an interpreter comes from, for the table: pyenv, the distribution, or its path."""
    real = os.path.realpath(shutil.which(python) or python)
    if "/.pyenv/" in real:
        return "pyenv"
    if real.startswith("/usr/bin/") or real.startswith("/usr/lib/"):
        try:
            with open("/etc/os-release") as f:
                fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
            return fields.get("NAME", "system").strip('"').split()[0]
        except OSError:
            return "system"
    return python


def type_rows(report):
    return {t["type"]: (t["count"], t["bytes"]) for t in report["types"]}


def type_diff(ref, other):
    """{type: (count difference, bytes difference)} for the types whose rows differ between two reports."""
    a, b = type_rows(ref), type_rows(other)
    out = {}
    for name in sorted(set(a) | set(b)):
        ca, ba = a.get(name, (0, 0))
        cb, bb = b.get(name, (0, 0))
        if (ca, ba) != (cb, bb):
            out[name] = (cb - ca, bb - ba)
    return out


def show_diff(diff, limit=10):
    lines = ["%s: count %+d, bytes %+d" % (name, c, b) for name, (c, b) in diff.items()]
    return "; ".join(lines[:limit] + (["... %d more types" % (len(lines) - limit)] if len(lines) > limit else []))


def heartbeat_noise(diff):
    """Whether a difference is only what the target's heartbeat thread holds for a moment (when memspy
    stops it in the middle of a step rather than in its sleep): one to three floats more or fewer."""
    return set(diff) == {"builtins.float"} and 1 <= abs(diff["builtins.float"][0]) <= 3 and \
        diff["builtins.float"][1] == 24 * diff["builtins.float"][0]


def check_totals(builds, runs):
    """Print whether the totals agree in every run of every build; returns True unless a build's usual
    totals differ from the first build's, or a run differs from its build's usual totals by more than
    the heartbeat thread's transient floats."""
    def key(run):
        return tuple(sorted(run["report"]["totals"].items()))

    usual = {}  # per build: its most frequent totals, and a run that has them
    for b in builds:
        mode = collections.Counter(key(r) for r in runs[b.label]).most_common(1)[0][0]
        usual[b.label] = next(r for r in runs[b.label] if key(r) == mode)
    ref_build = builds[0]
    ref = usual[ref_build.label]
    ref_tot = ref["report"]["totals"]
    nruns = sum(len(v) for v in runs.values())
    if all(key(r) == key(ref) for rs in runs.values() for r in rs):
        print("  totals identical in all %d runs%s: %d objects, %d bytes, %d GC-tracked"
              % (nruns, " of all builds" if len(builds) > 1 else "", ref_tot["objects"], ref_tot["bytes"],
                 ref_tot["gc_tracked"]))
        return True
    ok = True
    for b in builds[1:]:
        if key(usual[b.label]) != key(ref):
            ok = False
            print("  *** TOTALS DIFFER BETWEEN BUILDS: %s vs %s (their most frequent totals): %s ***"
                  % (b.label, ref_build.label, show_diff(type_diff(ref["report"], usual[b.label]["report"]))))
    if ok:
        print("  totals: the same in every build (the most frequent in each): %d objects, %d bytes, %d GC-tracked"
              % (ref_tot["objects"], ref_tot["bytes"], ref_tot["gc_tracked"]))
    noise = 0
    for b in builds:
        own = usual[b.label]
        for i, r in enumerate(runs[b.label]):
            if key(r) == key(own):
                continue
            diff = type_diff(own["report"], r["report"])
            tot = r["report"]["totals"]
            if heartbeat_noise(diff):
                noise += 1
                why = "the target's heartbeat thread was stopped mid-step (its transient floats)"
            else:
                ok = False
                why = "*** not explained by the target's heartbeat: a correctness signal if the target was idle ***"
            print("    %s run %d: %d objects, %d bytes, %d GC-tracked; vs the build's usual totals: %s -- %s"
                  % (b.label, i + 1, tot["objects"], tot["bytes"], tot["gc_tracked"], show_diff(diff), why))
    if noise:
        print("    (%d of %d runs differ only by the heartbeat's floats: not a difference of memspy's)"
              % (noise, nruns))
    return ok


def bench(python, args, builds, extra):
    phases = [time.monotonic()]
    vpy, guppy = (None, "--no-heapy") if args.no_heapy else venv_with_guppy(python)
    phases.append(time.monotonic())
    t = Target(vpy or python, args.records, args.shuffled)
    phases.append(time.monotonic())
    runs = {b.label: [] for b in builds}
    try:
        pid = t.hello["pid"]
        # No exchange with the target between runs (each one leaves a few of its objects changed, which
        # would make the totals differ from run to run): the heartbeat logs its long gaps, read afterwards.
        for k in range(args.runs):
            for b in builds:
                time.sleep(SETTLE_S)
                report, wall, peak, window = run_memspy(b, pid, extra)
                if report.get("partial") or report.get("approximate"):
                    print("  warning: %s run %d reported partial=%s approximate=%s"
                          % (b.label, k + 1, report.get("partial"), report.get("approximate")))
                runs[b.label].append({"wall": wall, "peak_rss": peak, "window": window, "target_rss": rss_of(pid),
                                      "pause_ms": report["pause_ms"], "elapsed_ms": report["elapsed_ms"],
                                      "report": report})
        phases.append(time.monotonic())
        log = t.ask("gaps")
        if log["lost"]:
            print("  warning: the heartbeat log overflowed (%d gaps lost): early runs' freezes may be missing"
                  % log["lost"])
        for rs in runs.values():
            for r in rs:
                r["frozen_ms"] = frozen_ms(log["gaps"], r["window"])
        gco = t.ask("gcobjects")
        clo = t.ask("closure")
        hpy = t.ask("heapy") if vpy else {"error": "guppy3 not available (%s)" % guppy}
    finally:
        t.close()
    phases.append(time.monotonic())
    took = [b - a for a, b in zip(phases, phases[1:])]

    first = runs[builds[0].label][0]["report"]
    target_rss = statistics.median(r["target_rss"] for rs in runs.values() for r in rs)
    pyinfo = first["python"]
    version = pyinfo["version"] + (" free-threaded" if pyinfo.get("free_threaded") else "") + \
        (" debug" if pyinfo.get("debug") else "")
    print("\n== %s (Python %s, %s), %d records%s, target RSS %s; %d runs per build, alternating%s"
          % (python, version, pyinfo["executable"], args.records, " (shuffled)" if args.shuffled else "",
             mib(target_rss), args.runs, ("; memspy " + " ".join(extra)) if extra else ""))

    stats = {}
    print("  %-14s %-22s %-25s %-28s %-13s %s" % ("build", "wall s: med (min-max)", "frozen ms: med (min-max)",
                                                  "peak RSS MiB: med (min-max)", "x target RSS", "pause_ms med"))
    for b in builds:
        rs = runs[b.label]
        s = {key: spread([r[key] for r in rs]) for key in ("wall", "frozen_ms", "peak_rss", "pause_ms")}
        s["rss_ratio"] = s["peak_rss"][0] / target_rss
        stats[b.label] = s
        w, f, p = s["wall"], s["frozen_ms"], s["peak_rss"]
        print("  %-14s %-22s %-25s %-28s %-13s %.0f"
              % (b.label, "%.3f (%.3f-%.3f)" % w, "%.0f (%.0f-%.0f)" % f,
                 "%.1f (%.1f-%.1f)" % tuple(x / 2**20 for x in p), "%.2fx" % s["rss_ratio"], s["pause_ms"][0]))
    ref = stats[builds[0].label]
    for b in builds[1:]:
        s = stats[b.label]
        print("  %s / %s (ratio of medians): wall %.3fx, frozen %.3fx, peak RSS %.3fx, pause_ms %.3fx"
              % (b.label, builds[0].label, s["wall"][0] / ref["wall"][0], s["frozen_ms"][0] / ref["frozen_ms"][0],
                 s["peak_rss"][0] / ref["peak_rss"][0], s["pause_ms"][0] / ref["pause_ms"][0]))
    same = check_totals(builds, runs)

    print("  in-process, once (after the memspy runs):")
    rows = [("gc.get_objects+Counter", gco["seconds"], gco["objects"], None),
            ("closure (in-process)", clo["seconds"], clo["objects"], clo["bytes"])]
    if "seconds" in hpy:
        rows.append(("%s hpy().heap()" % guppy, hpy["seconds"], hpy["objects"], hpy["bytes"]))
    print("    %-26s %10s %12s %14s" % ("tool", "seconds", "objects", "bytes"))
    for name, sec, objs, size in rows:
        print("    %-26s %10.2f %12d %14s" % (name, sec, objs, "-" if size is None else mib(size)))
    if "error" in hpy:
        print("    guppy3: %s" % hpy["error"])

    table = []
    for b in builds:
        s = stats[b.label]
        tot = runs[b.label][-1]["report"]["totals"]
        dev_o = (tot["objects"] - clo["objects"]) / clo["objects"] * 100
        dev_b = (tot["bytes"] - clo["bytes"]) / clo["bytes"] * 100
        wall, frozen = s["wall"][0], s["frozen_ms"][0]
        goals = [
            ("objects within 3%% of the closure (%+.2f%%)" % dev_o, abs(dev_o) <= 3),
            ("bytes within 3%% of the closure (%+.2f%%)" % dev_b, abs(dev_b) <= 3),
            ("target frozen <= 500 ms (heartbeat gap, median %.0f ms; memspy's pause_ms %.0f ms)"
             % (frozen, s["pause_ms"][0]), frozen <= 500),
            ("memspy peak RSS <= 0.5 x target RSS (median %s vs %s)" % (mib(s["peak_rss"][0]), mib(target_rss)),
             s["rss_ratio"] <= 0.5),
        ]
        if "seconds" in hpy:
            goals.append(("memspy wall <= 1/10 of heapy's (median %.2f s vs %.2f s)" % (wall, hpy["seconds"]),
                          wall <= hpy["seconds"] / 10))
        print("  goals, %s:" % b.label)
        for text, ok in goals:
            print("    [%s] %s" % ("ok" if ok else "MISS", text))
        table.append({
            "interpreter": "%s (%s)" % (version, origin(python)),
            "heap": "%s / %s / %s" % ("{:,}".format(args.records), count(tot["objects"]),
                                      "%.0f MiB" % (target_rss / 2**20)),
            "build": b.label,
            "wall": ("%.2f s (%.2f–%.2f)" if s["wall"][0] >= 1 else "%.3f s (%.3f–%.3f)") % s["wall"],
            "frozen": "%.0f ms (%.0f–%.0f)" % s["frozen_ms"],
            "rss": "%.0f / %.0f MiB (%.2f×)" % (s["peak_rss"][0] / 2**20, target_rss / 2**20, s["rss_ratio"]),
            "heapy": ("%.2f× (%.2f s)" % (wall / hpy["seconds"], hpy["seconds"])) if "seconds" in hpy else "—",
            "closure": "%+.2f%%, %+.2f%%" % (dev_o, dev_b),
        })
    print("  took %.0f s: venv %.0f s, target start %.0f s, memspy runs %.0f s, in-process tools %.0f s"
          % ((sum(took),) + tuple(took)))
    for r in runs.values():
        for run in r:
            del run["report"]["types"]
    raw = {"python": python, "version": version, "records": args.records, "target_rss": target_rss,
           "totals_identical": same, "seconds": dict(zip(["venv", "target", "memspy", "in_process"], took)),
           "runs": runs, "gcobjects": gco, "closure": clo, "heapy": hpy, "guppy3": guppy}
    return table, raw


def command_line(args, builds):
    """The command that reproduces this run, every option explicit (from the repository's root)."""
    cmd = ["python3", "bench/run.py", "--records", str(args.records), "--runs", str(args.runs)]
    for b in builds:
        cmd += ["--memspy", "%s=%s" % (b.label, b.shown_path())]
    if args.max_memory is not None:
        cmd += ["--max-memory", args.max_memory]
    if args.shuffled:
        cmd.append("--shuffled")
    if args.no_heapy:
        cmd.append("--no-heapy")
    return shlex.join(cmd + args.pythons)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    return "%d CPUs (%s), Linux %s" % (os.cpu_count(), cpu, platform.release())


def main(argv):
    ap = argparse.ArgumentParser(
        prog="bench/run.py", usage=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\nUsage:")[0] + "\n\n" + __doc__.split("--help or main() below)\n\n")[1])
    ap.add_argument("pythons", nargs="*", metavar="PYTHON", help="interpreters, one target each (default: python3)")
    ap.add_argument("--records", type=int, default=1000000, metavar="N",
                    help="records in the target (default 1000000: about 7 M objects)")
    ap.add_argument("--runs", type=int, default=5, metavar="K", help="runs of each build per target (default 5)")
    ap.add_argument("--memspy", action="append", type=build_arg, metavar="LABEL=PATH", dest="builds",
                    help="a memspy binary to measure, with options if any ('4 threads=target/release/memspy "
                         "--threads 4'); repeatable, the first is the reference (A) of the ratios "
                         "(default: the repository's target/release/memspy, labelled \"%s\")" % DEFAULT_LABEL)
    ap.add_argument("--max-memory", metavar="MIB",
                    help="passed to every build (a budget that holds the target's writable memory makes memspy "
                         "copy it while the target is stopped and walk the copy)")
    ap.add_argument("--shuffled", action="store_true",
                    help="the adversarial target (target.py N shuffled: the records' names reassigned in random "
                         "order, so neighbouring records reference strings far apart)")
    ap.add_argument("--no-heapy", action="store_true",
                    help="skip guppy3 (otherwise pip-installed into bench/.venv-X.Y.Z-HASH when possible)")
    ap.add_argument("--no-build", action="store_true",
                    help="skip `cargo build --release` (run only when the repository's target/release/memspy "
                         "is one of the builds)")
    ap.add_argument("--out", metavar="FILE", help="raw measurements as JSON (default bench/out/run-DATE-TIME.json)")
    args = ap.parse_intermixed_args(argv)
    if args.runs < 1 or args.records < 1:
        ap.error("--runs and --records must be at least 1")
    args.pythons = args.pythons or ["python3"]
    builds = args.builds or [Build(DEFAULT_LABEL, REPO_BUILD)]
    if len({b.label for b in builds}) != len(builds):
        ap.error("--memspy labels must be distinct")
    extra = ["--max-memory", args.max_memory] if args.max_memory is not None else []

    if not args.no_build and any(os.path.realpath(b.path) == os.path.realpath(REPO_BUILD) for b in builds):
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    for b in builds:
        if not os.access(b.path, os.X_OK):
            raise SystemExit("%s: %s is not an executable" % (b.label, b.path))

    started = datetime.datetime.now()
    load_before = os.getloadavg()
    print("memspy builds (run alternately, in this order):")
    for b in builds:
        print("  %-14s %s (%s)" % (b.label, b.path, b.describe()))
    t0 = time.perf_counter()
    table, raw = [], []
    for py in args.pythons:
        rows, r = bench(py, args, builds, extra)
        table += rows
        raw.append(r)
    elapsed = time.perf_counter() - t0
    load_after = os.getloadavg()

    out = args.out or os.path.join(HERE, "out", "run-%s.json" % started.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"command": command_line(args, builds), "started": started.isoformat(timespec="seconds"),
                   "machine": machine(), "load_before": load_before, "load_after": load_after,
                   "builds": [{"label": b.label, "path": b.path, "describe": b.describe()} for b in builds],
                   "interpreters": raw}, f, indent=1)

    print("\nRaw measurements: %s (%.0f s in all)\n" % (os.path.relpath(out), elapsed))
    cols = ["interpreter", "heap: records / objects / target RSS", "build", "wall median (min–max)",
            "frozen median (min–max)", "memspy RSS / target RSS", "vs heapy", "vs closure (objects, bytes)"]
    keys = ["interpreter", "heap", "build", "wall", "frozen", "rss", "heapy", "closure"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in table:
        print("| " + " | ".join(row[k] for k in keys) + " |")
    guppies = sorted({r["guppy3"] for r in raw if "seconds" in r["heapy"]})
    print("\n%d runs per build, alternating against one target per interpreter; frozen = the longest gap of a"
          " 1 ms heartbeat thread in the target; memspy RSS = median peak RSS; vs heapy = memspy's median wall"
          " / hpy().heap()'s (once per interpreter%s); vs closure = memspy's totals vs the in-process closure's."
          % (args.runs, (", " + ", ".join(guppies)) if guppies else ""))
    print("Run on %s, %s; load average %.2f before, %.2f after." % (started.strftime("%Y-%m-%d"), machine(),
                                                                   load_before[0], load_after[0]))
    print("\n    %s" % command_line(args, builds))


if __name__ == "__main__":
    main(sys.argv[1:])
