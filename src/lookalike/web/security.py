"""The web server's guards, as one ASGI middleware around the whole app.

Each guard answers before the app sees the request, so no route can forget one:

- **Host** (DNS rebinding): a page on ``evil.example`` whose name resolves to 127.0.0.1
  sends ``Host: evil.example``; only the served names are answered, anything else is 403.
- **Access**: a random token per server start, printed in the URL. Accepted as ``?token=``
  (the printed URL, a "Copy link" link, scripts) or as ``Authorization: Bearer`` (the
  page's own requests: it keeps the token in this origin's ``localStorage``). Image and
  thumbnail URLs in the API's answers carry instead a signature of their own path
  (``?sig=``, an HMAC under a key drawn at each start): an ``<img>`` cannot send a header,
  and a signed URL opens that one image and nothing else. Without any of these: 401. The
  page itself and its static files load without: they hold nothing of the index.
- **No cookie**: a cookie is sent to every server on 127.0.0.1 whatever its port (cookies
  ignore ports; ``SameSite`` counts other ports as the same site), so any local dev
  server would receive it and could replay it here. So no cookie is ever set; a request
  still carrying the old ``lookalike_token_<port>`` cookie gets it expired.
- **Cross-site requests**: a POST whose ``Sec-Fetch-Site`` is neither ``same-origin`` nor
  ``none``, or whose ``Origin`` is not this server, is 403; so is any other request that a
  page from another origin (another port included) makes in the background (anything
  but a navigation). No CORS header is ever sent.
- **Body size**: a declared ``Content-Length`` over the limit is 413 before any byte is
  read; a body without one is counted while it streams and cut off at the limit.
- **Headers** on every response: ``X-Content-Type-Options: nosniff``, a strict
  Content-Security-Policy (scripts and styles from this server only, no inline code),
  ``Referrer-Policy: no-referrer`` (no token or signed URL leaves in a Referer), no
  framing; and ``Server-Timing: app;dur=MS``, the time to the response headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
_READ_METHODS = frozenset({"GET", "HEAD"})
_SAME_SITE = frozenset({"same-origin", "none"})  # "none": the user typed the URL
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Paths served without a credential: the page shell and its scripts and styles.
PUBLIC_PATHS = ("/",)
PUBLIC_PREFIXES = ("/static/",)
SIGNATURE_PARAM = "sig"


@dataclass(frozen=True)
class Guard:
    """What the middleware enforces.

    Attributes:
        allowed_hosts: host names (no port) a request's ``Host`` may carry.
        token: the access token, or ``None`` for none (tests of other guards only).
        max_body_bytes: the largest request body accepted (uploads).
        key: the secret that signs image URLs; random at each start, never sent anywhere.
    """

    allowed_hosts: frozenset[str] = LOCAL_HOSTS
    token: str | None = field(default_factory=lambda: secrets.token_urlsafe(18))
    max_body_bytes: int = 20 * 1024 * 1024
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def signature(self, path: str) -> str:
        """The signature of ``path`` (no query): 128 bits of HMAC-SHA256, base64url."""
        mac = hmac.new(
            self.key, b"lookalike-url\0" + path.encode("utf-8", "surrogateescape"), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(mac[:16]).decode("ascii").rstrip("=")

    def signed(self, path: str, query: str = "") -> str:
        """``path?query&sig=...``: a URL that opens ``path`` (GET) without the token."""
        sig = f"{SIGNATURE_PARAM}={self.signature(path)}"
        return f"{path}?{query}&{sig}" if query else f"{path}?{sig}"


class BodyTooLarge(Exception):
    """The request body passed the limit while it streamed in."""


def host_name(host: str) -> str:
    """``"[::1]:8000"`` -> ``"::1"``, ``"Example.org:80"`` -> ``"example.org"``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def cookie_name(scope: Scope) -> str:
    """The cookie older versions kept the token in (one per port; now expired on sight)."""
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
    "<p>This access token is not this server's: open the full URL that "
    "<code>lookalike serve</code> printed at its last start (it ends in "
    "<code>?token=...</code>), or a link made with <em>Copy link</em> since.</p>"
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
        """``None`` to let the request through (``scope["lookalike.access"]`` says on what
        grounds: ``"token"``, ``"signature"``, ``"public"``), else ``(status, message)``."""
        host = headers.get("host")
        if host is None or host_name(host) not in self.guard.allowed_hosts:
            return 403, "host not allowed (open the URL printed by lookalike serve)"
        method = scope["method"]
        fetch_site = (headers.get("sec-fetch-site") or "").lower()
        if method in _UNSAFE_METHODS or method == "OPTIONS":
            if fetch_site and fetch_site not in _SAME_SITE:
                return 403, "cross-site request refused"
            origin = headers.get("origin")
            if origin is not None and not _same_origin(origin, host, scope):
                return 403, "cross-origin request refused"
        elif fetch_site in ("cross-site", "same-site") and (
            (headers.get("sec-fetch-mode") or "").lower() != "navigate"
        ):
            # A page of another origin (another port of 127.0.0.1 is "same-site") loading
            # something of ours in the background: refused before any work. Following a
            # link here (a navigation) is the user's doing and goes on to the token check.
            return 403, "cross-site request refused"
        old = cookie_name(scope)
        if _cookie(headers, old) is not None:
            # Left by an older lookalike: it would keep going to every port; expire it.
            expired = f"{old}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
            set_cookie.append((b"set-cookie", expired.encode()))
        token = self.guard.token
        if token is None:
            scope["lookalike.access"] = "token"
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        auth = headers.get("authorization", "")
        given = query.get("token", [None])[0]
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        for candidate in (given, bearer):
            if candidate is not None and _same(candidate, token):
                scope["lookalike.access"] = "token"
                return None
        path = scope["path"]
        if method in _READ_METHODS:
            sig = query.get(SIGNATURE_PARAM, [None])[0]
            if sig is not None and _same(sig, self.guard.signature(path)):
                scope["lookalike.access"] = "signature"
                return None
            if given is None and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)):
                scope["lookalike.access"] = "public"
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


def _same(given: str, expected: str) -> bool:
    """Constant-time equality of a credential from a request and the expected one."""
    return secrets.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


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
