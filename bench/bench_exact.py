"""Exact search speed at 10k / 100k / 1M x 2048 rows against a memory-read ceiling. JSON out.

    .venv/bin/python bench/bench_exact.py
    .venv/bin/python bench/bench_exact.py --sizes 10000 100000   # skip the 8 GB case

One cache of ``max(sizes)`` random rows is written (content does not matter for speed) and
``exact_search`` scans its first n rows through the memory map, dropping each chunk's pages
after use (``VectorCache.release``), exactly as ``VectorSearch.search(exact=True)`` does.
GB/s is bytes scanned (n x 2048 x 4) over the median (and the best) wall time of one
query, for nq=1 and for a batch of 16. The ceiling is a plain numpy read of a 1 GiB array
in RAM (chunked matrix-vector product, and ``sum``), measured in a child process before
and after the scans and right before each size (``ceiling_now``): the cores are shared
with other work, and the ceiling moves with it. ``rss_after_mb`` (resident
now) shows that scanning a file-backed map does not pull the file into the process;
``peak_rss_mb`` includes writing the cache (one 64k-row chunk of random numbers).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_million import memory_ceiling

from lookalike.vectors import VectorCache, exact_search


class RandomSource:
    """n random rows, generated chunk by chunk (never all in memory)."""

    def __init__(self, n: int, dim: int) -> None:
        self.n, self._dim = n, dim

    def generation(self) -> int:
        return 1

    def dim(self) -> int:
        return self._dim

    def count(self) -> int:
        return self.n

    def iter_vectors(self, chunk_rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(0)
        for start in range(0, self.n, chunk_rows):
            stop = min(self.n, start + chunk_rows)
            x = rng.random((stop - start, self._dim), dtype=np.float32)
            yield np.arange(start, stop, dtype=np.int64), x


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mb() -> float:
    """Resident set now (Linux /proc; -1 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return -1.0
    return round(pages * resource.getpagesize() / 2**20, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="lookalike-exact-"))
    out: dict = {"dim": args.dim, "ceiling": memory_ceiling()}
    t = time.perf_counter()
    # durable: fsync, so that the kernel is not still writing 8 GB back while we scan
    cache = VectorCache.open(work / "cache", RandomSource(max(args.sizes), args.dim))
    out["write_seconds"] = round(time.perf_counter() - t, 1)
    out["rss_before_scans_mb"] = rss_mb()
    rng = np.random.default_rng(1)
    results = []
    for n in sorted(args.sizes):
        matrix, ids = cache.matrix[:n], cache.ids[:n]
        row = {"n": n, "gb": round(n * args.dim * 4 / 1e9, 3)}
        row["ceiling_now"] = memory_ceiling()["numpy_matvec_gb_s"]  # shared cores: re-measure
        for nq in (1, 16):
            q = rng.random((nq, args.dim), dtype=np.float32)
            exact_search(matrix, ids, q, 10, release=cache.release)  # warm the page cache
            times = []
            for _ in range(args.reps):
                t = time.perf_counter()
                exact_search(matrix, ids, q, 10, release=cache.release)
                times.append(time.perf_counter() - t)
            med, best = float(np.median(times)), float(np.min(times))
            row[f"nq{nq}_ms"] = round(med * 1e3, 2)
            row[f"nq{nq}_gb_s"] = round(n * args.dim * 4 / med / 1e9, 2)
            row[f"nq{nq}_best_gb_s"] = round(n * args.dim * 4 / best / 1e9, 2)
        row["rss_after_mb"] = rss_mb()
        row["peak_rss_mb"] = peak_mb()
        results.append(row)
    out["results"] = results
    out["ceiling_after"] = memory_ceiling()  # the cores are shared: did the ceiling move?
    cache.close()
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
