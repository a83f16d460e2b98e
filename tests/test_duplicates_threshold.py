"""One duplicate threshold, one source, stated as used (#20 item 13, 15): the header says
the threshold actually used and where it came from; the CLI, the web review (which never
calibrates itself) and the API get it from :meth:`Index.duplicate_threshold`; a bad
``--keep`` is a usage error; the summary counts with the right plurals and the time
includes a calibration made on the way."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner
from fakes import PixelEmbedder, make_photos

from lookalike import Index
from lookalike.cli import main
from lookalike.duplicates.report import report_lines
from lookalike.duplicates.types import Calibration, DuplicateReport


@pytest.fixture
def pixel_index(tmp_path):
    folder = make_photos(tmp_path / "photos", 12)
    db = tmp_path / "x.db"
    with Index.open(db, embedder=PixelEmbedder(), workers=0) as idx:
        idx.update(folder)
    return db


def test_calibrated_once_then_the_same_threshold_for_every_caller(pixel_index):
    with Index.open(pixel_index, embedder=PixelEmbedder(), workers=0) as idx:
        before = idx.duplicate_threshold(calibrate=False)
        assert (before.source, before.threshold) == ("default", 0.90)
        start = time.perf_counter()
        report = idx.duplicate_report()  # the CLI's call: calibrates on first use
        took = time.perf_counter() - start
        assert report.threshold_source == "calibrated"
        assert report.seconds >= 0.9 * took  # the calibration is counted (was: search only)
        # What the web review asks (never calibrating itself) now finds the same one.
        web = idx.duplicate_report(calibrate=False)
        assert (web.threshold, web.threshold_source) == (report.threshold, "calibrated")
        choice = idx.duplicate_threshold(calibrate=False)
        assert choice.threshold == report.threshold
        assert choice.sentence() == report_lines(report)[0]
        assert choice.sentence().startswith(f"threshold {report.threshold:.2f}: ")


def _cal(threshold: float) -> Calibration:
    return Calibration(
        threshold=threshold,
        precision=1.0,
        recall=0.9,
        target_precision=0.95,
        images=60,
        copies=480,
        negatives=60,
        setup="x",
    )


def test_a_given_threshold_is_the_one_the_header_states():
    report = DuplicateReport(0.93, 1, 0.2, [], threshold_source="given", calibration=_cal(0.54))
    assert report_lines(report)[:2] == [
        "threshold 0.93 (given; calibrated for this model: 0.54)",
        "no duplicates among 1 image in 0.2 s",
    ]
    report = DuplicateReport(0.93, 3, 1.0, [], threshold_source="given")
    assert report_lines(report)[0] == "threshold 0.93 (given)"
    report = DuplicateReport(0.9, 3, 1.0, [], threshold_source="default")
    assert report_lines(report)[0] == "threshold 0.90 (default; not calibrated for this model)"
    report = DuplicateReport(
        0.54, 3, 1.0, [], threshold_source="calibrated", calibration=_cal(0.54)
    )
    assert report_lines(report)[0] == f"threshold {_cal(0.54).sentence()}"


def test_the_summary_counts_duplicates_and_kept_files_with_plurals(pixel_index):
    with Index.open(pixel_index, embedder=PixelEmbedder(), workers=0) as idx:
        # Cosine alone (#19): at 0.001 every image is a candidate, and these distinct
        # generated photos would not pass the second look.
        report = idx.duplicate_report(threshold=0.001, calibrate=False, verify=False)
    n = len(report.groups)
    assert n >= 1
    dups = sum(len(g.members) - 1 for g in report.groups)
    line = report_lines(report)[1]
    assert line.startswith(
        f"{n} group{'s' if n != 1 else ''}: {dups} duplicate{'s' if dups != 1 else ''} of "
        f"{n} kept file{'s' if n != 1 else ''}, among 12 images in "
    )
    assert "copies" not in line  # the calibration's word for the edits it makes


def test_an_unknown_keep_rule_is_a_usage_error(pixel_index):
    r = CliRunner().invoke(main, ["duplicates", "--db", str(pixel_index), "--keep", "biggest"])
    assert r.exit_code == 2
    assert "Invalid value for '--keep': unknown keep criterion 'biggest'" in r.output


def test_the_web_review_uses_the_clis_threshold_on_an_uncalibrated_index(pixel_index):
    """The web review on a never-calibrated index calibrated nothing and showed 0.90
    "(default)" while the CLI calibrated: one index, two sets of groups (#20 item 13)."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from lookalike.web import create_app
    from lookalike.web.security import Guard

    with Index.open(pixel_index, embedder=PixelEmbedder(), workers=0) as idx:
        app = create_app(idx, guard=Guard(token="t", max_body_bytes=1 << 20))
        client = TestClient(app, base_url="http://127.0.0.1:8765")
        client.headers["Authorization"] = "Bearer t"
        web = client.get("/api/duplicates").json()
        cli = idx.duplicate_report()
    assert web["threshold_source"] == "calibrated"
    assert web["threshold"] == cli.threshold
