"""SBOM and license files for libraries taken from package trees, in all three formats.

Real binaries (the committed PE and Mach-O fixtures built with clang/lld, an ELF library built here with
gcc) are placed in package trees laid out as their managers lay them out: a vcpkg ``installed/`` tree and an
MSYS2 root (PE DLLs), a Homebrew Cellar (a Mach-O dylib), a conda prefix with its package cache (an ELF
library).  The wheels are repaired; the SBOM must pass the CycloneDX 1.6 schema and name each owner; the
license files must be those of the owning package; the ELF wheel is installed with pip and imported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dynawheel.wheel.archive import Entry, write_wheel

from . import elfbuild
from .conftest import make_venv, run_cli
from .repairkit import members, only_wheel, read_member

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _put(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def _wheel(files: dict[str, Path], out: Path, name: str, platform: str) -> Path:
    dist_info = f"{name}-1.0.dist-info"
    entries = [Entry(rel, path) for rel, path in sorted(files.items())]
    entries += [Entry(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()),
                Entry(f"{dist_info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                                            f"Tag: cp311-cp311-{platform}\n".encode())]
    out.mkdir(parents=True, exist_ok=True)
    return write_wheel(out / f"{name}-1.0-cp311-cp311-{platform}.whl", entries, dist_info)


def _repaired(wheel: Path, out: Path, *args: str | Path) -> tuple[Path, dict[str, dict[str, object]], str]:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    result = run_cli("repair", wheel, "-w", out, *args)
    assert result.code == 0, result.err
    fixed = only_wheel(out)
    dist_info = wheel.name.split("-")[0] + "-1.0.dist-info"
    text = read_member(fixed, f"{dist_info}/sboms/dynawheel.cdx.json").decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    comps = {c["name"].split("-")[0]: c for c in json.loads(text)["components"]}
    return fixed, comps, dist_info


def _license_member(wheel: Path, dist_info: str, component: dict[str, object], rel: str) -> bytes:
    return read_member(wheel, f"{dist_info}/licenses/{component['name']}/{rel}")


def test_pe_from_vcpkg_and_msys2(tmp_path: Path) -> None:
    """ext.pyd -> liba.dll -> libb.dll (vcpkg ports 'a' and 'b') -> libc.dll (an MSYS2 ucrt64 package)."""
    bin_dir = FIXTURES / "pe" / "bin"
    installed = tmp_path / "vcpkg" / "installed"
    for port, version in (("a", "1.0"), ("b", "2.1#3")):
        _put(installed / "x64-windows" / "bin" / f"lib{port}.dll", (bin_dir / f"lib{port}.dll").read_bytes())
        _put(installed / "x64-windows" / "share" / port / "copyright", f"port {port} license\n")
        _put(installed / "vcpkg" / "info" / f"{port}_{version}_x64-windows.list",
             f"x64-windows/\nx64-windows/bin/\nx64-windows/bin/lib{port}.dll\nx64-windows/share/{port}/copyright\n")
    msys = tmp_path / "msys64"
    _put(msys / "ucrt64" / "bin" / "libc.dll", (bin_dir / "libc.dll").read_bytes())
    _put(msys / "ucrt64" / "share" / "licenses" / "c" / "COPYING", "c license\n")
    local = msys / "var" / "lib" / "pacman" / "local" / "mingw-w64-ucrt-x86_64-c-3.2-1"
    _put(local / "desc", "%NAME%\nmingw-w64-ucrt-x86_64-c\n\n%VERSION%\n3.2-1\n\n%ARCH%\nany\n\n"
                         "%LICENSE%\nspdx:MIT\n\n")
    _put(local / "files", "%FILES%\nucrt64/\nucrt64/bin/\nucrt64/bin/libc.dll\nucrt64/share/licenses/c/\n"
                          "ucrt64/share/licenses/c/COPYING\n\n")
    wheel = _wheel({"pkg/__init__.py": _put(tmp_path / "init.py", ""), "pkg/ext.pyd": bin_dir / "ext.pyd"},
                   tmp_path / "in", "demo", "win_amd64")
    fixed, comps, dist_info = _repaired(wheel, tmp_path / "out", "-L", installed / "x64-windows" / "bin",
                                        "-L", msys / "ucrt64" / "bin", "--no-system-paths")
    assert comps["liba"]["purl"] == "pkg:generic/vcpkg/a@1.0?triplet=x64-windows"
    assert comps["libb"]["purl"] == "pkg:generic/vcpkg/b@2.1%233?triplet=x64-windows"
    assert comps["libc"]["purl"] == "pkg:alpm/msys2/mingw-w64-ucrt-x86_64-c@3.2-1?arch=any"
    assert comps["libc"]["licenses"] == [{"expression": "MIT"}]  # MSYS2 marks an SPDX expression 'spdx:'
    assert _license_member(fixed, dist_info, comps["liba"], "copyright") == b"port a license\n"
    assert _license_member(fixed, dist_info, comps["libc"], "c/COPYING") == b"c license\n"
    assert run_cli("check", fixed).code == 0


def test_macho_from_a_homebrew_keg(tmp_path: Path) -> None:
    """pkg/_ext (arm64 bundle) -> @rpath/libhelper.dylib, found in /opt/homebrew/Cellar/helper/1.2.3_1/lib."""
    keg = tmp_path / "opt" / "homebrew" / "Cellar" / "helper" / "1.2.3_1"
    _put(keg / "lib" / "libhelper.dylib", (FIXTURES / "macho" / "bin" / "libs" / "libhelper.dylib").read_bytes())
    _put(keg / "LICENSE.txt", "helper license\n")
    _put(keg / "INSTALL_RECEIPT.json", "{}")
    ext = FIXTURES / "macho" / "bin" / "pkg" / "_ext.cpython-311-darwin.so"
    wheel = _wheel({"pkg/__init__.py": _put(tmp_path / "init.py", ""), f"pkg/{ext.name}": ext},
                   tmp_path / "in", "demo", "macosx_11_0_arm64")
    fixed, comps, dist_info = _repaired(wheel, tmp_path / "out", "-L", keg / "lib", "--no-system-paths")
    assert comps["libhelper"]["purl"] == "pkg:generic/homebrew/helper@1.2.3_1"
    assert _license_member(fixed, dist_info, comps["libhelper"], "LICENSE.txt") == b"helper license\n"
    meta = read_member(fixed, f"{dist_info}/METADATA").decode()
    assert f"License-File: {comps['libhelper']['name']}/LICENSE.txt" in meta.splitlines()


@pytest.mark.slow
def test_elf_from_a_conda_prefix_installs_and_imports(tmp_path: Path) -> None:
    if not elfbuild.have_gcc():
        pytest.skip("needs gcc")
    base = tmp_path / "miniforge3"
    prefix = base / "envs" / "dev"
    elfbuild.shared_lib(prefix / "lib" / "libhelper.so.1.4.0", soname="libhelper.so.1")
    (prefix / "lib" / "libhelper.so.1").symlink_to("libhelper.so.1.4.0")
    record = {"name": "helper", "version": "1.4.0", "build": "h1234_0", "channel": "conda-forge",
              "subdir": "linux-64", "license": "BSD-3-Clause",
              "files": ["lib/libhelper.so.1", "lib/libhelper.so.1.4.0"]}
    _put(prefix / "conda-meta" / "helper-1.4.0-h1234_0.json", json.dumps(record))
    _put(base / "pkgs" / "helper-1.4.0-h1234_0" / "info" / "licenses" / "LICENSE", "BSD-3-Clause text\n")
    stage = tmp_path / "stage" / "cz"
    elfbuild.extension(stage, "_cz", needs=[prefix / "lib" / "libhelper.so.1"], runpath=[str(prefix / "lib")])
    _put(stage / "__init__.py", "")
    assert run_cli("build", stage.parent, "--name", "cz", "--version", "1.0", "-w", tmp_path / "dist").code == 0
    fixed, comps, dist_info = _repaired(only_wheel(tmp_path / "dist"), tmp_path / "out")
    assert comps["libhelper"]["purl"] == "pkg:conda/helper@1.4.0?build=h1234_0&channel=conda-forge&subdir=linux-64"
    assert comps["libhelper"]["licenses"] == [{"expression": "BSD-3-Clause"}]
    assert comps["libhelper"]["version"] == "1.4.0"
    shutil.rmtree(base)  # the conda tree is gone: the wheel must carry all it needs
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", fixed)
    out = venv.run("-I", "-c", "import importlib.metadata as m, cz._cz as c; print(c.value()); "
                   "print(m.metadata('cz').get_all('License-File'))")
    value, entries = out.strip().splitlines()
    assert value == "1" and entries == f"['{comps['libhelper']['name']}/LICENSE']"
    installed = venv.site_packages / dist_info / "licenses" / str(comps["libhelper"]["name"]) / "LICENSE"
    assert installed.read_text() == "BSD-3-Clause text\n"
    licenses = [m for m in members(fixed) if m.endswith("/LICENSE")]
    assert licenses == [f"{dist_info}/licenses/{comps['libhelper']['name']}/LICENSE"]


HELPER_SPEC = """Name: helper
Version: 1.0
Release: 3
Summary: a library for a test
License: MIT
%description
A library for a test.
%build
gcc -shared -fPIC -O1 -Wl,-soname,libhelper.so.1 -o libhelper.so.1.0 %{_sourcedir}/helper.c
cp %{_sourcedir}/LICENSE .
%install
mkdir -p %{buildroot}/usr/lib64
cp libhelper.so.1.0 %{buildroot}/usr/lib64/
ln -s libhelper.so.1.0 %{buildroot}/usr/lib64/libhelper.so.1
%files
%license LICENSE
/usr/lib64/libhelper.so.1.0
/usr/lib64/libhelper.so.1
"""


def _rpm_root(tmp_path: Path) -> Path:
    """A root with an rpm database holding one real package (built by rpmbuild, installed by rpm)."""
    import subprocess

    top = tmp_path / "rpmbuild"
    _put(top / "SOURCES" / "helper.c", "int libhelper(void) { return 7; }\n")  # what elfbuild.extension calls
    _put(top / "SOURCES" / "LICENSE", "helper's MIT license\n")
    spec = _put(top / "SPECS" / "helper.spec", HELPER_SPEC)
    subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {top}", "--define", "debug_package %{nil}",
                    "--define", "__strip /bin/true", str(spec)], check=True, capture_output=True)
    (package,) = (top / "RPMS").rglob("*.rpm")
    root = tmp_path / "fedora"
    _put(root / "etc" / "os-release", 'NAME="Fedora Linux"\nID=fedora\n')
    subprocess.run(["rpm", "--root", str(root), "--initdb"], check=True, capture_output=True)
    subprocess.run(["rpm", "--root", str(root), "-i", "--nodeps", "--noscripts", str(package)], check=True,
                   capture_output=True)
    return root


@pytest.mark.slow
def test_elf_from_an_rpm_root(tmp_path: Path) -> None:
    """A library installed by rpm in a sysroot: `repair --sysroot` finds it there, rpm names its package."""
    if not elfbuild.have_gcc() or not shutil.which("rpmbuild") or not shutil.which("rpm"):
        pytest.skip("needs gcc, rpm and rpmbuild (.ci/apt-packages.txt: rpm)")
    root = _rpm_root(tmp_path)
    stage = tmp_path / "stage" / "rz"
    elfbuild.extension(stage, "_rz", needs=[root / "usr" / "lib64" / "libhelper.so.1"])
    _put(stage / "__init__.py", "")
    assert run_cli("build", stage.parent, "--name", "rz", "--version", "1.0", "-w", tmp_path / "dist").code == 0
    fixed, comps, dist_info = _repaired(only_wheel(tmp_path / "dist"), tmp_path / "out", "--sysroot", root)
    assert comps["libhelper"]["purl"] == "pkg:rpm/fedora/helper@1.0-3?arch=x86_64"
    assert comps["libhelper"]["licenses"] == [{"expression": "MIT"}]
    assert _license_member(fixed, dist_info, comps["libhelper"], "LICENSE") == b"helper's MIT license\n"
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", fixed)
    assert venv.run("-I", "-c", "import rz._rz as m; print(m.value())").strip() == "7", "the rpm's library, vendored"
