"""Table, JSON and the grid picture."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import make_photos
from PIL import Image

from lookalike.present import hits_json, hits_table
from lookalike.present.grid import plot_grid
from lookalike.types import Hit


@pytest.fixture
def drawn(monkeypatch):
    """The figures ``plot_grid`` closes, kept for inspection (their artists stay readable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    real_close = plt.close

    def keep(fig=None):
        figures.append(fig)
        real_close(fig)

    monkeypatch.setattr(plt, "close", keep)
    return figures


def tiles_of(fig):
    """(title, pixels or None, other texts) per axes, left to right, top to bottom."""
    out = []
    for ax in fig.axes:
        images = ax.get_images()
        pixels = np.asarray(images[0].get_array()) if images else None
        out.append((ax.get_title(), pixels, [t.get_text() for t in ax.texts]))
    return out


@pytest.mark.parametrize("k", [1, 10])
def test_grid_is_a_png_with_query_and_k_results(tmp_path, k, drawn):
    photos = make_photos(tmp_path / "p", k + 1)
    files = sorted(photos.iterdir())
    hits = [Hit(i + 1, 0.987 - i / 100, str(f)) for i, f in enumerate(files[1:])]
    out = tmp_path / "grid.png"
    tiles = plot_grid(str(files[0]), hits, out)
    assert tiles == k + 1
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width >= 800
        saved = np.asarray(im.convert("RGB"))
    assert saved.std() > 10  # something was drawn, not a blank canvas
    (fig,) = drawn
    tiles_drawn = tiles_of(fig)
    assert len(tiles_drawn) == k + 1
    # The query first, with its name; then each result with rank, score and file name,
    # showing that file's own pixels.
    title, pixels, _ = tiles_drawn[0]
    assert title == f"query\n{files[0].name}"
    with Image.open(files[0]) as im:
        np.testing.assert_array_equal(pixels, np.asarray(im.convert("RGB")))
    for hit, f, (title, pixels, _) in zip(hits, files[1:], tiles_drawn[1:], strict=True):
        assert title == f"#{hit.rank}  {hit.score:.3f}\n{f.name}"
        with Image.open(f) as im:
            np.testing.assert_array_equal(pixels, np.asarray(im.convert("RGB")))


def test_grid_survives_an_unreadable_result(tmp_path, drawn):
    photos = make_photos(tmp_path / "p", 2)
    files = sorted(photos.iterdir())
    gone = Hit(2, 0.5, str(tmp_path / "deleted.jpg"))
    tiles = plot_grid(str(files[0]), [Hit(1, 0.9, str(files[1])), gone], tmp_path / "g.png")
    assert tiles == 2
    title, pixels, texts = tiles_of(drawn[0])[2]
    assert title == "#2  0.500\ndeleted.jpg" and pixels is None and texts == ["cannot read"]


def test_long_names_are_shortened_in_the_middle(tmp_path, drawn):
    photos = make_photos(tmp_path / "p", 2)
    files = sorted(photos.iterdir())
    long = files[1].with_name("a-very-long-file-name-from-a-camera-roll-0001.jpg")
    files[1].rename(long)
    plot_grid(str(files[0]), [Hit(1, 0.75, str(long))], tmp_path / "g.png")
    title = tiles_of(drawn[0])[1][0]
    name = title.split("\n")[1]
    assert len(name) <= 30 and name.startswith("a-very-long") and name.endswith("0001.jpg")


def test_json_and_table_shapes():
    hits = [Hit(1, 0.9, "/a/1.jpg"), Hit(2, 0.5, "/a/caf\udce9.jpg")]
    data = json.loads(hits_json("/q.jpg", hits))
    assert data == {
        "query": "/q.jpg",
        "results": [
            {"rank": 1, "score": 0.9, "path": "/a/1.jpg"},
            {"rank": 2, "score": 0.5, "path": "/a/caf\\xe9.jpg"},
        ],
    }
    lines = hits_table(hits).splitlines()
    assert lines[0].split() == ["rank", "score", "path"] and "0.900" in lines[1]
    assert hits_table([]) == "no results"
