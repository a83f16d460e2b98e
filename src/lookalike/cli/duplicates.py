"""``lookalike duplicates``: a thin layer over :meth:`lookalike.Index.duplicate_report`."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..duplicates.keep import DEFAULT_KEEP, KEEP_OPTIONS
from .options import (
    check_output,
    db_option,
    guard,
    model_options,
    no_wait_option,
    open_index,
    update_index,
    writing,
)


def keep_rule(param: click.Parameter, value: str) -> str:
    """A bad ``--keep`` is a usage error (exit 2), found with the other arguments."""
    from ..duplicates.keep import parse_keep
    from ..errors import ConfigError

    try:
        parse_keep(value)
    except ConfigError as e:
        raise click.BadParameter(str(e), param=param) from None
    return value


_KEEP_HELP = (
    "Which file of a group stays: criteria tried in order, comma-separated "
    f"(default {DEFAULT_KEEP}). Criteria: "
    + "; ".join(f"{name} = {what}" for name, what in KEEP_OPTIONS.items())
    + ". Ties go to the first path in alphabetical order."
)


def _usage_if_unsafe(move: Any, *args: Any, **kwargs: Any) -> Any:
    """A destination inside (or holding) an indexed folder is a usage error (exit 2)."""
    from ..errors import DestinationError

    try:
        return move(*args, **kwargs)
    except DestinationError as e:
        raise click.UsageError(str(e)) from None


@click.command("duplicates")
@click.argument("folders", nargs=-1, type=click.Path())
@db_option
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    metavar="T",
    help="Cosine from which two images are copies (default: the index's calibrated one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), help="Write a CSV file.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False),
    help="Write a self-contained HTML review page (thumbnails inline).",
)
@click.option(
    "--keep",
    default=DEFAULT_KEEP,
    show_default=True,
    metavar="RULE",
    help=_KEEP_HELP,
    callback=lambda _ctx, param, value: keep_rule(param, value),
)
@click.option(
    "--move-to",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Move every non-kept file below DIR/<run>/, under its whole path (nothing "
    "overwritten or deleted; an undo journal is written there first). DIR must be outside "
    "every indexed folder.",
)
@click.option("--dry-run", is_flag=True, help="With --move-to: only show what would move.")
@click.option(
    "--calibrate",
    "recalibrate",
    is_flag=True,
    help="Calibrate the threshold again on edited copies of the indexed images.",
)
@click.option(
    "--target-precision",
    type=click.FloatRange(0.5, 1.0, max_open=True),
    default=0.95,
    show_default=True,
    help="Precision the calibration aims for.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Give every candidate pair a second look at the pixels before grouping it "
    "(look-alikes such as letters of one layout are set apart). --no-verify groups on the "
    "cosine alone: faster, less sure.",
)
@click.option(
    "--undo",
    "undo_manifest",
    type=click.Path(dir_okay=False, exists=True),
    metavar="MANIFEST",
    help="Move the files of a --move-to run back where they were (after a crash too).",
)
@model_options
@no_wait_option
@guard
def command(
    folders: tuple[str, ...],
    db: str | None,
    threshold: float | None,
    as_json: bool,
    csv_file: str | None,
    html_file: str | None,
    keep: str,
    move_to: str | None,
    dry_run: bool,
    recalibrate: bool,
    target_precision: float,
    verify: bool,
    undo_manifest: str | None,
    no_wait: bool = False,
    **model_opts: Any,
) -> None:
    """Groups of copies among the indexed images (FOLDERS: update them first, look only
    there). Every member of a group is at least the threshold similar to the kept file;
    byte-identical files are always grouped. Nothing is ever deleted."""
    import dataclasses
    import json
    import time

    from ..duplicates.report import move_lines, report_csv, report_html, report_json, report_lines

    started = time.perf_counter()  # the report's time is the whole command's (#20)
    if dry_run and not (move_to or undo_manifest):
        raise click.UsageError("--dry-run goes with --move-to or --undo")
    check_output("--csv", csv_file)
    check_output("--html", html_file)
    out = click.echo if not as_json else (lambda s: click.echo(s, err=True))
    # Like ``search``: only FOLDERs to bring up to date make an index; without them a
    # missing index is an error, not an empty one created on the spot.
    with open_index(db, create=bool(folders) and not undo_manifest, **model_opts) as idx:
        if undo_manifest:
            done = idx.undo_duplicate_moves(undo_manifest, dry_run=dry_run)
            if as_json:
                click.echo(json.dumps(done.to_dict(), ensure_ascii=False))
            else:
                click.echo("\n".join(move_lines(done)))
            return
        if folders:
            report = update_index(
                idx, folders, not as_json and sys.stderr.isatty(), wait=not no_wait
            )
            if report.failed:
                click.echo(
                    f"({len(report.failed)} files could not be indexed; see `lookalike info`)",
                    err=True,
                )
        if move_to:
            _usage_if_unsafe(idx.move_duplicates, [], move_to, dry_run=True)  # before the search
        if recalibrate:
            cal = idx.calibrate_duplicates(target_precision)
            out(f"calibrated: {cal.sentence(verify)}")
        found = idx.duplicate_report(threshold, list(folders) or None, keep, verify=verify)
        found = dataclasses.replace(found, seconds=time.perf_counter() - started)
        if csv_file:
            with writing("--csv", csv_file), open(csv_file, "w", encoding="utf-8", newline="") as f:
                f.write(report_csv(found.groups))
        if html_file:
            with writing("--html", html_file), open(html_file, "w", encoding="utf-8") as f:
                f.write(report_html(found))
        if as_json:
            click.echo(report_json(found))
        else:
            click.echo("\n".join(report_lines(found)))
        if move_to:
            moved = _usage_if_unsafe(idx.move_duplicates, found.groups, move_to, dry_run=dry_run)
            out("\n".join(move_lines(moved)))
