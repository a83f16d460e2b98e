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

OpenVINO's usage telemetry is declined when this module is imported, before anything here
imports ``openvino`` (:func:`decline_telemetry`): a tool for local photos sends nothing and
writes nothing outside its own folders.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._cpu import usable_cores
from ...errors import ModelError
from ...setup import Setup
from ..pixels import check_pixels

if TYPE_CHECKING:
    import torch

# The graph's input: uint8 RGB, channels last, any batch size, normalisation inside.
INPUT_LAYOUT = "NHWC-u8-dynbatch-norm"
# Images per inference request. Large inputs run on a copy of the model compiled for this
# static batch, a queue of requests keeping every stream busy. ResNet50 bf16 on 2 cores:
# 8 per request runs at ~205 images/s, 16 at ~165 and 32 at ~149 (activations of a small
# batch stay in the cores' caches); a dynamic batch of 8 at ~188
# (python bench/bench_backends.py: ov_bf16_tput_req8_b64 and the others).
PER_REQUEST_BATCH = 8
# Images per embed call from the indexing pipeline (several requests per stream).
DEFAULT_BATCH = 64
# Same as timm_embedder.ZERO_NORM (not imported: that module imports timm).
ZERO_NORM = 1e-6
_HINTS = {"bf16": "bf16", "fp32": "f32"}


_TELEMETRY = "openvino_telemetry"
_blocked: list[Any] = []  # the telemetry module shadowed until openvino is imported


def decline_telemetry() -> bool:
    """Keep OpenVINO's usage telemetry out of this process; runs when this module is imported.

    ``import openvino`` imports its converter (``openvino.tools.ovc``), which starts
    ``openvino_telemetry`` unless the user opted out with its ``opt_in_out`` script: it
    writes ``~/intel/openvino_ga_cid`` and ``~/intel/stats`` and queues events for Google
    Analytics, at import and at every ``convert_model``. Each converter module imports the
    package as ``try: import openvino_telemetry ... except ImportError:`` a no-op stub
    that ships with OpenVINO. So until ``openvino`` is imported, the package is shadowed
    (``sys.modules[name] = None``, Python's way to make an import fail): whoever imports
    ``openvino`` first, the converter binds the stub. :func:`_openvino` lifts the shadow
    once the converter holds the stub, so nothing else in the process is affected.
    (Creating the telemetry's singleton first, declined, does not hold: the converter
    re-initialises it under each of its own application names.)

    Returns:
        True when the telemetry is kept out; False when ``openvino`` was already imported
        by someone else (their choice stands).
    """
    if "openvino" in sys.modules:
        return False
    if not _blocked:
        _blocked.append(sys.modules.get(_TELEMETRY))
        sys.modules[_TELEMETRY] = None  # type: ignore[assignment]
    return True


def _openvino() -> Any:
    """``import openvino`` with its telemetry kept out (:func:`decline_telemetry`)."""
    decline_telemetry()
    try:
        import openvino
    finally:
        if _blocked and "openvino.tools.ovc" in sys.modules:
            previous = _blocked.pop()
            if sys.modules.get(_TELEMETRY, ...) is None:
                if previous is None:
                    del sys.modules[_TELEMETRY]
                else:
                    sys.modules[_TELEMETRY] = previous
    return openvino


decline_telemetry()


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether ``openvino`` imports here (a broken install counts as absent)."""
    if importlib.util.find_spec("openvino") is None:
        return False
    try:
        _openvino()
    except Exception:
        return False
    return True


def version() -> str:
    """The OpenVINO build, e.g. ``"2026.4.1-22982-e213a147257-releases/2026/4"``."""
    ov = _openvino()
    return str(ov.get_version())


def _core() -> Any:
    ov = _openvino()
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
    ov = _openvino()
    import torch
    from openvino.preprocess import PrePostProcessor

    from ..pooling import PooledModel

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
    ov = _openvino()

    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)


def load(
    folder: Path, setup: Setup, *, precision: str, batch_size: int | None = None
) -> OpenVINOEmbedder:
    """Compile a saved model for the CPU.

    Args:
        folder: holds ``model.xml`` and ``model.bin`` from :func:`save`.
        setup: what the model embeds (its input size and vector dimension are checked).
        precision: ``"bf16"`` or ``"fp32"``, already resolved.
        batch_size: images per embed call from the indexing pipeline, rounded up to whole
            requests; default :data:`DEFAULT_BATCH`, or 8 per core where that is more.

    Nothing is compiled yet: each form of the model (any batch for a query, a static
    batch for indexing) is compiled when first used, in ~0.1 s.

    Raises:
        Exception: unreadable files, a model of other shapes (the caller treats any as a
            cache miss).
    """
    core = _core()
    model = core.read_model(str(folder / "model.xml"), str(folder / "model.bin"))
    h, w = setup.preprocess.size
    shapes = (str(model.input(0).get_partial_shape()), str(model.output(0).get_partial_shape()))
    if shapes != (f"[?,{h},{w},3]", f"[?,{setup.dim}]"):
        raise ValueError(f"saved model has shapes {shapes}, not those of {setup.model}")
    return OpenVINOEmbedder(model, setup, precision, batch_size, core=core, source=folder)


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

    Fewer than :data:`PER_REQUEST_BATCH` images (a query) run on the dynamic-batch model,
    split across its streams. More run in requests of exactly ``PER_REQUEST_BATCH`` images
    (the last one padded) on a static-batch copy of the model, compiled on first use from
    ``model``, through a queue that starts the next request as soon as a stream is free.
    Calls are serialised (one lock): the requests are not reentrant.

    Attributes:
        setup: what produces the vectors (the index's recorded setup).
        device: always ``"cpu"``.
        precision: ``"bf16"`` or ``"fp32"``.
        batch_size: images per call the indexing pipeline should pass.
        backend: ``"openvino"``.

    Example:
        >>> emb = load(folder, setup, precision="bf16")  # doctest: +SKIP
        >>> emb.embed_pixels(np.zeros((2, 224, 224, 3), np.uint8)).shape  # doctest: +SKIP
        (2, 2048)
    """

    backend = "openvino"
    device = "cpu"

    def __init__(
        self,
        model: Any,
        setup: Setup,
        precision: str,
        batch_size: int | None = None,
        *,
        core: Any = None,
        source: Path | None = None,
    ) -> None:
        self.setup = setup
        self.precision = precision
        self._model = model  # an ov.Model, compiled in two forms on first use
        self._core = core or _core()
        self._source = source
        self._requests: list[Any] | None = None  # dynamic-batch requests, one per stream
        self._static: Any = None  # AsyncInferQueue over the static-batch model, once built
        self._static_failed = False
        self._lock = threading.Lock()
        b = PER_REQUEST_BATCH
        # Whole requests only: a multiple of PER_REQUEST_BATCH pads nothing but the last call.
        default = max(DEFAULT_BATCH, b * usable_cores())
        self.batch_size = -(-batch_size // b) * b if batch_size else default

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
        with self._lock:
            queue = self._static_queue() if len(arr) >= PER_REQUEST_BATCH else None
            if queue is not None:
                try:
                    return unit_rows(self._infer_static(queue, arr, self.setup.dim))
                except Exception:
                    # A failed request poisons its slot of the queue for good: drop the
                    # static-batch model and embed on the dynamic one (which raises again if
                    # the model itself is at fault).
                    with contextlib.suppress(Exception):
                        queue.wait_all()
                    self._static, self._static_failed = None, True
            requests = self._dynamic_requests()
            out = np.empty((arr.shape[0], self.setup.dim), np.float32)
            step = PER_REQUEST_BATCH * len(requests)
            for start in range(0, arr.shape[0], step):
                chunk = np.ascontiguousarray(arr[start : start + step])
                out[start : start + len(chunk)] = unit_rows(self._infer(requests, chunk))
            return out

    def _dynamic_requests(self) -> list[Any]:
        """One request per stream of the dynamic-batch model, compiled on first use.

        Raises:
            ModelError: the saved model does not compile (names the folder to delete).
        """
        if self._requests is None:
            try:
                compiled = compile_model(self._model, self.precision, core=self._core)
                streams = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            except Exception as e:
                raise ModelError(
                    f"the compiled model in {self._source} does not compile ({e}); "
                    "delete that folder and run again"
                ) from e
            self._requests = [compiled.create_infer_request() for _ in range(max(1, streams))]
        return self._requests

    def _static_queue(self) -> Any:
        """The static-batch request queue, compiled on first use; ``None`` if it cannot be."""
        if self._static is None and not self._static_failed:
            try:
                ov = _openvino()

                h, w = self.setup.preprocess.size
                model = self._model.clone()
                model.reshape([PER_REQUEST_BATCH, h, w, 3])
                compiled = compile_model(model, self.precision, core=self._core)
                streams = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                self._static = ov.AsyncInferQueue(compiled, max(1, streams))
            except Exception:  # keep going on the dynamic model: slower, same vectors
                self._static_failed = True
        return self._static

    @staticmethod
    def _infer_static(queue: Any, arr: np.ndarray, dim: int) -> np.ndarray:
        """(n >= PER_REQUEST_BATCH, H, W, 3) -> (n, dim) raw outputs, a queue of full batches."""
        n, b = len(arr), PER_REQUEST_BATCH
        raw = np.empty((n, dim), np.float32)
        errors: list[BaseException] = []

        def done(request: Any, start: int) -> None:
            try:
                got = np.asarray(request.get_output_tensor(0).data).reshape(b, dim)
                stop = min(n, start + b)
                raw[start:stop] = got[: stop - start]
            except BaseException as e:  # raised below, in the caller's thread
                errors.append(e)

        queue.set_callback(done)
        for start in range(0, n, b):
            chunk = arr[start : start + b]
            if len(chunk) < b:  # the static shape takes full batches only: pad the last
                pad = np.zeros((b - len(chunk), *chunk.shape[1:]), np.uint8)
                chunk = np.concatenate([chunk, pad])
            queue.start_async({0: np.ascontiguousarray(chunk)}, start)
        queue.wait_all()
        if errors:
            raise errors[0]
        return raw

    @staticmethod
    def _infer(requests: list[Any], chunk: np.ndarray) -> np.ndarray:
        """One part of the chunk per stream, run at once; (n, dim) float32 raw outputs."""
        parts = np.array_split(chunk, min(len(requests), len(chunk)))
        running = list(zip(requests, parts, strict=False))
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
