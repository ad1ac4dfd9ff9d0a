"""Binaries under ``<name>-<ver>.data/platlib/`` (or ``/purelib/``): installers put them into site-packages,
beside the files of the wheel's root.  Their libraries are vendored beside them and reached through
``$ORIGIN`` (proven with a real extension built by gcc, the repaired wheel installed by real pip into a fresh
venv, the original library deleted, and the import's /proc/self/maps); a run path that would cross between
``.data/platlib`` and the wheel's root, and so break once installed, is refused with a clear error.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from . import elfbuild
from .conftest import make_venv, run_cli
from .repairkit import dynamic, members, only_wheel

pytestmark = pytest.mark.skipif(not elfbuild.have_gcc(), reason="needs gcc to build the extensions")

PLATLIB = "demo-1.0.data/platlib"


def _stage(root: Path, with_root_package: bool) -> tuple[Path, Path]:
    """(stage, build): demo-1.0.data/platlib/pk/_ext needing libhelper.so.1 from build/ (outside the stage),
    and, if asked, demo/_a at the wheel's root needing it too."""
    build, stage = root / "build", root / "stage"
    helper = elfbuild.shared_lib(build / "libhelper.so.1", soname="libhelper.so.1")
    elfbuild.extension(stage / PLATLIB / "pk", "_ext", needs=[helper])
    (stage / PLATLIB / "pk" / "__init__.py").write_text("")
    if with_root_package:
        elfbuild.extension(stage / "demo", "_a", needs=[helper])
        (stage / "demo" / "__init__.py").write_text("")
    assert run_cli("build", stage, "--name", "demo", "--version", "1.0", "-w", root / "dist").code == 0
    return stage, build


@pytest.fixture(scope="module")
def repaired(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The platlib-only wheel, repaired; build/ deleted."""
    root = tmp_path_factory.mktemp("platlib")
    _unused, build = _stage(root, with_root_package=False)
    fixed = run_cli("repair", only_wheel(root / "dist"), "-L", build, "-w", root / "wheelhouse")
    assert fixed.code == 0, fixed.err
    shutil.rmtree(build)
    return only_wheel(root / "wheelhouse")


def test_the_copy_lies_beside_the_extension_in_its_scheme(repaired: Path, tmp_path: Path) -> None:
    shutil.unpack_archive(repaired, tmp_path, "zip")
    ext = next((tmp_path / PLATLIB / "pk").glob("_ext*.so"))
    assert dynamic(ext).runpath == ("$ORIGIN",)
    assert len(list((tmp_path / PLATLIB / "pk").glob("libhelper-*.so.1"))) == 1


@pytest.mark.slow
def test_the_installed_extension_loads_the_vendored_copy(repaired: Path, tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", "--no-deps", repaired)
    probe = venv.run("-c", "import pk._ext as e; print(e.value()); "
                     "print(*sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libhelper' in l}))")
    value_line, lib = probe.splitlines()
    assert value_line == "1" and Path(lib).parent == (venv.site_packages / "pk").resolve(), probe


def test_show_finds_the_repaired_wheel_complete_and_a_second_repair_reproduces_it(repaired: Path,
                                                                                  tmp_path: Path) -> None:
    shown = run_cli("show", repaired)
    assert shown.code == 0, shown.out + shown.err
    again = run_cli("repair", repaired, "-w", tmp_path)
    assert again.code == 0, again.err
    assert only_wheel(tmp_path).read_bytes() == repaired.read_bytes()


def test_a_run_path_that_installing_would_break_is_refused(tmp_path: Path) -> None:
    """pk/_ext (in .data/platlib) and demo/_a (at the root) share one copy in demo.libs/: from the wheel's
    layout that is '$ORIGIN/../../../demo.libs', installed it would be '$ORIGIN/../demo.libs'."""
    _stage(tmp_path, with_root_package=True)
    wheel = only_wheel(tmp_path / "dist")
    before = wheel.read_bytes()
    refused = run_cli("repair", wheel, "-L", tmp_path / "build", "-w", tmp_path / "wheelhouse")
    assert refused.code == 1, (refused.code, refused.err)
    assert "installing breaks" in refused.err and "'$ORIGIN/../demo.libs'" in refused.err, refused.err
    assert "Traceback" not in refused.err and refused.err.count("dynawheel: error:") == 1, refused.err
    assert not list(tmp_path.glob("wheelhouse/*.whl"))
    assert wheel.read_bytes() == before
    assert members(wheel)  # the input is still a readable wheel
