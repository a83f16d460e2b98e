"""How an :class:`~lookalike.Index` knows its model: the recorded setup, checks against
what was asked, and lazy loading of the embedder (compiled cache first, then timm)."""

from __future__ import annotations

import os
from typing import Any

from .errors import SetupMismatchError
from .setup import DEFAULT_MODEL, EmbedderOptions, Preprocess, Setup


class SetupMixin:
    """The setup half of :class:`~lookalike.Index`; expects ``_store``, ``_options``,
    ``_embedder`` and ``path`` on the instance."""

    _store: Any
    _options: EmbedderOptions
    _embedder: Any
    path: Any
    location: Any

    @property
    def setup(self) -> Setup | None:
        """The recorded setup, or ``None`` while nothing has been embedded."""
        text = self._store.get_meta("setup")
        return Setup.from_json(text) if text else None

    def _check_requested(self) -> None:
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
            from .embed import resolve_model_name

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
            from .embed import weights_fingerprint

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

    def _effective_options(self) -> EmbedderOptions:
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

    def _expected_preprocess(self) -> Preprocess | None:
        """The preprocessing the model will have, known before it loads, or ``None``.

        The recorded one; for a new index, the one an earlier run of the same request got
        (the user's model cache). Lets decoding start while the model loads.
        """
        if self._embedder is not None:
            return self._embedder.setup.preprocess  # type: ignore[no-any-return]
        recorded = self.setup
        if recorded is not None:
            return recorded.preprocess
        from .embed.model_cache import fingerprint, models_root, recall_setup

        opts = self._effective_options()
        root = models_root()
        try:
            setup = recall_setup(root, opts, fingerprint(root, opts))
        except Exception:  # only a guess: whatever failed is raised properly by the model load
            return None
        return setup.preprocess if setup is not None else None

    def _get_embedder(self) -> Any:
        if self._embedder is None:
            from .embed.compiled import load_compiled
            from .embed.model_cache import fingerprint as get_fingerprint
            from .embed.model_cache import models_root, recall_setup, remember_setup

            opts = self._effective_options()
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
                embedder = self._build(root, opts)
            self._check_setup(embedder.setup)
            if fingerprint is not None:
                remember_setup(root, opts, fingerprint, embedder.setup)
            self._embedder = embedder
        return self._embedder

    def _build(self, root: Any, opts: EmbedderOptions) -> Any:
        """A model's first run: build it with timm, save a compiled copy, embed with the copy
        (the same vectors for the index and its later queries; OpenVINO's bf16 is ~3x faster
        than TorchScript on a CPU)."""
        from .embed import load_embedder
        from .embed.compiled import choose_backend, load_compiled, save_compiled

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


def _weights_meta(weights: str) -> dict[str, str]:
    """``weights_path`` and its ``size:mtime_ns`` stamp, for :meth:`Index._weights_unchanged`."""
    try:
        st = os.stat(weights)
    except OSError:
        return {"weights_path": weights}
    return {"weights_path": weights, "weights_stat": f"{st.st_size}:{st.st_mtime_ns}"}


def _replace(opts: EmbedderOptions, **changes: Any) -> EmbedderOptions:
    import dataclasses

    return dataclasses.replace(opts, **changes)
