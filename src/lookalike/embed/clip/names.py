"""CLIP model names (``clip:ARCH[/TAG]``), without importing torch or open_clip.

A CLIP model is named ``clip:`` + an open_clip architecture, optionally ``/`` + one of its
pretrained tags: ``clip:ViT-B-32-256/datacomp_s34b_b86k``. ``clip`` alone is
:data:`DEFAULT_CLIP_MODEL`. Tags are compared the way open_clip does (lower case, ``-`` as
``_``). Architectures come from open_clip's own configs, or from JSON files in the
folders listed in ``$LOOKALIKE_CLIP_CONFIGS`` (``os.pathsep``-separated), which win: a file
``<ARCH>.json`` holds an open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``)
or an ``open_clip_config.json`` (``{"model_cfg": ..., "preprocess_cfg": ...}``).

Example:
    >>> parse_clip_name("clip:ViT-B-32-256/DataComp-s34B-b86K")
    ('ViT-B-32-256', 'datacomp_s34b_b86k')
    >>> resolve_clip_name("clip")
    'clip:ViT-B-32-256/datacomp_s34b_b86k'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...errors import ModelNotFoundError

PREFIX = "clip:"
# rclip's choice: ImageNet zero-shot 72.8 at ViT-B-32 cost (open_clip's results table).
DEFAULT_CLIP_MODEL = "clip:ViT-B-32-256/datacomp_s34b_b86k"
CONFIGS_ENV = "LOOKALIKE_CLIP_CONFIGS"


def is_clip_name(name: str | None) -> bool:
    """Whether ``name`` names a CLIP model (``clip`` or ``clip:...``)."""
    text = (name or "").strip()
    return text == "clip" or text.startswith(PREFIX)


def parse_clip_name(name: str) -> tuple[str, str | None]:
    """``(arch, tag)`` of a CLIP model name; ``tag`` is ``None`` when none is given.

    Raises:
        ModelNotFoundError: not of the form ``clip:ARCH[/TAG]``.
    """
    text = name.strip()
    if text == "clip":
        text = DEFAULT_CLIP_MODEL
    if not text.startswith(PREFIX):
        raise ModelNotFoundError(f"{name!r} is not a CLIP model name (clip:ARCH[/TAG])")
    body = text[len(PREFIX) :].strip()
    if body.startswith(("hf-hub:", "local-dir:")):
        raise ModelNotFoundError(
            f"{name!r}: open_clip hub and local-dir names are not supported; use "
            "clip:ARCH/TAG, or clip:ARCH with --weights FILE"
        )
    arch, _, tag = body.partition("/")
    arch, tag = arch.strip(), tag.strip()
    if not arch or "/" in tag:
        raise ModelNotFoundError(
            f"{name!r} is not a CLIP model name; use clip:ARCH[/TAG], e.g. {DEFAULT_CLIP_MODEL}"
        )
    return arch, (clean_tag(tag) if tag else None)


def clean_tag(tag: str) -> str:
    """A pretrained tag as open_clip compares them (``pretrained._clean_tag``)."""
    return tag.lower().replace("-", "_")


def resolve_clip_name(name: str) -> str:
    """The canonical form of a CLIP model name: ``clip:ARCH`` or ``clip:ARCH/tag``.

    Raises:
        ModelNotFoundError: not of the form ``clip:ARCH[/TAG]``.
    """
    arch, tag = parse_clip_name(name)
    return f"{PREFIX}{arch}/{tag}" if tag else f"{PREFIX}{arch}"


def user_config(arch: str) -> dict[str, Any] | None:
    """The open_clip config of ``arch`` from ``$LOOKALIKE_CLIP_CONFIGS``, or ``None``.

    Returns:
        ``{"model_cfg": {...}, "preprocess_cfg": {...}}`` (``preprocess_cfg`` may be empty).

    Raises:
        ModelNotFoundError: the file exists but is not a usable config.
    """
    for folder in filter(None, os.environ.get(CONFIGS_ENV, "").split(os.pathsep)):
        path = Path(folder).expanduser() / f"{arch}.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelNotFoundError(f"cannot read CLIP config {str(path)!r}: {e}") from e
        model_cfg = data.get("model_cfg", data) if isinstance(data, dict) else None
        if not isinstance(model_cfg, dict) or not all(
            k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")
        ):
            raise ModelNotFoundError(
                f"{str(path)!r} is not an open_clip model config "
                "(needs embed_dim, vision_cfg and text_cfg)"
            )
        return {"model_cfg": model_cfg, "preprocess_cfg": data.get("preprocess_cfg") or {}}
    return None


def not_clip_message(db: object, model: str | None) -> str:
    """The one line that refuses a text query on an index of image-only vectors."""
    return (
        f"index {db} holds image-only vectors from {model or 'no model yet'}, which cannot be "
        "searched by words; build a CLIP index for that: lookalike index FOLDER --db clip.db "
        f"--model {DEFAULT_CLIP_MODEL}"
    )
