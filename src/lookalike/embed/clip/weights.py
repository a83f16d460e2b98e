"""Where a CLIP model's weights come from: a pretrained tag through the Hugging Face hub
cache (downloaded when online), as open_clip resolves it, with one clear error offline."""

from __future__ import annotations

import os
from typing import Any

from ...errors import MissingDependencyError, WeightsUnavailableError

# The files open_clip looks for in a hub repo named without a file (safetensors first).
HUB_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def hub_fingerprint(pcfg: dict[str, Any]) -> str:
    """``"hub:<repo>[/<file>]"`` (or ``"url:<url>"``) of a pretrained config; no download."""
    hf_hub = str(pcfg.get("hf_hub") or "")
    if hf_hub:
        return "hub:" + hf_hub.rstrip("/")
    if pcfg.get("url"):
        return f"url:{pcfg['url']}"
    raise WeightsUnavailableError("this pretrained tag names no weights; pass --weights FILE")


def _unavailable(name: str, pcfg: dict[str, Any]) -> WeightsUnavailableError:
    if pcfg.get("hf_hub"):
        repo, filename = os.path.split(str(pcfg["hf_hub"]))
        what = f"download {filename or HUB_FILENAMES[0]} from https://huggingface.co/{repo}"
    else:
        what = f"download {pcfg.get('url')}"
    return WeightsUnavailableError(
        f"weights for {name} are not in the local cache and cannot be downloaded; {what} "
        "and pass --weights FILE (or set LOOKALIKE_WEIGHTS)"
    )


def hub_file(name: str, pcfg: dict[str, Any]) -> str:
    """The local path of a tag's checkpoint: the hub cache, else a download.

    Raises:
        WeightsUnavailableError: not cached and not downloadable (offline, no network).
    """
    from ..weights import _hub_error_types, _hub_unresolvable

    hf_hub = str(pcfg.get("hf_hub") or "")
    if not hf_hub:
        try:
            return str(open_clip_module().download_pretrained(pcfg))
        except Exception as e:
            raise _unavailable(name, pcfg) from e
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    repo, filename = os.path.split(hf_hub)
    names = [filename] if filename else list(HUB_FILENAMES)
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    for candidate in names:
        cached = try_to_load_from_cache(repo, candidate)
        if isinstance(cached, str):
            return cached
    if _hub_unresolvable():
        raise _unavailable(name, pcfg)
    errors = _hub_error_types()
    for candidate in names:
        try:
            return str(hf_hub_download(repo, candidate))
        except errors:
            continue
        except Exception as e:  # a raw hub traceback must not escape
            raise _unavailable(name, pcfg) from e
    raise _unavailable(name, pcfg)


def open_clip_module() -> Any:
    """``import open_clip``, or :class:`MissingDependencyError` naming the extra."""
    try:
        import open_clip
    except ImportError as e:
        raise MissingDependencyError(
            f"CLIP models need open_clip ({e}): pip install 'lookalike[clip]'"
        ) from e
    return open_clip
