"""Every flag the README shows for a command exists (#20 item 14: the README said
``search ... FOLDER`` takes ``--no-wait``; it did not), and every option of every
command explains itself in ``--help`` (#20 item 15: ``demo -k`` had no help text)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from lookalike.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
_COMMAND = re.compile(r"(?:^|[\s/=;&|(])lookalike\s+([a-z]+)\b")
_FLAG = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def _command_lines(text: str) -> list[tuple[str, str]]:
    """``(command, text after it)`` for each use of ``lookalike CMD`` in a code block (and
    its indented continuation lines) or an inline code span."""
    found: list[tuple[str, str]] = []
    for lang, block in re.findall(r"```([^\n]*)\n(.*?)```", text, flags=re.S):
        if lang.strip() == "python":
            continue
        current = None
        for line in block.splitlines():
            line = line.split("  #")[0]  # a trailing shell comment is prose
            m = _COMMAND.search(line)
            if m:
                current = m.group(1)
                found.append((current, line[m.end() :]))
            elif current and line.startswith(" "):
                found.append((current, line))
            else:
                current = None
    for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        m = _COMMAND.search(span)
        if m:
            found.append((m.group(1), span[m.end() :]))
    return found


def _flags(cmd: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for p in cmd.params:
        names.update(getattr(p, "opts", []))
        names.update(getattr(p, "secondary_opts", []))
    return names


def test_the_readme_shows_commands():
    lines = _command_lines(README.read_text(encoding="utf-8"))
    assert {c for c, _ in lines} >= {"index", "search", "info", "remove", "demo", "duplicates"}


def test_every_flag_the_readme_shows_for_a_command_exists():
    missing = []
    for command, rest in _command_lines(README.read_text(encoding="utf-8")):
        cmd = main.commands.get(command)
        if cmd is None:
            missing.append(f"lookalike {command}: no such command")
            continue
        for part in re.split(r"[\s\[\]|]+", rest):
            for flag in _FLAG.findall(part.split("=")[0]):
                for single in flag.split("/"):
                    if single.startswith("-") and single not in _flags(cmd):
                        missing.append(f"lookalike {command} {single}")
    assert not missing, missing


def test_the_parser_finds_the_no_wait_of_search():
    text = "```text\nlookalike search QUERY [FOLDER] [-k 10]\n                 [--no-wait]\n```\n"
    assert ("search", "                 [--no-wait]") in _command_lines(text)


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_option_has_help_text(name):
    cmd = main.commands[name]
    bare = [
        p.opts[0]
        for p in cmd.params
        if isinstance(p, click.Option) and not (p.help and p.help.strip())
    ]
    assert not bare, f"lookalike {name}: options without help: {bare}"
