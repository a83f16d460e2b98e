"""``lookalike info``: what the index holds and how it was built."""

from __future__ import annotations

import click

from .options import db_option, guard, open_index


@click.command("info")
@db_option
@click.option("--check", is_flag=True, help="Run SQLite's full integrity check too.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guard
def command(db: str | None, check: bool, as_json: bool) -> None:
    """Model, weights, pooling, preprocessing, dimension, counts, folders, failed files."""
    import json

    from ..present import info_lines

    with open_index(db, create=False) as idx:
        data = idx.info()
        if check:
            data["integrity"] = idx.check()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        click.echo("\n".join(info_lines(data)))
