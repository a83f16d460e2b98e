"""``lookalike index``: build or update the index of folders."""

from __future__ import annotations

import sys
from typing import Any

import click

from .options import (
    db_option,
    guard,
    model_options,
    no_empty,
    no_wait_option,
    open_index,
    update_index,
)


@click.command("index")
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@db_option
@model_options
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
@no_wait_option
@guard
def command(
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

    from ..errors import NothingIndexedError
    from ..index.preflight import check_folders
    from ..present import report_lines

    no_empty("FOLDER", *folders)
    check_folders(folders)  # before any model loads
    with open_index(db, **model_opts) as idx:
        try:
            report = update_index(
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
