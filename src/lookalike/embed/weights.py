"""Where an embedder's weights come from: a local state-dict file or timm's hub cache.

Local files are read here and fitted to the headless model (the classifier head is
dropped, every other tensor must match). Hub weights go through timm's own loader,
and every way that can fail offline becomes one :class:`WeightsUnavailableError`.

torch, safetensors and timm are imported inside functions: fingerprinting a local
file must stay cheap.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WeightsMismatchError, WeightsUnavailableError

if TYPE_CHECKING:
    import torch

# Prefixes that wrappers add in front of every key: DataParallel/DDP, torch.compile,
# Lightning-style modules. Stripped only when every key has one.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
# Top-level keys of training checkpoints that hold the model's own state dict.
_CHECKPOINT_KEYS = ("state_dict", "model")
# Classifier head names of common architectures, besides the one the model's config names.
_HEAD_NAMES = ("fc", "head", "classifier", "head_dist", "last_linear")
_SAFETENSORS_SUFFIXES = (".safetensors",)
# The files timm looks for in a hub repo (safetensors first), see timm.models._hub.
_HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")
_SHOWN_KEYS = 4


def weights_path(path: str | os.PathLike[str]) -> Path:
    """The absolute path of a weights file, checked to exist.

    Raises:
        WeightsUnavailableError: the file does not exist or is not a file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise WeightsUnavailableError(
            f"weights file {str(p)!r} {what}; pass --weights with a .safetensors or .pth file"
        )
    return p.resolve()


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of a weights file's content (the path does not matter).

    Cached per (path, size, mtime), so asking again for an unchanged file is free.

    Raises:
        WeightsUnavailableError: the file does not exist or cannot be read.
    """
    p = weights_path(path)
    st = p.stat()
    try:
        return _sha256(str(p), st.st_size, st.st_mtime_ns)
    except OSError as e:
        raise WeightsUnavailableError(f"cannot read weights file {str(p)!r}: {e}") from e


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime_ns are only part of the cache key.
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def hub_fingerprint(model_name: str) -> str:
    """``"hub:<hf_hub_id>"`` of the pretrained weights timm would load for ``model_name``.

    Args:
        model_name: a resolved timm name with its pretrained tag, e.g. ``"resnet50.tv_in1k"``.

    Returns:
        ``"hub:timm/resnet50.tv_in1k"``; ``"url:<url>"`` for the few configs that only
        have a download URL.

    Raises:
        WeightsUnavailableError: timm knows no pretrained weights for this model.
    """
    cfg = _pretrained_cfg(model_name)
    if cfg is not None and cfg.hf_hub_id:
        return f"hub:{cfg.hf_hub_id}"
    if cfg is not None and cfg.url:
        return f"url:{cfg.url}"
    raise WeightsUnavailableError(
        f"timm has no pretrained weights for {model_name}; pass --weights FILE "
        "(or set LOOKALIKE_WEIGHTS) with a .safetensors or .pth state dict"
    )


def _pretrained_cfg(model_name: str) -> Any:
    from timm.models import get_pretrained_cfg

    try:
        return get_pretrained_cfg(model_name)
    except RuntimeError:
        return None


def _unavailable_message(model_name: str, hint: Callable[[], str]) -> str:
    cfg = _pretrained_cfg(model_name)
    if cfg is not None and cfg.hf_hub_id:
        where = f"https://huggingface.co/{cfg.hf_hub_id}"
        what = "download model.safetensors from " + where
    elif cfg is not None and cfg.url:
        what = "download " + cfg.url
    else:
        what = "get a state dict for it"
    return (
        f"weights for {model_name} are not in the local cache and cannot be downloaded; "
        f"{what} and pass --weights FILE (or set LOOKALIKE_WEIGHTS); {hint()}"
    )


def create_pretrained(model_name: str, hint: Callable[[], str]) -> torch.nn.Module:
    """Build the headless model with timm's pretrained weights (hub cache, or download).

    Args:
        model_name: a resolved timm name with its pretrained tag.
        hint: the sentence an "unavailable" error ends with (what works offline; it is
            :func:`lookalike.embed.shipped.offline_hint`, passed in so that this module
            never imports the one that imports it).

    Returns:
        The model with ``num_classes=0``, on the CPU, in fp32.

    Raises:
        WeightsUnavailableError: the weights are not cached and cannot be downloaded
            (offline, no network, hub down), or timm has none for this model.
        WeightsMismatchError: the cached weights do not load into the model.
    """
    import timm

    cfg = _pretrained_cfg(model_name)
    if cfg is not None and cfg.hf_hub_id and not _hub_cached(cfg) and _hub_unresolvable():
        # Without this, huggingface_hub retries each candidate file with backoff (~45 s)
        # and logs every attempt before failing the same way.
        raise WeightsUnavailableError(_unavailable_message(model_name, hint))
    hub_errors = _hub_error_types()
    try:
        return timm.create_model(model_name, pretrained=True, num_classes=0)
    except hub_errors as e:
        raise WeightsUnavailableError(_unavailable_message(model_name, hint)) from e
    except RuntimeError as e:
        if "No pretrained weights exist" in str(e):
            raise WeightsUnavailableError(_unavailable_message(model_name, hint)) from e
        raise WeightsMismatchError(
            f"the cached weights for {model_name} do not load: {_first_line(e)}; "
            "pass --weights FILE to use a local file instead"
        ) from e
    except Exception as e:  # a raw hub/HTTP/safetensors traceback must not escape
        raise WeightsUnavailableError(
            f"{_unavailable_message(model_name, hint)} ({type(e).__name__}: {_first_line(e)})"
        ) from e


def _hub_cached(cfg: Any) -> bool:
    """Whether a weights file of this pretrained config is in the hub cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    repo, _, revision = cfg.hf_hub_id.partition("@")
    names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else list(_HUB_FILENAMES)
    return any(
        isinstance(try_to_load_from_cache(repo, name, revision=revision or None), str)
        for name in names
    )


def _hub_unresolvable() -> bool:
    """True when the hub is meant to be online but its host name does not resolve.

    In offline mode (``HF_HUB_OFFLINE=1``) huggingface_hub fails fast by itself, and with a
    proxy configured the local resolver proves nothing: both answer False.
    """
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        return False
    if constants.is_offline_mode() or any(os.environ.get(v) for v in _PROXY_VARS):
        return False
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname
    try:
        socket.getaddrinfo(host, 443)
    except (OSError, UnicodeError):
        return True
    return False


def _hub_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "not cached and not downloadable", whatever the HTTP stack."""
    import urllib.error

    types: list[type[BaseException]] = [
        ConnectionError,
        TimeoutError,
        FileNotFoundError,
        urllib.error.URLError,
    ]
    try:
        from huggingface_hub import errors as hf_errors

        types += [hf_errors.EntryNotFoundError, hf_errors.HfHubHTTPError]
    except ImportError:  # pragma: no cover - timm needs huggingface_hub for the hub anyway
        pass
    return tuple(types)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or torch (``.pth``/``.pt``/``.bin``) state dict.

    Torch files are read with ``weights_only=True``: nothing but tensors and plain
    containers is unpickled. Checkpoint wrappers (``{"state_dict": ...}``,
    ``{"model": ...}``) are unwrapped and non-tensor entries dropped.

    Args:
        path: the file.

    Returns:
        Key -> tensor, on the CPU, dtypes as stored.

    Raises:
        WeightsUnavailableError: the file does not exist.
        WeightsMismatchError: the file is not a readable state dict, or holds no tensors.
    """
    import torch

    p = weights_path(path)
    try:
        if p.name.endswith(_SAFETENSORS_SUFFIXES) or _looks_like_safetensors(p):
            from safetensors.torch import load_file

            obj: Any = load_file(str(p), device="cpu")
        else:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsMismatchError(
            f"cannot read weights file {str(p)!r} as a state dict ({_first_line(e)}); "
            "lookalike reads .safetensors files and torch files of plain tensors "
            "(torch.save(model.state_dict(), path))"
        ) from e
    sd = unwrap_state_dict(obj)
    if not sd:
        raise WeightsMismatchError(f"weights file {str(p)!r} holds no tensors")
    return sd


def _looks_like_safetensors(p: Path) -> bool:
    # 8-byte little-endian header length, then a JSON object.
    with open(p, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensors of a state dict, out of checkpoint wrappers.

    Args:
        obj: what ``torch.load`` returned: a state dict, or a checkpoint holding one
            under ``"state_dict"`` or ``"model"`` (nested wrappers are unwrapped too).

    Returns:
        Key -> tensor; non-tensor entries are dropped. Empty if there are none.
    """
    import torch

    for _ in range(4):
        if not isinstance(obj, Mapping):
            return {}
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _CHECKPOINT_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            return {}
        obj = inner
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def fit_state_dict(
    model: torch.nn.Module, sd: Mapping[str, torch.Tensor], *, model_name: str, source: str
) -> dict[str, torch.Tensor]:
    """Fit a state dict to a headless model: strip wrapper prefixes, drop the classifier head.

    When the keys do not fit as they are, the model family's own timm checkpoint filter
    (``checkpoint_filter_fn``, which converts e.g. original ViT/CLIP/DINOv2 layouts) is
    tried too.

    Args:
        model: the model built with ``num_classes=0``.
        sd: key -> tensor as read from the file.
        model_name: for messages.
        source: the file, for messages.

    Returns:
        Exactly the model's keys (``num_batches_tracked`` may be absent), ready for a
        strict ``load_state_dict``.

    Raises:
        WeightsMismatchError: keys the model needs are missing, shapes differ, or the file
            has tensors that are neither the model's nor a classifier head (a checkpoint of
            a deeper model), naming the model, the file and a few keys.
    """
    expected = model.state_dict()
    sd = _strip_prefixes(dict(sd), expected)
    problems = _problems(model, sd, expected)
    if problems:
        converted = _convert_with_timm_filter(model, sd)
        if converted is not None and not _problems(model, converted, expected):
            sd, problems = converted, []
    if problems:
        raise WeightsMismatchError(
            f"weights file {source!r} does not fit {model_name}: {'; '.join(problems)} "
            "(is it a checkpoint of another architecture?)"
        )
    return {k: sd[k] for k in expected if k in sd}


def _strip_prefixes(sd: dict[str, Any], expected: Mapping[str, Any]) -> dict[str, Any]:
    for prefix in _WRAPPER_PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            stripped = {k[len(prefix) :]: v for k, v in sd.items()}
            if len(expected.keys() & stripped.keys()) > len(expected.keys() & sd.keys()):
                sd = stripped
    return sd


def _problems(model: Any, sd: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    wrong = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    heads = _head_prefixes(model)
    buffers = {name for name, _ in model.named_buffers()}
    extra = [
        k
        for k in sd
        if k not in expected and k not in buffers and not any(k.startswith(h) for h in heads)
    ]
    out = []
    if missing:
        out.append(f"{len(missing)} tensors missing ({_few(missing)})")
    if wrong:
        out.append(f"{len(wrong)} shapes differ (file vs model: {_few(wrong)})")
    if extra:
        out.append(f"{len(extra)} tensors the model does not have ({_few(extra)})")
    return out


def _head_prefixes(model: Any) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    named = cfg.get("classifier") or ()
    names = (named,) if isinstance(named, str) else tuple(named)
    return tuple(n + "." for n in (*names, *_HEAD_NAMES))


def _few(items: list[str]) -> str:
    more = f", … {len(items) - _SHOWN_KEYS} more" if len(items) > _SHOWN_KEYS else ""
    return ", ".join(items[:_SHOWN_KEYS]) + more


def _convert_with_timm_filter(model: Any, sd: dict[str, Any]) -> dict[str, Any] | None:
    fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if fn is None:
        return None
    try:
        out = fn(dict(sd), model)
    except Exception:  # the filter does not understand this layout: report the original keys
        return None
    return dict(out) if isinstance(out, Mapping) else None
