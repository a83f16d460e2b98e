"""Shared pieces of the benchmark scripts: the machine's ceiling, corpora, weights.

The setup the tests also need (random weights, batch-norm calibration, starting
``lookalike serve``) is in ``tests/helpers.py``, put on ``sys.path`` here and imported
by both, not written twice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
RESNET50_GFLOP = 8.2  # per 224x224 image, forward pass


def matmul_ceiling(dtype: str = "bf16", n: int = 2048, reps: int = 12) -> float:
    """Measured dense matmul FLOP/s of this machine (all threads torch uses)."""
    import torch

    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def corpus(n: int, big: bool = False) -> Path:
    """A photo-like corpus from shared/bench/make_corpus.py, built once and reused."""
    out = ROOT / "bench" / "out" / f"corpus_{n}{'_big' if big else ''}"
    if not (out / "groups.json").exists():
        args = [sys.executable, str(SHARED / "make_corpus.py"), str(out), str(n)]
        subprocess.run(args + (["--big"] if big else []), check=True, stdout=sys.stderr)
    return out


def random_weights(model: str = "resnet50") -> Path:
    """Random-init weights for ``model`` as .safetensors (hub downloads fail here)."""
    from helpers import save_random_model

    path = ROOT / "bench" / "out" / f"{model}_random.safetensors"
    if not path.exists():
        save_random_model(path, model, seed=0)
    return path


def lookalike_cmd() -> list[str]:
    return [sys.executable, "-m", "lookalike"]


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return wall, p


def forget_looks(db: str | os.PathLike[str]) -> None:
    """Remove the second look's verdicts an earlier run remembered beside index ``db``
    (``<db>.cache/looks/``): a timed run is then a first run."""
    import shutil

    shutil.rmtree(f"{os.fspath(db)}.cache/looks", ignore_errors=True)
