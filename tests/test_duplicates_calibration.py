"""Calibrating the duplicate threshold (#9): the threshold choice on known scores, the
in-memory edits, and a real calibration with the trained EfficientNet-Lite0 on real photos."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
from PIL import Image

from lookalike import Index
from lookalike.duplicates import EDITS, choose_threshold
from lookalike.duplicates.calibrate import (
    CHEAP_LOOKS,
    FLOOR,
    Sample,
    choose_verified,
    copy_pairs_per_image,
)
from lookalike.duplicates.edits import COMPOUND, compound_copies, edited_copies
from lookalike.duplicates.types import Calibration
from lookalike.present import info_lines

LITE0 = "tf_efficientnet_lite0.in1k"


def sample(pos, neg, sib=()):
    names = [f"e{i}" for i in range(len(pos))]
    return Sample(dict(zip(names, pos, strict=True)), np.asarray(neg, float), np.asarray(sib))


def test_threshold_separates_copies_from_distinct_images():
    # Copies score 0.8-0.95, distinct images at most 0.6: every copy found, all precise.
    rng = np.random.default_rng(0)
    samples = [sample(rng.uniform(0.8, 0.95, 7), rng.uniform(0.1, 0.6, 64)) for _ in range(40)]
    t, precision, recall = choose_threshold(samples, 0.95)
    assert 0.6 <= t <= 0.81  # in the gap, as high as one point of recall allows
    assert precision == 1.0 and recall >= 0.99


def precision_at(samples, t):
    """The documented estimate, computed independently: copy pairs found per sample
    (``m`` pairs per image, at least one) vs half the distinct neighbours (those below the
    sample's weakest copy) at or above ``t``."""
    found = sum(np.mean(np.fromiter(s.positives.values(), float) >= t) for s in samples)
    false, existing = 0.0, 0
    for s in samples:
        weakest = (
            min(min(s.positives.values()), *s.siblings)
            if len(s.siblings)
            else min(s.positives.values())
        )
        false += np.sum((s.negatives >= t) & (s.negatives < weakest)) / 2
        existing += np.sum(s.negatives >= weakest)
    m = max(1.0, existing / len(samples) / 2)
    return m * found / (m * found + false), found / len(samples)


def test_threshold_rises_until_the_target_precision_holds():
    # Half the samples have distinct neighbours up to 0.84 (just below their copies,
    # 0.85-1.0); the others' copies reach down to 0.5. The threshold must rise until the
    # first half's distinct neighbours are outnumbered 19 to 1 by copies found.
    rng = np.random.default_rng(1)
    samples = []
    for k in range(200):
        if k % 2:
            samples.append(sample(rng.uniform(0.85, 1.0, 7), rng.uniform(0.4, 0.84, 8)))
        else:
            samples.append(sample(rng.uniform(0.5, 1.0, 7), rng.uniform(0.0, 0.3, 8)))
    t, precision, recall = choose_threshold(samples, 0.95)
    assert 0.6 < t <= 0.85
    expected, expected_recall = precision_at(samples, t)
    assert precision == pytest.approx(expected, abs=1e-6) and expected >= 0.95
    assert recall == pytest.approx(expected_recall, abs=1e-6)
    # No threshold reaching the target finds more than one point more of the copies.
    grid = np.arange(0.5, 1.0, 0.005)
    ok = [precision_at(samples, g)[0] >= 0.95 for g in grid]
    reaching = [g for i, g in enumerate(grid) if all(ok[i:])]
    assert max(precision_at(samples, g)[1] for g in reaching) <= recall + 0.01 + 1e-9
    stricter, _, stricter_recall = choose_threshold(samples, 0.99)
    assert stricter > t and stricter_recall < recall


def test_existing_copies_are_not_counted_as_distinct_images():
    # Each sample already has two copies in the collection (scored like its edits): a
    # calibration that took them for distinct images would push the threshold up to ~1.
    rng = np.random.default_rng(2)
    samples = []
    for _ in range(60):
        pos = rng.uniform(0.75, 0.98, 7)
        existing = rng.choice(pos, 2)
        samples.append(sample(pos, np.r_[existing, rng.uniform(0.0, 0.5, 62)]))
    t, _precision, recall = choose_threshold(samples, 0.95)
    # Counted as distinct, the copies would cap precision near 0.5 at every threshold
    # below 0.99 (recall ~0); taken for copies, nearly every edited copy is found.
    assert t <= 0.76 and recall >= 0.99


def test_the_margin_is_counted_on_copies_two_edits_apart_too():
    # No distinct image anywhere near: the lowest threshold reaching the target is the
    # weakest edited copy's score (0.5, one copy of one sample). The other edited copies
    # score 0.9-1.0, so raising the threshold to ~0.9 would cost them under a point of
    # recall; copies two edits apart spread over 0.5-0.95 and lose a point within a few
    # thousandths of the start: the margin stops there.
    rng = np.random.default_rng(4)
    samples = []
    for k in range(60):
        pos = rng.uniform(0.9, 1.0, 7)
        if k == 0:
            pos[0] = 0.5
        samples.append(sample(pos, rng.uniform(0.0, 0.3, 20), rng.uniform(0.5, 0.95, 21)))
    t, precision, _ = choose_threshold(samples, 0.95)
    copies = [np.r_[list(s.positives.values()), s.siblings] for s in samples]
    reach = lambda g: np.mean([np.mean(c >= g) for c in copies])  # noqa: E731
    assert precision == 1.0 and 0.5 <= t < 0.6
    assert reach(t) >= reach(0.5) - 0.01 - 1e-9
    assert reach(t + 0.001) < reach(0.5) - 0.01 or t == 0.5


def test_a_collection_full_of_copies_gets_the_lower_threshold_its_copies_allow():
    # As above: half the samples meet distinct images up to 0.84, just below their copies.
    # When every sample also has 6 existing copies in the collection (3 copy pairs per
    # image), copies outnumber those distinct images 19 to 1 at a lower threshold than
    # when the collection shows none (one pair per image assumed).
    def make(existing):
        rng = np.random.default_rng(1)
        out = []
        for k in range(200):
            if k % 2:
                pos, neg = rng.uniform(0.85, 1.0, 7), rng.uniform(0.4, 0.84, 8)
            else:
                pos, neg = rng.uniform(0.5, 1.0, 7), rng.uniform(0.0, 0.3, 8)
            copies = rng.uniform(pos.min(), 1.0, existing)
            out.append(sample(pos, np.r_[copies, neg]))
        return out

    few, many = make(0), make(6)
    t_few, _, _ = choose_threshold(few, 0.95)
    t_many, p_many, _ = choose_threshold(many, 0.95)
    assert t_many <= t_few - 0.01
    assert p_many == pytest.approx(precision_at(many, t_many)[0], abs=1e-6)
    assert p_many >= 0.95
    assert copy_pairs_per_image(0, 60) == 1.0 and copy_pairs_per_image(360, 60) == 3.0


def lookalike_samples(n=60, seed=6):
    """Letters of one layout: each sample's edited copies score 0.85-0.95, and its 12
    nearest indexed images - other letters, distinct - score 0.95-0.99, above them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = sample(rng.uniform(0.85, 0.95, 7), np.sort(rng.uniform(0.95, 0.99, 12))[::-1])
        s.confirmed = dict.fromkeys(s.positives, True)
        s.labels = np.zeros(12, dtype=np.int8)  # the second look: all look-alikes
        s.uncertain = np.zeros(12, dtype=bool)
        out.append(s)
    return out


def test_look_alikes_labelled_by_the_second_look_count_as_distinct_images():
    samples = lookalike_samples()
    # The second look's labels: look-alikes are distinct images, so no cosine threshold
    # below them is precise: the cosine-only threshold climbs above every look-alike.
    t, precision, _ = choose_threshold(samples, 0.95)
    assert t >= 0.99 and precision >= 0.95
    # The rule before #19 (no labels) took them for existing copies, as close as the
    # samples' weakest copies: it claimed full precision at a threshold that groups them.
    for s in samples:
        s.labels = None
    t_old, precision_old, _ = choose_threshold(samples, 0.95)
    assert t_old < 0.95 and precision_old == 1.0


def test_with_the_second_look_the_threshold_only_proposes_pairs():
    samples = lookalike_samples()
    # Every look-alike will be looked at and turned down: the threshold stays as low as
    # the copies need, and no look-alike is counted as an error.
    t, precision, recall = choose_verified(samples, 0.95)
    assert t <= 0.85 and precision == 1.0 and recall == 1.0
    # A neighbour the second look called a copy, but only just, counts as half an error:
    # 30 such pairs met from one end each, among 60 samples' copies with m = 30/60/2 copy
    # pairs per image (the labels' count).
    for s in samples[:30]:
        s.negatives[-1], s.labels[-1], s.uncertain[-1] = 0.9, 1, True
    t, unsure, _ = choose_verified(samples, 0.5)
    true = 30 / 60 / 2 * 60
    assert t <= 0.9 and unsure == pytest.approx(true / (true + 30 / 4), abs=0.02)
    # In a large collection, the threshold rises until the look-alikes to look at stay
    # within the budget: one pair per image, i.e. two neighbours (each pair has two ends).
    many = lookalike_samples()
    t_big, _, _ = choose_verified(many, 0.95, images=1_000_000)
    above = np.mean([np.sum(s.negatives >= t_big) for s in many])
    assert t_big > t and 1.5 <= above <= 2.0


def test_while_the_looks_are_cheap_the_threshold_goes_below_the_edits_copies():
    # A photo collection: the calibration's own edits all score 0.6-0.95 (its recall
    # margin would stop near 0.6), but people's copies can score lower (a watermark across
    # the picture, #19), and below the threshold no pair is looked at. Each sample's 12
    # nearest images are distinct photos from 0.2 to 0.55.
    rng = np.random.default_rng(3)
    samples = []
    for _ in range(60):
        s = sample(rng.uniform(0.6, 0.95, 7), np.sort(rng.uniform(0.2, 0.55, 12))[::-1])
        s.confirmed = dict.fromkeys(s.positives, True)
        s.labels = np.zeros(12, dtype=np.int8)
        s.uncertain = np.zeros(12, dtype=bool)
        samples.append(s)
    t_plain, _, _ = choose_verified(samples, 0.95)  # no collection size: no cost bound
    assert t_plain >= 0.59
    # 200 images: down to where about 500 looks at distinct pairs are expected (each pair
    # met from both ends), not lower.
    t, precision, recall = choose_verified(samples, 0.95, images=200)
    looks = 200 * np.mean([np.sum(s.negatives >= t) for s in samples]) / 2
    assert t < t_plain - 0.1 and 450 <= looks <= 500 and precision == 1.0 and recall == 1.0
    # A collection of 100,000: 1% of the images, 1,000 looks, higher.
    t_big, _, _ = choose_verified(samples, 0.95, images=100_000)
    looks = 100_000 * np.mean([np.sum(s.negatives >= t_big) for s in samples]) / 2
    assert t_big > t and looks <= 1000
    # Letters of one layout: every neighbour a look-alike above the copies: looks are
    # not cheap, the threshold stays where the copies need it.
    letters = lookalike_samples()
    assert choose_verified(letters, 0.95, images=200)[0] == choose_verified(letters, 0.95)[0]


def test_compound_copies_apply_two_edits_each():
    noise = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    im = Image.fromarray(noise)
    twice = compound_copies(im, random.Random(0))
    assert [name for name, _ in twice] == [f"{a}+{b}" for a, b in COMPOUND]
    rng = random.Random(0)  # the same draws, edit by edit: the second edit of the first
    for (a, b), (name, c) in zip(COMPOUND, twice, strict=True):
        first = EDITS[a](im, rng)
        second = EDITS[b](first, rng)
        assert c.mode == "RGB" and min(c.size) >= 16, name
        assert np.array_equal(np.asarray(c), np.asarray(second)), name
        changed = c.size != first.size or np.abs(np.asarray(c, int) - np.asarray(first, int))
        assert changed is True or changed.mean() > 0.5, f"{name}: second edit changed nothing"


def test_a_calibration_recorded_before_two_edit_recall_still_reads():
    old = {
        "threshold": 0.8,
        "precision": 0.95,
        "recall": 0.9,
        "target_precision": 0.95,
        "images": 60,
        "copies": 420,
        "setup": "abc",
    }
    cal = Calibration.from_dict(old)
    assert cal.recall_two_edits is None
    assert cal.sentence() == (
        "0.80: 95% precision on edited copies of your images, recall 0.90 (60 images, 420 copies)"
    )
    again = Calibration.from_dict(dict(old, recall_two_edits=0.85))
    assert Calibration.from_dict(again.to_dict()) == again
    assert "recall 0.90, 0.85 two edits apart (60 images" in again.sentence()


def test_every_edit_changes_the_image_and_keeps_it_usable():
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    im = Image.fromarray(noise)  # fine detail: a resize or a JPEG visibly loses it
    copies = edited_copies(im, random.Random(0))
    assert [name for name, _ in copies] == list(EDITS)
    assert set(EDITS) >= {"crop", "resize", "jpeg", "colour", "flip", "rotate", "text"}
    base = np.asarray(im)
    for name, c in copies:
        assert c.mode == "RGB" and min(c.size) >= 16, name
        arr = np.asarray(c.resize(im.size))
        assert np.abs(arr.astype(int) - base).mean() > 0.5, f"{name} changed nothing"


@pytest.mark.slow
def test_calibration_with_a_trained_model_on_real_photos(tmp_path, lite0_weights, sample_photo_dir):
    photos = tmp_path / "photos"
    shutil.copytree(sample_photo_dir, photos)
    # Two real copies among the real photos: a re-saved, shrunk one and a cropped one.
    Image.open(photos / "chelsea.png").resize((225, 150)).save(
        photos / "chelsea_small.jpg", quality=60
    )
    coffee = Image.open(photos / "coffee.png")
    w, h = coffee.size
    coffee.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(photos / "coffee_crop.png")
    db = tmp_path / "i.db"
    with Index.open(db, model=LITE0, weights=lite0_weights) as idx:
        idx.update(photos)
        assert idx.duplicate_calibration() is None
        report = idx.duplicate_report(keep="resolution")  # calibrates on first use
        cal = report.calibration
        assert cal is not None and report.threshold_source == "calibrated"
        assert report.threshold == cal.threshold
        # 23 images make 253 pairs, fewer than the looks always spent (CHEAP_LOOKS): every
        # pair from the lowest cosine worth a look is looked at.
        assert CHEAP_LOOKS > 23 * 22 / 2 and cal.threshold == FLOOR
        assert cal.threshold_unverified is not None and 0.3 < cal.threshold_unverified < 0.99
        assert cal.precision >= 0.95 and cal.recall >= 0.5
        assert cal.images == 23 and cal.copies == 23 * len(EDITS)
        sentence = cal.sentence()
        assert sentence.startswith(f"{cal.threshold:.2f}: ")
        assert "precision on edited copies of your images, recall" in sentence
        # Copies two edits apart (how a collection's copies of one photo relate) are
        # reported too, and each twice-edited kind has its recall.
        assert cal.recall_two_edits is not None and 0.0 < cal.recall_two_edits <= 1.0
        assert f", {cal.recall_two_edits:.2f} two edits apart, with a second look" in sentence
        assert f"(measured on 23 images, {cal.copies} copies, and their" in sentence
        assert {f"{a}+{b}" for a, b in COMPOUND} | set(EDITS) == set(cal.per_edit)
        groups = {frozenset(m.path.rsplit("/", 1)[1] for m in g.members) for g in report.groups}
        assert frozenset({"chelsea.png", "chelsea_small.jpg"}) in groups
        assert frozenset({"coffee.png", "coffee_crop.png"}) in groups
        assert len(groups) == 2  # no two distinct photos grouped
        kept = {g.keep.rsplit("/", 1)[1] for g in report.groups}
        assert kept == {"chelsea.png", "coffee.png"}  # the larger files are kept
        info = idx.info()
    assert info["duplicate_threshold"]["threshold"] == cal.threshold
    assert any(line.startswith("duplicates:") and sentence in line for line in info_lines(info))
    # Recorded in the index: a later open uses it without calibrating again.
    with Index.open(db) as idx:
        assert idx.duplicate_calibration() == cal
        assert idx.duplicate_report().threshold == cal.threshold


def _claimed_is_measured(tmp_path, weights, kind, seed=0):
    """Index a set of ``tests/lookalikes.py`` (forms or invoices of one template, a few
    rescanned), search with the defaults, and assert the calibration's claimed precision
    is within 5 points of the measured one; returns ``(true pairs, pairs found)``."""
    import lookalikes

    data = {"forms": lambda: lookalikes.forms(n=16, copies=2, seed=seed),
            "invoices": lambda: lookalikes.invoices(n=12, copies=2, seed=seed),
            "sheets": lambda: lookalikes.sheets(n=10, copies=3, layout="dense", seed=seed),
            "sheets-fine": lambda: lookalikes.sheets(n=8, copies=3, layout="fine", seed=seed),
            }[kind]()  # fmt: skip
    stem_of = {str(p): stem for stem, p in data.write(tmp_path / kind).items()}
    truth = data.true_pairs()
    with Index.open(tmp_path / "i.db", model=LITE0, weights=weights) as idx:
        idx.update(tmp_path / kind)
        report = idx.duplicate_report()
    cal = report.calibration
    assert cal is not None
    found = {
        frozenset((stem_of[str(a.path)], stem_of[str(b.path)]))
        for g in report.groups
        for i, a in enumerate(g.members)
        for b in g.members[i + 1 :]
    }
    measured = len(found & truth) / len(found) if found else 1.0
    assert abs(cal.precision - measured) <= 0.05, (cal.precision, measured, len(found))
    return truth, found


# Review of #19: on forms of one template filled in differently (a few fields each), the
# second look labelled most of the calibration's neighbours copies, and the precision,
# which trusts those labels, claimed 1.00; measured with a 48-form set: 0.01 (all 48 forms
# in one group). Claimed and measured must stay within 5 points (#19's target), and the
# forms' real copies (rescans, re-saves) are still grouped.
def test_calibration_on_forms_of_one_template_claims_what_it_measures(tmp_path, lite0_weights):
    truth, found = _claimed_is_measured(tmp_path, lite0_weights, "forms")
    assert len(found & truth) >= len(truth) // 2, (found, truth)


# Review of #19: invoices of one template with their own customer, date and quantity are
# different documents, but at the second look's resolution their text barely differed
# (0-0.7% of textured tiles, under the 2% page bar): with 30 of them, all 38 files fell
# into one group, pair precision 0.017 while the calibration claimed 1.00. Pages are now
# compared close (pages.py), and two pages that meet that bar have their glyphs compared
# (pages.glyph_outlier): a date three digits apart is told apart now (seed 0: claimed 1.00,
# measured 0.67 before, 1.00 now, all 6 copies found). Seed 1 claimed 1.00 where 0.46 was
# measured: two scans of invoices three date digits apart, and a rescan re-saved small
# (JPEG 40, 480 px) against another invoice, were left a few pixels apart by an alignment
# refined at half their size, and their glyphs differed by less than a copy's may; refined
# again at the close size, to confirm a pair whose glyphs pass, they do not (seeds 1 and
# 3: 1.00 measured now, 0.46 and 0.67 before). Seed 2 still claims 1.00 where 0.67 is
# measured: its re-save against an invoice with another date and quantity measures
# 1.82-1.93 once aligned, under the 2.0 bar. (Every page warped bicubic made it distinct,
# by a stricter comparison at the half-size alignment, which also lost exact 90-degree
# turns of pages: not kept, #19, seventh pass. Counting a page copy with any unmatched
# ink as a close call made seed 0 pass by raising the threshold over every copy: 1 of 6
# found, 0 of 12 photocopied forms, review of #19: removed.)
@pytest.mark.parametrize(
    "seed",
    [
        0,
        1,
        2,
    ],
)
def test_calibration_on_invoices_of_one_template_claims_what_it_measures(
    tmp_path, lite0_weights, seed
):
    truth, found = _claimed_is_measured(tmp_path, lite0_weights, "invoices", seed)
    assert truth <= found, truth - found  # and every copy found


# Ninth pass of #19: screenshots of spreadsheets of one template, other figures in every
# cell, were judged as photos (a grid line or a figure in nearly every tile at the look's
# size): all of them one group, precision 0.05 where 1.00 was claimed. Read as pages now.
def test_calibration_on_spreadsheets_of_one_template_claims_what_it_measures(
    tmp_path, lite0_weights
):
    truth, found = _claimed_is_measured(tmp_path, lite0_weights, "sheets")
    assert found <= truth, found - truth  # no two sheets grouped
    # Most copies found: a crop of a sheet by a few pixels is not always confirmed (the
    # grid's period misleads its alignment: 0.7% of its inked tiles stay unmatched, read
    # apart), and then not joined through its shared copy either.
    assert len(found & truth) >= 2 * len(truth) // 3, truth - found


# Tenth pass of #19 (review of the ninth): 1,920-px sheets with 16-px rows hold a line or
# a figure in nearly every tile at 512 px and at 1,024 (1.3% and 5% of them blank), so
# they were judged as photos again: precision 0.11 where 1.00 was claimed. Pages now
# (pages.BLANK_LINES); every copy is found.
def test_calibration_on_fine_spreadsheets_claims_what_it_measures(tmp_path, lite0_weights):
    truth, found = _claimed_is_measured(tmp_path, lite0_weights, "sheets-fine")
    assert found == truth, (found - truth, truth - found)
