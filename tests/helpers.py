"""Setup shared by the tests and the benchmarks (``bench/_common.py`` puts ``tests/`` on
``sys.path``): random-but-realistic model weights, smooth test images, and a
``lookalike serve`` process started and stopped the way a user would."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def smooth_images(n: int, size: tuple[int, int] = (224, 224), seed: int = 0) -> np.ndarray:
    """Random smooth colour images, more like photos than pixel noise.

    Returns:
        (n, H, W, 3) uint8.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=gen)
    img = torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    img = img + 0.04 * torch.randn(n, 3, *size, generator=gen)  # a little texture
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_random_model(path: Path, name: str, seed: int = 0, **kwargs: Any) -> Path:
    """Save a random-init timm model *with* its classifier head, like a hub file."""
    import timm
    import torch
    from safetensors.torch import save_file

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = timm.create_model(name, pretrained=False, **kwargs).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def calibrate_batch_norms(model: Any, pixels: np.ndarray) -> Any:
    """Set every batch norm's statistics to those of ``pixels`` ((n, H, W, 3) uint8, one
    pass), so a random network's activations look like a trained one's; returns it in
    eval mode."""
    import torch

    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one pass gives the batch's exact statistics
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        model.train()(((x / 255) - mean) / std)
    return model.eval()


def start_server(args: Sequence[str], env: dict[str, str], wait: float = 30) -> tuple[Any, str]:
    """``python -m lookalike serve --port 0 --no-open ARGS``, once it answers: (process, URL).

    Raises:
        AssertionError: it did not answer within ``wait`` seconds (its stderr attached).
    """
    cmd = [sys.executable, "-m", "lookalike", "serve", "--port", "0", "--no-open", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()  # type: ignore[union-attr]
    deadline = time.time() + wait
    while True:  # poll until it answers
        try:
            with urllib.request.urlopen(url, timeout=5):
                return proc, url
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(f"server did not come up: {proc.stderr.read()}") from None  # type: ignore[union-attr]
            time.sleep(0.2)


def stop_server(proc: Any, timeout: float = 20) -> tuple[int, str]:
    """Stop a :func:`start_server` process with Ctrl-C: (exit code, its stderr).

    Raises:
        subprocess.TimeoutExpired: it did not stop (it is killed first).
    """
    proc.send_signal(2)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, err
