"""The seed's picture: the query, then the top-k results in a grid with scores and names."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..types import Hit

COLUMNS = 5
TILE_INCHES = 3.2
DPI = 100


def _thumb(path: str) -> np.ndarray | None:
    from ..decode import DecodeFailure, load_for_display

    try:
        return np.asarray(load_for_display(os.fsencode(path), max_side=400))
    except (DecodeFailure, OSError):
        return None


def _short(name: str, width: int = 30) -> str:
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name if len(name) <= width else name[: width - 12] + "…" + name[-11:]


def grid_formats() -> dict[str, str]:
    """The picture formats :func:`plot_grid` can write, by extension (``png`` first):
    matplotlib's own list, which depends on what is installed, less PGF (it needs LaTeX)."""
    from matplotlib.backend_bases import FigureCanvasBase

    found = dict(FigureCanvasBase.get_supported_filetypes())
    found.pop("pgf", None)
    return {"png": found.get("png", "Portable Network Graphics"), **found}


def _format(out: str | os.PathLike[str]) -> str:
    """The format an output name asks for: its extension when matplotlib writes it, else
    PNG (a name without an extension; the CLI refuses an unknown one before any work)."""
    ext = os.path.splitext(os.fspath(out))[1].lower().lstrip(".")
    return ext if ext in grid_formats() else "png"


def plot_grid(
    query: str | None,
    hits: Sequence[Hit],
    out: str | os.PathLike[str] | None,
    *,
    show: bool = False,
    text: str | None = None,
) -> int:
    """Draw the query beside its results and write a PNG to ``out``.

    The query sits in its own column on the left; results fill rows of five, each titled
    with its rank, score and file name. At least 800 px wide for any ``k``. ``text`` (a
    search by words) is written in the query panel, under the query image if there is one.

    Returns:
        The number of image tiles drawn (query plus results).
    """
    import matplotlib

    if not show:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(1, min(COLUMNS, len(hits)))
    rows = max(1, math.ceil(len(hits) / cols))
    width = max(8.5, TILE_INCHES * (cols + 1.2))  # >= 850 px even for k=1
    fig = plt.figure(figsize=(width, (TILE_INCHES + 0.6) * rows + 0.2), dpi=DPI)  # + titles
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1.2] + [1] * cols)
    tiles = 0
    ax = fig.add_subplot(grid[:, 0])
    img = _thumb(query) if query is not None else None
    if img is not None:
        ax.imshow(img)
        tiles += 1
    if text is not None:  # the words, wrapped to the panel's width
        import textwrap

        words = "\n".join(textwrap.wrap(text, 28)[:8])
        where = (0.5, -0.02, "top") if img is not None else (0.5, 0.5, "center")
        ax.text(*where[:2], words, ha="center", va=where[2], fontsize=13, transform=ax.transAxes)
    name = _short(Path(query).name) if query is not None else "words"
    ax.set_title(f"query\n{name}", fontsize=12, fontweight="bold")
    ax.axis("off")
    for i, hit in enumerate(hits):
        ax = fig.add_subplot(grid[i // cols, 1 + i % cols])
        img = _thumb(hit.path)
        if img is not None:
            ax.imshow(img)
            tiles += 1
        else:
            ax.text(0.5, 0.5, "cannot read", ha="center", va="center", color="grey")
        ax.set_title(f"#{hit.rank}  {hit.score:.3f}\n{_short(Path(hit.path).name)}", fontsize=10)
        ax.axis("off")
    fig.tight_layout(h_pad=1.2)
    if out is not None:
        # Rendered first, then written in one go: a pipe or FIFO (`--plot >(viewer)`) cannot
        # seek, which some formats need while being written.
        buf = io.BytesIO()
        fig.savefig(buf, format=_format(out), dpi=DPI)
        with open(out, "wb") as f:
            f.write(buf.getvalue())
    if show:
        plt.show()
    plt.close(fig)
    return tiles
