"""How an :class:`~lookalike.Index` knows its model: the recorded setup, checks against
what was asked, lazy loading of the embedder (compiled cache first, then timm), and
embedding one image (a file or bytes) with it.

:class:`Model` needs the store (its ``setup`` record), the options asked for, and the
index's location (for messages); nothing else of the index.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..decode import DecodeFailure, DecodeLimits
from ..errors import QueryError, SetupMismatchError
from ..paths import resolved
from ..setup import DEFAULT_MODEL, EmbedderOptions, Preprocess, Setup
from ..store import Store


class Model:
    """The index's model: recorded setup, requested options and the lazily loaded embedder.

    Args:
        store: where the setup is recorded (``get_meta``/``set_meta``/``dim``).
        options: what the caller asked for (unset fields come from the record).
        location: the index's file or URL, for error messages.
        embedder: an already built embedder (tests, other backends), or ``None``.
    """

    def __init__(
        self, store: Store, options: EmbedderOptions, location: str, embedder: Any = None
    ) -> None:
        self._store = store
        self._options = options
        self.location = location
        self.embedder = embedder
        if embedder is not None:
            self._check_setup(embedder.setup)

    @property
    def options(self) -> EmbedderOptions:
        return self._options

    @property
    def setup(self) -> Setup | None:
        """The recorded setup, or ``None`` while nothing has been embedded."""
        text = self._store.get_meta("setup")
        return Setup.from_json(text) if text else None

    def check_requested(self) -> None:
        """Cheap check of explicit options against the recorded setup, before any model load."""
        recorded = self.setup
        if recorded is None:
            return
        opts = self._options
        problems = []
        if opts.model is not None and opts.model not in (
            recorded.model,
            self._store.get_meta("model_requested"),
        ):
            from ..embed import resolve_model_name

            if resolve_model_name(opts.model) != recorded.model:
                problems.append(f"model: index has {recorded.model!r}, requested {opts.model!r}")
        if opts.pool is not None and opts.pool != recorded.pool:
            problems.append(f"pool: index has {recorded.pool!r}, requested {opts.pool!r}")
        wanted_crop = {"none": "resize", "center": "center"}.get(opts.crop or "")
        if wanted_crop is not None and wanted_crop != recorded.preprocess.mode:
            problems.append(
                f"crop: index has {recorded.preprocess.mode!r}, requested {opts.crop!r}"
            )
        if opts.weights is not None and not self._weights_unchanged(opts.weights):
            from ..embed import weights_fingerprint

            fingerprint = weights_fingerprint(opts)
            if fingerprint != recorded.weights:
                problems.append(
                    f"weights: index has {recorded.weights!r}, requested {fingerprint!r}"
                )
            else:
                self._store.set_meta(_weights_meta(opts.weights))
        if problems:
            raise self._mismatch(problems)

    def _weights_unchanged(self, weights: str) -> bool:
        """The weights file is the one recorded, same size and mtime: no need to hash 100 MB."""
        recorded = self._store.get_meta("weights_stat")
        if recorded is None or self._store.get_meta("weights_path") != weights:
            return False
        return _weights_meta(weights).get("weights_stat") == recorded

    def _mismatch(self, problems: list[str]) -> SetupMismatchError:
        return SetupMismatchError(
            f"index {self.location} was built with another setup ({'; '.join(problems)}); "
            "use the same options, or another --db"
        )

    def _check_setup(self, setup: Setup) -> None:
        recorded = self.setup
        if recorded is None:
            dim = self._store.dim()
            if dim is not None and dim != setup.dim:
                raise self._mismatch([f"dim: index has {dim}, model gives {setup.dim}"])
            items = {"setup": setup.to_json(), "dim": str(setup.dim)}
            if self._options.model:
                items["model_requested"] = self._options.model
            if self._options.weights:
                items.update(_weights_meta(self._options.weights))
            self._store.set_meta(items)
            return
        problems = recorded.differences(setup)
        if problems:
            raise self._mismatch(problems)

    def effective_options(self) -> EmbedderOptions:
        """Fill unset options from the recorded setup, so a reopened index embeds the same way."""
        opts = self._options
        recorded = self.setup
        if recorded is None:
            return opts if opts.model else _replace(opts, model=DEFAULT_MODEL)
        weights = opts.weights
        if weights is None and recorded.weights.startswith("sha256:"):
            weights = self._store.get_meta("weights_path")
        extra = opts.extra
        if weights is None and recorded.weights.startswith("package:"):
            # Built from the package registry's weights: keep them even once the hub has some.
            extra = {**extra, "weights_source": "package"}
        return _replace(
            opts,
            extra=extra,
            model=opts.model or recorded.model,
            weights=weights,
            pool=opts.pool or recorded.pool,
            crop=opts.crop or ("center" if recorded.preprocess.mode == "center" else "none"),
        )

    def expected_preprocess(self) -> Preprocess | None:
        """The preprocessing the model will have, known before it loads, or ``None``.

        The recorded one; for a new index, the one an earlier run of the same request got
        (the user's model cache). Lets decoding start while the model loads.
        """
        if self.embedder is not None:
            return self.embedder.setup.preprocess  # type: ignore[no-any-return]
        recorded = self.setup
        if recorded is not None:
            return recorded.preprocess
        from ..embed.runtime.cache import fingerprint, models_root, recall_setup

        opts = self.effective_options()
        root = models_root()
        try:
            setup = recall_setup(root, opts, fingerprint(root, opts))
        except Exception:  # only a guess: whatever failed is raised properly by the model load
            return None
        return setup.preprocess if setup is not None else None

    def get_embedder(self, on_stage: Callable[[str], None] | None = None) -> Any:
        """The embedder, loaded on first use (a compiled copy when there is one).

        Args:
            on_stage: told ``"compiling-model"`` when there is no compiled copy yet and
                the model is built (and compiled) now: a first run's slow start.
        """
        if self.embedder is None:
            from ..embed.runtime.cache import fingerprint as get_fingerprint
            from ..embed.runtime.cache import models_root, recall_setup, remember_setup
            from ..embed.runtime.compiled import load_compiled

            opts = self.effective_options()
            root = models_root()
            setup = self.setup
            fingerprint = None
            if setup is None:
                # A new index: a model compiled for the same request by any earlier run.
                fingerprint = get_fingerprint(root, opts)
                setup = recall_setup(root, opts, fingerprint)
            embedder = None
            if setup is not None:
                # A saved model loads in a fraction of a second, without timm.
                embedder = load_compiled(root, setup, opts)
            if embedder is None:
                if on_stage is not None:
                    on_stage("compiling-model")
                embedder = self._build(root, opts)
            self._check_setup(embedder.setup)
            if fingerprint is not None:
                remember_setup(root, opts, fingerprint, embedder.setup)
            self.embedder = embedder
        return self.embedder

    def _build(self, root: Any, opts: EmbedderOptions) -> Any:
        """A model's first run: build it with timm, save a compiled copy, embed with the copy
        (the same vectors for the index and its later queries; OpenVINO's bf16 is ~3x faster
        than TorchScript on a CPU)."""
        from ..embed import load_embedder
        from ..embed.runtime.compiled import choose_backend, load_compiled, save_compiled

        if choose_backend(opts) == "openvino":
            # Converted from fp32 weights in any case: build the model once, fp32 and
            # untraced (~0.9 s less than a traced bf16 build plus an fp32 rebuild).
            extra = {**opts.extra, "jit": False}
            live = load_embedder(_replace(opts, precision="fp32", device="cpu", extra=extra))
            self._check_setup(live.setup)
            if save_compiled(root, live, opts):
                compiled = load_compiled(root, live.setup, opts)
                if compiled is not None:
                    return compiled
            # Not convertible: run the model as requested instead.
        embedder = load_embedder(opts)
        self._check_setup(embedder.setup)
        if save_compiled(root, embedder, opts):
            return load_compiled(root, embedder.setup, opts) or embedder
        return embedder

    def embedder_getter(self, on_stage: Callable[[str], None] | None) -> Callable[[], Any]:
        """:meth:`get_embedder`, telling ``on_stage`` when a model starts and ends loading."""
        if on_stage is None:
            return self.get_embedder
        told: list[str] = []

        def get() -> Any:
            if self.embedder is None and not told:
                told.append("loading-model")
                on_stage("loading-model")
            embedder = self.get_embedder(on_stage)
            if "embedding" not in told:
                told.append("embedding")
                on_stage("embedding")
            return embedder

        return get

    def embed_file(self, path: str | os.PathLike[str], limits: DecodeLimits) -> np.ndarray:
        """See :meth:`lookalike.Index.embed`."""
        from ..decode import decode_path

        embedder = self.get_embedder()
        try:
            pixels, _ = decode_path(resolved(path), embedder.setup.preprocess, limits)
        except DecodeFailure as e:
            raise QueryError(
                f"cannot read {os.fspath(path)}: {e.detail or e.reason}", e.reason
            ) from None
        assert pixels is not None  # no known hashes were given: always decoded
        vec = embedder.embed_pixels(pixels[None])[0]
        if not np.all(np.isfinite(vec)):
            raise QueryError(f"the model gave no usable vector for {os.fspath(path)}", "bad-vector")
        return vec  # type: ignore[no-any-return]

    def embed_bytes(
        self,
        data: bytes,
        limits: DecodeLimits,
        max_pixels: int | None = None,
        decode: Any = None,
    ) -> np.ndarray:
        """The vector of an image given as bytes (an upload), decoded in memory.

        Args:
            data: the image file's bytes; never written anywhere.
            max_pixels: a stricter decompression-bomb limit than the index's.
            decode: ``decode(data, preprocess, limits) -> (H, W, 3) uint8`` used instead of
                :func:`~lookalike.decode.decode_bytes` (same contract, raising
                :class:`~lookalike.decode.DecodeFailure`): the web server decodes uploads
                in a worker process with a time limit.

        Raises:
            QueryError: the bytes are not a usable image; ``reason`` says why.
        """
        from dataclasses import replace

        from ..decode import decode_bytes

        if max_pixels is not None:
            limits = replace(limits, max_pixels=min(max_pixels, limits.max_pixels))
        embedder = self.get_embedder()
        try:
            pixels = (decode or decode_bytes)(data, embedder.setup.preprocess, limits)
        except DecodeFailure as e:
            raise QueryError(f"cannot read the image: {e.detail or e.reason}", e.reason) from None
        vec = embedder.embed_pixels(pixels[None])[0]
        if not np.all(np.isfinite(vec)):
            raise QueryError("the model gave no usable vector for the image", "bad-vector")
        return vec  # type: ignore[no-any-return]


def _weights_meta(weights: str) -> dict[str, str]:
    """``weights_path`` and its ``size:mtime_ns`` stamp, for :meth:`Model._weights_unchanged`."""
    try:
        st = os.stat(weights)
    except OSError:
        return {"weights_path": weights}
    return {"weights_path": weights, "weights_stat": f"{st.st_size}:{st.st_mtime_ns}"}


def _replace(opts: EmbedderOptions, **changes: Any) -> EmbedderOptions:
    import dataclasses

    return dataclasses.replace(opts, **changes)
