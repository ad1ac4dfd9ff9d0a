"""The written rules of docs/architecture.md, checked on the source: no import cycles; wheel/ knows
nothing of binaries; the core (analysis/, repair/, report.py) never imports a format module by name,
only the platforms registry; platforms/ gets policy data by injection; no public name is shadowed
by a submodule.

Every import counts, also those inside functions (they run when the function does) and those under
``if TYPE_CHECKING:`` (a type-level cycle is a design cycle), except the lazy exports of the package
itself (see _graph).  The violations that exist today are
listed in KNOWN: each is a TODO of issue 14, and the test fails when one of them is gone, so that the
list only ever shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dynawheel

PACKAGE = Path(dynawheel.__file__).parent

# module -> modules it may import although the rules forbid it (TODO issue 14: remove each)
KNOWN: dict[str, set[str]] = {}  # none left: keep it so
KNOWN_CYCLES: set[frozenset[str]] = set()  # none left: keep it so
KNOWN_SHADOWED: set[str] = set()

WHEEL_MAY_IMPORT = ("dynawheel.wheel", "dynawheel.errors", "dynawheel.fsutil", "dynawheel.magic")
PLATFORMS_MAY_IMPORT = ("dynawheel.platforms", "dynawheel.binary", "dynawheel.errors", "dynawheel.search",
                        "dynawheel.tools", "dynawheel.fsutil", "dynawheel.magic", "dynawheel.log")
CORE = ("dynawheel.analysis", "dynawheel.repair", "dynawheel.report")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The dynawheel modules `name` imports (`from . import x` counts as importing x when x is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dynawheel"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("dynawheel"):
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            found.update(subs or {target})
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    """Who imports whom.  The package itself is left out as an importer: it is the facade of the public
    API, whose imports run on attribute access (PEP 562), never when a submodule imports the package."""
    modules = _modules()
    return {name: _imports(name, path, set(modules)) if name != "dynawheel" else set()
            for name, path in modules.items()}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

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
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _violations(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    bad: dict[str, set[str]] = {}
    for name, targets in graph.items():
        if _within(name, ("dynawheel.wheel",)):
            wrong = {t for t in targets if not _within(t, WHEEL_MAY_IMPORT) and t != "dynawheel"}
        elif _within(name, ("dynawheel.platforms",)):
            wrong = {t for t in targets if not _within(t, PLATFORMS_MAY_IMPORT)}
        elif _within(name, CORE):
            wrong = {t for t in targets if t.startswith("dynawheel.platforms.")}
        else:
            wrong = set()
        if wrong:
            bad[name] = wrong
    return bad


def test_the_import_graph_is_read_from_the_source() -> None:
    graph = _graph()
    assert "dynawheel.analysis.resolve" in graph["dynawheel.report"]
    assert "dynawheel.platforms.elf_rewrite" in graph["dynawheel.platforms.elf_edit"]  # inside a function
    assert "dynawheel.wheel.inflate" in graph["dynawheel.wheel.verify"]
    assert "dynawheel.fsutil" in graph["dynawheel.publish.index"]  # from .. import fsutil


def test_cycles_are_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}
    assert _cycles({"a": {"b"}, "b": set()}) == set()


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert cycles - KNOWN_CYCLES == set(), "new import cycle(s)"
    assert KNOWN_CYCLES - cycles == set(), "a known cycle is gone: remove it from KNOWN_CYCLES"


def test_layers() -> None:
    """wheel/ knows no binary; platforms/ imports no policy nor core; the core imports no format module."""
    violations = _violations(_graph())
    new = {name: wrong - KNOWN.get(name, set()) for name, wrong in violations.items()}
    assert {k: v for k, v in new.items() if v} == {}, "new layering violation(s): see docs/architecture.md"
    gone = {name: allowed - violations.get(name, set()) for name, allowed in KNOWN.items()}
    assert {k: v for k, v in gone.items() if v} == {}, "a known violation is gone: remove it from KNOWN"


@pytest.mark.parametrize("name", dynawheel.__all__)
def test_no_public_name_is_a_submodule(name: str) -> None:
    """`import dynawheel.x` sets the package's attribute x to the module: a public function x would be lost."""
    shadowed = (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()
    assert shadowed == (name in KNOWN_SHADOWED), name


def test_the_public_api_survives_importing_every_module() -> None:
    import importlib

    for name in _modules():
        if name != "dynawheel.__main__":  # that one runs the CLI
            importlib.import_module(name)
    for name in dynawheel.__all__:
        value = getattr(dynawheel, name)
        assert not isinstance(value, type(dynawheel)), f"dynawheel.{name} is a module"
