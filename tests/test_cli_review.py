"""Outside review of #20's CLI (items 8, 10, 12): output paths that passed the checks and
then failed with a traceback (a name ending in '/', a FIFO, a full disk), `remove` of an
indexed image called "not indexed", and a --db below a file told to use --create-dirs."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import make_photos

from lookalike import Index
from lookalike.cli import main


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def indexed(tmp_path):
    a = make_photos(tmp_path / "photos", 3)
    db = tmp_path / "x.db"
    paths = sorted(str(p) for p in a.iterdir())
    with Index.open(db) as idx:
        idx.add_embeddings(paths, np.random.default_rng(0).normal(size=(len(paths), 8)))
        idx._store.add_folders([str(a).encode()])
    return db, a


def _search(db, a, *more: str):
    return cli("search", str(a / "p0000.jpg"), "--db", str(db), "-k", "2", *more)


def _duplicates(db, *more: str):
    return cli("duplicates", "--db", str(db), "--threshold", "0.95", *more)


@pytest.mark.parametrize("option", ["--plot", "--csv", "--html"])
def test_an_output_name_ending_in_a_slash_is_a_usage_error(indexed, tmp_path, option):
    db, a = indexed
    out = f"{tmp_path}/out.png/"
    r = _search(db, a, option, out) if option == "--plot" else _duplicates(db, option, out)
    assert r.exit_code == 2, r.output  # before: IsADirectoryError traceback, after the table
    assert f"Invalid value for '{option}': {out} ends with '/'" in r.output


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("option", ["--plot", "--csv", "--html"])
def test_an_output_that_cannot_be_written_is_one_line(indexed, option):
    db, a = indexed
    runner = CliRunner()
    args = ["--db", str(db), option, "/dev/full"]
    cmd = ["search", str(a / "p0000.jpg"), "-k", "2"] if option == "--plot" else ["duplicates"]
    r = runner.invoke(main, cmd + args)
    assert r.exit_code == 1, r.output  # before: an OSError traceback
    assert f"lookalike: error: cannot write /dev/full ({option}): No space left" in r.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_plot_into_a_fifo_writes_the_picture(indexed, tmp_path):
    db, a = indexed
    fifo = tmp_path / "grid.png"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = _search(db, a, "--plot", str(fifo))
    reader.join(30)
    assert r.exit_code == 0, r.output  # before: io.UnsupportedOperation traceback
    assert got and got[0][:8] == b"\x89PNG\r\n\x1a\n"


def test_remove_of_an_indexed_image_forgets_it(indexed):
    db, a = indexed
    r = cli("remove", str(a / "p0001.jpg"), "--db", str(db))
    assert (r.exit_code, r.output.strip()) == (0, f"removed 1 image: {a / 'p0001.jpg'}")
    with Index.open(db, create=False) as idx:
        assert idx.info()["images"] == 2
    r = CliRunner().invoke(main, ["remove", str(a / "p0001.jpg"), "--db", str(db)])
    assert r.exit_code == 1 and "is not indexed" in r.output  # now it is not


@pytest.mark.parametrize("create_dirs", [[], ["--create-dirs"]])
def test_a_db_below_a_file_says_so(tmp_path, create_dirs):
    (tmp_path / "afile").write_text("mine")
    photos = make_photos(tmp_path / "photos", 1)
    db = tmp_path / "afile" / "sub" / "x.db"
    r = CliRunner().invoke(main, ["index", str(photos), "--db", str(db), *create_dirs])
    assert r.exit_code == 2, r.output
    assert f"{tmp_path / 'afile'} is a file, not a folder" in r.output
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("image_id", [2**63, 10**20, -(2**64)])
def test_an_id_beyond_64_bits_is_no_image(indexed, image_id):
    from lookalike.errors import QueryError

    db, _a = indexed
    with Index.open(db, create=False) as idx:
        with pytest.raises(QueryError, match="no image with id"):  # was OverflowError
            idx.similar_to_id(image_id, k=3)
        assert idx.image_path(image_id) is None


def test_a_folder_name_with_a_newline_or_escape_stays_one_printable_line(tmp_path):
    """A folder named with a newline broke `info`'s folder list into two lines, and an ESC
    in a name went to the terminal as is (#20, review): names are shown with ``\\xNN``."""
    from fakes import PixelEmbedder

    from lookalike.errors import NotIndexedError
    from lookalike.present import info_lines

    folder = make_photos(tmp_path / "a\nb\x1b[31mred", 2)
    db = tmp_path / "x.db"
    with Index.open(db, embedder=PixelEmbedder(), workers=0) as idx:
        idx.update(folder)
        lines = info_lines(idx.info())
        with pytest.raises(NotIndexedError) as err:
            idx.remove(tmp_path / "no\nthere", missing_ok=False)
    folder_lines = [ln for ln in lines if "a\\x0ab" in ln]
    assert len(folder_lines) == 1 and "\\x1b[31mred" in folder_lines[0]
    assert not any("\x1b" in ln or "\n" in ln for ln in lines)
    assert "\n" not in str(err.value) and "no\\x0athere" in str(err.value)
