"""The web UI in a real browser (issue 11): Playwright's Python package driving Debian's
chromium (``apt-get install chromium``; no browser download), against ``lookalike serve``
started as a user starts it, on real photos indexed by the real CLI."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import start_server, stop_server

CHROMIUM = "/usr/bin/chromium"
TINY = "test_resnet.r160_in1k"
ODD_NAME = "<img src=x onerror=alert(1)> & 'quoted'.png"

pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"BROWSER TESTS SKIPPED: {CHROMIUM} is missing (apt-get install chromium; CI installs it)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_photo_dir, tiny_weights):
    """An index of real photos (plus an exact copy and an odd file name), served."""
    root = tmp_path_factory.mktemp("web")
    photos = root / "photos"
    shutil.copytree(sample_photo_dir, photos)
    shutil.copy(photos / "chelsea.png", photos / "chelsea copy.png")
    shutil.copy(photos / "coffee.png", photos / ODD_NAME)
    env = dict(
        os.environ,
        LOOKALIKE_DB=str(root / "web.db"),
        LOOKALIKE_MODEL=TINY,
        LOOKALIKE_WEIGHTS=str(tiny_weights),
        # The session's compiled-model cache (conftest): built once for the whole run.
        LOOKALIKE_CACHE=str(tmp_path_factory.getbasetemp() / "lookalike-cache"),
        HF_HUB_OFFLINE="1",
    )
    subprocess.run(
        [sys.executable, "-m", "lookalike", "index", str(photos), "--workers", "0"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    proc, url = start_server(["--allow-moves"], env)
    yield {"url": url, "root": root, "photos": photos, "count": 23}
    returncode, err = stop_server(proc)
    assert returncode in (0, 130) and "Traceback" not in err, err


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def problems():
    """Script errors, CSP violations and failed loads the page logged (a test may expect some)."""
    return []


@pytest.fixture
def page(browser, served, problems):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" else None,
    )
    yield pg
    context.close()
    assert problems == [], problems  # no script error, no CSP violation


def at(served, query):
    """The printed URL (with its token: each test has a fresh browser) plus ``query``."""
    return f"{served['url']}&{query}"


def snap(page, name):
    """A full-page screenshot into $LOOKALIKE_SCREENSHOT_DIR, when set (to look at the UI)."""
    folder = os.environ.get("LOOKALIKE_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def result_ids(page):
    tiles = page.locator("#view .results [data-rank]")
    return [int(t.get_attribute("data-id")) for t in tiles.all()]


def wait_results(page, n=10):
    page.wait_for_function(
        "n => document.querySelectorAll('#view .results [data-rank]').length === n", arg=n
    )


def test_upload_hop_back_forward_reload(page, served, tmp_path):
    page.goto(served["url"])
    page.wait_for_selector("#view .gallery [data-id]")
    assert page.locator("#view .gallery [data-id]").count() == served["count"]
    assert "token=" not in page.url  # the cookie carries it from here on
    page.wait_for_function("() => [...document.images].slice(0, 6).every(i => i.complete)")
    snap(page, "gallery")
    # Lazy thumbnails with their size.
    img = page.locator("#view .gallery img").first
    assert img.get_attribute("loading") == "lazy" and img.get_attribute("width") == "256"

    # A file name full of markup is shown as text.
    name = page.locator(".name", has_text="<img src=x")
    assert name.count() == 1 and name.locator("img").count() == 0
    assert name.text_content() == ODD_NAME

    # Upload an indexed photo: 10 tiles with rank and score, its own file first at 1.0.
    page.set_input_files("#file", str(served["photos"] / "astronaut.png"))
    wait_results(page)
    tiles = page.locator("#view .results [data-rank]")
    ranks = [int(t.get_attribute("data-rank")) for t in tiles.all()]
    scores = [float(t.get_attribute("data-score")) for t in tiles.all()]
    assert ranks == list(range(1, 11))
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1.0, abs=1e-4)
    assert tiles.first.locator(".name").text_content() == "astronaut.png"
    assert tiles.nth(3).locator(".score").text_content() == f"{scores[3]:.3f}"
    upload_url, upload_ids = page.url, result_ids(page)
    assert "q=upload" in upload_url

    # Click a tile: its neighbours, never itself; the trail shows both hops.
    clicked = upload_ids[2]
    tiles.nth(2).locator("a.hop").click()
    page.wait_for_function(
        "id => document.querySelector('#query') && !document.querySelector('#query').hidden "
        "&& location.search.includes('id%3A' + id)",
        arg=clicked,
    )
    wait_results(page)
    hop_ids = result_ids(page)
    assert clicked not in hop_ids and len(hop_ids) == 10
    assert page.locator("#trail .crumb").count() == 3  # gallery, upload, clicked image
    hop_url = page.url

    page.go_back()
    page.wait_for_function("u => location.href === u", arg=upload_url)
    wait_results(page)
    assert result_ids(page) == upload_ids

    page.go_forward()
    page.wait_for_function("u => location.href === u", arg=hop_url)
    wait_results(page)
    assert result_ids(page) == hop_ids

    page.reload()  # the state is in the URL
    wait_results(page)
    assert result_ids(page) == hop_ids and page.locator("#trail .crumb").count() == 3
    snap(page, "results")

    # A shared URL opens the same view in a fresh tab (same browser: the cookie).
    other = page.context.new_page()
    other.goto(hop_url)
    wait_results(other)
    assert result_ids(other) == hop_ids
    other.close()


def test_drop_and_paste_query(page, served):
    page.goto(served["url"])
    page.wait_for_selector("#view .gallery [data-id]")
    data = base64.b64encode((served["photos"] / "coffee.png").read_bytes()).decode()
    script = """([data, kind]) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        const init = {bubbles: true, cancelable: true};
        document.body.dispatchEvent(kind === "drop"
            ? new DragEvent("drop", {...init, dataTransfer: dt})
            : new ClipboardEvent("paste", {...init, clipboardData: dt}));
    }"""
    for kind in ("drop", "paste"):
        page.goto(at(served, "view=gallery"))
        page.wait_for_selector("#view .gallery [data-id]")
        page.evaluate(script, [data, kind])
        wait_results(page)
        first = page.locator("#view .results [data-rank]").first
        assert first.locator(".name").text_content() in ("coffee.png", ODD_NAME), kind
        assert float(first.get_attribute("data-score")) == pytest.approx(1.0, abs=1e-4)


def test_broken_upload_shows_a_message(page, served, tmp_path, problems):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    page.goto(served["url"])
    page.wait_for_selector("#view .gallery [data-id]")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error")
    assert "cannot read" in page.locator("#status").text_content()
    assert problems == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    ]
    problems.clear()


def test_info_view(page, served):
    page.goto(at(served, "view=info"))
    page.wait_for_selector(".facts")
    text = page.locator("#view").text_content()
    snap(page, "info")
    assert TINY.split(".")[0] in text and str(served["photos"]) in text
    assert page.locator("#text-form").count() == 0  # not a CLIP index: no text box


def test_duplicate_review_and_move(page, served):
    page.goto(at(served, "view=duplicates&threshold=0.999"))
    page.wait_for_selector(".group")
    group = page.locator(".group", has=page.locator(".name", has_text="chelsea copy.png"))
    assert group.count() == 1
    kept = group.locator(".tile.keep")
    assert kept.count() == 1 and kept.get_attribute("data-score") is not None
    names = {n.text_content() for n in group.locator(".name").all()}
    snap(page, "duplicates")
    assert names == {"chelsea.png", "chelsea copy.png"}
    # Move only this group's copy (uncheck the rest), confirming the dialog.
    for box in page.locator("input[data-move]").all():
        inside = group.locator(f"input[data-move='{box.get_attribute('data-move')}']").count()
        if not inside:
            box.uncheck()
    page.once("dialog", lambda d: d.accept())
    page.click("#move")
    page.wait_for_selector("#status.ok")
    assert "Moved 1 file" in page.locator("#status").text_content()
    trash = served["root"] / "web.db.trash"
    moved = [p for p in trash.rglob("*.png")]
    assert len(moved) == 1
    assert len(list(trash.glob("lookalike-undo-*.json"))) == 1
    remaining = [n for n in ("chelsea.png", "chelsea copy.png") if (served["photos"] / n).exists()]
    assert len(remaining) == 1 and moved[0].name not in remaining
    # The page shows the group gone at this threshold.
    assert page.locator(".group", has=page.locator(".name", has_text="chelsea")).count() == 0
