"""The web server against what a reviewer threw at it (#20): out-of-range and odd
parameters, uploads that crash or stall the decoder, ``--allowed-host`` with a port, and
what the browser's access leaves with other servers on 127.0.0.1."""

from __future__ import annotations

import shutil

import pytest
from fakes import PixelEmbedder, make_photos

from lookalike import Index

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from lookalike.web import create_app
from lookalike.web.security import Guard

TOKEN = "test-token-123"
BASE = "http://127.0.0.1:8765"
HUGE = "99999999999999999999"  # beyond 64 bits


@pytest.fixture
def index(tmp_path):
    photos = make_photos(tmp_path / "photos", 6)
    shutil.copy(photos / "p0003.jpg", photos / "twin_of_3.jpg")
    idx = Index.open(tmp_path / "web.db", embedder=PixelEmbedder(), workers=0)
    idx.update(photos)
    yield idx
    idx.close()


def client_for(index, guard=None, **kw):
    app = create_app(index, guard=guard or Guard(token=TOKEN), **kw)
    c = TestClient(app, base_url=BASE, raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    return c


@pytest.fixture
def client(index):
    return client_for(index)


# ------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/api/images?offset={HUGE}", 400),
        (f"/api/images?limit={HUGE}", 400),
        (f"/api/images?offset=-{HUGE}", 400),
        ("/api/images?offset=-1", 400),
        ("/api/images?offset=1e3", 400),
        (f"/api/images/{HUGE}", 404),
        ("/api/images/9223372036854775808", 404),  # 2**63: one past SQLite's integers
        ("/api/images/-1", 404),
        (f"/thumb/{HUGE}", 404),
        (f"/image/{HUGE}", 404),
        (f"/api/similar/{HUGE}", 404),
        ("/api/similar/-5", 404),
        (f"/api/similar/1?k={HUGE}", 400),
        ("/api/similar/1?k=-3", 400),
        ("/api/similar/1?folder=%00", 400),
        ("/api/similar/1?folder=/tmp%00/x", 400),
        ("/api/search?text=x&folder=%00", 400),
        (f"/api/search?upload={HUGE}&k={HUGE}", 400),
        ("/api/duplicates?threshold=nan", 400),
        ("/api/duplicates?threshold=1e999", 400),
        (f"/thumb/upload/{HUGE}", 404),
        ("/nowhere", 404),
        ("/static/nope.js", 404),
    ],
)
def test_bad_requests_are_4xx_with_one_line_of_json(client, path, status):
    """Before: 500 with a traceback for ids and offsets beyond 64 bits and NUL in a folder;
    Starlette's plain-text 404 for unknown routes."""
    r = client.get(path)
    assert r.status_code == status, (path, r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["error"] and body["error"] and "\n" not in body["error"]


def test_wrong_method_is_json_too(client):
    r = client.post("/api/images")
    assert r.status_code == 405 and list(r.json()) == ["error"]


# ------------------------------------------------------------------------- --allowed-host


def test_allowed_host_given_with_a_port_matches(index):
    """Before: ``--allowed-host photos.lan:8765`` was kept with its port, but the ``Host``
    header is compared without one: the name could never match."""
    from lookalike.web.server import ServeOptions, allowed_names

    names = allowed_names(ServeOptions(allowed_hosts=("Photos.LAN:8765", "[fd00::7]:8765")))
    assert {"photos.lan", "fd00::7"} <= names
    c = client_for(index, Guard(allowed_hosts=names, token=TOKEN))
    for host in ("photos.lan:8765", "photos.lan", "[fd00::7]:8765"):
        assert c.get("/api/info", headers={"Host": host}).status_code == 200, host
    assert c.get("/api/info", headers={"Host": "other.lan:8765"}).status_code == 403
