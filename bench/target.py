"""Benchmark target: N records, a 1 ms heartbeat thread, and in-process measurements on request.

Usage: python target.py N [shuffled]     then commands on stdin, one per line, each answered by one JSON line
(with `shuffled`, the records' name strings are reassigned in random order, so that the objects
referenced from neighbouring records lie far apart: an adversarial heap for memspy's read cache):
  reset      forget the longest heartbeat gap so far
  gap        the longest gap (ms) since the last reset, and RSS
  gaps       every gap longer than 2 ms so far, as [start, end] in time.monotonic() seconds (the same
             clock in every process): the heartbeat logs them into a preallocated array, so a benchmark
             can attribute gaps to the runs it timed without talking to the target between runs (each
             exchange leaves a few objects changed: it would make the totals differ from run to run)
  gcobjects  time gc.get_objects() + Counter by type
  closure    time the closure of gc.get_objects() under gc.get_referents() (+ dict keys): objects, bytes
  heapy      time guppy3's hpy().heap(): objects, bytes (if guppy is importable)
"""

import gc
import array
import json
import os
import sys
import threading
import time
from collections import Counter


class Record:
    def __init__(self, i):
        self.id = i
        self.name = "record-%d" % i
        self.values = [i * 0.5, "v%d" % i]
        self.meta = {"k": i}


MAX_GAP = 0.0
LOG_OVER = 0.002  # seconds: gaps longer than this are logged
LOG_SLOTS = 1 << 16
# [count, start0, end0, start1, end1, ...]: a ring of the last LOG_SLOTS long gaps. Only floats stored into
# the array (no objects kept), and the count lives in it too: the heap stays the same while the log fills.
GAP_LOG = array.array("d", bytes(8 * (1 + 2 * LOG_SLOTS)))


def log_gap(start, end):
    """In a function of its own, so that its locals (ints past the small-int cache) do not outlive it."""
    i = 1 + 2 * (int(GAP_LOG[0]) % LOG_SLOTS)
    GAP_LOG[i] = start
    GAP_LOG[i + 1] = end
    GAP_LOG[0] += 1


def heartbeat():
    global MAX_GAP
    last = time.monotonic()
    while True:
        time.sleep(0.001)
        now = time.monotonic()
        if now - last > MAX_GAP:
            MAX_GAP = now - last
        if now - last > LOG_OVER:
            log_gap(last, now)
        last = now


def logged_gaps():
    n = int(GAP_LOG[0])
    first = max(0, n - LOG_SLOTS)
    out = []
    for k in range(first, n):
        i = 1 + 2 * (k % LOG_SLOTS)
        out.append([GAP_LOG[i], GAP_LOG[i + 1]])
    return {"gaps": out, "lost": first, "over_ms": LOG_OVER * 1000}


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def closure():
    objs = gc.get_objects()
    seen = {id(objs)}
    stack = []
    for o in objs:
        if id(o) not in seen:
            seen.add(id(o))
            stack.append(o)
    objs = None
    n = size = 0
    getsizeof = sys.getsizeof
    while stack:
        o = stack.pop()
        n += 1
        size += getsizeof(o)
        refs = gc.get_referents(o)
        if type(o) is dict:
            refs.extend(o.keys())
        for r in refs:
            if id(r) not in seen:
                seen.add(id(r))
                stack.append(r)
    return n, size


IN_PROCESS_LIMIT = 300  # seconds an in-process path search may take


def in_process_path(tool, obj):
    """How one record is held, found from inside: objgraph's find_backref_chain to a module, or guppy3's
    shortest path from the root (`iso(obj).sp`). Seconds taken, or why not."""
    import signal

    def give_up(*_):
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(IN_PROCESS_LIMIT)
    t = time.perf_counter()
    try:
        if tool == "objgraph":
            import objgraph
            chain = objgraph.find_backref_chain(obj, objgraph.is_proper_module)
            found = len(chain)
        else:
            from guppy import hpy
            found = len(str(hpy().iso(obj).sp).splitlines())
        out = {"seconds": time.perf_counter() - t, "found": found}
    except ImportError as e:
        out = {"error": str(e)}
    except TimeoutError:
        out = {"error": "did not finish in %d s" % IN_PROCESS_LIMIT}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return out


def main():
    n = int(sys.argv[1])
    records = [Record(i) for i in range(n)]  # noqa: F841 (kept alive by this frame)
    if sys.argv[2:3] == ["shuffled"]:
        import random
        names = [r.name for r in records]
        random.Random(1).shuffle(names)
        for r, name in zip(records, names):
            r.name = name
        names = None
    gc.collect()
    threading.Thread(target=heartbeat, daemon=True).start()
    print(json.dumps({"ready": True, "pid": os.getpid(), "rss": rss()}), flush=True)
    global MAX_GAP
    for line in sys.stdin:
        cmd = line.strip()
        out = {}
        if cmd == "reset":
            MAX_GAP = 0.0
        elif cmd == "gap":
            out = {"gap_ms": MAX_GAP * 1000, "rss": rss()}
        elif cmd == "gaps":
            out = logged_gaps()
        elif cmd == "gcobjects":
            t = time.perf_counter()
            c = Counter(type(o) for o in gc.get_objects())
            out = {"seconds": time.perf_counter() - t, "objects": sum(c.values())}
            c = None
        elif cmd == "closure":
            t = time.perf_counter()
            objects, size = closure()
            out = {"seconds": time.perf_counter() - t, "objects": objects, "bytes": size}
        elif cmd == "heapy":
            try:
                from guppy import hpy
            except ImportError as e:
                out = {"error": str(e)}
            else:
                t = time.perf_counter()
                h = hpy().heap()
                out = {"seconds": time.perf_counter() - t, "objects": h.count, "bytes": h.size}
                h = None
        elif cmd in ("objgraph", "heapy_sp"):
            out = in_process_path(cmd, records[n // 2])
        elif cmd == "quit":
            break
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
