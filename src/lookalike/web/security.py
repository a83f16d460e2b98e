"""The web server's guards, as one ASGI middleware around the whole app.

Each guard answers before the app sees the request, so no route can forget one:

- **Host** (DNS rebinding): a page on ``evil.example`` whose name resolves to 127.0.0.1
  sends ``Host: evil.example``; only the served names are answered, anything else is 403.
- **Access token**: random per server start, printed in the URL. Accepted as ``?token=``
  on any request (scripts), as a cookie (the page: set the first time the URL is opened),
  or as ``Authorization: Bearer``. Without it: 401.
- **Cross-site writes**: a POST whose ``Sec-Fetch-Site`` is neither ``same-origin`` nor
  ``none``, or whose ``Origin`` is not this server, is 403. No CORS header is ever sent.
- **Body size**: a declared ``Content-Length`` over the limit is 413 before any byte is
  read; a body without one is counted while it streams and cut off at the limit.
- **Headers** on every response: ``X-Content-Type-Options: nosniff``, a strict
  Content-Security-Policy (scripts and styles from this server only, no inline code),
  ``Referrer-Policy: no-referrer`` (the token never leaves in a Referer), no framing;
  and ``Server-Timing: app;dur=MS``, the time to the response headers.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SAME_SITE = frozenset({"same-origin", "none"})  # "none": the user typed the URL
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Guard:
    """What the middleware enforces.

    Attributes:
        allowed_hosts: host names (no port) a request's ``Host`` may carry.
        token: the access token, or ``None`` for none (tests of other guards only).
        max_body_bytes: the largest request body accepted (uploads).
    """

    allowed_hosts: frozenset[str] = LOCAL_HOSTS
    token: str | None = field(default_factory=lambda: secrets.token_urlsafe(18))
    max_body_bytes: int = 20 * 1024 * 1024


class BodyTooLarge(Exception):
    """The request body passed the limit while it streamed in."""


def host_name(host: str) -> str:
    """``"[::1]:8000"`` -> ``"::1"``, ``"Example.org:80"`` -> ``"example.org"``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def cookie_name(scope: Scope) -> str:
    """One cookie per port: cookies ignore ports, and two servers must not clash."""
    server = scope.get("server") or ("", 0)
    return f"lookalike_token_{server[1] or 0}"


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers") or []:
        name = key.decode("latin-1").lower()
        # A repeated header: keep the first; a smuggled second Host must not win.
        out.setdefault(name, value.decode("latin-1"))
    return out


async def _answer(send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_NO_TOKEN_PAGE = (
    "<!doctype html><meta charset=utf-8><title>lookalike</title>"
    "<p>This page needs its access token: open the full URL that "
    "<code>lookalike serve</code> printed (it ends in <code>?token=...</code>).</p>"
)


async def _page(send: Send, status: int, html: str) -> None:
    body = html.encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    """The guards of :mod:`lookalike.web.security` around ``app``."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        set_cookie: list[tuple[bytes, bytes]] = []
        started = False
        t0 = time.perf_counter()

        async def send_secure(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                kept = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != b"access-control-allow-origin"
                ]
                names = {k.lower() for k, _ in kept}
                if b"cache-control" not in names:
                    kept.append((b"cache-control", b"no-store"))
                # Time to the response's headers (its whole work for JSON answers): what
                # bench_web.py reads as the server-side latency.
                timing = f"app;dur={(time.perf_counter() - t0) * 1000:.2f}".encode()
                kept.append((b"server-timing", timing))
                message["headers"] = kept + list(SECURITY_HEADERS) + set_cookie
            await send(message)

        problem = self._check(scope, headers, set_cookie)
        if problem is not None:
            if problem[0] == 401 and scope["path"] == "/":
                await _page(send_secure, 401, _NO_TOKEN_PAGE)  # a person, not a script
                return
            await _answer(send_secure, *problem, [])
            return
        if scope["method"] in _UNSAFE_METHODS:
            length = headers.get("content-length")
            if length is not None:
                if not length.isdigit():
                    await _answer(send_secure, 400, "bad Content-Length", [])
                    return
                if int(length) > self.guard.max_body_bytes:
                    # Answered before reading: the client may still be sending, so close.
                    await _answer(send_secure, 413, self._too_large(), [(b"connection", b"close")])
                    return
            receive = self._counting(receive)
        try:
            await self.app(scope, receive, send_secure)
        except BodyTooLarge:
            # The app has a handler for this; here only if a route let it escape.
            if not started:
                await _answer(send_secure, 413, self._too_large(), [(b"connection", b"close")])

    def _too_large(self) -> str:
        return f"upload is over the {self.guard.max_body_bytes // (1024 * 1024)} MB limit"

    def _check(
        self, scope: Scope, headers: dict[str, str], set_cookie: list[tuple[bytes, bytes]]
    ) -> tuple[int, str] | None:
        host = headers.get("host")
        if host is None or host_name(host) not in self.guard.allowed_hosts:
            return 403, "host not allowed (open the URL printed by lookalike serve)"
        if scope["method"] in _UNSAFE_METHODS or scope["method"] == "OPTIONS":
            fetch_site = headers.get("sec-fetch-site")
            if fetch_site is not None and fetch_site.lower() not in _SAME_SITE:
                return 403, "cross-site request refused"
            origin = headers.get("origin")
            if origin is not None and not _same_origin(origin, host, scope):
                return 403, "cross-origin request refused"
        token = self.guard.token
        if token is None:
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [None])[0]
        if given is not None and secrets.compare_digest(given.encode(), token.encode()):
            name = cookie_name(scope)
            if _cookie(headers, name) != token:
                # HttpOnly: page scripts never see it; Strict: never sent cross-site.
                value = f"{name}={token}; Path=/; HttpOnly; SameSite=Strict"
                set_cookie.append((b"set-cookie", value.encode()))
            return None
        auth = headers.get("authorization", "")
        for candidate in (_cookie(headers, cookie_name(scope)), auth.removeprefix("Bearer ")):
            if candidate and secrets.compare_digest(candidate.encode(), token.encode()):
                return None
        return 401, "missing or wrong access token: open the URL printed by lookalike serve"

    def _counting(self, receive: Receive) -> Receive:
        limit = self.guard.max_body_bytes
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        return counted


def _cookie(headers: dict[str, str], name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is just no cookie
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _same_origin(origin: str, host: str, scope: Scope) -> bool:
    """``Origin`` names this server: same scheme, host and port as the request."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if origin == "null" or not parts.netloc:
        return False
    scheme = scope.get("scheme", "http")
    return parts.scheme == scheme and parts.netloc.lower() == host.strip().lower()
