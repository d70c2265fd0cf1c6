#!/usr/bin/env python3
"""memspy full-heap benchmark: a target with N records (an instance with an id, a name str, a list
[float, str] and a dict {"k": i} each), measured side by side with in-process tools.

Usage: python3 bench/run.py [--records N] [--no-heapy] [--max-memory MIB] PYTHON...
       (default: python3, N = 1000000; --max-memory is passed to memspy: with a budget that holds the
       target's writable memory, memspy copies it while the target is stopped and walks the copy)

For each interpreter it prints: memspy's wall time, its peak RSS, how long the target was frozen
(the longest gap of a 1 ms heartbeat thread inside the target), memspy's totals, and the same totals
from gc.get_objects()+Counter, the in-process closure (gc.get_referents + dict keys) and guppy3's
hpy().heap() (installed with pip into bench/.venv-<version> when possible), against the goals:
totals within 3% of the closure's, memspy wall <= 1/10 of heapy's, frozen <= 500 ms, memspy peak RSS
<= 0.5 x the target's RSS.
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def venv_with_guppy(python):
    """A venv of `python` with guppy3, or None."""
    ver = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True).stdout.strip()
    venv = os.path.join(HERE, ".venv-" + ver)
    vpy = os.path.join(venv, "bin", "python")
    if not os.path.exists(vpy):
        if subprocess.run([python, "-m", "venv", venv], capture_output=True).returncode != 0:
            return None
    ok = subprocess.run([vpy, "-c", "import guppy"], capture_output=True).returncode == 0
    if not ok:
        subprocess.run([vpy, "-m", "pip", "install", "-q", "guppy3"], capture_output=True)
        ok = subprocess.run([vpy, "-c", "import guppy"], capture_output=True).returncode == 0
    return vpy if ok else None


class Target:
    def __init__(self, python, n):
        self.p = subprocess.Popen([python, os.path.join(HERE, "target.py"), str(n)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.hello = json.loads(self.p.stdout.readline())

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        try:
            self.ask("quit")
        except Exception:
            pass
        self.p.kill()
        self.p.wait()


def run_memspy(pid, extra):
    exe = os.path.join(ROOT, "target", "release", "memspy")
    t = time.perf_counter()
    p = subprocess.Popen([exe, "top", str(pid), "--once", "--json"] + extra, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit("memspy failed")
    return json.loads(out), wall, usage.ru_maxrss * 1024


def mib(b):
    return "%.1f MiB" % (b / 2**20)


def bench(python, n, heapy, extra):
    vpy = venv_with_guppy(python) if heapy else None
    t = Target(vpy or python, n)
    try:
        pid = t.hello["pid"]
        t.ask("reset")
        report, wall, peak = run_memspy(pid, extra)
        gap = t.ask("gap")
        gco = t.ask("gcobjects")
        clo = t.ask("closure")
        hpy = t.ask("heapy") if vpy else {"error": "guppy3 not available"}
    finally:
        t.close()
    tot = report["totals"]
    rows = [
        ("memspy (outside)", wall, tot["objects"], tot["bytes"]),
        ("gc.get_objects+Counter", gco["seconds"], gco["objects"], None),
        ("closure (in-process)", clo["seconds"], clo["objects"], clo["bytes"]),
    ]
    if "seconds" in hpy:
        rows.append(("guppy3 hpy().heap()", hpy["seconds"], hpy["objects"], hpy["bytes"]))
    print("\n%s (Python %s), %d records, target RSS %s%s" % (python, report["python"]["version"], n, mib(gap["rss"]),
                                                          ("  [memspy %s]" % " ".join(extra)) if extra else ""))
    print("  %-24s %10s %12s %14s" % ("tool", "seconds", "objects", "bytes"))
    for name, s, o, b in rows:
        print("  %-24s %10.2f %12d %14s" % (name, s, o, "-" if b is None else mib(b)))
    if "error" in hpy:
        print("  guppy3: %s" % hpy["error"])
    dev_o = abs(tot["objects"] - clo["objects"]) / clo["objects"] * 100
    dev_b = abs(tot["bytes"] - clo["bytes"]) / clo["bytes"] * 100
    goals = [
        ("objects within 3%% of the closure (%.2f%%)" % dev_o, dev_o <= 3),
        ("bytes within 3%% of the closure (%.2f%%)" % dev_b, dev_b <= 3),
        ("target frozen <= 500 ms (heartbeat gap %.0f ms; memspy's pause %.0f ms)" % (gap["gap_ms"], report["pause_ms"]),
         gap["gap_ms"] <= 500),
        ("memspy peak RSS <= 0.5 x target RSS (%s vs %s)" % (mib(peak), mib(gap["rss"])), peak <= 0.5 * gap["rss"]),
    ]
    if "seconds" in hpy:
        goals.append(("memspy wall <= 1/10 of heapy's (%.2f s vs %.2f s)" % (wall, hpy["seconds"]),
                      wall <= hpy["seconds"] / 10))
    for text, ok in goals:
        print("  [%s] %s" % ("ok" if ok else "MISS", text))


def main(argv):
    n = 1000000
    heapy = True
    extra = []
    pythons = []
    it = iter(argv)
    for a in it:
        if a == "--records":
            n = int(next(it))
        elif a == "--no-heapy":
            heapy = False
        elif a == "--max-memory":
            extra = ["--max-memory", next(it)]
        else:
            pythons.append(a)
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    for py in pythons or ["python3"]:
        bench(py, n, heapy, extra)


if __name__ == "__main__":
    main(sys.argv[1:])
