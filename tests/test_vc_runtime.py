"""The Visual C++ runtime rule: CPython ships vcruntime140.dll (and vcruntime140_1.dll on x64 and
arm64), Windows ships msvcrt.dll and ucrtbase.dll, but MSVCP140.dll and the rest of the Visual C++
Redistributable are on neither a clean Windows nor a CPython install: a wheel that imports them
must ship them (delvewheel vendors them too).

fixtures/pe/bin/cpp.pyd imports MSVCP140.dll, VCRUNTIME140.dll and KERNEL32.dll;
fixtures/pe/bin/vcredist/msvcp140.dll stands in for the redistributable's copy.  The real loader:
wine64 with ``WINEDLLOVERRIDES=msvcp140=n`` (no builtin MSVCP140: a Windows without the
redistributable) fails the original extension with error 126 and loads the repaired one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pefile
import pytest

from dynawheel.analysis.resolve import Status
from dynawheel.binary import BinaryFormat, Dependency, FileKind, Image, PeFacts
from dynawheel.platforms.pe import BACKEND, VC_REDIST_NOTE, is_system_name, is_vc_redist, read_image
from dynawheel.report import audit
from dynawheel.search import SearchPaths

from .conftest import run_cli
from .repairkit import extract, only_wheel
from .test_repair_pe import INIT, make_wheel
from .test_wine import WINE, WINESERVER, windows

BIN = Path(__file__).resolve().parent.parent / "fixtures" / "pe" / "bin"
HERMETIC = SearchPaths(use_system=False)


def _stage(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text(INIT)
    shutil.copyfile(BIN / "cpp.pyd", root / "pkg" / "cpp.pyd")
    return root


@pytest.mark.parametrize("name", ["MSVCP140.dll", "msvcp140_1.dll", "msvcp140_2.dll", "msvcp140_atomic_wait.dll",
                                  "msvcp140_codecvt_ids.dll", "concrt140.dll", "vccorlib140.dll", "vcamp140.dll",
                                  "vcomp140.dll", "mfc140u.dll", "mfcm140.dll", "msvcr120.dll", "msvcp120.dll",
                                  "msvcr100.dll", "vcruntime140_1.dll"])
def test_the_redistributable_is_not_system_on_x86(name: str) -> None:
    """On i686 nothing of it is provided (CPython's win32 build ships vcruntime140.dll only)."""
    i686 = read_image((BIN / "i686" / "libc.dll").read_bytes(), "libc.dll")
    assert i686.arch == "i686"
    assert not BACKEND.is_system(Dependency(name), i686, SearchPaths())


@pytest.mark.parametrize("name", ["MSVCP140.dll", "msvcp140_atomic_wait.dll", "concrt140.dll", "vcomp140.dll",
                                  "mfc140u.dll", "vccorlib140.dll", "msvcr120.dll"])
def test_the_redistributable_is_not_system_on_x64(name: str) -> None:
    image = read_image((BIN / "cpp.pyd").read_bytes(), "cpp.pyd")
    assert not BACKEND.is_system(Dependency(name), image, SearchPaths())
    assert is_vc_redist(name)


@pytest.mark.parametrize("name", ["MSVCP140.dll", "msvcp140_1.dll", "msvcp140_2.dll", "concrt140.dll", "vcomp140.dll",
                                  "vccorlib140.dll", "mfc140u.dll", "msvcr120.dll"])
def test_the_redistributable_is_not_system_on_arm64(name: str) -> None:
    """Windows on Arm (its own list: 2,700+ names of System32) has no Visual C++ Redistributable either;
    CPython's arm64 build ships vcruntime140.dll and vcruntime140_1.dll, as the x64 one."""
    arm64 = Image(BinaryFormat.PE, "arm64", FileKind.SHARED, facts=PeFacts(machine=0xAA64))
    assert not BACKEND.is_system(Dependency(name), arm64, SearchPaths())
    assert not is_system_name(name, "arm64")
    assert BACKEND.is_system(Dependency("VCRUNTIME140_1.dll"), arm64, SearchPaths())
    assert BACKEND.is_system(Dependency("xtajit.dll"), arm64, SearchPaths())  # arm64's own list, not x64's


@pytest.mark.parametrize("name", ["VCRUNTIME140.dll", "vcruntime140_1.dll", "msvcrt.dll", "ucrtbase.dll",
                                  "msvcp_win.dll", "msvcp60.dll", "mfc42u.dll"])
def test_cpython_and_windows_runtimes_stay_system(name: str) -> None:
    assert is_system_name(name, "x86_64")
    assert not is_vc_redist(name)


def test_show_reports_msvcp140_missing_with_the_rule() -> None:
    report = audit(BIN / "cpp.pyd", HERMETIC)
    status = {e.request.name: e.status for w in report.analysis.walks for e in w.edges}
    assert status == {"MSVCP140.dll": Status.MISSING, "VCRUNTIME140.dll": Status.SYSTEM,
                      "KERNEL32.dll": Status.SYSTEM}
    (verdict,) = [v for v in report.verdicts if v.format is BinaryFormat.PE]
    assert verdict.summary == "does not load: missing MSVCP140.dll"
    assert f"MSVCP140.dll: {VC_REDIST_NOTE}" in verdict.blockers


def test_repair_vendors_msvcp140(tmp_path: Path) -> None:
    wheel = make_wheel(_stage(tmp_path / "stage"), tmp_path / "in")
    refused = run_cli("repair", wheel, "-w", tmp_path / "none", "--no-system-paths")
    assert refused.code != 0 and "MSVCP140.dll" in refused.err and VC_REDIST_NOTE in refused.err, refused.err
    done = run_cli("repair", wheel, "-w", tmp_path / "wh", "-L", BIN / "vcredist", "--no-system-paths")
    assert done.code == 0, done.err
    tree = extract(only_wheel(tmp_path / "wh"), tmp_path / "x")
    pe = pefile.PE(str(tree / "pkg" / "cpp.pyd"), fast_load=True)  # a second opinion on the imports
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
    names = [entry.dll.decode() for entry in pe.DIRECTORY_ENTRY_IMPORT]
    assert names[1:] == ["VCRUNTIME140.dll", "KERNEL32.dll"]
    assert names[0].startswith("MSVCP140-") and (tree / "pkg" / names[0]).is_file()
    assert (tree / "pkg" / names[0]).read_bytes() == (BIN / "vcredist" / "msvcp140.dll").read_bytes()
    again = run_cli("show", "--no-system-paths", tree)
    assert again.code == 0, again.out


@pytest.fixture(scope="module")
def wine_no_msvcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not WINE.exists():
        pytest.skip("wine64 is not installed (apt-get install -y --no-install-recommends wine64; CI installs it)")
    prefix = tmp_path_factory.mktemp("wineprefix")
    env = {**os.environ, "WINEPREFIX": str(prefix), "WINEDEBUG": "-all",
           "WINEDLLOVERRIDES": "mscoree,mshtml=;msvcp140=n"}  # no builtin MSVCP140: as a clean Windows
    subprocess.run([str(WINE), "wineboot", "--init"], env=env, check=True, capture_output=True, timeout=300)
    yield env
    subprocess.run([str(WINESERVER), "-k"], env=env, capture_output=True, timeout=60)


@pytest.mark.slow
def test_wine_needs_the_vendored_msvcp140(wine_no_msvcp: dict[str, str], tmp_path: Path) -> None:
    loader_dir = tmp_path / "loader"
    loader_dir.mkdir()
    loader = shutil.copy(BIN / "loader.exe", loader_dir / "loader.exe")

    def load(dll: Path) -> tuple[int, str]:
        done = subprocess.run([str(WINE), str(loader), windows(dll), "ext_call"], env=wine_no_msvcp, cwd=loader_dir,
                              capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout.replace("\r\n", "\n")

    stage = _stage(tmp_path / "stage")
    assert load(stage / "pkg" / "cpp.pyd") == (126, "LoadLibraryExW failed: error 126\n")
    done = run_cli("repair", stage, "--collect-deps", "-o", tmp_path / "out", "-L", BIN / "vcredist",
                   "--no-system-paths")
    assert done.code == 0, done.err
    assert load(tmp_path / "out" / "pkg" / "cpp.pyd") == (0, "ok ext_call = 147\n")
