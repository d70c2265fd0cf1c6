#!/usr/bin/env python3
"""What memspy reports on heaps held in native buffers, against the truth fixtures/native_heap.py records.

Usage: scripts/native_compare.py [--memspy PATH] [--venvs DIR] [--k1 N] [--k2 N] [--json OUT] [--check]
                                 [NAME ...]

For each venv made by scripts/venvs.sh (all of them, or the NAMEs given, e.g. debian-3.14), runs the
fixture at two sizes K1 < K2 and, for each, `memspy top PID --once --json` (full heap) and the same with
`--gc-only`, then prints per interpreter:

  differential   memspy's count growth from K1 to K2 of each type the fixture holds only in native buffers
                 (builtins.str: numpy object array + deque + DataFrame column; float: a 2-D object array;
                 bytes: the owner behind a strided view) against (K2 - K1) x units
  probes         decimal.Context, defaultdict, attrgetter, _thread.lock and the DataFrame type: memspy's
                 count at each size against the in-process closure's (--gc-only: against gc.get_objects())
  ndarray        numpy.ndarray count and bytes against the closure's count and sum of sys.getsizeof
  numpy scalars, dtypes   bytes against the closure's, per type
  '?' names      the types memspy names with a leading '?.', with their counts
  closure        how many types memspy counts fewer (missed) or more (extra) of than the closure

--check: exit 1 unless every differential, probe, ndarray/scalar/dtype figure matches and no name starts
with '?'. --json OUT: also write every figure as JSON.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "fixtures", "native_heap.py")
PROBES = ["decimal.Context", "collections.defaultdict", "operator.attrgetter", "_thread.lock"]


def venvs(root, names):
    out = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        marker = os.path.join(root, name, "memspy-venv.txt")
        if not os.path.isfile(marker) or (names and name not in names):
            continue
        with open(marker) as f:
            info = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        out.append(info)
    return out


def wait_paused(pid, proc, timeout):
    """Until the fixture sits in pause(2) (x86_64 syscall 34)."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("fixture exited with %s" % proc.returncode)
        try:
            with open("/proc/%d/syscall" % pid) as f:
                if f.read().split()[:1] == ["34"]:
                    return
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("fixture did not reach pause()")


def memspy_json(memspy, pid, extra):
    r = subprocess.run([memspy, "top", str(pid), "--once", "--json"] + extra, capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        raise RuntimeError("memspy %s failed: %s" % (" ".join(extra), r.stderr.strip()[-2000:]))
    report = json.loads(r.stdout)
    rows = {}
    for t in report["types"]:
        row = rows.setdefault(t["type"], {"count": 0, "bytes": 0})
        row["count"] += t["count"]
        row["bytes"] += t["bytes"]
    return report, rows


def run_size(info, memspy, k, width, tmp):
    """Start the fixture at size k, take memspy's full and --gc-only reports, stop the fixture."""
    truth_path = os.path.join(tmp, "truth-%d.json" % k)
    err = open(os.path.join(tmp, "stderr-%d.txt" % k), "w")
    proc = subprocess.Popen([info["python"], "-I", FIXTURE, truth_path, "%0*d" % (width, k)],
                            stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    try:
        end = time.time() + 120
        while not os.path.exists(truth_path):
            if proc.poll() is not None:
                err.flush()
                raise RuntimeError("fixture exited (%s): %s" % (proc.returncode,
                                                                open(err.name).read()[-2000:]))
            if time.time() > end:
                raise RuntimeError("fixture wrote no truth")
            time.sleep(0.02)
        with open(truth_path) as f:
            truth = json.load(f)
        wait_paused(proc.pid, proc, 60)
        full, full_rows = memspy_json(memspy, proc.pid, [])
        gc_only, gc_rows = memspy_json(memspy, proc.pid, ["--gc-only"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        err.close()
    return {"truth": truth, "full": full, "full_rows": full_rows, "gc": gc_only, "gc_rows": gc_rows}


def count(rows, name):
    return rows.get(name, {}).get("count", 0)


def nbytes(rows, name):
    return rows.get(name, {}).get("bytes", 0)


def mark(ok):
    return "ok" if ok else "DIFFERS"


def compare(info, a, b, k1, k2):
    """Figures and printed lines for one interpreter (a: size k1, b: size k2)."""
    lines, fig, fails = [], {}, []
    dk = k2 - k1
    ta, tb = a["truth"], b["truth"]
    lines.append("== %s  Python %s  numpy %s  pandas %s  K1=%d K2=%d  (memspy full: %d / %d objects)" % (
        info["name"], tb["full_version"], tb["packages"]["numpy"], tb["packages"]["pandas"], k1, k2,
        a["full"]["totals"]["objects"], b["full"]["totals"]["objects"]))

    lines.append("  differential (count growth K1->K2)       expected   closure      full   gc-only")
    fig["differential"] = {}
    for name, unit in sorted(tb["units"].items()):
        want = unit * dk
        got = count(b["full_rows"], name) - count(a["full_rows"], name)
        got_gc = count(b["gc_rows"], name) - count(a["gc_rows"], name)
        # The fixture's own check: its closure (which enumerates object arrays) grows by the same.
        got_closure = tb["closure"].get(name, 0) - ta["closure"].get(name, 0)
        fig["differential"][name] = {"expected": want, "closure": got_closure, "full": got, "gc_only": got_gc}
        lines.append("    %-36s %10d %9d %9d %9d   %s" % ("%s (%d x %d)" % (name, unit, dk), want, got_closure, got,
                                                            got_gc, mark(got == want)))
        if got_closure != want:
            fails.append("fixture: closure growth of %s" % name)
        if got != want:
            fails.append("differential %s" % name)

    df_type = tb["dataframe"]["type"]
    lines.append("  probes (count)                   K1: closure  full  gc.get_objects  gc-only"
                 " | K2: closure  full  gc.get_objects  gc-only")
    fig["probes"] = {}
    for name in PROBES + [df_type, "numpy.ndarray"]:
        cells = []
        ok = True
        for tag, r in (("k1", a), ("k2", b)):
            c, m = r["truth"]["closure"].get(name, 0), count(r["full_rows"], name)
            g, mg = r["truth"]["gc_objects"].get(name, 0), count(r["gc_rows"], name)
            fig["probes"].setdefault(name, {})[tag] = {"closure": c, "full": m, "gc_objects": g, "gc_only": mg}
            ok = ok and c == m and g == mg
            cells.append("%11d %5d %15d %8d" % (c, m, g, mg))
        lines.append("    %-30s %s | %s   %s" % (name, cells[0], cells[1], mark(ok)))
        if not ok:
            fails.append("probe %s" % name)

    lines.append("  bytes (full heap, K2)                       closure count/bytes     memspy count/bytes")
    fig["bytes"] = {}
    sized = ["numpy.ndarray"] + sorted(tb["scalar_getsizeof"]) + sorted(
        {d["type"] for d in tb["dtype_getsizeof"].values()})
    for name in sized:
        c, cb = tb["closure"].get(name, 0), tb["closure_bytes"].get(name, 0)
        m, mb = count(b["full_rows"], name), nbytes(b["full_rows"], name)
        fig["bytes"][name] = {"closure_count": c, "closure_bytes": cb, "count": m, "bytes": mb}
        ok = c == m and cb == mb
        lines.append("    %-40s %8d %12d   %8d %12d   %s" % (name, c, cb, m, mb, mark(ok)))
        if not ok:
            fails.append("bytes %s" % name)
    nd = tb["ndarray_getsizeof"]
    lines.append("    (sys.getsizeof of the arrays made at K2: %s)" % ", ".join(
        "%s %d" % (kind, nd[kind]["getsizeof"]) for kind in sorted(nd)))

    fig["question_names"] = {}
    for tag, r in (("k2 full", b["full_rows"]), ("k2 gc-only", b["gc_rows"])):
        q = {n: row["count"] for n, row in r.items() if n.startswith("?")}
        fig["question_names"][tag] = q
        lines.append("  '?' names (%s): %s" % (tag, ", ".join("%s %d" % kv for kv in sorted(q.items())) or "none"))
        if q:
            fails.append("? names (%s)" % tag)

    closure, rows = tb["closure"], b["full_rows"]
    missed = {n: (c, count(rows, n)) for n, c in closure.items() if count(rows, n) < c}
    extra = {n: (c, count(rows, n)) for n, c in closure.items() if count(rows, n) > c}
    unseen = {n: r["count"] for n, r in rows.items() if n not in closure}
    fig["closure_k2"] = {"types": len(closure), "missed": missed, "extra": extra, "not_in_closure": unseen}

    def top(d, key):
        return ", ".join("%s %s" % (n, v) for n, v in sorted(d.items(), key=key)[:8])

    lines.append("  closure at K2: %d types; memspy counts fewer of %d, more of %d; %d types not in the closure"
                 % (len(closure), len(missed), len(extra), len(unseen)))
    if missed:
        lines.append("    fewer (closure/memspy): " + top(missed, lambda kv: kv[1][1] - kv[1][0]))
    if extra:
        lines.append("    more (closure/memspy): " + top(extra, lambda kv: kv[1][0] - kv[1][1]))
    lines.append("  checks that differ: %s" % (", ".join(fails) or "none"))
    return lines, fig, fails


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memspy", default=os.path.join(ROOT, "target", "release", "memspy"))
    ap.add_argument("--venvs", default=os.path.join(
        os.environ.get("MEMSPY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "memspy"), "venvs"))
    ap.add_argument("--k1", type=int, default=1000)
    ap.add_argument("--k2", type=int, default=21000)
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    if not os.access(args.memspy, os.X_OK):
        sys.exit("no memspy at %s (cargo build --release)" % args.memspy)
    found = venvs(args.venvs, args.names)
    if not found:
        sys.exit("no venvs in %s (scripts/venvs.sh makes them)" % args.venvs)
    width = len(str(max(args.k1, args.k2)))
    everything, failed = {}, 0
    for info in found:
        with tempfile.TemporaryDirectory(prefix="memspy-native-%s-" % info["name"]) as tmp:
            try:
                a = run_size(info, args.memspy, args.k1, width, tmp)
                b = run_size(info, args.memspy, args.k2, width, tmp)
            except Exception as e:  # one interpreter's failure does not hide the others
                print("== %s: could not measure: %s" % (info["name"], e), flush=True)
                failed += 1
                everything[info["name"]] = {"error": str(e)}
                continue
        lines, fig, fails = compare(info, a, b, args.k1, args.k2)
        print("\n".join(lines), flush=True)
        failed += bool(fails)
        fig["truth_k2"] = b["truth"]
        everything[info["name"]] = fig
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1, sort_keys=True)
    print("interpreters: %d measured, %d with differences" % (len(found), failed))
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
