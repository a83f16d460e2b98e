"""The ``lookalike`` command: a thin layer over :class:`lookalike.Index`, one module per
command (``index``, ``search``, ``info``, ``remove``, ``demo``, ``duplicates``, ``serve``);
what they share (options, opening the index, errors as one line) is in
:mod:`lookalike.cli.options`.

Exit codes: 0 completed (even with skipped files), 1 failed, 2 usage error.
Expected errors print one line on stderr, never a traceback.
"""

from __future__ import annotations

import click

from . import demo, duplicates, index, info, remove, search, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lookalike")
def main() -> None:
    """Find the images most similar to a given one.

    \b
    lookalike index ~/Pictures           build or update the index
    lookalike search query.jpg           the 10 most similar indexed images
    lookalike search query.jpg FOLDER    update FOLDER's index, then search only it
    """


for _module in (index, search, info, remove, demo, duplicates, serve):
    main.add_command(_module.command)

__all__ = ["main"]
