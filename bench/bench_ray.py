#!/usr/bin/env python3
"""``--engine ray`` against the local engine, side by side in one run (issue #13).

    python bench/bench_ray.py                     # 300 photo-like JPEGs, ResNet50
    python bench/bench_ray.py --n 300 --reps 2 --no-cli
    python bench/bench_ray.py --synthetic 20000 --no-cli   # a GPU machine: one actor per GPU

In one process: a local Ray cluster of this machine's cores (``ray.init``, timed), then
``Index.update`` with ``engine="local"`` and ``engine="ray"`` on the same corpus into fresh
indexes, alternating which goes first (the model was compiled once before, as after a
user's first run). For each engine: the whole update's rate, the steady rate (from the
first committed batch to the last) and the start-up (to the first committed batch); then
the ratios ray / local. The driver's ceiling (files/s scanned, planned and committed when
vectors arrive at once, :class:`InstantEngine`; ``--driver-only`` measures just that)
bounds what a cluster of any size can feed into one index. Unless ``--no-cli``: whole
processes, ``lookalike index`` against ``lookalike index --engine ray`` (which starts its
own local cluster), for the start-up a user sees. Random ResNet50 weights (hub downloads
fail here): the same cost as trained ones. The load average (other programs on the
machine) is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import corpus, lookalike_cmd, random_weights, timed


def synthetic(n: int) -> Path:
    """``n`` smooth random-colour 400x300 JPEGs (for machines without the corpus tools)."""
    from PIL import Image

    out = Path(__file__).resolve().parent / "out" / f"synthetic_{n}"
    if not (out / "done").exists():
        out.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(n):
            small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((400, 300), Image.Resampling.BILINEAR)
            img.save(out / f"p{i:06d}.jpg", quality=90)
        (out / "done").write_text("")
    return out


def vectors(db: Path) -> dict[bytes, np.ndarray]:
    from lookalike import Index

    with Index.open(db) as idx:
        store, out = idx._store, {}
        for ids, vecs in store.iter_vectors():
            names = store.paths_for([int(i) for i in ids])
            out.update({names[int(i)]: v for i, v in zip(ids, vecs, strict=True)})
    return out


def run_update(folder: Path, db: Path, engine: str, model: str, weights: Path) -> dict:
    """One ``Index.update``; its timings from the progress callbacks."""
    from lookalike import Index
    from lookalike.engine.ray_engine import RayEngine

    marks: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    with Index.open(db, model=model, weights=weights) as idx:
        runner: object = engine
        if engine == "ray":
            runner = RayEngine(options=idx._model.effective_options, limits=idx._decode_limits)
        report = idx.update(
            folder,
            engine=runner,
            on_progress=lambda p: marks.append((time.perf_counter(), p.done)),
        )
    wall = time.perf_counter() - t0
    (t_first, n_first), (t_last, n_last) = marks[0], marks[-1]
    out = {
        "engine": engine,
        "images": report.embedded,
        "seconds": round(wall, 2),
        "images_per_second": round(report.embedded / wall, 2),
        "steady_images_per_second": round((n_last - n_first) / max(t_last - t_first, 1e-9), 2),
        "seconds_to_first_commit": round(t_first - t0, 2),
    }
    if engine == "ray":
        stats = runner.stats  # type: ignore[attr-defined]
        out["actors"] = stats.actors
        out["actor_busy_seconds"] = round(stats.worker_seconds, 2)
    return out


class InstantEngine:
    """An engine whose vectors are ready at once: what the driver alone can take in.

    Scanning, planning, the store write and the vector cache's update per batch, as a run
    with ``--engine ray`` does them, with no decoding or model anywhere: the ceiling that
    one driver puts on a cluster of any size.
    """

    name = "instant"

    def __init__(self, dim: int, batch: int = 64) -> None:
        self.dim, self.batch = dim, batch

    def run(self, tasks, get_embedder):
        from lookalike.decode import DecodeResult

        rng = np.random.default_rng(0)
        for i in range(0, len(tasks), self.batch):
            part = tasks[i : i + self.batch]
            vecs = rng.standard_normal((len(part), self.dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            yield [
                (DecodeResult(t.key, t.path, None, f"{t.key:032x}", False, None, ""), v)
                for t, v in zip(part, vecs, strict=True)
            ]


class _NoModel:
    """The setup an index records; never asked to embed (the engine brings vectors)."""

    def __init__(self, dim: int) -> None:
        from lookalike.setup import Preprocess, Setup

        self.setup = Setup("bench-instant", "none", "avg", Preprocess(), dim)
        self.batch_size, self.device, self.precision = 64, "cpu", "fp32"

    def embed_pixels(self, pixels):
        raise AssertionError("the instant engine embeds nothing here")


def driver_ceiling(tmp: Path, n: int = 4096, dim: int = 2048, batch: int = 64) -> float:
    """Files/s one driver scans, plans and commits when vectors arrive instantly."""
    from lookalike import Index

    folder = tmp / "instant"
    folder.mkdir(exist_ok=True)
    for i in range(n):  # never read: the engine brings their vectors
        (folder / f"f{i:06d}.jpg").write_bytes(b"x")
    with Index.open(tmp / f"instant{batch}.db", embedder=_NoModel(dim)) as idx:
        t = time.perf_counter()
        report = idx.update(folder, engine=InstantEngine(dim, batch))
        wall = time.perf_counter() - t
    assert report.added == n, report
    return n / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--reps", type=int, default=2, help="runs of each engine, alternating")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-process runs")
    ap.add_argument("--synthetic", type=int, metavar="N", help="N synthetic JPEGs, not --n")
    ap.add_argument(
        "--driver-only", action="store_true", help="only the driver's ceiling (no model)"
    )
    args = ap.parse_args()
    import ray

    load_before = os.getloadavg()
    if args.driver_only:
        tmp = Path(tempfile.mkdtemp())
        try:
            ips = {b: round(driver_ceiling(tmp, batch=b)) for b in (64, 512)}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        load = [round(x, 2) for x in load_before]
        print(json.dumps({"driver_ceiling_files_per_second_by_batch": ips, "load_average": load}))
        return
    folder = synthetic(args.synthetic) if args.synthetic else corpus(args.n)
    weights = random_weights(args.model)
    tmp = Path(tempfile.mkdtemp())
    # One model cache for this process, the cluster's workers and the CLI runs.
    os.environ["LOOKALIKE_CACHE"] = str(tmp / "models")
    os.environ.pop("RAY_ADDRESS", None)
    try:
        small = synthetic(8) if args.synthetic else corpus(8)
        prime = run_update(small, tmp / "prime.db", "local", args.model, weights)
        t = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        init_seconds = time.perf_counter() - t
        runs: dict[str, list[dict]] = {"local": [], "ray": []}
        for rep in range(args.reps):
            order = ("local", "ray") if rep % 2 == 0 else ("ray", "local")
            for engine in order:
                db = tmp / f"{engine}{rep}.db"
                runs[engine].append(run_update(folder, db, engine, args.model, weights))
        ray.shutdown()
        a, b = vectors(tmp / "local0.db"), vectors(tmp / "ray0.db")
        assert sorted(a) == sorted(b)
        min_cosine = min(float(np.dot(a[p], b[p])) for p in a)
        ceiling = {n: round(driver_ceiling(tmp, batch=n)) for n in (64, 512)}
        cli = {}
        if not args.no_cli:
            for engine in ("local", "ray"):
                cmd = [*lookalike_cmd(), "index", str(folder), "--db", str(tmp / f"cli-{engine}")]
                cmd += ["--model", args.model, "--weights", str(weights), "--json"]
                cmd += ["--engine", engine]
                wall, p = timed(cmd)
                cli[engine] = {"seconds": round(wall, 2), "report": json.loads(p.stdout)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    def best(engine: str, key: str) -> float:
        return max(r[key] for r in runs[engine])

    def med(engine: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[engine])

    out = {
        "corpus": str(folder),
        "model": args.model,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "prime_seconds": prime["seconds"],
        "ray_init_seconds": round(init_seconds, 2),
        "runs": runs,
        "ratio_ray_to_local_whole_update_best": ratio(
            best("ray", "images_per_second"), best("local", "images_per_second")
        ),
        "ratio_ray_to_local_steady_best": ratio(
            best("ray", "steady_images_per_second"), best("local", "steady_images_per_second")
        ),
        "ratio_ray_to_local_steady_median": ratio(
            med("ray", "steady_images_per_second"), med("local", "steady_images_per_second")
        ),
        "startup_extra_seconds_in_process": round(
            med("ray", "seconds_to_first_commit") - med("local", "seconds_to_first_commit"), 2
        ),
        "min_cosine_ray_vs_local": round(min_cosine, 6),
        "driver_ceiling_files_per_second_by_batch": ceiling,
    }
    if cli:
        out["cli_seconds"] = {k: v["seconds"] for k, v in cli.items()}
        out["cli_startup_extra_seconds"] = round(cli["ray"]["seconds"] - cli["local"]["seconds"], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
