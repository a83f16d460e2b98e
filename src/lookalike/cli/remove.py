"""``lookalike remove``: forget the images below a folder."""

from __future__ import annotations

import os

import click

from .options import db_option, guard, no_empty, open_index


@click.command("remove")
@click.argument("folder", type=click.Path())
@db_option
@guard
def command(folder: str, db: str | None) -> None:
    """Forget every indexed image below FOLDER (files on disk are untouched).

    A FOLDER with nothing indexed below it is an error that lists the indexed folders;
    the path of one indexed image forgets that image.
    """
    no_empty("FOLDER", folder)
    with open_index(db, create=False) as idx:
        n = idx.remove(folder, missing_ok=False)
    where = os.path.abspath(folder)
    if os.path.isfile(folder) and n == 1:  # one indexed image named by its path
        click.echo(f"removed 1 image: {where}")
    else:
        click.echo(f"removed {n} image{'' if n == 1 else 's'} below {where}")
