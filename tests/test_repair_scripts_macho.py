"""A macOS program (Mach-O executable) in ``<name>-<ver>.data/scripts/``: its dylibs are copied beside it.

For an executable ``@loader_path`` is its own directory (the scheme's ``bin/``), so the repaired program
names each dylib ``@loader_path/<copy>`` and the copies sit beside it, whatever the install scheme.
No macOS here: the program (clang-14 + ld64.lld-14, arm64, linker-signed) is read after the repair
by LIEF (an independent parser) and by llvm-objdump's strict parser, its signature is recomputed,
and the wheel is installed by real pip (``--platform macosx_11_0_arm64 --target``): every install name
must name a file of the installed ``bin/``, and dynawheel's dyld rules, given nothing but that
directory, must find everything there.
"""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dynawheel.analysis.resolve import APART_FLAG
from dynawheel.platforms.codesign import verify_signature

from .conftest import run_cli
from .repairkit import extract, only_wheel
from .test_repair_macho import LD64, OBJDUMP, Builder, make_wheel

SCRIPTS = "demo-1.0.data/scripts"
lief = pytest.importorskip("lief", reason="LIEF is the independent Mach-O reader (pip install lief)")
pytestmark = pytest.mark.skipif(LD64 is None or OBJDUMP is None, reason="needs clang-14, ld64.lld-14 and llvm-14")


@pytest.fixture(scope="module")
def repaired(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(the repaired wheel extracted, its installation by pip for macOS arm64 into a target directory, the
    wheel before the repair).

    build/libhelper.dylib   @rpath/libhelper.dylib, outside the stage (the program's LC_RPATH: build/)
    demo/libpk.dylib        the package's own dylib, named by the program @loader_path/../../demo/libpk.dylib
                            (reachable inside the stage only)
    """
    root = tmp_path_factory.mktemp("macho-scripts")
    b = Builder(root / "work")
    sources = root / "src"
    sources.mkdir()
    for name, text in {"helper.c": "int helper_value(void) { return 40; }\n",
                       "pk.c": "int pk_value(void) { return 2; }\n",
                       "main.c": "extern int helper_value(void);\nextern int pk_value(void);\n"
                                 "int main(void) { return helper_value() + pk_value(); }\n"}.items():
        (sources / name).write_text(text)
    helper = b.link("arm64", root / "build" / "libhelper.dylib", "-dylib", "-install_name", "@rpath/libhelper.dylib",
                    b.cc("arm64", sources / "helper.c"))
    stage = root / "stage"
    pk = b.link("arm64", stage / "demo" / "libpk.dylib", "-dylib", "-install_name",
                "@loader_path/../../demo/libpk.dylib", b.cc("arm64", sources / "pk.c"))
    (stage / "demo" / "__init__.py").write_text("")
    b.link("arm64", stage / SCRIPTS / "demo-tool", "-execute", "-headerpad_max_install_names", "-rpath",
           str(root / "build"), b.cc("arm64", sources / "main.c"), helper, pk)
    wheel = make_wheel(stage, root / "in", "macosx_11_0_arm64")
    done = run_cli("repair", wheel, "-w", root / "wh")  # build/ is found through the absolute LC_RPATH
    assert done.code == 0, done.err
    out = only_wheel(root / "wh")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
                          "--no-deps", "--only-binary=:all:", "--platform", "macosx_11_0_arm64", "--python-version",
                          "3.11", "--implementation", "cp", "--target", str(root / "target"), str(out)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    return extract(out, root / "x"), root / "target", wheel


def _dylibs_and_rpaths(path: Path) -> tuple[list[str], list[str]]:
    lief.logging.disable()
    binary = lief.MachO.parse(str(path)).at(0)
    names = [cmd.name for cmd in binary.libraries]
    rpaths = [cmd.path for cmd in binary.commands if isinstance(cmd, lief.MachO.RPathCommand)]
    return names, rpaths


def test_the_program_names_copies_beside_it(repaired: tuple[Path, Path, Path]) -> None:
    tree, _target, _wheel = repaired
    program = tree / SCRIPTS / "demo-tool"
    names, rpaths = _dylibs_and_rpaths(program)
    ours = [n for n in names if not n.startswith("/usr/lib/")]
    assert len(ours) == 2 and all(re.fullmatch(r"@loader_path/lib(helper|pk)-[0-9a-f]{8}\.dylib", n) for n in ours), \
        names
    assert all((tree / SCRIPTS / posixpath.basename(n)).is_file() for n in ours)
    assert rpaths == []  # the LC_RPATH to build/ is gone
    assert verify_signature(program.read_bytes(), str(program)) == []
    strict = subprocess.run([str(OBJDUMP), "--macho", "--all-headers", str(program)], capture_output=True, text=True)
    assert strict.returncode == 0 and not strict.stderr, strict.stderr


def test_installed_program_finds_every_dylib_in_its_own_directory(repaired: tuple[Path, Path, Path]) -> None:
    _tree, target, _wheel = repaired
    bin_dir = target / "bin"
    names, _rpaths = _dylibs_and_rpaths(bin_dir / "demo-tool")
    for name in (n for n in names if n.startswith("@loader_path/")):
        assert (bin_dir / name[len("@loader_path/"):]).is_file(), name
    shown = run_cli("show", "--json", "--no-system-paths", bin_dir)
    assert shown.code == 0, shown.out
    edges = [e for w in json.loads(shown.out)["walks"] for e in w["edges"] if e["dependent"] == "demo-tool"]
    ours = [e for e in edges if not e["request"].startswith("/usr/lib/")]
    assert len(ours) == 2 and {e["status"] for e in ours} == {"in_tree"}, edges


def test_show_flags_the_package_dylib_found_only_inside_the_wheel(repaired: tuple[Path, Path, Path]) -> None:
    _tree, _target, wheel = repaired
    shown = run_cli("show", "--json", wheel)
    assert shown.code == 3 and json.loads(shown.out)["ok"] is False  # found in the wheel, not once installed
    edges = [e for w in json.loads(shown.out)["walks"] for e in w["edges"] if e["dependent"] == f"{SCRIPTS}/demo-tool"]
    pk = [e for e in edges if e["request"] == "@loader_path/../../demo/libpk.dylib"]
    assert len(pk) == 1 and pk[0]["status"] == "in_tree" and pk[0]["flag"] == APART_FLAG, edges
