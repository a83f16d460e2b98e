"""The compiled-model cache: saved models give the live embedder's vectors, without timm.

Each backend (OpenVINO when installed, frozen TorchScript) is saved from a real
``TimmEmbedder`` and compared with it on the same pixels; stale entries miss; an ``Index``
reopened in a fresh process embeds a query through the cache with timm never imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from fakes import photo

from lookalike import Index
from lookalike.decode import decode_path
from lookalike.embed import Embedder, load_embedder
from lookalike.embed.runtime import openvino as ovr
from lookalike.embed.runtime.compiled import (
    BACKEND_ENV,
    TorchScriptEmbedder,
    choose_backend,
    load_compiled,
    probe_pixels,
    save_compiled,
)
from lookalike.embed.runtime.device import native_bf16
from lookalike.errors import ConfigError, WeightsUnavailableError
from lookalike.setup import EmbedderOptions

TINY = "test_resnet.r160_in1k"
BACKENDS = [
    "torch",
    pytest.param(
        "openvino",
        marks=pytest.mark.skipif(not ovr.available(), reason="openvino is not installed"),
    ),
]
PRECISIONS = [
    "fp32",
    pytest.param(
        "bf16", marks=pytest.mark.skipif(not native_bf16("cpu"), reason="no native bf16 here")
    ),
]
MIN_COSINE = {"fp32": 0.999, "bf16": 0.99}


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)


def opts(weights, backend: str = "auto", precision: str = "fp32", **kw) -> EmbedderOptions:
    return EmbedderOptions(
        model=TINY,
        weights=str(weights),
        precision=precision,
        device="cpu",
        extra={"backend": backend},
        **kw,
    )


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a.astype(np.float64) * b, axis=1)


def saved(tmp_path, weights, backend, precision="fp32"):
    o = opts(weights, backend, precision)
    live = load_embedder(o)
    assert save_compiled(tmp_path / "cache", live, o) is not None
    return live, o


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_saved_model_gives_the_live_embedders_vectors(
    tmp_path, tiny_weights, smooth_pixels, backend, precision
):
    live, o = saved(tmp_path, tiny_weights, backend, precision)
    emb = load_compiled(tmp_path / "cache", live.setup, o)
    assert emb is not None and isinstance(emb, Embedder)
    assert emb.backend == backend
    assert (emb.setup, emb.device, emb.precision) == (live.setup, "cpu", precision)
    pixels = smooth_pixels(9, live.setup.preprocess.size, seed=3)
    got, want = emb.embed_pixels(pixels), live.embed_pixels(pixels)
    assert got.shape == want.shape == (9, live.setup.dim) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosines(got, want).min() >= MIN_COSINE[precision]
    # Batches of every size, including one image and a partial last batch.
    assert cosines(emb.embed_pixels(pixels[:1]), want[:1]).min() >= MIN_COSINE[precision]


@pytest.mark.skipif(not ovr.available(), reason="openvino is not installed")
@pytest.mark.parametrize(
    ("model", "pool"),
    [("test_vit", None), ("test_mambaout", None), ("test_mambaout", "avg"), (TINY, "gem")],
)
def test_openvino_converts_other_families_and_pools(
    tmp_path, smooth_pixels, model, pool, tiny_weights
):
    import timm
    import torch
    from safetensors.torch import save_file

    weights = tiny_weights
    if model != TINY:
        with torch.random.fork_rng():
            torch.manual_seed(1)
            m = timm.create_model(model, pretrained=False)
        weights = tmp_path / f"{model}.safetensors"
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(weights))
    o = EmbedderOptions(
        model=model,
        weights=str(weights),
        pool=pool,
        precision="fp32",
        device="cpu",
        extra={"backend": "openvino"},
    )
    live = load_embedder(o)
    assert save_compiled(tmp_path / "cache", live, o) is not None
    emb = load_compiled(tmp_path / "cache", live.setup, o)
    pixels = smooth_pixels(4, live.setup.preprocess.size, seed=11)
    assert cosines(emb.embed_pixels(pixels), live.embed_pixels(pixels)).min() >= 0.999


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_pixels_are_refused(tmp_path, tiny_weights, backend):
    live, o = saved(tmp_path, tiny_weights, backend)
    emb = load_compiled(tmp_path / "cache", live.setup, o)
    h, w = live.setup.preprocess.size
    with pytest.raises(ValueError):
        emb.embed_pixels(np.zeros((1, h, w, 3), np.float32))
    with pytest.raises(ValueError):
        emb.embed_pixels(np.zeros((1, h + 1, w, 3), np.uint8))


def test_torch_entry_embeds_tensors_too(tmp_path, tiny_weights, smooth_pixels):
    import torch

    live, o = saved(tmp_path, tiny_weights, "torch")
    emb = load_compiled(tmp_path / "cache", live.setup, o)
    assert isinstance(emb, TorchScriptEmbedder)
    x = torch.randn(3, 3, *live.setup.preprocess.size)
    assert cosines(emb.embed_tensor(x), live.embed_tensor(x)).min() >= 0.999


@pytest.mark.skipif(not ovr.available(), reason="openvino is not installed")
def test_openvino_entry_has_no_tensor_input(tmp_path, tiny_weights):
    live, o = saved(tmp_path, tiny_weights, "openvino")
    emb = load_compiled(tmp_path / "cache", live.setup, o)
    with pytest.raises(NotImplementedError):
        emb.embed_tensor(np.zeros((1, 3, 160, 160), np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_stale_or_broken_entries_miss(tmp_path, tiny_weights, backend):
    live, o = saved(tmp_path, tiny_weights, backend)
    cache = tmp_path / "cache"
    # Another setup, precision or backend: another key.
    other = live.setup.__class__(**{**live.setup.__dict__, "pool": "max"})
    assert load_compiled(cache, other, o) is None
    assert load_compiled(tmp_path / "elsewhere", live.setup, o) is None
    (entry,) = (cache / "models").iterdir()
    meta = entry / "meta.json"
    meta.write_text("{not json")
    assert load_compiled(cache, live.setup, o) is None
    # Saving again replaces the broken entry.
    assert save_compiled(cache, live, o) == entry
    assert load_compiled(cache, live.setup, o) is not None
    model = next(p for p in entry.iterdir() if p.name != "meta.json")
    model.write_bytes(b"garbage")
    assert load_compiled(cache, live.setup, o) is None


def test_a_changed_weights_file_misses(tmp_path, tiny_weights):
    weights = tmp_path / "w.safetensors"
    shutil.copy(tiny_weights, weights)
    live, o = saved(tmp_path, weights, "auto")
    cache = tmp_path / "cache"
    os.utime(weights, ns=(1, 1))  # touched, same content: hashed again, still valid
    assert load_compiled(cache, live.setup, o) is not None
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert load_compiled(cache, live.setup, o) is None
    weights.unlink()
    assert load_compiled(cache, live.setup, o) is None


def test_backend_choice(monkeypatch, tiny_weights):
    with pytest.raises(ConfigError, match="unknown backend"):
        choose_backend(opts(tiny_weights, "tensorrt"))
    monkeypatch.setattr(ovr, "available", lambda: False)
    assert choose_backend(opts(tiny_weights, "auto")) == "torch"
    with pytest.raises(ConfigError, match=r"lookalike\[openvino\]"):
        choose_backend(opts(tiny_weights, "openvino"))
    monkeypatch.setattr(ovr, "available", lambda: True)
    assert choose_backend(opts(tiny_weights, "auto")) == "openvino"
    assert choose_backend(opts(tiny_weights, "torch")) == "torch"
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert choose_backend(EmbedderOptions(device="cpu")) == "torch"
    with pytest.raises(ConfigError, match="CPU only"):
        choose_backend(EmbedderOptions(device="cuda", extra={"backend": "openvino"}))


def test_auto_falls_back_to_torch_without_openvino(tmp_path, monkeypatch, tiny_weights):
    monkeypatch.setattr(ovr, "available", lambda: False)
    live, o = saved(tmp_path, tiny_weights, "auto")
    assert isinstance(load_compiled(tmp_path / "cache", live.setup, o), TorchScriptEmbedder)


def test_save_never_raises(tmp_path, tiny_weights):
    o = opts(tiny_weights)
    live = load_embedder(o)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert save_compiled(blocker, live, o) is None


def test_untraced_model_is_not_saved_for_torch(tmp_path, tiny_weights):
    o = EmbedderOptions(
        model=TINY,
        weights=str(tiny_weights),
        device="cpu",
        extra={"jit": False, "backend": "torch"},
    )
    live = load_embedder(o)
    assert not live.jit
    assert save_compiled(tmp_path / "cache", live, o) is None


def test_probe_pixels():
    p = probe_pixels((20, 30), n=2)
    assert p.shape == (2, 20, 30, 3) and p.dtype == np.uint8
    assert p.std() > 10  # not flat


def test_numpy_unit_rows_match_torch():
    import torch

    from lookalike.embed import timm_embedder

    assert ovr.ZERO_NORM == timm_embedder.ZERO_NORM
    v = np.array([[3, 4, 0], [0, 0, 0], [1e-9, 0, 0], [np.inf, 1, 1], [np.nan, 0, 1]], np.float32)
    want = timm_embedder.unit_rows(torch.from_numpy(v))
    np.testing.assert_array_equal(ovr.unit_rows(v), want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reopened_index_embeds_through_the_cache_without_timm(
    tmp_path, tiny_weights, backend, monkeypatch
):
    monkeypatch.setenv(BACKEND_ENV, backend)
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "models-root"))
    kind = {"torch": "TorchScriptEmbedder", "openvino": "OpenVINOEmbedder"}[backend]
    photos = tmp_path / "photos"
    for i in range(6):
        photo(photos / f"p{i}.png", i)
    query = photo(tmp_path / "outside" / "q.png", 99)
    db = tmp_path / "idx.db"
    with Index.open(db, model=TINY, weights=tiny_weights, precision="fp32", workers=0) as idx:
        idx.update(photos)
        # The first run builds the timm model, saves it, and then embeds with the saved one.
        assert type(idx._model.embedder).__name__ == kind
        want = idx.embed(query)
        want_hits = [h.path for h in idx.search(query, k=3)]
    shared = ("requests", "fingerprints")
    entries = [p for p in (tmp_path / "models-root" / "models").iterdir() if p.name not in shared]
    assert len(entries) == 1
    live = load_embedder(opts(tiny_weights, precision="fp32"))
    pixels, _ = decode_path(str(query), live.setup.preprocess)
    assert float(np.dot(live.embed_pixels(pixels[None])[0], want)) >= 0.999

    out = tmp_path / "result.json"
    code = (
        "import json, sys\n"
        "from lookalike import Index\n"
        f"with Index.open({str(db)!r}, precision='fp32') as idx:\n"
        f"    vec = idx.embed({str(query)!r})\n"
        f"    hits = [h.path for h in idx.search({str(query)!r}, k=3)]\n"
        "    kind = type(idx._model.embedder).__name__\n"
        "assert 'timm' not in sys.modules, 'timm was imported'\n"
        "torch = 'torch' in sys.modules\n"
        "result = {'vec': vec.tolist(), 'hits': hits, 'kind': kind, 'torch': torch}\n"
        f"json.dump(result, open({str(out)!r}, 'w'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    got = json.loads(out.read_text())
    assert got["kind"] == kind
    if backend == "openvino":
        assert not got["torch"], "the OpenVINO path imported torch"
    assert float(np.dot(np.asarray(got["vec"]), want)) >= 0.99999
    assert got["hits"] == want_hits


@pytest.mark.slow
@pytest.mark.parametrize("precision", PRECISIONS)
def test_resnet50_saved_model_matches(tmp_path, resnet50_weights, smooth_pixels, precision):
    o = EmbedderOptions(
        model="resnet50", weights=str(resnet50_weights), precision=precision, device="cpu"
    )
    live = load_embedder(o)
    assert save_compiled(tmp_path / "cache", live, o) is not None
    emb = load_compiled(tmp_path / "cache", live.setup, o)
    assert emb is not None
    pixels = smooth_pixels(16, (224, 224), seed=50)
    assert (
        cosines(emb.embed_pixels(pixels), live.embed_pixels(pixels)).min() >= MIN_COSINE[precision]
    )


def test_openvino_that_does_not_import_counts_as_absent(monkeypatch):
    ovr.available.cache_clear()
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises
    try:
        assert not ovr.available()
        assert choose_backend(EmbedderOptions(device="cpu")) == "torch"
    finally:
        ovr.available.cache_clear()


def test_entries_of_other_backend_versions_are_pruned(tmp_path, tiny_weights):
    o = opts(tiny_weights, "torch")
    live = load_embedder(o)
    models = tmp_path / "cache" / "models"
    setup = live.setup.to_json()
    for name, precision in (("old", "fp32"), ("other-precision", "bf16")):
        (models / name).mkdir(parents=True)
        meta = {"setup": setup, "backend": "torch", "precision": precision, "version": "0.1"}
        (models / name / "meta.json").write_text(json.dumps(meta))
    entry = save_compiled(tmp_path / "cache", live, o)
    assert sorted(p.name for p in models.iterdir()) == sorted([entry.name, "other-precision"])


def test_a_new_index_reuses_a_model_compiled_for_another(tmp_path, tiny_weights, monkeypatch):
    """The shared model cache answers a brand-new index by request: no timm, same vectors."""
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "shared"))
    photos = tmp_path / "photos"
    for i in range(4):
        photo(photos / f"p{i}.png", i)
    with Index.open(tmp_path / "a.db", model=TINY, weights=tiny_weights, workers=0) as idx:
        idx.update(photos)
        want = idx.embed(photos / "p1.png")
    code = (
        "import sys, json\n"
        "from lookalike import Index\n"
        f"idx = Index.open({str(tmp_path / 'b.db')!r}, model={TINY!r}, "
        f"weights={str(tiny_weights)!r}, workers=0)\n"
        f"idx.update({str(photos)!r})\n"
        f"v = idx.embed({str(photos / 'p1.png')!r})\n"
        "assert 'timm' not in sys.modules, 'timm imported'\n"
        "print(json.dumps(v.tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got = np.asarray(json.loads(out.stdout))
    assert float(got @ want) >= 0.999


@pytest.mark.skipif(not ovr.available(), reason="openvino is not installed")
def test_openvino_batches_of_every_size_match_the_live_model(tmp_path, tiny_weights, smooth_pixels):
    live, o = saved(tmp_path, tiny_weights, "openvino")
    emb = load_compiled(tmp_path / "cache", live.setup, o)
    b = ovr.PER_REQUEST_BATCH
    pixels = smooth_pixels(2 * b + 3, live.setup.preprocess.size, seed=21)
    want = live.embed_pixels(pixels)
    got_small = emb.embed_pixels(pixels[: b - 1])  # the dynamic-batch model
    assert emb._static is None
    assert cosines(got_small, want[: b - 1]).min() >= 0.999
    for n in (b, 2 * b, 2 * b + 3):  # full requests, and a padded last one
        got = emb.embed_pixels(pixels[:n])
        assert got.shape == (n, live.setup.dim)
        assert cosines(got, want[:n]).min() >= 0.999
    assert emb._static is not None
    # Rows do not depend on their neighbours (the padding leaks into no row).
    whole, tail = emb.embed_pixels(pixels)[b:], emb.embed_pixels(pixels[b:])
    np.testing.assert_allclose(whole, tail, atol=1e-5)


@pytest.mark.skipif(not ovr.available(), reason="openvino is not installed")
def test_openvino_compile_failures(tmp_path, tiny_weights, smooth_pixels, monkeypatch):
    from lookalike.errors import ModelError

    live, o = saved(tmp_path, tiny_weights, "openvino")
    real = ovr.compile_model

    def no_static(model, precision, *, core=None):
        if model.input(0).get_partial_shape().is_static:
            raise RuntimeError("static shapes refused")
        return real(model, precision, core=core)

    monkeypatch.setattr(ovr, "compile_model", no_static)
    emb = load_compiled(tmp_path / "cache", live.setup, o)
    pixels = smooth_pixels(ovr.PER_REQUEST_BATCH + 1, live.setup.preprocess.size, seed=5)
    # No static-batch model: the dynamic one embeds everything, same vectors.
    assert cosines(emb.embed_pixels(pixels), live.embed_pixels(pixels)).min() >= 0.999
    assert emb._static is None

    def nothing(model, precision, *, core=None):
        raise RuntimeError("cannot compile")

    monkeypatch.setattr(ovr, "compile_model", nothing)
    emb = load_compiled(tmp_path / "cache", live.setup, o)
    with pytest.raises(ModelError, match="delete that folder"):
        emb.embed_pixels(pixels[:1])


def test_weights_fingerprints_are_remembered(tmp_path, tiny_weights, monkeypatch):
    import lookalike.embed as embed
    from lookalike.embed.runtime.cache import fingerprint

    root = tmp_path / "root"
    weights = tmp_path / "w.safetensors"
    shutil.copy(tiny_weights, weights)
    o = opts(weights)
    calls = []
    real = embed.weights_fingerprint
    monkeypatch.setattr(embed, "weights_fingerprint", lambda x: calls.append(x) or real(x))
    first = fingerprint(root, o)
    assert first == real(o) and first.startswith("sha256:") and len(calls) == 1
    assert fingerprint(root, o) == first and len(calls) == 1  # remembered: not hashed again
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(10**18, 10**18))
    second = fingerprint(root, o)  # a changed file is hashed again
    assert len(calls) == 2 and second != first and second == real(o)
    with pytest.raises(WeightsUnavailableError):
        fingerprint(root, opts(tmp_path / "missing.safetensors"))


def test_hub_fingerprints_are_remembered_without_timm(tmp_path):
    """A new index with hub weights and a cached model never imports timm (~3 s)."""
    from lookalike.embed.runtime.cache import fingerprint

    root = tmp_path / "root"
    o = EmbedderOptions(model="resnet50.tv_in1k")
    assert fingerprint(root, o) == "hub:timm/resnet50.tv_in1k"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from lookalike.embed.runtime.cache import fingerprint\n"
        "from lookalike.setup import EmbedderOptions\n"
        f"fp = fingerprint(Path({str(root)!r}), EmbedderOptions(model='resnet50.tv_in1k'))\n"
        "assert 'timm' not in sys.modules and 'torch' not in sys.modules\n"
        "print(fp)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hub:timm/resnet50.tv_in1k"


@pytest.mark.skipif(not ovr.available(), reason="openvino is not installed")
def test_openvino_failed_batch_falls_back_and_batches_are_whole_requests(
    tmp_path, tiny_weights, smooth_pixels, monkeypatch
):
    live, o = saved(tmp_path, tiny_weights, "openvino")
    b = ovr.PER_REQUEST_BATCH
    emb = load_compiled(tmp_path / "cache", live.setup, replace(o, batch_size=b + 1))
    assert emb.batch_size == 2 * b  # rounded up to whole requests
    pixels = smooth_pixels(b + 1, live.setup.preprocess.size, seed=8)
    want = live.embed_pixels(pixels)
    assert cosines(emb.embed_pixels(pixels), want).min() >= 0.999  # static path built
    assert emb._static is not None

    def broken(queue, arr, dim):
        raise RuntimeError("inference failed")

    monkeypatch.setattr(ovr.OpenVINOEmbedder, "_infer_static", staticmethod(broken))
    # The failure drops the static-batch model; the dynamic one gives the same vectors.
    assert cosines(emb.embed_pixels(pixels), want).min() >= 0.999
    assert emb._static is None and emb._static_failed


@pytest.mark.skipif(not ovr.available(), reason="openvino is not installed")
def test_a_first_run_builds_the_model_once(tmp_path, tiny_weights, monkeypatch):
    """The OpenVINO copy is converted from fp32 weights: the first run builds the timm model
    once (fp32, untraced), not once as requested and again in fp32 for the conversion."""
    from lookalike.embed import timm_embedder

    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "root"))
    built = []
    real = timm_embedder.load_embedder
    monkeypatch.setattr(timm_embedder, "load_embedder", lambda o: built.append(o) or real(o))
    photos = tmp_path / "photos"
    for i in range(3):
        photo(photos / f"p{i}.png", i)
    with Index.open(tmp_path / "i.db", model=TINY, weights=tiny_weights, workers=0) as idx:
        idx.update(photos)
        assert type(idx._model.embedder).__name__ == "OpenVINOEmbedder"
        assert [(o.precision, o.extra.get("jit")) for o in built] == [("fp32", False)]
        want = idx.embed(photos / "p1.png")
    live = load_embedder(opts(tiny_weights, precision="fp32"))
    pixels, _ = decode_path(str(photos / "p1.png"), live.setup.preprocess)
    assert float(live.embed_pixels(pixels[None])[0] @ want) >= 0.99


@pytest.mark.skipif(not ovr.available(), reason="openvino is not installed")
def test_an_openvino_run_writes_nothing_in_home(tmp_path, tiny_weights):
    """#20: ``import openvino`` and each ``convert_model`` started OpenVINO's telemetry,
    which wrote ``~/intel/openvino_ga_cid`` and ``~/intel/stats`` (and queued events for
    Google Analytics). A real ``lookalike index`` that converts the model, with an empty
    ``HOME``, leaves it empty."""
    home = tmp_path / "home"
    home.mkdir()
    photos = tmp_path / "photos"
    for i in range(2):
        photo(photos / f"p{i}.jpg", i)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "XDG_DATA_HOME")}
    env.update(
        HOME=str(home),
        LOOKALIKE_CACHE=str(tmp_path / "cache"),  # empty: the model is converted here
        LOOKALIKE_MODEL=TINY,
        LOOKALIKE_WEIGHTS=str(tiny_weights),
        HF_HUB_OFFLINE="1",
    )
    args = ["index", str(photos), "--db", str(tmp_path / "i.db"), "--backend", "openvino"]
    done = subprocess.run(
        [sys.executable, "-m", "lookalike", *args, "--workers", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cache" / "models").is_dir()  # it did convert
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
