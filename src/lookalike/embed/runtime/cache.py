"""Where compiled models live, and how a new index finds one before anything is recorded.

Compiled models (:mod:`lookalike.embed.runtime.compiled`) are shared by every index of the user:
``$LOOKALIKE_CACHE`` or the platform's user cache folder. An index records its full
:class:`~lookalike.setup.Setup` only after a model ran, so a brand-new index asks by what
the user *requested* (model name, weights fingerprint, pooling, crop): a small alias file
maps that request to the setup a previous run produced, and the compiled entry is found by
setup as usual. Nothing here imports torch or timm.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import uuid
from pathlib import Path

from ...setup import DEFAULT_MODEL, EmbedderOptions, Setup


def models_root() -> Path:
    """``$LOOKALIKE_CACHE``, else the user cache folder (platformdirs) for lookalike."""
    env = os.environ.get("LOOKALIKE_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lookalike"))


def _alias(root: Path, opts: EmbedderOptions, fingerprint: str) -> Path:
    from ..clip.names import is_clip_name

    request = {
        "model": opts.model,
        "weights": fingerprint,
        "pool": opts.pool,
        # CLIP models: no crop means the model's own resize mode, not "none".
        "crop": opts.crop or (None if is_clip_name(opts.model) else "none"),
    }
    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    return root / "models" / "requests" / f"{key}.json"


def recall_setup(root: Path, opts: EmbedderOptions, fingerprint: str) -> Setup | None:
    """The setup an earlier run got for this request, or ``None``."""
    try:
        return Setup.from_json(_alias(root, opts, fingerprint).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_setup(root: Path, opts: EmbedderOptions, fingerprint: str, setup: Setup) -> None:
    """Record request -> setup (atomically); failures are ignored: it is only a shortcut."""
    path = _alias(root, opts, fingerprint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(setup.to_json())
        os.replace(tmp, path)
    except OSError:
        pass


def fingerprint(root: Path, opts: EmbedderOptions) -> str:
    """:func:`lookalike.embed.weights_fingerprint`, remembered under ``root``.

    A weights file is hashed once, not on every new index (ResNet50: ~0.13 s for 100 MB): the
    hash is kept by the file's path, size, mtime, ctime and inode (stricter than the test
    that says an image is unchanged). Hub weights are named without importing torch and
    timm (~3 s): kept by the model name and timm's version. Failures to remember are
    ignored.

    Raises:
        WeightsUnavailableError: the weights file does not exist; timm has no weights.
        ModelNotFoundError: unknown model (hub weights only).
    """
    from .. import weights_fingerprint

    key = _fingerprint_key(opts)
    path = None
    if key is not None:
        name = hashlib.sha256(key.encode()).hexdigest()
        path = root / "models" / "fingerprints" / f"{name}.txt"
        try:
            known = path.read_text().strip()
            if known.startswith(("sha256:", "hub:", "url:")):
                return known
        except (OSError, UnicodeDecodeError):
            pass
    value = weights_fingerprint(opts)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
            tmp.write_text(value)
            os.replace(tmp, path)
        except OSError:
            pass
    return value


def _fingerprint_key(opts: EmbedderOptions) -> str | None:
    if opts.weights:
        from ..weights import weights_path

        p = weights_path(opts.weights)
        st = p.stat()
        # ctime too: tools that copy a file in place can set its mtime, not its ctime.
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        return json.dumps(["file", str(p), *stamp])
    from ..shipped import is_shipped

    if is_shipped(opts.model):
        # Hub or package depends on this machine's hub, not on the name: ask each time
        # (cheap, without timm; the package file's hash is cached per process).
        return None
    from ..clip.names import is_clip_name

    # The library whose tables name the hub weights (CLIP models: open_clip's).
    library = "open_clip_torch" if is_clip_name(opts.model) else "timm"
    try:
        timm_version = importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None
    return json.dumps(["hub", opts.model or DEFAULT_MODEL, timm_version])
