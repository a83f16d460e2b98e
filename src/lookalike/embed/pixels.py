"""The pixel batch every embedder takes, checked once for all of them (no torch here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..setup import Setup

if TYPE_CHECKING:
    import torch


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


def check_tensor(x: torch.Tensor) -> torch.Tensor:
    """``x`` checked to be an already-normalised float tensor of shape (n, 3, H, W).

    Raises:
        ValueError: not a 4-D, 3-channel float tensor (a bug in the caller).
    """
    import torch

    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an (n, 3, H, W) float tensor, got {getattr(x, 'shape', x)}")
    if not x.is_floating_point():
        raise ValueError(f"expected a float tensor, got {x.dtype}")
    return x
