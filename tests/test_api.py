"""The public surface is explicit, documented and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import lookalike
from lookalike import errors


def test_all_names_exist_and_are_documented():
    for name in lookalike.__all__:
        obj = getattr(lookalike, name)
        if callable(obj) and not name.startswith("_"):
            assert obj.__doc__, f"{name} has no docstring"


def test_every_error_is_in_the_tree_and_drawn_in_the_docstring():
    for name in dir(errors):
        obj = getattr(errors, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, Exception)
            and obj.__module__ == errors.__name__
        ):
            assert issubclass(obj, errors.LookalikeError)
            assert name in errors.__doc__, f"{name} missing from the tree in errors.py"
            assert name in lookalike.__all__, f"{name} not exported"


def test_importing_the_package_and_cli_stays_light():
    code = (
        "import sys, lookalike, lookalike.cli\n"
        "heavy = {'torch', 'timm', 'faiss', 'matplotlib'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
