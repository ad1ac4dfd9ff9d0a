"""`show` on real third-party wheels of each platform: numpy from PyPI for manylinux x86_64,
win_amd64 and macOS arm64, downloaded once into pytest's cache directory.

Each wheel is judged with search paths fit for its target: the host's for the Linux wheel,
hermetic ones (nothing of this Linux host) for the Windows and macOS wheels.  The Windows
wheel is repaired by delvewheel: its DLLs live in ``numpy.libs/``, which the patched
``numpy/__init__.py`` adds with ``os.add_dll_directory``; the audit has to find that.

Also, offline: which directories :func:`dll_directories_in` reads out of our own shim and of
delvewheel-style patches.
"""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import pytest

from dynawheel.analysis.resolve import Status, analyze
from dynawheel.binary import BinaryFormat
from dynawheel.repair.shim import add_shim, pth_shim
from dynawheel.report import AuditReport, audit, dll_directories_in, json_schema
from dynawheel.search import SearchPaths
from dynawheel.tree import DirTree, open_tree

from .conftest import pypi_problem, run_cli

# numpy 2.3.5 ships cp311 wheels for all three targets: manylinux_2_27/2_28 x86_64 (OpenBLAS,
# libgfortran and libquadmath vendored in numpy.libs/ by auditwheel), win_amd64 (delvewheel:
# numpy.libs/*.dll) and macosx_11_0_arm64 (delocate: numpy/.dylibs/).
NUMPY = "2.3.5"
TARGETS = {  # name -> (pip --platform, file name glob)
    "linux": ("manylinux_2_28_x86_64", f"numpy-{NUMPY}-cp311-cp311-manylinux*_x86_64.whl"),
    "windows": ("win_amd64", f"numpy-{NUMPY}-cp311-cp311-win_amd64.whl"),
    "macos": ("macosx_11_0_arm64", f"numpy-{NUMPY}-cp311-cp311-macosx_*_arm64.whl"),
}
HERMETIC = SearchPaths(use_system=False)  # nothing of this host: only the tree itself


def _download(cache: Path, target: str) -> Path:
    platform, pattern = TARGETS[target]
    with open(cache / ".lock", "w") as lock:  # pytest-xdist workers share the cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(cache.glob(pattern))
        if found:
            return found[0]
        reason = pypi_problem("numpy", f"CI downloads the numpy {NUMPY} wheels")
        if reason:
            pytest.skip(reason)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--platform", platform,
                 "--python-version", "3.11", "--disable-pip-version-check", "-q", "-d", tmp, f"numpy=={NUMPY}"],
                check=True, capture_output=True, timeout=600,
            )
            (wheel,) = Path(tmp).glob(pattern)
            return wheel.replace(cache / wheel.name)


@pytest.fixture(scope="session")
def wheel_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pytest's cache directory (kept between sessions), or a session directory without it."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    if cache is None:
        return tmp_path_factory.mktemp("third-party-wheels")
    return Path(cache.mkdir("dynawheel-third-party-wheels"))


@pytest.fixture(scope="session")
def linux_wheel(wheel_cache: Path) -> Path:
    return _download(wheel_cache, "linux")


@pytest.fixture(scope="session")
def windows_wheel(wheel_cache: Path) -> Path:
    return _download(wheel_cache, "windows")


@pytest.fixture(scope="session")
def macos_wheel(wheel_cache: Path) -> Path:
    return _download(wheel_cache, "macos")


def _assert_all_resolved(report: AuditReport) -> None:
    """Every extension's chain resolves inside the wheel or to the system; nothing missing."""
    a = report.analysis
    assert not a.bad, a.bad
    assert report.ok
    assert not report.graph.missing() and not report.graph.external()
    extensions = [p for p in a.tree_binaries if ".cpython-311" in p or p.endswith(".pyd")]
    assert len(extensions) > 10
    walked = {w.root for w in a.walks}
    assert set(extensions) <= walked
    for walk in a.walks:
        for edge in walk.edges:
            assert edge.status in (Status.IN_TREE, Status.SYSTEM), (a.relpath(walk.root), edge)


def _edge(report: AuditReport, root_prefix: str, request_prefix: str) -> tuple[str | None, Status]:
    """(tree-relative hit, status) of the first request starting with `request_prefix` in the walk
    of the extension starting with `root_prefix`."""
    a = report.analysis
    (walk,) = [w for w in a.walks if (a.relpath(w.root) or "").startswith(root_prefix)]
    edge = next(e for e in walk.edges if e.request.name.startswith(request_prefix))
    return (a.relpath(edge.hit) if edge.hit else None), edge.status


def _verdict(report: AuditReport, fmt: BinaryFormat) -> str:
    (verdict,) = [v for v in report.verdicts if v.format is fmt]
    return verdict.summary


@pytest.mark.network  # downloads from PyPI
def test_manylinux_wheel_resolves_in_wheel_or_system(linux_wheel: Path) -> None:
    report = audit(linux_wheel, SearchPaths.from_host())
    _assert_all_resolved(report)
    ext = "numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so"
    hit, status = _edge(report, ext, "libscipy_openblas64_")
    assert status is Status.IN_TREE and hit is not None
    assert re.fullmatch(r"numpy\.libs/libscipy_openblas64_-\w+\.so", hit), hit
    hit, status = _edge(report, ext, "libgfortran")  # through the DT_RPATH $ORIGIN/../../numpy.libs
    assert status is Status.IN_TREE and hit is not None and hit.startswith("numpy.libs/libgfortran-")
    assert _edge(report, ext, "libc.so.6")[1] is Status.SYSTEM
    tag = _verdict(report, BinaryFormat.ELF)
    assert re.fullmatch(r"manylinux_2_\d+_x86_64", tag), tag
    assert tag in linux_wheel.name  # the best tag is the one auditwheel gave the wheel


@pytest.mark.network  # downloads from PyPI
def test_windows_wheel_finds_delvewheel_dll_directory(windows_wheel: Path) -> None:
    tree = open_tree(windows_wheel)
    assert dll_directories_in(tree) == ("numpy.libs",)
    report = audit(windows_wheel, HERMETIC)
    _assert_all_resolved(report)
    hit, status = _edge(report, "numpy/_core/_multiarray_umath.cp311-win_amd64.pyd", "libscipy_openblas64_")
    assert status is Status.IN_TREE and hit is not None and hit.startswith("numpy.libs/libscipy_openblas64_-")
    assert _verdict(report, BinaryFormat.PE) == "loads on Python >= 3.8"
    looked = {t.path for w in report.analysis.walks for e in w.edges for t in e.tried}
    assert all(p.startswith(tree.root + "/") for p in looked), "a Linux host path was searched"


@pytest.mark.network  # downloads from PyPI
def test_windows_wheel_without_the_dll_directory_is_missing_its_dlls(windows_wheel: Path) -> None:
    """The control: the same wheel analyzed without numpy.libs as a DLL directory fails to load."""
    tree = open_tree(windows_wheel)
    missing = {e.request.name.split("-")[0] for w in analyze(tree, HERMETIC).walks for e in w.edges
               if e.status is Status.MISSING}
    assert missing == {"libscipy_openblas64_", "msvcp140"}


@pytest.mark.network  # downloads from PyPI
def test_macos_arm64_wheel_resolves_through_loader_path(macos_wheel: Path) -> None:
    report = audit(macos_wheel, HERMETIC)
    _assert_all_resolved(report)
    hit, status = _edge(report, "numpy/_core/_multiarray_umath.cpython-311-darwin.so", "@loader_path")
    assert (hit, status) == ("numpy/.dylibs/libscipy_openblas64_.dylib", Status.IN_TREE)
    assert _edge(report, "numpy/_core/_multiarray_umath.cpython-311-darwin.so", "/usr/lib/libSystem")[1] \
        is Status.SYSTEM
    summary = _verdict(report, BinaryFormat.MACHO)
    assert re.fullmatch(r"arm64, macOS >= 1[1-9]\.\d+", summary), summary


@pytest.mark.network  # downloads from PyPI
@pytest.mark.parametrize("target", ["linux", "windows", "macos"])
def test_show_json_on_real_wheel_validates(target: str, wheel_cache: Path) -> None:
    wheel = _download(wheel_cache, target)
    args = [] if target == "linux" else ["--no-system-paths"]
    result = run_cli("show", "--json", *args, wheel)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    jsonschema.validate(doc, json_schema())
    assert doc["version"] == 3 and doc["ok"] is True and doc["missing"] == [] and doc["bad"] == []
    summary = {"linux": r"manylinux_2_\d+_x86_64", "windows": r"loads on Python >= 3\.8",
               "macos": r"arm64, macOS >= \d+\.\d+"}[target]
    assert [v["summary"] for v in doc["verdicts"] if re.fullmatch(summary, v["summary"])]


# ---- offline: the DLL directories read out of __init__.py files ------------------------------

DELVEWHEEL_PATCH = '''"""A package."""


# start delvewheel patch
def _delvewheel_patch_1_11_1():
    import os
    if os.path.isdir(libs_dir := os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                                                              'foo_bar.libs'))):
        os.add_dll_directory(libs_dir)


_delvewheel_patch_1_11_1()
del _delvewheel_patch_1_11_1
# end delvewheel patch

raise SystemExit("dll_directories_in must never run this file")
'''


def test_dll_directories_from_our_shims(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text(add_shim('"""Doc."""\nX = 1\n', ["../pkg.libs", "sub/dlls"]))
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("import os\n")  # no shim: ignored
    for name, text in pth_shim("my-dist", ["top.libs"]).items():
        (tmp_path / name).write_text(text)
    assert dll_directories_in(DirTree(tmp_path)) == ("top.libs", "pkg.libs", "pkg/sub/dlls")  # file order


def test_dll_directories_from_delvewheel_patch_are_read_not_run(tmp_path: Path) -> None:
    (tmp_path / "foo" / "bar").mkdir(parents=True)
    (tmp_path / "foo_bar.libs").mkdir()
    (tmp_path / "foo_bar.libs" / "x.dll").write_bytes(b"MZ")
    (tmp_path / "foo" / "bar" / "__init__.py").write_text(DELVEWHEEL_PATCH)
    (tmp_path / "foo" / "__init__.py").write_text("# mentions 'other.libs' but adds no DLL directory\n")
    assert dll_directories_in(DirTree(tmp_path)) == ("foo_bar.libs",)
