"""The Windows DLL shim: text transformation, placement, and what the code does when run."""

from __future__ import annotations

import ast
import os
import pathlib
import sys
import types

import pytest

from dynawheel.errors import RepairError
from dynawheel.repair.shim import END, START, ShimPlan, add_shim, pth_shim, remove_shim, shim_targets


def body_kinds(source: str) -> list[str]:
    kinds = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            kinds.append("doc")
        elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
            kinds.append("future")
        elif isinstance(node, ast.FunctionDef) and node.name == "_dynawheel_add_dll_directories":
            kinds.append("shim")
        else:
            kinds.append(type(node).__name__)
    return kinds


def test_after_docstring_and_future_imports() -> None:
    source = (
        "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n"
        '"""Package.\n\nMore."""\n'
        "from __future__ import (\n    annotations,\n)\n"
        "import os\nX = os.sep\n"
    )
    out = add_shim(source, "../pkg.libs")
    compile(out, "__init__.py", "exec")
    assert body_kinds(out)[:4] == ["doc", "future", "shim", "Expr"]
    assert body_kinds(out)[-3:] == ["Delete", "Import", "Assign"]
    assert out.startswith('#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n"""Package.')
    assert out.count(START) == out.count(END) == 1
    assert remove_shim(out) == source


@pytest.mark.parametrize(
    "source",
    ["", "import os\n", '"""Only a docstring."""', "from __future__ import annotations\nx = 1", "x = 1  # no newline"],
)
def test_idempotent_and_compiles(source: str) -> None:
    once = add_shim(source, "libs")
    assert add_shim(once, "libs") == once
    compile(once, "__init__.py", "exec")
    assert remove_shim(once).rstrip("\n") == source.rstrip("\n")


def test_reapplying_replaces_the_directory() -> None:
    once = add_shim('"""Doc."""\nimport os\n', "../old.libs")
    again = add_shim(once, ["../new.libs", "sub"])
    assert "old.libs" not in again and again.count(START) == 1
    assert "(('..', 'new.libs'), ('sub',))" in again
    assert body_kinds(again)[:2] == ["doc", "shim"]


def test_a_string_that_is_not_first_is_not_a_docstring() -> None:
    out = add_shim('import os\n"""not a docstring"""\n', "libs")
    assert body_kinds(out)[0] == "shim"


def test_crlf_sources_stay_crlf() -> None:
    out = add_shim('"""Doc."""\r\nimport os\r\n', "libs")
    assert "\r\n" in out and "\n" not in out.replace("\r\n", "")
    assert add_shim(out, "libs") == out


@pytest.mark.parametrize("bad", ["", "/abs/libs", "C:\\libs", "c:/libs"])
def test_bad_directories_are_refused(bad: str) -> None:
    with pytest.raises(RepairError, match="relative POSIX path"):
        add_shim("", bad)


def test_invalid_python_is_refused_with_the_file_name() -> None:
    with pytest.raises(RepairError, match=r"'pkg/__init__\.py': not valid Python"):
        add_shim("def (:\n", "libs", where="pkg/__init__.py")


def run_shim(source: str, package_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Execute the shim as if on Windows (os.name 'nt'), recording os.add_dll_directory calls."""
    added: list[str] = []
    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.setattr(os, "add_dll_directory", added.append, raising=False)
    module = types.ModuleType("pkg")
    module.__file__ = str(package_dir / "__init__.py")
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    assert not hasattr(module, "_dynawheel_add_dll_directories")
    return added


def test_the_shim_adds_existing_directories_relative_to_the_package(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (tmp_path / "pkg.libs").mkdir()
    added = run_shim(add_shim("", ["../pkg.libs", "missing"]), package, monkeypatch)
    assert added == [str(tmp_path / "pkg.libs")]


def test_the_shim_does_nothing_off_windows(tmp_path: pathlib.Path) -> None:
    if sys.platform == "win32":
        pytest.skip("this checks the non-Windows branch")
    (tmp_path / "libs").mkdir()
    namespace: dict[str, object] = {"__file__": str(tmp_path / "__init__.py")}
    exec(compile(add_shim("", "libs"), "__init__.py", "exec"), namespace)
    assert "_dynawheel_add_dll_directories" not in namespace


# ---- placement -----------------------------------------------------------------------------


def test_targets_nearest_regular_package_and_skips_own_directory() -> None:
    files = {
        "pkg/__init__.py",
        "pkg/sub/__init__.py",
        "pkg/sub/_a.pyd",
        "pkg/_b.pyd",
        "pkg/_c.pyd",
        "pkg.libs/x.dll",
    }
    plan = shim_targets({"pkg/sub/_a.pyd": "pkg.libs", "pkg/_b.pyd": "pkg.libs/", "pkg/_c.pyd": "pkg"}, files)
    assert plan == ShimPlan({"pkg/__init__.py": ("../pkg.libs",), "pkg/sub/__init__.py": ("../../pkg.libs",)}, ())


def test_namespace_packages_never_get_an_init() -> None:
    files = {"ns/mod/__init__.py", "ns/mod/_a.pyd", "ns/_b.pyd", "_top.pyd", "ns/deep/er/_c.pyd"}
    extensions = {"ns/mod/_a.pyd": "ns.libs", "ns/_b.pyd": "ns.libs", "_top.pyd": "ns.libs", "ns/deep/er/_c.pyd": "x"}
    plan = shim_targets(extensions, files)
    # ns/ is a PEP 420 namespace: only the existing ns/mod/__init__.py is used.
    assert dict(plan.init_files) == {"ns/mod/__init__.py": ("../../ns.libs",)}
    assert plan.pth_dirs == ("ns.libs", "x")
    assert all(path in files for path in plan.init_files)


def test_pth_shim_runs_at_startup_from_site_packages(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = pth_shim("My-Dist", ["ns.libs"])
    assert sorted(files) == ["_dynawheel_dlls_my_dist.pth", "_dynawheel_dlls_my_dist.py"]
    assert files["_dynawheel_dlls_my_dist.pth"] == "import _dynawheel_dlls_my_dist\n"
    (tmp_path / "ns.libs").mkdir()
    added = run_shim(files["_dynawheel_dlls_my_dist.py"], tmp_path, monkeypatch)
    assert added == [str(tmp_path / "ns.libs")]


def test_site_imports_the_pth_helper(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import site

    for name, text in pth_shim("Other.Dist", ["other.libs"]).items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "_dynawheel_dlls_other_dist", raising=False)
    site.addsitedir(str(tmp_path))
    module = sys.modules.pop("_dynawheel_dlls_other_dist")
    assert module.__file__ == str(tmp_path / "_dynawheel_dlls_other_dist.py")


def test_delay_loaded_dlls_are_preloaded_by_full_path() -> None:
    """The delay-load helper searches only the default order: the shim loads such DLLs first."""
    out = add_shim('"""Doc."""\n', "../pkg.libs", preload=["../pkg.libs/late-1a2b3c4d.dll"])
    compile(out, "__init__.py", "exec")
    assert "for dll in (('..', 'pkg.libs', 'late-1a2b3c4d.dll'),):" in out
    assert "ctypes.WinDLL(path)" in out
    assert add_shim(out, "../pkg.libs", preload=["../pkg.libs/late-1a2b3c4d.dll"]) == out, "idempotent"
    assert "WinDLL" not in add_shim('"""Doc."""\n', "../pkg.libs"), "no preload code when nothing is delay-loaded"
