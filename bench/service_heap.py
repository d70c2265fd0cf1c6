"""A service-like heap for measuring memspy against guppy3: pandas, numpy, pydantic, SQLAlchemy, a cache.

Usage: python service_heap.py [SCALE]     (in a venv with numpy, pandas, pydantic 2, SQLAlchemy 2 and guppy3:
                                           bench/service.py makes them)

SCALE (default 1.0) multiplies every count below. At 1.0 the heap holds about 3.0 M objects as guppy3
counts them (3.5 M as memspy does: guppy3 does not see what numpy arrays hold, nor the str keys of dicts)
and the process about 800 MB RSS, 290 MB of it numeric array data; it builds in about 5 s.

What is built (and kept alive from the module-level HOLD dict), at SCALE 1:
- pydantic v2: 100k `Customer` models (id, name, email, score, active, tags: list[str], a nested `Address`
  model for one in four), validated from dicts, as an API layer holds them;
- SQLAlchemy 2: 100k `Order` rows of a declarative mapped class, added to a Session on an in-memory SQLite
  engine and flushed, so that each is persistent and in the session's identity map (which holds them weakly:
  HOLD keeps a list of them too, as a request handler would);
- pandas: a `users` DataFrame (150k rows: int64 id, an object column of unique str, a column of the default
  str dtype of unique str, float64 balance), an `events` DataFrame (100k rows: datetime64, a categorical,
  an object column of unique str, float64), and a numeric 100k x 16 float64 frame (a view of a 2-D array);
- numpy: numeric arrays (a float64 from np.linspace, which is a view of the array that owns the data, an
  int32, a 2-D float32: 288 MB of data in all) and object arrays (50k unique str, 30k float);
- a cache: a dict of 50k unique str keys to unique str values, and a list of 50k unique str.

pyarrow must not be installed: with it pandas keeps strings in Arrow buffers, not in str objects.

guppy3, when installed, is imported and run once on the small heap before anything is built (its first
hpy().heap() imports most of its modules), so that memspy reads the modules guppy3 later reads. Once
built, the program collects garbage, prints one line of JSON ({"ready": true, "pid", "rss", "seconds",
"counts": what was built, "versions"}) and reads commands on stdin, one per line, each answered by one JSON
line:
  rss        the process's RSS now
  gcobjects  len(gc.get_objects()) and the time it took
  heapy      guppy3's hpy().heap(): {"seconds" (the heap() call alone), "objects", "bytes",
             "types": [[name, count, size, memspy_name], ...] (heap().bytype, largest size first; name
             as guppy3 gives it, memspy_name that type's name as memspy spells it)}
  closure    an in-process closure: gc.get_objects(), then everything reachable through gc.get_referents()
             plus what gc.get_referents() leaves out: dict keys (str-keyed dicts do not report them), what
             a code object holds (co_consts, co_names, ...: code has no tp_traverse), an ndarray's base and
             the elements of numpy object arrays (numpy reports neither); sized by sys.getsizeof:
             {"seconds", "objects", "bytes", "types": [[name, count, size], ...]}, named as memspy names
             types. It still misses what only the interpreter's or a C extension's own state holds (the
             interned-string dict, static types' dicts, Cython modules' constants).
  quit       exit
After each command the process collects garbage (what hpy() leaves alive then is a few hundred objects).
Nothing else runs in the process: between commands it is idle in a read of stdin.
"""

import datetime
import gc
import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Optional

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

try:
    from guppy import hpy
except ImportError:
    hpy = None
else:
    # hpy().heap() imports most of guppy's modules lazily the first time: done now, before memspy reads the
    # heap, so that memspy and guppy3 read the same modules, functions and classes.
    hpy().heap()

HOLD = {}


class Address(BaseModel):
    street: str
    city: str
    zip: str


class Customer(BaseModel):
    id: int
    name: str
    email: str
    score: float
    active: bool
    tags: list[str]
    address: Optional[Address] = None


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(40))
    amount: Mapped[float]
    status: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime.datetime]


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def scaled(n, scale):
    return max(1, int(n * scale))


def build_pydantic(n):
    cities = ["Lyon", "Porto", "Graz", "Turku", "Leeds", "Brno"]
    tags = ["new", "vip", "churn-risk", "b2b", "trial", "eu"]
    models = []
    for i in range(n):
        raw = {"id": 1_000_000 + i, "name": "customer %d" % i, "email": "c%d@example.test" % i,
               "score": i * 0.25 + 0.1, "active": i % 3 != 0, "tags": [tags[i % 6], tags[(i // 6) % 6]]}
        if i % 4 == 0:
            raw["address"] = {"street": "%d Main Street" % i, "city": cities[i % 6], "zip": "%05d" % (i % 99999)}
        models.append(Customer.model_validate(raw))
    HOLD["customers"] = models
    return {"pydantic_models": n + (n + 3) // 4}


def build_sqlalchemy(n):
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    session = Session(engine)
    statuses = ["open", "paid", "shipped", "returned"]
    t0 = datetime.datetime(2024, 1, 1)
    rows = [Order(id=i + 1, customer="customer %d" % i, amount=i * 1.5 + 0.01, status=statuses[i % 4],
                  created=t0 + datetime.timedelta(seconds=i))
            for i in range(n)]
    session.add_all(rows)
    session.flush()
    assert len(session.identity_map) == n
    HOLD["orders"] = rows
    HOLD["session"] = session
    HOLD["engine"] = engine
    return {"orm_rows": n}


def build_pandas(n_users, n_events, n_wide):
    users = pd.DataFrame({
        "user_id": np.arange(n_users, dtype=np.int64),
        "name": pd.Series(["user %07d" % i for i in range(n_users)], dtype=object),
        "email": pd.Series(["u%07d@example.test" % i for i in range(n_users)]),  # the default str dtype
        "balance": np.linspace(0.0, 1e6, n_users),
    })
    kinds = pd.Categorical(np.array(["click", "view", "buy", "login"])[np.arange(n_events) % 4])
    events = pd.DataFrame({
        "ts": pd.date_range("2024-01-01", periods=n_events, freq="s"),
        "kind": kinds,
        "payload": pd.Series(['{"event": %d}' % i for i in range(n_events)], dtype=object),
        "value": np.arange(n_events, dtype=np.float64) * 0.5,
    })
    wide = pd.DataFrame(np.arange(n_wide * 16, dtype=np.float64).reshape(n_wide, 16),
                        columns=["f%02d" % j for j in range(16)])
    HOLD["frames"] = {"users": users, "events": events, "wide": wide}
    # What the str columns hold (Python str in object arrays: no pyarrow), read without keeping anything.
    held = sorted({"%s %s" % (users[c].dtype, type(users[c].iloc[0]).__name__) for c in ("name", "email")})
    return {"dataframes": 3, "dataframe_strings": 2 * n_users + n_events, "str_columns": held}


def build_numpy(n_float, n_int, n_obj_str, n_obj_float):
    arrays = {
        "float64": np.linspace(0.0, 1.0, n_float),
        "int32": np.arange(n_int, dtype=np.int32),
        "float32_2d": np.ones((n_int // 1000, 1000), dtype=np.float32),
    }
    strs = np.empty(n_obj_str, dtype=object)
    strs[:] = ["sku-%08d" % i for i in range(n_obj_str)]
    floats = np.empty(n_obj_float, dtype=object)
    floats[:] = [i + 0.5 for i in range(n_obj_float)]
    arrays["object_str"] = strs
    arrays["object_float"] = floats
    HOLD["arrays"] = arrays
    return {"numeric_array_bytes": sum(a.nbytes for a in arrays.values() if a.dtype != object),
            "object_array_items": n_obj_str + n_obj_float}


def build_cache(n):
    cache = {"session:%08d" % i: "token-%016x" % (i * 2654435761) for i in range(n)}
    recent = ["GET /api/items/%d" % i for i in range(n)]
    HOLD["cache"] = cache
    HOLD["recent"] = recent
    return {"cache_entries": n, "list_strings": n}


def type_name(t):
    """As memspy names types: f"{t.__module__}.{t.__qualname__}", or what repr(t) shows when __module__ is
    not a str (Cython's metatypes)."""
    mod = getattr(t, "__module__", None)
    if isinstance(mod, str):
        return "%s.%s" % (mod, t.__qualname__)
    r = repr(t)
    return r[8:-2] if r.startswith("<class '") else t.__name__


def closure():
    """Counts and sys.getsizeof per type over what the GC lists reach (plus dict keys, what code objects hold,
    an ndarray's base and an object array's elements)."""
    from types import CodeType

    ndarray, obj = np.ndarray, np.dtype(object)
    objs = gc.get_objects()
    seen = {id(objs)}
    stack = []
    for o in objs:
        if id(o) not in seen:
            seen.add(id(o))
            stack.append(o)
    objs = None
    per = {}
    getsizeof = sys.getsizeof
    while stack:
        o = stack.pop()
        t = type(o)
        try:
            size = getsizeof(o)
        except Exception:
            size = 0
        row = per.get(t)
        if row is None:
            per[t] = [1, size]
        else:
            row[0] += 1
            row[1] += size
        refs = gc.get_referents(o)
        if t is dict:
            refs.extend(o.keys())
        elif t is CodeType:  # a code object has no tp_traverse: what it holds, from the fields it keeps
            refs.extend((o.co_consts, o.co_names, o.co_filename, o.co_name, o.co_qualname, o.co_linetable,
                         o.co_exceptiontable))
        elif isinstance(o, ndarray):
            if o.base is not None:
                refs.append(o.base)
            if o.dtype is obj:
                refs.extend(o.ravel(order="K").tolist())
        for r in refs:
            if id(r) not in seen:
                seen.add(id(r))
                stack.append(r)
    seen = None
    rows = sorted(([type_name(t), c, s] for t, (c, s) in per.items()), key=lambda r: -r[2])
    return rows


def heapy():
    if hpy is None:
        return {"error": "guppy3 is not installed"}
    h = hpy()
    t = time.perf_counter()
    heap = h.heap()
    seconds = time.perf_counter() - t
    part = heap.bytype.partition
    rows = []
    for row, sub in zip(part.get_rows(), part.get_sets()):
        assert row.count == sub.count
        kind = sub.kind.arg
        rows.append([row.name, row.count, row.size, type_name(kind) if isinstance(kind, type) else row.name])
    rows.sort(key=lambda r: -r[2])
    out = {"seconds": seconds, "objects": heap.count, "bytes": heap.size, "types": rows}
    heap = h = part = None
    return out


def versions():
    out = {}
    for name in ("numpy", "pandas", "pydantic", "pydantic_core", "sqlalchemy", "guppy3"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    packages = versions()  # before the heap is built (importlib.metadata leaves garbage: collected below)
    t = time.perf_counter()
    counts = {"scale": scale}
    counts.update(build_pydantic(scaled(100_000, scale)))
    counts.update(build_sqlalchemy(scaled(100_000, scale)))
    counts.update(build_pandas(scaled(150_000, scale), scaled(100_000, scale), scaled(100_000, scale)))
    counts.update(build_numpy(scaled(16_000_000, scale), scaled(20_000_000, scale), scaled(50_000, scale),
                              scaled(30_000, scale)))
    counts.update(build_cache(scaled(50_000, scale)))
    gc.collect()
    seconds = time.perf_counter() - t
    print(json.dumps({"ready": True, "pid": os.getpid(), "rss": rss(), "seconds": round(seconds, 2),
                      "counts": counts, "versions": packages}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        out = {}
        if cmd == "rss":
            out = {"rss": rss()}
        elif cmd == "gcobjects":
            t = time.perf_counter()
            n = len(gc.get_objects())
            out = {"seconds": time.perf_counter() - t, "objects": n}
        elif cmd == "heapy":
            out = heapy()
        elif cmd == "closure":
            t = time.perf_counter()
            rows = closure()
            out = {"seconds": time.perf_counter() - t, "objects": sum(r[1] for r in rows),
                   "bytes": sum(r[2] for r in rows), "types": rows}
            rows = None
        elif cmd == "quit":
            break
        else:
            out = {"error": "unknown command %r" % cmd}
        print(json.dumps(out), flush=True)
        out = rows = None
        gc.collect()


if __name__ == "__main__":
    main()
