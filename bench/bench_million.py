"""Issue #3 benchmark: a million 2048-d vectors through the vector seam. Prints JSON.

    .venv/bin/python bench/bench_million.py                 # 1,000,000 x 2048, pca-ivf
    .venv/bin/python bench/bench_million.py --n 200000      # quick check
    .venv/bin/python bench/bench_million.py --kind pca-ivfpq --dir D --reuse   # after --keep
    .venv/bin/python bench/bench_million.py --via-index --n 200000   # through lookalike.Index
    .venv/bin/python bench/bench_million.py --data real.npy # your own (n, 2048) embeddings

Phases: vectors are added 50,000 per call (``VectorSearch.notify`` after a fake commit,
or ``Index.add_embeddings`` with ``--via-index``), the ANN is built, 200 held-out queries
are searched one at a time (warm), recall@10 is measured against the exact path, exact
search is timed against a plain numpy memory-read ceiling measured in a child process,
and a cold process opens the index and searches once. ``peak_rss_mb`` after each phase
is ``ru_maxrss`` so far: the phase where it jumps dominates.

**The synthetic data, honestly.** Recall on iid Gaussian vectors is meaningless (no
neighbour is much nearer than any other), and perfectly separated clusters make any IVF
look perfect (nprobe=1 finds the cluster), so the generator imitates what matters in
ResNet50 average-pooled features of a photo collection, without claiming to *be* them:

* a 512-d latent space whose variance falls as a power law (``i**-1``), mixed into 2048-d;
* 200 "themes"; ``n / 50`` "scenes" (bursts of similar photos) scattered around them
  (0.8 of the theme spread), with Zipf-distributed sizes (a few big scenes, many small);
* each image = its scene + a within-scene offset (0.35) in the latent space + isotropic
  noise in all 2048 dims (0.3 of the latent scale);
* a non-negative per-dimension offset (gamma-distributed), then ReLU and L2 norm, so
  vectors are non-negative and ~40% zeros, as post-ReLU features are.

Queries are fresh images from the same generator (not in the index). The run prints what
these choices give (``data``): mean cosine of random pairs, mean top-1 / top-10 neighbour
cosine, zero fraction, and the variance the 256-d PCA keeps. Real embeddings differ; the
nprobe tuned at build time adapts, and ``--data`` runs the same measurements on yours.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lookalike.vectors import AnnConfig, VectorSearch


class Embeddings:
    """Deterministic synthetic "embeddings" (see the module docstring); rows are reproducible."""

    def __init__(
        self,
        n: int,
        dim: int = 2048,
        seed: int = 0,
        latent: int = 512,
        per_scene: int = 50,
        themes: int = 200,
        theme_spread: float = 0.8,
        spread: float = 0.35,
        noise: float = 0.3,
        offset: float = 0.3,
        zipf: float = 0.8,
    ) -> None:
        rng = np.random.default_rng(seed)
        scale = np.arange(1, latent + 1, dtype=np.float32) ** np.float32(-0.5)
        unit = np.float32(np.sqrt(float((scale**2).sum()) / latent))
        self.mix = rng.standard_normal((latent, dim), dtype=np.float32) * scale[:, None]
        self.mix /= np.float32(np.sqrt(latent))
        self.base = np.float32(offset) * rng.gamma(1.0, 1.0, dim).astype(np.float32) * unit
        scenes = max(1, n // per_scene)
        theme = rng.standard_normal((themes, latent), dtype=np.float32)
        self.centres = theme[rng.integers(0, themes, scenes)]
        self.centres += np.float32(theme_spread) * rng.standard_normal(
            (scenes, latent), dtype=np.float32
        )
        weight = np.arange(1, scenes + 1, dtype=np.float64) ** -zipf
        self.p = rng.permutation(weight / weight.sum())  # scene sizes vary (Zipf)
        self.noise = np.float32(noise) * unit
        self.spread = np.float32(spread)
        self.seed, self.dim, self.latent = seed, dim, latent

    def rows(self, start: int, stop: int, salt: int = 0) -> np.ndarray:
        """float32 (stop - start, dim) unit vectors."""
        rng = np.random.default_rng([self.seed, salt, start, stop])
        m = stop - start
        z = self.centres[rng.choice(len(self.centres), m, p=self.p)]
        z += self.spread * rng.standard_normal((m, self.latent), dtype=np.float32)
        x = z @ self.mix
        x += self.base
        x += self.noise * rng.standard_normal((m, self.dim), dtype=np.float32)
        np.maximum(x, 0, out=x)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


class FileRows:
    """Rows of a real (n, dim) .npy file, normalised, in the same interface."""

    def __init__(self, path: str) -> None:
        self.data = np.load(path, mmap_mode="r")
        self.dim = self.data.shape[1]

    def rows(self, start: int, stop: int, salt: int = 0) -> np.ndarray:
        x = np.asarray(self.data[start:stop], dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


class SyntheticSource:
    """A VectorSource whose rows are regenerated on demand, never all held in memory."""

    def __init__(self, rows_of, batch: int) -> None:
        self.rows_of, self.batch = rows_of, batch
        self.n = 0
        self.gen = 0

    def generation(self) -> int:
        return self.gen

    def dim(self) -> int | None:
        return self.rows_of.dim if self.n else None

    def count(self) -> int:
        return self.n

    def iter_vectors(self, chunk_rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, self.n, self.batch):
            stop = min(self.n, start + self.batch)
            yield np.arange(start + 1, stop + 1, dtype=np.int64), self.rows_of.rows(start, stop)

    def commit(self, stop: int) -> tuple[int, int]:
        self.n = stop
        self.gen += 1
        return self.gen, self.gen - 1


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


CEILING = r"""
import json, time, numpy as np
a = np.ones((131072, 2048), np.float32)  # 1 GiB
q = np.ones(2048, np.float32)
def best(f):
    f(); t = []
    for _ in range(3):
        s = time.perf_counter(); f(); t.append(time.perf_counter() - s)
    return round(a.nbytes / min(t) / 1e9, 2)
gemv = best(lambda: [a[i:i + 8192] @ q for i in range(0, len(a), 8192)])
total = best(lambda: a.sum())
print(json.dumps({"numpy_matvec_gb_s": gemv, "numpy_sum_gb_s": total}))
"""


def memory_ceiling() -> dict:
    """A plain numpy read of 1 GiB in RAM, in a child so it does not inflate our RSS."""
    out = subprocess.run(
        [sys.executable, "-c", CEILING], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


COLD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from lookalike.vectors import AnnConfig, VectorSearch
sys.path.insert(0, sys.argv[3])
from bench_million import SyntheticSource, Embeddings
q = np.load(sys.argv[2])
src = SyntheticSource(None, 1); src.n = int(sys.argv[4]); src.gen = int(sys.argv[5])
t1 = time.perf_counter()
config = AnnConfig(kind=sys.argv[7], pq_m=int(sys.argv[8]))
vs = VectorSearch(sys.argv[1], src, ann=sys.argv[6], ann_config=config)
vs.search(q[:1], 10)
t2 = time.perf_counter()
vs.search(q[1:2], 10)
t3 = time.perf_counter()
print(json.dumps({"first_search_ms": round((t2 - t1) * 1e3, 1),
                  "second_search_ms": round((t3 - t2) * 1e3, 1),
                  "imports_ms": round((t1 - t0) * 1e3, 1)}))
"""


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(
        np.mean(
            [
                len(set(g[g >= 0]) & set(w[w >= 0])) / max(1, int((w >= 0).sum()))
                for g, w in zip(got, want, strict=True)
            ]
        )
    )


def data_stats(q: np.ndarray, exact_scores: np.ndarray, rows_of) -> dict:
    sample = rows_of.rows(0, 2000, salt=2)
    return {
        "random_pair_cosine": round(float((sample[:1000] @ sample[1000:].T).mean()), 3),
        "top1_cosine": round(float(exact_scores[:, 0].mean()), 3),
        "top10_cosine": round(float(exact_scores[:, 9].mean()), 3),
        "zero_fraction": round(float((sample == 0).mean()), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--kind", default="pca-ivf", choices=["pca-ivf", "pca-ivfpq"])
    ap.add_argument("--pq-m", type=int, default=32, help="PQ bytes per row (pca-ivfpq)")
    ap.add_argument("--nprobe", type=int, default=None)
    ap.add_argument("--candidates", type=int, default=None)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--data", default=None, help="(n, dim) .npy of real embeddings")
    ap.add_argument("--via-index", action="store_true", help="go through lookalike.Index")
    ap.add_argument("--no-durable", action="store_true", help="skip fsyncs")
    ap.add_argument(
        "--reuse", action="store_true", help="reuse the vectors a --keep run left in --dir"
    )
    args = ap.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="lookalike-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {
        "n": args.n,
        "dim": args.dim,
        "batch": args.batch,
        "kind": args.kind,
        "via_index": args.via_index,
        "cpus": os.cpu_count(),
        "dir": str(work),
    }
    out["memory_ceiling"] = memory_ceiling()
    rows_of = FileRows(args.data) if args.data else Embeddings(args.n, args.dim)
    n = min(args.n, len(rows_of.data)) if args.data else args.n
    queries = (
        rows_of.rows(n, n + args.queries) if args.data else rows_of.rows(0, args.queries, salt=1)
    )  # held out: not in the index
    config = AnnConfig(
        kind=args.kind, nprobe=args.nprobe, candidates=args.candidates, pq_m=args.pq_m
    )

    # --- add ------------------------------------------------------------------------
    gen_s = add_s = 0.0
    if args.via_index:
        from lookalike import Index

        index = Index.open(work / "bench.db", ann="on")
    else:
        source = SyntheticSource(rows_of, args.batch)
        vs = VectorSearch(
            work / "bench.db.cache",
            source,
            ann="auto",
            ann_config=config,
            durable=not args.no_durable,
        )
    state = work / "bench.db.cache" / "state.json"
    reuse = args.reuse and not args.via_index and state.exists()
    if reuse:  # vectors of an earlier --keep run: same generator, same batches
        source.n, source.gen = n, json.loads(state.read_text())["generation"]
    for start in range(0, 0 if reuse else n, args.batch):
        stop = min(n, start + args.batch)
        t = time.perf_counter()
        vecs = rows_of.rows(start, stop)
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        ids = np.arange(start + 1, stop + 1, dtype=np.int64)
        if args.via_index:
            index.add_embeddings([f"/bench/img{i:07d}.jpg" for i in ids], vecs)
        else:
            g, prev = source.commit(stop)
            vs.notify(ids, vecs, np.empty(0, np.int64), g, prev)
        add_s += time.perf_counter() - t
        del vecs
    out["add"] = {
        "seconds": round(add_s, 1),
        "generate_seconds": round(gen_s, 1),
        "peak_rss_mb": peak_mb(),
        "reused": reuse,
    }

    # --- build ----------------------------------------------------------------------
    t = time.perf_counter()
    if args.via_index:
        vs = index._vectors.vector_search()  # what Index.update() calls at the end of a run
        vs.ann_config = config
    stats = vs.build_ann(force=reuse)
    out["build"] = dict(
        stats, wall_seconds=round(time.perf_counter() - t, 1), peak_rss_mb=peak_mb()
    )
    out["add_plus_build_seconds"] = round(add_s + out["build"]["wall_seconds"], 1)

    # --- search (warm) --------------------------------------------------------------
    def one(v: np.ndarray, exact: bool = False) -> np.ndarray:
        if args.via_index:
            return np.array([h.path for h in index.search_vector(v, 10, exact=exact)])
        return vs.search(v[None], 10, exact=exact)[1][0]

    for v in queries[:10]:
        one(v)
    times, got = [], []
    for v in queries:
        t = time.perf_counter()
        got.append(one(v))
        times.append((time.perf_counter() - t) * 1e3)
    out["search"] = {
        "queries": len(queries),
        "median_ms": round(float(np.median(times)), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2),
        "max_ms": round(float(np.max(times)), 2),
        "peak_rss_mb": peak_mb(),
    }

    # --- recall against exact ---------------------------------------------------------
    t = time.perf_counter()
    if args.via_index:
        want = [one(v, exact=True) for v in queries]
        r = float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))
        exact_scores = vs.search(queries, 10, exact=True)[0]
    else:
        exact_scores, want = vs.search(queries, 10, exact=True)
        r = recall(np.array(got), want)
    out["recall_at_10"] = round(r, 4)
    out["exact_batch"] = {"queries": len(queries), "seconds": round(time.perf_counter() - t, 2)}
    out["data"] = dict(
        data_stats(queries, exact_scores, rows_of),
        pca256_explained_variance=stats.get("explained_variance"),
    )

    # --- exact, one query at a time ---------------------------------------------------
    nbytes = n * args.dim * 4
    ex = []
    for v in queries[:7]:
        t = time.perf_counter()
        vs.search(v[None], 10, exact=True)
        ex.append(time.perf_counter() - t)
    med = float(np.median(ex[1:]))
    out["exact"] = {
        "median_ms": round(med * 1e3, 1),
        "gb_s": round(nbytes / med / 1e9, 2),
        "scanned_gb": round(nbytes / 1e9, 2),
        "peak_rss_mb": peak_mb(),
    }

    # --- a cold process: open + first search ------------------------------------------
    if not args.via_index:
        np.save(work / "q.npy", queries[:2])
        cold = subprocess.run(
            [
                sys.executable,
                "-c",
                COLD,
                str(work / "bench.db.cache"),
                str(work / "q.npy"),
                str(Path(__file__).parent),
                str(n),
                str(source.gen),
                "auto",
                args.kind,
                str(args.pq_m),
            ],
            capture_output=True,
            text=True,
        )
        out["cold_process"] = (
            json.loads(cold.stdout) if cold.returncode == 0 else {"error": cold.stderr[-500:]}
        )
    out["info"] = {k: v for k, v in vs.info().items() if k != "epoch"}
    out["peak_rss_mb"] = peak_mb()
    vs.close()
    if not args.keep and not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
