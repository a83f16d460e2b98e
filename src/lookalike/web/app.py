"""The ASGI app: routes over :class:`~lookalike.web.service.Library`, inside the guards.

Routes (JSON unless noted; errors are ``{"error": message}`` with a 4xx status):

    GET  /                           the page (HTML; loads without the token)
    GET  /api/info                   model, counts, folders, failed files, capabilities
    GET  /api/images?offset=&limit=  {"total", "images": [{"id", "path", "thumb", "image"}]}
    GET  /api/images/{id}            {"id", "path", "thumb", "image"}
    GET  /api/similar/{id}?k=&folder=  {"query", "results": [{"rank", "score", "path", "id"}]}
    POST /api/search                 multipart, field ``image``: the same
    GET  /api/search?text=           CLIP indexes: the same
    GET  /api/search?upload=KEY      an earlier upload again (page reloads)
    GET  /api/duplicates?threshold=  {"threshold", "groups": [{"keep", "min_score", "members"}]}
    POST /api/duplicates/move        only with --allow-moves: move non-kept files to the trash
    GET  /thumb/{id}                 JPEG thumbnail (ETag; immutable with ?v=)
    GET  /thumb/upload/{key}         the thumbnail of an upload
    GET  /image/{id}                 the file itself (or a JPEG of it)

``thumb`` and ``image`` in answers are signed URLs (``?sig=``): they open without the token,
that image only, while this server runs (:mod:`lookalike.web.security`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..decode import DecodeFailure
from ..errors import ConfigError, LookalikeError, MissingDependencyError, QueryError
from .files import as_jpeg, media_type
from .moves import Mover
from .security import BodyTooLarge, Guard, SecurityMiddleware
from .service import Library
from .uploads import UploadDecoder, UploadError, image_part, read_body

HERE = Path(__file__).parent
Endpoint = Callable[[Request], Awaitable[Response]]
_NOT_FOUND = "no such image"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _status(e: LookalikeError) -> int:
    if isinstance(e, QueryError):
        if e.reason in ("unknown-id", "unknown-upload"):
            return 404
        return 413 if e.reason == "too-large" else 422
    if isinstance(e, ConfigError):
        return 400
    if isinstance(e, MissingDependencyError):
        return 501
    return 503  # the index or the model is unusable: the server's problem, said plainly


def _guarded(fn: Endpoint) -> Endpoint:
    """Expected errors as a 4xx/5xx JSON message; the route's own code stays plain."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except _NoSuchImage:
            return _error(404, _NOT_FOUND)
        except UploadError as e:
            return _error(e.status, str(e))
        except DecodeFailure as e:
            return _error(413 if e.reason == "too-large" else 422, str(e))
        except LookalikeError as e:
            return _error(_status(e), str(e))

    return wrapper


#: The largest integer SQLite (and PostgreSQL's bigint) stores: a larger id or offset is
#: answered here, before it can overflow in the database driver.
MAX_INT = 2**63 - 1


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer") from None
    if not -MAX_INT <= value <= MAX_INT:
        raise ConfigError(f"{name} is out of range")
    return value


def _folder(request: Request) -> str | None:
    folder = request.query_params.get("folder") or None
    if folder is not None and "\0" in folder:
        raise ConfigError("folder must not contain a NUL character")
    return folder


def _float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number") from None


class _NoSuchImage(Exception):
    """An id no image can have (beyond 64 bits): answered 404 like any unknown id."""


def _id(request: Request) -> int:
    value = int(request.path_params["image_id"])  # the route's pattern: digits only
    if value > MAX_INT:
        raise _NoSuchImage
    return value


class Routes:
    """The route handlers, bound to one :class:`Library`."""

    def __init__(self, lib: Library, guard: Guard, mover: Mover | None) -> None:
        import jinja2

        self.lib = lib
        self.guard = guard
        self.mover = mover
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True
        )
        self.page_template = env.get_template("index.html")

    async def page(self, request: Request) -> Response:
        info = await run_in_threadpool(self.lib.info)
        if request.scope.get("lookalike.access") != "token":
            # The page loads without the token (a reload: the address bar no longer holds
            # it), so it shows nothing of the index; the script fills the counts in.
            info = {**info, "images": "", "model": None}
        html = self.page_template.render(
            info=info,
            clip=info["clip"],
            duplicates=info["duplicates"],
            moves=self.mover is not None and info["duplicates"],
            max_upload_mb=self.guard.max_body_bytes // (1024 * 1024),
        )
        return HTMLResponse(html)

    async def info(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self.lib.info))

    async def images(self, request: Request) -> Response:
        offset, limit = _int(request, "offset", 0), _int(request, "limit", 100)
        return JSONResponse(await run_in_threadpool(self.lib.images, offset, limit))

    async def image_info(self, request: Request) -> Response:
        found = await run_in_threadpool(self.lib.image, _id(request))
        return JSONResponse(found) if found is not None else _error(404, _NOT_FOUND)

    async def similar(self, request: Request) -> Response:
        k, folder = _int(request, "k", 10), _folder(request)
        out = await run_in_threadpool(self.lib.similar, _id(request), k, folder)
        return JSONResponse(out)

    async def search_get(self, request: Request) -> Response:
        k, folder = _int(request, "k", 10), _folder(request)
        text, key = request.query_params.get("text"), request.query_params.get("upload")
        if key:
            out = await run_in_threadpool(self.lib.search_upload_key, key, k, folder)
        elif text is not None:
            out = await run_in_threadpool(self.lib.search_text, text, k, folder)
        else:
            raise ConfigError("give text= (CLIP indexes), or POST an image in the field 'image'")
        return JSONResponse(out)

    async def search_post(self, request: Request) -> Response:
        k, folder = _int(request, "k", 10), _folder(request)
        body = await read_body(request.stream(), self.guard.max_body_bytes)
        data = image_part(request.headers.get("content-type", ""), body)
        out = await run_in_threadpool(self.lib.search_upload, data, k, folder)
        return JSONResponse(out)

    async def duplicates(self, request: Request) -> Response:
        out = await run_in_threadpool(self.lib.duplicates, _float(request, "threshold"))
        return JSONResponse(out)

    async def move(self, request: Request) -> Response:
        if self.mover is None:
            return _error(403, "moving files is off: start the server with --allow-moves")
        try:
            body = await request.json()
        except ValueError:
            raise ConfigError("send a JSON body") from None
        out = await run_in_threadpool(self.mover.move, body)
        return JSONResponse(out)

    async def thumb(self, request: Request) -> Response:
        found = await run_in_threadpool(self.lib.thumb_of, _id(request))
        if found is None:
            return _error(404, _NOT_FOUND)
        real, version = found
        etag = f'"{version}"'
        immutable = request.query_params.get("v") == version
        cache = "private, max-age=31536000, immutable" if immutable else "private, no-cache"
        headers = {"ETag": etag, "Cache-Control": cache}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        data = await run_in_threadpool(self.lib.thumbs.get, real, version)
        return Response(data, media_type="image/jpeg", headers=headers)

    async def upload_thumb(self, request: Request) -> Response:
        data = self.lib.upload_thumb(request.path_params["key"])
        if data is None:
            return _error(404, "no such upload")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private"})

    async def image(self, request: Request) -> Response:
        real = await run_in_threadpool(self.lib.file_of, _id(request))
        if real is None:
            return _error(404, _NOT_FOUND)
        kind = await run_in_threadpool(media_type, real)
        if kind is not None:
            return FileResponse(real, media_type=kind, headers={"Cache-Control": "private"})
        data = await run_in_threadpool(as_jpeg, real, 4096, self.lib.thumbs.limits)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private"})


async def _too_large(request: Request, exc: Exception) -> Response:
    return _error(413, "upload is over the size limit")


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such route, no such static file) and 405, as JSON."""
    status = getattr(exc, "status_code", 400)
    if status == 404:
        return _error(404, "not found")
    if status == 405:
        return _error(405, f"method {request.method} not allowed here")
    return _error(status, str(getattr(exc, "detail", "bad request")))


def create_app(
    index: Any,
    *,
    guard: Guard | None = None,
    allow_moves: bool = False,
    max_upload_pixels: int = 50_000_000,
    thumbs_dir: Path | None = None,
    upload_timeout_s: float = 20.0,
    upload_decode_fn: str | None = None,
) -> SecurityMiddleware:
    """The web UI over an open index, inside its guards.

    Args:
        index: an open :class:`~lookalike.Index`; the caller closes it.
        guard: allowed hosts, access token, body limit (default: loopback names, a fresh
            random token, 20 MB).
        allow_moves: let the duplicate review move files into the trash folder beside the
            index (``<db>.trash/``), with an undo manifest.
        max_upload_pixels: decompression-bomb limit for uploads.
        thumbs_dir: thumbnail cache (default ``<db>.cache/thumbs``).
        upload_timeout_s: seconds an upload may take to decode (in its worker process).
        upload_decode_fn: ``"module:function"`` decoding uploads in the worker instead of
            :func:`~lookalike.web.uploads.decode_upload` (tests).

    Example:
        >>> import uvicorn  # doctest: +SKIP
        >>> with Index.open("photos.db") as idx:  # doctest: +SKIP
        ...     uvicorn.run(create_app(idx), host="127.0.0.1", port=8000)
    """
    from .files import Thumbnails

    guard = guard or Guard()
    # A file index keeps thumbnails and the trash beside it; a PostgreSQL index has no
    # file: thumbnails are then made on each request, and moves are off.
    db = Path(index.path) if Path(index.path).name else None
    if thumbs_dir is None and db is not None:
        thumbs_dir = db.with_name(db.name + ".cache") / "thumbs"
    lib = Library(
        index,
        Thumbnails(thumbs_dir),
        max_upload_pixels=max_upload_pixels,
        allow_moves=allow_moves and db is not None,
        uploads=UploadDecoder(timeout_s=upload_timeout_s, decode_fn=upload_decode_fn),
        sign=guard.signed,
    )
    mover = Mover(lib, db.with_name(db.name + ".trash")) if allow_moves and db else None
    r = Routes(lib, guard, mover)
    g = _guarded
    routes = [
        Route("/", g(r.page)),
        Route("/api/info", g(r.info)),
        Route("/api/images", g(r.images)),
        Route("/api/images/{image_id:int}", g(r.image_info)),
        Route("/api/similar/{image_id:int}", g(r.similar)),
        Route("/api/search", g(r.search_get), methods=["GET"]),
        Route("/api/search", g(r.search_post), methods=["POST"]),
        Route("/api/duplicates", g(r.duplicates)),
        Route("/api/duplicates/move", g(r.move), methods=["POST"]),
        Route("/thumb/{image_id:int}", g(r.thumb)),
        Route("/thumb/upload/{key:str}", g(r.upload_thumb)),
        Route("/image/{image_id:int}", g(r.image)),
        Mount("/static", StaticFiles(directory=os.fspath(HERE / "static")), name="static"),
    ]
    from starlette.exceptions import HTTPException

    handlers = {BodyTooLarge: _too_large, HTTPException: _http_error}
    app = Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]
    app.state.library = lib  # for the server's model warm-up
    return SecurityMiddleware(app, guard)
