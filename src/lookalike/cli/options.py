"""What every ``lookalike`` command shares: the ``--db`` and model options, opening the
index, the progress bar, and turning expected errors into one line and exit code 1.

Exit codes: 0 completed (even with skipped files), 1 failed, 2 usage error.
Expected errors print one line on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from ..errors import LookalikeError


def fail(message: str) -> None:
    click.echo(f"lookalike: error: {message}", err=True)
    sys.exit(1)


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected errors into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LookalikeError as e:
            fail(str(e))
        except KeyboardInterrupt:
            click.echo("lookalike: interrupted; committed batches are kept", err=True)
            sys.exit(130)

    return wrapper


def _remember_create_dirs(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta["lookalike.create_dirs"] = value
    return value


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--create-dirs",
        is_flag=True,
        expose_value=False,
        callback=_remember_create_dirs,
        help="Create the folder of --db when it does not exist (without it, a folder "
        "that is not there is an error: a typo must not start a new index).",
    )(fn)
    return click.option(
        "--db",
        type=click.Path(dir_okay=False),
        envvar="LOOKALIKE_DB",
        help="Index file (SQLite), or a postgresql://USER@HOST[:PORT]/DBNAME URL. "
        "Default: $LOOKALIKE_DB, else index.db in the user data dir.",
    )(fn)


def check_db_folder(db: str | None) -> None:
    """A --db (or $LOOKALIKE_DB) in a folder that does not exist is a usage error, unless
    --create-dirs: a typo would otherwise start a new, empty index somewhere (#20). The
    default location (the user data dir) is created as needed."""
    import os

    from ..store import is_postgres_url

    if db is None or is_postgres_url(db):
        return
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(db)))
    blocker = _file_in_the_way(folder)
    if blocker is not None:  # --create-dirs cannot help either
        raise click.BadParameter(
            f"{blocker} is a file, not a folder: the index cannot go below it",
            param_hint="'--db'",
        )
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get("lookalike.create_dirs"):
        return
    if not os.path.isdir(folder):
        raise click.BadParameter(
            f"the folder {folder} does not exist; create it, or add --create-dirs",
            param_hint="'--db'",
        )


def _file_in_the_way(folder: str) -> str | None:
    """The nearest existing ancestor of ``folder`` (itself included) when it is no folder."""
    import os

    while not os.path.lexists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
    return None if os.path.isdir(folder) else folder


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
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
            help="Where the model runs: auto = CUDA, else Apple's MPS, else the CPU.",
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


def no_wait_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--no-wait",
        is_flag=True,
        help="If another run is updating this index, stop instead of waiting for it.",
    )(fn)


def no_empty(what: str, *values: str | None) -> None:
    """An empty argument is a usage error: it must never mean the current folder."""
    if any(v is not None and not v.strip() for v in values):
        raise click.UsageError(f"{what} is empty; name a file or folder ('.' for this one)")


def check_output(option: str, path: str | None, formats: dict[str, str] | None = None) -> None:
    """An output file option, checked with the other arguments before any work (#20):
    its folder exists and is writable, it is no folder itself, and with ``formats``
    (extension -> description) its extension is one of them (none at all: the first).

    Raises:
        click.BadParameter: exit code 2, naming the option.
    """
    import os

    if path is None:
        return
    if not path.strip():
        raise click.BadParameter("the file name is empty", param_hint=f"'{option}'")
    full = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(full)
    problem = None
    if os.path.isdir(full):
        problem = f"{path} is a folder; name a file"
    elif path.endswith(("/", os.sep)):
        problem = f"{path} ends with '/', so it names a folder; name a file"
    elif not os.path.isdir(folder):
        problem = f"the folder {folder} does not exist"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"cannot write in {folder}"
    elif formats is not None:
        ext = os.path.splitext(full)[1].lower().lstrip(".")
        if ext and ext not in formats:
            problem = f"cannot write a .{ext} file; use one of: " + ", ".join(
                f".{e}" for e in formats
            )
    if problem:
        raise click.BadParameter(problem, param_hint=f"'{option}'")


@contextlib.contextmanager
def writing(option: str, path: str) -> Iterator[None]:
    """Writing an output file: an OS error (disk full, a pipe that closed...) is one line
    and exit code 1, never a traceback."""
    try:
        yield
    except OSError as e:
        fail(f"cannot write {path} ({option}): {e.strerror or e}")


def open_index(db: str | None, **opts: Any) -> Any:
    from ..index import Index

    if opts.get("create", True):
        check_db_folder(db)
    idx = Index.open(db, **opts)
    for warning in idx.warnings:
        click.echo(f"lookalike: warning: {warning}", err=True)
    return idx


def progress_context(enabled: bool) -> Any:
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


def progress_hooks(bar: Any) -> dict[str, Any]:
    """``on_progress`` and ``on_stage`` for :meth:`Index.update` that drive ``bar``."""
    import time

    task = bar.add_task("indexing", total=None, rate="")
    # The rate counts from when the model is ready: loading (and a first run's
    # compilation) would otherwise show as a slow start.
    ready = {"at": time.monotonic(), "embedded": 0, "last": 0}

    def on_stage(stage: str) -> None:
        if stage == "loading-model":
            bar.update(task, description="loading model...")
        elif stage == "compiling-model":  # only when no compiled copy is cached (#20)
            bar.update(task, description="compiling the model (once, on its first run)...")
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


def say_wait(line: str) -> None:
    """Another run holds this index's lock: say so, whatever the output mode."""
    click.echo(f"lookalike: {line}", err=True)


def update_index(idx: Any, folders: tuple[str, ...], show_progress: bool, **kw: Any) -> Any:
    kw.setdefault("on_wait", say_wait)
    bar = progress_context(show_progress)
    if bar is None:
        return idx.update(*folders, **kw)
    with bar:
        return idx.update(*folders, **progress_hooks(bar), **kw)
