"""The TorchScript backend: a frozen, traced timm embedder, run without timm.

The fallback of :mod:`lookalike.embed.runtime.compiled` where OpenVINO is not installed. The module
takes normalised NCHW float tensors (channels-last); :class:`TorchScriptEmbedder` does the
normalisation from uint8 pixels, as :class:`~lookalike.embed.timm_embedder.TimmEmbedder`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...setup import Setup
from ..pixels import check_pixels, check_tensor
from .openvino import unit_rows


class TorchScriptEmbedder:
    """A saved frozen TorchScript module as an :class:`~lookalike.embed.Embedder` (CPU).

    Same input handling and output as :class:`~lookalike.embed.timm_embedder.TimmEmbedder`,
    which traced the module; timm is not needed to run it.

    Attributes:
        setup: what produces the vectors.
        device: ``"cpu"``.
        precision: ``"bf16"`` or ``"fp32"``.
        batch_size: images per forward pass.
        backend: ``"torch"``.
    """

    backend = "torch"
    device = "cpu"

    def __init__(self, module: Any, setup: Setup, precision: str, batch_size: int) -> None:
        import torch

        self._torch = torch
        self.setup = setup
        self.precision = precision
        self.batch_size = batch_size
        self._net = module
        self._dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        mean = torch.tensor(setup.preprocess.mean).view(1, 3, 1, 1)
        std = torch.tensor(setup.preprocess.std).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std

    def __repr__(self) -> str:
        s = self.setup
        return f"TorchScriptEmbedder({s.model}, pool={s.pool}, precision={self.precision})"

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB at ``setup.preprocess.size`` -> (n, dim) float32 unit rows
        (all-NaN rows where the output was non-finite or ~zero).

        Raises:
            ValueError: wrong dtype or shape.
        """
        torch = self._torch
        arr = check_pixels(pixels, self.setup)
        out = np.empty((arr.shape[0], self.setup.dim), np.float32)
        for start in range(0, arr.shape[0], self.batch_size):
            chunk = np.array(arr[start : start + self.batch_size], copy=True, order="C")
            # The NHWC -> NCHW view has channels-last strides; float() keeps them.
            x = torch.from_numpy(chunk).permute(0, 3, 1, 2).float()
            x = x.mul_(self._scale).sub_(self._shift).to(self._dtype)
            out[start : start + len(chunk)] = self._run(x)
        return out

    def embed_tensor(self, x: Any) -> np.ndarray:
        """(n, 3, H, W) already-normalised float tensor -> (n, dim) float32, as above."""
        check_tensor(x)
        out = np.empty((x.shape[0], self.setup.dim), np.float32)
        for start in range(0, x.shape[0], self.batch_size):
            batch = x[start : start + self.batch_size].to("cpu", self._dtype)
            out[start : start + len(batch)] = self._run(batch)
        return out

    def _run(self, x: Any) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            y = self._net(x.contiguous(memory_format=torch.channels_last))
        return unit_rows(y.float().numpy())
