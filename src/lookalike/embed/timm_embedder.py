"""The timm embedder: any timm model, headless, as pixels -> unit vectors."""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import timm
import torch
from timm.data import resolve_model_data_config
from timm.models import get_pretrained_cfg, split_model_name_tag

from ..errors import ModelError, ModelNotFoundError, WeightsMismatchError
from ..setup import DEFAULT_MODEL, EmbedderOptions, Preprocess, Setup
from .pixels import check_pixels, check_tensor
from .pooling import PooledModel, check_pool, default_pool, feature_layout, pool_features
from .runtime.device import default_batch_size, resolve_device, resolve_precision, try_trace
from .shipped import load_pretrained, pretrained_fingerprint
from .weights import file_fingerprint, fit_state_dict, read_state_dict, weights_path

# A vector this short has no direction worth comparing: it is returned as NaN.
ZERO_NORM = 1e-6
_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def resolve_model_name(name: str) -> str:
    """The timm name with its pretrained tag: ``"resnet50"`` -> ``"resnet50.a1_in1k"``.

    Args:
        name: a timm model name, with or without a tag.

    Returns:
        ``name`` with timm's default tag added when it has none; a tagged name unchanged;
        the bare architecture for models timm has no pretrained configs for.

    Raises:
        ModelNotFoundError: no such timm architecture, or no such tag for it.
    """
    text = (name or "").strip()
    if not text:
        raise ModelNotFoundError("no model name given")
    if ":" in text:
        raise ModelNotFoundError(
            f"{text!r}: hub and local-dir model names are not supported; "
            "use a timm model name such as resnet50.tv_in1k"
        )
    arch, tag = split_model_name_tag(text)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.75)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(f"no timm model named {arch!r}{hint}")
    try:
        cfg = get_pretrained_cfg(text)
    except RuntimeError as e:
        known = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]
        shown = ", ".join(known[:24]) + (", …" if len(known) > 24 else "")
        raise ModelNotFoundError(f"{arch} has no pretrained tag {tag!r}; known: {shown}") from e
    if cfg is None or not cfg.tag:
        return arch
    return f"{arch}.{cfg.tag}"


def weights_fingerprint(opts: EmbedderOptions) -> str:
    """``"sha256:<hex>"`` of ``opts.weights``, ``"hub:<hf_hub_id>"`` or the package's
    ``"package:<name>==<version>:sha256:<hex>"``; builds no model.

    Raises:
        ModelNotFoundError: unknown model (hub weights only).
        WeightsUnavailableError: the weights file does not exist, or timm has no
            pretrained weights for the model.
    """
    if opts.weights:
        return file_fingerprint(opts.weights)
    name = resolve_model_name(opts.model or DEFAULT_MODEL)
    return pretrained_fingerprint(name, opts.extra.get("weights_source"))


def load_embedder(opts: EmbedderOptions) -> TimmEmbedder:
    """Build the model, load its weights and prepare it for fast inference.

    Args:
        opts: what the user asked for; ``None`` fields take their defaults.

    Returns:
        A ready :class:`TimmEmbedder`.

    Raises:
        ModelNotFoundError: unknown model name or tag.
        WeightsUnavailableError: weights file missing; hub weights not cached and offline.
        WeightsMismatchError: the weights do not fit the model.
        ConfigError: a pooling the model's output does not allow; an unavailable device.
        ModelError: the model cannot be built or run.
    """
    name = resolve_model_name(opts.model or DEFAULT_MODEL)
    device = resolve_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    if opts.weights:
        path = weights_path(opts.weights)
        fingerprint = file_fingerprint(path)
        model = _create(name)
        sd = fit_state_dict(model, read_state_dict(path), model_name=name, source=str(path))
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise WeightsMismatchError(f"weights file {str(path)!r} does not fit {name}") from e
    else:
        # The hub's cache or download, then the package registry's (embed/shipped.py).
        model, fingerprint = load_pretrained(name, opts.extra.get("weights_source"))
    return TimmEmbedder(
        model,
        model_name=name,
        weights=fingerprint,
        pool=opts.pool,
        crop=opts.crop,
        device=device,
        precision=precision,
        batch_size=opts.batch_size or default_batch_size(device),
        jit=bool(opts.extra.get("jit", True)),
    )


def _create(name: str) -> torch.nn.Module:
    try:
        return timm.create_model(name, pretrained=False, num_classes=0)
    except Exception as e:
        raise ModelError(f"cannot build {name}: {e}") from e


class TimmEmbedder:
    """A headless timm model turning images into L2-normalised vectors.

    Attributes:
        setup: what produces the vectors (model, weights fingerprint, pool, preprocessing, dim).
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        precision: ``"bf16"`` or ``"fp32"``.
        batch_size: images per forward pass.
        jit: whether the forward pass runs as a frozen TorchScript trace (CPU CNNs).
        model: the headless timm module, in ``precision``, on ``device``.

    Example:
        >>> emb = load_embedder(EmbedderOptions(model="resnet50.tv_in1k", weights="r50.pth"))
        >>> emb.embed_pixels(np.zeros((2, 224, 224, 3), np.uint8)).shape
        (2, 2048)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        model_name: str,
        weights: str,
        pool: str | None = None,
        crop: str | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 32,
        jit: bool = True,
    ) -> None:
        timm_model: Any = model  # forward_features/forward_head are timm's, not nn.Module's
        data = resolve_model_data_config(model)
        size = (int(data["input_size"][1]), int(data["input_size"][2]))
        self._place(model, device, precision, batch_size, data["mean"], data["std"])

        try:
            with torch.inference_mode():
                feats = timm_model.forward_features(self._random_input(1, size))
        except Exception as e:
            raise ModelError(f"{model_name} cannot run on {size[0]}x{size[1]} input: {e}") from e
        self.layout = feature_layout(model, feats)
        pool = pool or default_pool(self.layout)
        check_pool(pool, self.layout, model_name=model_name, shape=tuple(feats.shape))
        with torch.inference_mode():
            dim = int(pool_features(model, feats, pool, self.layout).shape[1])

        net: Any = PooledModel(model, pool, self.layout).eval()
        self.jit = False
        if jit and device == "cpu" and self.layout != "tokens":
            traced = try_trace(
                net,
                self._random_input(1, size),
                self._random_input(2, size),
                precision=precision,
            )
            if traced is not None:
                net, self.jit = traced, True
        self._net = net

        self.setup = Setup(
            model=model_name,
            weights=weights,
            pool=pool,
            preprocess=Preprocess(
                size=size,
                mode="center" if crop == "center" else "resize",
                crop_pct=float(data.get("crop_pct") or 1.0),
                interpolation=str(data.get("interpolation") or "bilinear"),
                mean=tuple(data["mean"]),
                std=tuple(data["std"]),
            ),
            dim=dim,
        )

    def __repr__(self) -> str:
        s = self.setup
        return (
            f"TimmEmbedder({s.model}, pool={s.pool}, dim={s.dim}, device={self.device}, "
            f"precision={self.precision}, jit={self.jit})"
        )

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embed decoded images.

        Args:
            pixels: (n, H, W, 3) uint8 RGB, (H, W) equal to ``setup.preprocess.size``.

        Returns:
            (n, dim) float32; each row has unit L2 norm, or is all NaN where the model's
            output was non-finite or of ~zero norm (drop such rows, never store them).

        Raises:
            ValueError: wrong dtype or shape (a bug in the caller).
        """
        arr = check_pixels(pixels, self.setup)
        out = np.empty((arr.shape[0], self.setup.dim), np.float32)
        for start in range(0, arr.shape[0], self.batch_size):
            stop = start + self.batch_size
            out[start:stop] = self._run(self._from_pixels(arr[start:stop]))
        return out

    def embed_tensor(self, x: torch.Tensor) -> np.ndarray:
        """Embed already-normalised input (fidelity tests, other front ends).

        Args:
            x: (n, 3, H, W) float tensor, normalised with ``setup.preprocess`` mean/std,
                on any device.

        Returns:
            (n, dim) float32, unit rows or NaN rows as :meth:`embed_pixels`.

        Raises:
            ValueError: not a 4-D 3-channel float tensor.
        """
        check_tensor(x)
        out = np.empty((x.shape[0], self.setup.dim), np.float32)
        for start in range(0, x.shape[0], self.batch_size):
            batch = x[start : start + self.batch_size]
            batch = batch.to(self.device, self._dtype, non_blocking=True)
            out[start : start + len(batch)] = self._run(
                batch.contiguous(memory_format=torch.channels_last)
            )
        return out

    def _from_pixels(self, chunk: np.ndarray) -> torch.Tensor:
        """(n, H, W, 3) uint8 -> (n, 3, H, W) normalised model input, channels-last."""
        chunk = np.ascontiguousarray(chunk)
        if not chunk.flags.writeable:  # torch.from_numpy warns on read-only arrays
            chunk = chunk.copy()
        t = torch.from_numpy(chunk)
        if self.device == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        elif self.device != "cpu":
            t = t.to(self.device)
        # The NHWC -> NCHW view already has channels-last strides; float() keeps them.
        x = t.permute(0, 3, 1, 2).float().mul_(self._scale).sub_(self._shift)
        return x.to(self._dtype).contiguous(memory_format=torch.channels_last)

    def _run(self, x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return unit_rows(self._net(x))

    def _place(
        self,
        model: torch.nn.Module,
        device: str,
        precision: str,
        batch_size: int,
        mean: Any,
        std: Any,
    ) -> None:
        """Move ``model`` to its device, dtype and channels-last layout, and keep the
        uint8 -> normalised input transform (``x * scale - shift``); shared by every
        torch embedder."""
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self._dtype = _DTYPES[precision]
        model.eval().requires_grad_(False)
        model.to(device=device, dtype=self._dtype)
        model.to(memory_format=torch.channels_last)
        self.model = model
        m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        sd = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * sd)
        self._shift = m / sd

    def _random_input(self, n: int, size: tuple[int, int]) -> torch.Tensor:
        gen = torch.Generator().manual_seed(n)
        x = torch.randn(n, 3, *size, generator=gen)
        return x.to(self.device, self._dtype).contiguous(memory_format=torch.channels_last)


def unit_rows(v: torch.Tensor) -> np.ndarray:
    """L2-normalise each row; rows that are non-finite or of ~zero norm become all NaN.

    Args:
        v: (n, dim) float tensor on any device.

    Returns:
        (n, dim) float32 numpy array.
    """
    v = v.detach().to("cpu", torch.float64)
    # In float64 the norm of any finite float32 row is finite.
    norm = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    bad = ~torch.isfinite(v).all(dim=1) | ~(norm[:, 0] > ZERO_NORM)
    out = (v / norm.clamp_min(ZERO_NORM)).to(torch.float32)
    out[bad] = float("nan")
    return out.numpy()
