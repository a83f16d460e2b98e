"""The second look at a candidate pair (#19): copies confirmed, look-alikes set apart, on
generated images (``tests/lookalikes.py``) and real sample photos; files read safely; the
cost bounded per image. No model here (see ``test_duplicates_lookalikes.py``)."""

from __future__ import annotations

import io
import os
import random
import threading
import time
import warnings

import lookalikes
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from lookalike.demo.samples import EDITS, load_originals
from lookalike.duplicates.calibrate import MIN_LOOKS, look_budget
from lookalike.duplicates.candidates import Pairs
from lookalike.duplicates.second_look import second_look
from lookalike.duplicates.verify import Look, Verdict, Verifier, compare_looks, prepare


def same(a: Image.Image, b: Image.Image) -> bool | None:
    return compare_looks(prepare(a), prepare(b)).copy


@pytest.fixture(scope="module")
def letters():
    return lookalikes.letters(n=4, copies=1)


@pytest.fixture(scope="module")
def photos():
    return load_originals(["chelsea", "coffee", "astronaut", "rocket"])


def test_letters_of_one_layout_differ_once_aligned(letters):
    im = letters.images
    # The same letter scanned again (turned, shifted) and re-saved smaller: a copy.
    assert same(im["letter000"], im["letter000_rescan"]) is True
    assert same(im["letter000"], im["letter000_q40"]) is True
    # Other letters share the letterhead, the layout and the line positions: not copies.
    for other in ("letter001", "letter002", "letter003"):
        verdict = compare_looks(prepare(im["letter000"]), prepare(im[other]))
        assert verdict.copy is False, other
        assert verdict.agree < 0.6  # far from the bar, not a near miss


@pytest.mark.parametrize("edit", ["crop30", "rotate10", "hflip", "grey", "jpeg20", "resize25"])
def test_edited_photos_are_copies_of_their_original(photos, edit):
    original = photos["chelsea"]
    copy = EDITS[edit](original, random.Random(0), photos["coffee"])
    assert same(original, copy) is True
    assert same(copy, original) is True  # either order
    assert same(copy, photos["astronaut"]) is False


def test_a_mirrored_crop_is_found_through_the_mirrored_features(photos):
    im = photos["rocket"]
    w, h = im.size
    copy = ImageOps.mirror(im.crop((w // 8, h // 10, w, h)))
    verdict = compare_looks(prepare(im), prepare(copy))
    assert verdict.copy is True and verdict.mirrored and verdict.how == "orb"


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_a_crop_and_a_mirror_image_of_one_photo_are_copies(photos, name):
    # Two copies of one photo, one cropped to 30% of its surface, the other mirrored: only
    # the mirrored features can align them. OpenCV's MAGSAC finds no model that turns
    # the image over (its determinant is negative), so the mirror is fitted from the
    # mirrored image's own coordinates; before, these pairs were turned down (#19).
    original = photos[name]
    crop = EDITS["crop30"](original, random.Random(0), photos["rocket"])
    mirror = ImageOps.mirror(original)
    for a, b in ((crop, mirror), (mirror, crop)):
        verdict = compare_looks(prepare(a), prepare(b))
        assert verdict.copy is True and verdict.mirrored and verdict.how == "orb"
        assert verdict.inliers >= 50 and verdict.agree >= 0.8


def test_tiles_of_one_texture_are_not_copies_but_their_resaves_are():
    tiles = lookalikes.tiles(per_texture=3, copies=1)
    im = tiles.images
    for texture in ("brick", "gravel", "wood"):
        assert same(im[f"{texture}00"], im[f"{texture}00_q50"]) is True
        assert same(im[f"{texture}00"], im[f"{texture}00_flip"]) is True
        assert same(im[f"{texture}00"], im[f"{texture}01"]) is False
        assert same(im[f"{texture}01"], im[f"{texture}02"]) is False


def test_flat_images_compare_by_colour():
    red, small_red = (
        Image.new("RGB", (90, 60), (200, 30, 30)),
        Image.new("RGB", (45, 30), (200, 30, 30)),
    )
    assert same(red, small_red) is True
    assert same(red, Image.new("RGB", (90, 60), (20, 30, 200))) is False


def test_smooth_images_are_not_copies_of_their_inverse_or_of_a_flat_image():
    # Little texture: tiles compare by brightness after the edit's gain and offset. A
    # fitted gain of 0 (against a flat image) or below 0 (an inverted ramp) is no edit:
    # a solid black image was a "copy" of a dark-to-light gradient (agreement 1.0, in one
    # order only), a dusk sky of an upside-down one (#19, review).
    ramp = np.tile(np.linspace(0, 255, 300).astype(np.uint8), (200, 1))
    gradient = Image.fromarray(ramp).convert("RGB")
    for colour in ((0, 0, 0), (128, 128, 128), (255, 255, 255)):
        solid = Image.new("RGB", (300, 200), colour)
        assert same(solid, gradient) is False and same(gradient, solid) is False
    t = np.linspace(0, 1, 300)[:, None, None]
    sky = (np.array([40, 60, 180]) + np.array([200, 120, -100]) * t) * np.ones((1, 400, 1))
    dusk = Image.fromarray(sky.astype(np.uint8))
    assert same(dusk, ImageOps.flip(dusk)) is False
    assert same(gradient, ImageOps.mirror(gradient)) is True  # a mirror image is a copy
    # A brighter, lower-contrast copy of a smooth image is still one.
    edited = Image.fromarray((ramp * 0.7 + 60).astype(np.uint8)).convert("RGB")
    assert same(gradient, edited) is True and same(edited, gradient) is True


def test_files_are_read_safely(tmp_path, photos):
    good = tmp_path / "good.jpg"
    photos["chelsea"].save(good)
    (tmp_path / "text.jpg").write_bytes(b"not an image at all")
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)  # a FIFO named like a photo: never opened (it would block)
    verifier = Verifier()
    done: list = []
    worker = threading.Thread(
        target=lambda: done.extend(
            verifier.verdict(str(good), str(tmp_path / name)).copy
            for name in ("pipe.jpg", "text.jpg", "missing.jpg")
        ),
        daemon=True,
    )
    worker.start()
    worker.join(20)
    assert done == [None, None, None]  # undecided: the pair is never called a copy
    assert verifier.verdict(str(good), str(good)).copy is True


def test_look_alikes_cost_a_bounded_number_of_looks(tmp_path, letters):
    # Eight distinct letters, every pair a candidate (as their cosines are): each image
    # may have `budget` pairs turned down, then its pairs are passed over.
    distinct = lookalikes.letters(n=8, copies=0)
    paths = list(distinct.write(tmp_path).values())
    n = len(paths)
    i, j = np.triu_indices(n, 1)
    pairs = Pairs(i.astype(np.int64), j.astype(np.int64), np.linspace(0.99, 0.95, len(i)))
    node = np.arange(n, dtype=np.int64)
    looked = second_look(
        pairs, lambda p: str(paths[p]), node=node, undecided_from=0.9, verifier=Verifier(),
        budget=2,
    )  # fmt: skip
    assert len(looked.pairs) == 0 and not looked.verified
    assert looked.rejected == looked.looked <= n * 2 // 2 + n
    assert looked.passed_over == len(i) - looked.looked > 0
    # And in all: after `max_rejects` pairs turned down, every other pair is passed over
    # (a 10,000-image collection turned down 18,036 where its calibration planned 10,000).
    capped = second_look(
        pairs, lambda p: str(paths[p]), node=node, undecided_from=0.9, verifier=Verifier(),
        max_rejects=5,
    )  # fmt: skip
    assert capped.rejected == capped.looked == 5 and capped.passed_over == len(i) - 5
    # When the budget can run out, the most similar pairs are looked at first, whatever
    # their connected set (copies score highest).
    seen: list[tuple[str, str]] = []

    class Recording(Verifier):
        def verdict(self, a, b):  # type: ignore[no-untyped-def]
            seen.append((a, b))
            return super().verdict(a, b)

    # Two connected sets: letters 0-3 (cosines 0.95-0.96), letters 4-7 (0.98-0.99).
    ai, aj = np.triu_indices(4, 1)
    two = Pairs(
        np.r_[ai, ai + 4].astype(np.int64), np.r_[aj, aj + 4].astype(np.int64),
        np.r_[np.linspace(0.96, 0.95, 6), np.linspace(0.99, 0.98, 6)],
    )  # fmt: skip
    second_look(
        two, lambda p: str(paths[p]), node=node, undecided_from=0.9,
        verifier=Recording(workers=1), max_rejects=3,
    )  # fmt: skip
    top = np.argsort(-two.score)[:3]
    assert seen == [(str(paths[two.i[k]]), str(paths[two.j[k]])) for k in top]
    assert capped.budget_spent and not looked.budget_spent
    assert look_budget(10_000) == 10_000 and look_budget(10) == MIN_LOOKS


@pytest.mark.xfail(
    strict=True,
    reason="#19: aligned on the shared quarter, the flat rest has nothing to disagree "
    "with; the overlap (0.51-0.58) is that of two crops of one photo (0.52-0.57)",
)
def test_two_mosaics_sharing_one_quarter_are_not_copies():
    # (#19) 10,000 mosaics of crops of the sample photos: two that share one photo's
    # quarter, the other quarters flat, are called copies (13 such verdicts among 18,979
    # candidate pairs). Raising MIN_COVER to 0.6 turned them down, and real copies too
    # (the next test).
    name = "coffee"
    photo = load_originals([name])[name]
    w, h = photo.size
    box = (w // 4, h // 4, w // 4 + w // 3, h // 4 + h // 4)
    wider = (box[0] - w // 30, box[1] - w // 30, box[2] + w // 30, box[3] + w // 30)

    def mosaic(crop: tuple[int, int, int, int], where: int, greys: list[int]) -> Image.Image:
        canvas = Image.new("RGB", (384, 288))
        for q in range(4):
            tile = Image.new("RGB", (192, 144), (greys[q],) * 3)
            tile = photo.crop(crop).resize((192, 144)) if q == where else tile
            canvas.paste(tile, (192 * (q % 2), 144 * (q // 2)))
        return canvas

    a = mosaic(box, 2, [110, 150, 0, 90])
    b = mosaic(wider, 3, [60, 130, 170, 0])
    assert same(photo.crop(box).resize((192, 144)), photo.crop(wider).resize((220, 165))) is True
    assert not same(a, b) and not same(b, a)


@pytest.mark.parametrize("name", ["retina", "rocket", "flower"])
def test_two_crops_of_one_photo_are_copies(name):
    # (review, #19) Two Copydays crop50 edits of one photo overlap by 0.52-0.57 of either:
    # a higher overlap bar (0.6) turned them down.
    photo = load_originals([name])[name]
    one, two = (EDITS["crop50"](photo, random.Random(f"{name}:crop50:{k}"), photo) for k in (1, 2))
    assert same(one.convert("RGB"), two.convert("RGB")) is True


def _jpeg(im: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


@pytest.mark.parametrize("name, box", [("cell", (0.25, 0.25, 0.75, 0.75))])
def test_a_small_crop_of_a_photo_is_a_copy(name, box):
    # (review, #19) A quarter of the picture, few features in common (18-28 inliers
    # whatever pixel the crop starts at): a quick test on the 400 strongest features (16
    # matches) turned it down before full matching; it is gone. (A quarter of `retina`
    # and a strip of `coffee` are confirmed or not depending on one pixel of the crop:
    # 10-13 inliers, and MAGSAC's answer changes with the order of the matches.)
    photo = load_originals([name])[name]
    w, h = photo.size
    crop = photo.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))
    assert same(photo, _jpeg(crop)) is True


def test_a_settled_page_is_judged_as_it_was_read(photos):
    # (review, #19) Settling keeps a photo's grey only at its comparison size; a page's
    # grey resized twice (512 -> 384 -> a 25% partner's size) moved its agreement by up to
    # 0.14, and two distinct forms became copies. Pages keep their grey whole.
    forms = lookalikes.forms(n=12, copies=3, filled=8)
    invoices = lookalikes.invoices(n=10, copies=2)

    def quarter(im: Image.Image) -> Image.Image:
        return _jpeg(im.resize((im.width // 4, im.height // 4), Image.Resampling.LANCZOS))

    pairs = [
        (_jpeg(forms.images["form002_rescan"]), quarter(forms.images["form000"])),  # distinct
        (_jpeg(invoices.images["invoice001_rescan"]), quarter(invoices.images["invoice001"])),
    ]
    for a, b in pairs:
        plain = compare_looks(prepare(a), prepare(b))
        settled = compare_looks(prepare(a).settle(), prepare(b).settle())
        assert (settled.copy, settled.agree, settled.how) == (plain.copy, plain.agree, plain.how)
    assert compare_looks(prepare(pairs[0][0]).settle(), prepare(pairs[0][1]).settle()).copy is False
    # A photo settles: less memory, the same verdict against its copy.
    cat = prepare(photos["chelsea"])
    size = cat.grey.nbytes
    crop = prepare(_jpeg(photos["chelsea"].crop((40, 30, 400, 280))))
    assert compare_looks(cat, crop).copy is True
    assert compare_looks(prepare(photos["chelsea"]).settle(), crop).copy is True
    assert prepare(photos["chelsea"]).settle().grey.nbytes < size


def test_looks_on_several_threads_decide_exactly_as_on_one(tmp_path):
    # Letters with copies of some, every pair a candidate, both budgets binding: the
    # threads look ahead of the order, but each outcome is applied in order, so what is
    # kept, verified, looked at and passed over is the same as on one thread (#19).
    found = lookalikes.letters(n=6, copies=2)
    paths = list(found.write(tmp_path).values())
    n = len(paths)
    i, j = np.triu_indices(n, 1)
    rng = np.random.default_rng(0)
    pairs = Pairs(i.astype(np.int64), j.astype(np.int64), rng.uniform(0.9, 1.0, len(i)))
    node = np.arange(n, dtype=np.int64)
    threads: set[str] = set()

    class Recording(Verifier):
        def verdict(self, a, b):  # type: ignore[no-untyped-def]
            threads.add(threading.current_thread().name)
            return super().verdict(a, b)

    def run(workers: int, **budgets: int) -> tuple:
        out = second_look(
            pairs, lambda p: str(paths[p]), node=node, undecided_from=0.95,
            verifier=Recording(workers=workers), **budgets,
        )  # fmt: skip
        kept = sorted(zip(out.pairs.i.tolist(), out.pairs.j.tolist(), strict=True))
        return kept, sorted(out.verified), out.looked, out.rejected, out.passed_over, out.inferred

    for budgets in ({"budget": 3}, {"max_rejects": 7}, {}):
        one = run(1, **budgets)
        assert one[1], "the copies are confirmed"
        assert run(3, **budgets) == one, budgets
    assert len(threads) > 1  # the looks did run on several threads


def test_a_file_two_threads_need_at_once_is_read_once(tmp_path, photos):
    path = tmp_path / "cat.jpg"
    photos["chelsea"].save(path)
    reads: list[str] = []
    gate = threading.Barrier(4)

    def load(p):  # type: ignore[no-untyped-def]
        reads.append(p)
        return prepare(Image.open(p).convert("RGB"))

    verifier = Verifier(load=load)

    def look() -> None:
        gate.wait()
        assert verifier.look(str(path)) is not None

    workers = [threading.Thread(target=look) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert reads == [str(path)]


def test_prepared_images_are_kept_within_a_memory_bound(tmp_path, photos):
    paths = []
    for name, im in photos.items():
        paths.append(tmp_path / f"{name}.jpg")
        im.save(paths[-1])
    one = Verifier().look(str(paths[0]))
    assert one is not None
    verifier = Verifier(cache_bytes=int(one.grey.nbytes * 2.5))  # room for two images
    for p in paths:
        verifier.look(str(p))
    assert verifier.prepared == len(paths) and len(verifier._cache) <= 2
    verifier.look(str(paths[-1]))  # still kept: not read again
    verifier.look(str(paths[0]))  # pushed out: read again
    assert verifier.prepared == len(paths) + 1
    assert verifier._bytes <= int(one.grey.nbytes * 2.5)


class Boom(RuntimeError):
    pass


def _flat_look() -> Look:
    return Look(np.full((64, 64), 128, np.uint8), 64)


def test_a_load_that_fails_ends_the_run_alike_on_one_thread_and_on_several():
    # (review, #19) Pairs most similar first: (A, X), then (B, C) turned down, which spends
    # the run's budget, then (X, D). Reading X raises (not an unreadable file: a bug, a
    # MemoryError). On several threads X's failure was remembered as "unreadable": (A, X)
    # was kept on its cosine and the run went on, where one thread raised.
    def load(path):  # type: ignore[no-untyped-def]
        if path == "A":
            time.sleep(0.2)  # a slow file: its thread reaches X last
        if path == "X":
            raise Boom("cannot read X")
        return _flat_look()

    class Scripted(Verifier):
        def verdict(self, a, b):  # type: ignore[no-untyped-def]
            if {a, b} == {"B", "C"}:
                return Verdict(False, how="orb")
            return super().verdict(a, b)

    names = ["A", "X", "B", "C", "D"]
    pairs = Pairs(np.array([0, 2, 1]), np.array([1, 3, 4]), np.array([0.99, 0.98, 0.97]))
    for workers in (1, 4):
        with pytest.raises(Boom):
            second_look(
                pairs, lambda p: names[p], node=np.arange(5), undecided_from=0.9,
                verifier=Scripted(load=load, workers=workers), max_rejects=1,
            )  # fmt: skip
    # A failed read is not remembered: asked again, the file is read again.
    verifier = Verifier(load=load)
    with pytest.raises(Boom):
        verifier.look("X")
    verifier._load = lambda p: _flat_look()  # the cause went away
    assert verifier.look("X") is not None


def test_a_loader_that_returns_no_look_never_leaves_a_file_waiting_forever():
    verifier = Verifier(load=lambda p: object())  # type: ignore[arg-type,return-value]
    for _ in range(2):  # the second ask does not wait on the first one's read
        with pytest.raises(TypeError):
            verifier.look("P")


def test_a_large_page_is_read_within_the_projects_limits_not_pillows(tmp_path, monkeypatch):
    # (review, #19) The second look read a page's size from its header with Pillow's own
    # limits: a 179 MP page the index accepts (limit 180 MP) raised Pillow's
    # DecompressionBombError out of `lookalike duplicates`. Here Pillow's limit is made
    # small instead of the page large.
    from PIL import Image as PILImage

    from lookalike.decode import DecodeLimits
    from lookalike.duplicates.verify import look_at_file

    page = lookalikes.letters(n=1, copies=0).images["letter000"].resize((1700, 2200))
    path = tmp_path / "page.jpg"
    page.save(path, quality=90)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor a warning printed by the core
        look = look_at_file(str(path), DecodeLimits(max_pixels=10_000_000))
    assert look is not None and look.page is not None and max(look.page.shape) == 1024


def test_undecided_pairs_keep_only_their_cosine_above_the_plain_threshold(tmp_path):
    pairs = Pairs(np.array([0, 0]), np.array([1, 2]), np.array([0.95, 0.7], np.float32))
    missing = [str(tmp_path / f"gone{k}.jpg") for k in range(3)]
    looked = second_look(
        pairs, lambda p: missing[p], node=np.arange(3), undecided_from=0.9, verifier=Verifier()
    )
    assert looked.undecided == 2 and looked.looked == 0
    assert looked.pairs.j.tolist() == [1]  # 0.95 stays (not verified), 0.7 goes
    assert not looked.verified


def test_two_confirmed_copies_of_one_image_are_copies_of_each_other(tmp_path, photos):
    # The original and two copies (mirrored + captioned, and cropped + recoloured): each
    # copy is confirmed against the original; the copies' own pair may not be, yet the
    # keep rule may keep either copy (#18): the pair is kept through the original.
    original = photos["coffee"]
    one = EDITS["text"](ImageOps.mirror(original), random.Random(1), original)
    two = EDITS["colour"](
        EDITS["crop50"](original, random.Random(2), original), random.Random(3), original
    )
    paths = []
    for name, im in (("orig", original), ("one", one), ("two", two)):
        paths.append(str(tmp_path / f"{name}.jpg"))
        im.save(paths[-1])
    pairs = Pairs(np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([0.9, 0.8, 0.6], np.float32))
    looked = second_look(
        pairs, lambda p: paths[p], node=np.arange(3), undecided_from=0.9, verifier=Verifier()
    )
    assert {(0, 1), (0, 2), (1, 2)} == looked.verified
    assert len(looked.pairs) == 3 and looked.looked == 3
    assert looked.rejected == 1 and looked.inferred == 1  # the copies' own look said no
    # Without the original among the candidates, nothing joins the two copies by inference.
    alone = second_look(
        Pairs(np.array([1]), np.array([2]), np.array([0.6], np.float32)),
        lambda p: paths[p], node=np.arange(3), undecided_from=0.9, verifier=Verifier(),
    )  # fmt: skip
    assert alone.inferred == 0


def test_images_thinner_than_a_tile_are_undecided_not_a_crash():
    # Two distinct 4000x40 banners (and 10000x2 strips): at the comparison size they are
    # thinner than one tile. The look used to raise ValueError (a reshape of no tiles),
    # which ended `lookalike duplicates` with a traceback.
    rng = np.random.default_rng(1)
    for shape in ((40, 4000, 3), (2, 10000, 3), (500, 3, 3)):
        a, b = (Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)) for _ in "ab")
        assert same(a, b) is None
        assert same(a, a.copy()) in (True, None)  # never "distinct" for lack of tiles
    # Flat images stay judged by their colour, whatever their shapes.
    assert same(Image.new("RGB", (1, 1), (3, 4, 5)), Image.new("RGB", (10000, 2), (3, 4, 5)))


def _invoice(seed: int) -> Image.Image:
    """One invoice of a fixed template: the same labels on every line, values (own seed)
    on every other line, on the right."""
    from lookalikes import _font
    from PIL import ImageDraw

    words = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "elit",
        "sed",
        "do",
        "tempor",
        "ut",
        "labore",
        "dolore",
        "magna",
    ]
    labels, values = np.random.default_rng(99), np.random.default_rng(seed)
    im = Image.new("RGB", (800, 1100), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((40, 40, 760, 120), outline="black", width=3)
    d.text((60, 60), "ACME Corporation - Invoice", font=_font("DejaVuSans.ttf", 30), fill=0)
    small = _font("DejaVuSans.ttf", 18)
    for line in range(40):
        y = 160 + line * 22
        d.text((60, y), " ".join(labels.choice(words, 4)) + ":", font=small, fill=0)
        if line % 2 == 0:
            value = " ".join(values.choice(words, 2)) + f" {values.integers(100, 99999)}"
            d.text((450, y), value, font=small, fill=0)
    return im


# Review of #19: values that differ on every other line of one template are small
# separate patches; they count as one (vertical closing of the disagreeing tiles).
def test_two_invoices_of_one_template_are_not_copies():
    assert same(_invoice(1), _invoice(2)) is False


# Review of #19: forms of one template filled in by different people are different
# documents. With a few fields filled, the second look called many pairs copies (agreement
# up to 0.91: the printed template agrees, the handwriting is a few thin lines, as a caption
# is); with the trained model all 48 forms of such a set fell into one group (pair
# precision 0.01 while the calibration claimed 1.00). Pages are now read closely: text
# that differs on a page is another page.
def test_forms_of_one_template_filled_in_differently_are_not_copies():
    forms = [lookalikes.form(k) for k in range(4)]
    called = [same(a, b) for i, a in enumerate(forms) for b in forms[i + 1 :]]
    assert called.count(True) == 0, called
    # The same form re-saved smaller, or scanned again, is still a copy. (A rescan whose
    # features align it less closely can miss: form000's differs outright in 2.1% of its
    # tiles, over the 2% bar; distinct forms start at 2.2%. BENCHMARKS.md, #19.)
    rescans = lookalikes.forms(n=2, copies=2).images
    assert same(rescans["form000"], rescans["form000_q40"]) is True
    assert same(rescans["form001_q40"], rescans["form001"]) is True
    assert same(rescans["form001"], rescans["form001_rescan"]) is True
    assert same(rescans["form001_q40"], rescans["form001_rescan"]) is True


def test_a_caption_on_a_photo_with_a_white_sky_is_still_an_edit(photos):
    # Step 4 (pages) must not take a photo for a page: a white sky is paper-like, but the
    # photo's texture is no ink on it.
    from lookalike.demo.samples import load_originals

    rocket = load_originals(["rocket"])["rocket"]
    captioned = lookalikes._caption(rocket, random.Random(0), rocket)
    verdict = compare_looks(prepare(rocket), prepare(captioned))
    assert verdict.copy is True


# ------------------------------------------------------------------ review of #19 (pages)
def _graphic(kind: str, seed: int) -> Image.Image:
    """Graphics on white that are not pages of text: a line drawing, a comic strip."""
    from lookalikes import _font
    from PIL import ImageDraw

    rng = random.Random(f"{kind}:{seed}")
    im = Image.new("RGB", (800, 600), "white")
    d = ImageDraw.Draw(im)
    if kind == "drawing":
        for _ in range(25):
            x, y = rng.randint(0, 650), rng.randint(0, 550)
            d.ellipse(
                (x, y, x + rng.randint(20, 120), y + rng.randint(20, 120)), outline=0, width=2
            )
        for _ in range(15):
            d.line([(rng.randint(0, 800), rng.randint(0, 600)) for _ in range(4)], fill=0, width=2)
    else:
        for x, y in ((10, 10), (405, 10), (10, 305), (405, 305)):
            d.rectangle((x, y, x + 385, y + 285), outline=0, width=4)
            d.ellipse((x + 100, y + 120, x + 200, y + 260), outline=0, width=3)
            d.ellipse((x + 120, y + 60, x + 180, y + 120), outline=0, width=3)
            d.rounded_rectangle((x + 200, y + 20, x + 370, y + 90), 20, outline=0, width=2)
            words = rng.choice(["Hello there!", "What now?", "Look out!", "Oh no..."])
            d.text((x + 215, y + 40), words, font=_font("DejaVuSans.ttf", 16), fill=0)
    return im


# Review of #19: a mirrored page lost its copy once pages were read closely. The mirror
# was composed at one size and the comparison made at another without the half pixel a
# resize shifts by: a quarter pixel off, and 5% of a letter's thin strokes "differed".
@pytest.mark.parametrize("which", ["letter", "form", "drawing"])
def test_a_mirrored_page_is_a_copy(which):
    page = {
        "letter": lambda: lookalikes._letter(random.Random("0:letter:3")),
        "form": lambda: lookalikes.form(3),
        "drawing": lambda: _graphic("drawing", 1),
    }[which]()
    assert same(page, ImageOps.mirror(page)) is True


# Review of #19: pages were compared at 384 pixels at most, where a 16-pixel line of text
# is 5 pixels tall: another name, date, amount and quantity on one invoice left 0-0.7% of
# the textured tiles differing outright (the bar was 2%), and two invoices of one template
# with different totals and dates were copies (`--move-to` would move one). Pages are now
# compared close (pages.py): a changed quantity (and so total) is enough. One changed
# character (a year's last digit) was still under the bar; see the glyphs' test below.
def test_invoices_with_another_customer_date_and_total_are_not_copies():
    a = lookalikes.invoice()
    assert same(a, lookalikes.invoice(date="02/11/2023", qty=7)) is False
    assert (
        same(a, lookalikes.invoice(name="Maria Gonzales-Ruiz", date="19/08/2025", qty=5)) is False
    )
    assert same(a, lookalikes.invoice(qty=4)) is False
    # Its copies: turned a degree, re-saved small, grey.
    turned = a.rotate(1, Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    assert same(a, turned) is True
    assert same(a, lookalikes._jpeg(a.resize((400, 550)), 30)) is True
    assert same(a, ImageOps.grayscale(a).convert("RGB")) is True


# Review of #19: the 2% bar sat within a degree's worth of misalignment of a page's thin
# lines: a form turned by 1-3 degrees differed outright in 2.1-3.9% of its tiles, a
# photocopy look (blur, contrast) in 3.1%; all were copies before step 4, and are again
# (the close comparison tolerates a pixel of shift and a stroke's blurred edge).
def test_a_form_turned_a_little_or_photocopied_is_still_a_copy():
    from PIL import ImageEnhance, ImageFilter

    page = lookalikes.form(3)
    for angle in (1, 2, 3):
        turned = page.rotate(angle, Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
        assert same(page, turned) is True, angle
    grey = ImageOps.grayscale(page).filter(ImageFilter.GaussianBlur(1.2))
    assert same(page, ImageEnhance.Contrast(grey).enhance(1.8).convert("RGB")) is True


# Review of #19: line drawings and comic strips on white pass for pages (paper, and all
# their texture is ink on it), so a caption on them - an edit on a photo - now makes them
# distinct (both were copies before step 4).
@pytest.mark.xfail(strict=True, reason="#19: graphics on white are taken for pages")
@pytest.mark.parametrize("kind", ["drawing", "comic"])
def test_a_caption_on_a_drawing_or_a_comic_is_still_an_edit(kind):
    im = _graphic(kind, 1)
    assert same(im, lookalikes._caption(im, random.Random(0), im)) is True


def test_pairs_passed_over_by_the_run_budget_are_reported_as_such():
    # Review of #19: pairs passed over because the run's budget of turned-down pairs was
    # spent are not grouped; the text said "images with many look-alikes" and `--json`
    # said nothing at all.
    from lookalike.duplicates.report import look_line, report_json
    from lookalike.duplicates.types import DuplicateReport

    report = DuplicateReport(
        threshold=0.9, images=10, seconds=1.0, groups=[], second_look=True, looked=2000,
        rejected=2000, passed_over=37, look_budget_spent=True,
    )  # fmt: skip
    line = look_line(report)
    assert "37 pairs passed over" in line and "budget of looks spent" in line
    import json

    data = json.loads(report_json(report))
    assert data["second_look"]["passed_over"] == 37
    assert data["second_look"]["budget_spent"] is True


def test_a_large_page_in_a_file_is_decoded_once(tmp_path, monkeypatch):
    # Review of #19: a page is decoded a second time, larger; a PNG (no draft) was
    # decoded twice at full size (6000x8000: 1.8 s and 430 MB for one look, 0.5 s and
    # 227 MB for the decode alone).
    import lookalike.decode as decode
    from lookalike.duplicates.verify import look_at_file

    page = lookalikes.invoice().resize((1600, 2200))
    path = tmp_path / "page.png"
    page.save(path)
    calls = []
    real = decode.open_rgb
    monkeypatch.setattr(decode, "open_rgb", lambda *a, **k: calls.append(1) or real(*a, **k))
    look = look_at_file(str(path))
    assert look is not None and look.page is not None and max(look.page.shape) == 1024
    assert len(calls) == 1


def test_a_page_cropped_at_its_margins_is_still_a_copy():
    # Review of #19: 3% cut off each side, nothing resized (no framing: ORB geometry):
    # 0.008 (affine) and 0.08 (homography) of the inked tiles unmatched, over 0.0025.
    # Not the sizes (compared at one content scale it was 0.014): the geometry, fitted at
    # 512 px, landed more than SHIFT pixels off at the close size (1.7x larger). It is now
    # refined on the close copies' pixels (ECC) when a pair is over the bar.
    form = lookalikes.form(1)
    w, h = form.size
    crop = form.crop((int(w * 0.03), int(h * 0.03), int(w * 0.97), int(h * 0.97)))
    assert compare_looks(prepare(form), prepare(crop)).copy


def test_rescanned_forms_the_features_misalign_are_still_copies():
    # #19: the features' geometry (fitted at 512 px) left 0.4-3.7% of these rescans'
    # inked tiles unmatched at the close size (the bar: 0.25%): copies lost. Refined on
    # the pixels (ECC), none are (the forms sets: 6 -> 9 and 8 -> 9 of 9 copy pairs).
    for filled, k in ((4, 0), (8, 1)):
        form = lookalikes.forms(n=3, copies=3, filled=filled).images
        stem = f"form{k:03d}"
        verdict = compare_looks(prepare(form[stem]), prepare(form[f"{stem}_rescan"]))
        assert verdict.copy, (filled, verdict)


def test_a_refined_alignment_does_not_make_another_invoice_a_copy():
    # #19: refined to the pixel and held to the usual bar, a rescan re-saved small of one
    # invoice became a copy of another (another customer's date and quantity: 0.0018 of
    # the inked tiles unmatched, under 0.0025). Once refined, a copy leaves none.
    bills = lookalikes.invoices(n=12, copies=2, seed=0).images
    verdict = compare_looks(prepare(bills["invoice000_q40"]), prepare(bills["invoice006"]))
    assert verdict.copy is False


def test_a_pair_gets_one_verdict_whichever_order_it_is_asked_in(tmp_path):
    # #19: the look maps the second image onto the first, and these borderline pairs are
    # copies one way only (measured in memory: the turned cell is a copy of its mirror
    # image, not the other way). The calibration asks (sample, neighbour), the run asks in
    # index order: one pair could be labelled a copy and judged distinct.
    photos = load_originals(["cell", "clock_motion"])
    pairs = [
        ("cell", "rotate10", "hflip"),
        ("cell", "rotate10", "grey"),
        ("clock_motion", "colour", "rotate10"),
        ("clock_motion", "crop30", "blur"),
    ]
    verifier = Verifier(workers=1)
    for name, x, y in pairs:
        photo = photos[name]
        paths = []
        for edit in (x, y):
            paths.append(str(tmp_path / f"{name}_{edit}.png"))
            EDITS[edit](photo, random.Random(f"{name}:{edit}"), photo).save(paths[-1])
        one, other = verifier.verdict(*paths), verifier.verdict(*reversed(paths))
        assert one == other, (name, x, y, one, other)
        # Nor does it depend on what the files are called (review: put in path order,
        # the same pixels named to sort the other way round changed the verdict).
        renamed = [str(tmp_path / f"{p}_{name}_{x}_{y}.png") for p in ("z", "a")]
        for path, new in zip(paths, renamed, strict=True):
            os.link(path, new)
        assert verifier.verdict(*renamed) == one, (name, x, y)


def test_a_path_that_cannot_be_encoded_is_unreadable_not_an_error(tmp_path):
    # Review of #19: ordering a pair by its paths raised UnicodeEncodeError on a str path
    # with a lone surrogate (the old code, and this one, say "unreadable").
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 64), (90, 120, 30)).save(photo)
    verdict = Verifier(workers=1).verdict("\ud800.png", str(photo))
    assert verdict.copy is None and verdict.how == "unreadable"


def _page_differ_reference(a, b, inside):
    """The close page comparison as first written (every tile, ``np.roll``), for the test
    below."""
    from lookalike.duplicates import pages as P

    ta = P._tiles(a)
    keep = P._tiles(inside.astype(np.float32)).min(axis=1) > 0
    ma, sa = ta.mean(axis=1), ta.std(axis=1)
    best = np.full(len(ta), -1.0, dtype=np.float32)
    for dy in range(-P.SHIFT, P.SHIFT + 1):
        for dx in range(-P.SHIFT, P.SHIFT + 1):
            tb = P._tiles(np.roll(b, (dy, dx), axis=(0, 1)))
            mb, sb = tb.mean(axis=1), tb.std(axis=1)
            ncc = ((ta - ma[:, None]) * (tb - mb[:, None])).mean(axis=1) / np.maximum(sa * sb, 1e-6)
            low, high = np.minimum(sa, sb), np.maximum(sa, sb)
            blank = (high < P.INK) | ((low < P.FLAT) & (high < 2 * P.INK))
            best = np.maximum(best, np.where(blank, 1.0, np.where(low < P.FLAT, -1.0, ncc)))
    inked = keep & ((sa >= P.INK) | (P._tiles(b).std(axis=1) >= P.INK))
    return float(((best < P.PAGE_NCC) & inked).sum() / inked.sum()) if inked.any() else 0.0


def test_the_close_page_comparison_matches_only_inked_tiles_with_the_same_result():
    # #19: page_differ matches only the inked tiles (4-8 times less work on a page); the
    # result is the reference's exactly, borders (np.roll wraps) and odd sizes included.
    from lookalike.duplicates.pages import page_differ

    rng = np.random.default_rng(0)
    page = np.asarray(lookalikes.invoice().convert("L").resize((372, 512)), np.float32)
    other = np.asarray(lookalikes.invoice(qty=7).convert("L").resize((372, 512)), np.float32)
    cases = [(page, other), (page, np.roll(page, 1, axis=1)), (page, page + 40)]
    for h, w in ((97, 131), (64, 200), (8, 8)):
        noise = rng.integers(0, 256, (h, w)).astype(np.float32)
        cases.append((noise, noise + rng.normal(0, 25, (h, w)).astype(np.float32)))
    for a, b in cases:
        inside = rng.random(a.shape) > 0.02
        assert page_differ(a, b, inside) == _page_differ_reference(a, b, inside)


def test_a_page_pair_is_aligned_again_from_one_geometry_per_try(monkeypatch):
    # Review of #19: each refinement costs 50-90 ms, and distinct invoices over the bar
    # were refined from both the homography and the affine map (two per pair, the same
    # verdict); one geometry per try now (the affine map's).
    import lookalike.duplicates.verify as verify

    calls = []
    real = verify._refine
    monkeypatch.setattr(verify, "_refine", lambda *a: calls.append(1) or real(*a))
    rng = random.Random(0)
    one = prepare(lookalikes._scan(lookalikes.invoice(), rng))
    other = prepare(lookalikes._scan(lookalikes.invoice(date="19/08/2025", qty=7), rng))
    assert compare_looks(one, other).copy is False
    assert len(calls) == 1


# #19: one changed character - a year's last digit, a day, a letter of a name - left no
# inked tile unmatched at the page bar (8-px tiles correlate at 0.5 on most of a glyph), so
# such invoices were copies, and `--move-to` would move one. Pages that meet the bar have
# their glyph-sized windows compared now (pages.glyph_outlier): measured 9-39 times the
# page's 99th percentile on these, a copy's at most 1.8 (held-out pages, #19).
@pytest.mark.parametrize(
    "change",
    [
        {"date": "12/03/2025"},
        {"date": "13/03/2024"},
        {"date": "12/08/2024"},
        {"name": "Jonathan Appleseeds"},
        {"name": "Jonathan Applesead"},
    ],
)
def test_an_invoice_with_one_character_changed_is_not_a_copy(change):
    assert same(lookalikes.invoice(), lookalikes.invoice(**change)) is False


# #19: scanned invoices a date (or a date and a quantity) apart, one of them maybe a rescan
# or re-saved small (JPEG 40, 480 px), were copies: the pages' alignment, refined at half
# their size only, left the scans up to 3 px apart along a line of small print, where
# their glyphs then differed as much as the changed date did (1.5-1.95 times the page's
# 99th percentile, under the 2.0 allowed). Refined again at the close size to confirm
# them, they are 2.1-3.7; the rescans and re-saves of these sets 1.2-1.4 (#19).
@pytest.mark.parametrize(
    ("seed", "a", "b"),
    [
        (1, "invoice006", "invoice011"),
        (1, "invoice001_q40", "invoice011"),
        (4, "invoice000_rescan", "invoice009"),
        (4, "invoice001_q40", "invoice010"),
        (5, "invoice001_q40", "invoice010"),
    ],
)
def test_scanned_invoices_a_date_apart_are_not_copies(tmp_path, seed, a, b):
    data = lookalikes.invoices(n=12, copies=2, seed=seed)
    images = data.images
    paths = {stem: tmp_path / f"{stem}.jpg" for stem in (a, b)}
    for stem, path in paths.items():  # as the set's files (JPEG 90), which an index holds
        images[stem].save(path, quality=90)
    assert Verifier(workers=1).verdict(str(paths[a]), str(paths[b])).copy is False
    assert same(images[a], images[b]) is False
    assert same(images[b], images[a]) is False


# Review of #19: a scan cropped 5% at its margins is a copy, in both orders. Aligned to a
# fraction of a pixel, the glyph windows near where the crop ends compared the blurred
# edge of the crop with the page going on in the other image: 1.63 -> 2.12 for this
# letter (a handwritten page 1.53 -> 2.67); windows within the blurs' reach of that edge
# are left out now (1.35-1.42).
def test_a_scan_cropped_at_its_margins_keeps_its_glyphs():
    page = lookalikes._letter(random.Random("rv-letter"))
    scan = lookalikes._scan(page, random.Random("scan:5"))
    w, h = scan.size
    crop = scan.crop((round(0.05 * w), round(0.05 * h), round(0.95 * w), round(0.95 * h)))
    assert same(page, crop) is True
    assert same(crop, page) is True


# ... and copies of a page keep meeting it, through edits its glyphs' comparison must
# see through (held out from its tuning, #19: at most 1.8 of the 2.0 allowed).
@pytest.mark.parametrize(
    "edit",
    ["q25", "60%", "75%q45", "sharpen", "binarize", "gamma", "contrast", "noise", "turn", "crop"],
)
def test_copies_of_an_invoice_keep_their_glyphs(edit):
    from PIL import ImageEnhance, ImageFilter

    page = lookalikes.invoice(name="Anna Bell", date="05/07/2023", qty=6)
    w, h = page.size
    grey = ImageOps.grayscale(page)
    rng = np.random.default_rng(7)
    copy = {
        "q25": lambda: lookalikes._jpeg(page, 25),
        "60%": lambda: page.resize((w * 3 // 5, h * 3 // 5), Image.Resampling.LANCZOS),
        "75%q45": lambda: lookalikes._jpeg(page.resize((w * 3 // 4, h * 3 // 4)), 45),
        "sharpen": lambda: page.filter(ImageFilter.UnsharpMask(1.5, 120, 2)),
        "binarize": lambda: grey.point(lambda v: 255 if v > 140 else 0).convert("RGB"),
        "gamma": lambda: Image.fromarray((255 * (np.asarray(page) / 255) ** 0.6).astype(np.uint8)),
        "contrast": lambda: ImageEnhance.Contrast(page).enhance(1.5),
        "noise": lambda: Image.fromarray(
            (np.asarray(page, np.float32) + rng.normal(0, 6, (h, w, 3)))
            .clip(0, 255)
            .astype(np.uint8)
        ),
        "turn": lambda: lookalikes._jpeg(
            page.rotate(1.5, Image.Resampling.BICUBIC, fillcolor=(255, 255, 255)), 70
        ),
        "crop": lambda: page.crop((w // 50, h // 50, w - w // 50, h - h // 50)),
    }[edit]()
    assert same(page, copy) is True


# #19: a colour graphic's flat fields passed for paper (the scikit-image logo's orange is
# grey 175, over the page's 170), so logos were "pages", and their glyphs' comparison
# turned down edited copies of one logo (make_corpus 300: 6 copy pairs lost). A page's paper
# is of one colour now (pages.one_paper): the logo is read as a picture again. Pages on
# one tint of paper stay pages (a bar on the paper's colour alone made forms on canary
# paper pictures, and distinct ones copies: review of #19).
def test_edited_copies_of_a_colour_logo_are_copies():
    from PIL import ImageEnhance, ImageFilter
    from skimage import data

    logo = Image.fromarray(data.logo()).convert("RGB")
    w, h = logo.size
    darker = ImageEnhance.Brightness(logo).enhance(0.76).rotate(-1.66)
    soft = logo.filter(ImageFilter.GaussianBlur(1.5)).crop(
        (w // 10, h // 10, w - w // 10, h - h // 10)
    )
    lighter = ImageEnhance.Brightness(logo).enhance(1.28).rotate(-5.98)
    assert same(darker, soft) is True
    assert same(darker, lighter) is True
    assert prepare(soft).page is None and prepare(soft).coloured  # laid out like a page
    # A page on cream, pink, canary or goldenrod paper is a page, and one character apart
    # from another on that paper, another page.
    for tint in ((255, 248, 225), (255, 200, 215), (255, 235, 150), (250, 210, 100)):
        shade = np.array(tint) / 255

        def on(page: Image.Image, shade: np.ndarray = shade) -> Image.Image:
            return Image.fromarray((np.asarray(page, np.float32) * shade).astype(np.uint8))

        assert prepare(on(lookalikes.invoice())).page is not None, tint
        assert same(on(lookalikes.invoice()), on(lookalikes.invoice(date="12/03/2025"))) is False


# Review of #19: ink on one page's blank paper - a staple hole in the corner, a speck of
# dust mid-page - made a copy another page once glyphs were compared (they differ there as
# much as a changed character). Only windows with ink in both pages are compared now; such
# marks are left to the page bar, which tolerates a few tiles. (A mark touching the text is
# still read as a change.)
@pytest.mark.parametrize("which", ["invoice", "form"])
def test_a_staple_hole_or_a_speck_of_dust_leaves_a_page_a_copy(which):
    from PIL import ImageDraw

    page = lookalikes.invoice() if which == "invoice" else lookalikes.form(3)
    w, h = page.size
    marked = page.copy()
    draw = ImageDraw.Draw(marked)
    draw.ellipse((26, 26, 34, 34), fill=(30, 30, 30))  # a staple hole
    draw.ellipse((w // 2 + 6, h // 2 + 12, w // 2 + 8, h // 2 + 14), fill=(30, 30, 30))  # dust
    assert same(page, marked) is True


# Second review of #19: a white invoice with a canary band behind half of it counted as
# "coloured" under a bar on the paper's colour alone (its paper's median was the band's),
# and was judged as a picture: another date or quantity made no difference. One paper with
# a tinted band is a page (pages.one_paper).
def test_a_page_with_a_tinted_band_is_still_read_as_a_page():
    def banded(page: Image.Image) -> Image.Image:
        arr = np.asarray(page, np.float32).copy()
        h = arr.shape[0]
        arr[h // 2 :] *= np.array((255, 235, 140)) / 255
        return Image.fromarray(arr.astype(np.uint8))

    page = banded(lookalikes.invoice())
    assert prepare(page).page is not None
    assert same(page, banded(lookalikes.invoice(date="12/03/2025"))) is False
    assert same(page, banded(lookalikes.invoice(qty=5))) is False
    assert same(page, lookalikes._jpeg(page, 60)) is True


# Review of #19: a page given to the second look as a Pillow image in LAB or La mode, or
# as an array of one grey channel (h, w, 1) or grey and alpha (h, w, 2), raised a
# ValueError in prepare(). Each is now read as its grey, a page like the RGB one.
@pytest.mark.parametrize("kind", ["LAB", "La", "hw1", "hw2"])
def test_a_page_in_another_mode_or_shape_is_read_as_its_grey(kind):
    page = lookalikes.invoice()
    grey = np.asarray(page.convert("L"))
    other = {
        "LAB": lambda: page.convert("LAB"),
        "La": lambda: page.convert("LA").convert("La"),
        "hw1": lambda: grey[..., None],
        "hw2": lambda: np.dstack([grey, np.full(grey.shape, 255, np.uint8)]),
    }[kind]()
    look = prepare(other)
    assert look.page is not None and not look.coloured
    assert compare_looks(prepare(page), look).copy is True


def _newsletter(change: str | None = None) -> Image.Image:
    """A dense page: two columns of 12-px print, 67 lines each, 52 characters a line."""
    words = (
        "the of and to in is that for it as with was on be by at this from or have an are "
        "which not but had his they you were their one all we can her has there been if more "
        "when will would who so no"
    )
    rng = random.Random("newsletter")
    page = Image.new("RGB", (800, 1100), "white")
    d = ImageDraw.Draw(page)
    title = lookalikes._font("DejaVuSans-Bold.ttf", 24)
    d.text((50, 40), "QUARTERLY NEWSLETTER  No. 42", font=title, fill=0)
    small = lookalikes._font("DejaVuSans.ttf", 12)
    for column, x in enumerate((40, 415)):
        for k in range(67):
            line: list[str] = []
            while len(" ".join(line)) < 52:
                line.append(rng.choice(words.split()))
            text = " ".join(line)[:52]
            if change and column == 1 and k == 30:
                text = change + text[len(change) :]
            d.text((x, 100 + 14 * k), text, font=small, fill=0)
    return page


# Review of #19: a dense page has too little blank paper left in the 8-px tiles of the
# usual 384-px comparison to pass for a page there, and was judged as a photo, where a
# changed amount is a caption's worth: two such newsletters, another amount in one line,
# were copies, clean or scanned. When both images are pages by :func:`prepare`'s own test,
# that comparison no longer asks for its share of blank paper (its ink on paper still
# counts): they are read closely now; a rescan stays a copy.
@pytest.mark.parametrize("how", ["clean", "scanned"])
def test_a_dense_page_with_another_amount_is_not_a_copy(how):
    page, other = _newsletter(), _newsletter("total 7,850")
    if how == "scanned":
        page = lookalikes._scan(page, random.Random(1))
        other = lookalikes._scan(other, random.Random(2))
    assert same(page, other) is False
    assert same(other, page) is False


def test_a_dense_page_rescanned_is_a_copy():
    page = _newsletter()
    scan = lookalikes._scan(page, random.Random(4))
    assert same(page, scan) is True
    assert same(scan, page) is True


# #19, seventh pass: a scan of an invoice one letter of the name apart ("Anna Ball")
# against the clean invoice was a copy in this order: its glyphs, confirmed on the page
# warped bilinear at the finest alignment, were blurred in bands where pixels fall
# between two, and the changed letter did not stand out. Warped bicubic there, it does.
# (In the other order, clean page first, these pairs are still copies: a known limit.)
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_scanned_invoice_one_letter_apart_is_not_a_copy(seed):
    page = lookalikes.invoice(name="Anna Bell", date="05/07/2023", qty=6)
    other = lookalikes.invoice(name="Anna Ball", date="05/07/2023", qty=6)
    scan = lookalikes._scan(other, random.Random(200 + seed))
    assert same(scan, page) is False


def test_a_photo_saved_many_times_among_bursts_of_look_alikes_keeps_its_copies():
    # (review of #19) A library of bursts - five look-alike shots, every pair a candidate
    # (0.92-0.985) - and one photo saved 40 times (its copies 0.93-0.995 to it, 0.92-0.99
    # to each other), under the run's budget (one turned-down pair per image). Ordered by
    # each image's nearest candidates first (tried, not kept), a group of 40 copies ranks
    # its pairs up to 39th, after every burst's, and most of its copies were passed over.
    # The verdicts are the truth here; what is tested is which pairs the budget lets be
    # looked at.
    rng = np.random.default_rng(0)
    bursts, size, m = 1200, 5, 40
    i, j, score, truth = [], [], [], []
    for b in range(bursts):
        for x, y in zip(*np.triu_indices(size, 1), strict=True):
            i.append(b * size + x), j.append(b * size + y)
            score.append(rng.uniform(0.92, 0.985)), truth.append(False)
    n = bursts * size
    group = [0, *range(n, n + m)]  # the first shot of a burst, and its 40 copies
    for x, y in zip(*np.triu_indices(m + 1, 1), strict=True):
        i.append(group[x]), j.append(group[y])
        score.append(rng.uniform(0.93, 0.995) if x == 0 else rng.uniform(0.92, 0.99))
        truth.append(True)
    n += m
    pairs = Pairs(np.array(i), np.array(j), np.array(score, dtype=np.float32))
    copy = {(a, b): t for a, b, t in zip(i, j, truth, strict=True)}

    class Truth(Verifier):
        def verdict(self, a, b):  # type: ignore[no-untyped-def]
            return Verdict(copy[(min(a, b), max(a, b))], how="orb")

    found = second_look(
        pairs, lambda p: p, node=np.arange(n), undecided_from=1.1,  # type: ignore[arg-type]
        verifier=Truth(load=lambda p: _flat_look(), workers=1), max_rejects=look_budget(n),
    )  # fmt: skip
    assert found.budget_spent
    kept = set(zip(found.pairs.i.tolist(), found.pairs.j.tolist(), strict=True))
    with_original = sum((0, c) in kept for c in group[1:])
    assert with_original >= m - 1, with_original


# ------------------------------------------------------------- dense pages (#19, ninth pass)
def _shared(im: Image.Image) -> Image.Image:
    """``im`` shared again: 60% of its size, JPEG 50 (lookalikes.sheets' copy)."""
    small = im.resize((im.width * 3 // 5, im.height * 3 // 5), Image.Resampling.LANCZOS)
    return lookalikes._jpeg(small, 50)


# Spreadsheets of one template hold a grid line or a figure in nearly every 8-px tile at
# the look's usual size (9-20% of them blank paper there, under the 25% a page needed),
# so they were judged as photos: two sheets with other figures in every cell agreed in
# 83-85% of their tiles and a shared copy of one was a copy of the other (12 sheets, 3
# shared and cropped: precision 0.05, claimed 1.00). A dense page is now asked again at
# its close size, where its cells are paper (pages.maybe_dense_page, dense_page).
# (Review of #19, helper-29: banded rows - at the comparison's 384 px no tile is blank
# paper, and two pages with no paper there were compared as photos: copies; a 2,560-px
# screenshot - no blank tile at 512 px either, and its paper's colour was asked there.)
# (Tenth pass: "fine", 16-px rows on 1,920 px - 1.3% of its tiles blank at 512 px, 5% at
# 1,024: no page at either size, and two of them were copies; pages.BLANK_LINES.)
@pytest.mark.parametrize("layout", ["sparse", "dense", "banded", "large", "fine"])
def test_spreadsheets_of_one_template_are_read_as_pages(layout):
    from lookalike.duplicates.verify import look_at_file

    one, other = lookalikes.sheet("t:1", layout), lookalikes.sheet("t:2", layout)
    shared = _shared(one)
    assert prepare(one).page is not None and prepare(shared).page is not None
    assert same(one, other) is False
    assert same(shared, other) is False
    assert same(one, lookalikes.sheet("t:1", layout, changed=37)) is False  # one figure
    if layout in ("banded", "large"):
        return  # its shared copy is not confirmed (BENCHMARKS, ninth pass): kept apart
    assert same(one, shared) is True
    w, h = one.size
    assert same(one, lookalikes._jpeg(one.crop((7, 4, w - 9, h - 5)), 80)) is True
    # Read from a file as the run reads it (a JPEG decoded at a reduced size first).
    buf = io.BytesIO()
    shared.save(buf, "JPEG", quality=95)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lookalike-sheet-{os.getpid()}.jpg")
    try:
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        found = look_at_file(path)
        assert found is not None and found.page is not None
    finally:
        os.unlink(path)


# A washed-out texture (grass, gravel: overexposed, under haze) is bright and inked all
# over like a dense sheet at its close size, with fewer blank tiles than a page needs; it
# has no blank pixel row, where a sheet's lines of text and rules leave 12-38% of them
# (pages.BLANK_LINES). Without that bar these seven became pages (tenth pass of #19).
@pytest.mark.parametrize(
    "name,how",
    [("grass", "exp2.0"), ("grass", "exp2.5"), ("grass", "gamma"), ("grass", "haze"),
     ("gravel", "exp2.0"), ("gravel", "gamma"), ("gravel", "haze")],
)  # fmt: skip
def test_a_washed_out_texture_is_not_a_dense_page(name, how):
    from lookalike.duplicates.pages import maybe_dense_page
    from lookalike.duplicates.verify import SIDE, _grey, _resize_to

    a = np.asarray(load_originals()[name].convert("RGB")).astype(np.float32)
    edited = {"exp2.0": a * 2.0, "exp2.5": a * 2.5, "gamma": 255 * (a / 255) ** 0.4,
              "haze": a * 0.35 + 160}[how]  # fmt: skip
    img = np.ascontiguousarray(np.clip(edited, 0, 255).astype(np.uint8))
    assert maybe_dense_page(_resize_to(_grey(img), SIDE))  # it is asked at its close size
    assert prepare(img).page is None


def test_photos_and_textures_are_not_taken_for_dense_pages(photos):
    # The dense-page test is asked only of images whose texture is all ink on paper at the
    # usual size: no sample photo (0.0-0.73 of their texture), no tile of the textures.
    from lookalike.duplicates.pages import maybe_dense_page
    from lookalike.duplicates.verify import SIDE, _grey, _resize_to

    for name, im in load_originals().items():
        grey = _resize_to(_grey(im), SIDE)
        assert not maybe_dense_page(grey), name
        assert prepare(im).page is None or name == "page", name
    for stem, im in lookalikes.tiles(per_texture=3, copies=1).images.items():
        assert prepare(im).page is None, stem


# A shared copy (60%, JPEG 50) is too soft to read one figure: it passes for a copy of
# both a sheet and the same sheet with one figure changed. Inferred through it, the two
# sheets were one group, though their own look, aligned to the pixel, had told them
# apart (glyphs 25 times the page's usual difference). What a close look saw is not
# overruled by a third image.
def test_a_third_too_soft_to_read_does_not_join_two_pages_told_apart(tmp_path):
    one = lookalikes.sheet("0:0", "sparse")
    files = {
        "one": one,
        "changed": lookalikes.sheet("0:0", "sparse", changed=37),
        "shared": _shared(one),
    }
    paths = []
    for name, im in files.items():
        paths.append(str(tmp_path / f"{name}.png"))
        im.save(paths[-1])
    verifier = Verifier(workers=1)
    told = verifier.verdict(paths[0], paths[1])
    assert told.copy is False and told.text_differs
    assert verifier.verdict(paths[0], paths[2]).copy is True
    assert verifier.verdict(paths[1], paths[2]).copy is True  # the soft third: both
    score = np.array([0.99, 0.98, 0.98], np.float32)
    pairs = Pairs(np.array([0, 0, 1]), np.array([1, 2, 2]), score)
    looked = second_look(
        pairs, lambda p: paths[p], node=np.arange(3), undecided_from=0.9, verifier=Verifier()
    )
    assert (0, 1) not in looked.verified and looked.inferred == 0
    assert {(0, 2), (1, 2)} <= looked.verified


# Review of #19 (ninth pass, helper-28): a copy of a sheet shared at a middle size (640
# px of a 1,600-px sheet, 480 of a 1,200-px one) was neither a page at 512 px nor at its
# own size (the grid's period landed a line in nearly every tile: 2-10% of them blank),
# so it was compared as a photo and was a copy of every sheet of the template (a whole
# run: precision 0.21, claimed 1.00). A page needs 10% of its tiles blank now, not 25%.
# (Second review of the ninth pass, helper-29: a thumbnail of a banded 2,560-px sheet at
# 360-800 px has no blank tile at 512 px nor at its own size, and a 1,920-px sheet with
# 16-px rows none to speak of at 1,024: both were photos, copies of every other sheet.
# Tenth pass: pages, pages.BLANK_LINES.)
@pytest.mark.parametrize(
    "layout,width",
    [("wide", 640), ("wide", 800), ("dense", 480), ("large", 480), ("large", 720),
     ("fine", 900), ("fine", 1280)],
)  # fmt: skip
def test_a_mid_size_copy_of_a_sheet_is_not_a_copy_of_another_sheet(layout, width):
    one, other = lookalikes.sheet("s:1", layout), lookalikes.sheet("s:2", layout)
    size = (width, round(one.height * width / one.width))
    thumb = lookalikes._jpeg(one.resize(size, Image.Resampling.LANCZOS), 75)
    assert same(thumb, other) is False
    assert same(thumb, lookalikes._jpeg(other.resize(size, Image.Resampling.LANCZOS), 75)) is False
    if width != 800:  # 13-px figures at half their size: its own sheet is not confirmed
        assert same(thumb, one) is True
