"""A real Windows loader: wine64 runs fixtures/pe/bin/loader.exe, which loads a DLL the way
CPython >= 3.8 loads an extension (AddDllDirectory for each directory given, then
LoadLibraryExW(LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR)) and calls
an exported function.  The loader runs from its own directory, away from the DLLs under test:
the executable's directory is always searched and would give false passes.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from dynawheel.platforms.pe import read_image
from dynawheel.platforms.pe_edit import rename_imports

WINE = pathlib.Path("/usr/lib/wine/wine64")
WINESERVER = pathlib.Path("/usr/lib/wine/wineserver")
BIN = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pe" / "bin"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not WINE.exists(),
        reason="wine64 is not installed (apt-get install -y --no-install-recommends wine64; CI installs it)",
    ),
]


@pytest.fixture(scope="session")
def wine_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    prefix = tmp_path_factory.mktemp("wineprefix")
    env = {**os.environ, "WINEPREFIX": str(prefix), "WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml="}
    subprocess.run([str(WINE), "wineboot", "--init"], env=env, check=True, capture_output=True, timeout=300)
    yield env
    subprocess.run([str(WINESERVER), "-k"], env=env, capture_output=True, timeout=60)


@pytest.fixture
def loader(tmp_path: pathlib.Path) -> pathlib.Path:
    directory = tmp_path / "loader"
    directory.mkdir()
    return pathlib.Path(shutil.copy(BIN / "loader.exe", directory / "loader.exe"))


def windows(path: pathlib.Path) -> str:
    return "Z:" + str(path).replace("/", "\\")


def run(env: dict[str, str], loader: pathlib.Path, dll: pathlib.Path, *dirs: pathlib.Path) -> tuple[int, str]:
    args = [str(WINE), str(loader), windows(dll), "ext_call", *map(windows, dirs)]
    done = subprocess.run(args, env=env, cwd=loader.parent, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout.replace("\r\n", "\n")


@pytest.fixture
def split_tree(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A/ext.pyd; its chain liba.dll -> libb.dll -> libc.dll in B."""
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    shutil.copy(BIN / "ext.pyd", a)
    for name in ("liba.dll", "libb.dll", "libc.dll"):
        shutil.copy(BIN / name, b)
    return a, b


def test_dependencies_elsewhere_need_add_dll_directory(
    wine_env: dict[str, str], loader: pathlib.Path, split_tree: tuple[pathlib.Path, pathlib.Path]
) -> None:
    a, b = split_tree
    assert run(wine_env, loader, a / "ext.pyd") == (126, "LoadLibraryExW failed: error 126\n")
    code, out = run(wine_env, loader, a / "ext.pyd", b)
    assert (code, out.splitlines()) == (0, [f"added {windows(b)}", "ok ext_call = 123"])


def test_loader_rules_for_indirect_dependencies(
    wine_env: dict[str, str], loader: pathlib.Path, split_tree: tuple[pathlib.Path, pathlib.Path]
) -> None:
    """Facts the PE backend encodes: libb.dll (in B) gets libc.dll from the extension's directory
    A first (alt build: 100 + 20 + 30), and an i686 libc.dll there is skipped, not fatal."""
    a, b = split_tree
    shutil.copy(BIN / "alt" / "libc.dll", a / "libc.dll")
    assert run(wine_env, loader, a / "ext.pyd", b) == (0, f"added {windows(b)}\nok ext_call = 150\n")
    shutil.copy(BIN / "i686" / "libc.dll", a / "libc.dll")
    assert run(wine_env, loader, a / "ext.pyd", b) == (0, f"added {windows(b)}\nok ext_call = 123\n")


def test_renamed_imports_still_load(wine_env: dict[str, str], loader: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """rename_imports on the whole chain (longer names: the new-section path for every file),
    the DLLs copied under the new names only, loaded through AddDllDirectory."""
    mapping = {
        "liba.dll": "liba-5f3c2d1e9a8b7c6d.dll",
        "libb.dll": "libb-0a1b2c3d4e5f6789.dll",
        "libc.dll": "libc-ffeeddccbbaa9988.dll",
    }
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    (a / "ext.pyd").write_bytes(rename_imports((BIN / "ext.pyd").read_bytes(), mapping))
    for old, new in mapping.items():
        (b / new).write_bytes(rename_imports((BIN / old).read_bytes(), mapping))
    assert sorted(p.name for p in b.iterdir()) == sorted(mapping.values())
    liba = read_image((b / mapping["liba.dll"]).read_bytes(), "liba")
    assert [d.name for d in liba.needed] == [mapping["libb.dll"], "api-ms-win-crt-heap-l1-1-0.dll"]
    assert run(wine_env, loader, a / "ext.pyd") == (126, "LoadLibraryExW failed: error 126\n")
    assert run(wine_env, loader, a / "ext.pyd", b) == (0, f"added {windows(b)}\nok ext_call = 123\n")


def test_in_place_rename_loads(wine_env: dict[str, str], loader: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Shorter names (written in place, same file size) load too."""
    a = tmp_path / "A"
    a.mkdir()
    mapping = {"liba.dll": "a.dll", "libb.dll": "b.dll", "libc.dll": "c.dll"}
    (a / "ext.pyd").write_bytes(rename_imports((BIN / "ext.pyd").read_bytes(), mapping))
    for old, new in mapping.items():
        (a / new).write_bytes(rename_imports((BIN / old).read_bytes(), mapping))
    assert (a / "a.dll").stat().st_size == (BIN / "liba.dll").stat().st_size
    assert run(wine_env, loader, a / "ext.pyd") == (0, "ok ext_call = 123\n")


def test_delay_load_is_lazy_and_uses_the_default_search_order(
    wine_env: dict[str, str], loader: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """The fact behind DELAY_FLAG: delay.pyd loads without libc.dll; the first call fails
    (0xC06D007E) even with libc.dll beside delay.pyd and that directory added, because the
    delay helper uses LoadLibrary's default search order (which has the application dir)."""
    a = tmp_path / "A"
    a.mkdir()
    shutil.copy(BIN / "delay.pyd", a)
    args = [str(WINE), str(loader), windows(a / "delay.pyd"), "PyInit_delay"]
    done = subprocess.run(args, env=wine_env, cwd=loader.parent, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "ok PyInit_delay = 0")
    shutil.copy(BIN / "libc.dll", a)
    assert run(wine_env, loader, a / "delay.pyd", a) == (1, f"added {windows(a)}\nunhandled exception 0xc06d007e\n")
    shutil.copy(BIN / "libc.dll", loader.parent)
    assert run(wine_env, loader, a / "delay.pyd") == (0, "ok ext_call = 4003\n")
