"""Scanning: which files are candidates, without opening any of them."""

from __future__ import annotations

import os
import socket

import pytest

from lookalike.errors import SourceUnavailableError
from lookalike.scan import scan


def names(result):
    return sorted(
        os.path.relpath(os.fsdecode(f.path), os.fsdecode(result.root)) for f in result.files
    )


def touch(p, data=b"x"):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def test_recursive_extensions_hidden_and_appledouble(tmp_path):
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "sub" / "b.PNG")
    touch(tmp_path / "notes.txt")
    touch(tmp_path / ".hidden.jpg")
    touch(tmp_path / "._a.jpg")
    touch(tmp_path / ".git" / "c.jpg")
    assert names(scan(tmp_path)) == ["a.jpg", "sub/b.PNG"]
    assert names(scan(tmp_path, include_hidden=True)) == [
        ".git/c.jpg",
        ".hidden.jpg",
        "a.jpg",
        "sub/b.PNG",
    ]


def test_directory_named_like_an_image_is_walked(tmp_path):
    touch(tmp_path / "photo.jpg" / "inner.jpg")
    assert names(scan(tmp_path)) == ["photo.jpg/inner.jpg"]


def test_fifo_and_socket_are_reported_never_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock.jpg"))
    try:
        r = scan(tmp_path)  # would hang if the FIFO were opened
    finally:
        s.close()
    assert r.files == []
    assert sorted(p.reason for p in r.problems) == ["not-a-regular-file"] * 2


def test_symlinks_not_followed_by_default_and_loops_end(tmp_path):
    touch(tmp_path / "real" / "a.jpg")
    outside = tmp_path.parent / (tmp_path.name + "_outside")
    touch(outside / "o.jpg")
    os.symlink(outside, tmp_path / "real" / "out")
    os.symlink(tmp_path / "real", tmp_path / "real" / "loop")
    os.symlink(tmp_path / "real" / "a.jpg", tmp_path / "real" / "link.jpg")
    assert names(scan(tmp_path / "real")) == ["a.jpg"]
    followed = names(scan(tmp_path / "real", follow_links=True))
    assert "a.jpg" in followed and "out/o.jpg" in followed and "link.jpg" in followed
    assert not any(n.startswith("loop/loop") for n in followed)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_directory_is_reported_and_walk_continues(tmp_path):
    touch(tmp_path / "ok" / "a.jpg")
    touch(tmp_path / "locked" / "b.jpg")
    os.chmod(tmp_path / "locked", 0)
    try:
        r = scan(tmp_path)
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    assert names(r) == ["ok/a.jpg"]
    assert [p.reason for p in r.problems] == ["unreadable-directory"]
    assert r.unseen == [os.fsencode(tmp_path / "locked")]


def test_non_utf8_and_unicode_names(tmp_path):
    touch(tmp_path / "été.jpg")
    raw = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with open(raw, "wb") as f:
        f.write(b"x")
    paths = sorted(f.path for f in scan(tmp_path).files)
    assert raw in paths and os.fsencode(tmp_path / "été.jpg") in paths


def test_very_deep_paths(tmp_path):
    d = tmp_path
    for i in range(60):
        d = d / f"level{i:02d}"
    touch(d / "deep.jpg")
    assert len(scan(tmp_path).files) == 1


def test_missing_or_non_folder_root_is_an_error(tmp_path):
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        scan(tmp_path / "nope")
    touch(tmp_path / "f.jpg")
    with pytest.raises(SourceUnavailableError, match="not a folder"):
        scan(tmp_path / "f.jpg")


def test_unreadable_directory_simulated(tmp_path, monkeypatch):
    """Same promise as above, for runs as root (CI): scandir raising PermissionError."""
    touch(tmp_path / "ok" / "a.jpg")
    touch(tmp_path / "locked" / "b.jpg")
    real = os.scandir
    locked = os.fsencode(tmp_path / "locked")

    def fake(path):
        if os.fsencode(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", fake)
    r = scan(tmp_path)
    assert names(r) == ["ok/a.jpg"]
    assert [(p.reason, p.path) for p in r.problems] == [("unreadable-directory", locked)]
    assert r.unseen == [locked]
