"""The CLIP embedder: open_clip models as pixels -> unit vectors in the text-aligned space.

``--model clip:ARCH[/TAG]`` builds the open_clip model ``ARCH`` with the weights of ``TAG``
(through the Hugging Face hub cache) or of ``--weights FILE`` (a local open_clip checkpoint).
Image vectors are ``normalize(model.encode_image(x))``: the visual tower and its projection,
wrapped as :class:`~lookalike.embed.clip.towers.ClipImageTower` so that the compiled-model cache
(:mod:`lookalike.embed.runtime.compiled`: OpenVINO, else TorchScript) saves and checks it exactly as
it does a timm model. The text tower is built by :mod:`lookalike.embed.clip.text`, only when
a text query is asked.

Preprocessing comes from open_clip's config: input size from the visual tower, mean/std,
interpolation and resize mode from the pretrained tag (or open_clip's defaults): resize
mode ``shortest`` (shorter side to the input size, centre crop) is lookalike's ``center``
with ``crop_pct`` 1, ``squash`` is ``resize``. ``--crop`` overrides it.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from typing import Any

import torch
from torch import nn

from ...errors import (
    ConfigError,
    ModelError,
    ModelNotFoundError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from ...setup import ClipSetup, EmbedderOptions, Preprocess, Setup
from ..pooling import PooledModel
from ..runtime.device import default_batch_size, resolve_device, resolve_precision, try_trace
from ..timm_embedder import TimmEmbedder
from ..weights import file_fingerprint, weights_path
from .names import DEFAULT_CLIP_MODEL, parse_clip_name, resolve_clip_name, user_config
from .tokenizer import CLEAN_MODES, VOCAB_SIZE
from .towers import ClipImageTower
from .weights import hub_file, hub_fingerprint, open_clip_module

_RESIZE_MODES = {"shortest": "center", "squash": "resize"}


# ------------------------------------------------------------------------------ the model


def model_config(arch: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_cfg, preprocess_cfg)`` of an architecture: ``$LOOKALIKE_CLIP_CONFIGS``, then
    open_clip's built-in configs.

    Raises:
        ModelNotFoundError: no such architecture.
    """
    found = user_config(arch)
    if found is not None:
        return copy.deepcopy(found["model_cfg"]), dict(found["preprocess_cfg"])
    open_clip = open_clip_module()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(f"no open_clip architecture named {arch!r}{hint}")
    return cfg, {}


def pretrained_config(arch: str, tag: str) -> dict[str, Any]:
    """open_clip's pretrained config of ``arch``/``tag`` (hub id, mean/std, resize mode).

    Raises:
        ModelNotFoundError: open_clip knows no such tag for the architecture.
    """
    open_clip = open_clip_module()
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(arch)
        shown = ", ".join(known) if known else "none (pass --weights FILE)"
        raise ModelNotFoundError(
            f"open_clip has no pretrained tag {tag!r} for {arch}; known: {shown}"
        )
    return dict(cfg)


def text_fingerprint(model_cfg: dict[str, Any]) -> str:
    """``"sha256:<hex>"`` of what shapes the text tower: its config, the shared dimension."""
    part = {
        "embed_dim": model_cfg.get("embed_dim"),
        "text_cfg": model_cfg.get("text_cfg"),
        "quick_gelu": bool(model_cfg.get("quick_gelu", False)),
    }
    return "sha256:" + hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()


def tokenizer_spec(arch: str, model_cfg: dict[str, Any]) -> tuple[int, str]:
    """``(context_length, clean)`` of the model's CLIP BPE tokenizer.

    Raises:
        ConfigError: the model uses another tokenizer (Hugging Face, SigLIP), which
            lookalike does not run.
    """
    text_cfg = model_cfg.get("text_cfg") or {}
    kwargs = text_cfg.get("tokenizer_kwargs") or {}
    clean = kwargs.get("clean", "lower")
    other = (
        text_cfg.get("hf_tokenizer_name")
        or text_cfg.get("hf_model_name")
        or "siglip" in arch.lower()
        or kwargs.get("reduction_mask")
        or clean not in CLEAN_MODES
        or int(text_cfg.get("vocab_size", VOCAB_SIZE)) != VOCAB_SIZE
    )
    if other:
        raise ConfigError(
            f"{arch} does not use open_clip's CLIP tokenizer; lookalike runs CLIP models "
            f"that do, e.g. {DEFAULT_CLIP_MODEL}"
        )
    return int(text_cfg.get("context_length", 77)), str(clean)


def build_model(model_cfg: dict[str, Any]) -> nn.Module:
    """The open_clip ``CLIP`` module of a config, random weights, fp32, CPU, eval mode.

    As ``open_clip.create_model`` builds it, without touching the hub for tower weights.

    Raises:
        ConfigError: a CoCa or Hugging Face text model (not supported).
        ModelError: the model cannot be built.
    """
    open_clip = open_clip_module()
    cfg = copy.deepcopy(model_cfg)
    if "multimodal_cfg" in cfg or (cfg.get("text_cfg") or {}).get("hf_model_name"):
        raise ConfigError("CoCa and Hugging Face text towers are not supported")
    custom_text = bool(cfg.pop("custom_text", False))
    if "timm_model_name" in cfg.get("vision_cfg", {}):
        cfg["vision_cfg"]["timm_model_pretrained"] = False  # weights come from the checkpoint
    cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    try:
        return cls(**cfg).eval()  # type: ignore[no-any-return]
    except Exception as e:
        raise ModelError(f"cannot build the CLIP model: {e}") from e


def weights_fingerprint(opts: EmbedderOptions) -> str:
    """``"sha256:<hex>"`` of ``opts.weights``, else the tag's ``"hub:<repo>"``; no model built.

    Raises:
        WeightsUnavailableError: no weights file and no tag; the file does not exist.
        ModelNotFoundError: an unknown tag.
    """
    if opts.weights:
        return file_fingerprint(opts.weights)
    arch, tag = parse_clip_name(opts.model or DEFAULT_CLIP_MODEL)
    if tag is None:
        raise _no_weights(arch)
    return hub_fingerprint(pretrained_config(arch, tag))


def _no_weights(arch: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"clip:{arch} names no pretrained tag: use clip:{arch}/TAG (e.g. "
        f"{DEFAULT_CLIP_MODEL}) or pass --weights FILE with an open_clip checkpoint"
    )


def load_clip_model(opts: EmbedderOptions) -> tuple[nn.Module, Setup]:
    """Build the whole open_clip model with its weights, and the setup of its image vectors.

    Returns:
        ``(model, setup)``: the ``CLIP`` module (fp32, CPU, eval) and a setup whose ``dim`` is
        still 0 (the embedder measures it).

    Raises:
        ModelNotFoundError, WeightsUnavailableError, WeightsMismatchError, ConfigError,
        MissingDependencyError: as :func:`lookalike.embed.load_embedder`.
    """
    open_clip = open_clip_module()
    name = resolve_clip_name(opts.model or DEFAULT_CLIP_MODEL)
    arch, tag = parse_clip_name(name)
    if opts.pool not in (None, "token"):
        raise ConfigError(f"CLIP models use their own pooling; --pool {opts.pool} does not apply")
    model_cfg, user_pre = model_config(arch)
    context_length, clean = tokenizer_spec(arch, model_cfg)
    pcfg = pretrained_config(arch, tag) if tag else {}
    if opts.weights:
        path, fingerprint = str(weights_path(opts.weights)), file_fingerprint(opts.weights)
    elif tag:
        fingerprint, path = hub_fingerprint(pcfg), hub_file(name, pcfg)
    else:
        raise _no_weights(arch)
    model = build_model(model_cfg)
    try:
        open_clip.load_checkpoint(model, path, strict=True)
    except Exception as e:
        raise WeightsMismatchError(
            f"weights file {path!r} does not fit {name}: {str(e).strip().splitlines()[0]}"
        ) from e
    model.eval().requires_grad_(False)
    pre = open_clip.transform.merge_preprocess_dict(
        open_clip.transform.merge_preprocess_dict(open_clip.transform.PreprocessCfg(), user_pre),
        pcfg,
    )
    setup = Setup(
        model=name,
        weights=fingerprint,
        pool="token",
        preprocess=_preprocess(pre, model, opts.crop, name),
        dim=0,
        space="clip",
        clip=ClipSetup(
            library="open_clip",
            version=str(open_clip.__version__),
            arch=arch,
            tag=tag,
            tokenizer=f"clip-bpe:{VOCAB_SIZE}:{clean}:{context_length}",
            text=text_fingerprint(model_cfg),
        ),
    )
    return model, setup


def _preprocess(pre: dict[str, Any], model: Any, crop: str | None, name: str) -> Preprocess:
    size = getattr(model.visual, "image_size", pre.get("size", 224))
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mode = _RESIZE_MODES.get(str(pre.get("resize_mode")))
    if crop is not None:
        mode = "center" if crop == "center" else "resize"
    if mode is None:
        raise ConfigError(
            f"{name} resizes with {pre.get('resize_mode')!r}, which lookalike does not "
            "reproduce; pass --crop center or --crop none"
        )
    return Preprocess(
        size=(h, w),
        mode=mode,
        crop_pct=1.0,
        interpolation=str(pre.get("interpolation") or "bicubic"),
        mean=tuple(pre["mean"]),
        std=tuple(pre["std"]),
    )


# ------------------------------------------------------------------------------ embedding


class ClipEmbedder(TimmEmbedder):
    """A CLIP image tower turning images into unit vectors in the text-aligned space.

    Same interface and input handling as
    :class:`~lookalike.embed.timm_embedder.TimmEmbedder` (``embed_pixels``,
    ``embed_tensor``), with ``setup.space == "clip"``.

    Example:
        >>> emb = load_clip_embedder(EmbedderOptions(model="clip:ViT-B-32", weights="b32.pt"))
        >>> emb.embed_pixels(np.zeros((1, 224, 224, 3), np.uint8)).shape  # doctest: +SKIP
        (1, 512)
    """

    def __init__(
        self,
        tower: ClipImageTower,
        setup: Setup,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 32,
        jit: bool = True,
    ) -> None:
        pre = setup.preprocess
        self._place(tower, device, precision, batch_size, pre.mean, pre.std)
        self.layout = "tokens"
        try:
            with torch.inference_mode():
                out = tower(self._random_input(1, pre.size))
        except Exception as e:
            raise ModelError(f"{setup.model} cannot run on {pre.size} input: {e}") from e
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise ModelError(f"{setup.model}'s image tower does not give one vector per image")
        net: Any = PooledModel(tower, "token", self.layout).eval()
        self.jit = False
        if jit and device == "cpu":
            traced = try_trace(
                net,
                self._random_input(1, pre.size),
                self._random_input(2, pre.size),
                precision=precision,
            )
            if traced is not None:
                net, self.jit = traced, True
        self._net = net
        self.setup = Setup(**{**setup.__dict__, "dim": int(out.shape[1])})

    def __repr__(self) -> str:
        s = self.setup
        return (
            f"ClipEmbedder({s.model}, dim={s.dim}, device={self.device}, "
            f"precision={self.precision}, jit={self.jit})"
        )


def load_clip_embedder(opts: EmbedderOptions) -> ClipEmbedder:
    """Build a CLIP model's image side, ready to embed (see :func:`lookalike.embed.load_embedder`).

    ``opts.extra["jit"] = False`` turns off TorchScript tracing on the CPU.
    """
    model, setup = load_clip_model(opts)
    device = resolve_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    visual: Any = model.visual
    return ClipEmbedder(
        ClipImageTower(visual),
        setup,
        device=device,
        precision=precision,
        batch_size=opts.batch_size or default_batch_size(device),
        jit=bool(opts.extra.get("jit", True)),
    )
