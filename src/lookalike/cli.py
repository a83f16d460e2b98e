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
        help="Index file (SQLite). Default: $LOOKALIKE_DB, else index.db in the user data dir.",
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
        TextColumn("indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _update(idx: Any, folders: tuple[str, ...], show_progress: bool, **kw: Any) -> Any:
    bar = _progress_context(show_progress)
    if bar is None:
        return idx.update(*folders, **kw)
    with bar:
        task = bar.add_task("indexing", total=None, rate="")

        def on_progress(p: Any) -> None:
            rate = f"{p.embedded / p.seconds:.1f} img/s" if p.seconds > 0 else ""
            bar.update(task, total=p.total, completed=p.done, rate=rate)

        return idx.update(*folders, on_progress=on_progress, **kw)


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
@_guard
def index(
    folders: tuple[str, ...],
    db: str | None,
    as_json: bool,
    follow_links: bool,
    include_hidden: bool,
    **model_opts: Any,
) -> None:
    """Index FOLDERS recursively: embed new and changed images, drop deleted ones."""
    import json

    from .errors import NothingIndexedError
    from .present import report_lines

    with _open(db, **model_opts) as idx:
        try:
            report = _update(
                idx,
                folders,
                not as_json and sys.stderr.isatty(),
                follow_links=follow_links,
                include_hidden=include_hidden,
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
@click.argument("query", type=click.Path())
@click.argument("folder", required=False, type=click.Path())
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
    query: str,
    folder: str | None,
    k: int,
    db: str | None,
    exact: bool,
    as_json: bool,
    plot: str | None,
    show: bool,
    **model_opts: Any,
) -> None:
    """The K images most similar to QUERY; with FOLDER, index it first and search only it."""
    from .present import hits_json, hits_table

    with _open(db, **model_opts) as idx:
        if folder is not None:
            report = _update(idx, (folder,), not as_json and sys.stderr.isatty())
            if report.failed and not as_json:
                click.echo(
                    f"({len(report.failed)} files could not be indexed; see `lookalike info`)",
                    err=True,
                )
        hits = idx.search(query, k=k, folder=folder, exact=exact)
    query_path = os.path.abspath(query)
    if as_json:
        click.echo(hits_json(query_path, hits))
    else:
        click.echo(hits_table(hits))
    if plot or show:
        _plot(query_path, hits, plot, show)


def _plot(query: str, hits: Any, out: str | None, show: bool) -> None:
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
    plot_grid(query, hits, out, show=can_show)


@main.command()
@_db_option
@click.option("--check", is_flag=True, help="Run SQLite's full integrity check too.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_guard
def info(db: str | None, check: bool, as_json: bool) -> None:
    """Model, weights, pooling, preprocessing, dimension, counts, folders, failed files."""
    import json

    from .present import info_lines

    with _open(db) as idx:
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
    with _open(db) as idx:
        n = idx.remove(folder)
    click.echo(f"removed {n} images below {os.path.abspath(folder)}")


# Commands that live in their own modules (each a thin adapter over one capability):
# ``lookalike/cli_<name>.py`` defines ``command``, a click command.
_COMMAND_MODULES: tuple[str, ...] = ("cli_demo", "cli_duplicates", "cli_serve")


def _register_commands() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.{name}":
                continue  # not built yet
            raise
        main.add_command(module.command)


_register_commands()

if __name__ == "__main__":
    main()
