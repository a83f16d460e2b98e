#!/usr/bin/env python3
"""Peak resident memory of `lookalike index` for 1k vs 10k images (issue #3: <= 1.5x).

    python bench/bench_memory.py            # --small 1000 --large 10000

Each run is a fresh `lookalike index` process on a photo-like corpus (make_corpus.py);
peak RSS is the largest of that process and its decode workers (RUSAGE_CHILDREN).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time

from _common import corpus, lookalike_cmd, random_weights


def peak_rss_mb(cmd: list[str]) -> tuple[float, float, dict]:
    """Run ``cmd`` in a fresh helper process and return (peak RSS MB, seconds, report)."""
    code = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        f"p = subprocess.run({cmd!r}, capture_output=True, text=True)\n"
        "assert p.returncode == 0, p.stderr\n"
        "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,"
        " time.perf_counter() - t, json.loads(p.stdout)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss, secs, report = json.loads(out.stdout)
    return rss, secs, report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=10000)
    args = ap.parse_args()
    weights = random_weights("resnet50")
    rows = {}
    for n in (args.small, args.large):
        folder = corpus(n)
        tmp = tempfile.mkdtemp()
        try:
            cmd = [
                *lookalike_cmd(),
                "index",
                str(folder),
                "--db",
                f"{tmp}/m.db",
                "--model",
                "resnet50",
                "--weights",
                str(weights),
                "--json",
            ]
            rss, secs, report = peak_rss_mb(cmd)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rows[n] = {
            "peak_rss_mb": round(rss),
            "seconds": round(secs, 1),
            "images_per_second": report["images_per_second"],
        }
    ratio = rows[args.large]["peak_rss_mb"] / rows[args.small]["peak_rss_mb"]
    print(
        json.dumps(
            {
                "runs": rows,
                "ratio_large_to_small": round(ratio, 3),
                "when": time.strftime("%Y-%m-%d %H:%M"),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
