"""dynawheel: build, repair, audit and publish wheels that ship shared libraries.

Public API: :func:`build_wheel` / :class:`Stage` / :func:`check_wheels` (build), :func:`analyze` /
:func:`audit` (show), :func:`repair_wheel` / :func:`repair_tree` (repair), :func:`build_index` (publish),
and the seed-compatible :func:`dynawheel`.  Every error is a :class:`DynawheelError`.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

from typing import TYPE_CHECKING

# The public API, imported on first use (PEP 562) so that `import dynawheel` and the CLI stay quick.
_EXPORTS = {
    "AuditReport": "audit", "audit": "audit",
    "BuildOptions": "build", "BuildResult": "build", "build": "build", "build_wheel": "build",
    "DynawheelError": "errors",
    "build_index": "index",
    "RepairOptions": "repair", "RepairResult": "repair", "repair_tree": "repair", "repair_wheel": "repair",
    "analyze": "resolve",
    "SearchPaths": "search",
    "check_wheels": "wheel.check",
    "Stage": "wheel.stage",
}

__all__ = [
    "AuditReport", "BuildOptions", "BuildResult", "DynawheelError", "RepairOptions", "RepairResult",
    "SearchPaths", "Stage", "__version__", "analyze", "audit", "build", "build_index", "build_wheel",
    "check_wheels", "dynawheel", "repair_tree", "repair_wheel",
]

if TYPE_CHECKING:
    from .audit import AuditReport, audit
    from .build import BuildOptions, BuildResult, build, build_wheel
    from .errors import DynawheelError
    from .index import build_index
    from .repair import RepairOptions, RepairResult, repair_tree, repair_wheel
    from .resolve import analyze
    from .search import SearchPaths
    from .wheel.check import check_wheels
    from .wheel.stage import Stage


class _Package(types.ModuleType):
    """This package's module object.  Importing a submodule binds it as an attribute of the package
    (``import dynawheel.build`` sets ``dynawheel.build``); for the public names that are also
    submodules (``build``, ``audit``) that binding is dropped, so ``dynawheel.build`` stays the
    function whatever was imported before (the submodule is still ``sys.modules['dynawheel.build']``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dynawheel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def dynawheel(
    metadata_content: str,
    src_root_dir: Path,
    pkgname: str,
    whlver: str,
    arch: str | None = None,
    pyver: str | None = None,
    whl_dest_dir: Path = Path("dist"),
    root_is_purelib: bool = False,
    abi: str = "none",
    build_tag: str | None = None,
    cleanup_dist_info_dir: bool = True,
    **aliases: Any,
) -> Path:
    """The seed's call, as its setup.py scripts make it: write the wheel, print 'wrote <path>'.

    `plat_name`, `python_tag` and `abi_tag` are accepted as the seed's other spellings of
    `arch`, `pyver` and `abi`.  The source tree is never written to, so
    `cleanup_dist_info_dir` has nothing to clean; it is accepted for compatibility.
    """
    arch = arch or aliases.pop("plat_name", None)
    pyver = pyver or aliases.pop("python_tag", None)
    abi = aliases.pop("abi_tag", abi)
    if aliases:
        raise TypeError(f"dynawheel() got unexpected keyword arguments {sorted(aliases)!r}")
    del cleanup_dist_info_dir
    from .build import BuildOptions, build
    from .wheel.tags import make_tags

    tags = make_tags(pyver or "py3", abi, arch or "any")
    path = build(BuildOptions(
        stage=Path(src_root_dir),
        metadata=_seed_options(pkgname, whlver),
        metadata_text=metadata_content,
        tags=tags,
        root_is_purelib=root_is_purelib,
        build_number=build_tag,
    ), Path(whl_dest_dir)).path
    print(f"wrote {path}")  # the seed's contract: its setup.py scripts read this line
    return path


def _seed_options(name: str, version: str) -> Any:
    from .wheel.metadata import MetadataOptions

    return MetadataOptions(name=name, version=version)
