"""Where and how fast a model runs: device, precision, batch size, TorchScript freezing."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ...errors import ConfigError

BATCH_SIZES = {"cpu": 32, "cuda": 128, "mps": 32}
# Minimum cosine between traced and eager outputs for the traced module to be used. The
# frozen graph folds batch norms into convolutions, which rounds differently in bf16.
TRACE_MIN_COSINE = {"fp32": 0.9999, "bf16": 0.99}


def resolve_device(requested: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"mps"``; ``"auto"`` picks cuda, then mps, then cpu.

    Raises:
        ConfigError: the requested device is not available in this torch build or machine.
    """
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (requested == "cuda" and not cuda) or (requested == "mps" and not mps):
        raise ConfigError(
            f"device {requested!r} is not available here (torch {torch.__version__}); "
            "use --device cpu or auto"
        )
    return requested


def native_bf16(device: str) -> bool:
    """Whether ``device`` runs bf16 matrix maths in hardware.

    CPU: AVX512-BF16 or AMX, with oneDNN's bf16 kernels. CUDA: ``torch.cuda.is_bf16_supported()``
    (Ampere and later). MPS: treated as no.
    """
    if device == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    hw = any(
        bool(getattr(cpu, probe, lambda: False)())
        for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )
    try:
        kernels = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        kernels = torch.backends.mkldnn.is_available()
    return hw and kernels


def resolve_precision(requested: str, device: str) -> str:
    """``"bf16"`` or ``"fp32"``; ``"auto"`` is bf16 where the device runs it natively."""
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return requested


def default_batch_size(device: str) -> int:
    """Images per forward pass when the user does not say: 32 on CPU/MPS, 128 on CUDA."""
    return BATCH_SIZES.get(device, 32)


def try_trace(
    net: torch.nn.Module, example: torch.Tensor, check: torch.Tensor, *, precision: str
) -> Any | None:
    """``torch.jit.trace`` + ``torch.jit.freeze`` a module, if the result can be trusted.

    The traced module is kept only when it runs a batch of a *different* size than the
    one it was traced on (a trace can bake in the batch size) and its output matches the
    eager module's there (cosine per row at least :data:`TRACE_MIN_COSINE`).

    Args:
        net: eval-mode module, (n, 3, H, W) -> (n, dim) float32.
        example: input to trace with, already in the model's dtype and memory format.
        check: input with another batch size, same dtype and format.
        precision: ``"bf16"`` or ``"fp32"``, selects the tolerance.

    Returns:
        The frozen module, or ``None`` when tracing fails or does not match (use eager).
    """
    if example.shape[0] == check.shape[0]:
        raise ValueError("the check batch must differ in size from the example batch")
    try:
        with warnings.catch_warnings():
            # trace/freeze are deprecated in favour of torch.compile/export; they remain the
            # fastest CPU inference path here and any failure falls back to eager.
            warnings.simplefilter("ignore")
            with torch.inference_mode():
                frozen = torch.jit.freeze(torch.jit.trace(net, example, check_trace=False))
                want = net(check)
                # The first runs of a frozen module profile and optimise the graph.
                for _ in range(2):
                    got = frozen(check)
    except Exception:
        return None
    if got.shape != want.shape or not torch.equal(torch.isfinite(got), torch.isfinite(want)):
        return None
    ok = torch.isfinite(want).all(dim=1)
    if bool(ok.any()):
        cos = torch.nn.functional.cosine_similarity(got[ok].double(), want[ok].double(), dim=1)
        if float(cos.min()) < TRACE_MIN_COSINE[precision]:
            return None
    return frozen
