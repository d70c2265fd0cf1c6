#!/usr/bin/env python3
"""What `memspy dump` costs and what reading its file costs, side by side on one target (bench/target.py:
N records, each an instance with a str, a list and a dict), next to `memspy top --once`, gdb's `gcore`
(a raw core file of the same process) and guppy3's hpy().heap() inside the target.

Usage: python3 bench/dump.py [--records N] [--runs K] [--memspy PATH] [PYTHON...]

For each interpreter one target is started; then K rounds, alternating, of `top PID --once --json`,
`dump PID -o FILE`, and on the file just written `top FILE --once --json`, `why FILE --type Record
--json` and `retained FILE --json`. For each: the median (min-max) of the wall time, of how long the
target was frozen (the longest gap of its 1 ms heartbeat thread during the run), of memspy's peak RSS.
For the dump: the file's bytes per object, the freeze per GB of the target's writable memory, and the
dump's wall over top's. Goals (issue #11): freeze <= 0.35 s per GB, file <= 40 B/object, dump wall <=
2.5x top's, top/why on the file <= 1 s. Then once per target: `gcore` (its freeze, wall and file size)
and guppy3's heap() in the target; jmap's documented pause, 1-2 s per GB, for scale.

Ends with one Markdown table and the command line that reproduces it.
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import REPO_BUILD, ROOT, Target, frozen_ms, rss_of, spread, venv_with_guppy  # noqa: E402

SETTLE_S = 0.3
LIVE = ["top", "dump"]
FILE = ["top-file", "why-file", "retained-file"]


def args_for(cmd, pid, path):
    return {
        "top": ["top", str(pid), "--once", "--json"],
        "dump": ["dump", str(pid), "-o", path],
        "top-file": ["top", path, "--once", "--json"],
        "why-file": ["why", path, "--type", "Record", "--json"],
        "retained-file": ["retained", path, "--json"],
    }[cmd]


def run(memspy, cmd, pid, path):
    argv = ["/usr/bin/time", "-f", "%M", memspy] + args_for(cmd, pid, path)
    start = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True)
    end = time.monotonic()
    if p.returncode != 0:
        raise SystemExit("%s failed: %s" % (" ".join(argv), p.stderr.strip()[-500:]))
    peak = int(p.stderr.strip().splitlines()[-1]) * 1024
    report = json.loads(p.stdout) if p.stdout.strip().startswith("{") else None
    return report, end - start, peak, (start, end)


def writable_bytes(pid):
    total = 0
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if parts[1][1] == "w":
                total += hi - lo
    return total


def with_gcore(pid, workdir):
    if not shutil.which("gcore"):
        return {"error": "gcore not installed (Debian's gdb)"}
    prefix = os.path.join(workdir, "core")
    start = time.monotonic()
    p = subprocess.run(["gcore", "-o", prefix, str(pid)], capture_output=True, text=True)
    end = time.monotonic()
    path = "%s.%d" % (prefix, pid)
    if p.returncode != 0 or not os.path.exists(path):
        return {"error": "gcore failed: %s" % p.stderr.strip()[-200:]}
    size = os.path.getsize(path)
    os.unlink(path)
    return {"wall": end - start, "bytes": size, "window": (start, end)}


def bench(python, args, workdir):
    vpy, guppy = venv_with_guppy(python)
    t = Target(vpy or python, args.records, False)
    runs = {c: [] for c in LIVE + FILE}
    sizes = []
    try:
        pid = t.hello["pid"]
        writable = writable_bytes(pid)
        path = os.path.join(workdir, "bench.memspy")
        for _ in range(args.runs):
            for c in LIVE + FILE:
                time.sleep(SETTLE_S)
                report, wall, peak, window = run(args.memspy, c, pid, path)
                runs[c].append({"wall": wall, "peak_rss": peak, "window": window, "report": report,
                                "target_rss": rss_of(pid)})
                if c == "dump":
                    sizes.append(os.path.getsize(path))
        time.sleep(SETTLE_S)
        gcore = with_gcore(pid, workdir)
        gaps = t.ask("gaps")["gaps"]
        for rs in runs.values():
            for r in rs:
                r["frozen_ms"] = frozen_ms(gaps, r["window"])
        if "window" in gcore:
            gcore["frozen_ms"] = frozen_ms(gaps, gcore["window"])
        heapy = t.ask("heapy") if vpy else {"error": guppy}
    finally:
        t.close()
    target_rss = statistics.median(r["target_rss"] for rs in runs.values() for r in rs)
    top = runs["top"][0]["report"]
    objects = top["totals"]["objects"]
    print("\n== %s (Python %s), %d records, %d objects, target RSS %.0f MiB, writable %.0f MiB; %d runs each, "
          "alternating" % (python, top["python"]["version"], args.records, objects, target_rss / 2**20,
                           writable / 2**20, args.runs))
    stats = {}
    for c, rs in runs.items():
        s = {k: spread([r[k] for r in rs]) for k in ("wall", "frozen_ms", "peak_rss")}
        s["rss_ratio"] = s["peak_rss"][0] / target_rss
        stats[c] = s
        print("  %-13s wall %.3f s (%.3f-%.3f)  frozen %.0f ms (%.0f-%.0f)  peak RSS %.0f MiB (%.2fx target)"
              % (c, *s["wall"], *s["frozen_ms"], s["peak_rss"][0] / 2**20, s["rss_ratio"]))
    d = stats["dump"]
    d["file_bytes"] = statistics.median(sizes)
    d["bytes_per_object"] = d["file_bytes"] / objects
    d["freeze_s_per_gb"] = d["frozen_ms"][0] / 1000 / (writable / 2**30)
    d["wall_x_top"] = d["wall"][0] / stats["top"]["wall"][0]
    print("  dump: file %.1f MiB, %.1f B/object (goal <= 40); freeze %.2f s per GB writable (goal <= 0.35; jmap "
          "documents 1-2); wall %.2fx top's (goal <= 2.5x); top/why/retained on the file %.2f/%.2f/%.2f s (goal "
          "<= 1 s)" % (d["file_bytes"] / 2**20, d["bytes_per_object"], d["freeze_s_per_gb"], d["wall_x_top"],
                       stats["top-file"]["wall"][0], stats["why-file"]["wall"][0],
                       stats["retained-file"]["wall"][0]))
    if "wall" in gcore:
        print("  gcore: wall %.2f s, frozen %.0f ms (%.1fx the dump's), core file %.0f MiB (%.0fx the dump's)"
              % (gcore["wall"], gcore["frozen_ms"], gcore["frozen_ms"] / max(d["frozen_ms"][0], 1e-9),
                 gcore["bytes"] / 2**20, gcore["bytes"] / d["file_bytes"]))
    else:
        print("  gcore: %s" % gcore["error"])
    if "seconds" in heapy:
        print("  guppy3 hpy().heap() in the target: %.2f s (%.1fx the dump's freeze; it runs on the target's own "
              "thread, holding the GIL)" % (heapy["seconds"], heapy["seconds"] * 1000 / max(d["frozen_ms"][0], 1)))
    else:
        print("  guppy3: %s" % heapy.get("error"))
    return {"python": python, "version": top["python"]["version"], "records": args.records, "objects": objects,
            "target_rss": target_rss, "writable": writable, "stats": stats, "gcore": gcore, "heapy": heapy}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pythons", nargs="*", default=["python3"], metavar="PYTHON")
    ap.add_argument("--records", type=int, default=1000000, metavar="N")
    ap.add_argument("--runs", type=int, default=5, metavar="K")
    ap.add_argument("--memspy", default=REPO_BUILD, metavar="PATH", help="default: target/release/memspy")
    args = ap.parse_args(argv)
    args.memspy = os.path.abspath(args.memspy)
    if args.memspy == REPO_BUILD:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="memspy-bench-dump-") as workdir:
        results = [bench(p, args, workdir) for p in args.pythons]
    print("\n| Python | objects | target RSS | command | wall s | frozen ms | memspy RSS | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        for c, s in r["stats"].items():
            note = ""
            if c == "dump":
                note = "%.1f B/object, %.2f s/GB frozen, %.2fx top's wall" % (
                    s["bytes_per_object"], s["freeze_s_per_gb"], s["wall_x_top"])
            print("| %s | %d | %.0f MiB | %s | %.3f | %.0f | %.2fx | %s |"
                  % (r["version"], r["objects"], r["target_rss"] / 2**20, c, s["wall"][0], s["frozen_ms"][0],
                     s["rss_ratio"], note))
        g = r["gcore"]
        if "wall" in g:
            print("| %s | %d | %.0f MiB | gcore | %.3f | %.0f | | core %.0f MiB |"
                  % (r["version"], r["objects"], r["target_rss"] / 2**20, g["wall"], g["frozen_ms"],
                     g["bytes"] / 2**20))
        h = r["heapy"]
        if "seconds" in h:
            print("| %s | %d | %.0f MiB | guppy3 heap() in-process | %.3f | (the target busy) | | |"
                  % (r["version"], r["objects"], r["target_rss"] / 2**20, h["seconds"]))
    cmd = ["python3", "bench/dump.py", "--records", str(args.records), "--runs", str(args.runs)] + args.pythons
    print("\nReproduce: %s" % " ".join(shlex.quote(c) for c in cmd))
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "dump-%s.json" % time.strftime("%Y%m%d-%H%M%S")), "w") as f:
        json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
