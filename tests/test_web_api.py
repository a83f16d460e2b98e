"""The web UI's HTTP side (issue 11): API shapes and every security case, through the real
ASGI app (Starlette's TestClient) over a real index with the torch-free pixel embedder."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from fakes import PixelEmbedder, make_photos, photo
from imagegen import png_header_only, truncated_jpeg, truncated_png

from lookalike import Index

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from lookalike.web import create_app
from lookalike.web.security import Guard

TOKEN = "test-token-123"
BASE = "http://127.0.0.1:8765"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
def photos(tmp_path):
    d = make_photos(tmp_path / "photos", 12)
    shutil.copy(d / "p0003.jpg", d / "twin_of_3.jpg")
    return d


@pytest.fixture
def index(tmp_path, photos):
    idx = Index.open(tmp_path / "web.db", embedder=PixelEmbedder(), workers=0)
    idx.update(photos)
    yield idx
    idx.close()


def client_for(index, *, token=TOKEN, cookie=True, **kw):
    """A client that authenticates as the page does (``Authorization: Bearer``);
    ``cookie=False``: without it (the name is kept from when the page used a cookie)."""
    guard = Guard(token=token, max_body_bytes=kw.pop("max_body_bytes", 20 * 1024 * 1024))
    app = create_app(index, guard=guard, **kw)
    c = TestClient(app, base_url=BASE)
    if token and cookie:
        c.headers["Authorization"] = f"Bearer {token}"
    return c


@pytest.fixture
def client(index):
    return client_for(index)


def ids_by_name(client):
    images = client.get("/api/images?limit=100").json()["images"]
    return {os.path.basename(i["path"]): i["id"] for i in images}


def assert_secure(response):
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)
    csp = response.headers.get("content-security-policy", "")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "access-control-allow-origin" not in response.headers


# ------------------------------------------------------------------------------ API shapes


def test_images_paging_shape(client):
    r = client.get("/api/images?offset=0&limit=5")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["total"] == 13 and len(body["images"]) == 5
    assert all({"id", "path"} <= set(i) for i in body["images"])
    rest = client.get("/api/images?offset=5&limit=100").json()["images"]
    all_ids = [i["id"] for i in body["images"] + rest]
    assert len(rest) == 8 and len(set(all_ids)) == 13
    assert client.get("/api/images?limit=abc").status_code == 400
    assert client.get("/api/images?offset=-1").status_code == 400


def test_similar_results_shape_and_ranking(client, photos):
    ids = ids_by_name(client)
    r = client.get(f"/api/similar/{ids['p0003.jpg']}?k=4")
    assert r.status_code == 200
    body = r.json()
    results = body["results"]
    assert [h["rank"] for h in results] == [1, 2, 3, 4]
    assert all({"rank", "score", "path", "id"} <= set(h) for h in results)
    # The identical copy comes first with score 1; the query is never its own result.
    assert results[0]["id"] == ids["twin_of_3.jpg"] and results[0]["score"] == pytest.approx(1.0)
    assert ids["p0003.jpg"] not in [h["id"] for h in results]
    scores = [h["score"] for h in results]
    assert scores == sorted(scores, reverse=True)
    assert body["query"]["id"] == ids["p0003.jpg"]
    # Engine agreement: the same ranking as Index.search on the file.
    assert client.get("/api/similar/999999").status_code == 404
    assert client.get(f"/api/similar/{ids['p0003.jpg']}?k=0").status_code == 400


def test_similar_folder_filter(tmp_path, index, client, photos):
    other = make_photos(tmp_path / "other", 3)
    index.update(other)
    ids = ids_by_name(client)
    r = client.get(f"/api/similar/{ids['p0001.jpg']}", params={"k": 10, "folder": str(other)})
    paths = [h["path"] for h in r.json()["results"]]
    assert len(paths) == 3 and all(p.startswith(str(other)) for p in paths)


def test_upload_search_and_reload_by_key(client, photos, index):
    data = (photos / "p0005.jpg").read_bytes()
    r = client.post("/api/search?k=3", files={"image": ("q.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    top = body["results"][0]
    assert top["path"] == str(photos / "p0005.jpg") and top["score"] == pytest.approx(1.0)
    assert len(body["results"]) == 3
    expected = [h.path for h in index.search(photos / "p0005.jpg", k=4)]
    assert [h["path"] for h in body["results"][1:]] == expected[:2]
    key = body["query"]["upload"]
    again = client.get(f"/api/search?upload={key}&k=3").json()
    assert again["results"] == body["results"]
    thumb = client.get(body["query"]["thumb"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert client.get("/api/search?upload=nope").status_code == 404


def test_text_search_refused_on_image_index(client):
    r = client.get("/api/search?text=a red bicycle")
    assert r.status_code == 400 and "not a CLIP index" in r.json()["error"]


def test_info_and_page(client, photos):
    info = client.get("/api/info").json()
    assert info["images"] == 13 and info["model"] == "fake-pixels"
    assert info["folders"] == [str(photos)] and info["failed"] == []
    assert info["clip"] is False
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-clip="false"' in page.text and 'id="text-form"' not in page.text
    assert '<script src="/static/app.js"' in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    # File names reach the page only through textContent / attributes, never innerHTML.
    assert "innerHTML" not in js.text and "insertAdjacentHTML" not in js.text


def test_thumbnails_cached_with_etag_and_immutable(client, tmp_path):
    image = client.get("/api/images?limit=1").json()["images"][0]
    url = image["thumb"]
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "immutable" in r.headers["cache-control"]
    from PIL import Image

    assert max(Image.open(io.BytesIO(r.content)).size) <= 256
    etag = r.headers["etag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    plain = client.get(f"/thumb/{image['id']}")
    assert "immutable" not in plain.headers["cache-control"] and plain.headers["etag"] == etag
    cached = list((tmp_path / "web.db.cache" / "thumbs").rglob("*.jpg"))
    assert len(cached) == 1


def test_image_served_as_its_bytes(client, photos):
    ids = ids_by_name(client)
    r = client.get(f"/image/{ids['p0002.jpg']}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == (photos / "p0002.jpg").read_bytes()
    assert_secure(r)


# ------------------------------------------------------------------------------ security


def test_security_headers_on_every_kind_of_response(index):
    c = client_for(index)
    ids = ids_by_name(c)
    responses = [
        c.get("/"),
        c.get("/api/info"),
        c.get(f"/thumb/{ids['p0001.jpg']}"),
        c.get("/static/app.css"),
        c.get("/image/424242"),
        c.get("/nowhere"),
        c.get("/api/info", headers={"Host": "evil.example"}),
        c.post("/api/search", files={"image": ("x", b"not an image")}),
    ]
    responses.append(client_for(index, cookie=False).get("/api/info"))
    for r in responses:
        assert_secure(r)
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 404, 404, 403, 422, 401]


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8765", 200),
        ("localhost:8765", 200),
        ("[::1]:8765", 200),
        ("evil.example", 403),
        ("evil.example:8765", 403),
        ("127.0.0.1.evil.example:8765", 403),
        ("", 403),
    ],
)
def test_host_header_checked_against_dns_rebinding(client, host, status):
    assert client.get("/api/info", headers={"Host": host}).status_code == status


def test_no_cors_header_even_for_cross_origin_reads(client):
    r = client.get("/api/info", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/api/search",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code >= 400 and "access-control-allow-origin" not in pre.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},  # another local server is another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://127.0.0.1:8765", "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_site_post_refused(client, photos, headers):
    data = (photos / "p0001.jpg").read_bytes()
    r = client.post("/api/search", files={"image": ("q.jpg", data)}, headers=headers)
    assert r.status_code == 403, r.text
    assert "error" in r.json()


def test_same_origin_post_accepted(client, photos):
    data = (photos / "p0001.jpg").read_bytes()
    headers = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    r = client.post("/api/search", files={"image": ("q.jpg", data)}, headers=headers)
    assert r.status_code == 200


def test_access_token(index):
    c = client_for(index, cookie=False)
    assert c.get("/api/info").status_code == 401
    assert c.get("/thumb/1").status_code == 401
    assert c.get("/image/1").status_code == 401
    assert c.get("/api/info?token=wrong").status_code == 401
    assert c.get("/?token=wrong").status_code == 401  # a stale link: the page says so
    assert c.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    r = c.get(f"/?token={TOKEN}")
    assert r.status_code == 200 and 'data-total="13"' in r.text
    assert "set-cookie" not in r.headers  # #20: no cookie, ever (other ports would get it)
    # The page and its files load without the token (a reload), showing nothing of the
    # index; everything it then asks for needs the token.
    shell = c.get("/")
    assert shell.status_code == 200 and 'data-total=""' in shell.text
    assert "13 images" not in shell.text and "fake-pixels" not in shell.text
    assert c.get("/static/app.js").status_code == 200
    assert c.get("/api/images").status_code == 401
    # Scripts: ?token= on every request, POST included.
    fresh = client_for(index, cookie=False)
    r = fresh.post(f"/api/search?token={TOKEN}", files={"image": ("x", b"junk")})
    assert r.status_code == 422
    # The cookie an older lookalike set, still in a browser: worth nothing, and expired.
    old = client_for(index, cookie=False)
    old.cookies.set("lookalike_token_8765", TOKEN)
    r = old.get("/api/info")
    assert r.status_code == 401
    assert r.headers["set-cookie"].startswith("lookalike_token_8765=;")
    assert "Max-Age=0" in r.headers["set-cookie"]


@pytest.mark.parametrize(
    "path",
    [
        "/image/../../etc/passwd",
        "/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/image//etc/passwd",
        "/image/-1",
        "/image/1.5",
        "/image/999999",
        "/thumb/..%2fweb.db",
        "/thumb/999999",
        "/static/../web.db",
        "/static/%2e%2e/app.py",
    ],
)
def test_files_only_by_id(client, path):
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)


def test_path_parameters_are_ignored(client, photos):
    ids = ids_by_name(client)
    r = client.get(f"/image/{ids['p0001.jpg']}?path=/etc/passwd&file=/etc/passwd")
    assert r.content == (photos / "p0001.jpg").read_bytes()


def test_symlink_out_of_indexed_folders_is_not_served(tmp_path, index, client, photos):
    outside = photo(tmp_path / "private" / "secret.png", 99)
    ids = ids_by_name(client)
    target = photos / "p0004.jpg"
    target.unlink()
    os.symlink(outside, target)  # swapped for a link after indexing
    assert client.get(f"/image/{ids['p0004.jpg']}").status_code == 404
    assert client.get(f"/thumb/{ids['p0004.jpg']}").status_code == 404
    # A link that stays inside an indexed folder is fine.
    (photos / "p0006.jpg").unlink()
    os.symlink(photos / "p0007.jpg", photos / "p0006.jpg")
    assert client.get(f"/image/{ids['p0006.jpg']}").status_code == 200


def test_non_regular_file_is_not_opened(index, client, photos):
    ids = ids_by_name(client)
    target = photos / "p0008.jpg"
    target.unlink()
    os.mkfifo(target)  # would block forever if opened
    assert client.get(f"/image/{ids['p0008.jpg']}").status_code == 404
    assert client.get(f"/thumb/{ids['p0008.jpg']}").status_code == 404


def _call(app, method, path, headers, chunks):
    """Run one request straight through the ASGI app; returns (status, body, chunks read)."""
    read = 0
    sent = []

    async def receive():
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": True}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": f"token={TOKEN}".encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": ("127.0.0.1", 8765),
        "client": ("127.0.0.1", 50000),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, read


def test_upload_over_limit_is_413_before_the_body_is_read(index):
    limit = 1024 * 1024
    app = create_app(index, guard=Guard(token=TOKEN, max_body_bytes=limit))
    chunk = b"\0" * 65536
    headers = {
        "host": "127.0.0.1:8765",
        "content-type": "multipart/form-data; boundary=x",
        "content-length": str(100 * limit),
    }
    status, body, read = _call(app, "POST", "/api/search", headers, [chunk] * 2000)
    assert status == 413 and "limit" in json.loads(body)["error"]
    assert read == 0  # answered on the declared length alone
    # No Content-Length (chunked): counted while streaming, cut off at the limit.
    del headers["content-length"]
    status, body, read = _call(app, "POST", "/api/search", headers, [chunk] * 2000)
    assert status == 413
    assert read <= limit // len(chunk) + 2  # stopped reading right after the limit


def test_upload_limit_through_http_client(index, photos):
    c = client_for(index, max_body_bytes=200_000)
    big = os.urandom(300_000)
    r = c.post("/api/search", files={"image": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and "limit" in r.json()["error"]


def bad_uploads(tmp_path):
    from imagegen import svg_file

    folder = tmp_path / "bad"
    folder.mkdir()
    return {
        "empty": b"",
        "text": b"hello, I am not an image",
        "truncated_jpeg": truncated_jpeg(folder).read_bytes(),
        "truncated_png": truncated_png(folder).read_bytes(),
        "bomb_header": png_header_only(30000, 30000),
        "bomb_over_upload_limit": png_header_only(9000, 9000),  # under the index's limit
        "svg": svg_file(folder).read_bytes(),
        "html": b"<html><script>alert(1)</script></html>",
        "url": b"http://127.0.0.1:1/x.jpg",
    }


def test_broken_uploads_are_4xx_with_a_message_never_500(tmp_path, client):
    for name, data in bad_uploads(tmp_path).items():
        r = client.post("/api/search", files={"image": ("q.jpg", data, "image/jpeg")})
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        assert r.json()["error"], name
        if name.startswith("bomb"):
            assert r.status_code == 413, name
    assert client.post("/api/search", files={"other": ("q.jpg", b"x")}).status_code == 400
    assert client.post("/api/search", json={"image": "x"}).status_code == 415
    r = client.post(
        "/api/search",
        content=b"--x\r\nbroken",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert 400 <= r.status_code < 500
    assert client.get("/api/search").status_code == 400


def test_uploads_never_written_to_disk(tmp_path, client, photos, monkeypatch):
    import tempfile

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    before = sorted(p.name for p in photos.rglob("*"))
    img = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")  # > 1 MB: Starlette's parser would spool it
    assert len(buf.getvalue()) > 1024 * 1024
    r = client.post("/api/search", files={"image": ("big.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200
    assert sorted(p.name for p in photos.rglob("*")) == before
    assert list(spool.iterdir()) == []


def test_client_urls_are_never_fetched(client):
    hits = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    url = f"http://127.0.0.1:{port}/photo.jpg"

    def accept():
        try:
            conn, _ = listener.accept()
            hits.append(conn)
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    responses = [
        client.post("/api/search", files={"image": ("q.jpg", url.encode())}),
        client.post(f"/api/search?url={url}", files={"image": ("q.jpg", b"x")}),
        client.post("/api/search", data={"image": url}),
        client.get(f"/api/search?url={url}"),
        client.get(f"/api/search?upload={url}"),
    ]
    t.join()
    listener.close()
    assert hits == []
    assert all(400 <= r.status_code < 500 for r in responses), [r.status_code for r in responses]


def test_file_names_stay_text(tmp_path, client, index):
    odd = tmp_path / "odd"
    photo(odd / '<img src=x onerror="alert(1)">.png', 5)
    index.update(odd)
    r = client.get("/api/images?limit=100")
    assert r.headers["content-type"] == "application/json"
    assert any("<img src=x" in i["path"] for i in r.json()["images"])
    page = client.get("/")
    assert "<img src=x" not in page.text


def test_reads_while_another_handle_writes(tmp_path, index, client):
    """Promise 7: search works while an index run writes (here: another Index on the DB)."""
    ids = ids_by_name(client)
    errors = []

    def write():
        with Index.open(tmp_path / "web.db", embedder=PixelEmbedder(), workers=0) as other:
            rng = np.random.default_rng(0)
            for i in range(20):
                vec = rng.standard_normal((5, 768)).astype(np.float32)
                other.add_embeddings([f"/nowhere/w{i}_{j}.jpg" for j in range(5)], vec)

    t = threading.Thread(target=write)
    t.start()
    while t.is_alive():
        r = client.get(f"/api/similar/{ids['p0003.jpg']}?k=3")
        if r.status_code != 200 or r.json()["results"][0]["id"] != ids["twin_of_3.jpg"]:
            errors.append(r.text)
    t.join()
    assert errors == []
    assert client.get("/api/images?limit=1").json()["total"] == 113


# ------------------------------------------------------------------------------ duplicates


def test_duplicates_listed_with_ids(client):
    ids = ids_by_name(client)
    body = client.get("/api/duplicates?threshold=0.99").json()
    assert body["threshold"] == pytest.approx(0.99)
    groups = [
        g for g in body["groups"] if any(m["id"] == ids["twin_of_3.jpg"] for m in g["members"])
    ]
    assert len(groups) == 1
    members = {m["id"] for m in groups[0]["members"]}
    assert members == {ids["p0003.jpg"], ids["twin_of_3.jpg"]}
    assert groups[0]["members"][0]["keep"] is True and groups[0]["members"][0]["score"] == 1.0
    assert client.get("/api/duplicates?threshold=2").status_code == 400
    assert client.get("/api/duplicates?threshold=abc").status_code == 400


def test_moves_refused_without_the_flag(client):
    ids = ids_by_name(client)
    body = {"ids": [ids["twin_of_3.jpg"]], "threshold": 0.99, "confirm": True}
    r = client.post("/api/duplicates/move", json=body)
    assert r.status_code == 403
    assert client.get("/api/info").json()["allow_moves"] is False


def test_moves_into_the_trash_with_undo_manifest(tmp_path, index, photos):
    c = client_for(index, allow_moves=True)
    ids = ids_by_name(c)
    group = c.get("/api/duplicates?threshold=0.99").json()["groups"][0]
    kept = next(m for m in group["members"] if m["keep"])
    moving = [m for m in group["members"] if not m["keep"]]
    body = {"ids": [m["id"] for m in moving], "threshold": 0.99}
    assert c.post("/api/duplicates/move", json=body).status_code == 400  # no confirmation
    cross = c.post(
        "/api/duplicates/move",
        json={**body, "confirm": True},
        headers={"Origin": "http://x.example"},
    )
    assert cross.status_code == 403
    not_dup = {"ids": [ids["p0001.jpg"]], "threshold": 0.99, "confirm": True}
    assert c.post("/api/duplicates/move", json=not_dup).status_code == 400
    before = set(os.listdir(photos))
    r = c.post("/api/duplicates/move", json={**body, "confirm": True})
    assert r.status_code == 200, r.text
    report = r.json()
    trash = tmp_path / "web.db.trash"
    assert report["trash"] == str(trash) and len(report["moved"]) == len(moving)
    for move in report["moved"]:
        assert move["to"].startswith(str(trash) + os.sep) and os.path.exists(move["to"])
        assert not os.path.exists(move["from"])
    assert os.path.exists(kept["path"])
    with open(report["manifest"], encoding="utf-8") as f:
        manifest = json.load(f)
    assert {m["from"] for m in manifest["moves"]} == {m["path"] for m in moving}
    assert set(os.listdir(photos)) == before - {os.path.basename(m["path"]) for m in moving}
    remaining = {os.path.basename(i["path"]) for i in c.get("/api/images").json()["images"]}
    assert not remaining & {os.path.basename(m["path"]) for m in moving}


# ------------------------------------------------------------------------------ the command


def _serve(env, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "lookalike", "serve", "--port", "0", "--no-open", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serve_prints_url_first_and_stops_cleanly_on_ctrl_c(tmp_path):
    db = tmp_path / "cli.db"
    with Index.open(db) as idx:  # no model needed: vectors brought by hand
        idx.add_embeddings([f"/nowhere/{i}.jpg" for i in range(5)], np.eye(5, 8, dtype=np.float32))
    env = dict(os.environ, LOOKALIKE_DB=str(db))
    proc = _serve(env)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "?token=" in url
        port = int(url.split(":")[2].split("/")[0])
        assert port > 0
        with urllib.request.urlopen(url.replace("/?", "/api/images?"), timeout=10) as r:
            assert json.load(r)["total"] == 5
        bare = url.split("?")[0] + "api/info"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bare, timeout=10)
        assert e.value.code == 401
    finally:
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        _, err = proc.communicate(timeout=20)
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err


def test_serve_other_host_needs_a_flag_and_warns(tmp_path):
    env = dict(os.environ, LOOKALIKE_DB=str(tmp_path / "x.db"))
    p = subprocess.run(
        [sys.executable, "-m", "lookalike", "serve", "--host", "0.0.0.0", "--no-open"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "--allow-remote" in p.stderr
    proc = _serve(env, "--host", "0.0.0.0", "--allow-remote")
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://")
        deadline = time.time() + 10
        err_head = ""
        while "warning" not in err_head and time.time() < deadline:
            err_head += proc.stderr.readline()
        assert "warning" in err_head
    finally:
        proc.send_signal(2)
        proc.communicate(timeout=20)


# ------------------------------------------------------------------------------ small parts


def test_hit_id_is_additive():
    from lookalike import Hit

    hit = Hit(1, 0.5, "/a.jpg", 7)
    assert hit.id == 7 and Hit(1, 0.5, "/a.jpg").id is None
    assert hit.to_dict() == {"rank": 1, "score": 0.5, "path": "/a.jpg"}  # the CLI's JSON
    assert hit == Hit(1, 0.5, "/a.jpg")


def test_missing_web_packages_name_the_extra(monkeypatch):
    import importlib.util

    from lookalike.errors import MissingDependencyError
    from lookalike.web import require_web

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name)
    )
    with pytest.raises(MissingDependencyError, match=r"lookalike\[web\]"):
        require_web()


@pytest.mark.slow  # builds and compiles a CLIP model (~10 s on an idle machine)
def test_text_search_on_a_clip_index(tmp_path, monkeypatch, smooth_pixels):
    """A tiny random CLIP (open_clip config, as in test_clip.py): text box and text API."""
    pytest.importorskip("open_clip")
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from lookalike.embed.clip.embedder import build_model

    cfg = {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    }
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "web-tiny-clip.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("LOOKALIKE_CLIP_CONFIGS", str(configs))
    with torch.random.fork_rng():
        torch.manual_seed(11)
        model = build_model(cfg)
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    folder = tmp_path / "clip-photos"
    folder.mkdir()
    for i, px in enumerate(smooth_pixels(6, (72, 96), seed=4)):
        Image.fromarray(px).save(folder / f"c{i}.png")
    with Index.open(
        tmp_path / "clip.db",
        model="clip:web-tiny-clip",
        weights=weights,
        workers=0,
        backend="torch",
    ) as idx:
        idx.update(folder)
        c = client_for(idx)
        assert 'id="text-form"' in c.get("/").text
        assert c.get("/api/info").json()["clip"] is True
        r = c.get("/api/search", params={"text": "a red <bicycle>", "k": 3})
        assert r.status_code == 200, r.text
        expected = [(h.path, round(h.score, 6)) for h in idx.search_text("a red <bicycle>", k=3)]
        assert [(h["path"], h["score"]) for h in r.json()["results"]] == expected
        assert r.json()["query"] == {"text": "a red <bicycle>"}
        assert c.get("/api/search?text=%20").status_code == 400
