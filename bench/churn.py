#!/usr/bin/env python3
"""How approximate `memspy top --nonblocking` is on a target that churns, next to the paused walk.

Usage: python3 bench/churn.py [--objects N] [--churn T] [--runs K] [--memspy PATH] [PYTHON...]

For each interpreter, fixtures/safety_target.py is started with N long-lived objects and T threads that
allocate and free containers without pause. Then K rounds of `top PID --once --json --nonblocking`
followed at once by `top PID --once --json` (paused): the per-type error of the nonblocking report
against the paused one (sum over types of |count difference| / the paused count; the same for bytes),
the share of its sample the nonblocking walk found changed afterwards (`scan.changed_under_walk`), and
the walls and the paused walk's pause. The paused walk comes a few milliseconds later, not at the same
instant: on a churning heap part of the error is the churn between the two.

Ends with one Markdown table and the command line that reproduces it.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import REPO_BUILD, ROOT, spread  # noqa: E402

FIXTURE = os.path.join(ROOT, "fixtures", "safety_target.py")


def start(python, objects, churn, tmp):
    ready = os.path.join(tmp, "ready-%s" % os.path.basename(python))
    p = subprocess.Popen([python, FIXTURE, ready, "--objects", str(objects), "--churn", str(churn)])
    deadline = time.monotonic() + 120
    while not os.path.exists(ready):
        if time.monotonic() > deadline or p.poll() is not None:
            p.kill()
            sys.exit("bench/churn.py: %s did not start the target" % python)
        time.sleep(0.05)
    time.sleep(1.0)  # let the churning threads run
    return p


def top(memspy, pid, extra):
    t = time.monotonic()
    out = subprocess.run([memspy, "top", str(pid), "--once", "--json"] + extra, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("bench/churn.py: memspy failed: %s" % out.stderr.strip())
    return json.loads(out.stdout), time.monotonic() - t


def error(nb, paused, field):
    a = {t["type"]: t[field] for t in nb["types"]}
    b = {t["type"]: t[field] for t in paused["types"]}
    diff = sum(abs(a.get(k, 0) - b.get(k, 0)) for k in set(a) | set(b))
    return 100.0 * diff / max(1, sum(b.values()))


def main(argv):
    ap = argparse.ArgumentParser(prog="bench/churn.py")
    ap.add_argument("pythons", nargs="*", default=["python3"])
    ap.add_argument("--objects", type=int, default=200000)
    ap.add_argument("--churn", type=int, default=4, help="churning threads (default 4)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--memspy", default=REPO_BUILD)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="memspy-churn-") as tmp:
        for python in args.pythons:
            p = start(python, args.objects, args.churn, tmp)
            try:
                runs = []
                for _ in range(args.runs):
                    nb, nb_wall = top(args.memspy, p.pid, ["--nonblocking"])
                    paused, p_wall = top(args.memspy, p.pid, [])
                    c = nb["scan"].get("changed_under_walk") or {"checked": 0, "changed": 0}
                    runs.append({
                        "count_err": error(nb, paused, "count"),
                        "bytes_err": error(nb, paused, "bytes"),
                        "changed": 100.0 * c["changed"] / max(1, c["checked"]),
                        "checked": c["checked"],
                        "nb_wall": nb_wall,
                        "p_wall": p_wall,
                        "pause": paused["pause_ms"],
                        "objects": paused["totals"]["objects"],
                    })
                version = nb["python"]["version"]
            finally:
                p.kill()
                p.wait()
            rows.append((version, runs))
    print("| Python | objects | churning threads | count error | bytes error | sampled objects changed "
          "| nonblocking wall | paused wall / pause |")
    print("|---|---|---|---|---|---|---|---|")
    fmt = lambda vals, unit: "%.2f%s (%.2f–%.2f)" % (spread(vals)[0], unit, spread(vals)[1], spread(vals)[2])
    for version, runs in rows:
        col = lambda k: [r[k] for r in runs]
        print("| %s | %d | %d | %s | %s | %s of ~%d | %.3f s | %.3f s / %.0f ms |" % (
            version, statistics.median(col("objects")), args.churn, fmt(col("count_err"), "%"),
            fmt(col("bytes_err"), "%"), fmt(col("changed"), "%"), statistics.median(col("checked")),
            statistics.median(col("nb_wall")), statistics.median(col("p_wall")), statistics.median(col("pause"))))
    print()
    print("medians (min–max) of %d rounds; reproduce: python3 bench/churn.py %s" % (
        args.runs, " ".join(shlex.quote(a) for a in argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
