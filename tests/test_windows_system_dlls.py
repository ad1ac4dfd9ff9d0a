"""The DLLs a clean Windows 10/11 provides (dynawheel/data/windows-system-dlls.json), judged on
inputs we did not make: the data is what scripts/gen_windows_dlls.py makes from its public sources
(delvewheel's name lists from PyPI, Wine's DLLs), and pywin32's published win_amd64 wheel, which
imports many of them (aclui, activeds, credui, lz32, query, wevtapi, ...), needs nothing else
than system DLLs, its own DLLs and the Visual C++ runtime it does not ship.
"""

from __future__ import annotations

import fcntl
import hashlib
import posixpath
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from dynawheel.analysis.resolve import Status
from dynawheel.binary import BinaryFormat
from dynawheel.platforms.pe import is_system_name, is_vc_redist, read_headers
from dynawheel.report import audit
from dynawheel.search import SearchPaths

from .conftest import pypi_problem

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "dynawheel" / "data" / "windows-system-dlls.json"
WINE_DIR = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows")
PYWIN32 = "pywin32==312"
PYWIN32_WHEEL = "pywin32-312-cp311-cp311-win_amd64.whl"
PYWIN32_SHA256 = "d11417d84412f859b722fad0841b3614459ed0047f7542d8362e77884f6b6e8a"
# what the issue found reported missing in this wheel: each is in System32 of every Windows 10/11
ISSUE_NAMES = {"aclui.dll", "activeds.dll", "credui.dll", "lz32.dll", "query.dll", "wevtapi.dll", "ktmw32.dll",
               "loadperf.dll", "sfc.dll"}


@pytest.mark.network  # downloads from PyPI
def test_the_generator_reproduces_the_data(tmp_path: Path) -> None:
    if not WINE_DIR.is_dir():
        pytest.skip("wine64 is not installed (apt-get install -y --no-install-recommends wine64; CI installs it)")
    reason = pypi_problem("delvewheel", "the generator downloads delvewheel's name lists")
    if reason:
        pytest.skip(reason)
    out = tmp_path / "dlls.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_windows_dlls.py"), "-o", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == DATA.read_bytes()


@pytest.fixture(scope="module")
def pywin32(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config_cache = getattr(request.config, "cache", None)
    cache = Path(config_cache.mkdir("dynawheel-windows-wheels")) if config_cache else tmp_path_factory.mktemp("w")
    wheel = cache / PYWIN32_WHEEL
    with open(cache / ".lock", "w") as lock:  # pytest-xdist workers share the cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not wheel.exists():
            reason = pypi_problem("pywin32", f"CI downloads {PYWIN32_WHEEL}")
            if reason:
                pytest.skip(reason)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                subprocess.run([sys.executable, "-m", "pip", "download", "--isolated", "--no-deps",
                                "--only-binary=:all:", "--platform", "win_amd64", "--python-version", "3.11",
                                "--implementation", "cp", "--disable-pip-version-check", "-q", "-d", tmp, PYWIN32],
                               check=True, capture_output=True, timeout=600)
                Path(tmp, PYWIN32_WHEEL).replace(wheel)
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == PYWIN32_SHA256
    return wheel


@pytest.mark.network  # downloads from PyPI
def test_pywin32_needs_only_system_own_and_vc_runtime_dlls(pywin32: Path) -> None:
    report = audit(pywin32, SearchPaths(use_system=False))
    edges = [e for w in report.analysis.walks for e in w.edges]
    assert len(edges) > 500
    with zipfile.ZipFile(pywin32) as archive:
        own = {posixpath.basename(n).lower() for n in archive.namelist() if n.lower().endswith((".dll", ".pyd"))}
    missing = {e.request.name.lower() for e in edges if e.status is Status.MISSING}
    system = {e.request.name.lower() for e in edges if e.status is Status.SYSTEM}
    assert system >= ISSUE_NAMES
    # pywin32_system32/ is added at start-up (a relative --dll-dir case): its DLLs are pywin32's own
    assert missing - own == {"msvcp140.dll", "mfc140u.dll"}  # the Visual C++ runtime pywin32 does not ship
    assert all(is_vc_redist(name) and not is_system_name(name) for name in missing - own)
    (verdict,) = [v for v in report.verdicts if v.format is BinaryFormat.PE]
    assert sum("Visual C++ runtime" in b for b in verdict.blockers) == 2, verdict.blockers


@pytest.mark.network  # downloads from PyPI
def test_pywin32_headers_equal_pefiles(pywin32: Path) -> None:
    """Our struct reads of the headers against pefile's parse, on every binary of a published wheel."""
    from .test_pe import pefile_headers

    with zipfile.ZipFile(pywin32) as archive:
        binaries = [archive.read(n) for n in archive.namelist() if n.lower().endswith((".dll", ".pyd", ".exe"))]
    assert len(binaries) > 50
    for data in binaries:
        assert read_headers(data) == pefile_headers(data)
