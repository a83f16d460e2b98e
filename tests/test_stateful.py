"""Model-based test: after any sequence of file operations and re-indexing, the index
holds exactly the folder's images, each with the vector of its current content."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from fakes import PixelEmbedder, photo
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lookalike import Index

# BMP: every file has the same size, so only mtime and content tell changes apart
NAMES = [f"f{i}.bmp" for i in range(6)] + ["sub/g.bmp", "sub/deeper/h.bmp"]


class FolderModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.folder = self.tmp / "photos"
        self.folder.mkdir()
        self.content: dict[str, int] = {}  # name -> seed of its pixels
        self.embedder = PixelEmbedder(side=8)
        self.idx = Index.open(self.tmp / "i.db", embedder=self.embedder, workers=0)
        self.clock = 10**18
        self.query_seed = 99  # a picture never written to the folder
        self._decoded: dict[int, np.ndarray] = {}

    def _write(self, name: str, seed: int) -> None:
        path = self.folder / name
        photo(path, seed, size=(16, 12))
        self.clock += 10**9  # distinct mtimes even within one filesystem tick
        os.utime(path, ns=(self.clock, self.clock))
        self.content[name] = seed

    @rule(name=st.sampled_from(NAMES), seed=st.integers(0, 5))
    def write(self, name, seed):
        self._write(name, seed)

    @precondition(lambda self: self.content)
    @rule(data=st.data())
    def delete(self, data):
        name = data.draw(st.sampled_from(sorted(self.content)))
        (self.folder / name).unlink()
        del self.content[name]

    @precondition(lambda self: self.content)
    @rule(data=st.data(), dest=st.sampled_from(NAMES))
    def rename(self, data, dest):
        name = data.draw(st.sampled_from(sorted(self.content)))
        if name == dest:
            return
        (self.folder / dest).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.folder / name, self.folder / dest)
        self.content[dest] = self.content.pop(name)

    @precondition(lambda self: self.content)
    @rule(data=st.data(), dest=st.sampled_from(NAMES))
    def copy(self, data, dest):
        name = data.draw(st.sampled_from(sorted(self.content)))
        if name == dest:
            return
        (self.folder / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.folder / name, self.folder / dest)
        self.clock += 10**9
        os.utime(self.folder / dest, ns=(self.clock, self.clock))
        self.content[dest] = self.content[name]

    @precondition(lambda self: self.content)
    @rule(data=st.data())
    def touch(self, data):
        name = data.draw(st.sampled_from(sorted(self.content)))
        self.clock += 10**9
        os.utime(self.folder / name, ns=(self.clock, self.clock))

    @precondition(lambda self: self.content)
    @rule()
    def reindex(self):
        self.idx.update(self.folder)
        again = self.idx.update(self.folder)
        assert again.embedded == 0 and again.added == again.removed == 0

    @invariant()
    def index_matches_folder_after_update(self):
        if not self.content:
            return
        self.idx.update(self.folder)
        stored = {
            os.path.relpath(os.fsdecode(p), self.folder): row
            for p, row in self.idx._store.files_under(os.fsencode(self.folder)).items()
        }
        assert set(stored) == set(self.content)
        for name, seed in self.content.items():
            _, vec = self.idx._store.lookup(os.fsencode(self.folder / name))
            ref = self.embedder.embed_pixels(self._pixels(seed))[0]
            np.testing.assert_allclose(vec, ref, atol=1e-6, err_msg=name)
        # Searches with k below the image count return exactly the brute-force top k of
        # the model (a stale, missing or doubled cache row changes ids, not only counts),
        # from this process's cache and from a fresh process's view of it.
        k = max(1, len(self.content) - 2)
        expected = {
            name: self.embedder.embed_pixels(self._pixels(seed))[0]
            for name, seed in self.content.items()
        }
        for qseed in (self.query_seed, *sorted(set(self.content.values()))[:1]):
            q = self.embedder.embed_pixels(self._pixels(qseed))[0]
            self._assert_top_k(self.idx.search_vector(q, k=k), expected, q, k)
            with Index.open(self.tmp / "i.db", embedder=self.embedder, workers=0) as fresh:
                self._assert_top_k(fresh.search_vector(q, k=k), expected, q, k)

    def _assert_top_k(self, hits, expected, q, k):
        truth = {name: float(v @ q) for name, v in expected.items()}
        names = [os.path.relpath(h.path, self.folder) for h in hits]
        assert len(names) == len(set(names)) == k, names
        for name, hit in zip(names, hits, strict=True):
            assert abs(hit.score - truth[name]) < 1e-5, (name, hit.score, truth[name])
        kth = hits[-1].score
        assert {n for n, s in truth.items() if s > kth + 1e-5} <= set(names), names

    def _pixels(self, seed: int) -> np.ndarray:
        if seed not in self._decoded:
            self._decoded[seed] = self._decode(seed)
        return self._decoded[seed]

    def _decode(self, seed: int) -> np.ndarray:
        from lookalike.decode import decode_path

        probe = self.tmp / "probe.bmp"
        photo(probe, seed, size=(16, 12))
        pixels, _ = decode_path(os.fsencode(probe), self.embedder.setup.preprocess)
        return pixels[None]

    def teardown(self):
        self.idx.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


FolderModel.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFolderModel = FolderModel.TestCase
