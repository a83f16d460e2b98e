"""Search by words (#10): CLIP indexes through open_clip, text and mixed queries.

A tiny random open_clip config (registered through ``$LOOKALIKE_CLIP_CONFIGS``) with the
real CLIP tokenizer, saved as a local checkpoint and passed as ``--weights``; one test goes
through a fake Hugging Face cache with ``HF_HUB_OFFLINE=1``. Nothing touches the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from lookalike import Index  # noqa: E402
from lookalike.embed.clip.tokenizer import ClipTokenizer  # noqa: E402
from lookalike.embed.runtime import openvino as ovr  # noqa: E402
from lookalike.errors import (  # noqa: E402
    ConfigError,
    SetupMismatchError,
    WeightsUnavailableError,
)
from lookalike.query import Query, Term, combine, parse_weight  # noqa: E402

ARCH = "lookalike-tiny-clip"
MODEL = f"clip:{ARCH}"
FAKE_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
TINY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
BACKENDS = [
    "torch",
    pytest.param(
        "openvino",
        marks=pytest.mark.skipif(not ovr.available(), reason="openvino is not installed"),
    ),
]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="session")
def clip_configs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip-configs")
    (folder / f"{ARCH}.json").write_text(json.dumps(TINY_CFG))
    return folder


@pytest.fixture(scope="session")
def clip_model(clip_configs):
    """The tiny open_clip model (random weights, fp32, eval) and its checkpoint file."""
    from safetensors.torch import save_file

    from lookalike.embed.clip.embedder import build_model

    with torch.random.fork_rng():
        torch.manual_seed(10)
        model = build_model(TINY_CFG)
    path = clip_configs.parent / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


@pytest.fixture(autouse=True)
def _configs_env(monkeypatch, clip_configs):
    monkeypatch.setenv("LOOKALIKE_CLIP_CONFIGS", str(clip_configs))
    monkeypatch.delenv("LOOKALIKE_BACKEND", raising=False)


@pytest.fixture(scope="session")
def photos(tmp_path_factory, smooth_pixels) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("clip-photos")
    for i, px in enumerate(smooth_pixels(24, (72, 96), seed=3)):
        Image.fromarray(px).save(folder / f"p{i:02d}.png")
    return folder


@pytest.fixture
def clip_index(tmp_path, clip_model, photos):
    _, weights = clip_model
    with Index.open(tmp_path / "clip.db", model=MODEL, weights=weights, workers=0) as idx:
        idx.update(photos)
        yield idx


def _reference_text(model, texts: list[str]) -> np.ndarray:
    tokens = open_clip.get_tokenizer("ViT-B-32")(texts)
    with torch.inference_mode():
        return _unit(model.encode_text(tokens).numpy())


# ------------------------------------------------------------------------------ tokenizer


def test_tokenizer_gives_open_clips_token_ids():
    texts = [
        "a red bicycle",
        "  Two DOGS, playing in the snow!! ",
        "caf\u00e9 &amp; cr\u00e8me br\u00fbl\u00e9e \u2014 \u65e5\u672c\u8a9e 123",
        "it's a photo of the 4th of july's fireworks",
        "word " * 100,  # longer than the context: cut, end token kept
    ]
    rng = np.random.default_rng(0)
    printable = [chr(c) for c in range(32, 127)]
    texts += ["".join(rng.choice(printable, rng.integers(1, 30))) for _ in range(300)]
    ours = ClipTokenizer()(texts)
    theirs = open_clip.get_tokenizer("ViT-B-32")(texts).numpy()
    assert ours.dtype == np.int64 and np.array_equal(ours, theirs)


# ------------------------------------------------------------------------------ vectors


def test_text_and_image_vectors_share_the_dimension_and_are_unit(clip_index, photos):
    image = clip_index.embed(photos / "p00.png")
    text = clip_index.embed_text("a red bicycle")
    assert image.shape == text.shape == (64,)
    assert abs(np.linalg.norm(image) - 1) < 1e-5 and abs(np.linalg.norm(text) - 1) < 1e-5
    info = clip_index.info()
    assert clip_index.is_clip and info["model"] == MODEL
    setup = clip_index.setup
    assert setup.space == "clip" and setup.clip.arch == ARCH and setup.clip.tag is None
    assert setup.clip.library == "open_clip" and setup.clip.version == open_clip.__version__
    assert setup.clip.tokenizer == "clip-bpe:49408:lower:77"
    assert setup.preprocess.mode == "center" and setup.preprocess.size == (64, 64)


@pytest.mark.parametrize("precision,min_cos", [("fp32", 0.9999), ("bf16", 0.99)])
def test_image_vectors_equal_open_clips_encode_image(clip_model, precision, min_cos):
    from lookalike.embed.clip.embedder import load_clip_embedder
    from lookalike.setup import EmbedderOptions

    model, weights = clip_model
    emb = load_clip_embedder(
        EmbedderOptions(model=MODEL, weights=str(weights), precision=precision, device="cpu")
    )
    x = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = _unit(model.encode_image(x).numpy())
    got = emb.embed_tensor(x)
    assert got.shape == (5, 64)
    assert np.sum(got * want, axis=1).min() >= min_cos


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_image_and_text_towers_match_open_clip(
    tmp_path, clip_model, photos, smooth_pixels, backend
):
    """The index's compiled copies (the fast path) give open_clip's vectors, on the same
    input tensor, and the text tower's vectors for texts of any length."""
    model, weights = clip_model
    with Index.open(
        tmp_path / "c.db", model=MODEL, weights=weights, precision="fp32", backend=backend
    ) as idx:
        idx.update(photos)
        emb = idx._model.get_embedder()
        assert getattr(emb, "backend", None) == backend  # the compiled copy, not open_clip
        px = smooth_pixels(3, (64, 64), seed=9)
        pre = idx.setup.preprocess
        x = (
            torch.from_numpy(px).permute(0, 3, 1, 2).float() / 255
            - torch.tensor(pre.mean)[:, None, None]
        ) / torch.tensor(pre.std)[:, None, None]
        with torch.inference_mode():
            want = _unit(model.encode_image(x).numpy())
        assert np.sum(emb.embed_pixels(px) * want, axis=1).min() >= 0.9999
        texts = ["a red bicycle", "two dogs playing in the snow at night", "x"]
        got = np.stack([idx.embed_text(t) for t in texts])
        assert idx._text_search.encoder.backend == backend and idx._text_search.encoder.truncate
        assert np.sum(got * _reference_text(model, texts), axis=1).min() >= 0.9999


# ------------------------------------------------------------------------------ the algebra


def test_parse_weight():
    assert parse_weight("2:red") == (2.0, "red")
    assert parse_weight("0.5:a dog") == (0.5, "a dog")
    assert parse_weight("red: a colour") == (1.0, "red: a colour")
    assert parse_weight("C:/photos/x.jpg") == (1.0, "C:/photos/x.jpg")
    for bad in ("0:red", "-1:red", "nan:red", "2:"):
        with pytest.raises(ConfigError):
            parse_weight(bad)
    with pytest.raises(ConfigError):
        Query.build(negative=["dog"])  # nothing positive


def _reference_query(idx, terms: list[Term]) -> np.ndarray:
    """The documented rule, computed here with numpy from the index's own vectors."""
    vecs = np.stack(
        [idx.embed_text(t.value) if t.kind == "text" else idx.embed(t.value) for t in terms]
    )
    vecs = _unit(vecs)
    sample = np.concatenate([v for _, v in idx._store.iter_vectors()]).astype(np.float64)
    spread = (sample @ vecs.T).std(axis=0)
    coef = np.array([(-1 if t.negative else 1) * t.weight for t in terms]) / spread
    return _unit(coef @ vecs)


def _ranking(idx, q: np.ndarray, exclude=()) -> list[tuple[str, float]]:
    ids, vecs = zip(*idx._store.iter_vectors(), strict=True)
    ids, vecs = np.concatenate(ids), np.concatenate(vecs).astype(np.float64)
    paths = idx._store.paths_for([int(i) for i in ids])
    scores = vecs @ q
    order = np.argsort(-scores, kind="stable")
    out = [(os.fsdecode(paths[int(ids[i])]), float(scores[i])) for i in order]
    return [o for o in out if o[0] not in exclude]


def test_query_algebra_against_numpy(clip_index, photos):
    image = str(photos / "p03.png")
    cases = [
        Query.build(text=["a red bicycle"]),
        Query.build(text=["cat", "2:red"], negative=["dog"]),
        Query.build(text=["0.5:sunset"], image=image),
        Query.build(text=["beach"], negative=["3:night", str(photos / "p07.png")]),
    ]
    assert [t.kind for t in cases[3].terms] == ["text", "text", "image"]
    for query in cases:
        q = _reference_query(clip_index, list(query.terms))
        want = _ranking(clip_index, q, exclude={image})[:5]
        hits = clip_index.search_query(query, k=5, exact=True)
        assert [h.path for h in hits] == [p for p, _ in want]
        assert np.allclose([h.score for h in hits], [s for _, s in want], atol=1e-5)
    # The query image itself is never a result; the text-only query equals search_text.
    assert image not in [h.path for h in clip_index.search_query(cases[2], k=30)]
    assert clip_index.search_text("a red bicycle", k=5) == clip_index.search_query(cases[0], k=5)


def test_weights_and_negation_move_the_query(clip_index):
    red, bike = clip_index.embed_text("red"), clip_index.embed_text("bicycle")
    sample = np.concatenate([v for _, v in clip_index._store.iter_vectors()])
    q1 = combine(np.stack([red, bike]), [1, 1], [False, False], sample)
    q3 = combine(np.stack([red, bike]), [3, 1], [False, False], sample)
    assert q3 @ red > q1 @ red and q3 @ bike < q1 @ bike
    qn = combine(np.stack([red, bike]), [1, 1], [False, True], sample)
    assert qn @ bike < 0 < qn @ red
    with pytest.raises(ConfigError):
        combine(np.stack([red, red]), [1, 1], [False, True], sample)


def test_balance_gives_text_terms_their_share():
    """With a plain sum, an image term (cosines spread 0.3-0.9) drowns a text term
    (0.15-0.35); the spread rule gives each term the same pull per unit of weight."""
    rng = np.random.default_rng(0)
    dim = 32
    image_axis, text_axis = np.eye(dim)[0], np.eye(dim)[1]
    a = rng.uniform(0.3, 0.9, 500)  # the image term's cosines
    b = rng.uniform(0.15, 0.35, 500)  # the text term's
    rest = np.sqrt(np.clip(1 - a**2 - b**2, 0, None))
    sample = np.column_stack([a, b, rest, np.zeros((500, dim - 3))])
    q = combine(np.stack([image_axis, text_axis]), [1, 1], [False, False], sample)
    share_image = abs(q @ image_axis) * a.std()
    share_text = abs(q @ text_axis) * b.std()
    assert share_image == pytest.approx(share_text, rel=1e-6)


# ------------------------------------------------------------------------------ refusals


def _image_only_index(db: Path) -> None:
    """An index of image-only vectors (a torch-free stand-in for a timm model)."""
    from fakes import PixelEmbedder

    emb = PixelEmbedder(model="test_resnet.r160_in1k")
    rng = np.random.default_rng(0)
    with Index.open(db, embedder=emb) as idx:
        idx.add_embeddings([f"/x/{i}.jpg" for i in range(20)], rng.normal(size=(20, emb.setup.dim)))


def test_text_query_on_an_image_only_index_is_refused(tmp_path):
    _image_only_index(tmp_path / "timm.db")
    with Index.open(tmp_path / "timm.db") as idx:
        assert not idx.is_clip
        with pytest.raises(ConfigError) as e:
            idx.search_text("a red bicycle")
        with pytest.raises(ConfigError):
            idx.search_query(Query.build(text=["red"]))
    msg = str(e.value)
    assert "image-only vectors from test_resnet.r160_in1k" in msg and "\n" not in msg
    assert "lookalike index FOLDER" in msg
    assert "--model clip:ViT-B-32-256/datacomp_s34b_b86k" in msg


def test_another_text_tower_is_a_setup_mismatch(tmp_path, clip_model, photos, monkeypatch):
    """Same architecture name and weights, but the config now describes another text tower
    (4 heads instead of 2: the same tensors, other vectors): refused, not mixed."""
    _, weights = clip_model
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "fresh-cache"))
    with Index.open(tmp_path / "m.db", model=MODEL, weights=weights) as idx:
        idx.update(photos)
    other = tmp_path / "other-configs"
    other.mkdir()
    cfg = json.loads(json.dumps(TINY_CFG))
    cfg["text_cfg"]["heads"] = 4
    (other / f"{ARCH}.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("LOOKALIKE_CLIP_CONFIGS", str(other))
    with Index.open(tmp_path / "m.db") as idx, pytest.raises(SetupMismatchError) as e:
        idx.embed_text("a red bicycle")
    assert "clip.text" in str(e.value)


# ------------------------------------------------------------------------------ the hub


@pytest.fixture
def tiny_tag(monkeypatch):
    """open_clip knows a pretrained tag ``tinytag`` for the tiny architecture, on the hub."""
    from open_clip import pretrained

    cfg = {
        "hf_hub": "lookalike-test/tiny-clip/",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "interpolation": "bilinear",
        "resize_mode": "squash",
    }
    monkeypatch.setitem(pretrained._PRETRAINED, ARCH, {"tinytag": cfg})


@pytest.mark.slow
def test_hub_weights_through_the_hub_cache_offline(
    tmp_path, clip_model, photos, tiny_tag, offline_hub, monkeypatch
):
    from conftest import _use_hub_cache

    _, weights = clip_model
    with pytest.raises(WeightsUnavailableError) as e:  # empty cache, offline
        Index.open(tmp_path / "a.db", model=f"{MODEL}/tinytag").update(photos)
    msg = str(e.value)
    assert "open_clip_model.safetensors" in msg and "huggingface.co/lookalike-test/tiny-clip" in msg
    assert "--weights" in msg

    cache = tmp_path / "hub"
    repo = cache / "models--lookalike-test--tiny-clip"
    data = weights.read_bytes()
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    snapshot = repo / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    _use_hub_cache(monkeypatch, cache)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with Index.open(tmp_path / "b.db", model=f"{MODEL}/TinyTag") as idx:
        idx.update(photos)
        setup = idx.setup
        assert setup.model == f"{MODEL}/tinytag" and setup.weights == "hub:lookalike-test/tiny-clip"
        assert setup.clip.tag == "tinytag"
        # The tag's preprocessing: squash, bilinear, its own mean/std.
        assert setup.preprocess.mode == "resize" and setup.preprocess.interpolation == "bilinear"
        assert setup.preprocess.mean == (0.5, 0.5, 0.5)
        assert idx.search_text("a red bicycle", k=3)


# ------------------------------------------------------------------------------ the CLI


def _run(args, env, rc=0):
    p = subprocess.run(
        [sys.executable, "-m", "lookalike", *args], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert p.returncode == rc, (p.returncode, p.stdout, p.stderr)
    return p


def test_cli_refuses_text_on_an_image_only_index(tmp_path):
    env = dict(os.environ)
    db = tmp_path / "t.db"
    _image_only_index(db)
    p = _run(["search", "--text", "red", "--db", str(db)], env, rc=1)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "image-only vectors from test_resnet.r160_in1k" in lines[0]
    assert "--model clip:ViT-B-32-256/datacomp_s34b_b86k" in lines[0]
    _run(["search", "--db", str(db)], env, rc=2)  # neither QUERY nor --text
    _run(["search", "--text", " ", "--db", str(db)], env, rc=2)  # an empty text
    _run(["search", "--not", "dog", "--db", str(db)], env, rc=2)  # nothing positive


@pytest.mark.slow
def test_cli_search_by_words(tmp_path, clip_model, photos):
    _, weights = clip_model
    env = dict(os.environ)
    db = str(tmp_path / "w.db")
    _run(["index", str(photos), "--db", db, "--model", MODEL, "--weights", str(weights)], env)
    info = json.loads(_run(["info", "--db", db, "--json"], env).stdout)
    assert info["model"] == MODEL and info["space"] == "clip"
    assert info["clip"]["arch"] == ARCH and info["clip"]["tokenizer"] == "clip-bpe:49408:lower:77"

    p = _run(["search", "--text", "2:a red bicycle", "--not", "dog", "--db", db, "--json"], env)
    out = json.loads(p.stdout)
    assert out["query"] == {
        "text": [{"text": "a red bicycle", "weight": 2.0}],
        "not": [{"text": "dog", "weight": 1.0}],
        "image": None,
    }
    assert len(out["results"]) == 10 and out["results"][0]["rank"] == 1
    with Index.open(db) as idx:  # the same ranking as the API
        want = idx.search_query(Query.build(text=["2:a red bicycle"], negative=["dog"]), k=10)
    assert [r["path"] for r in out["results"]] == [h.path for h in want]

    query = str(photos / "p05.png")
    png = tmp_path / "grid.png"
    p = _run(
        ["search", query, str(photos), "--text", "sunset", "--not", str(photos / "p06.png"),
         "--db", db, "--json", "--plot", str(png)],
        env,
    )  # fmt: skip
    out = json.loads(p.stdout)
    assert out["query"]["image"] == query and out["query"]["not"] == [
        {"image": str(photos / "p06.png"), "weight": 1.0}
    ]
    assert query not in [r["path"] for r in out["results"]]
    assert png.stat().st_size > 10_000
    table = _run(["search", str(photos), "--text", "red", "-k", "3", "--db", db], env).stdout
    assert (
        table.splitlines()[0].split() == ["rank", "score", "path"] and len(table.splitlines()) == 4
    )
