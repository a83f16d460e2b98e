#!/usr/bin/env python3
"""Search by words (issue #10): CLIP image indexing against the machine's ceiling, and
text-query latency on a 100,000-vector CLIP index (warm in-process, and a cold process).

    python bench/bench_clip.py                       # ViT-B-32, 120 photo-like JPEGs
    python bench/bench_clip.py --arch ViT-B-32-256 --n 200

Ceiling: dense matmul FLOP/s through torch (2048³, best of 3 × 12), bf16 and fp32, measured
before and after in the same run; the higher of the four readings is the machine's best
matrix rate (on CPUs without bf16 hardware bf16 is emulated and slower than fp32, so the
bf16 reading alone would flatter any fp32 model). The model's FLOPs per image come from
``torch.utils.flop_counter`` on the visual tower (2 FLOPs per multiply-add).

Indexing: ``lookalike index`` of the corpus with ``--model clip:ARCH --weights RANDOM`` in a
fresh DB, after a tiny folder has been indexed so the shared compiled-model cache holds the
model (as after a user's first run). ``images_per_second`` is the embedding rate the report
gives; the whole process (start-up included) is reported too.

Text queries: the index gets 100,000 random unit vectors (``add_embeddings``); warm = median
of ``Index.search_text`` in one process after a first call (tokenizer, text tower and search,
exact and with the approximate index); cold = median wall time of 3 whole ``lookalike search
--text`` processes (after one that compiles the text tower into the model cache).
Random weights: same cost as trained ones.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import ROOT, corpus, lookalike_cmd, matmul_ceiling, timed

QUERY = "a red bicycle leaning on a wall"


def synthetic_corpus(n: int) -> Path:
    """``n`` photo-like 480x360 JPEGs (smooth colour fields and texture), where
    ``shared/bench/make_corpus.py`` is not at hand."""
    import numpy as np
    from PIL import Image

    out = ROOT / "bench" / "out" / f"synthetic_{n}"
    if len(list(out.glob("*.jpg"))) >= n:
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ys, xs = np.linspace(0, 1, 360)[:, None, None], np.linspace(0, 1, 480)[None, :, None]
    for i in range(n):
        c = rng.uniform(0, 255, (4, 3))
        img = c[0] * (1 - ys) * (1 - xs) + c[1] * ys * (1 - xs) + c[2] * (1 - ys) * xs
        img = img + c[3] * ys * xs + rng.normal(0, 12, (360, 480, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            out / f"{i:05d}.jpg", quality=90
        )
    return out


def clip_weights(arch: str) -> Path:
    """Random-init open_clip weights for ``arch`` (whole model) as .safetensors."""
    path = ROOT / "bench" / "out" / f"clip_{arch}_random.safetensors"
    if not path.exists():
        import torch
        from safetensors.torch import save_file

        from lookalike.embed.clip.embedder import build_model, model_config

        torch.manual_seed(0)
        model = build_model(model_config(arch)[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def gflop_per_image(arch: str) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lookalike.embed.clip.embedder import build_model, model_config

    model = build_model(model_config(arch)[0])
    size = model.visual.image_size
    size = size if isinstance(size, int) else size[0]
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.visual(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def matmul_rate(dtype: str, seconds: float = 1.5) -> float:
    """Best dense matmul FLOP/s over three time-bounded windows (2048³, or 512³ where a
    product is slow, e.g. bf16 emulated on a CPU without bf16 hardware: ~0.2 GFLOP/s)."""
    import torch

    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    n = 512
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    t = time.perf_counter()
    a @ b
    if time.perf_counter() - t < 0.05:
        return matmul_ceiling(dtype)  # the same measure as the other benchmarks
    best = 0.0
    for _ in range(3):
        t, reps = time.perf_counter(), 0
        while time.perf_counter() - t < seconds / 3:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def ceilings() -> dict[str, float]:
    return {d: matmul_rate(d) for d in ("bf16", "fp32")}


def text_latency(
    db: str, weights: Path, model: str, n_vectors: int, device: str, exact: bool
) -> dict[str, float]:
    import numpy as np

    from lookalike import Index

    with Index.open(db, model=model, weights=str(weights), device=device) as idx:
        dim = idx.setup.dim
        rng = np.random.default_rng(0)
        for start in range(0, n_vectors, 20_000):
            m = min(20_000, n_vectors - start)
            paths = [f"/bench/vec/{start + i}.jpg" for i in range(m)]
            idx.add_embeddings(paths, rng.normal(size=(m, dim)).astype(np.float32))
        from lookalike.query import Query

        query = Query.build(text=[QUERY])
        cases = {
            "embed_text": lambda: idx.embed_text(QUERY),
            "search_text_exact": lambda: idx.search_query(query, k=10, exact=True),
        }
        if not exact:  # the approximate index, built by the first search at 100k
            cases["search_text"] = lambda: idx.search_text(QUERY, k=10)
        for fn in cases.values():
            fn()  # text tower compiled and cached; ANN built
        out = {}
        for label, fn in cases.items():
            times = []
            for _ in range(15):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            out[f"warm_{label}_ms"] = round(1000 * statistics.median(times), 2)
        out["text_index_images"] = idx.info()["images"]
        out["text_backend"] = idx._text_search.encoder.backend
    return out


def model_only(db: str, weights: Path, model: str, device: str) -> dict[str, float]:
    """Images/s of the index's compiled image model alone (no decoding), on smooth random
    pixels, with 8 (shipped), 16 and 32 images per OpenVINO request."""
    import numpy as np

    from lookalike import Index
    from lookalike.embed.runtime import openvino as ovr

    out: dict[str, float] = {}
    shipped = ovr.PER_REQUEST_BATCH
    try:
        for per_request in (shipped, 16, 32):
            ovr.PER_REQUEST_BATCH = per_request
            with Index.open(db, model=model, weights=str(weights), device=device) as idx:
                emb = idx._model.get_embedder()
                h, w = idx.setup.preprocess.size
                px = np.random.default_rng(0).integers(0, 255, (256, h, w, 3), dtype=np.uint8)
                emb.embed_pixels(px[:64])
                t = time.perf_counter()
                emb.embed_pixels(px)
                out[f"model_only_req{per_request}_images_per_second"] = round(
                    len(px) / (time.perf_counter() - t), 1
                )
                out["model_only_backend"] = getattr(emb, "backend", "open_clip")
    finally:
        ovr.PER_REQUEST_BATCH = shipped
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--device", default="auto", help="--device of lookalike (cpu, cuda, auto)")
    ap.add_argument(
        "--synthetic", action="store_true", help="generated JPEGs instead of make_corpus.py"
    )
    ap.add_argument(
        "--exact", action="store_true", help="text queries without the approximate index"
    )
    args = ap.parse_args()
    model = f"clip:{args.arch}"
    make = synthetic_corpus if args.synthetic else corpus
    folder = make(args.n)
    weights = clip_weights(args.arch)
    gflop = gflop_per_image(args.arch)
    before = ceilings()
    tmp = tempfile.mkdtemp()
    try:
        base = [*lookalike_cmd(), "index", "--model", model, "--weights", str(weights)]
        base += ["--device", args.device]
        prime = make(8)
        timed([*base, str(prime), "--db", os.path.join(tmp, "prime.db")])
        cmd = [*base, str(folder), "--db", os.path.join(tmp, "bench.db"), "--json"]
        wall, p = timed(cmd)
        report = json.loads(p.stdout)
        db = os.path.join(tmp, "text.db")
        timed([*base, str(prime), "--db", db])
        alone = model_only(os.path.join(tmp, "prime.db"), weights, model, args.device)
        latency = text_latency(db, weights, model, args.vectors, args.device, args.exact)
        search = [*lookalike_cmd(), "search", "--text", QUERY, "--db", db, "--json"]
        search += ["--device", args.device] + (["--exact"] if args.exact else [])
        timed(search)  # the text tower's compiled copy exists already: this is a cold process
        cold = [timed(search)[0] for _ in range(3)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    after = ceilings()
    best = max(*before.values(), *after.values())
    ceiling_ips = best / (gflop * 1e9)
    ips = report["images_per_second"]
    n = report["added"]
    out = {
        "model": model,
        "gflop_per_image": round(gflop, 3),
        "matmul_gflops_before": {k: round(v / 1e9) for k, v in before.items()},
        "matmul_gflops_after": {k: round(v / 1e9) for k, v in after.items()},
        "ceiling_images_per_second": round(ceiling_ips, 1),
        "images": n,
        "images_per_second": ips,
        "ratio_embedding_to_ceiling": round(ips / ceiling_ips, 3),
        "process_seconds": round(wall, 2),
        "ratio_process_to_ceiling": round(n / wall / ceiling_ips, 3),
        **alone,
        **{
            k.replace("images_per_second", "ratio_to_ceiling"): round(v / ceiling_ips, 3)
            for k, v in alone.items()
            if isinstance(v, float)
        },
        **latency,
        "cold_search_text_seconds": [round(c, 2) for c in cold],
        "cold_search_text_median_seconds": round(statistics.median(cold), 2),
        "index_command": " ".join(cmd),
        "search_command": " ".join(search),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
