"""The pixel batch every embedder takes, checked once for all of them (no torch here)."""

from __future__ import annotations

import numpy as np

from ..setup import Setup


def check_pixels(pixels: np.ndarray, setup: Setup) -> np.ndarray:
    """``pixels`` as an array of shape (n, H, W, 3), uint8, with (H, W) = the model's input.

    Raises:
        ValueError: wrong dtype or shape (a bug in the caller, not a user error).
    """
    arr = np.asarray(pixels)
    size = setup.preprocess.size
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (*size, 3):
        raise ValueError(
            f"expected (n, {size[0]}, {size[1]}, 3) uint8 pixels, got {arr.shape} {arr.dtype}"
        )
    return arr
