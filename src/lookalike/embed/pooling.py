"""From a model's feature output to one vector per image.

``model.forward_features(x)`` gives one of three layouts:

- ``"NCHW"``: a convolutional feature map (ResNet, EfficientNet, ConvNeXt), shape (n, C, H, W);
- ``"NHWC"``: the same with channels last (Swin, MambaOut), shape (n, H, W, C);
- ``"tokens"``: anything else, typically (n, tokens, C) from a transformer (ViT, DINOv2, CLIP).

Pools (:data:`lookalike.setup.POOLS`):

- ``avg``: mean over H and W, C values. On ResNet50 this is the seed's global average
  pooling (2048-d) and equals timm's own ``forward`` with ``num_classes=0``.
- ``gem``: generalised mean ``mean(clamp(x, 1e-6) ** 3) ** (1/3)`` over H and W, C values.
- ``max``: maximum over H and W, C values.
- ``flatten``: the whole map, H*W*C values in (H, W, C) order, i.e. element
  ``(h * W + w) * C + c``: Keras' ``Flatten`` of a channels-last map, so on ResNet50 at
  224x224 it is the seed's 7x7x2048 = 100352-d vector, element for element.
- ``token``: the model's own head pooling, ``model.forward_head(feats, pre_logits=True)``
  (class token or token average for ViTs, the head's pooling and norm for ConvNeXt-style
  heads). The default for token and NHWC outputs; available for every model.

avg/gem/max/flatten need a spatial map: on token outputs they raise :class:`ConfigError`.
Pooling runs in fp32 whatever the model's precision.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

GEM_P = 3.0
GEM_EPS = 1e-6
SPATIAL_POOLS = ("avg", "gem", "max", "flatten")


def feature_layout(model: Any, feats: torch.Tensor) -> str:
    """Which layout a model's ``forward_features`` output has.

    Args:
        model: the timm model that produced ``feats``.
        feats: its ``forward_features`` output for a probe batch.

    Returns:
        ``"NCHW"``, ``"NHWC"`` or ``"tokens"``.
    """
    if feats.ndim != 4:
        return "tokens"
    fmt = getattr(model, "output_fmt", None)
    if fmt is not None and str(getattr(fmt, "value", fmt)).upper() == "NHWC":
        return "NHWC"
    channels = getattr(model, "num_features", None)
    if channels and feats.shape[1] != channels and feats.shape[-1] == channels:
        return "NHWC"
    return "NCHW"


def default_pool(layout: str) -> str:
    """``avg`` for NCHW feature maps, ``token`` (the model's own pooling) otherwise."""
    return "avg" if layout == "NCHW" else "token"


def check_pool(pool: str, layout: str, *, model_name: str, shape: tuple[int, ...]) -> None:
    """Refuse a spatial pool on a model without a spatial feature map.

    Raises:
        ConfigError: ``pool`` is avg/gem/max/flatten and ``layout`` is ``"tokens"``.
    """
    if pool in SPATIAL_POOLS and layout == "tokens":
        raise ConfigError(
            f"pooling {pool!r} needs a convolutional feature map (n, C, H, W), but {model_name} "
            f"gives token features of shape {tuple(shape)}; use pooling 'token' "
            "(the model's own pooling)"
        )


def pool_features(model: Any, feats: torch.Tensor, pool: str, layout: str) -> torch.Tensor:
    """One vector per image from ``forward_features`` output.

    Args:
        model: the timm model (its ``forward_head`` is used by ``token``).
        feats: (n, C, H, W), (n, H, W, C) or token features, any float dtype.
        pool: one of :data:`lookalike.setup.POOLS`, already checked against ``layout``.
        layout: from :func:`feature_layout`.

    Returns:
        (n, dim) float32, not normalised.
    """
    if pool == "token":
        return model.forward_head(feats, pre_logits=True).float()
    if layout == "NHWC":
        feats = feats.permute(0, 3, 1, 2)
    x = feats.float()
    if pool == "avg":
        return x.mean((2, 3))
    if pool == "gem":
        return x.clamp(min=GEM_EPS).pow(GEM_P).mean((2, 3)).pow(1.0 / GEM_P)
    if pool == "max":
        return x.amax((2, 3))
    if pool == "flatten":
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    raise ConfigError(f"unknown pooling {pool!r}")


class PooledModel(nn.Module):
    """``forward_features`` then pooling, as one module (so it can be traced as a whole).

    Args:
        model: a timm model built with ``num_classes=0``.
        pool: the pooling.
        layout: the model's feature layout.
    """

    def __init__(self, model: nn.Module, pool: str, layout: str) -> None:
        super().__init__()
        self.model = model
        self.pool = pool
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) normalised input in the model's dtype -> (n, dim) float32."""
        feats = self.model.forward_features(x)  # type: ignore[operator]
        return pool_features(self.model, feats, self.pool, self.layout)
