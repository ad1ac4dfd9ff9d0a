"""dynawheel: build, repair, audit and publish wheels that ship shared libraries.

Public API: :func:`build_wheel` / :class:`Stage` / :func:`check_wheels` (build), :func:`analyze` /
:func:`audit` (show), :func:`repair_wheel` / :func:`repair_tree` (repair), :func:`build_index` (publish),
and the seed-compatible :func:`dynawheel`.  Every error is a :class:`DynawheelError`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

from typing import TYPE_CHECKING

# The public API, imported on first use (PEP 562) so that `import dynawheel` and the CLI stay quick.
_EXPORTS = {
    "AuditReport": "report", "audit": "report",
    "BuildOptions": "wheel.build", "BuildResult": "wheel.build", "build": "ops.build", "build_wheel": "ops.build",
    "DynawheelError": "errors",
    "dynawheel": "compat",
    "build_index": "publish.index",
    "RepairOptions": "repair.options", "RepairResult": "repair.pipeline", "repair_tree": "repair.pipeline",
    "repair_wheel": "repair.pipeline",
    "analyze": "analysis.resolve",
    "SearchPaths": "search",
    "check_wheels": "ops.check",
    "Stage": "wheel.build",
    "MergeResult": "ops.merge", "merge_wheels": "ops.merge",
    "RetagResult": "ops.retag", "retag_wheel": "ops.retag",
}

__all__ = [
    "AuditReport", "BuildOptions", "BuildResult", "DynawheelError", "MergeResult", "RepairOptions", "RepairResult",
    "RetagResult", "SearchPaths", "Stage", "__version__", "analyze", "audit", "build", "build_index", "build_wheel",
    "check_wheels", "dynawheel", "merge_wheels", "repair_tree", "repair_wheel", "retag_wheel",
]

if TYPE_CHECKING:
    from .analysis.resolve import analyze
    from .compat import dynawheel
    from .errors import DynawheelError
    from .ops.build import build, build_wheel
    from .ops.check import check_wheels
    from .ops.merge import MergeResult, merge_wheels
    from .ops.retag import RetagResult, retag_wheel
    from .publish.index import build_index
    from .repair.options import RepairOptions
    from .repair.pipeline import RepairResult, repair_tree, repair_wheel
    from .report import AuditReport, audit
    from .search import SearchPaths
    from .wheel.build import BuildOptions, BuildResult, Stage


class _Package(types.ModuleType):
    """This package's module object.  Importing a submodule binds it as an attribute of the package
    (``import dynawheel.report`` sets ``dynawheel.report``); for a public name that is also a
    submodule's name that binding is dropped, so a public callable stays what it is whatever was
    imported before (the submodule is still in ``sys.modules``)."""

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
