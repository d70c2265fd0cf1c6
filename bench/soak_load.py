#!/usr/bin/env python3
"""The soak's load loop (bench/soak.py): CLIENTS threads, each with one keep-alive HTTP/1.1 connection to
127.0.0.1:PORT, sending GET /item/KEY back to back (a closed loop: at most CLIENTS requests in flight),
KEY drawn from KEYS keys so that the service's cache both hits and evicts.

Usage: soak_load.py PORT CLIENTS KEYS. Prints {"ready": true}, then answers each stdin line "mark" with
one JSON line for the requests completed since the previous mark: count, errors, seconds, requests/s,
p50/p99/max latency in ms. "quit" stops it.
"""

import http.client
import json
import random
import sys
import threading
import time


class Load:
    def __init__(self, port, clients, keys):
        self.port, self.keys = port, keys
        self.lock = threading.Lock()
        self.lat = []
        self.errors = 0
        self.since = time.monotonic()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(clients)]

    def client(self, i):
        rng = random.Random(i)
        conn = None
        while not self.stop.is_set():
            key = "k%d" % rng.randrange(self.keys)
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/item/" + key)
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn = None
            dt = time.perf_counter() - t0
            with self.lock:
                if ok:
                    self.lat.append(dt)
                else:
                    self.errors += 1

    def mark(self):
        with self.lock:
            lat, self.lat = self.lat, []
            errors, self.errors = self.errors, 0
            now = time.monotonic()
            secs, self.since = now - self.since, now
        lat.sort()

        def q(p):
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else None

        return {"count": len(lat), "errors": errors, "seconds": round(secs, 3),
                "rps": round(len(lat) / secs, 1) if secs > 0 else 0,
                "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": round(lat[-1] * 1000, 3) if lat else None}


def main():
    port, clients, keys = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    load = Load(port, clients, keys)
    for t in load.threads:
        t.start()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "mark":
            print(json.dumps(load.mark()), flush=True)
        elif cmd == "quit":
            break
    load.stop.set()
    for t in load.threads:
        t.join(timeout=35)


if __name__ == "__main__":
    main()
