"""The local web UI (``lookalike serve``): browse, search by example or words, hop from image
to image, review duplicates. A thin adapter over :class:`~lookalike.Index`.

- :mod:`~lookalike.web.security`: the guards (host, token, cross-site writes, body size,
  response headers), one ASGI middleware around everything.
- :mod:`~lookalike.web.app`: the routes and :func:`create_app`.
- :mod:`~lookalike.web.service`: the index as JSON-ready dicts, one thread at a time.
- :mod:`~lookalike.web.files`: which files may be served; thumbnails cached on disk.
- :mod:`~lookalike.web.uploads`: multipart uploads parsed in memory, decoded in a worker
  process with a time limit.
- :mod:`~lookalike.web.moves`: moving reviewed duplicates to the trash (``--allow-moves``).
- :mod:`~lookalike.web.server`: uvicorn on a socket bound first (``--port 0``), the URL
  printed.

Needs the ``web`` extra (Starlette via FastAPI, uvicorn, Jinja2, python-multipart).

Example:
    >>> from lookalike import Index
    >>> from lookalike.web import create_app
    >>> with Index.open("photos.db") as idx:  # doctest: +SKIP
    ...     app = create_app(idx)  # any ASGI server can run it
"""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependencyError

_NEEDED = ("starlette", "uvicorn", "jinja2", "python_multipart")


def require_web() -> None:
    """Raise :class:`MissingDependencyError` naming the extra if a web package is missing."""
    import importlib.util

    missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f'the web UI needs {", ".join(missing)}: pip install "lookalike[web]"'
        )


def create_app(index: Any, **kwargs: Any) -> Any:
    """See :func:`lookalike.web.app.create_app`."""
    require_web()
    from .app import create_app as create

    return create(index, **kwargs)


__all__ = ["create_app", "require_web"]
