"""`dynawheel repair` on PE trees and wheels, proven by the Python >= 3.8 rules and by wine.

From fixtures/pe/bin: ext.pyd -> liba.dll -> libb.dll -> libc.dll (+ api-ms-win-crt-heap, KERNEL32),
other.pyd sharing liba.dll, delay.pyd (libc.dll delay-loaded), realistic.pyd (python3.dll,
vcruntime140.dll, api-ms-win-crt-*: all provided by the OS or the interpreter).  The DLLs sit in a
temporary "build" directory outside the tree, given with -L.

The DLL directories the repaired package adds at import are not assumed: the generated shim code
(the marked block in ``__init__.py``, or the ``.pth`` helper module) is EXECUTED with a stand-in
``os`` module that says ``name == "nt"`` and records ``add_dll_directory`` calls.  The tree is then
resolved with exactly those directories (and nothing else: no -L, no PATH, no system dirs), and
wine's loader gets exactly those directories too.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import re
import shutil
import subprocess
import types
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pefile
import pytest

from dynawheel.analysis.graph import DependencyGraph
from dynawheel.analysis.resolve import Status, analyze
from dynawheel.platforms.pe import DELAY_FLAG, is_system_name
from dynawheel.repair.options import RepairOptions
from dynawheel.repair.pipeline import decide
from dynawheel.repair.plan import shim_plan
from dynawheel.repair.shim import END, START
from dynawheel.report import dll_directories_in
from dynawheel.search import SearchPaths
from dynawheel.tree import DirTree
from dynawheel.wheel.archive import Entry, write_wheel

from .conftest import run_cli
from .repairkit import extract, hash_tree, only_wheel
from .test_wine import WINE, WINESERVER, windows

BIN = Path(__file__).resolve().parent.parent / "fixtures" / "pe" / "bin"
MANGLED = re.compile(r"^(liba|libb|libc)-[0-9a-f]{8}\.dll$")
INIT = '"""The package."""\nfrom __future__ import annotations\n\nVALUE = 1\n'


# ---- trees -----------------------------------------------------------------------------------

@pytest.fixture
def build(tmp_path: Path) -> Path:
    """The DLLs, outside every tree."""
    out = tmp_path / "build"
    out.mkdir()
    for name in ("liba.dll", "libb.dll", "libc.dll"):
        shutil.copyfile(BIN / name, out / name)
    return out


def make_tree(root: Path, layout: dict[str, str]) -> Path:
    """`layout`: tree path -> fixture name (a .pyd of fixtures/pe/bin) or text for .py files."""
    for rel, what in layout.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".py"):
            dest.write_text(what)
        else:
            shutil.copyfile(BIN / what, dest)
    return root


SHARED = {"pkg/__init__.py": INIT, "pkg/ext.pyd": "ext.pyd", "pkg/sub/other.pyd": "other.pyd",
          "pkg/realistic.pyd": "realistic.pyd"}
BESIDE = {"pkg/__init__.py": INIT, "pkg/ext.pyd": "ext.pyd", "pkg/other.pyd": "other.pyd"}
NAMESPACE = {"ns/a/ext.pyd": "ext.pyd", "ns/b/other.pyd": "other.pyd"}  # PEP 420: no __init__.py anywhere
DELAY = {"pkg/__init__.py": INIT, "pkg/delay.pyd": "delay.pyd"}


def make_wheel(tree: Path, wheel_dir: Path) -> Path:
    dist_info = "demo-1.0.dist-info"
    entries = [Entry(p.relative_to(tree).as_posix(), p) for p in sorted(tree.rglob("*")) if p.is_file()]
    entries += [Entry(f"{dist_info}/METADATA", b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"),
                Entry(f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                                            b"Tag: cp311-cp311-win_amd64\n")]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    return write_wheel(wheel_dir / "demo-1.0-cp311-cp311-win_amd64.whl", entries, dist_info)


# ---- what the shim does ----------------------------------------------------------------------

def shim_hosts(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if START in p.read_text())


def run_shim_full(host: Path) -> tuple[list[str], list[str]]:
    """Execute the marked block of `host` as Windows CPython would: (the directories it adds with
    os.add_dll_directory, the DLLs it loads with ctypes.WinDLL)."""
    text = host.read_text()
    block = text[text.index(START):text.index(END)]
    added: list[str] = []
    loaded: list[str] = []
    fake = {"os": types.SimpleNamespace(name="nt", path=os.path, add_dll_directory=added.append),
            "ctypes": types.SimpleNamespace(WinDLL=loaded.append)}

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        return fake[name] if name in fake else builtins.__import__(name, *args, **kwargs)

    exec(compile(block, str(host), "exec"),
         {"__file__": str(host), "__name__": "shim", "__builtins__": {**vars(builtins), "__import__": fake_import}})
    return added, loaded


def run_shim(host: Path) -> list[str]:
    """The directories the marked block of `host` adds."""
    return run_shim_full(host)[0]


def added_dll_dirs(root: Path) -> list[Path]:
    return list(dict.fromkeys(Path(d) for host in shim_hosts(root) for d in run_shim(host)))


def imports(path: Path) -> list[str]:
    """DLL names of the import and delay-import tables, read by pefile (a second opinion)."""
    pe = pefile.PE(str(path), fast_load=True)
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
                                           pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT"]])
    names = [e.dll.decode() for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
    names += [e.dll.decode() for e in getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])]
    pe.close()
    return names


def dirs_for(root: Path, extension: Path) -> list[Path]:
    """What runs before `extension` is imported: the __init__.py of every package above it, and the
    .pth helpers (site runs them at start-up); the directories their shims add."""
    parts = extension.relative_to(root).parts[:-1]
    hosts = [root.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
    hosts += [p.with_suffix(".py") for p in sorted(root.glob("_dynawheel_dlls_*.pth"))]
    return [Path(d) for h in hosts if h.is_file() and START in h.read_text() for d in run_shim(h)]


def check_repaired(root: Path, *, mangled: bool) -> list[Path]:
    """Every import of every .pyd resolves inside `root` by the Python >= 3.8 rules, given only the
    directories the shims that run before its import add; system names stay; import tables name
    the vendored files.  Returns the directories all shims add."""
    dirs = added_dll_dirs(root)
    assert all(d.is_dir() and root in d.parents for d in dirs), dirs
    rel_dirs = sorted(d.relative_to(root).as_posix() for d in dirs)
    assert sorted(dll_directories_in(DirTree(root))) == rel_dirs  # `dynawheel show` reads the shim the same way
    for ext in sorted(root.rglob("*.pyd")):
        search = SearchPaths(use_system=False, dll_directories=tuple(map(str, dirs_for(root, ext))))
        analysis = analyze(DirTree(root), search)
        walks = [w for w in analysis.walks if w.root == str(ext)]
        assert not analysis.bad and len(walks) == 1
        for edge in walks[0].edges:
            if edge.status is Status.SYSTEM:
                assert is_system_name(edge.request.name) and edge.hit is None, edge
            else:
                assert edge.status is Status.IN_TREE and analysis.relpath(edge.hit or "") is not None, (ext, edge)
    files = {p.name.lower(): p for p in root.rglob("*") if p.suffix in (".dll", ".pyd")}
    for path in files.values():
        for name in imports(path):
            if is_system_name(name):
                assert not name.lower().startswith(("liba", "libb", "libc")), name
                assert name.lower() not in files, f"{name} is system: never vendored"
                continue
            assert name.lower() in files, (path, name)
            assert bool(MANGLED.match(name)) is mangled or name.lower().startswith("loadcfg"), (path, name)
    return dirs


# ---- staged trees ----------------------------------------------------------------------------

def test_shared_dir_gets_the_shim_in_the_regular_package(build: Path, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "stage", SHARED)
    before = {**hash_tree(tree), **hash_tree(build)}
    out = tmp_path / "out"
    done = run_cli("repair", tree, "-o", out, "--name", "demo", "-L", build, "--no-system-paths")
    assert done.code == 0, done.err
    assert {**hash_tree(tree), **hash_tree(build)} == before
    dirs = check_repaired(out, mangled=True)
    assert dirs == [out / "demo.libs"]
    assert sorted(re.sub(r"-[0-9a-f]{8}", "", p.name) for p in (out / "demo.libs").iterdir()) == [
        "liba.dll", "libb.dll", "libc.dll"]
    assert shim_hosts(out) == [out / "pkg/__init__.py"]
    text = (out / "pkg/__init__.py").read_text()
    assert text.startswith('"""The package."""\nfrom __future__ import annotations\n' + START)
    assert text.count(START) == 1 and text.endswith("\nVALUE = 1\n")
    assert (out / "pkg/realistic.pyd").read_bytes() == (BIN / "realistic.pyd").read_bytes()  # nothing to vendor
    assert imports(out / "pkg/realistic.pyd") == imports(BIN / "realistic.pyd")
    assert not (out / "pkg/sub/__init__.py").exists()
    # a second repair of the output changes nothing: the shim is found again, not added twice
    first = hash_tree(out)
    done = run_cli("repair", out, "--in-place", "--name", "demo", "-L", build, "--no-system-paths")
    assert done.code == 0, done.err
    assert hash_tree(out) == first


def test_beside_the_extensions_needs_no_shim(build: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    tree = make_tree(tmp_path / "stage", BESIDE)
    assert run_cli("repair", tree, "-o", out, "--name", "demo", "-L", build, "--no-system-paths").code == 0
    assert check_repaired(out, mangled=True) == []
    assert (out / "pkg/__init__.py").read_text() == INIT
    assert sorted(re.sub(r"-[0-9a-f]{8}", "", p.name) for p in (out / "pkg").glob("*.dll")) == [
        "liba.dll", "libb.dll", "libc.dll"]


@pytest.mark.parametrize("glob", ["LIBA.DLL", "LibA.*"])
def test_exclude_matches_dll_names_case_insensitively(build: Path, tmp_path: Path, glob: str) -> None:
    """Windows file names are case-insensitive: `--exclude LIBA.DLL` is the import of liba.dll (its
    subtree pruned with it); the import table keeps the name as it was."""
    out = tmp_path / "out"
    tree = make_tree(tmp_path / "stage", BESIDE)
    done = run_cli("repair", tree, "-o", out, "--name", "demo", "-L", build, "--no-system-paths", "--exclude", glob)
    assert done.code == 0, done.err
    assert sorted(p.name for p in out.rglob("*.dll")) == []
    assert imports(out / "pkg/ext.pyd") == ["liba.dll"]
    assert (out / "pkg/ext.pyd").read_bytes() == (BIN / "ext.pyd").read_bytes()


def test_namespace_package_gets_the_pth_helper_never_an_init(build: Path, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "stage", NAMESPACE)
    out = tmp_path / "out"
    done = run_cli("repair", tree, "-o", out, "--name", "demo", "-L", build, "--no-system-paths", "--no-mangle-all")
    assert done.code == 0, done.err
    assert not list(out.rglob("__init__.py"))
    assert check_repaired(out, mangled=False) == [out / "demo.libs"]
    assert shim_hosts(out) == [out / "_dynawheel_dlls_demo.py"]
    assert (out / "_dynawheel_dlls_demo.pth").read_text() == "import _dynawheel_dlls_demo\n"
    # --no-mangle-all: the import tables need no change, the extensions are copied as they are
    for rel, name in NAMESPACE.items():
        assert (out / rel).read_bytes() == (BIN / name).read_bytes()
    assert sorted(p.name for p in (out / "demo.libs").iterdir()) == ["liba.dll", "libb.dll", "libc.dll"]


def test_delay_load_is_vendored_and_flagged(build: Path, tmp_path: Path) -> None:
    """delay.pyd's libc.dll is vendored beside it and renamed in the delay-import table; the edge
    keeps the delay-load flag: only an already-loaded module satisfies it at the first call."""
    tree = make_tree(tmp_path / "stage", DELAY)
    out = tmp_path / "out"
    assert run_cli("repair", tree, "-o", out, "--name", "demo", "-L", build, "--no-system-paths").code == 0
    assert check_repaired(out, mangled=True) == []
    libc = [p.name for p in (out / "pkg").glob("libc-*.dll")]
    assert imports(out / "pkg/delay.pyd") == ["KERNEL32.dll", *libc]
    analysis = analyze(DirTree(out), SearchPaths(use_system=False))
    flags = {e.request.name: e.flag for e in DependencyGraph(analysis).edges}
    assert flags[libc[0]] == DELAY_FLAG
    # ... so the shim loads it by full path before the extension is imported
    preloaded = [Path(p) for host in shim_hosts(out) for p in run_shim_full(host)[1]]
    assert preloaded == [out / "pkg" / libc[0]]


def test_wheel_repair(build: Path, tmp_path: Path) -> None:
    wheel = make_wheel(make_tree(tmp_path / "stage", SHARED), tmp_path / "in")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    done = run_cli("repair", wheel, "-w", tmp_path / "wh", "-L", build, "--no-system-paths")
    assert done.code == 0, done.err
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == digest
    out = only_wheel(tmp_path / "wh")
    assert out.name == wheel.name  # Windows tags do not change
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert names[-1] == "demo-1.0.dist-info/RECORD"
        record = zf.read(names[-1]).decode()
    tree = extract(out, tmp_path / "x")
    for rel in (p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()):
        assert rel in record, rel
    assert check_repaired(tree, mangled=True) == [tree / "demo.libs"]
    # twice: the same wheel
    done = run_cli("repair", out, "-w", tmp_path / "wh2", "-L", build, "--no-system-paths")
    assert done.code == 0, done.err
    assert only_wheel(tmp_path / "wh2").read_bytes() == out.read_bytes()


TWO_C = """/* two.pyd: liba.dll (shared with other.pyd) and loadcfg.dll (only two.pyd needs it). */
#include "dll.h"
IMPORT int a_value(void);
IMPORT int c_value(void);
DLLMAIN
EXPORT void *PyInit_two(void) { return 0; }
EXPORT int ext_call(void) { return a_value() * 10 + c_value(); }
"""
TOOLS = [shutil.which(t) for t in ("clang-14", "llvm-dlltool-14")] + [shutil.which("ld.lld-14")]


@pytest.fixture(scope="module")
def two_pyd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built at test time like fixtures/pe/build.sh builds the others (clang-14 + lld-14, no CRT)."""
    if None in TOOLS:
        pytest.skip("needs clang-14 and lld-14 (apt-get install -y --no-install-recommends clang-14 lld-14)")
    clang, dlltool, lld = TOOLS
    work = tmp_path_factory.mktemp("two")
    for dll, export in (("liba", "a_value"), ("loadcfg", "c_value")):
        (work / f"{dll}.def").write_text(f"LIBRARY {dll}.dll\nEXPORTS\n{export}\n")
        subprocess.run([str(dlltool), "-m", "i386:x86-64", "-d", str(work / f"{dll}.def"), "-l",
                        str(work / f"lib{dll}.a")], check=True)
    (work / "two.c").write_text(TWO_C)
    src = BIN.parent / "src"
    subprocess.run([str(clang), "--target=x86_64-w64-mingw32", "-O2", "-ffreestanding", "-fno-builtin",
                    "-fno-stack-protector", "-fno-ident", f"-I{src}", "-fuse-ld=lld", f"--ld-path={lld}",
                    "-nostdlib", "-s", "-Wl,--no-insert-timestamp", "-shared", "-Wl,--entry,DllMain",
                    "-o", str(work / "two.pyd"), str(work / "two.c"), f"-L{work}", "-lliba", "-lloadcfg"],
                   check=True, capture_output=True)
    return work / "two.pyd"


def test_extension_with_dlls_beside_it_and_in_the_shared_dir(build: Path, two_pyd: Path, tmp_path: Path) -> None:
    """pkg/two.pyd needs loadcfg.dll (only it: vendored beside it) and liba.dll (shared with
    lib2/other.pyd in another package: into demo.libs).  pkg's own __init__.py must add demo.libs:
    importing pkg.two does not run lib2/__init__.py."""
    shutil.copyfile(BIN / "loadcfg.dll", build / "loadcfg.dll")
    tree = make_tree(tmp_path / "stage", {"pkg/__init__.py": INIT, "lib2/__init__.py": INIT,
                                          "lib2/other.pyd": "other.pyd"})
    shutil.copyfile(two_pyd, tree / "pkg/two.pyd")
    out = tmp_path / "out"
    done = run_cli("repair", tree, "-o", out, "--name", "demo", "-L", build, "--no-system-paths")
    assert done.code == 0, done.err
    assert sorted(p.name for p in (out / "pkg").glob("*.dll")) == ["loadcfg.dll"] or \
        [p.name.startswith("loadcfg-") for p in (out / "pkg").glob("*.dll")] == [True]
    check_repaired(out, mangled=True)
    assert shim_hosts(out) == [out / "lib2/__init__.py", out / "pkg/__init__.py"]
    assert dirs_for(out, out / "pkg/two.pyd") == [out / "demo.libs"]
    # the shim plan does not hang on which vendored DLL comes first (loadcfg.dll sits beside two.pyd)
    job = decide(DirTree(tree), RepairOptions(search=SearchPaths(extra=(str(build),), use_system=False)), "demo")
    for order in (job.collection.vendored, tuple(reversed(job.collection.vendored))):
        plan = shim_plan(job.analysis, replace(job.collection, vendored=order))
        assert plan.init_files == {"lib2/__init__.py": ("../demo.libs",), "pkg/__init__.py": ("../demo.libs",)}


def provided_site(build: Path, tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """--provided-by base.whl, which installs base/libs/liba.dll (+ libb, libc): nothing is vendored,
    pkg/__init__.py adds ../base/libs, METADATA requires base.  Both wheels unpacked into one
    site-packages: (site, its pkg/ext.pyd, the directories the shims add for it)."""
    base = tmp_path / "base"
    (base / "base/libs").mkdir(parents=True)
    for name in ("liba.dll", "libb.dll", "libc.dll"):
        shutil.copyfile(build / name, base / "base/libs" / name)
    base_wheel = write_wheel(tmp_path / "base-1.0-py3-none-win_amd64.whl", [
        *(Entry(p.relative_to(base).as_posix(), p) for p in sorted(base.rglob("*.dll"))),
        Entry("base-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: base\nVersion: 1.0\n"),
        Entry("base-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                                          b"Tag: py3-none-win_amd64\n")], "base-1.0.dist-info")
    wheel = make_wheel(make_tree(tmp_path / "stage", {"pkg/__init__.py": INIT, "pkg/ext.pyd": "ext.pyd"}),
                       tmp_path / "in")
    done = run_cli("repair", wheel, "-w", tmp_path / "wh", "--no-system-paths", "--provided-by", base_wheel)
    assert done.code == 0, done.err
    out = only_wheel(tmp_path / "wh")
    with zipfile.ZipFile(out) as zf:
        assert "Requires-Dist: base==1.0" in zf.read("demo-1.0.dist-info/METADATA").decode().splitlines()
        assert not [n for n in zf.namelist() if n.endswith(".dll")]
    site = extract(base_wheel, extract(out, tmp_path / "site-packages"))
    ext = site / "pkg/ext.pyd"
    return site, ext, dirs_for(site, ext)


def test_dlls_provided_by_another_wheel_get_their_directory_added(build: Path, tmp_path: Path) -> None:
    site, ext, dirs = provided_site(build, tmp_path)
    assert ext.read_bytes() == (BIN / "ext.pyd").read_bytes()
    assert dirs == [site / "base/libs"]
    analysis = analyze(DirTree(site), SearchPaths(use_system=False, dll_directories=tuple(map(str, dirs))))
    edges = [e for w in analysis.walks if w.root == str(ext) for e in w.edges]
    assert {e.status for e in edges} == {Status.IN_TREE, Status.SYSTEM} and not DependencyGraph(analysis).missing()


# ---- a real loader: wine ---------------------------------------------------------------------

needs_wine = pytest.mark.skipif(
    not WINE.exists(), reason="wine64 is not installed (apt-get install -y --no-install-recommends wine64; CI does)")


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Run fixtures/pe/bin/loader.exe from its own directory (outside every tree) under wine64."""
    prefix = tmp_path_factory.mktemp("wineprefix")
    env = {**os.environ, "WINEPREFIX": str(prefix), "WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml="}
    subprocess.run([str(WINE), "wineboot", "--init"], env=env, check=True, capture_output=True, timeout=300)
    loader_dir = tmp_path_factory.mktemp("loader")
    loader = Path(shutil.copy(BIN / "loader.exe", loader_dir / "loader.exe"))

    def run(dll: Path, function: str, *dirs: Path) -> tuple[int, list[str]]:
        args = [str(WINE), str(loader), windows(dll), function, *map(loader_arg, dirs)]
        done = subprocess.run(args, env=env, cwd=loader_dir, capture_output=True, text=True, timeout=120)
        return done.returncode, [ln for ln in done.stdout.replace("\r\n", "\n").splitlines() if ln]

    yield run
    subprocess.run([str(WINESERVER), "-k"], env=env, capture_output=True, timeout=60)


def loader_arg(path: Path) -> str:
    """A directory to add, or '+FILE' (as Path('+/abs/file')): a DLL to preload."""
    text = str(path)
    return "+" + windows(Path(text[1:])) if text.startswith("+") else windows(path)


def added(*dirs: Path) -> list[str]:
    return [f"added {windows(d)}" for d in dirs]


@pytest.mark.slow
@needs_wine
@pytest.mark.parametrize("mangle", [True, False], ids=["mangled", "no-mangle-all"])
def test_wine_loads_the_repaired_wheel(wine: Any, build: Path, tmp_path: Path, mangle: bool) -> None:
    layout = SHARED if mangle else NAMESPACE
    wheel = make_wheel(make_tree(tmp_path / "stage", layout), tmp_path / "in")
    flags = () if mangle else ("--no-mangle-all",)
    done = run_cli("repair", wheel, "-w", tmp_path / "wh", "-L", build, "--no-system-paths", *flags)
    assert done.code == 0, done.err
    shutil.rmtree(build)  # the originals are gone: only the wheel's copies can load
    tree = extract(only_wheel(tmp_path / "wh"), tmp_path / "site-packages")
    dirs = check_repaired(tree, mangled=mangle)
    assert dirs == [tree / "demo.libs"]
    ext, other = (tree / rel for rel in layout if rel.endswith(("ext.pyd", "other.pyd")))
    assert wine(ext, "ext_call", *dirs) == (0, [*added(*dirs), "ok ext_call = 123"])
    assert wine(other, "ext_call", *dirs) == (0, [*added(*dirs), "ok ext_call = 1123"])
    if mangle:  # the shim's directory matters
        assert wine(ext, "ext_call") == (126, ["LoadLibraryExW failed: error 126"])


@pytest.mark.slow
@needs_wine
def test_wine_loads_with_dlls_of_another_wheel(wine: Any, build: Path, tmp_path: Path) -> None:
    _site, ext, dirs = provided_site(build, tmp_path)
    shutil.rmtree(build)
    assert wine(ext, "ext_call", *dirs) == (0, [*added(*dirs), "ok ext_call = 123"])


@pytest.mark.slow
@needs_wine
def test_wine_delay_loaded_dll_loads_after_the_shim_preloads_it(wine: Any, build: Path, tmp_path: Path) -> None:
    """What the DELAY_FLAG says, on a real loader: the repaired delay.pyd loads, but its delay-loaded
    (vendored, renamed) libc is found at the first call only if some module loaded it before:
    alone, the call raises 0xC06D007E even with the DLL beside the extension.  The shim loads it
    by full path first (ctypes.WinDLL; the loader's +PRELOAD), and then the call succeeds."""
    tree = make_tree(tmp_path / "stage", DELAY)
    out = tmp_path / "out"
    assert run_cli("repair", tree, "-o", out, "--name", "demo", "-L", build, "--no-system-paths").code == 0
    shutil.rmtree(build)
    delay = out / "pkg/delay.pyd"
    assert wine(delay, "PyInit_delay") == (0, ["ok PyInit_delay = 0"])
    assert wine(delay, "ext_call", delay.parent) == (1, [*added(delay.parent), "unhandled exception 0xc06d007e"])
    dirs, preload = run_shim_full(out / "pkg" / "__init__.py")
    assert preload, "the shim preloads the delay-loaded DLL"
    code, lines = wine(delay, "ext_call", *map(Path, dirs), *(Path("+" + p) for p in preload))
    assert code == 0, lines
    assert lines[-1].startswith("ok ext_call = ")
