"""Searches in one process while another commits: full cache rebuilds and search latency.

    .venv/bin/python bench/bench_reader_under_writer.py                 # this tree
    PYTHONPATH=/tmp/lookalike-head/src .venv/bin/python bench/bench_reader_under_writer.py

(the second line runs the same measurement against another copy of the package, e.g.
``git archive HEAD src | tar -x -C /tmp/lookalike-head`` for the code before a change).

An index of ``--rows`` random ``--dim``-d vectors is written with ``add_embeddings``. Then,
for ``--seconds``, a writer process adds ``--batch`` new vectors per commit with a pause
of ``--pause`` s between commits (the time a real run spends embedding the next batch),
while a reader process searches (exact, k=10) as fast as it can. The reader counts the
full rebuilds of the vector cache it made or met (a new ``epoch``; the writer only appends,
so nothing else changes the epoch) and the wall time of each search. One JSON object out:
``{"rebuilds", "searches", "p50_ms", "p95_ms", "max_ms", "commits", ...}``. ``--no-writer``
runs the reader alone: the search cost without a writer, for comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def setup(db: Path, rows: int, dim: int) -> None:
    from lookalike import Index

    rng = np.random.default_rng(0)
    with Index.open(db, ann="off") as idx:
        for start in range(0, rows, 10000):
            n = min(10000, rows - start)
            idx.add_embeddings([f"/seed/{start + i}.jpg" for i in range(n)], unit(rng, n, dim))
        idx.search_vector(unit(rng, 1, dim)[0], k=1)  # the cache exists, at the last commit


def writer(db: Path, dim: int, seconds: float, batch: int, pause: float) -> dict:
    from lookalike import Index

    rng = np.random.default_rng(1)
    commits, t_end = 0, time.monotonic() + seconds
    with Index.open(db, ann="off") as idx:
        while time.monotonic() < t_end:
            paths = [f"/new/{commits}/{i}.jpg" for i in range(batch)]
            idx.add_embeddings(paths, unit(rng, batch, dim))
            commits += 1
            time.sleep(pause)
    return {"commits": commits}


def reader(db: Path, dim: int, seconds: float) -> dict:
    from lookalike import Index

    rng = np.random.default_rng(2)
    queries = unit(rng, 64, dim)
    times: list[float] = []
    epochs: list[str] = []
    with Index.open(db, ann="off") as idx:
        idx.search_vector(queries[0], k=10)
        vs = idx._vectors.vector_search()
        epochs.append(vs._cache.epoch)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            t = time.perf_counter()
            idx.search_vector(queries[len(times) % len(queries)], k=10, exact=True)
            times.append(time.perf_counter() - t)
            if vs._cache.epoch != epochs[-1]:
                epochs.append(vs._cache.epoch)
        kept = getattr(vs._cache, "kept_during_commit", None)
    ms = np.asarray(times) * 1000
    return {
        "rebuilds": len(epochs) - 1,
        "searches": len(times),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "max_ms": round(float(ms.max()), 2),
        "kept_last_snapshot": kept,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pause", type=float, default=0.2)
    ap.add_argument("--no-writer", action="store_true", help="the reader alone (baseline)")
    ap.add_argument("--role", choices=["writer", "reader"], help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "writer":
        print(json.dumps(writer(a.db, a.dim, a.seconds, a.batch, a.pause)))
        return
    if a.role == "reader":
        print(json.dumps(reader(a.db, a.dim, a.seconds)))
        return
    import lookalike

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        t = time.perf_counter()
        setup(db, a.rows, a.dim)
        setup_s = time.perf_counter() - t
        common = [sys.executable, __file__, "--db", str(db), "--dim", str(a.dim)]
        common += ["--seconds", str(a.seconds), "--batch", str(a.batch), "--pause", str(a.pause)]
        procs = {
            role: subprocess.Popen([*common, "--role", role], stdout=subprocess.PIPE, text=True)
            for role in (("reader",) if a.no_writer else ("reader", "writer"))
        }
        out = {role: json.loads(p.communicate()[0]) for role, p in procs.items()}
    print(
        json.dumps(
            {
                "package": str(Path(lookalike.__file__).parent),
                "rows": a.rows,
                "dim": a.dim,
                "seconds": a.seconds,
                "setup_seconds": round(setup_s, 1),
                **out.get("writer", {"commits": 0}),
                **out["reader"],
            }
        )
    )


if __name__ == "__main__":
    main()
