"""The web UI in a real browser (issue 11): Playwright's Python package driving Debian's
chromium (``apt-get install chromium``; no browser download), against ``lookalike serve``
started as a user starts it, on real photos indexed by the real CLI."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
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


@contextlib.contextmanager
def recording_server():
    """Another HTTP service on 127.0.0.1 (any local dev server): it records the headers of
    every request it gets. Yields ``(base URL, list of header dicts)``."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = b"<!doctype html><title>other</title><p>another local server</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


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


PASTE = """([data, kind]) => {
    const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
    const init = {bubbles: true, cancelable: true};
    document.body.dispatchEvent(kind === "drop"
        ? new DragEvent("drop", {...init, dataTransfer: dt})
        : new ClipboardEvent("paste", {...init, clipboardData: dt}));
}"""


def test_drop_and_paste_query(page, served):
    page.goto(served["url"])
    page.wait_for_selector("#view .gallery [data-id]")
    data = base64.b64encode((served["photos"] / "coffee.png").read_bytes()).decode()
    script = PASTE
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
    # #20: each review tile shows its resolution and size, as --html does.
    facts = [f.text_content() for f in group.locator(".facts-line").all()]
    size = (served["photos"] / "chelsea.png").stat().st_size
    assert facts == [f"451x300, {size / 1024:.1f} KB"] * 2, facts
    # Move only this group's copy (uncheck the rest), confirming the dialog.
    kept_back = []
    for box in page.locator("input[data-move]").all():
        inside = group.locator(f"input[data-move='{box.get_attribute('data-move')}']").count()
        if not inside:
            box.uncheck()
            kept_back.append(box.get_attribute("data-move"))
    assert kept_back  # the coffee.png copy, in its own group
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
    # #20: the copies the user unticked are still unticked (they came back ticked, ready
    # to go with the next click on "Move").
    for move_id in kept_back:
        box = page.locator(f"input[data-move='{move_id}']")
        assert box.count() == 1 and not box.is_checked(), move_id


# ---------------------------------------------------------------- #20: access and the UI


def test_other_local_servers_get_nothing_of_the_access(page, served):
    """Cookies ignore ports: the token cookie went to every HTTP service on 127.0.0.1 (a
    local dev server received ``Cookie: lookalike_token_<port>=<token>`` and could use it
    here). Now the page keeps the token in its own origin's storage (an origin has a port):
    another local server gets no cookie and cannot read the token."""
    page.goto(served["url"])
    page.wait_for_selector("#view .gallery [data-id]")
    page.locator("#view .gallery a.hop").nth(1).click()
    wait_results(page)
    with recording_server() as (other, seen):
        page.goto(other + "/")  # the user visits another local server in the same browser
        page.wait_for_selector("p")
        assert page.evaluate("() => localStorage.getItem('lookalike-token')") is None
    assert seen and all("cookie" not in headers for headers in seen), seen
    token = served["url"].split("token=")[1]
    assert token not in json.dumps(seen)
    assert page.context.cookies() == []  # none for any port


def test_copy_link_carries_access_and_the_address_bar_alone_does_not(page, served, browser):
    """The README said "the URL is the state (share it)", but the address bar drops the
    token: the same URL in another browser got the 401 page. "Copy link" now gives the view
    with the token; the bare address bar URL says what is missing."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(served["url"])
    page.wait_for_selector("#view .gallery [data-id]")
    page.locator("#view .gallery a.hop").nth(4).click()
    wait_results(page)
    view_ids, bare = result_ids(page), page.url
    assert "token=" not in bare and "q=id" in bare
    page.click("#share")
    page.wait_for_selector("#share-link")
    link = page.locator("#share-link").input_value()
    token = served["url"].split("token=")[1]
    assert link.startswith(bare) and link.endswith(f"token={token}")
    assert page.evaluate("() => navigator.clipboard.readText()") == link
    assert "Link copied" in page.locator("#status").text_content()
    fresh = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        other = fresh.new_page()
        other.goto(link)  # another browser: no storage, no cookie
        wait_results(other)
        assert result_ids(other) == view_ids and "token=" not in other.url
        stranger = browser.new_context().new_page()
        stranger.goto(bare)
        stranger.wait_for_selector("#status.error")
        assert "needs its access token" in stranger.locator("#status").text_content()
        assert stranger.locator("#view [data-id]").count() == 0
        assert stranger.locator("#foot-images").text_content() == ""
        stranger.context.close()
    finally:
        fresh.close()


def test_a_hop_from_below_the_fold_shows_the_trail_below_the_header(browser, served, problems):
    context = browser.new_context(viewport={"width": 1280, "height": 560})
    page = context.new_page()
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    try:
        page.goto(served["url"])
        page.wait_for_selector("#view .gallery [data-id]")
        last = page.locator("#view .gallery a.hop").last
        last.scroll_into_view_if_needed()
        assert page.evaluate("() => window.scrollY") > 300  # the tile was below the fold
        last.click()
        wait_results(page)
        header = page.locator("header.bar").bounding_box()
        trail = page.locator("#trail").bounding_box()
        assert trail["y"] >= header["y"] + header["height"], (header, trail)
        assert trail["y"] + trail["height"] <= 560
    finally:
        context.close()
    assert problems == []


def test_an_upload_from_the_info_tab_leaves_no_tab_highlighted(page, served):
    """Click "Info", paste an image (the pointer still on the tab): the results came up
    with "Info" looking selected, since a hovered tab was drawn exactly as the selected one,
    and it kept the keyboard focus. Now only the selected tab has the selected look (a tab
    under the pointer only darkens its text) and a tab that no longer applies lets go of
    the focus."""
    page.goto(served["url"])
    page.wait_for_selector("#view .gallery [data-id]")
    page.click(".tabs a[data-view='info']")
    page.wait_for_selector(".facts")
    info = page.locator(".tabs a[data-view='info']")
    gallery = page.locator(".tabs a[data-view='gallery']")
    look = "a => [getComputedStyle(a).backgroundColor, getComputedStyle(a).boxShadow]"
    assert page.locator(".tabs a.active").get_attribute("data-view") == "info"
    selected = info.evaluate(look)
    data = base64.b64encode((served["photos"] / "astronaut.png").read_bytes()).decode()
    page.evaluate(PASTE, [data, "paste"])
    wait_results(page)
    assert info.evaluate("a => a.matches(':hover')")  # the pointer never left it
    assert page.locator(".tabs a.active").count() == 0
    assert info.evaluate(look) == gallery.evaluate(look) != selected
    assert page.evaluate("() => document.activeElement.closest('.tabs')") is None
