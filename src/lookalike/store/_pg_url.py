"""PostgreSQL URLs: recognising them and showing them without their password.

Kept free of psycopg so that the CLI and :func:`lookalike.store.open_store` can tell a URL
from a file name (and say which extra to install) without the driver.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")
MASK = "***"
_SECRET_KEYS = frozenset({"password", "sslpassword"})


def is_postgres_url(location: str | os.PathLike[str] | bytes | None) -> bool:
    """True for ``postgresql://...`` or ``postgres://...`` (any case), never for a file."""
    if location is None or isinstance(location, bytes | os.PathLike):
        return False
    return location.strip().lower().startswith(SCHEMES)


def mask_url(url: str) -> str:
    """``url`` with any password (in the user part or the query) replaced by ``***``.

    Example:
        >>> mask_url("postgresql://ann:s3cret@db.example:5433/photos?sslmode=require")
        'postgresql://ann:***@db.example:5433/photos?sslmode=require'
    """
    try:
        parts = urlsplit(url.strip())
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            if ":" in user:
                name, _, password = user.partition(":")
                user = f"{name}:{MASK}" if password else name
            netloc = f"{user}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, MASK if k.lower() in _SECRET_KEYS else v) for k, v in pairs],
                safe="/*",
                quote_via=quote,
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # unparsable: show only the scheme, never the rest
        return url.split("://", 1)[0] + "://" + MASK


def secrets_of(url: str) -> list[str]:
    """The password strings in ``url`` (raw and percent-decoded), to scrub from messages."""
    found: list[str] = []
    try:
        parts = urlsplit(url.strip())
        if parts.password:
            found.append(parts.password)
        user = parts.netloc.rpartition("@")[0]
        if ":" in user:
            found.append(user.partition(":")[2])
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key.lower() in _SECRET_KEYS and value:
                found.append(value)
    except ValueError:
        pass
    env = os.environ.get("PGPASSWORD")
    if env:
        found.append(env)
    # Longest first: a password that contains another is replaced whole.
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` masked and every password in it hidden."""
    text = text.replace(url.strip(), mask_url(url))
    for secret in secrets_of(url):
        text = text.replace(secret, MASK)
    return text
