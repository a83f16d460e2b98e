"""PostgreSQL passwords are never shown (#20), with passwords that hold ``# ? @ / : %``, a
space or non-ASCII letters: URLs are split as libpq splits them (checked against libpq
itself), and every printed or served form is checked against a real server: ``info`` as
text and JSON, error messages (a missing database, a URL libpq refuses or misreads), the
web ``/api/info``, and log records.

Before: ``mask_url`` used ``urlsplit``, for which ``#`` starts a fragment and ``?`` a query,
so ``postgres:pa#ss@...`` was printed whole and ``Secr3t?Word%40`` leaked.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from lookalike import Index
from lookalike.cli import main
from lookalike.store import mask_url
from lookalike.store._pg_url import secrets_of, url_misread

psycopg = pytest.importorskip("psycopg")
from psycopg.conninfo import conninfo_to_dict  # noqa: E402

# As written in a URL: "%40" is "@", "%2F" "/", "%25" "%", "%20" a space (libpq wants
# those encoded); "#", "?", ":" and non-ASCII letters may stand as they are.
PASSWORDS = [
    "pa#ss",
    "Secr3t?Word",
    "Secr3t?Word%40",
    "a%2Fb:c%25d",
    "with%20space",
    "pässwörd",
    "p%C3%A4ss%23",
    "x:y?z#w%40%2F%25%20ü",
]
URL_FORMS = [
    "postgresql://postgres:{}@/photos?host=/run/postgresql",
    "postgres://ann:{}@db.example:5433/photos?sslmode=require",
    "postgresql://ann:{}@[::1]:5432,db2.example:5433/photos",
    "postgresql://ann@db.example/photos?password={}&sslmode=disable",
    "postgresql://ann@db.example/photos?sslmode=disable&sslpassword={}",
]


def forms_of(password: str) -> set[str]:
    """The password as written and as meant: neither may be shown."""
    return {password, unquote(password)}


@pytest.mark.parametrize("form", URL_FORMS)
@pytest.mark.parametrize("password", PASSWORDS)
def test_urls_are_split_as_libpq_splits_them(form, password):
    url = form.format(password)
    meant = conninfo_to_dict(url)
    key = "sslpassword" if "sslpassword" in form else "password"
    assert meant[key] == unquote(password)  # libpq reads the password as meant
    masked = mask_url(url)
    assert conninfo_to_dict(masked) == {**meant, key: "***"}  # nothing else changed
    assert not forms_of(password) & {masked, *masked.split("***")}
    assert all(p not in masked for p in forms_of(password))
    assert not url_misread(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ann:pa/ss@db.example/photos",  # "/" unescaped: libpq finds no user part
        "postgresql://ann:a@b@db.example/photos",  # "@" unescaped: libpq's host is "b@db..."
        "postgresql://ann:secret/photos",  # no "@": the password becomes a port
        # "@" first: an empty password, then host "secret" and database "x@db.example/..."
        "postgresql://ann:@secret/x@db.example/photos",
    ],
)
def test_urls_libpq_would_misread_are_masked_whole(url):
    assert url_misread(url)
    assert mask_url(url) == "postgresql://***"
    # Error messages are scrubbed of the whole span too, not only of libpq's piece of it.
    assert {"pa/ss", "a@b"} & set(secrets_of(url)) or "secret" in url


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"LOOKALIKE_DB": None, "PGPASSWORD": None})
    return result.exit_code, result.stdout + result.stderr


def assert_hidden(text: str, password: str) -> None:
    for shown in forms_of(password):
        assert shown not in text, (shown, text)


@pytest.mark.parametrize("password", PASSWORDS)
def test_every_printed_and_served_form_hides_the_password(pg_url, password, caplog):
    caplog.set_level(logging.DEBUG)  # psycopg's and anyone's log records, at every level
    url = pg_url.replace("postgres:@", f"postgres:{password}@", 1)
    assert conninfo_to_dict(url)["password"] == unquote(password)
    with Index.open(url) as idx:  # trust authentication: any password logs in
        assert idx.location.startswith("postgresql://postgres:***@/")
        assert_hidden(json.dumps(idx.info()), password)
        pytest.importorskip("starlette")
        from starlette.testclient import TestClient

        from lookalike.web import create_app
        from lookalike.web.security import Guard

        app = create_app(idx, guard=Guard(token=None))
        served = TestClient(app, base_url="http://127.0.0.1:8765").get("/api/info")
        assert served.status_code == 200 and served.json()["db"] == idx.location
        assert_hidden(served.text, password)
    code, text = run("info", "--db", url)
    assert code == 0 and "postgresql://postgres:***@/" in text
    assert_hidden(text, password)
    code, text = run("info", "--db", url, "--json")
    assert code == 0 and json.loads(text)["db"].startswith("postgresql://postgres:***@/")
    assert_hidden(text, password)
    missing = url.replace("/lookalike_test_", "/no_such_db_", 1)
    code, text = run("info", "--db", missing)
    assert code == 1 and text.startswith("lookalike: error: cannot connect to postgresql://")
    assert "postgres:***@" in text and "no_such_db_" in text
    assert_hidden(text, password)
    assert_hidden("\n".join(r.getMessage() for r in caplog.records), password)


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("with space", 'unexpected spaces found in "***"'),  # libpq quotes the password
        ("bad%zzpercent", "invalid percent-encoded token"),
        # Misread: shown whole as postgresql://***, and libpq's words are left out (they
        # would quote the pieces it cut the password into); "pa@ss" even logs in (with
        # password "pa", host "ss@" overridden by ?host=), finding no index there.
        ("pa/ss", "percent-encode"),
        ("pa@ss", "no index at postgresql://***;"),
    ],
)
def test_urls_libpq_refuses_are_errors_without_the_password(pg_url, password, says):
    url = pg_url.replace("postgres:@", f"postgres:{password}@", 1)
    code, text = run("info", "--db", url)
    assert code == 1 and text.startswith("lookalike: error: ") and says in text, text
    assert len(text.strip().splitlines()) == 1
    pieces = {password, *password.replace("@", "/").split("/")} - {""}
    if "/" in password or "@" in password:
        assert "postgresql://***" in text
        for piece in pieces:
            assert piece not in text.split("percent-encode")[0], (piece, text)
    assert_hidden(text, password)


@pytest.mark.parametrize(
    ("url", "password"),
    [
        # "?" first and a "/" later: libpq finds no user part, takes "u:" for the host
        # and the rest of the password for a parameter without "=", which it quotes.
        ("postgresql://u:?Sec/ret9@db.example/photos", "?Sec/ret9"),
        ("postgresql://u:?Sec/ret9@/photos?host=/run/postgresql", "?Sec/ret9"),
        # An unescaped "&" first in a ?password= value: the rest is a parameter of its own.
        ("postgresql://u@db.example/photos?password=&Secret9", "&Secret9"),
        ("postgresql://u@db.example/photos?sslpassword=&Secret9&sslmode=disable", "&Secret9"),
    ],
)
def test_a_parameter_libpq_would_quote_is_never_shown(url, password):
    """Review of #20: libpq refuses these URLs with "missing key/value separator "=" in
    URI query parameter: "<the password's tail>"" (or "invalid URI query parameter"), and
    ``mask_url`` found no password in
    them: ``info`` printed the password twice, in the URL and in libpq's words."""
    with pytest.raises(psycopg.ProgrammingError, match="URI query parameter"):
        conninfo_to_dict(url)
    assert url_misread(url)
    assert mask_url(url) == "postgresql://***"
    code, text = run("info", "--db", url)
    assert code == 1 and "percent-encode" in text, text
    secret = password.lstrip("?&")
    assert secret not in text and secret[:6] not in text, text
