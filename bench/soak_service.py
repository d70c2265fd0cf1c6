#!/usr/bin/env python3
"""The soak's target (bench/soak.py): a stdlib ThreadingHTTPServer on 127.0.0.1 with a thread per connection.

Each GET /item/KEY builds a response from fresh objects (a list of dicts of str, int and float, a bytes
buffer, a JSON encoding) that are freed once it is sent, and keeps the last CACHE results in a bounded
LRU cache (an OrderedDict under a lock), so the heap churns per request but stays bounded.
Prints one JSON line, {"pid": ..., "port": ...}, when it listens; runs until stdin closes or says quit.
"""

import collections
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CACHE = 2000
ROWS = 40


class Cache:
    def __init__(self, limit):
        self.limit = limit
        self.items = collections.OrderedDict()
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key, make):
        with self.lock:
            v = self.items.get(key)
            if v is not None:
                self.items.move_to_end(key)
                self.hits += 1
                return v
            self.misses += 1
        v = make(key)
        with self.lock:
            self.items[key] = v
            self.items.move_to_end(key)
            while len(self.items) > self.limit:
                self.items.popitem(last=False)
        return v


CACHED = Cache(CACHE)


def summary(key):
    """What the cache keeps per key: a small dict and a tuple of str."""
    return {"key": key, "tags": tuple("t%d-%s" % (i, key) for i in range(4)), "weight": len(key) * 1.5}


def render(key):
    """The per-request garbage: rows of dicts, a bytes buffer, the JSON text."""
    rows = [{"id": i, "name": "row-%d-%s" % (i, key), "score": i * 0.25, "flags": [i % 2 == 0, i % 3 == 0]}
            for i in range(ROWS)]
    blob = bytes(range(256)) * 4
    meta = CACHED.get_or_make(key, summary)
    return json.dumps({"key": key, "rows": rows, "meta": meta, "blob": len(blob)}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm and the client's delayed ACK
    # hold the body back ≈ 40 ms.
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.startswith("/item/"):
            body = render(self.path[len("/item/"):])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        elif self.path == "/stats":
            with CACHED.lock:
                body = json.dumps({"cached": len(CACHED.items), "hits": CACHED.hits,
                                   "misses": CACHED.misses}).encode()
            self.send_response(200)
        else:
            body = b"not found\n"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, name="accept", daemon=True)
    t.start()
    print(json.dumps({"pid": os.getpid(), "port": server.server_address[1], "python": sys.version.split()[0]}),
          flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    server.shutdown()


if __name__ == "__main__":
    main()
