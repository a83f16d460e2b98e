"""What the CLI says, exactly (#20 items 12, 13, 15): no "removed 0 images" for a folder
that was never indexed, nested folders shown under their top folder, every option
explained, numbers with the right plural. In-process (click's runner): no model loads."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import make_photos

from lookalike import Index
from lookalike.cli import main


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def two_roots(tmp_path):
    """An index of photos/ (4), photos/sub (indexed on its own too, 1) and other/ (3)."""
    a = make_photos(tmp_path / "photos", 4)
    sub = make_photos(a / "sub", 1)
    b = make_photos(tmp_path / "other", 3)
    db = tmp_path / "x.db"
    paths = sorted(str(p) for d in (a, sub, b) for p in d.iterdir() if p.is_file())
    with Index.open(db) as idx:
        idx.add_embeddings(paths, np.random.default_rng(0).normal(size=(len(paths), 8)))
        idx._store.add_folders([str(a).encode(), str(sub).encode(), str(b).encode()])
    return db, a, sub, b


def test_remove_a_folder_that_is_not_indexed_is_an_error_naming_the_indexed_ones(
    two_roots, tmp_path
):
    db, a, _sub, b = two_roots
    r = cli("remove", str(tmp_path / "not-indexed"), "--db", str(db))
    assert r.exit_code == 1
    assert r.output.strip() == (
        f"lookalike: error: {tmp_path / 'not-indexed'} is not indexed (no image below it); "
        f"indexed folders: {b}, {a}"
    )
    with Index.open(db, create=False) as idx:
        assert idx.info()["images"] == 8  # nothing forgotten


def test_remove_says_how_many_with_the_right_plural(two_roots):
    db, a, sub, _b = two_roots
    r = cli("remove", str(sub), "--db", str(db))
    assert (r.exit_code, r.output.strip()) == (0, f"removed 1 image below {sub}")
    r = cli("remove", str(a), "--db", str(db))
    assert (r.exit_code, r.output.strip()) == (0, f"removed 4 images below {a}")


def test_remove_api_keeps_returning_zero_unless_asked(two_roots, tmp_path):
    from lookalike.errors import NotIndexedError

    db, *_ = two_roots
    with Index.open(db, create=False) as idx:
        assert idx.remove(tmp_path / "nothing") == 0
        with pytest.raises(NotIndexedError) as e:
            idx.remove(tmp_path / "nothing", missing_ok=False)
        assert len(e.value.folders) == 2


def test_info_shows_a_nested_folder_under_its_top_folder(two_roots):
    db, a, sub, b = two_roots
    r = cli("info", "--db", str(db))
    lines = r.output.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith("folders:"))
    assert lines[i : i + 3] == [
        f"folders:        {b}",
        f"                {a}",
        f"                  {sub} (inside {a}, also indexed on its own)",
    ]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--plot", "{tmp}/missing/dir/out.png"], "the folder {tmp}/missing/dir does not exist"),
        (["--plot", "{tmp}/out.txt"], "cannot write a .txt file; use one of: .png, "),
        (["--plot", "{tmp}"], "is a directory"),
    ],
)
def test_search_output_paths_are_checked_before_any_work(tmp_path, args, says):
    q = make_photos(tmp_path / "q", 1) / "p0000.jpg"
    args = [a.format(tmp=tmp_path) for a in args]
    r = CliRunner().invoke(main, ["search", str(q), "--db", str(tmp_path / "no.db"), *args])
    assert r.exit_code == 2, r.output
    assert "Invalid value for '--plot'" in r.output and says.format(tmp=tmp_path) in r.output
    assert "rank" not in r.output  # no table first
    assert not (tmp_path / "no.db").exists()


def test_search_plot_writes_the_format_its_extension_names(two_roots, tmp_path):
    db, a, _sub, _b = two_roots
    out = tmp_path / "grid.jpg"
    r = cli("search", str(a / "p0000.jpg"), "--db", str(db), "-k", "2", "--plot", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not a PNG named .jpg


@pytest.mark.parametrize("option", ["--csv", "--html"])
def test_duplicates_output_paths_are_checked_before_any_work(two_roots, tmp_path, option):
    db, *_ = two_roots
    r = CliRunner().invoke(
        main, ["duplicates", "--db", str(db), option, str(tmp_path / "nodir" / "out")]
    )
    assert r.exit_code == 2, r.output
    assert f"Invalid value for '{option}': the folder {tmp_path / 'nodir'} does not exist" in (
        r.output
    )


@pytest.mark.parametrize("command", ["search", "duplicates"])
def test_search_and_duplicates_with_a_folder_take_no_wait(two_roots, command):
    from lookalike.index.lock import update_lock

    db, a, _sub, _b = two_roots
    args = [str(a / "p0000.jpg"), str(a)] if command == "search" else [str(a)]
    with update_lock(db):  # "another run" holds the index
        r = cli(command, *args, "--db", str(db), "--no-wait")
    assert r.exit_code == 1, r.output
    assert "is updating the index" in r.output


def test_compiling_is_announced_only_when_no_compiled_copy_exists(
    tmp_path, tiny_weights, monkeypatch
):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "fresh-model-cache"))
    photos = make_photos(tmp_path / "photos", 3)
    seen = []
    for n in range(2):
        stages: list[str] = []
        with Index.open(
            tmp_path / f"{n}.db",
            model="test_resnet.r160_in1k",
            weights=tiny_weights,
            backend="torch",  # TorchScript: quicker to compile than OpenVINO
        ) as idx:
            idx.update(photos, on_stage=stages.append)
        seen.append(stages)
    assert seen == [
        ["loading-model", "compiling-model", "embedding"],
        ["loading-model", "embedding"],  # was "(first run compiles it once)" again
    ]
