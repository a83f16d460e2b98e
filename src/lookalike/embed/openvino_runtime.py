"""The OpenVINO backend: a timm embedder converted once, then run without torch or timm.

The converted graph takes what the decoder gives, ``(n, H, W, 3)`` uint8 RGB with a dynamic
batch, and folds the model's normalisation (``(x / 255 - mean) / std``) into its first
layer; it returns the pooled ``(n, dim)`` float32 vectors, normalised here in numpy. A
saved model is an OpenVINO IR pair (``model.xml`` + ``model.bin``, fp32 weights); bf16 is a
compile-time choice (``INFERENCE_PRECISION_HINT``), taken where the CPU runs bf16 natively
(AVX512-BF16 or AMX).

OpenVINO is optional (``pip install lookalike[openvino]``); :func:`available` says whether
it imports. Converting needs torch (the live model); loading and running need only
``openvino`` and numpy.
"""

from __future__ import annotations

import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..setup import Setup
from .pixels import check_pixels

if TYPE_CHECKING:
    import torch

# The graph's input: uint8 RGB, channels last, any batch size, normalisation inside.
INPUT_LAYOUT = "NHWC-u8-dynbatch-norm"
# Images per embed call, split across the streams: ResNet50 bf16 on 2 cores runs about as
# fast with 8 to 64 (bench/bench_backends.py); at least PER_STREAM_BATCH per stream.
DEFAULT_BATCH = 32
PER_STREAM_BATCH = 8
# Same as timm_embedder.ZERO_NORM (not imported: that module imports timm).
ZERO_NORM = 1e-6
_HINTS = {"bf16": "bf16", "fp32": "f32"}


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether ``openvino`` imports here (a broken install counts as absent)."""
    if importlib.util.find_spec("openvino") is None:
        return False
    try:
        import openvino  # noqa: F401
    except Exception:
        return False
    return True


def version() -> str:
    """The OpenVINO build, e.g. ``"2026.4.1-22982-e213a147257-releases/2026/4"``."""
    import openvino as ov

    return str(ov.get_version())


def _core() -> Any:
    import openvino as ov

    return ov.Core()


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 in hardware here (AVX512-BF16 or AMX)."""
    caps = _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in [str(c).upper() for c in caps]


def resolve_precision(requested: str) -> str:
    """``"bf16"`` or ``"fp32"``; ``"auto"`` is bf16 where the CPU runs it natively."""
    if requested == "auto":
        return "bf16" if native_bf16() else "fp32"
    return requested


def convert(model: torch.nn.Module, setup: Setup, layout: str) -> Any:
    """A headless timm model and its pooling as an ``ov.Model`` taking uint8 NHWC pixels.

    Args:
        model: the headless timm model, fp32, on the CPU, in eval mode (not modified).
        setup: its setup (pooling, input size, normalisation).
        layout: its feature layout (:func:`lookalike.embed.pooling.feature_layout`).

    Returns:
        An ``openvino.Model``: input ``(?, H, W, 3)`` u8, output ``(?, dim)`` f32 (not
        normalised).

    Raises:
        Exception: whatever the conversion raises (the caller treats any as "cannot").
    """
    import openvino as ov
    import torch
    from openvino.preprocess import PrePostProcessor

    from .pooling import PooledModel

    pre = setup.preprocess
    h, w = pre.size
    net = PooledModel(model, setup.pool, layout).eval()
    example = torch.zeros(1, 3, h, w)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracing warnings of the model's own code
        try:
            # Tracing once ourselves (no trace check) and freezing converts in about a third
            # of the time OpenVINO takes from the nn.Module (ResNet50: ~0.8 s vs ~2.1 s).
            source: Any = torch.jit.freeze(torch.jit.trace(net, example, check_trace=False))
        except Exception:
            source = net
        om = ov.convert_model(source, example_input=example, input=[([-1, 3, h, w], ov.Type.f32)])
    ppp = PrePostProcessor(om)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(
        [255.0 * m for m in pre.mean]
    ).scale([255.0 * s for s in pre.std])
    ppp.output().tensor().set_element_type(ov.Type.f32)
    return ppp.build()


def save(model: Any, folder: Path) -> None:
    """Write ``model.xml`` and ``model.bin`` (fp32 weights) into ``folder``."""
    import openvino as ov

    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)


def load(
    folder: Path, setup: Setup, *, precision: str, batch_size: int | None = None
) -> OpenVINOEmbedder:
    """Compile a saved model for the CPU.

    Args:
        folder: holds ``model.xml`` and ``model.bin`` from :func:`save`.
        setup: what the model embeds (its input size and vector dimension are checked).
        precision: ``"bf16"`` or ``"fp32"``, already resolved.
        batch_size: images per embed call; default :data:`DEFAULT_BATCH` (more with many
            streams).

    Raises:
        Exception: unreadable files, a model of other shapes, a model that does not
            compile (the caller treats any as a cache miss).
    """
    core = _core()
    model = core.read_model(str(folder / "model.xml"), str(folder / "model.bin"))
    h, w = setup.preprocess.size
    shapes = (str(model.input(0).get_partial_shape()), str(model.output(0).get_partial_shape()))
    if shapes != (f"[?,{h},{w},3]", f"[?,{setup.dim}]"):
        raise ValueError(f"saved model has shapes {shapes}, not those of {setup.model}")
    compiled = compile_model(model, precision, core=core)
    return OpenVINOEmbedder(compiled, setup, precision, batch_size)


def compile_model(model: Any, precision: str, *, core: Any = None) -> Any:
    """``model`` compiled for the CPU in throughput mode.

    Throughput mode runs one stream per core or two, each on its own part of the batch,
    with no barrier between cores: when decode workers or other programs take a core,
    the other streams keep going. Latency mode (every core on one batch) is as fast on an
    idle machine but loses ~40% more to one busy core (ResNet50 bf16, 2 cores, next to a
    busy process: 69 vs 111 images/s; ``python bench/bench_backends.py --busy``).
    """
    config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "THROUGHPUT"}
    return (core or _core()).compile_model(model, "CPU", config)


class OpenVINOEmbedder:
    """A compiled OpenVINO model as an :class:`~lookalike.embed.Embedder`, on the CPU.

    Attributes:
        setup: what produces the vectors (the index's recorded setup).
        device: always ``"cpu"``.
        precision: ``"bf16"`` or ``"fp32"``.
        batch_size: images per call of the model (split across its streams).
        backend: ``"openvino"``.

    Example:
        >>> emb = load(folder, setup, precision="bf16")  # doctest: +SKIP
        >>> emb.embed_pixels(np.zeros((2, 224, 224, 3), np.uint8)).shape  # doctest: +SKIP
        (2, 2048)
    """

    backend = "openvino"
    device = "cpu"

    def __init__(
        self, compiled: Any, setup: Setup, precision: str, batch_size: int | None = None
    ) -> None:
        self.setup = setup
        self.precision = precision
        self._compiled = compiled
        try:
            streams = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        except Exception:
            streams = 1
        self._requests = [compiled.create_infer_request() for _ in range(max(1, streams))]
        self.batch_size = batch_size or max(DEFAULT_BATCH, PER_STREAM_BATCH * len(self._requests))

    def __repr__(self) -> str:
        s = self.setup
        return (
            f"OpenVINOEmbedder({s.model}, pool={s.pool}, dim={s.dim}, "
            f"precision={self.precision}, batch_size={self.batch_size})"
        )

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB at ``setup.preprocess.size`` -> (n, dim) float32.

        Rows have unit L2 norm, or are all NaN where the output was non-finite or ~zero.

        Raises:
            ValueError: wrong dtype or shape (a bug in the caller).
        """
        arr = check_pixels(pixels, self.setup)
        out = np.empty((arr.shape[0], self.setup.dim), np.float32)
        for start in range(0, arr.shape[0], self.batch_size):
            chunk = np.ascontiguousarray(arr[start : start + self.batch_size])
            out[start : start + len(chunk)] = unit_rows(self._infer(chunk))
        return out

    def _infer(self, chunk: np.ndarray) -> np.ndarray:
        """One part of the chunk per stream, run at once; (n, dim) float32 raw outputs."""
        parts = np.array_split(chunk, min(len(self._requests), len(chunk)))
        running = list(zip(self._requests, parts, strict=False))
        for request, part in running:
            request.start_async({0: part})
        for request, _ in running:
            request.wait()
        return np.concatenate(
            [np.asarray(r.get_output_tensor(0).data).reshape(len(p), -1) for r, p in running]
        )

    def embed_tensor(self, x: Any) -> np.ndarray:
        """Not available: this backend takes uint8 pixels only (use :meth:`embed_pixels`)."""
        raise NotImplementedError(
            "the OpenVINO embedder takes uint8 pixels (embed_pixels), not normalised tensors"
        )


def unit_rows(v: np.ndarray) -> np.ndarray:
    """L2-normalise rows in float64; non-finite or ~zero-norm rows become all NaN.

    Args:
        v: (n, dim) float array.

    Returns:
        (n, dim) float32, as ``timm_embedder.unit_rows`` gives for a torch tensor.
    """
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        bad = ~np.isfinite(v).all(axis=1) | ~(norm[:, 0] > ZERO_NORM)
        out = (v / np.maximum(norm, ZERO_NORM)).astype(np.float32)
    out[bad] = np.nan
    return out
