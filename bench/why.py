#!/usr/bin/env python3
"""What `memspy why` and `memspy retained` cost next to `memspy top --once`, side by side on one target
(bench/target.py: N records, each an instance with a str, a list and a dict), and next to the in-process
ways of asking why one object is alive (objgraph's find_backref_chain, guppy3's iso(obj).sp).

Usage: python3 bench/why.py [--records N] [--runs K] [--memspy PATH] [PYTHON...]

For each interpreter one target is started; then K rounds of `top PID --once --json`, `why PID --type
Record --json` and `retained PID --json`, alternating. For each command: the median (min-max) of the
wall time, of how long the target was frozen (the longest gap of its 1 ms heartbeat thread during the
run), of memspy's peak RSS; the ratios of why's and retained's medians to top's; and from the JSON, the
object graph's bytes per object. Goals: wall <= 2.5x top's, frozen <= 1.3x top's, peak RSS <= 0.75x the
target's RSS. Then, once per target, the in-process tools in the target itself.

Ends with one Markdown table and the command line that reproduces it.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import REPO_BUILD, ROOT, Target, frozen_ms, rss_of, spread, venv_with_guppy  # noqa: E402

COMMANDS = {
    "top": ["top", "{pid}", "--once", "--json"],
    "why": ["why", "{pid}", "--type", "Record", "--json"],
    "retained": ["retained", "{pid}", "--json"],
}
SETTLE_S = 0.2


def with_objgraph(vpy):
    """Installs objgraph next to guppy3 in the bench venv; its version, or why not."""
    check = [vpy, "-c", "import importlib.metadata as m; print(m.version('objgraph'))"]
    got = subprocess.run(check, capture_output=True, text=True)
    if got.returncode != 0:
        for pip in ([vpy, "-m", "pip"], [sys.executable, "-m", "pip", "--python", vpy]):
            subprocess.run(pip + ["install", "-q", "objgraph"], capture_output=True, text=True)
            got = subprocess.run(check, capture_output=True, text=True)
            if got.returncode == 0:
                break
    return "objgraph " + got.stdout.strip() if got.returncode == 0 else "objgraph not installed"


def run(memspy, cmd, pid):
    args = [memspy] + [a.format(pid=pid) for a in COMMANDS[cmd]]
    start = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    end = time.monotonic()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("%s failed" % " ".join(args))
    return json.loads(out), end - start, usage.ru_maxrss * 1024, (start, end)


def bench(python, args):
    vpy, guppy = venv_with_guppy(python)
    objgraph = with_objgraph(vpy) if vpy else "no venv"
    t = Target(vpy or python, args.records, False)
    runs = {c: [] for c in COMMANDS}
    try:
        pid = t.hello["pid"]
        for _ in range(args.runs):
            for c in COMMANDS:
                time.sleep(SETTLE_S)
                report, wall, peak, window = run(args.memspy, c, pid)
                runs[c].append({"wall": wall, "peak_rss": peak, "window": window, "report": report,
                                "target_rss": rss_of(pid)})
        gaps = t.ask("gaps")["gaps"]
        for rs in runs.values():
            for r in rs:
                r["frozen_ms"] = frozen_ms(gaps, r["window"])
        inproc = {"objgraph": t.ask("objgraph") if vpy else {"error": objgraph},
                  "heapy_sp": t.ask("heapy_sp") if vpy else {"error": guppy}}
    finally:
        t.close()
    target_rss = statistics.median(r["target_rss"] for rs in runs.values() for r in rs)
    py = runs["top"][0]["report"]["python"]
    print("\n== %s (Python %s), %d records, target RSS %.0f MiB; %d runs each, alternating"
          % (python, py["version"], args.records, target_rss / 2**20, args.runs))
    stats = {}
    for c, rs in runs.items():
        s = {k: spread([r[k] for r in rs]) for k in ("wall", "frozen_ms", "peak_rss")}
        s["rss_ratio"] = s["peak_rss"][0] / target_rss
        a = rs[0]["report"].get("analysis")
        if a:
            s["graph_bytes_per_object"] = a["graph_bytes"] / max(1, a["objects"])
            s["objects"] = a["objects"]
            s["edges"] = a["edges"]
            s["steps_ms"] = {k: statistics.median(r["report"]["analysis"][k] for r in rs)
                             for k in ("pause_ms", "walk_ms", "graph_ms", "paths_ms", "dominators_ms")}
        stats[c] = s
        print("  %-9s wall %.3f s (%.3f-%.3f)  frozen %.0f ms (%.0f-%.0f)  peak RSS %.0f MiB (%.2fx target)%s"
              % (c, *s["wall"], *s["frozen_ms"], s["peak_rss"][0] / 2**20, s["rss_ratio"],
                 ("  graph %.1f B/object (%d objects, %d edges)" % (s["graph_bytes_per_object"], s["objects"],
                                                                    s["edges"])) if a else ""))
        if a:
            print("            steps (ms, median): %s" % ", ".join("%s %.0f" % kv for kv in s["steps_ms"].items()))
    top = stats["top"]
    for c in ("why", "retained"):
        s = stats[c]
        s["wall_x"] = s["wall"][0] / top["wall"][0]
        s["frozen_x"] = s["frozen_ms"][0] / max(top["frozen_ms"][0], 1e-9)
        print("  %-9s / top: wall %.2fx (goal <= 2.5x), frozen %.2fx (goal <= 1.3x), peak RSS %.2fx target "
              "(goal <= 0.75x)" % (c, s["wall_x"], s["frozen_x"], s["rss_ratio"]))
    for k, v in inproc.items():
        print("  in-process %-9s %s" % (k, ("%.2f s for one record's path, in the target (%.2fx memspy why's wall "
                                             "for all records' paths)" % (v["seconds"], v["seconds"]
                                                                          / stats["why"]["wall"][0]))
                                         if "seconds" in v else v.get("error")))
    return {"python": python, "version": py["version"], "records": args.records, "target_rss": target_rss,
            "stats": stats, "in_process": inproc, "tools": [guppy, objgraph]}


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
    results = [bench(p, args) for p in args.pythons]
    print("\n| Python | records | objects | target RSS | command | wall s | frozen ms | memspy RSS | wall / top "
          "| frozen / top | graph B/object |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for c in COMMANDS:
            s = r["stats"][c]
            print("| %s | %d | %s | %.0f MiB | %s | %.3f | %.0f | %.2fx | %s | %s | %s |"
                  % (r["version"], r["records"], s.get("objects", ""), r["target_rss"] / 2**20, c, s["wall"][0],
                     s["frozen_ms"][0], s["rss_ratio"], "%.2fx" % s["wall_x"] if "wall_x" in s else "",
                     "%.2fx" % s["frozen_x"] if "frozen_x" in s else "",
                     "%.1f" % s["graph_bytes_per_object"] if "graph_bytes_per_object" in s else ""))
        for k, v in r["in_process"].items():
            print("| %s | %d | | | in-process %s | %s | | | %s | | |"
                  % (r["version"], r["records"], k, "%.2f" % v["seconds"] if "seconds" in v else v.get("error"),
                     "%.2fx why" % (v["seconds"] / r["stats"]["why"]["wall"][0]) if "seconds" in v else ""))
    cmd = ["python3", "bench/why.py", "--records", str(args.records), "--runs", str(args.runs)] + args.pythons
    print("\nReproduce: %s" % " ".join(shlex.quote(c) for c in cmd))
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "why-%s.json" % time.strftime("%Y%m%d-%H%M%S")), "w") as f:
        json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
