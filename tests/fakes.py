"""Test doubles. The fake embedder is deterministic and torch-free: its vector is the
downsampled, centred pixels, so identical images give identical vectors (score 1.0)."""

from __future__ import annotations

import numpy as np

from lookalike.setup import Preprocess, Setup


class PixelEmbedder:
    def __init__(self, side: int = 16, model: str = "fake-pixels", batch_size: int = 4) -> None:
        self.setup = Setup(
            model=model,
            weights="none",
            pool="avg",
            preprocess=Preprocess(size=(side, side), mode="resize", interpolation="bilinear"),
            dim=side * side * 3,
        )
        self.batch_size = batch_size
        self.device = "cpu"
        self.precision = "fp32"
        self.embedded = 0

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        assert pixels.dtype == np.uint8 and pixels.ndim == 4
        self.embedded += len(pixels)
        x = pixels.reshape(len(pixels), -1).astype(np.float32) - 127.5
        n = np.linalg.norm(x, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = x / n
        out[n[:, 0] == 0] = np.nan
        return out.astype(np.float32)


def photo(path, seed: int, size=(64, 48)):
    """Write a smooth random colour image (distinct per seed); returns the path."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def make_photos(folder, n: int, size=(64, 48), ext: str = "jpg"):
    for i in range(n):
        photo(folder / f"p{i:04d}.{ext}", i, size)
    return folder
