"""``lookalike serve``: the local web UI over an index (a thin layer over lookalike.web)."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import ConfigError
from .options import db_option, guard, model_options, open_index


@click.command("serve")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port; 0 picks a free one (the URL printed says which).",
)
@click.option(
    "--open/--no-open",
    "open_browser",
    default=True,
    show_default=True,
    help="Open the page in the default browser.",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a --host other than loopback: anyone who can reach it and has the URL's "
    "token sees your images.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="Another host name clients may use to reach the server (repeatable).",
)
@click.option(
    "--allow-moves",
    is_flag=True,
    help="Let the duplicate review move files into <db>.trash/ (with an undo manifest).",
)
@click.option(
    "--max-upload-mb",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Largest query image accepted.",
)
@model_options
@guard
def command(
    db: str | None,
    host: str,
    port: int,
    open_browser: bool,
    allow_remote: bool,
    allowed_hosts: tuple[str, ...],
    allow_moves: bool,
    max_upload_mb: int,
    **model_opts: Any,
) -> None:
    """Serve the index as a web page: browse, search by image or words, hop, review.

    The first line printed is the URL to open; it carries an access token.
    """
    from ..web import require_web

    require_web()
    from ..web.server import ServeOptions, is_loopback, serve

    if not is_loopback(host):
        if not allow_remote:
            raise click.UsageError(
                f"--host {host} is reachable from other machines; add --allow-remote to mean it"
            )
        click.echo(
            f"lookalike: warning: serving on {host}: anyone who can reach it and has the "
            "URL's token can see every indexed image (plain HTTP, no TLS)",
            err=True,
        )
    options = ServeOptions(
        host=host,
        port=port,
        allowed_hosts=allowed_hosts,
        allow_moves=allow_moves,
        max_upload_bytes=max_upload_mb * 1024 * 1024,
        open_browser=open_browser,
    )

    def echo(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()
        click.echo("lookalike: serving; press Ctrl-C to stop", err=True)

    with open_index(db, **model_opts) as idx:
        try:
            serve(idx, options, echo)
        except KeyboardInterrupt:
            pass  # uvicorn has already shut down gracefully
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    click.echo("lookalike: stopped", err=True)
