#!/usr/bin/env python3
"""Indexing throughput as a fraction of this machine's bf16 matmul ceiling (issue #3).

    python bench/bench_index.py                 # 300 photo-like JPEGs (400-640 px)
    python bench/bench_index.py --n 60 --big    # 12-megapixel JPEGs
    python bench/bench_index.py --n 60 --big --steady 300   # + steady-state rate, 60 vs 300

Ceiling = measured bf16 matmul FLOP/s / 8.2 GFLOP per ResNet50 image, measured in the same
run before and after. Reports `images_per_second` (embedding time) and the whole
`lookalike index` process (start-up included), each as a ratio to the ceiling.
Random weights (hub downloads fail here): same cost as the real ones. Unless
`--cold-model`, a tiny folder is indexed first so the shared compiled-model cache holds the
model (as after a user's first run); the measured process then loads it instead of timm.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

from _common import RESNET50_GFLOP, corpus, lookalike_cmd, matmul_ceiling, random_weights, timed


def decode_only_rate(folder) -> float:
    """Images/s of decoding alone (workers = cores, no model): the input pipeline's bound."""
    import time

    from lookalike.decode import DecodePool, DecodeTask
    from lookalike.setup import Preprocess

    files = sorted(p for p in folder.iterdir() if p.suffix == ".jpg")
    tasks = [
        DecodeTask(i, os.fsencode(p), p.stat().st_size, p.stat().st_mtime_ns)
        for i, p in enumerate(files)
    ]
    with DecodePool(Preprocess()) as pool:
        list(pool.map(tasks[:4]))  # workers started
        t = time.perf_counter()
        results = list(pool.map(tasks))
        elapsed = time.perf_counter() - t
    assert all(r.pixels is not None for r in results)
    return len(files) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--extra", default="", help="extra flags for lookalike index")
    ap.add_argument(
        "--steady",
        type=int,
        default=0,
        metavar="N2",
        help="also index a corpus of N2 images (same kind) and report the steady-state rate "
        "(N2 - N) / (t2 - t1): whole processes, start-up cancelled out",
    )
    ap.add_argument(
        "--cold-model",
        action="store_true",
        help="first-ever run of a model: an empty model cache (a fresh LOOKALIKE_CACHE), "
        "so timm builds the model and it is converted and saved during the run",
    )
    args = ap.parse_args()
    folder = corpus(args.n, args.big)
    weights = random_weights("resnet50")
    before = matmul_ceiling("bf16")
    tmp = tempfile.mkdtemp()
    env = {"LOOKALIKE_CACHE": os.path.join(tmp, "models")} if args.cold_model else {}
    if not args.cold_model:  # steady state: the model was compiled once before, as for a user
        prime = corpus(8)
        timed(
            [
                *lookalike_cmd(),
                "index",
                str(prime),
                "--db",
                os.path.join(tmp, "prime.db"),
                "--model",
                "resnet50",
                "--weights",
                str(weights),
            ]
        )

    def index_once(folder, name: str) -> tuple[float, dict, list[str]]:
        cmd = [
            *lookalike_cmd(),
            "index",
            str(folder),
            "--db",
            os.path.join(tmp, name),
            "--model",
            "resnet50",
            "--weights",
            str(weights),
            "--json",
            *args.extra.split(),
        ]
        wall, p = timed(cmd, env)
        return wall, json.loads(p.stdout), cmd

    try:
        wall, report, cmd = index_once(folder, "bench.db")
        steady = None
        if args.steady:
            wall2, report2, _ = index_once(corpus(args.steady, args.big), "steady.db")
            steady = (report2["added"] - report["added"]) / (wall2 - wall)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    decode_ips = decode_only_rate(folder)
    after = matmul_ceiling("bf16")
    ceiling_flops = max(before, after)
    ceiling_ips = ceiling_flops / (RESNET50_GFLOP * 1e9)
    n = report["added"]
    out = {
        "corpus": str(folder),
        "images": n,
        "failed": len(report["failed"]),
        "bf16_matmul_gflops": [round(before / 1e9), round(after / 1e9)],
        "ceiling_images_per_second": round(ceiling_ips, 1),
        "images_per_second": report["images_per_second"],
        "ratio_embedding_to_ceiling": round(report["images_per_second"] / ceiling_ips, 3),
        "decode_only_images_per_second": round(decode_ips, 1),
        "process_seconds": round(wall, 2),
        "process_images_per_second": round(n / wall, 2),
        "ratio_process_to_ceiling": round(n / wall / ceiling_ips, 3),
        "command": " ".join(cmd),
    }
    if steady is not None:
        out["steady_images_per_second"] = round(steady, 1)
        out["ratio_steady_to_ceiling"] = round(steady / ceiling_ips, 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
