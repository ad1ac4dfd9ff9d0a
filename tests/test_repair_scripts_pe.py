"""A Windows program (PE .exe) in ``<name>-<ver>.data/scripts/``: its DLLs are copied beside it.

An .exe cannot be wrapped by a Python shim (Windows runs it directly from ``Scripts\\``), and the
Windows loader searches the application's own directory first: the vendored DLLs must be there.
Proven with a real .exe and DLL (clang-14 + lld-14), the wheel installed by real pip
(``--platform win_amd64 --target``: the same files a Windows pip writes to ``Scripts\\``), the original
DLL deleted, and the installed program run by wine's loader: the DLL prints its own module path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_cli
from .repairkit import members, only_wheel
from .test_repair_pe import TOOLS, imports, make_wheel
from .test_wine import WINE, WINESERVER, windows

SCRIPTS = "demo-1.0.data/scripts"
KERNEL32 = "LIBRARY KERNEL32.dll\nEXPORTS\nExitProcess\nGetModuleFileNameA\nGetStdHandle\nWriteFile\n"
HEAD = """#define IMPORT __declspec(dllimport)
typedef unsigned int DWORD; typedef int BOOL; typedef void *HANDLE;
IMPORT void __stdcall ExitProcess(DWORD code);
IMPORT DWORD __stdcall GetModuleFileNameA(void *module, char *buf, DWORD size);
IMPORT HANDLE __stdcall GetStdHandle(DWORD which);
IMPORT BOOL __stdcall WriteFile(HANDLE h, const void *buf, DWORD n, DWORD *written, void *overlapped);
"""
HELPER = HEAD + """static void *self; static char path[1024];
BOOL __stdcall DllMain(void *h, DWORD reason, void *r) { (void)r; if (reason == 1) self = h; return 1; }
__declspec(dllexport) int helper_where(void) {
    DWORD n = GetModuleFileNameA(self, path, 1000), written;
    path[n] = '\\n';
    WriteFile(GetStdHandle((DWORD)-11), path, n + 1, &written, 0);
    return 7;
}
"""
TOOL = HEAD + "IMPORT int helper_where(void);\nvoid start(void) { ExitProcess(helper_where()); }\n"

pytestmark = pytest.mark.skipif(None in TOOLS, reason="needs clang-14, lld-14 and llvm-dlltool-14 (apt; CI has them)")


def _clang(out: Path, source: Path, *args: str) -> None:
    cmd = ["clang-14", "--target=x86_64-w64-mingw32", "-O2", "-ffreestanding", "-fno-builtin", "-fno-stack-protector",
           "-fuse-ld=lld", "--ld-path=/usr/bin/ld.lld-14", "-nostdlib", "-s", "-Wl,--no-insert-timestamp",
           "-o", str(out), str(source), *args]
    subprocess.run(cmd, check=True, capture_output=True)


def build_program(build: Path, stage: Path) -> Path:
    """build/helper.dll (outside the stage) and the stage's demo-tool.exe importing it."""
    build.mkdir(parents=True)
    (build / "kernel32.def").write_text(KERNEL32)
    subprocess.run(["llvm-dlltool-14", "-m", "i386:x86-64", "-d", str(build / "kernel32.def"),
                    "-l", str(build / "libkernel32.a")], check=True)
    (build / "helper.c").write_text(HELPER)
    (build / "tool.c").write_text(TOOL)
    _clang(build / "helper.dll", build / "helper.c", "-shared", "-Wl,--entry,DllMain",
           f"-Wl,--out-implib,{build / 'libhelper.a'}", f"-L{build}", "-lkernel32")
    tool = stage / SCRIPTS / "demo-tool.exe"
    tool.parent.mkdir(parents=True)
    _clang(tool, build / "tool.c", "-Wl,--entry,start", "-Wl,--subsystem,console", f"-L{build}", "-lhelper",
           "-lkernel32")
    (stage / "demo").mkdir()
    (stage / "demo" / "__init__.py").write_text("")
    return tool


@pytest.fixture(scope="module")
def repaired(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the repaired wheel, its installation by pip for win_amd64 into a target directory); the original
    helper.dll is deleted before anything runs."""
    root = tmp_path_factory.mktemp("pe-scripts")
    build_program(root / "build", root / "stage")
    wheel = make_wheel(root / "stage", root / "in")
    done = run_cli("repair", wheel, "-w", root / "wh", "-L", root / "build", "--no-system-paths")
    assert done.code == 0, done.err
    out = only_wheel(root / "wh")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
                          "--no-deps", "--only-binary=:all:", "--platform", "win_amd64", "--python-version", "3.11",
                          "--implementation", "cp", "--target", str(root / "target"), str(out)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    shutil.rmtree(root / "build")
    return out, root / "target"


def test_the_dll_is_copied_beside_the_program_and_no_shim_is_written(repaired: tuple[Path, Path]) -> None:
    wheel, _target = repaired
    names = members(wheel)
    dlls = [n for n in names if n.lower().endswith(".dll")]
    assert len(dlls) == 1 and re.fullmatch(rf"{SCRIPTS}/helper-[0-9a-f]{{8}}\.dll", dlls[0]), names
    assert not any(n.endswith(("_dynawheel_dlls.py", ".pth")) for n in names), names  # nothing to import: no shim


def test_the_installed_program_imports_its_own_copy(repaired: tuple[Path, Path]) -> None:
    _wheel, target = repaired
    program = target / "bin" / "demo-tool.exe"
    dll = [p.name for p in (target / "bin").iterdir() if p.suffix == ".dll"]
    assert [n.lower() for n in imports(program)] == [dll[0].lower(), "kernel32.dll"]


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not WINE.exists():
        pytest.skip("wine64 is not installed (apt-get install -y --no-install-recommends wine64; CI does)")
    prefix = tmp_path_factory.mktemp("wineprefix")
    env = {**os.environ, "WINEPREFIX": str(prefix), "WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml="}
    subprocess.run([str(WINE), "wineboot", "--init"], env=env, check=True, capture_output=True, timeout=300)
    yield env
    subprocess.run([str(WINESERVER), "-k"], env=env, capture_output=True, timeout=60)


@pytest.mark.slow
def test_wine_runs_the_installed_program_with_the_original_dll_gone(repaired: tuple[Path, Path], wine: Any,
                                                                    tmp_path: Path) -> None:
    _wheel, target = repaired
    program = target / "bin" / "demo-tool.exe"
    elsewhere = tmp_path / "cwd"  # run from another directory: only the application directory can serve the DLL
    elsewhere.mkdir()
    done = subprocess.run([str(WINE), windows(program)], env=wine, cwd=elsewhere, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 7, (done.returncode, done.stdout, done.stderr)
    loaded = done.stdout.replace("\r\n", "\n").strip()
    assert re.fullmatch(re.escape(windows(target / "bin")) + r"\\helper-[0-9a-f]{8}\.dll", loaded, re.IGNORECASE), \
        loaded
