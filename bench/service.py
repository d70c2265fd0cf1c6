#!/usr/bin/env python3
"""memspy next to guppy3 on a service-like heap (pandas, numpy, pydantic, SQLAlchemy, a str cache).

Usage: python3 bench/service.py [--memspy PATH] [--runs K] [--scale S] [--no-closure] [--no-build]
                                [--out FILE] [NAME...]
NAME: pyenv-3.12.1 (~/.pyenv/versions/3.12.1/bin/python3) and/or debian-3.13 (/usr/bin/python3.13);
default both.

For each interpreter: a venv with the pinned packages (PINS below) in
${MEMSPY_CACHE:-$HOME/.cache/memspy}/bench-venvs/NAME (made once; a later run checks its marker file and
that the packages import), then bench/service_heap.py SCALE in it (the target, idle once built), then
`memspy top PID --once --json` K times (median wall time; memspy's own pause_ms), then (unless
--no-closure) an in-process closure (gc.get_objects() + gc.get_referents(), plus what get_referents leaves
out: dict keys, what code objects hold, ndarray bases and object-array elements; sys.getsizeof) as a third
opinion per type, then guppy3's hpy().heap() inside the target (size, count, and heap().bytype).

Printed: one Markdown table (a row per interpreter: the heap as guppy3 counts it and the target's RSS,
memspy's objects / bytes / wall / pause, guppy3's objects / bytes / wall, and memspy/guppy3 ratios);
per interpreter, memspy's top 10 types by bytes next to guppy3's top 10 by size (each tool's own names),
memspy's `scan` block, and the types whose counts or bytes differ most between the two tools (names
matched by taking "builtins." off memspy's). Raw measurements go to bench/out/service-DATE-TIME.json.

The venvs are made without ensurepip (Debian's interpreters have none): `python -m venv --without-pip`,
then pip runs from its wheel (the one scripts/venvs.sh caches in ${MEMSPY_CACHE}/wheels, downloaded
there by any pip on the machine when missing), installs itself, then the pins as wheels only (guppy3
from its sdist, which needs gcc and the interpreter's headers, only when no wheel fits).
"""

import argparse
import datetime
import glob
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

from driver import Driven

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_MEMSPY = os.path.join(ROOT, "target", "release", "memspy")
CACHE = os.environ.get("MEMSPY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "memspy")
VENVS = os.path.join(CACHE, "bench-venvs")
WHEELS = os.path.join(CACHE, "wheels")
PYENV = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")

INTERPRETERS = {
    "pyenv-3.12.1": os.path.join(PYENV, "versions", "3.12.1", "bin", "python3"),
    "debian-3.13": "/usr/bin/python3.13",
}
PIP = "26.3"
# The newest releases with wheels for CPython 3.12 and 3.13 on manylinux x86_64, and their dependencies
# (resolved with `pip install --dry-run --report` for both), so that a venv is the same on every machine.
PINS = ["numpy==2.5.5", "pandas==3.1.1", "python-dateutil==4.0.0", "tzdata==2026.6",
        "pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.8.0", "typing-extensions==4.16.0",
        "typing-inspection==0.4.5", "sqlalchemy==2.1.9", "guppy3==3.1.7"]
CHECK = ("import importlib.util, numpy, pandas, pydantic, sqlalchemy, guppy; "
         "assert importlib.util.find_spec('pyarrow') is None, 'pyarrow is installed'")
MARKER = "memspy-bench-venv.txt"
TOP = 10


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def last_error(res):
    lines = [line for line in (res.stderr + res.stdout).splitlines() if line.strip()]
    errs = [line for line in lines if "ERROR" in line or "error:" in line]
    return ((errs or lines or ["?"])[-1]).strip()[:300]


def find_pip():
    """A pip command that runs on this machine (only to download pip's own wheel)."""
    if os.environ.get("MEMSPY_PIP"):
        return shlex.split(os.environ["MEMSPY_PIP"])
    cands = [[c, "-m", "pip"] for c in sorted(glob.glob(os.path.join(PYENV, "versions", "3.1[0-9]*", "bin",
                                                                       "python3")))]
    cands.append([sys.executable, "-m", "pip"])
    for c in cands:
        if run(c + ["--version"]).returncode == 0:
            return c
    return None


def pip_wheel():
    wheel = os.path.join(WHEELS, "pip-%s-py3-none-any.whl" % PIP)
    if os.path.exists(wheel):
        return wheel
    pip = find_pip()
    if pip is None:
        raise RuntimeError("no pip on this machine to fetch pip %s with" % PIP)
    os.makedirs(WHEELS, exist_ok=True)
    res = run(pip + ["download", "-q", "--disable-pip-version-check", "--no-deps", "--only-binary=:all:",
                     "-d", WHEELS, "pip==%s" % PIP])
    if not os.path.exists(wheel):
        raise RuntimeError("could not fetch pip %s: %s" % (PIP, last_error(res)))
    return wheel


def marker_text(python):
    return "interpreter=%s\npip=%s\npackages=%s\n" % (os.path.realpath(python), PIP, " ".join(PINS))


def venv(name, python):
    """The python of NAME's venv, made when missing or stale."""
    d = os.path.join(VENVS, name)
    vpy = os.path.join(d, "bin", "python")
    marker = os.path.join(d, MARKER)
    try:
        with open(marker) as f:
            fresh = f.read() == marker_text(python)
    except OSError:
        fresh = False
    if fresh and run([vpy, "-I", "-c", CHECK]).returncode == 0:
        return vpy
    t = time.monotonic()
    log("%s: making the venv %s" % (name, d))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(VENVS, exist_ok=True)
    res = run([python, "-m", "venv", "--without-pip", d])
    if res.returncode != 0:
        raise RuntimeError("python -m venv failed: %s" % last_error(res))
    wheel = pip_wheel()
    res = run([vpy, os.path.join(wheel, "pip"), "install", "-q", "--disable-pip-version-check", "--no-index",
               wheel])
    if res.returncode != 0:
        raise RuntimeError("pip %s does not install: %s" % (PIP, last_error(res)))
    pip = [vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--progress-bar", "off"]
    res = run(pip + ["--only-binary=:all:"] + PINS, env=dict(os.environ, PIP_NO_INPUT="1"))
    if res.returncode != 0:
        # guppy3 is C code: build it from its sdist when no wheel fits this interpreter.
        log("%s: no wheels for everything (%s); trying guppy3 from source" % (name, last_error(res)))
        res = run(pip + ["--only-binary=:all:", "--no-binary=guppy3"] + PINS,
                  env=dict(os.environ, PIP_NO_INPUT="1"))
        if res.returncode != 0:
            if "Python.h" in res.stdout + res.stderr:
                raise RuntimeError("guppy3 does not build from source: no Python.h for %s (on Debian: apt-get "
                                   "install python3.X-dev)" % python)
            raise RuntimeError("pip install failed: %s" % last_error(res))
    res = run([vpy, "-I", "-c", CHECK])
    if res.returncode != 0:
        raise RuntimeError("the packages do not import: %s" % last_error(res))
    with open(marker + ".tmp", "w") as f:
        f.write(marker_text(python))
    os.replace(marker + ".tmp", marker)
    log("%s: venv made in %.0f s" % (name, time.monotonic() - t))
    return vpy


class Target(Driven):
    def __init__(self, python, scale):
        super().__init__([python, os.path.join(HERE, "service_heap.py"), repr(scale)])


def memspy_once(memspy, pid):
    t = time.perf_counter()
    res = run([memspy, "top", str(pid), "--once", "--json"])
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError("memspy failed (status %d): %s" % (res.returncode, res.stderr.strip()[-500:]))
    return json.loads(res.stdout), wall


def short(n):
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return "%.2f %s" % (n / div, unit)
    return "%d" % n


def mib(n):
    return "%.0f MiB" % (n / 2**20)


def measure(name, python, args):
    t0 = time.monotonic()
    vpy = venv(name, python)
    t1 = time.monotonic()
    target = Target(vpy, args.scale)
    t2 = time.monotonic()
    hello = target.hello
    log("%s: target %d built in %.1f s, RSS %s, %s" % (name, hello["pid"], hello["seconds"], mib(hello["rss"]),
                                                         json.dumps(hello["counts"])))
    try:
        runs = []
        for k in range(args.runs):
            time.sleep(0.2)
            report, wall = memspy_once(args.memspy, hello["pid"])
            runs.append({"wall": wall, "report": report})
            log("%s: memspy run %d: %.2f s, pause %.0f ms, %d objects, %d bytes"
                % (name, k + 1, wall, report["pause_ms"], report["totals"]["objects"], report["totals"]["bytes"]))
        t3 = time.monotonic()
        rss = target.ask("rss")["rss"]
        # The closure before guppy3: what hpy() leaves behind in the process (a few hundred objects, once
        # the target has collected garbage) would be in the closure, while the closure leaves nearly nothing.
        clo = None
        if args.closure:
            clo = target.ask("closure")
            log("%s: closure: %.2f s, %d objects, %d bytes" % (name, clo["seconds"], clo["objects"], clo["bytes"]))
        t4 = time.monotonic()
        heapy = target.ask("heapy")
        if "error" in heapy:
            raise RuntimeError("guppy3: %s" % heapy["error"])
        log("%s: guppy3: %.2f s, %d objects, %d bytes" % (name, heapy["seconds"], heapy["objects"], heapy["bytes"]))
        t5 = time.monotonic()
    finally:
        target.close()
    return {"name": name, "python": python, "venv_python": vpy, "hello": hello, "rss": rss, "runs": runs,
            "heapy": heapy, "closure": clo,
            "seconds": {"venv": t1 - t0, "target": t2 - t1, "memspy": t3 - t2, "closure": t4 - t3,
                        "heapy": t5 - t4, "total": time.monotonic() - t0}}


def summary(m):
    walls = [r["wall"] for r in m["runs"]]
    rep = m["runs"][len(m["runs"]) // 2]["report"]  # the reports agree (an idle target); any one will do
    return {"wall": statistics.median(walls), "pause": statistics.median(r["report"]["pause_ms"] for r in m["runs"]),
            "report": rep, "same": len({json.dumps(r["report"]["totals"], sort_keys=True) for r in m["runs"]}) == 1}


def by_name(rows):
    """{name: (count, bytes)}, rows of the same name added up (two types can share a name)."""
    out = {}
    for name, count, size in rows:
        c, b = out.get(name, (0, 0))
        out[name] = (c + count, b + size)
    return out


def type_diffs(report, heapy):
    """[(name, memspy count, memspy bytes, guppy3 count, guppy3 size)] over the union of the types, named as
    memspy names them (service_heap.py gives each of guppy3's rows that name beside guppy3's own)."""
    a = by_name((t["type"], t["count"], t["bytes"]) for t in report["types"])
    o = by_name((r[3], r[1], r[2]) for r in heapy["types"])
    return [(k,) + a.get(k, (0, 0)) + o.get(k, (0, 0)) for k in set(a) | set(o)]


def print_report(results, args):
    print("| interpreter | heap: objects (guppy3) / RSS | memspy objects | memspy bytes | memspy wall (median of %d) "
          "| memspy pause | guppy3 objects | guppy3 bytes | guppy3 wall | memspy/guppy3 objects "
          "| memspy/guppy3 bytes |" % args.runs)
    print("|" + "---|" * 11)
    for m in results:
        s = summary(m)
        tot, h = s["report"]["totals"], m["heapy"]
        py = s["report"]["python"]
        print("| %s %s | %s / %s | %s | %s | %.2f s | %.0f ms | %s | %s | %.1f s | %.3f | %.3f |"
              % (m["name"].split("-")[0], py["version"], short(h["objects"]), mib(m["rss"]),
                 "{:,}".format(tot["objects"]), mib(tot["bytes"]), s["wall"], s["pause"],
                 "{:,}".format(h["objects"]), mib(h["bytes"]), h["seconds"],
                 tot["objects"] / h["objects"], tot["bytes"] / h["bytes"]))
    print()
    for m in results:
        s = summary(m)
        rep = s["report"]
        print("### %s (Python %s, %s)\n" % (m["name"], rep["python"]["version"], rep["python"]["executable"]))
        if not s["same"]:
            print("(memspy's totals differed between runs: %s)\n"
                  % "; ".join("%d objects %d bytes" % (r["report"]["totals"]["objects"], r["report"]["totals"]["bytes"])
                              for r in m["runs"]))
        mem = sorted(rep["types"], key=lambda t: (-t["bytes"], t["type"]))[:TOP]
        gup = m["heapy"]["types"][:TOP]
        print("| # | memspy type | count | bytes | guppy3 type | count | size |")
        print("|---|---|---:|---:|---|---:|---:|")
        for i in range(TOP):
            left = ("%s%s | %s | %s" % (mem[i]["type"], "" if mem[i].get("bytes_exact", True) else " (~)",
                                        "{:,}".format(mem[i]["count"]), "{:,}".format(mem[i]["bytes"]))
                    if i < len(mem) else " | | ")
            right = ("%s | %s | %s" % (gup[i][0], "{:,}".format(gup[i][1]), "{:,}".format(gup[i][2]))
                     if i < len(gup) else " | | ")
            print("| %d | %s | %s |" % (i + 1, left, right))
        print("\n(~) memspy marks the type's bytes approximate (a __sizeof__ of its own that it does not model).")
        print("\nmemspy scan: %s; retries %s; approximate %s, partial %s"
              % (json.dumps(rep.get("scan", {})), rep.get("retries"), rep.get("approximate"), rep.get("partial")))
        rows = type_diffs(rep, m["heapy"])
        clo = by_name(m["closure"]["types"]) if m["closure"] else {}
        gname = {r[3]: r[0] for r in m["heapy"]["types"]}
        for label, key in (("bytes", lambda r: abs(r[2] - r[4])), ("count", lambda r: abs(r[1] - r[3]))):
            print("\nLargest differences by %s (memspy − guppy3; types named as memspy names them, guppy3's "
                  "name in brackets where it differs%s):\n" % (label, "; closure = the in-process closure" if clo else ""))
            print("| type | memspy count | guppy3 count | Δ count | memspy bytes | guppy3 bytes | Δ bytes |%s"
                  % (" closure count | closure bytes |" if clo else ""))
            print("|---|---:|---:|---:|---:|---:|---:|%s" % ("---:|---:|" if clo else ""))
            for r in sorted(rows, key=key, reverse=True)[:12]:
                k, mc, mb, gc_, gb = r
                extra = (" %s | %s |" % tuple("{:,}".format(x) for x in clo.get(k, (0, 0)))) if clo else ""
                shown = k if gname.get(k, k) == k else "%s [%s]" % (k, gname[k])
                print("| %s | %s | %s | %+d | %s | %s | %+d |%s" % (shown, "{:,}".format(mc), "{:,}".format(gc_), mc - gc_,
                                                                   "{:,}".format(mb), "{:,}".format(gb), mb - gb, extra))
        if m["closure"]:
            c = m["closure"]
            print("\nIn-process closure: %s objects, %s (%.1f s)" % ("{:,}".format(c["objects"]), mib(c["bytes"]),
                                                                   c["seconds"]))
        sec = m["seconds"]
        print("\nTook %.0f s: venv %.0f s, target build %.0f s, memspy runs %.0f s, guppy3 %.0f s%s.\n"
              % (sec["total"], sec["venv"], sec["target"], sec["memspy"], sec["heapy"],
                 (", closure %.0f s" % sec["closure"]) if m["closure"] else ""))
    vers = results[0]["hello"]["versions"] if results else {}
    print("Packages: %s; pip %s." % (", ".join("%s %s" % kv for kv in sorted(vers.items())), PIP))


def main(argv):
    ap = argparse.ArgumentParser(prog="bench/service.py",
                                 description=__doc__.split("\nUsage:")[0] + "\n" + __doc__.split("default both.\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", metavar="NAME", help="interpreters: %s (default: all)" % ", ".join(INTERPRETERS))
    ap.add_argument("--memspy", default=DEFAULT_MEMSPY, help="the memspy binary (default: target/release/memspy, "
                                                              "built with cargo build --release unless --no-build)")
    ap.add_argument("--runs", type=int, default=3, help="memspy runs per interpreter (default 3; the median wall)")
    ap.add_argument("--scale", type=float, default=1.0, help="passed to service_heap.py (default 1.0: ~3 M objects as guppy3 counts them, ~800 MB RSS)")
    ap.add_argument("--no-closure", dest="closure", action="store_false",
                    help="skip the in-process closure (the third opinion per type; a few seconds per interpreter)")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--out", help="raw measurements (default bench/out/service-DATE-TIME.json)")
    args = ap.parse_args(argv)
    names = args.names or list(INTERPRETERS)
    for n in names:
        if n not in INTERPRETERS:
            ap.error("unknown interpreter %r (known: %s)" % (n, ", ".join(INTERPRETERS)))
    if args.runs < 1 or args.scale <= 0:
        ap.error("--runs must be at least 1 and --scale positive")
    args.memspy = os.path.abspath(args.memspy)
    if not args.no_build and os.path.realpath(args.memspy) == os.path.realpath(DEFAULT_MEMSPY):
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    if not os.access(args.memspy, os.X_OK):
        raise SystemExit("%s is not an executable" % args.memspy)
    started = datetime.datetime.now()
    load_before = os.getloadavg()
    results, skipped = [], []
    for n in names:
        if not os.access(INTERPRETERS[n], os.X_OK):
            skipped.append("%s: %s is not installed" % (n, INTERPRETERS[n]))
            continue
        try:
            results.append(measure(n, INTERPRETERS[n], args))
        except RuntimeError as e:
            skipped.append("%s: %s" % (n, e))
    out = args.out or os.path.join(HERE, "out", "service-%s.json" % started.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"started": started.isoformat(timespec="seconds"), "argv": argv, "memspy": args.memspy,
                   "load_before": load_before, "load_after": os.getloadavg(),
                   "results": results, "skipped": skipped}, f)
    print_report(results, args)
    for s in skipped:
        print("skipped %s" % s)
    print("\nRun on %s, %d CPUs; load average %.2f before, %.2f after (walls are noisy on a loaded machine)."
          % (started.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), load_before[0], os.getloadavg()[0]))
    print("\nRaw measurements: %s\n\n    python3 bench/service.py %s" % (os.path.relpath(out, ROOT), shlex.join(argv)))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
