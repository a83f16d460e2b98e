"""The ``lookalike`` command: a thin layer over :class:`lookalike.Index`.

Exit codes: 0 completed (even with skipped files), 1 failed, 2 usage error.
Expected errors print one line on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from .errors import LookalikeError


def _fail(message: str) -> None:
    click.echo(f"lookalike: error: {message}", err=True)
    sys.exit(1)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected errors into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LookalikeError as e:
            _fail(str(e))
        except KeyboardInterrupt:
            click.echo("lookalike: interrupted; committed batches are kept", err=True)
            sys.exit(130)

    return wrapper


def _db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        type=click.Path(dir_okay=False),
        envvar="LOOKALIKE_DB",
        help="Index file (SQLite), or a postgresql://USER@HOST[:PORT]/DBNAME URL. "
        "Default: $LOOKALIKE_DB, else index.db in the user data dir.",
    )(fn)


def _model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--model",
            envvar="LOOKALIKE_MODEL",
            help="Any timm model name (default: the index's, else resnet50.tv_in1k).",
        ),
        click.option(
            "--weights",
            type=click.Path(dir_okay=False),
            envvar="LOOKALIKE_WEIGHTS",
            help="Local .safetensors or .pth weights instead of timm's hub cache.",
        ),
        click.option(
            "--pool",
            type=click.Choice(["avg", "gem", "max", "flatten", "token"]),
            help="Pooling of the feature map (default: avg for CNNs, token otherwise).",
        ),
        click.option(
            "--crop",
            type=click.Choice(["none", "center"]),
            help="none: resize the whole image (default); center: the model's eval crop.",
        ),
        click.option(
            "--precision",
            type=click.Choice(["auto", "bf16", "fp32"]),
            default="auto",
            show_default=True,
            help="bf16 where the device runs it natively.",
        ),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda", "mps"]),
            default="auto",
            show_default=True,
        ),
        click.option(
            "--backend",
            type=click.Choice(["auto", "openvino", "torch"]),
            help="CPU inference engine: auto (OpenVINO when installed, else TorchScript). "
            "Default: $LOOKALIKE_BACKEND, else auto.",
        ),
        click.option("--batch-size", type=click.IntRange(min=1), help="Images per forward pass."),
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            help="Decode worker processes (default: one per core; 0 = in-process).",
        ),
        click.option(
            "--max-pixels",
            type=click.IntRange(min=1),
            help="Decompression-bomb limit in pixels (default 180 million).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _no_empty(what: str, *values: str | None) -> None:
    """An empty argument is a usage error: it must never mean the current folder."""
    if any(v is not None and not v.strip() for v in values):
        raise click.UsageError(f"{what} is empty; name a file or folder ('.' for this one)")


def _open(db: str | None, **opts: Any) -> Any:
    from .index import Index

    idx = Index.open(db, **opts)
    for warning in idx.warnings:
        click.echo(f"lookalike: warning: {warning}", err=True)
    return idx


def _progress_context(enabled: bool) -> Any:
    """A rich progress bar on stderr when it is a terminal; otherwise nothing."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _progress_hooks(bar: Any) -> dict[str, Any]:
    """``on_progress`` and ``on_stage`` for :meth:`Index.update` that drive ``bar``."""
    import time

    task = bar.add_task("indexing", total=None, rate="")
    # The rate counts from when the model is ready: loading (and a first run's
    # compilation) would otherwise show as a slow start.
    ready = {"at": time.monotonic(), "embedded": 0, "last": 0}

    def on_stage(stage: str) -> None:
        if stage == "loading-model":
            bar.update(task, description="loading model... (first run compiles it once)")
        else:
            ready.update(at=time.monotonic(), embedded=ready["last"])
            bar.update(task, description="indexing")

    def on_progress(p: Any) -> None:
        ready["last"] = p.embedded
        seconds = time.monotonic() - ready["at"]
        done = p.embedded - ready["embedded"]
        rate = f"{done / seconds:.1f} img/s" if done > 0 and seconds > 0 else ""
        bar.update(task, total=p.total, completed=p.done, rate=rate)

    return {"on_progress": on_progress, "on_stage": on_stage}


def _say_wait(line: str) -> None:
    """Another run holds this index's lock: say so, whatever the output mode."""
    click.echo(f"lookalike: {line}", err=True)


def _update(idx: Any, folders: tuple[str, ...], show_progress: bool, **kw: Any) -> Any:
    kw.setdefault("on_wait", _say_wait)
    bar = _progress_context(show_progress)
    if bar is None:
        return idx.update(*folders, **kw)
    with bar:
        return idx.update(*folders, **_progress_hooks(bar), **kw)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lookalike")
def main() -> None:
    """Find the images most similar to a given one.

    \b
    lookalike index ~/Pictures           build or update the index
    lookalike search query.jpg           the 10 most similar indexed images
    lookalike search query.jpg FOLDER    update FOLDER's index, then search only it
    """


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@_db_option
@_model_options
@click.option("--follow-links", is_flag=True, help="Follow symbolic links (loops are detected).")
@click.option("--include-hidden", is_flag=True, help="Also index hidden files and folders.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the report).")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where to decode and embed: this machine, or a Ray cluster (paths must be "
    "readable on every node).",
)
@click.option(
    "--ray-address",
    metavar="ADDR",
    help="Ray cluster for --engine ray (default: $RAY_ADDRESS, else a local cluster).",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="If another run is updating this index, stop instead of waiting for it.",
)
@_guard
def index(
    folders: tuple[str, ...],
    db: str | None,
    as_json: bool,
    follow_links: bool,
    include_hidden: bool,
    engine: str,
    ray_address: str | None,
    no_wait: bool = False,
    **model_opts: Any,
) -> None:
    """Index FOLDERS recursively: embed new and changed images, drop deleted ones."""
    import json

    from .errors import NothingIndexedError
    from .preflight import check_folders
    from .present import report_lines

    _no_empty("FOLDER", *folders)
    check_folders(folders)  # before any model loads
    with _open(db, **model_opts) as idx:
        try:
            report = _update(
                idx,
                folders,
                not as_json and sys.stderr.isatty(),
                follow_links=follow_links,
                include_hidden=include_hidden,
                engine=engine,
                ray_address=ray_address,
                wait=not no_wait,
            )
        except NothingIndexedError as e:
            if as_json and e.report is not None:
                click.echo(json.dumps(e.report.to_dict()))  # type: ignore[attr-defined]
            raise
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        click.echo("\n".join(report_lines(report)))


@main.command()
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
@_db_option
@_model_options
@click.option("--exact", is_flag=True, help="Compare with every vector (no approximate index).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the result grid as a PNG.")
@click.option("--show", is_flag=True, help="Open the result grid in a window.")
@_guard
def search(
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
    **model_opts: Any,
) -> None:
    """The K images most similar to QUERY; with FOLDER, index it first and search only it.

    With --text (a CLIP index), QUERY is optional and a lone folder argument is FOLDER.
    """
    from .present import hits_json, hits_table

    _no_empty("QUERY", query)
    _no_empty("FOLDER", folder)
    if texts or negatives:
        _search_terms(
            query, folder, k, db, exact, as_json, plot, show, texts, negatives, model_opts
        )
        return
    if query is None:
        raise click.UsageError("missing QUERY (an image), or search by words with --text")
    from .preflight import check_folders, check_query_file

    # Before any model loads or any folder is indexed; a search alone creates no index.
    check_query_file(query)
    check_folders([folder] if folder is not None else [])
    with _open(db, create=folder is not None, **model_opts) as idx:
        if folder is not None:
            _update_folder(idx, folder, as_json)
        hits = idx.search(query, k=k, folder=folder, exact=exact)
    query_path = os.path.abspath(query)
    if as_json:
        click.echo(hits_json(query_path, hits))
    else:
        click.echo(hits_table(hits))
    if plot or show:
        _plot(query_path, hits, plot, show)


def _update_folder(idx: Any, folder: str, as_json: bool) -> None:
    """Bring ``search``'s FOLDER up to date first, saying how many files failed."""
    report = _update(idx, (folder,), not as_json and sys.stderr.isatty())
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
) -> None:
    """``search`` with --text/--not: a :class:`~lookalike.query.Query` of words and images."""
    from .present import hits_json, hits_table
    from .query import Query

    if query is not None and folder is None and os.path.isdir(query):
        query, folder = None, query  # `search FOLDER --text red`
    if not texts and query is None:
        raise click.UsageError("--not needs something to search for: QUERY or --text")
    if any(not t.strip() for t in (*texts, *negatives)):
        raise click.UsageError("--text and --not take a non-empty text (or image path)")
    image = os.path.abspath(query) if query is not None else None
    q = Query.build(text=texts, image=image, negative=negatives)  # checked before any work
    with _open(db, **model_opts) as idx:
        for term in q.terms:
            if term.kind == "text":
                idx.embed_text(term.value)  # refuses an image-only index before indexing
                break
        if folder is not None:
            _update_folder(idx, folder, as_json)
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
    from .present.grid import plot_grid

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
    plot_grid(query, hits, out, show=can_show, text=text)


@main.command()
@_db_option
@click.option("--check", is_flag=True, help="Run SQLite's full integrity check too.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_guard
def info(db: str | None, check: bool, as_json: bool) -> None:
    """Model, weights, pooling, preprocessing, dimension, counts, folders, failed files."""
    import json

    from .present import info_lines

    with _open(db, create=False) as idx:
        data = idx.info()
        if check:
            data["integrity"] = idx.check()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        click.echo("\n".join(info_lines(data)))


@main.command()
@click.argument("folder", type=click.Path())
@_db_option
@_guard
def remove(folder: str, db: str | None) -> None:
    """Forget every indexed image below FOLDER (files on disk are untouched)."""
    _no_empty("FOLDER", folder)
    with _open(db, create=False) as idx:
        n = idx.remove(folder)
    click.echo(f"removed {n} images below {os.path.abspath(folder)}")


# Commands that live in their own modules (each a thin adapter over one capability):
# ``lookalike/cli_<name>.py`` defines ``command``, a click command.
_COMMAND_MODULES: tuple[str, ...] = ("cli_demo", "cli_duplicates", "cli_serve")


def _register_commands() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        main.add_command(importlib.import_module(f".{name}", __package__).command)


_register_commands()

if __name__ == "__main__":
    main()
