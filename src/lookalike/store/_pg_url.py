"""PostgreSQL URLs: recognising them and showing them without their password.

A URL is read here the way libpq reads it (``conninfo_uri_parse_options`` in
``fe-connect.c``), not as :func:`urllib.parse.urlsplit` does: libpq knows no fragment, so
``#`` is part of a password, and it ends the user part at the first ``@`` before any
``/``, so ``?`` is part of a password too. A URL libpq would read other than its writer
meant (an ``@`` in the host, a port that is not a number: a password with an unescaped
``@`` or ``/``) is shown as ``postgresql://***``, whole. The tests check the split
against libpq itself (``psycopg.conninfo.conninfo_to_dict``).

Kept free of psycopg so that the CLI and :func:`lookalike.store.open_store` can tell a URL
from a file name (and say which extra to install) without the driver.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SCHEMES = ("postgresql://", "postgres://")
MASK = "***"
_SECRET_KEYS = frozenset({"password", "sslpassword"})
_KEYWORD = re.compile(r"[A-Za-z0-9_]+")  # libpq's keywords: sslmode, target_session_attrs...
HINT = (
    "the URL does not read as meant: percent-encode @ / : ? # % and spaces in the user "
    "name and password (@ as %40, / as %2F), or keep the password in ~/.pgpass or PGPASSWORD"
)


def is_postgres_url(location: str | os.PathLike[str] | bytes | None) -> bool:
    """True for ``postgresql://...`` or ``postgres://...`` (any case), never for a file."""
    if location is None or isinstance(location, bytes | os.PathLike):
        return False
    return location.strip().lower().startswith(SCHEMES)


@dataclass(frozen=True)
class _Split:
    """A URL cut where libpq cuts it. ``password`` is a ``(start, end)`` span or ``None``."""

    prefix: str  # "postgresql://"
    user_end: int  # end of the user name (index into the URL)
    password: tuple[int, int] | None
    rest: int  # start of the host part
    query: int | None  # index of the "?" that starts the parameters
    misread: bool  # libpq would read it other than its writer meant


def _split(url: str) -> _Split | None:
    low = url.lower()
    prefix = next((s for s in SCHEMES if low.startswith(s)), None)
    if prefix is None:
        return None
    start = len(prefix)
    # The user part ends at the first "@" met before any "/" (libpq's look-ahead).
    at = start
    while at < len(url) and url[at] not in "@/":
        at += 1
    password = None
    user_end = start
    has_user = at < len(url) and url[at] == "@"
    if has_user:
        colon = url.find(":", start, at)
        user_end = colon if colon >= 0 else at
        if colon >= 0:
            password = (colon + 1, at)
        rest = at + 1
    else:
        rest = start
    question = url.find("?", rest)
    query = question if question >= 0 else None
    # The host part ends at "/" or "?"; what libpq then takes for host and port.
    end = len(url) if query is None else query
    slash = url.find("/", rest, end)
    hosts = url[rest : slash if slash >= 0 else end]
    # An "@" after the user part (in a host or the database name): a password with an
    # unescaped "@" that libpq cut at its first one.
    misread = "@" in url[rest:end] or (not has_user and "@" in url[start:end])
    for host in hosts.split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        number = port.rpartition(":")[2]
        if ":" in port and number and not number.isdigit():
            misread = True  # a "port" that is a word: most likely half a password
    if query is not None and any(_quoted(item) for item in url[query + 1 :].split("&")):
        misread = True
    return _Split(url[:start], user_end, password, rest, query, misread)


def _quoted(item: str) -> bool:
    """Whether libpq would refuse the query parameter ``item`` and quote it: no ``=``, or
    a key no keyword can be. Here that is a piece of a password (one that starts with
    ``?`` and holds a ``/``; an unescaped ``&`` in a ``password=`` value)."""
    key, eq, _ = item.partition("=")
    return bool(item) and (not eq or _KEYWORD.fullmatch(unquote(key)) is None)


def _params(url: str, query: int | None) -> list[tuple[str, str, int, int]]:
    """``(key, raw value, start, end)`` of each query parameter (spans in ``url``)."""
    if query is None:
        return []
    out = []
    pos = query + 1
    for item in url[query + 1 :].split("&"):
        key, eq, _ = item.partition("=")
        if eq:
            out.append(
                (unquote(key).lower(), item[len(key) + 1 :], pos + len(key) + 1, pos + len(item))
            )
        pos += len(item) + 1
    return out


def mask_url(url: str) -> str:
    """``url`` with any password (in the user part or the query) replaced by ``***``.

    Example:
        >>> mask_url("postgresql://ann:s3cret@db.example:5433/photos?sslmode=require")
        'postgresql://ann:***@db.example:5433/photos?sslmode=require'
        >>> mask_url("postgresql://ann:pa#ss?word@/photos?host=/run/postgresql")
        'postgresql://ann:***@/photos?host=/run/postgresql'
    """
    url = url.strip()
    cut = _split(url)
    if cut is None or cut.misread:
        return (cut.prefix if cut is not None else url.split("://", 1)[0] + "://") + MASK
    pieces = []
    pos = 0
    spans: list[tuple[int, int, str]] = []
    if cut.password is not None:
        start, end = cut.password
        if end > start:
            spans.append((start, end, MASK))
        elif start > 0 and url[start - 1] == ":":  # "user:@": no password, shown "user@"
            spans.append((start - 1, end, ""))
    spans += [
        (s, e, MASK) for key, _, s, e in _params(url, cut.query) if key in _SECRET_KEYS and e > s
    ]
    for start, end, shown in sorted(spans):
        pieces += [url[pos:start], shown]
        pos = end
    pieces.append(url[pos:])
    return "".join(pieces)


def url_misread(url: str) -> bool:
    """True when libpq would read ``url`` other than its writer meant (:data:`HINT`)."""
    cut = _split(url.strip())
    return cut is not None and cut.misread


def secrets_of(url: str) -> list[str]:
    """Every string in ``url`` that may be a password, raw and percent-decoded, as libpq
    and as a URL parser would read it; to scrub from messages (over-masking is safe)."""
    url = url.strip()
    found: list[str] = []
    cut = _split(url)
    if cut is not None:
        if cut.password is not None:
            found.append(url[cut.password[0] : cut.password[1]])
        found += [raw for key, raw, _, _ in _params(url, cut.query) if key in _SECRET_KEYS]
        # Whatever lies between the user name and the last "@" before the parameters: a
        # password with an unescaped "@" or "/" that libpq cut elsewhere.
        end = len(url) if cut.query is None else cut.query
        colon = url.find(":", len(cut.prefix), end)
        last_at = url.rfind("@", len(cut.prefix), end)
        if 0 <= colon < last_at:
            found.append(url[colon + 1 : last_at])
    try:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
    except ValueError:
        pass
    env = os.environ.get("PGPASSWORD")
    if env:
        found.append(env)
    found += [unquote(s) for s in found]
    # Longest first: a password that contains another is replaced whole.
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` masked and every password in it hidden."""
    text = text.replace(url.strip(), mask_url(url))
    for secret in secrets_of(url):
        text = text.replace(secret, MASK)
    return text
