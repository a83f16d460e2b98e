"""The package's shape (#17): the public API and CLI stay as recorded, the import graph has
no circles and the engine never imports an adapter, and the top folder stays small.

``tests/api_snapshot.json`` records ``lookalike.__all__``, every public ``Index`` member
with its parameters, and every CLI command with its flags. A change to any of them is a
change of contract: regenerate the snapshot on purpose with
``LOOKALIKE_WRITE_SNAPSHOT=1 pytest tests/test_layout.py`` and say so in the changelog.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
from pathlib import Path
from typing import Any

import click
import pytest

import lookalike

PACKAGE = Path(lookalike.__file__).resolve().parent
SNAPSHOT = Path(__file__).with_name("api_snapshot.json")

#: Adapters: they may import the engine, never the other way round.
ADAPTERS = ("lookalike.cli", "lookalike.web", "lookalike.present", "lookalike.demo")
#: Modules directly in ``src/lookalike/`` (``__init__`` and ``__main__`` not counted).
MAX_TOP_MODULES = 10


# -- the public contract --------------------------------------------------------------


def _signature(member: Any) -> str:
    """Parameter names, kinds and defaults; annotations left out (they are not the contract
    a caller meets, and their spelling may change with an import)."""
    sig = inspect.signature(member)
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def _index_members() -> dict[str, str]:
    from lookalike import Index

    out = {}
    for name in sorted(dir(Index)):
        if name.startswith("_"):
            continue
        member = inspect.getattr_static(Index, name)
        if isinstance(member, property):
            out[name] = "property"
        elif isinstance(member, classmethod | staticmethod):
            out[name] = f"{type(member).__name__} {_signature(getattr(Index, name))}"
        else:
            out[name] = _signature(member)
    return out


def _cli_commands(group: click.Command, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    name = (prefix + " " + (group.name or "")).strip()
    params = []
    for p in group.params:
        if isinstance(p, click.Option):
            kind = "flag" if p.is_flag else "option"
            choices = getattr(p.type, "choices", None)
            params.append(
                f"{kind} {'/'.join(p.opts + p.secondary_opts)}"
                + (f" envvar={p.envvar}" if p.envvar else "")
                + (f" choices={','.join(map(str, choices))}" if choices else "")
                + (" multiple" if p.multiple else "")
            )
        else:
            params.append(f"argument {p.name} nargs={p.nargs} required={p.required}")
    out[name] = sorted(params)
    if isinstance(group, click.Group):
        for sub in sorted(group.commands):
            out.update(_cli_commands(group.commands[sub], name))
    return out


def _live_api() -> dict[str, Any]:
    from lookalike.cli import main

    return {
        "all": sorted(lookalike.__all__),
        "index": _index_members(),
        "cli": _cli_commands(main),
    }


def test_public_api_and_cli_are_unchanged() -> None:
    live = _live_api()
    if os.environ.get("LOOKALIKE_WRITE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(live, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    recorded = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    for part in ("all", "index", "cli"):
        assert live[part] == recorded[part], f"the public {part} changed"
    for name in lookalike.__all__:  # every exported name resolves (lazy ones too)
        assert getattr(lookalike, name) is not None


# -- the import graph --------------------------------------------------------------------


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports: at module level, in functions, and under
    ``if TYPE_CHECKING:`` (a circle of type names still ties two modules together)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # ``from .x import y``: y is a module when there is one by that name.
                targets = [
                    f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem
                    for a in node.names
                ]
            for target in targets:
                while target and target not in modules:  # ``import a.b.c`` of a name
                    target = target.rpartition(".")[0]
                if target.startswith("lookalike") and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_adapter(module: str) -> bool:
    return module == "lookalike.__main__" or any(
        module == a or module.startswith((a + ".", a + "_")) for a in ADAPTERS
    )


def test_the_import_graph_has_no_circles() -> None:
    cycles = _cycles(_imports(_modules()))
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_engine_never_imports_an_adapter() -> None:
    graph = _imports(_modules())
    up = sorted(
        f"{m} imports {t}"
        for m, targets in graph.items()
        if not _is_adapter(m)
        for t in targets
        if _is_adapter(t)
    )
    assert not up, "engine modules importing adapters: " + "; ".join(up)


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# -- the top folder -------------------------------------------------------------------------


def test_the_top_folder_holds_few_modules() -> None:
    top = sorted(
        p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    )
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules in src/lookalike/: {top}"


@pytest.mark.parametrize("folder", ["cli", "index", "embed/clip"])
def test_each_capability_has_its_folder(folder: str) -> None:
    assert (PACKAGE / folder / "__init__.py").is_file()


def test_architecture_lists_every_folder_and_only_those() -> None:
    """ARCHITECTURE.md's table names each package folder once, and no folder that is gone."""
    import re

    text = (Path(__file__).resolve().parents[1] / "ARCHITECTURE.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([a-z_]+)/` \|", text, flags=re.M))
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert listed == folders
    for path in re.findall(r"`((?:[a-z_]+/)+[a-z_]*\.py)`", text):
        assert (PACKAGE / path).is_file() or (PACKAGE.parents[1] / path).is_file(), path
