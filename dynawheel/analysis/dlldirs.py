"""Directories a package adds with ``os.add_dll_directory()`` when imported (read, never run).

Kept apart from audit.py so that `dynawheel repair` does not import the report code.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import replace

from ..errors import UsageError
from ..log import get_logger
from ..search import SearchPaths
from ..tree import Tree

log = get_logger(__name__)

# the markers of the block repair/shim.py writes (here, beside their reader: `show` does not import repair/)
SHIM_START = "# start dynawheel dll shim"
SHIM_END = "# end dynawheel dll shim"

_DELVEWHEEL_LIBS = r"""['"]([^'"\\/\s]+\.libs)['"]"""  # compiled when used (~0.5 ms of CPU a regex)


def _shim_hosts(files: list[str]) -> list[str]:
    """Files that may add DLL directories at import: package ``__init__.py`` files and our
    top-level ``_dynawheel_dlls_*.py`` helpers (see repair/shim.py)."""
    return [rel for rel in files if posixpath.basename(rel) == "__init__.py"
            or ("/" not in rel and rel.startswith("_dynawheel_dlls_") and rel.endswith(".py"))]


def _read_text(tree: Tree, rel: str) -> str:
    try:
        with tree.open(rel) as fp:
            return fp.read().decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        log.debug("cannot read %r for DLL directories: %s", rel, exc)
        return ""


def _shim_dirs(text: str, here: str) -> Iterator[str]:
    """Directories our marked shim block adds (its literal tuple of path parts); never executed."""
    start = text.find(SHIM_START)
    end = text.find(SHIM_END, start)
    if start < 0 or end < 0:
        return
    import ast  # performance: loaded only when a shim block is there

    try:
        module = ast.parse(text[start:end])
    except SyntaxError:
        log.debug("unparsable dynawheel shim block below %r", here)
        return
    for node in ast.walk(module):
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and node.target.id == "parts":
            try:
                dirs = ast.literal_eval(node.iter)
            except ValueError:
                continue
            for parts in dirs:
                yield posixpath.normpath(posixpath.join(here, *parts))


def _delvewheel_dirs(tree: Tree, text: str, here: str) -> Iterator[str]:
    """delvewheel's ``<dist>.libs``: named as a string literal next to ``os.add_dll_directory``,
    reached through ``os.pardir`` steps; the nearest existing one upwards from `here`."""
    if "add_dll_directory" not in text:
        return
    for name in dict.fromkeys(re.findall(_DELVEWHEEL_LIBS, text)):
        base = here
        while True:
            candidate = posixpath.join(base, name)
            if tree.exists(candidate) and not tree.is_file(candidate):
                yield candidate
                break
            if not base:
                break
            base = posixpath.dirname(base)


def dll_directories_in(tree: Tree) -> tuple[str, ...]:
    """Tree-relative directories that packages of `tree` add with ``os.add_dll_directory`` when
    imported: our own shim blocks and delvewheel's ``<dist>.libs`` patches.  The code is read,
    never run."""
    found: list[str] = []
    for rel in _shim_hosts(tree.files()):
        text = _read_text(tree, rel)
        if "add_dll_directory" not in text:
            continue
        here = posixpath.dirname(rel)
        found.extend(d for d in (*_shim_dirs(text, here), *_delvewheel_dirs(tree, text, here))
                     if d != ".." and not d.startswith("../"))
    return tuple(dict.fromkeys("" if d == "." else d for d in found))


def with_dll_directories(tree: Tree, search: SearchPaths | None) -> SearchPaths:
    """`search` (default: the host's) plus the DLL directories the tree adds at import, in the
    resolver's namespace.  A relative directory of ``search.dll_directories`` (``--dll-dir
    pywin32_system32``) is a directory of the tree or wheel: pywin32's start-up code adds its own
    ``pywin32_system32/`` with ``os.add_dll_directory``; an absolute one is a host directory."""
    search = search if search is not None else SearchPaths.from_host()
    given = tuple(_in_tree(tree, d) for d in search.dll_directories)
    found = tuple(posixpath.join(tree.root, d) if d else tree.root for d in dll_directories_in(tree))
    dirs = tuple(dict.fromkeys((*given, *found)))
    if dirs != search.dll_directories:
        log.debug("DLL directories: %s", ", ".join(dirs))
        search = replace(search, dll_directories=dirs)
    return search


def _in_tree(tree: Tree, directory: str) -> str:
    """A --dll-dir in the resolver's namespace: relative ones are below the tree's root."""
    if directory.startswith("/") or re.match(r"[A-Za-z]:[\\/]", directory):
        return directory
    rel = posixpath.normpath(directory.replace("\\", "/"))
    if rel == ".." or rel.startswith("../"):
        raise UsageError(f"--dll-dir {directory!r} leaves the tree: a relative DLL directory is a directory of "
                         "the tree or wheel (give an absolute path for a directory of this host)")
    return tree.root if rel == "." else posixpath.join(tree.root, rel)
