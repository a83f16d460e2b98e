"""A failed first run removes the index it made, but never one another run is using, nor
a user's symlink (#20 review). Before: a run that failed while a second run was indexing
the same new database deleted it under that run, whose images then went to a file
nobody could see; a --db naming a dangling symlink lost the symlink."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from fakes import make_photos

from lookalike import Index
from lookalike.errors import StoreError
from lookalike.index.lock import lock_path, update_lock


def test_a_failed_first_run_keeps_an_index_another_run_is_updating(tmp_path):
    db = tmp_path / "x.db"
    first = Index.open(db)  # makes the index
    second = Index.open(db)  # another run on the same, new index
    with update_lock(db):  # ... which is updating it (no batch committed yet)
        with pytest.raises(KeyboardInterrupt), first:
            raise KeyboardInterrupt  # the first run is stopped
        assert db.exists()
        second.add_embeddings([str(tmp_path / "a.jpg")], np.ones((1, 4), np.float32))
    second.close()
    with Index.open(db, create=False) as idx:
        assert idx.info()["images"] == 1


def test_a_run_whose_new_index_was_removed_writes_nothing_unseen(tmp_path):
    photos = make_photos(tmp_path / "photos", 2)
    db = tmp_path / "x.db"
    first = Index.open(db)
    second = Index.open(db)  # opened it, not yet locked (its model loads under the lock)
    with pytest.raises(RuntimeError), first:
        raise RuntimeError("no model hub")  # the first run fails: its index goes
    assert not db.exists()
    with pytest.raises(StoreError, match="removed or replaced while this run was starting"):
        second.update(photos)
    second.close()


def test_a_waiter_takes_the_lock_at_the_path_when_the_holder_removed_it(tmp_path):
    db = tmp_path / "x.db"
    seen: list[bool] = []
    fd_holder = update_lock(db)
    fd_holder.__enter__()

    def waiter() -> None:
        with update_lock(db):
            seen.append(lock_path(db).exists())

    t = threading.Thread(target=waiter)
    t.start()
    t.join(0.3)  # it waits on the lock file it opened
    os.unlink(lock_path(db))  # a failed first run removes it, holding it
    fd_holder.__exit__(None, None, None)
    t.join(10)
    assert seen == [True]  # it holds the lock that is at the path, not a removed one


def test_a_dangling_symlink_db_is_the_users(tmp_path):
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(RuntimeError), Index.open(link):
        raise RuntimeError("boom")
    assert link.is_symlink()  # before: the symlink was removed, its new target left
