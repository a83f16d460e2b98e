"""The embed seam: timm models, weights files and hub cache, pooling, precision, NaN rows.

Most tests use timm's tiny ``test_*`` models; the few marked ``slow`` run a real ResNet50
(random weights, from the ``resnet50_weights`` fixture).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from lookalike.embed import Embedder, load_embedder, resolve_model_name, weights_fingerprint
from lookalike.embed.runtime.device import native_bf16, resolve_device
from lookalike.embed.timm_embedder import unit_rows
from lookalike.errors import (
    ConfigError,
    ModelNotFoundError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from lookalike.setup import EmbedderOptions

TINY = "test_resnet.r160_in1k"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(pixels: np.ndarray, mean, std) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n, 3, H, W) float32, as the model's eval transform does."""
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def timm_reference(name: str, weights, x: torch.Tensor) -> np.ndarray:
    """L2-normalised ``forward(x)`` of a fresh headless timm model with these weights."""
    model = timm.create_model(name, pretrained=False, num_classes=0).eval()
    sd = load_file(str(weights))
    model.load_state_dict({k: v for k, v in sd.items() if k in model.state_dict()})
    with torch.no_grad():
        return F.normalize(model(x), dim=1).numpy()


def save_random(path, name: str, seed: int = 1):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = timm.create_model(name, pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def opts(**kw) -> EmbedderOptions:
    kw.setdefault("model", TINY)
    kw.setdefault("precision", "fp32")
    return EmbedderOptions(**kw)


@pytest.fixture(scope="module")
def tiny(tiny_weights):
    return load_embedder(opts(weights=str(tiny_weights)))


@pytest.fixture(scope="module")
def tiny_pixels(smooth_pixels):
    return smooth_pixels(5, (160, 160), seed=3)


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory):
    return save_random(tmp_path_factory.mktemp("vit") / "vit.safetensors", "test_vit")


@pytest.fixture(scope="module")
def r50_fp32(resnet50_weights):
    return load_embedder(
        EmbedderOptions(model="resnet50.tv_in1k", weights=str(resnet50_weights), precision="fp32")
    )


@pytest.fixture(scope="module")
def r50_pixels(smooth_pixels):
    return smooth_pixels(6, (224, 224), seed=7)


# --- names, fingerprints, import cost -------------------------------------------------


def test_importing_embed_does_not_import_torch_or_timm():
    code = (
        "import sys, lookalike.embed as e; "
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'heavy import'; "
        "print(e.weights_fingerprint.__name__)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_resolve_model_name():
    assert resolve_model_name("resnet50") == "resnet50.a1_in1k"
    assert resolve_model_name("resnet50.tv_in1k") == "resnet50.tv_in1k"
    assert resolve_model_name("test_resnet") == TINY


@pytest.mark.parametrize(
    ("name", "words"),
    [("resnt50", ["resnt50", "resnet50"]), ("resnet50.nope", ["nope", "tv_in1k"]), ("", [])],
)
def test_unknown_model_is_model_not_found(name, words):
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_name(name)
    assert all(w in str(err.value) for w in words)
    with pytest.raises(ModelNotFoundError):
        load_embedder(EmbedderOptions(model=name or "nope"))


def test_fingerprint_of_hub_weights_needs_no_model():
    assert weights_fingerprint(EmbedderOptions()) == "hub:timm/resnet50.tv_in1k"
    assert weights_fingerprint(EmbedderOptions(model="test_resnet")) == f"hub:timm/{TINY}"


def test_fingerprint_of_a_file_follows_its_content(tmp_path, tiny_weights):
    path = tmp_path / "w.safetensors"
    path.write_bytes(tiny_weights.read_bytes())
    first = weights_fingerprint(EmbedderOptions(weights=str(path)))
    assert first == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    sd = load_file(str(path))
    sd["fc.bias"] = sd["fc.bias"] + 1
    save_file(sd, str(path))
    assert weights_fingerprint(EmbedderOptions(weights=str(path))) != first


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    for call in (weights_fingerprint, load_embedder):
        with pytest.raises(WeightsUnavailableError, match=r"nowhere\.safetensors.*does not exist"):
            call(opts(weights=str(missing)))


# --- fidelity with timm ---------------------------------------------------------------


def test_tiny_matches_timm_forward(tiny, tiny_weights, tiny_pixels):
    assert isinstance(tiny, Embedder)
    assert tiny.setup.pool == "avg" and tiny.setup.dim == 96 and tiny.precision == "fp32"
    x = normalise(tiny_pixels, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    want = timm_reference("test_resnet", tiny_weights, x)
    np.testing.assert_allclose(tiny.embed_tensor(x), want, rtol=1e-5, atol=1e-5)
    # uint8 pixels normalised inside the embedder give the same vectors.
    np.testing.assert_allclose(tiny.embed_pixels(tiny_pixels), want, rtol=1e-5, atol=1e-5)


def test_token_pool_matches_timm_forward_on_vit(vit_weights, tiny_pixels):
    emb = load_embedder(opts(model="test_vit", weights=str(vit_weights)))
    assert emb.setup.pool == "token" and emb.setup.dim == 64 and not emb.jit
    x = normalise(tiny_pixels, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    want = timm_reference("test_vit", vit_weights, x)
    np.testing.assert_allclose(emb.embed_tensor(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_resnet50_matches_timm_forward(r50_fp32, resnet50_weights, r50_pixels):
    x = normalise(r50_pixels, IMAGENET_MEAN, IMAGENET_STD)
    want = timm_reference("resnet50", resnet50_weights, x)
    np.testing.assert_allclose(r50_fp32.embed_tensor(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_resnet50_bf16_close_to_fp32(r50_fp32, resnet50_weights, r50_pixels):
    bf16 = load_embedder(
        EmbedderOptions(model="resnet50.tv_in1k", weights=str(resnet50_weights), precision="bf16")
    )
    assert bf16.precision == "bf16" and bf16.setup == r50_fp32.setup
    a, b = r50_fp32.embed_pixels(r50_pixels), bf16.embed_pixels(r50_pixels)
    assert a.shape == b.shape == (len(r50_pixels), 2048) and b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    cos = (a * b).sum(axis=1)
    assert cos.min() >= 0.99, cos
    # The images are told apart: each is nearest to itself across precisions.
    assert ((a @ b.T).argmax(axis=1) == np.arange(len(a))).all()


# --- pooling ------------------------------------------------------------------------------


def test_embed_pixels_shape_dtype_unit_norm(tiny, tiny_pixels):
    out = tiny.embed_pixels(tiny_pixels)
    assert out.shape == (5, 96) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert tiny.embed_pixels(tiny_pixels[:0]).shape == (0, 96)


def test_flatten_is_the_whole_map_in_hwc_order(tiny_weights, tiny_pixels):
    emb = load_embedder(opts(weights=str(tiny_weights), pool="flatten"))
    assert emb.setup.dim == 96 * 5 * 5
    model = timm.create_model("test_resnet", num_classes=0).eval()
    model.load_state_dict(emb.model.state_dict())
    x = normalise(tiny_pixels, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with torch.no_grad():
        fmap = model.forward_features(x)  # (n, 96, 5, 5)
    want = F.normalize(fmap.permute(0, 2, 3, 1).reshape(len(x), -1), dim=1).numpy()
    np.testing.assert_allclose(emb.embed_pixels(tiny_pixels), want, rtol=1e-5, atol=1e-5)


def test_gem_and_max_differ_from_avg(tiny, tiny_weights, tiny_pixels):
    avg = tiny.embed_pixels(tiny_pixels)
    for pool in ("gem", "max"):
        emb = load_embedder(opts(weights=str(tiny_weights), pool=pool))
        out = emb.embed_pixels(tiny_pixels)
        assert emb.setup.pool == pool and out.shape == avg.shape
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
        assert np.abs(out - avg).max() > 1e-3


@pytest.mark.parametrize(
    ("pool", "reference"),
    [
        # GeM, p = 3, eps = 1e-6, written out independently of pooling.py
        ("gem", lambda f: np.mean(np.maximum(f, 1e-6) ** 3, axis=(2, 3)) ** (1 / 3)),
        ("max", lambda f: f.max(axis=(2, 3))),
        ("avg", lambda f: f.mean(axis=(2, 3))),
    ],
)
def test_spatial_pools_match_a_numpy_reference(tiny_weights, tiny_pixels, pool, reference):
    emb = load_embedder(opts(weights=str(tiny_weights), pool=pool))
    model = timm.create_model("test_resnet", num_classes=0).eval()
    sd = load_file(str(tiny_weights))
    model.load_state_dict({k: v for k, v in sd.items() if k in model.state_dict()})
    x = normalise(tiny_pixels, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with torch.no_grad():
        fmap = model.forward_features(x).double().numpy()  # (n, 96, 5, 5)
    want = reference(fmap)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(emb.embed_pixels(tiny_pixels), want, rtol=1e-4, atol=1e-5)


def test_default_pool_is_avg_for_feature_maps_and_token_otherwise(tiny):
    """On a ResNet ``token`` (timm's head) gives the same vectors as ``avg``: only the
    recorded name tells them apart, and a wrong one breaks reopening the index."""
    from lookalike.embed.pooling import default_pool

    assert [default_pool(x) for x in ("NCHW", "NHWC", "tokens")] == ["avg", "token", "token"]
    assert tiny.setup.pool == "avg"


@pytest.mark.parametrize("pool", ["avg", "gem", "max", "flatten"])
def test_spatial_pool_on_token_model_is_a_config_error(pool, vit_weights):
    with pytest.raises(ConfigError, match=f"'{pool}'.*token"):
        load_embedder(opts(model="test_vit", weights=str(vit_weights), pool=pool))


def test_nhwc_feature_maps_default_to_token_and_allow_avg(tmp_path, smooth_pixels):
    weights = save_random(tmp_path / "mambaout.safetensors", "test_mambaout")
    pixels = smooth_pixels(2, (160, 160), seed=5)
    token = load_embedder(opts(model="test_mambaout", weights=str(weights)))
    assert token.setup.pool == "token"
    avg = load_embedder(opts(model="test_mambaout", weights=str(weights), pool="avg"))
    assert avg.layout == "NHWC" and avg.setup.dim == 64
    x = normalise(pixels, IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        want = F.normalize(avg.model.forward_features(x).mean((1, 2)), dim=1).numpy()
    np.testing.assert_allclose(avg.embed_tensor(x), want, rtol=1e-5, atol=1e-5)


# --- bad outputs, batching, input checks ------------------------------------------------


def test_non_finite_or_zero_outputs_come_back_as_nan_rows(tiny, tiny_pixels, monkeypatch):
    def broken(x):
        out = torch.rand(len(x), 96) + 0.1
        out[0, 3] = float("nan")
        out[1, 0] = float("inf")
        out[2] = 0
        return out

    monkeypatch.setattr(tiny, "_net", broken)
    out = tiny.embed_pixels(tiny_pixels)
    assert np.isnan(out[:3]).all()
    assert np.isfinite(out[3:]).all()
    np.testing.assert_allclose(np.linalg.norm(out[3:], axis=1), 1, atol=1e-6)


def test_unit_rows_survives_huge_finite_values():
    v = torch.tensor([[3e38, 3e38], [1e-30, 0.0], [3.0, 4.0]])
    out = unit_rows(v)
    np.testing.assert_allclose(out[0], [2**-0.5, 2**-0.5], rtol=1e-6)
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[2], [0.6, 0.8])


def test_batches_and_trace_agree_with_one_eager_batch(tiny, tiny_weights, tiny_pixels):
    assert tiny.jit  # a CNN on the CPU runs frozen
    eager = load_embedder(opts(weights=str(tiny_weights), batch_size=2, extra={"jit": False}))
    assert not eager.jit and eager.batch_size == 2
    np.testing.assert_allclose(
        eager.embed_pixels(tiny_pixels), tiny.embed_pixels(tiny_pixels), rtol=1e-5, atol=1e-5
    )


def test_wrong_pixels_are_refused(tiny, tiny_pixels):
    with pytest.raises(ValueError, match="160, 160, 3"):
        tiny.embed_pixels(tiny_pixels[:, :100])
    with pytest.raises(ValueError):
        tiny.embed_pixels(tiny_pixels.astype(np.float32))
    with pytest.raises(ValueError):
        tiny.embed_tensor(torch.zeros(1, 4, 160, 160))


def test_precision_and_device_resolution(tiny_weights):
    auto = load_embedder(EmbedderOptions(model=TINY, weights=str(tiny_weights)))
    assert auto.device == "cpu" or torch.cuda.is_available()
    assert auto.precision == ("bf16" if native_bf16(auto.device) else "fp32")
    assert auto.batch_size == (128 if auto.device == "cuda" else 32)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            resolve_device("cuda")


# --- weights files ------------------------------------------------------------------------


def test_pth_checkpoint_wrappers_load_like_safetensors(tmp_path, tiny, tiny_weights, tiny_pixels):
    sd = load_file(str(tiny_weights))
    assert "fc.weight" in sd  # the classifier head is in the file and gets dropped
    plain = tmp_path / "plain.pth"
    torch.save(sd, plain)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, wrapped)
    want = tiny.embed_pixels(tiny_pixels)
    for path in (plain, wrapped):
        emb = load_embedder(opts(weights=str(path)))
        np.testing.assert_array_equal(emb.embed_pixels(tiny_pixels), want)
        assert emb.setup.weights.startswith("sha256:") and emb.setup.weights != tiny.setup.weights


def test_weights_of_another_architecture_are_a_mismatch(vit_weights):
    with pytest.raises(WeightsMismatchError) as err:
        load_embedder(opts(weights=str(vit_weights)))
    msg = str(err.value)
    assert TINY in msg and "vit.safetensors" in msg and "conv1.0.weight" in msg


def test_wrong_shapes_and_foreign_tensors_are_a_mismatch(tmp_path, tiny_weights):
    sd = load_file(str(tiny_weights))
    sd["conv1.0.weight"] = sd["conv1.0.weight"][:, :2].contiguous()
    save_file(sd, str(tmp_path / "shapes.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"shapes differ.*conv1\.0\.weight"):
        load_embedder(opts(weights=str(tmp_path / "shapes.safetensors")))
    sd = load_file(str(tiny_weights))
    sd["layer9.0.conv1.weight"] = torch.zeros(1)  # a deeper model's block
    save_file(sd, str(tmp_path / "deeper.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"does not have.*layer9"):
        load_embedder(opts(weights=str(tmp_path / "deeper.safetensors")))


def test_foreign_layouts_go_through_timm_checkpoint_filter(tmp_path, vit_weights, tiny_pixels):
    # An OpenCLIP checkpoint: the timm ViT under "visual.trunk.", next to a text tower.
    sd = {"visual.trunk." + k: v for k, v in load_file(str(vit_weights)).items()}
    sd["text.token_embedding.weight"] = torch.zeros(8, 4)
    save_file(sd, str(tmp_path / "open_clip.safetensors"))
    clip = load_embedder(opts(model="test_vit", weights=str(tmp_path / "open_clip.safetensors")))
    plain = load_embedder(opts(model="test_vit", weights=str(vit_weights)))
    np.testing.assert_array_equal(clip.embed_pixels(tiny_pixels), plain.embed_pixels(tiny_pixels))


def test_unreadable_weights_file_is_a_mismatch(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsMismatchError, match=r"junk\.pth"):
        load_embedder(opts(weights=str(junk)))


# --- hub cache ------------------------------------------------------------------------------


def test_hub_cache_loads_through_timm(fake_hub_cache, tiny, tiny_pixels):
    emb = load_embedder(opts())
    assert emb.setup.weights == f"hub:timm/{TINY}"
    assert emb.setup.model == tiny.setup.model and emb.setup.dim == tiny.setup.dim
    np.testing.assert_array_equal(emb.embed_pixels(tiny_pixels), tiny.embed_pixels(tiny_pixels))


def test_empty_hub_cache_offline_is_one_clear_error(capfd):
    with pytest.raises(WeightsUnavailableError) as err:
        load_embedder(opts())
    msg = str(err.value)
    assert TINY in msg and "--weights" in msg and f"huggingface.co/timm/{TINY}" in msg
    assert "\n" not in msg
    assert capfd.readouterr().err == ""


def test_unresolvable_hub_fails_fast_without_retries(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(var, raising=False)

    def no_dns(*args, **kwargs):
        raise OSError("Name or service not known")

    def no_download(*args, **kwargs):
        raise AssertionError("timm should not be asked to download")

    monkeypatch.setattr("socket.getaddrinfo", no_dns)
    monkeypatch.setattr(timm, "create_model", no_download)
    with pytest.raises(WeightsUnavailableError, match=r"resnet50\.tv_in1k.*--weights"):
        load_embedder(EmbedderOptions())


# --- preprocessing ---------------------------------------------------------------------------


@pytest.mark.slow
def test_preprocess_from_resnet50_tv_config(r50_fp32):
    s = r50_fp32.setup
    assert s.model == "resnet50.tv_in1k" and s.pool == "avg" and s.dim == 2048
    p = s.preprocess
    assert p.size == (224, 224) and p.mode == "resize"
    assert p.interpolation == "bilinear" and p.crop_pct == 0.875
    assert p.mean == IMAGENET_MEAN and p.std == IMAGENET_STD


def test_preprocess_from_test_vit_config(vit_weights):
    emb = load_embedder(opts(model="test_vit", weights=str(vit_weights), crop="center"))
    p = emb.setup.preprocess
    assert p.size == (160, 160) and p.mode == "center"
    assert p.interpolation == "bicubic" and p.crop_pct == 0.95
    assert p.mean == (0.5, 0.5, 0.5) and p.std == (0.5, 0.5, 0.5)
