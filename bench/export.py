#!/usr/bin/env python3
"""What `memspy export --format heapsnapshot` and `memspy report` cost next to `memspy retained` (the
same walk, graph, paths and dominators, without writing a file), side by side on one target
(bench/target.py: N records, each an instance with a str, a list and a dict).

Usage: python3 bench/export.py [--records N] [--runs K] [--memspy PATH] [--memlab] [PYTHON...]

For each interpreter one target is started; then K rounds of `retained PID --json`, `export PID -o FILE
--json` and `report PID -o FILE`, alternating. For each command: the median (min-max) of the wall time
and of memspy's peak RSS; for the export the file's size, its bytes per object, and the time spent
writing it (the `export_ms` memspy reports: naming every edge, reading the strings, writing); the
ratios of export's and report's medians to retained's. With --memlab, memlab then loads the last
snapshot once (npm, in ~/.cache/memspy/npm: scripts/install-services.sh): its wall time and peak RSS.

Ends with one Markdown table and the command line that reproduces it.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import REPO_BUILD, ROOT, Target, rss_of, spread  # noqa: E402

SETTLE_S = 0.2
NPM = os.path.expanduser("~/.cache/memspy/npm/node_modules")


def timed(args, json_out):
    start = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("%s failed" % " ".join(args))
    return (json.loads(out) if json_out else out), wall, usage.ru_maxrss * 1024


def bench(python, args, tmp):
    t = Target(python, args.records, False)
    snap = os.path.join(tmp, "bench.heapsnapshot")
    page = os.path.join(tmp, "bench.html")
    commands = {
        "retained": (["retained", "{pid}", "--json"], True),
        "export": (["export", "{pid}", "-o", snap, "--json"], True),
        "report": (["report", "{pid}", "-o", page], False),
    }
    runs = {c: [] for c in commands}
    try:
        pid = t.hello["pid"]
        for _ in range(args.runs):
            for c, (argv, j) in commands.items():
                time.sleep(SETTLE_S)
                out, wall, peak = timed([args.memspy] + [a.format(pid=pid) for a in argv], j)
                runs[c].append({"wall": wall, "peak_rss": peak, "out": out, "target_rss": rss_of(pid)})
    finally:
        t.close()
    target_rss = sorted(r["target_rss"] for rs in runs.values() for r in rs)[0]
    ex = [r["out"] for r in runs["export"]]
    objects = ex[0]["objects"]
    stats = {c: {k: spread([r[k] for r in rs]) for k in ("wall", "peak_rss")} for c, rs in runs.items()}
    stats["export"]["bytes"] = spread([e["bytes"] for e in ex])
    stats["export"]["write_s"] = spread([e["export_ms"] / 1000 for e in ex])
    print("\n== %s, %d records (%d objects, %d nodes, %d edges), target RSS %.0f MiB; %d runs each, alternating"
          % (python, args.records, objects, ex[0]["nodes"], ex[0]["edges"], target_rss / 2**20, args.runs))
    for c, s in stats.items():
        extra = ""
        if c == "export":
            extra = "  file %.1f MiB (%.1f B/object), writing %.2f s (%.2f-%.2f)" % (
                s["bytes"][0] / 2**20, s["bytes"][0] / max(1, objects), *s["write_s"])
        print("  %-9s wall %.2f s (%.2f-%.2f)  peak RSS %.0f MiB (%.2fx target)%s"
              % (c, *s["wall"], s["peak_rss"][0] / 2**20, s["peak_rss"][0] / target_rss, extra))
    for c in ("export", "report"):
        stats[c]["wall_x"] = stats[c]["wall"][0] / stats["retained"]["wall"][0]
        print("  %-9s / retained: wall %.2fx" % (c, stats[c]["wall_x"]))
    memlab = None
    if args.memlab:
        js = ("require('@memlab/heap-analysis').getFullHeapFromFile(process.argv[1])"
              ".then(h => console.log(JSON.stringify({nodes: h.nodes.length})))")
        env = dict(os.environ, NODE_PATH=NPM)
        start = time.monotonic()
        p = subprocess.Popen(["node", "--max-old-space-size=16384", "-e", js, snap], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - start
        ok = os.waitstatus_to_exitcode(status) == 0
        memlab = {"wall": wall, "peak_rss": usage.ru_maxrss * 1024, "ok": ok,
                  "nodes": json.loads(out)["nodes"] if ok else None}
        print("  memlab    load + paths + dominators %.1f s, peak RSS %.0f MiB, %s"
              % (wall, memlab["peak_rss"] / 2**20, "%d nodes" % memlab["nodes"] if ok else "FAILED"))
    return {"python": python, "records": args.records, "objects": objects, "target_rss": target_rss,
            "stats": stats, "memlab": memlab}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pythons", nargs="*", default=["python3"], metavar="PYTHON")
    ap.add_argument("--records", type=int, default=1000000, metavar="N")
    ap.add_argument("--runs", type=int, default=3, metavar="K")
    ap.add_argument("--memspy", default=REPO_BUILD, metavar="PATH", help="default: target/release/memspy")
    ap.add_argument("--memlab", action="store_true", help="also load the snapshot in memlab once")
    args = ap.parse_args(argv)
    args.memspy = os.path.abspath(args.memspy)
    if args.memspy == REPO_BUILD:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="memspy-bench-export-") as tmp:
        results = [bench(p, args, tmp) for p in args.pythons]
    print("\n| Python | records | objects | target RSS | command | wall s | memspy RSS | wall / retained "
          "| file | B/object |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for c, s in r["stats"].items():
            f = s.get("bytes")
            print("| %s | %d | %d | %.0f MiB | %s | %.2f | %.2fx | %s | %s | %s |"
                  % (r["python"], r["records"], r["objects"], r["target_rss"] / 2**20, c, s["wall"][0],
                     s["peak_rss"][0] / r["target_rss"], "%.2fx" % s["wall_x"] if "wall_x" in s else "",
                     "%.0f MiB" % (f[0] / 2**20) if f else "", "%.1f" % (f[0] / r["objects"]) if f else ""))
        m = r["memlab"]
        if m:
            print("| %s | %d | %d | | memlab load | %.1f | %.0f MiB | | | |"
                  % (r["python"], r["records"], r["objects"], m["wall"], m["peak_rss"] / 2**20))
    cmd = ["python3", "bench/export.py", "--records", str(args.records), "--runs", str(args.runs)]
    cmd += (["--memlab"] if args.memlab else []) + args.pythons
    print("\nReproduce: %s" % " ".join(shlex.quote(c) for c in cmd))
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "export-%s.json" % time.strftime("%Y%m%d-%H%M%S")), "w") as f:
        json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
