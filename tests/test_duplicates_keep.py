"""The kept file is the keep rule's favourite among all members of its group (#18, case 6):
an original is never given up for its quality-30 copy, and ``--keep`` decides."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from lookalike import Index
from lookalike.duplicates import DEFAULT_KEEP, parse_keep
from lookalike.duplicates.candidates import Pairs
from lookalike.duplicates.grouping import build_groups
from lookalike.duplicates.keep import file_facts, rank_key

LITE0 = "tf_efficientnet_lite0.in1k"


def test_a_copy_with_more_copies_is_not_kept_over_the_original():
    # O (0) is the original, Q (1) its quality-30 copy, C1-C3 (2-4) other copies. Q is
    # a copy of all of them; O is not a copy of C3. Built around the file with the most
    # copies (Q) and keeping only a file every member is a copy of, Q was kept with O in
    # its group. The group is now built around O, the favourite: O, Q, C1, C2.
    edges = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (1, 4)]
    i = np.array([a for a, b in edges], np.int64)
    j = np.array([b for a, b in edges], np.int64)
    pairs = Pairs(i, j, np.full(len(edges), 0.95, np.float32))
    vecs = np.ones((5, 4), np.float32) / 2
    (g,) = build_groups(5, pairs, [], rank=lambda p: p, vectors=lambda pos: vecs[pos])
    assert g.members[0] == 0 and sorted(g.members) == [0, 1, 2, 3]


def _copies(folder, name: str, pixels: np.ndarray) -> None:
    im = Image.fromarray(pixels)
    w, h = im.size
    im.save(folder / f"{name}.jpg", quality=95)  # the original
    im.save(folder / f"{name}_q30.jpg", quality=30)  # same pixels count, smaller file
    im.resize((w // 2, h // 2)).save(folder / f"{name}_half.jpg", quality=90)
    im.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(
        folder / f"{name}_crop.jpg", quality=90
    )
    ImageOps.mirror(im).save(folder / f"{name}_flip.jpg", quality=60)
    ImageOps.grayscale(im).save(folder / f"{name}_grey.jpg", quality=75)


@pytest.mark.slow  # embeds 18 photos with the trained EfficientNet-Lite0
def test_originals_are_kept_over_their_edited_copies(tmp_path, lite0_weights, sample_photos):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = ["grace_hopper", "astronaut", "chelsea"]
    for name in names:
        _copies(photos, name, sample_photos[name])
    with Index.open(tmp_path / "i.db", model=LITE0, weights=lite0_weights) as idx:
        idx.update(photos)
        kept_by_rule = {}
        for rule in (DEFAULT_KEEP, "size", "smallest"):
            groups = idx.duplicates(threshold=0.93, keep=rule, calibrate=False)
            assert groups
            key = rank_key(parse_keep(rule))
            for g in groups:
                facts = [file_facts(m.path) for m in g.members]
                # The favourite among all members is the one kept.
                assert min(facts, key=key).path == g.keep, (rule, [f.path for f in facts])
                names_in = {m.path.rsplit("/", 1)[1] for m in g.members}
                for name in names:
                    if rule != "smallest" and {f"{name}.jpg", f"{name}_q30.jpg"} <= names_in:
                        assert g.keep.endswith(f"/{name}.jpg")
            kept_by_rule[rule] = {g.keep for g in groups}
        originals = {str(photos / f"{name}.jpg") for name in names}
        assert originals <= kept_by_rule[DEFAULT_KEEP]
        assert kept_by_rule["size"] != kept_by_rule["smallest"]  # --keep decides
        assert not originals & kept_by_rule["smallest"]
