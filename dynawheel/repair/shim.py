"""The Windows DLL shim: make ``os.add_dll_directory`` run before an extension is imported.

Since Python 3.8 an extension's DLL dependencies are searched in the extension's own
directory, in directories added with ``os.add_dll_directory`` and in System32, never on
PATH.  DLLs vendored beside the extension need nothing.  DLLs vendored into a shared
directory (``<dist>.libs/``) need that directory added before the first import, so:

* :func:`add_shim` inserts a marked block into a package ``__init__.py`` (after the module
  docstring and ``from __future__`` imports; re-applying replaces the block).  Importing
  ``pkg.sub._ext`` runs ``pkg/__init__.py`` and ``pkg/sub/__init__.py`` first, so the
  nearest *regular* package above the extension is the right host.
* :func:`shim_targets` picks those hosts.  It never creates an ``__init__.py``: in a PEP 420
  namespace package (or for a top-level extension) there is no ``__init__.py`` that is
  guaranteed to run, and creating one would turn the namespace into a regular package
  and break every other distribution sharing it.  For those extensions the shim goes into
  a top-level helper module ``_dynawheel_dlls_<dist>.py`` imported by a one-line
  ``_dynawheel_dlls_<dist>.pth`` (site runs ``import`` lines of ``.pth`` files at start-up):
  :func:`pth_shim`.  It costs one small import per interpreter start and does not run under
  ``python -S``; vendoring beside the extension avoids it entirely.

Everything here is text in, text out; paths are tree-relative POSIX paths (relative to the
install root: purelib/platlib).
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from ..analysis.dlldirs import SHIM_END as END
from ..analysis.dlldirs import SHIM_START as START
from ..errors import RepairError

# compiled when used (a shim's repair only; ~0.5 ms of CPU a regex)
_BLOCK = r"^[ \t]*" + re.escape(START) + r"[^\n]*\n.*?^[ \t]*" + re.escape(END) + r"[^\n]*(\n|\Z)"

_TEMPLATE = """{start}
def _dynawheel_add_dll_directories():
    import os

    if os.name != "nt" or not hasattr(os, "add_dll_directory"):
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for parts in {dirs!r}:
        path = os.path.normpath(os.path.join(here, *parts))
        if os.path.isdir(path):
            os.add_dll_directory(path)
{preload}

_dynawheel_add_dll_directories()
del _dynawheel_add_dll_directories
{end}
"""

# A delay-loaded DLL is looked up at its first call by the delay-load helper, with the default
# search order (not the extension's directory, not os.add_dll_directory): loading it here by
# full path first makes that lookup find it already loaded (by base name).
_PRELOAD = """    for dll in {files!r}:
        path = os.path.normpath(os.path.join(here, *dll))
        if os.path.isfile(path):
            import ctypes

            ctypes.WinDLL(path)
"""


def shim_code(dll_dirs: Sequence[str], preload: Sequence[str] = ()) -> str:
    """The marked block adding `dll_dirs` and loading the `preload` DLLs (delay-loaded ones), all
    POSIX paths relative to the module's directory."""
    parts = tuple(tuple(_relative_parts(d)) for d in dll_dirs)
    files = tuple(tuple(_relative_parts(f)) for f in preload)
    extra = _PRELOAD.format(files=files) if files else ""
    return _TEMPLATE.format(start=START, end=END, dirs=parts, preload=extra)


def _relative_parts(dll_dir: str) -> list[str]:
    if not dll_dir or dll_dir.startswith("/") or "\\" in dll_dir or ":" in dll_dir:
        raise RepairError(f"DLL directory must be a relative POSIX path, got {dll_dir!r}")
    return [p for p in dll_dir.split("/") if p not in ("", ".")] or ["."]


def remove_shim(source: str) -> str:
    """`source` without any dynawheel shim block."""
    return re.sub(_BLOCK, "", source, flags=re.S | re.M)


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _is_future(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and node.module == "__future__"


def _insert_line(source: str, where: str) -> int:
    """0-based line index after the module docstring and the ``from __future__`` imports."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise RepairError(
            f"cannot add the DLL shim to {where!r}: not valid Python ({exc.msg}, line {exc.lineno})"
        ) from None
    after = 0
    for index, node in enumerate(tree.body):
        if not (index == 0 and _is_docstring(node)) and not _is_future(node):
            break
        after = node.end_lineno or node.lineno
    return after


def add_shim(init_source: str, dll_dir: str | Sequence[str], where: str = "__init__.py",
             preload: Sequence[str] = ()) -> str:
    """`init_source` with the shim for `dll_dir` (one or several directories, POSIX, relative
    to the package directory) inserted after the docstring and ``from __future__`` imports.

    Idempotent: an existing shim block is replaced, never duplicated.
    """
    dirs = [dll_dir] if isinstance(dll_dir, str) else list(dll_dir)
    newline = "\r\n" if "\r\n" in init_source else "\n"
    source = remove_shim(init_source.replace("\r\n", "\n"))
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    at = _insert_line(source, where)
    block = shim_code(dirs, preload)
    lines.insert(at, block)
    return "".join(lines).replace("\n", newline)


# ---- where the shim goes ----------------------------------------------------------------


@dataclass(frozen=True)
class ShimPlan:
    """Where the Windows DLL-directory shim goes: package __init__ files and .pth helpers."""

    # package __init__.py (tree path) -> DLL directories relative to that package's directory
    init_files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # DLL directories (tree paths) of extensions that have no regular package above them:
    # they get the .pth helper of pth_shim()
    pth_dirs: tuple[str, ...] = ()
    # delay-loaded DLLs to load first: __init__.py -> paths relative to its package; for the
    # .pth helper (at the tree root): tree paths
    preload: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pth_preload: tuple[str, ...] = ()


def host_package(extension: str, files: Collection[str]) -> str | None:
    """The ``__init__.py`` of the nearest regular package above `extension`, or None."""
    directory = posixpath.dirname(extension)
    while directory:
        init = f"{directory}/__init__.py"
        if init in files:
            return init
        directory = posixpath.dirname(directory)
    return None


def _add(bucket: dict[str, list[str]], key: str, values: Sequence[str]) -> None:
    have = bucket.setdefault(key, [])
    have += [v for v in values if v not in have]


def shim_targets(extensions: Mapping[str, str | Sequence[str]], files: Collection[str],
                 preload: Mapping[str, Sequence[str]] | None = None) -> ShimPlan:
    """Decide where the shim goes.

    `extensions` maps an extension's tree path to the tree path(s) of the directories holding its
    DLLs; `preload` maps it to the tree paths of DLLs it delay-loads (loaded by the shim first);
    `files` is every file of the tree.  DLL directories that are the extension's own need nothing.
    No ``__init__.py`` is ever created.
    """
    init_files: dict[str, list[str]] = {}
    early: dict[str, list[str]] = {}
    pth: dict[str, list[str]] = {"dirs": [], "preload": []}
    for extension in sorted(set(extensions) | set(preload or {})):
        raw = extensions.get(extension, ())
        dirs = [d.rstrip("/") for d in ([raw] if isinstance(raw, str) else raw)]
        dirs = [d for d in dirs if d != posixpath.dirname(extension)]
        dlls = list((preload or {}).get(extension, ()))
        if not dirs and not dlls:
            continue
        host = host_package(extension, files)
        if host is None:
            _add(pth, "dirs", dirs)
            _add(pth, "preload", dlls)
            continue
        base = posixpath.dirname(host)
        _add(init_files, host, [posixpath.relpath(d or ".", base) for d in dirs])
        if dlls:
            _add(early, host, [posixpath.relpath(f, base) for f in dlls])
    return ShimPlan({k: tuple(v) for k, v in sorted(init_files.items())}, tuple(pth["dirs"]),
                    {k: tuple(v) for k, v in sorted(early.items())}, tuple(pth["preload"]))


def pth_shim(dist: str, dll_dirs: Sequence[str], preload: Sequence[str] = ()) -> dict[str, str]:
    """Files (tree path -> text) of the start-up shim for extensions outside any regular package:
    ``_dynawheel_dlls_<dist>.pth`` (one ``import`` line) and the module it imports."""
    name = "_dynawheel_dlls_" + re.sub(r"[^A-Za-z0-9]+", "_", dist).strip("_").lower()
    module = '"""Adds the DLL directories of a distribution (vendored by dynawheel) on Windows."""\n\n'
    return {f"{name}.pth": f"import {name}\n", f"{name}.py": module + shim_code(list(dll_dirs), preload)}
