#!/usr/bin/env python3
"""Soak: what watching costs a busy service, and proof that it leaves the service and memspy as they were.

Usage: python3 bench/soak.py [--minutes M] [--window W] [--python PATH] [--memspy PATH] [--clients C]
                             [--keys K] [--interval S] [--out FILE]

The target is bench/soak_service.py (a stdlib ThreadingHTTPServer on 127.0.0.1, a thread per connection,
fresh objects per request, a bounded LRU cache), driven by bench/soak_load.py (C client threads, one
keep-alive connection each, requests back to back: a bounded closed loop) in a process of its own.
After a 30 s warm-up the run alternates windows of W minutes without and with memspy, in the order
off on on off off on on off … (so that a steady drift of the machine's load hits both alike), M minutes
in all. In a window "with", two memspy processes watch the service: `memspy growth PID --interval S
--samples N --json` (N samples spanning the window) and `memspy serve PID --interval S`, whose /metrics
this script scrapes over loopback every S seconds.

Measured per window: requests/s and p50/p99/max latency (from the load loop), errors. Every second, for
the whole run: the state of every thread of the service (/proc/PID/task/*/stat; a sample that finds one
in 't' or 'T' is counted, and the longest run of consecutive such samples), the service's RSS, and each
memspy process's RSS (VmRSS). Per memspy process: its exit status, anything it printed on stderr, the
samples it took (growth: the JSON's samples; serve: memspy_samples_total, memspy_sample_errors_total,
memspy_last_sample_partial, memspy_last_pause_seconds per scrape). Printed: a per-window table, the
medians of the windows without and with memspy and their ratios, and the checks; raw data to
bench/out/soak-DATE-TIME.json. Exits 1 when a check fails (a memspy error, a sample missing or
unmarked-partial, the service left stopped for 2 consecutive samples, memspy's RSS growing).
"""

import argparse
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from driver import Driven

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_MEMSPY = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"),
                              "release", "memspy")
WARMUP_S = 30
# memspy's RSS is read once a second: between samples it sits at a floor, during a sample (the heap's
# copy or chunk cache, the visited bitmap) it peaks. The floor of its last 20 s may exceed the floor of the
# 20 s after its first sample by this much (allocator arenas settling); more is reported as growth.
RSS_SLACK = 1.10
RSS_SLACK_KIB = 1024


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def task_states(pid):
    """Each thread's state letter, from /proc/PID/task/TID/stat (the field after the parenthesised name)."""
    out = []
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                s = f.read()
            out.append(s[s.rindex(")") + 2])
        except (OSError, ValueError, IndexError):
            pass
    return out


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Monitor(threading.Thread):
    """Every second: the service's thread states and RSS, and the RSS of each watched memspy process."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = 0
        self.stopped_samples = 0
        self.run_len = 0
        self.longest_run = 0
        self.service_rss = []
        self.procs = {}  # label -> list of (t, kib)
        self.lock = threading.Lock()
        self.quit = threading.Event()

    def watch(self, label, pid):
        with self.lock:
            self.procs[label] = {"pid": pid, "rss": [], "done": False}

    def unwatch(self, label):
        """Stops reading a process that has exited (its PID may be another process's from now on)."""
        with self.lock:
            self.procs[label]["done"] = True

    def run(self):
        t0 = time.monotonic()
        while not self.quit.wait(1.0):
            states = task_states(self.pid) or []
            stopped = any(s in "tT" for s in states)
            self.samples += 1
            self.stopped_samples += stopped
            self.run_len = self.run_len + 1 if stopped else 0
            self.longest_run = max(self.longest_run, self.run_len)
            t = round(time.monotonic() - t0, 1)
            self.service_rss.append((t, rss_kib(self.pid)))
            with self.lock:
                for p in self.procs.values():
                    if p["done"]:
                        continue
                    k = rss_kib(p["pid"])
                    if k is not None:
                        p["rss"].append((t, k))


METRICS = ("memspy_up", "memspy_samples_total", "memspy_sample_errors_total", "memspy_last_sample_partial",
           "memspy_last_sample_approximate", "memspy_last_pause_seconds", "memspy_last_walk_seconds",
           "memspy_last_sample_timestamp_seconds", "memspy_heap_objects")


def scrape(url):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    got = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if m and m.group(1) in METRICS:
            got[m.group(1)] = float(m.group(3))
    return got


class Watch:
    """One window's memspy processes: growth (JSON at its end) and serve (scraped every interval)."""

    def __init__(self, memspy, pid, interval, samples, monitor, label):
        self.interval = interval
        self.monitor, self.label = monitor, label
        self.growth = subprocess.Popen(
            [memspy, "growth", str(pid), "--interval", str(interval), "--samples", str(samples), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.serve = subprocess.Popen(
            [memspy, "serve", str(pid), "--listen", "127.0.0.1:0", "--interval", str(interval)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        monitor.watch(label + "/growth", self.growth.pid)
        monitor.watch(label + "/serve", self.serve.pid)
        line = self.serve.stderr.readline()
        m = re.search(r"serving (http://\S+/metrics)", line)
        self.url = m.group(1) if m else None
        self.serve_banner = line.strip()
        self.scrapes = []
        self.scrape_errors = []
        self.quit = threading.Event()
        self.scraper = threading.Thread(target=self.scrape_loop, daemon=True)
        self.scraper.start()

    def scrape_loop(self):
        while self.url and not self.quit.wait(self.interval):
            try:
                self.scrapes.append(scrape(self.url))
            except Exception as e:  # noqa: BLE001 - recorded and reported as a failed scrape
                self.scrape_errors.append(str(e))

    def finish(self):
        self.quit.set()
        self.scraper.join()
        out, err = self.growth.communicate(timeout=300)
        self.monitor.unwatch(self.label + "/growth")
        g = {"status": self.growth.returncode, "stderr": [x for x in err.splitlines() if x.strip()]}
        try:
            doc = json.loads(out)
            g["samples"] = len(doc["samples"])
            g["objects"] = [s["objects"] for s in doc["samples"]]
        except (ValueError, KeyError):
            g["samples"] = 0
        self.serve.send_signal(signal.SIGINT)
        try:
            _, serr = self.serve.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.serve.kill()
            _, serr = self.serve.communicate()
        self.monitor.unwatch(self.label + "/serve")
        last = self.scrapes[-1] if self.scrapes else {}
        pauses = {}
        for s in self.scrapes:
            if "memspy_last_sample_timestamp_seconds" in s:
                pauses[s["memspy_last_sample_timestamp_seconds"]] = s.get("memspy_last_pause_seconds")
        s = {"status": self.serve.returncode, "banner": self.serve_banner,
             "stderr": [x for x in serr.splitlines() if x.strip()], "scrapes": len(self.scrapes),
             "scrape_errors": self.scrape_errors,
             "samples": int(last.get("memspy_samples_total", 0)),
             "sample_errors": int(last.get("memspy_sample_errors_total", 0)),
             "partial_seen": sum(1 for x in self.scrapes if x.get("memspy_last_sample_partial")),
             "down_seen": sum(1 for x in self.scrapes if x.get("memspy_up") != 1),
             "pauses_ms": sorted(round(p * 1000, 2) for p in pauses.values() if p is not None)}
        return g, s


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rss_check(series):
    """A memspy process's RSS in KiB: (floor of the 20 s after its first sample, floor of its last 20 s,
    peak over the run) — the floor being the least reading, between samples."""
    pts = [k for t, k in series]
    if len(pts) < 10:
        return None
    first, last = pts[2:22], pts[-20:]
    return min(first), min(last), max(pts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=64.0, help="total of the windows (default 64)")
    ap.add_argument("--window", type=float, default=4.0, help="minutes per window (default 4)")
    ap.add_argument("--python", default="/usr/bin/python3.14")
    ap.add_argument("--memspy", default=DEFAULT_MEMSPY)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--keys", type=int, default=5000)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--out")
    a = ap.parse_args()
    window = min(a.window, a.minutes / 2)
    n = max(2, int(round(a.minutes / window)))
    order = []
    for i in range(0, n, 2):
        order += ["off", "on"] if (i // 2) % 2 == 0 else ["on", "off"]
    order = order[:n]
    wsecs = window * 60
    samples = max(2, int(wsecs // a.interval))

    svc = Driven([a.python, os.path.join(HERE, "soak_service.py")])
    pid, port = svc.hello["pid"], svc.hello["port"]
    load = Driven([sys.executable, os.path.join(HERE, "soak_load.py"), str(port), str(a.clients), str(a.keys)])
    mon = Monitor(pid)
    mon.start()
    log("service PID %d (Python %s) on port %d, %d clients; %d windows of %.1f min: %s"
        % (pid, svc.hello["python"], port, a.clients, n, window, " ".join(order)))
    load_before = os.getloadavg()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    time.sleep(WARMUP_S)
    load.ask("mark")
    windows = []
    try:
        for i, kind in enumerate(order):
            w = {"n": i + 1, "kind": kind, "loadavg_start": os.getloadavg()[0]}
            watch = Watch(a.memspy, pid, a.interval, samples, mon, "w%d" % (i + 1)) if kind == "on" else None
            time.sleep(wsecs)
            w["load"] = load.ask("mark")
            if watch:
                w["growth"], w["serve"] = watch.finish()
            windows.append(w)
            ld = w["load"]
            log("window %d %s: %.1f req/s, p50 %.2f ms, p99 %.2f ms, %d errors"
                % (i + 1, kind, ld["rps"], ld["p50_ms"] or -1, ld["p99_ms"] or -1, ld["errors"]))
    finally:
        mon.quit.set()
        mon.join()
        load.close()
        svc.close()

    for w in windows:
        if w["kind"] == "on":
            for which in ("growth", "serve"):
                series = mon.procs["w%d/%s" % (w["n"], which)]["rss"]
                w[which]["rss_kib"] = rss_check(series)
                w[which]["rss_series"] = series
    failures = []
    for w in windows:
        if w["load"]["errors"]:
            failures.append("window %d: %d failed requests" % (w["n"], w["load"]["errors"]))
        if w["kind"] != "on":
            continue
        g, s = w["growth"], w["serve"]
        if g["status"] != 0 or g["stderr"] or g["samples"] != samples:
            failures.append("window %d growth: status %s, %d/%d samples, stderr %s"
                            % (w["n"], g["status"], g["samples"], samples, g["stderr"][:3]))
        if s["stderr"] or s["sample_errors"] or s["down_seen"] or s["scrape_errors"] or not s["samples"]:
            failures.append("window %d serve: %d samples, %d errors, down in %d scrapes, stderr %s, scrape "
                            "errors %s" % (w["n"], s["samples"], s["sample_errors"], s["down_seen"],
                                           s["stderr"][:3], s["scrape_errors"][:3]))
        for which in ("growth", "serve"):
            r = w[which]["rss_kib"]
            if r and r[1] > r[0] * RSS_SLACK + RSS_SLACK_KIB:
                failures.append("window %d %s: RSS floor %d KiB after its first sample, %d KiB at the end"
                                % (w["n"], which, r[0], r[1]))
    if mon.longest_run >= 2:
        failures.append("the service was seen stopped in %d consecutive samples" % mon.longest_run)

    def agg(kind, key):
        return med([w["load"][key] for w in windows if w["kind"] == kind])

    off = {k: agg("off", k) for k in ("rps", "p50_ms", "p99_ms")}
    on = {k: agg("on", k) for k in ("rps", "p50_ms", "p99_ms")}
    on_w = [w for w in windows if w["kind"] == "on"]
    pauses = sorted(p for w in on_w for p in w["serve"]["pauses_ms"])
    svc_rss = [k for t, k in mon.service_rss if k]
    result = {
        "started": started, "python": svc.hello["python"], "clients": a.clients, "keys": a.keys,
        "window_min": window, "interval_s": a.interval, "order": order, "cpus": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "windows": windows,
        "medians": {"off": off, "on": on},
        "state_samples": mon.samples, "stopped_samples": mon.stopped_samples, "longest_stopped_run": mon.longest_run,
        "service_rss_kib": {"first": svc_rss[0] if svc_rss else None, "last": svc_rss[-1] if svc_rss else None,
                            "max": max(svc_rss) if svc_rss else None},
        "failures": failures,
    }
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    out = a.out or os.path.join(HERE, "out", "soak-%s.json" % datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    with open(out, "w") as f:
        json.dump(result, f, indent=1)

    print("| window | memspy | req/s | p50 ms | p99 ms | max ms | growth samples | serve samples | serve pause median (max) ms | memspy RSS floor first→last (peak) MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for w in windows:
        ld = w["load"]
        if w["kind"] == "on":
            g, s = w["growth"], w["serve"]
            rs = "; ".join("%s %.1f→%.1f (%.1f)" % (k, r[0] / 1024, r[1] / 1024, r[2] / 1024)
                           for k, r in (("growth", g["rss_kib"]), ("serve", s["rss_kib"])) if r)
            ps = s["pauses_ms"]
            extra = "%d/%d | %d | %s | %s" % (g["samples"], samples, s["samples"],
                                              "%.1f (%.1f)" % (med(ps), max(ps)) if ps else "-", rs)
        else:
            extra = "- | - | - | -"
        print("| %d | %s | %.1f | %.2f | %.2f | %.1f | %s |" % (w["n"], w["kind"], ld["rps"], ld["p50_ms"],
                                                               ld["p99_ms"], ld["max_ms"], extra))
    print()
    print("medians of the windows: without memspy %.1f req/s, p50 %.2f ms, p99 %.2f ms; with memspy %.1f req/s "
          "(%.3f×), p50 %.2f ms (%.2f×), p99 %.2f ms (%.2f×)"
          % (off["rps"], off["p50_ms"], off["p99_ms"], on["rps"], on["rps"] / off["rps"], on["p50_ms"],
             on["p50_ms"] / off["p50_ms"], on["p99_ms"], on["p99_ms"] / off["p99_ms"]))
    print("watched %.0f min (%d windows); memspy samples: growth %d, serve %d; serve pauses median %s ms, max %s ms"
          % (len(on_w) * window, len(on_w), sum(w["growth"]["samples"] for w in on_w),
             sum(w["serve"]["samples"] for w in on_w), med(pauses), max(pauses) if pauses else None))
    print("service thread states: %d samples (1/s), %d saw a thread stopped, longest run %d; service RSS "
          "%.1f MiB first, %.1f MiB last, %.1f MiB max"
          % (mon.samples, mon.stopped_samples, mon.longest_run, (svc_rss[0] if svc_rss else 0) / 1024,
             (svc_rss[-1] if svc_rss else 0) / 1024, (max(svc_rss) if svc_rss else 0) / 1024))
    print("load average before %s, after %s; Python %s; %d CPUs"
          % (" ".join("%.2f" % x for x in load_before), " ".join("%.2f" % x for x in os.getloadavg()),
             svc.hello["python"], os.cpu_count()))
    print("checks: " + ("all passed" if not failures else "%d FAILED" % len(failures)))
    for f in failures:
        print("  " + f)
    print("raw: %s\ncommand: python3 bench/soak.py %s" % (out, " ".join(sys.argv[1:])))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
