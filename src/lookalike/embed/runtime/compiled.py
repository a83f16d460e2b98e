"""A compiled-model cache beside the index, so a later process embeds without timm.

Building an embedder costs seconds before the first image: ``import timm`` (~3 s, it pulls in
torchvision and ``torch._dynamo``), building the model, reading the weights, tracing. The
first process that builds one saves the finished model here; later processes load that:

- ``"openvino"``: the model converted to an OpenVINO IR taking uint8 pixels
  (:mod:`lookalike.embed.runtime.openvino`). Needs neither torch nor timm: a fresh process
  imports openvino, loads ResNet50 and embeds its first image in ~0.4 s; bf16 runs ~3x
  faster than TorchScript (``bench/bench_backends.py``). CPU only. Optional:
  ``pip install lookalike[openvino]``.
- ``"torch"``: the frozen TorchScript module (``torch.jit.save``). Needs torch, not timm.
  CPU only, and only for models the embedder could trace (CNNs).

Which one: ``opts.extra["backend"]``, else ``$LOOKALIKE_BACKEND``, else ``"auto"``: OpenVINO
when it is installed and the model runs on the CPU (``--device cpu``, or ``auto`` on a
machine without an NVIDIA GPU or Apple silicon), else torch. Cache entries of one backend
are never used by another.

Layout::

    <cache_dir>/models/<key>/meta.json           what the entry holds (written last)
                            /model.xml, model.bin   (openvino)  or  model.pt  (torch)

``key`` is the sha256 of the setup's JSON, the resolved precision, the device, the backend,
its version (``openvino.get_version()`` / ``torch.__version__``) and the input layout. An
entry is written in a temporary folder and renamed into place. A changed weights file
misses: ``meta.json`` records the file's path, size and mtime; when those differ the file
is hashed again and must still give the setup's fingerprint.

The cache is optional: :func:`load_compiled` answers ``None`` and :func:`save_compiled`
answers ``None`` whenever they cannot (missing or stale entry, unwritable folder, a model
that does not convert or does not match), never an exception, except for an unknown or
unavailable backend asked for by name.

Example:
    >>> emb = load_compiled(idx_cache, setup, opts)  # doctest: +SKIP
    >>> if emb is None:  # doctest: +SKIP
    ...     emb = load_embedder(opts)
    ...     save_compiled(idx_cache, emb, opts)
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
import uuid
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ConfigError
from ...setup import EmbedderOptions, Setup
from . import openvino as ovr
from .openvino import unit_rows
from .torchscript import TorchScriptEmbedder

if TYPE_CHECKING:
    from .. import Embedder
    from ..timm_embedder import TimmEmbedder

BACKENDS = ("auto", "torch", "openvino")
BACKEND_ENV = "LOOKALIKE_BACKEND"
FORMAT = 1
TORCH_LAYOUT = "NCHW-channels_last-float-dynbatch"
# Minimum cosine per probe image between a converted model and the live embedder for the
# conversion to be kept. bf16 on either side rounds differently (batch norms folded into
# convolutions, other kernels), so its bar only catches real conversion errors.
SAVE_MIN_COSINE = {"fp32": 0.999, "bf16": 0.98}


def requested_backend(opts: EmbedderOptions | None) -> str:
    """``opts.extra["backend"]``, else ``$LOOKALIKE_BACKEND``, else ``"auto"``.

    Raises:
        ConfigError: not one of :data:`BACKENDS`.
    """
    extra = opts.extra if opts is not None else {}
    name = str(extra.get("backend") or os.environ.get(BACKEND_ENV) or "auto").lower()
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def choose_backend(opts: EmbedderOptions | None) -> str:
    """``"openvino"`` or ``"torch"``, without importing either.

    Raises:
        ConfigError: an unknown backend; ``openvino`` asked for but not installed, or for
            a device other than the CPU.
    """
    name = requested_backend(opts)
    device = opts.device if opts is not None else "auto"
    if name == "openvino":
        if not ovr.available():
            raise ConfigError(
                "backend 'openvino' needs OpenVINO: pip install 'lookalike[openvino]'"
            )
        if device not in ("auto", "cpu"):
            raise ConfigError(f"backend 'openvino' runs on the CPU only, not {device!r}")
        return "openvino"
    if name == "auto" and _cpu_device(device) and ovr.available():
        return "openvino"
    return "torch"


def _cpu_device(device: str) -> bool:
    """Whether ``device`` resolves to the CPU; for ``auto``, a guess that imports nothing."""
    if device != "auto":
        return device == "cpu"
    if sys.platform == "darwin":
        import platform

        return platform.machine() != "arm64"  # Apple silicon: torch picks mps
    return not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"))


def cache_key(
    setup: Setup, *, precision: str, device: str, backend: str, version: str, layout: str
) -> str:
    """sha256 hex over everything that makes a saved model valid."""
    parts = {
        "format": FORMAT,
        "setup": setup.to_json(),
        "precision": precision,
        "device": device,
        "backend": backend,
        "version": version,
        "layout": layout,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------ loading


def load_compiled(cache_dir: Path, setup: Setup, opts: EmbedderOptions) -> Embedder | None:
    """A ready embedder for ``setup`` from the cache, without importing timm.

    Args:
        cache_dir: the index's derived-cache folder (``<db>.cache/``).
        setup: the index's recorded setup.
        opts: the effective options (precision, device, batch size, weights file, backend).

    Returns:
        An :class:`~lookalike.embed.Embedder` (``OpenVINOEmbedder`` or
        :class:`TorchScriptEmbedder`) whose ``setup`` is ``setup``, or ``None`` when there is
        no valid entry (then build one with ``load_embedder`` and :func:`save_compiled`).

    Raises:
        ConfigError: an unknown backend, or ``openvino`` asked for and not installed.
    """
    backend = choose_backend(opts)
    try:
        if backend == "openvino":
            precision = ovr.resolve_precision(opts.precision)
            folder = _entry(cache_dir, setup, precision, "cpu", backend, ovr.version())
            if not _valid(folder, setup, opts):
                return None
            return ovr.load(folder, setup, precision=precision, batch_size=opts.batch_size)
        return _load_torch(cache_dir, setup, opts)
    except Exception:  # a broken or foreign entry is a miss; the caller rebuilds it
        return None


def _entry(
    cache_dir: Path, setup: Setup, precision: str, device: str, backend: str, version: str
) -> Path:
    layout = ovr.INPUT_LAYOUT if backend == "openvino" else TORCH_LAYOUT
    key = cache_key(
        setup, precision=precision, device=device, backend=backend, version=version, layout=layout
    )
    return Path(cache_dir) / "models" / key


def _valid(folder: Path, setup: Setup, opts: EmbedderOptions) -> bool:
    """The entry is complete, for this setup, and its weights file (if any) is unchanged."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    if meta.get("key") != folder.name or meta.get("setup") != setup.to_json():
        return False
    if not opts.weights or not setup.weights.startswith("sha256:"):
        return True
    try:
        stat = _weights_stat(opts.weights)
        if stat == meta.get("weights_file"):
            return True
        from ..weights import file_fingerprint

        return file_fingerprint(opts.weights) == setup.weights
    except Exception:  # missing or unreadable file: let the full load report it
        return False


def _weights_stat(path: str) -> dict[str, Any]:
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _load_torch(cache_dir: Path, setup: Setup, opts: EmbedderOptions) -> Embedder | None:
    import torch

    from .device import default_batch_size, resolve_device, resolve_precision

    device = resolve_device(opts.device)
    if device != "cpu":
        return None
    precision = resolve_precision(opts.precision, device)
    folder = _entry(cache_dir, setup, precision, device, "torch", torch.__version__)
    if not _valid(folder, setup, opts):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated; still fastest here
        module = torch.jit.load(str(folder / "model.pt"), map_location="cpu")
    return TorchScriptEmbedder(
        module, setup, precision, opts.batch_size or default_batch_size(device)
    )


# ------------------------------------------------------------------------------ saving


def save_compiled(
    cache_dir: Path, embedder: TimmEmbedder, opts: EmbedderOptions | None = None
) -> Path | None:
    """Save ``embedder``'s model for :func:`load_compiled`, in the backend it will choose.

    The converted model must reproduce the embedder's vectors on a few probe images
    (:data:`SAVE_MIN_COSINE`), else nothing is saved.

    Args:
        cache_dir: the index's derived-cache folder (``<db>.cache/``).
        embedder: a freshly loaded :class:`~lookalike.embed.timm_embedder.TimmEmbedder`.
        opts: the options it was loaded with (backend, precision request, weights file);
            ``None``: the embedder's own precision and device, backend from the environment.

    Returns:
        The entry's folder, or ``None`` when this backend cannot save this embedder (not
        on the CPU, not traceable, conversion failed or did not match, disk full...).
        Never raises.
    """
    try:
        if embedder.device != "cpu":
            return None
        opts = opts or EmbedderOptions(precision=embedder.precision, device=embedder.device)
        if choose_backend(opts) == "openvino":
            return _save_openvino(Path(cache_dir), embedder, opts)
        return _save_torch(Path(cache_dir), embedder, opts)
    except Exception:
        return None


def _save_openvino(cache_dir: Path, embedder: TimmEmbedder, opts: EmbedderOptions) -> Path | None:
    precision = ovr.resolve_precision(opts.precision)
    model = ovr.convert(_fp32_model(embedder, opts), embedder.setup, embedder.layout)
    probe = probe_pixels(embedder.setup.preprocess.size)
    compiled = ovr.compile_model(model, precision)
    got = unit_rows(compiled.create_infer_request().infer({0: probe})[0])
    tolerance = SAVE_MIN_COSINE["bf16" if "bf16" in (precision, embedder.precision) else "fp32"]
    if not _matches(got, embedder.embed_pixels(probe), tolerance):
        return None
    version = ovr.version()
    folder = _entry(cache_dir, embedder.setup, precision, "cpu", "openvino", version)
    about = {"backend": "openvino", "version": version, "precision": precision}
    return _publish(folder, embedder.setup, opts, about, lambda tmp: ovr.save(model, tmp))


def _fp32_model(embedder: TimmEmbedder, opts: EmbedderOptions) -> Any:
    """The embedder's model with its weights as stored (fp32), on the CPU.

    A bf16 embedder's weights have lost their low bits: the model is built again from the
    same options in fp32 (timm is loaded already; ~0.5 s for ResNet50), else copied and
    widened.
    """
    import torch

    if embedder.precision == "fp32":
        return embedder.model
    if opts.model is not None:
        from .. import load_embedder  # timm or CLIP, as the model's name says

        try:
            extra = {**opts.extra, "jit": False}
            fresh = load_embedder(replace(opts, precision="fp32", device="cpu", extra=extra))
            if fresh.setup == embedder.setup:
                return fresh.model
        except Exception:  # e.g. hub weights no longer cached: widen the bf16 copy
            pass
    return copy.deepcopy(embedder.model).to("cpu", torch.float32)


def _save_torch(cache_dir: Path, embedder: TimmEmbedder, opts: EmbedderOptions) -> Path | None:
    import torch

    if not embedder.jit:  # an eager timm module cannot run without timm
        return None
    precision, version = embedder.precision, torch.__version__
    folder = _entry(cache_dir, embedder.setup, precision, "cpu", "torch", version)
    about = {"backend": "torch", "version": version, "precision": precision}
    net = embedder._net

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(net, tmp / "model.pt")

    return _publish(folder, embedder.setup, opts, about, write)


def _publish(
    folder: Path, setup: Setup, opts: EmbedderOptions, about: dict[str, str], write: Any
) -> Path:
    """Write an entry in a temporary sibling folder, then rename it into place.

    Entries of the same setup, backend and precision made by another backend version are
    removed: they would never be loaded again.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = folder.with_name(f".tmp-{folder.name[:16]}-{token}")
    tmp.mkdir()
    meta = {
        "format": FORMAT,
        "key": folder.name,
        **about,
        "setup": setup.to_json(),
        "weights_file": _weights_stat(opts.weights) if opts.weights else None,
    }
    try:
        write(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if folder.exists():  # a stale or broken entry: move it aside, then replace it
            old = folder.with_name(f".old-{folder.name[:16]}-{token}")
            os.replace(folder, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "meta.json").exists():  # not another process's finished entry
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(folder, meta)
    return folder


def _prune(keep: Path, meta: dict[str, Any]) -> None:
    same = ("setup", "backend", "precision")
    for entry in keep.parent.iterdir():
        if entry == keep or entry.name.startswith("."):
            continue
        try:
            other = json.loads((entry / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if all(other.get(k) == meta[k] for k in same) and other.get("version") != meta["version"]:
            shutil.rmtree(entry, ignore_errors=True)


def _matches(got: np.ndarray, want: np.ndarray, tolerance: float) -> bool:
    if got.shape != want.shape:
        return False
    ok_got, ok_want = np.isfinite(got).all(axis=1), np.isfinite(want).all(axis=1)
    if not np.array_equal(ok_got, ok_want):
        return False
    if not ok_want.any():
        return True
    cos = np.sum(got[ok_want].astype(np.float64) * want[ok_want], axis=1)
    return bool(cos.min() >= tolerance)


def probe_pixels(size: tuple[int, int], n: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth random colour images (more like photos than noise): (n, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 5, 5, 3))
    img = _lerp(_lerp(coarse, np.linspace(0, 4, size[0]), 1), np.linspace(0, 4, size[1]), 2)
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _lerp(a: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, a.shape[axis] - 1)
    shape = [1] * a.ndim
    shape[axis] = -1
    f = (pos - i0).reshape(shape)
    return np.take(a, i0, axis) * (1 - f) + np.take(a, i1, axis) * f
