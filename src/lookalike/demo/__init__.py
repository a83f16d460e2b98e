"""``lookalike demo``: the whole job on real photos, with nothing to bring.

It builds a folder from the sample photos that ship inside installed packages
(scikit-image, scikit-learn, matplotlib; :mod:`lookalike.demo.samples`) plus edited copies of
each (a crop, a mirror image, shifted colours, a JPEG at quality 20, a grey version, a
small resize), indexes it with the trained EfficientNet-Lite0 whose weights come from the
package registry (:mod:`lookalike.embed.shipped`; no model hub needed) and searches it
with one photo. A second run finds the folder and the index as it left them: nothing is
written or embedded again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError
from ..types import Hit, IndexReport
from . import samples as _samples

DEMO_QUERY = "chelsea"
DEMO_MODEL = "tf_efficientnet_lite0"
# Bump when the folder's content changes: an older folder is then rebuilt.
_FOLDER_VERSION = 1
_MANIFEST = "photos.json"


@dataclass(frozen=True)
class DemoResult:
    """What one demo run did and found.

    Attributes:
        query: the query photo (inside ``folder``).
        hits: its most similar photos, best first.
        folder: the demo's photo folder.
        db: the demo's index file.
        images: photos in the folder.
        embedded: photos embedded by this run (0 on a second run).
        report: the indexing run's report.
        model: the model that made the vectors.
        weights: their weights fingerprint (``"package:..."`` when they came from the
            package registry).
    """

    query: Path
    hits: list[Hit]
    folder: Path
    db: Path
    images: int
    embedded: int
    report: IndexReport
    model: str
    weights: str


def default_demo_dir() -> Path:
    """``demo/`` in the user's data folder (beside the default index)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("lookalike")) / "demo"


def check_requirements() -> None:
    """Raise before any work if the demo's photos or model cannot be had here.

    Raises:
        MissingDependencyError: a package of sample photos, or the model's, is missing.
    """
    from ..embed import shipped

    missing = _samples.missing_packages()
    if shipped.package_file() is None and not shipped.hub_available():
        missing.append(shipped.PACKAGE)
    if missing:
        raise MissingDependencyError(
            f'the demo needs {", ".join(missing)}: pip install "lookalike[offline]"'
        )


def build_demo_folder(out: str | os.PathLike[str]) -> tuple[Path, list[Path]]:
    """The demo's photo folder under ``out``, written once.

    Originals are saved as JPEG (quality 92), each followed by its edited copies
    (:data:`lookalike.demo.samples.DEMO_EDITS`), named ``<photo>.jpg`` and
    ``<photo>__<edit>.jpg``. A complete folder from an earlier run is kept as it is (same
    files, same modification times), so indexing it again embeds nothing.

    Returns:
        (the folder, its photo files).

    Raises:
        MissingDependencyError: no sample photos are installed.
    """
    root = Path(out).expanduser()
    folder = root / "photos"
    manifest = root / _MANIFEST
    known = _read_manifest(manifest)
    if known is not None and all((folder / n).is_file() for n in known):
        return folder, [folder / n for n in known]
    originals = _samples.load_originals(twins=True)
    if not originals:
        raise MissingDependencyError(
            "the demo needs the sample photos of scikit-image and scikit-learn: "
            'pip install "lookalike[offline]"'
        )
    copies = _samples.edited_copies(originals, _samples.DEMO_EDITS)
    images = dict(originals)
    images.update({c.name: c.image for c in copies})
    written = _samples.write_images(folder, images, fmt="jpg", quality=92)
    names = sorted(p.name for p in written.values())
    manifest.write_text(json.dumps({"version": _FOLDER_VERSION, "files": names}, indent=1))
    return folder, [folder / n for n in names]


def _read_manifest(path: Path) -> list[str] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != _FOLDER_VERSION:
        return None
    files = data.get("files")
    return [str(f) for f in files] if isinstance(files, list) and files else None


def run_demo(
    out: str | os.PathLike[str] | None = None,
    *,
    k: int = 10,
    on_progress: Callable[[Any], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> DemoResult:
    """Build the demo folder, index it with the registry's model, search with one photo.

    Args:
        out: where the folder and its index go; default :func:`default_demo_dir`.
        k: how many results.
        on_progress, on_stage, on_wait: passed to :meth:`lookalike.Index.update`.

    Returns:
        The :class:`DemoResult`.

    Raises:
        MissingDependencyError: the sample photos or the model's weights are not installed.
        LookalikeError: anything indexing or search can raise.

    Example:
        >>> result = run_demo("/tmp/lookalike-demo")  # doctest: +SKIP
        >>> [h.path.rsplit("/", 1)[-1] for h in result.hits[:2]]  # doctest: +SKIP
        ['chelsea__jpeg20.jpg', 'chelsea__hflip.jpg']
    """
    from ..index import Index

    check_requirements()
    root = Path(out).expanduser() if out is not None else default_demo_dir()
    root.mkdir(parents=True, exist_ok=True)
    folder, files = build_demo_folder(root)
    query = folder / f"{DEMO_QUERY}.jpg"
    db = root / "demo.db"
    with Index.open(db, model=DEMO_MODEL) as idx:
        report = idx.update(folder, on_progress=on_progress, on_stage=on_stage, on_wait=on_wait)
        hits = idx.search(query, k=k, folder=folder)
        setup = idx.setup
    return DemoResult(
        query=query,
        hits=hits,
        folder=folder,
        db=db,
        images=len(files),
        embedded=report.embedded,
        report=report,
        model=setup.model if setup else DEMO_MODEL,
        weights=setup.weights if setup else "",
    )
