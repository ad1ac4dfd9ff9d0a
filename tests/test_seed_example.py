"""The seed's example end to end: stage pkg1 and pkg2, build, check, pip install, import, uninstall."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import dynawheel

from .conftest import Venv, make_venv, run_cli

SEED_METADATA = """Metadata-Version: 2.1
Name: {name}
Version: 1.0.0
Summary: DynaWheel add-pkgs example
Home-page: UNKNOWN
Author: DynaWheel
Author-email: UNKNOWN
License: UNKNOWN
Platform: UNKNOWN
Classifier: Development Status :: 4 - Beta
Classifier: Operating System :: POSIX

UNKNOWN

"""


def seed_call(src: Path, pkgname: str, dest: Path) -> Path:
    """What the seed's setup.py does, verbatim in shape."""
    return dynawheel.dynawheel(
        SEED_METADATA.format(name=pkgname), src_root_dir=src, pkgname=pkgname, whlver="1.0.0",
        arch="linux_x86_64", pyver="py38", whl_dest_dir=dest, root_is_purelib=False, abi="none",
        cleanup_dist_info_dir=True,
    )


@pytest.fixture(scope="module")
def seed_wheels(seed_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    dest = tmp_path_factory.mktemp("dist")
    before = sorted(p.as_posix() for p in seed_tree.rglob("*"))
    w1 = seed_call(seed_tree / "pkg1" / "src", "anamespace.pkg1", dest)
    w2 = seed_call(seed_tree / "pkg2" / "src", "anamespace.pkg2", dest)
    assert sorted(p.as_posix() for p in seed_tree.rglob("*")) == before, "the source tree was modified"
    return w1, w2


def test_seed_api_names_and_prints(seed_wheels: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    w1, w2 = seed_wheels
    assert w1.name == "anamespace_pkg1-1.0.0-py38-none-linux_x86_64.whl"
    assert w2.name == "anamespace_pkg2-1.0.0-py38-none-linux_x86_64.whl"
    with zipfile.ZipFile(w2) as zf:
        names = zf.namelist()
    assert "anamespace_pkg2-1.0.0.data/scripts/aexe" in names
    assert names[-1] == "anamespace_pkg2-1.0.0.dist-info/RECORD"
    assert not any(n.startswith("pkg2-1.0.0.data") for n in names)


def test_check_is_clean_and_finds_overlap(seed_wheels: tuple[Path, Path], seed_tree: Path, tmp_path: Path) -> None:
    w1, w2 = seed_wheels
    result = run_cli("check", w1, w2)
    assert result.code == 0, result.out + result.err
    assert result.out.count(": ok") == 2
    # a third wheel that also ships pkg1's apy.py into the namespace
    (tmp_path / "st" / "anamespace").mkdir(parents=True)
    (tmp_path / "st" / "anamespace" / "apy.py").write_text("# clash\n")
    built = run_cli("build", tmp_path / "st", "--name", "clash", "--version", "1", "-w", tmp_path)
    assert built.code == 0, built.err
    result = run_cli("check", w1, w2, tmp_path / "clash-1-py3-none-any.whl")
    assert result.code == 3
    assert "conflict: site-packages/anamespace/apy.py is installed by" in result.out
    assert "anamespace_pkg1-1.0.0" in result.out and "clash-1-py3-none-any.whl" in result.out


def _installed(v: Venv) -> set[str]:
    return v.files()


@pytest.mark.slow
def test_pip_install_both_then_uninstall_each(seed_wheels: tuple[Path, Path], tmp_path: Path) -> None:
    v = make_venv(tmp_path / "venv")
    w1, w2 = seed_wheels
    base = _installed(v)
    v.pip("install", "--no-index", w1)
    after1 = _installed(v)
    v.pip("install", "--no-index", w2)
    after2 = _installed(v)
    sp = v.site_packages.relative_to(v.root).as_posix()
    expected_pkg1 = {f"{sp}/anamespace/apy.py", f"{sp}/anamespace/support.so", f"{sp}/anamespace/pkg_std/__init__.py",
                     f"{sp}/anamespace/pkg_std/ma.py", f"{sp}/anamespace/pkg_ns/mb.py"}
    assert expected_pkg1 <= after1
    assert not (v.site_packages / "anamespace" / "__init__.py").exists(), "namespace must stay PEP 420"
    expected_pkg2 = {f"{sp}/anamespace/loadme.so", f"{sp}/anamespace/more.so", f"{sp}/plat.py", f"{sp}/pure.py",
                     "bin/aexe", "a.txt", f"include/site/python{sys.version_info[0]}.{sys.version_info[1]}/"
                     "anamespace-pkg2/a.h"}
    assert expected_pkg2 <= after2 - after1
    assert os.access(v.root / "bin" / "aexe", os.X_OK)
    assert (v.root / "bin" / "aexe").read_text().startswith(f"#!{v.root}/bin/python")
    assert "aexe mb" in subprocess.run([str(v.root / "bin" / "aexe")], capture_output=True, text=True).stdout
    out = v.run("-c", "import anamespace.pkg_ns.mb as mb, anamespace.pkg_std.ma as ma, anamespace.apy as a, plat;"
                      "print(mb.NAME, ma.NAME, a.add(1, 2), a.plugin(), plat.WHERE)")
    assert out.split() == ["mb", "ma", "1003", "43", "platlib"]
    # uninstall each: exactly its own files go
    v.pip("uninstall", "-y", "anamespace.pkg2")
    assert _installed(v) == after1
    v.pip("uninstall", "-y", "anamespace.pkg1")
    assert _installed(v) == base


@pytest.mark.slow
def test_installer_accepts_the_wheels(seed_wheels: tuple[Path, Path], tmp_path: Path) -> None:
    """pypa/installer validates RECORD strictly."""
    dest = tmp_path / "dest"
    for wheel in seed_wheels:
        proc = subprocess.run([sys.executable, "-m", "installer", "--destdir", str(dest), str(wheel)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    found = {p.name for p in dest.rglob("*") if p.is_file()}
    assert {"apy.py", "support.so", "loadme.so", "more.so", "plat.py", "aexe", "a.txt", "a.h"} <= found
