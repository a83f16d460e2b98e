"""The text side of a CLIP index: text -> unit vectors in the index's space.

The text tower is built only when a text query is asked. Its first build (open_clip,
torch, the checkpoint) saves a compiled copy in the shared model cache
(:mod:`lookalike.embed.runtime.compiled`'s folder and rules): an OpenVINO IR taking ``(n, L)``
int64 token ids when OpenVINO is installed, else a frozen TorchScript module. Later
processes load that copy and tokenize with :class:`~lookalike.embed.clip.tokenizer.ClipTokenizer`:
a text query needs neither torch nor open_clip's import (seconds) on the OpenVINO path.
Each saved copy is checked against open_clip's ``encode_text`` on probe texts first.

The entry is keyed by the index's setup (which names the weights and the text tower's
configuration) with layout :data:`TEXT_LAYOUT`; a build whose text tower differs from the
one the index recorded is refused (:class:`~lookalike.errors.SetupMismatchError`).
"""

from __future__ import annotations

import contextlib
import json
import threading
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, SetupMismatchError
from ...setup import EmbedderOptions, Setup
from ..runtime import compiled
from ..runtime import openvino as ovr
from ..runtime.openvino import unit_rows
from .tokenizer import ClipTokenizer

TEXT_LAYOUT = "text-tokens-i64-dynlen"
PROBE_TEXTS = ("a photo of a red bicycle", "two dogs playing in the snow at night", "cat")
SAVE_MIN_COSINE = compiled.SAVE_MIN_COSINE


class TextEncoder:
    """Texts -> ``(n, dim)`` float32 unit vectors, for one CLIP setup.

    Attributes:
        setup: the index's setup (``space == "clip"``).
        backend: ``"openvino"``, ``"torch"`` (TorchScript) or ``"eager"`` (open_clip).
        truncate: whether the tower runs on the tokens up to end-of-text only.
    """

    def __init__(
        self, run: Any, setup: Setup, *, backend: str, truncate: bool, tokenizer: ClipTokenizer
    ) -> None:
        self._run = run
        self.setup = setup
        self.backend = backend
        self.truncate = truncate
        self.tokenizer = tokenizer
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TextEncoder({self.setup.model}, backend={self.backend}, truncate={self.truncate})"

    def tokens(self, texts: list[str]) -> np.ndarray:
        """``(n, L)`` int64 ids; ``L`` is the context length, or the longest text when
        truncating."""
        ids = self.tokenizer(texts)
        if self.truncate:
            # End-of-text is the largest id of each row (open_clip's argmax pooling).
            ids = ids[:, : int(ids.argmax(axis=1).max()) + 1]
        return np.ascontiguousarray(ids)

    def embed(self, texts: list[str]) -> np.ndarray:
        """``(n, dim)`` float32 unit rows (all-NaN rows where the output is unusable)."""
        with self._lock:
            return unit_rows(np.asarray(self._run(self.tokens(list(texts))), np.float32))


def tokenizer_for(setup: Setup) -> ClipTokenizer:
    """The tokenizer the setup records (``clip-bpe:<vocab>:<clean>:<context>``)."""
    assert setup.clip is not None
    _, _, clean, context = setup.clip.tokenizer.split(":")
    return ClipTokenizer(context_length=int(context), clean=clean)


def _entry(root: Path, setup: Setup, precision: str, backend: str, version: str) -> Path:
    key = compiled.cache_key(
        setup, precision=precision, device="cpu", backend=backend, version=version,
        layout=TEXT_LAYOUT,
    )  # fmt: skip
    return Path(root) / "models" / key


def load_text_encoder(root: Path, setup: Setup, opts: EmbedderOptions) -> TextEncoder:
    """The text encoder of a CLIP setup: the compiled copy, else built (and saved).

    Args:
        root: the shared model cache (:func:`lookalike.embed.runtime.cache.models_root`).
        setup: the index's recorded setup.
        opts: the effective options (weights file, precision, backend).

    Raises:
        ConfigError: ``setup`` is not a CLIP setup.
        SetupMismatchError: the model built from ``opts`` has another text tower or weights.
        ModelError, WeightsUnavailableError, MissingDependencyError: as building the model.
    """
    if setup.space != "clip" or setup.clip is None:
        raise ConfigError(f"{setup.model} is not a CLIP model: it has no text tower")
    # One short text at a time: the CPU runs it in milliseconds, on any machine, and the
    # CPU backends (OpenVINO) load without importing torch.
    opts = replace(opts, device="cpu")
    tokenizer = tokenizer_for(setup)
    found = _load_saved(root, setup, opts, tokenizer)
    return found if found is not None else _build(root, setup, opts, tokenizer)


def _load_saved(
    root: Path, setup: Setup, opts: EmbedderOptions, tokenizer: ClipTokenizer
) -> TextEncoder | None:
    try:
        if compiled.choose_backend(opts) == "openvino":
            precision = ovr.resolve_precision(opts.precision)
            folder = _entry(root, setup, precision, "openvino", ovr.version())
            if not compiled._valid(folder, setup, opts):
                return None
            meta = json.loads((folder / "meta.json").read_text())
            core = ovr._core()
            model = core.read_model(str(folder / "model.xml"), str(folder / "model.bin"))
            run = _ov_runner(core, model, precision)
            return TextEncoder(
                run, setup, backend="openvino", truncate=bool(meta["truncate"]), tokenizer=tokenizer
            )
        import torch

        precision = _torch_precision(opts)
        folder = _entry(root, setup, precision, "torch", torch.__version__)
        if not compiled._valid(folder, setup, opts):
            return None
        meta = json.loads((folder / "meta.json").read_text())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(folder / "model.pt"), map_location="cpu")
        return TextEncoder(
            _torch_runner(module),
            setup,
            backend="torch",
            truncate=bool(meta["truncate"]),
            tokenizer=tokenizer,
        )
    except Exception:  # a broken or foreign entry is a miss: build it again
        return None


def _ov_runner(core: Any, model: Any, precision: str) -> Any:
    # One query at a time: latency mode, every core on it.
    config = {"INFERENCE_PRECISION_HINT": ovr._HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
    request = core.compile_model(model, "CPU", config).create_infer_request()

    def run(tokens: np.ndarray) -> np.ndarray:
        return np.array(request.infer({0: tokens})[0], np.float32)

    return run


def _torch_runner(module: Any) -> Any:
    import torch

    def run(tokens: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(tokens)).float().numpy()  # type: ignore[no-any-return]

    return run


def _torch_precision(opts: EmbedderOptions) -> str:
    from ..runtime.device import resolve_precision

    return resolve_precision(opts.precision, "cpu")


def _build(
    root: Path, setup: Setup, opts: EmbedderOptions, tokenizer: ClipTokenizer
) -> TextEncoder:
    """Build the tower with open_clip, check it is the recorded one, save a compiled copy."""
    import torch

    from .embedder import load_clip_model
    from .towers import ClipTextTower

    loaded, built = load_clip_model(replace(opts, model=setup.model, crop=None))
    model: Any = loaded
    problems = [
        line
        for line in replace(setup, dim=0, preprocess=built.preprocess).differences(built)
        if line.startswith(("weights", "clip.", "model"))
    ]
    if problems:
        raise SetupMismatchError(
            f"the text tower does not belong to this index ({'; '.join(problems)}); "
            "use the model and weights the index was built with, or another --db"
        )
    tower = ClipTextTower(model).eval()
    probe = tokenizer(list(PROBE_TEXTS))
    with torch.inference_mode():
        want = unit_rows(model.encode_text(torch.from_numpy(probe)).float().numpy())
    backend = compiled.choose_backend(opts)
    if backend == "openvino":
        encoder = _save_openvino(root, setup, opts, tower, tokenizer, want)
    else:
        encoder = _save_torch(root, setup, opts, tower, tokenizer, want)
    if encoder is not None:
        return encoder
    return TextEncoder(
        _torch_runner(tower),
        setup,
        backend="eager",
        truncate=tower.truncatable,
        tokenizer=tokenizer,
    )


def _trace(tower: Any, example: np.ndarray) -> Any:
    import torch

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        return torch.jit.freeze(
            torch.jit.trace(tower, torch.from_numpy(example), check_trace=False)
        )


def _check_and_publish(
    root: Path, setup: Setup, opts: EmbedderOptions, encoder: TextEncoder, want: np.ndarray,
    folder: Path, about: dict[str, Any], write: Any,
) -> TextEncoder | None:  # fmt: skip
    precision = str(about["precision"])
    got = encoder.embed(list(PROBE_TEXTS))
    if not compiled._matches(got, want, SAVE_MIN_COSINE[precision]):
        return None
    with contextlib.suppress(OSError):  # an unwritable cache costs the next process a build
        compiled._publish(folder, setup, opts, about, write)
    return encoder


def _save_openvino(
    root: Path, setup: Setup, opts: EmbedderOptions, tower: Any, tokenizer: ClipTokenizer,
    want: np.ndarray,
) -> TextEncoder | None:  # fmt: skip
    try:
        import openvino as ov

        precision = ovr.resolve_precision(opts.precision)
        example = tokenizer([PROBE_TEXTS[0]])
        source = _trace(tower, example[:, :12])
        model = ov.convert_model(source, example_input=example, input=[([-1, -1], ov.Type.i64)])
        core = ovr._core()
        encoder = TextEncoder(
            _ov_runner(core, model, precision),
            setup,
            backend="openvino",
            truncate=tower.truncatable,
            tokenizer=tokenizer,
        )
        version = ovr.version()
        folder = _entry(root, setup, precision, "openvino", version)
        about = {"backend": "openvino", "version": version, "precision": precision}
        about["truncate"] = tower.truncatable
        return _check_and_publish(
            root, setup, opts, encoder, want, folder, about, lambda tmp: ovr.save(model, tmp)
        )
    except Exception:  # not convertible: TorchScript or open_clip itself
        return None


def _save_torch(
    root: Path, setup: Setup, opts: EmbedderOptions, tower: Any, tokenizer: ClipTokenizer,
    want: np.ndarray,
) -> TextEncoder | None:  # fmt: skip
    try:
        import torch

        precision = _torch_precision(opts)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        tower = tower.to(dtype)
        module = _trace(tower, tokenizer([PROBE_TEXTS[0]])[:, :12])
        encoder = TextEncoder(
            _torch_runner(module),
            setup,
            backend="torch",
            truncate=tower.truncatable,
            tokenizer=tokenizer,
        )
        folder = _entry(root, setup, precision, "torch", torch.__version__)
        about = {"backend": "torch", "version": torch.__version__, "precision": precision}
        about["truncate"] = tower.truncatable

        def write(tmp: Path) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                torch.jit.save(module, tmp / "model.pt")

        return _check_and_publish(root, setup, opts, encoder, want, folder, about, write)
    except Exception:
        return None
