"""``lookalike search``: the images most similar to a file, to words, or to both."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .options import (
    check_output,
    db_option,
    guard,
    model_options,
    no_empty,
    no_wait_option,
    open_index,
    update_index,
    writing,
)


@click.command("search")
@click.argument("query", required=False, type=click.Path())
@click.argument("folder", required=False, type=click.Path())
@click.option(
    "--text",
    "texts",
    multiple=True,
    metavar="TEXT",
    help="Search by words (a CLIP index); repeatable; 'W:text' weighs a term (2:red). "
    "QUERY is then optional.",
)
@click.option(
    "--not",
    "negatives",
    multiple=True,
    metavar="TERM",
    help="Move away from TERM: words, or an image file; repeatable; 'W:' weighs it.",
)
@click.option(
    "-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many results."
)
@db_option
@model_options
@click.option("--exact", is_flag=True, help="Compare with every vector (no approximate index).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Write the result grid as a picture: PNG, or the format its extension names "
    "(.jpg, .pdf, .svg...).",
)
@click.option("--show", is_flag=True, help="Open the result grid in a window.")
@no_wait_option
@guard
def command(
    query: str | None,
    folder: str | None,
    k: int,
    db: str | None,
    exact: bool,
    as_json: bool,
    plot: str | None,
    show: bool,
    texts: tuple[str, ...] = (),
    negatives: tuple[str, ...] = (),
    no_wait: bool = False,
    **model_opts: Any,
) -> None:
    """The K images most similar to QUERY; with FOLDER, index it first and search only it.

    With --text (a CLIP index), QUERY is optional and a lone folder argument is FOLDER.
    """
    from ..present import hits_json, hits_table
    from ..present.grid import grid_formats

    no_empty("QUERY", query)
    no_empty("FOLDER", folder)
    check_output("--plot", plot, grid_formats())  # before any work, not after the table
    if texts or negatives:
        _search_terms(
            query, folder, k, db, exact, as_json, plot, show, texts, negatives, model_opts, no_wait
        )
        return
    if query is None:
        raise click.UsageError("missing QUERY (an image), or search by words with --text")
    from ..index.preflight import check_folders, check_query_file

    # Before any model loads or any folder is indexed; a search alone creates no index.
    check_query_file(query)
    check_folders([folder] if folder is not None else [])
    with open_index(db, create=folder is not None, **model_opts) as idx:
        if folder is not None:
            _update_folder(idx, folder, as_json, no_wait)
        hits = idx.search(query, k=k, folder=folder, exact=exact)
    query_path = os.path.abspath(query)
    if as_json:
        click.echo(hits_json(query_path, hits))
    else:
        click.echo(hits_table(hits))
    if plot or show:
        _plot(query_path, hits, plot, show)


def _update_folder(idx: Any, folder: str, as_json: bool, no_wait: bool) -> None:
    """Bring ``search``'s FOLDER up to date first, saying how many files failed."""
    report = update_index(idx, (folder,), not as_json and sys.stderr.isatty(), wait=not no_wait)
    if report.failed and not as_json:
        click.echo(
            f"({len(report.failed)} files could not be indexed; see `lookalike info`)",
            err=True,
        )


def _search_terms(
    query: str | None,
    folder: str | None,
    k: int,
    db: str | None,
    exact: bool,
    as_json: bool,
    plot: str | None,
    show: bool,
    texts: tuple[str, ...],
    negatives: tuple[str, ...],
    model_opts: dict[str, Any],
    no_wait: bool,
) -> None:
    """``search`` with --text/--not: a :class:`~lookalike.query.Query` of words and images."""
    from ..present import hits_json, hits_table
    from ..query import Query

    if query is not None and folder is None and os.path.isdir(query):
        query, folder = None, query  # `search FOLDER --text red`
    if not texts and query is None:
        raise click.UsageError("--not needs something to search for: QUERY or --text")
    if any(not t.strip() for t in (*texts, *negatives)):
        raise click.UsageError("--text and --not take a non-empty text (or image path)")
    image = os.path.abspath(query) if query is not None else None
    q = Query.build(text=texts, image=image, negative=negatives)  # checked before any work
    with open_index(db, **model_opts) as idx:
        for term in q.terms:
            if term.kind == "text":
                idx.embed_text(term.value)  # refuses an image-only index before indexing
                break
        if folder is not None:
            _update_folder(idx, folder, as_json, no_wait)
        hits = idx.search_query(q, k=k, folder=folder, exact=exact)
    if as_json:
        click.echo(hits_json(q.describe(), hits))
    else:
        click.echo(hits_table(hits))
    if plot or show:
        _plot(image, hits, plot, show, text=q.label())


def _plot(
    query: str | None, hits: Any, out: str | None, show: bool, text: str | None = None
) -> None:
    from ..present.grid import plot_grid

    can_show = show and bool(
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or sys.platform in ("darwin", "win32")
    )
    if show and not can_show:
        click.echo(
            "lookalike: no display to show the grid on"
            + (f"; wrote {out}" if out else "; use --plot FILE"),
            err=True,
        )
    with writing("--plot", out or ""):
        plot_grid(query, hits, out, show=can_show, text=text)
