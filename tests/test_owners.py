"""analysis/owners.py: the package that owns a host file, one layout at a time.

dpkg is judged on this Debian host's own database (copied below a sysroot, and against `dpkg-query`).
The other layouts are laid out here as their package managers write them (apk's installed database,
conda's conda-meta records, vcpkg's info lists, pacman's local database of MSYS2, Homebrew's Cellar):
no such host is reachable from this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dynawheel.analysis.owners import Dpkg, Owner, Owners
from dynawheel.binary import BinaryFormat
from dynawheel.repair.collect import Vendored
from dynawheel.repair.sbom import file_version, sbom_json
from dynawheel.search import SearchPaths

YAML = "/usr/lib/x86_64-linux-gnu/libyaml-0.so.2.0.9"


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _dpkg(*args: str) -> str:
    return subprocess.run(["dpkg-query", *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(not Path(YAML).exists() or shutil.which("dpkg-query") is None,
                    reason="needs a Debian host with libyaml-0-2 (.ci/apt-packages.txt: libyaml-dev)")
def test_dpkg_on_the_host_and_below_a_sysroot(tmp_path: Path) -> None:
    host = Owners(SearchPaths()).owner(YAML)
    name = _dpkg("-S", YAML).split(":", 1)[0]
    assert host is not None and (host.manager, host.name) == ("deb", name)
    assert host.version == _dpkg("-W", "-f", "${Version}", name)
    assert host.licenses == (("copyright", f"/usr/share/doc/{name}/copyright"),)
    root = tmp_path / "root"  # the same database, copied below a sysroot: read there, not on the host
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    shutil.copy("/var/lib/dpkg/status", root / "var/lib/dpkg/status")
    shutil.copy(f"/var/lib/dpkg/info/{name}:amd64.list", info)
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    shutil.copy(YAML, root / YAML.lstrip("/"))
    _write(root / "etc/os-release", 'ID="debian"\n')
    below = Owners(SearchPaths(sysroot=str(root))).owner(f"{root}{YAML}")
    assert below is not None and (below.name, below.version) == (host.name, host.version)
    assert below.licenses == (), "no copyright file below the sysroot: none from the host either"
    assert Owners(SearchPaths(sysroot=str(root))).owner(f"{root}/usr/lib/x86_64-linux-gnu/libz.so.1") is None


# host libraries whose Debian package is named like the file (libyaml-0-2), declared in another package's shlibs
# (liblber-2.5 in libldap-2.5-0's), or neither (libz in zlib1g, libcrypto in libssl3), listed under /lib (usrmerge)
DPKG_CASES = ("libyaml-0.so.2", "libstdc++.so.6", "liblber-2.5.so.0", "libz.so.1", "libcrypto.so.3", "libgcc_s.so.1",
              "ld-linux-x86-64.so.2")


def _dpkg_owner(path: str) -> str | None:
    """The package `dpkg-query -S` says owns `path` or its /lib alias (usrmerge)."""
    for name in (path, path.removeprefix("/usr")):
        proc = subprocess.run(["dpkg-query", "-S", name], capture_output=True, text=True)
        if proc.returncode == 0:
            return proc.stdout.split(":", 1)[0]
    return None


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian host (dpkg-query)")
def test_dpkg_owner_whatever_the_package_is_named_agrees_with_dpkg_query() -> None:
    """The lists of packages named like the file are read first, then the others: the owner is dpkg-query's
    either way, for one Owners asked in turn (lists read once) and for a fresh one per library."""
    paths = [os.path.realpath(p) for name in DPKG_CASES
             if os.path.exists(p := f"/usr/lib/x86_64-linux-gnu/{name}")]
    assert len(paths) >= 4, paths
    shared = Owners(SearchPaths())
    for path in paths:
        expected = _dpkg_owner(path)
        assert expected is not None, path
        for finder in (shared, Owners(SearchPaths()), Owners(SearchPaths(), 1)):  # status indexed / searched
            owner = finder.owner(path)
            assert owner is not None and owner.name == expected, (path, owner)
            assert owner.version == _dpkg("-W", "-f", "${Version}", f"{expected}:amd64")


def test_dpkg_usrmerge_alias(tmp_path: Path) -> None:
    """dpkg lists /lib/x86_64-linux-gnu/libz.so.1.2.13; with /lib -> usr/lib the file is found by its /usr path."""
    root = tmp_path / "root"
    _write(root / "var/lib/dpkg/info/zlib1g:amd64.list", "/.\n/lib\n/lib/x86_64-linux-gnu/libz.so.1.2.13\n")
    _write(root / "var/lib/dpkg/status", "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\n"
                                         "Version: 1:1.2.13.dfsg-1\n\nPackage: other\nStatus: deinstall ok "
                                         "config-files\nArchitecture: amd64\nVersion: 9\n")
    _write(root / "usr/lib/x86_64-linux-gnu/libz.so.1.2.13")
    _write(root / "usr/share/doc/zlib1g/copyright", "zlib license")
    search = SearchPaths(sysroot=str(root))
    lib = f"{root}/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
    assert Owners(search).owner(lib) is None, "without the /lib link there is no alias"
    os.symlink("usr/lib", root / "lib")
    owner = Owners(search).owner(lib)
    assert owner == Owner("deb", "zlib1g", "1:1.2.13.dfsg-1", "debian", (("arch", "amd64"),), None,
                          (("copyright", f"{root}/usr/share/doc/zlib1g/copyright"),))


@pytest.mark.parametrize("lookups", [None, 1, 4, 5])
def test_dpkg_status_searched_or_indexed_alike(tmp_path: Path, lookups: int | None) -> None:
    """The status file is searched for a few files' packages and indexed for more (or an unknown number): the
    same paragraphs either way, whatever the spacing of 'Package:' and whoever else names the package."""
    root = tmp_path / "root"
    _write(root / "var/lib/dpkg/info/zlib1g:amd64.list", "/.\n/usr/lib/x86_64-linux-gnu/libz.so.1.2.13\n")
    _write(root / "var/lib/dpkg/info/libyaml-0-2:amd64.list", "/.\n/usr/lib/x86_64-linux-gnu/libyaml-0.so.2\n")
    _write(root / "var/lib/dpkg/status",
           "Package: other\nStatus: install ok installed\nDepends: zlib1g, libyaml-0-2\nVersion: 9\n\n"
           "Package:\tzlib1g \nStatus: install ok installed\nArchitecture: i386\nVersion: 1:1.2.13.dfsg-1\n\n"
           "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:1.2.13.dfsg-2\n\n"
           "Package: libyaml-0-2x\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n"
           "Package: libyaml-0-2\nStatus: install ok installed\nArchitecture: amd64\nVersion: 0.2.5-1\n")
    for name in ("libz.so.1.2.13", "libyaml-0.so.2"):
        _write(root / "usr/lib/x86_64-linux-gnu" / name)
    search = SearchPaths(sysroot=str(root))
    finder = Owners(search, lookups)
    zlib = finder.owner(f"{root}/usr/lib/x86_64-linux-gnu/libz.so.1.2.13")
    yaml = finder.owner(f"{root}/usr/lib/x86_64-linux-gnu/libyaml-0.so.2")
    assert zlib is not None and (zlib.name, zlib.version, zlib.qualifiers) == (
        "zlib1g", "1:1.2.13.dfsg-2", (("arch", "amd64"),))
    assert yaml is not None and (yaml.name, yaml.version) == ("libyaml-0-2", "0.2.5-1")
    dpkg = next(lay for lay in finder.layouts if isinstance(lay, Dpkg))
    assert dpkg._status("zlib1g") == {("zlib1g", "i386"): ("1:1.2.13.dfsg-1", "i386"),
                                      ("zlib1g", "amd64"): ("1:1.2.13.dfsg-2", "amd64")}
    assert ("_package_lines" in dpkg.__dict__) == (lookups is None or lookups > 4)  # searched, not indexed


def test_apk_installed_database(tmp_path: Path) -> None:
    root = tmp_path / "alpine"
    _write(root / "lib/apk/db/installed",
           "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\nF:lib\nR:ld-musl-x86_64.so.1\nR:libc.musl-x86_64.so.1\n\n"
           "C:Q1def=\nP:zstd-libs\nV:1.5.6-r0\nA:x86_64\nL:BSD-3-Clause OR GPL-2.0-or-later\nF:usr/lib\n"
           "R:libzstd.so.1.5.6\nF:usr/share/licenses/zstd-libs\nR:LICENSE\n\n")
    _write(root / "etc/os-release", "NAME=\"Alpine Linux\"\nID=alpine\n")
    owner = Owners(SearchPaths(sysroot=str(root))).owner(f"{root}/usr/lib/libzstd.so.1.5.6")
    assert owner == Owner("apk", "zstd-libs", "1.5.6-r0", "alpine", (("arch", "x86_64"),),
                          "BSD-3-Clause OR GPL-2.0-or-later",
                          (("LICENSE", f"{root}/usr/share/licenses/zstd-libs/LICENSE"),))
    musl = Owners(SearchPaths(sysroot=str(root))).owner(f"{root}/lib/ld-musl-x86_64.so.1")
    assert musl is not None and musl.name == "musl"


def test_homebrew_keg(tmp_path: Path) -> None:
    keg = tmp_path / "opt/homebrew/Cellar/zstd/1.5.6"
    lib = _write(keg / "lib/libzstd.1.5.6.dylib")
    _write(keg / "LICENSE", "BSD")
    _write(keg / "COPYING", "GPL")
    _write(keg / "README.md")
    owner = Owners(SearchPaths()).owner(str(lib))
    assert owner == Owner("homebrew", "zstd", "1.5.6", licenses=(("COPYING", f"{keg}/COPYING"),
                                                                 ("LICENSE", f"{keg}/LICENSE")))
    assert owner.purl_parts() == ("generic", "homebrew", "zstd", "1.5.6", {})


def test_conda_prefix_and_package_cache(tmp_path: Path) -> None:
    base = tmp_path / "miniforge3"
    prefix = base / "envs" / "build"
    lib = _write(prefix / "lib/libz.so.1.3.1")
    record = {"name": "libzlib", "version": "1.3.1", "build": "hb9d3cd8_2", "build_number": 2,
              "channel": "https://conda.anaconda.org/conda-forge/linux-64", "subdir": "linux-64", "license": "Zlib",
              "files": ["lib/libz.so", "lib/libz.so.1", "lib/libz.so.1.3.1"],
              "extracted_package_dir": "/elsewhere/pkgs/libzlib-1.3.1-hb9d3cd8_2"}
    _write(prefix / "conda-meta/libzlib-1.3.1-hb9d3cd8_2.json", json.dumps(record))
    _write(prefix / "conda-meta/history")
    _write(base / "pkgs/libzlib-1.3.1-hb9d3cd8_2/info/licenses/LICENSE", "zlib")
    owner = Owners(SearchPaths()).owner(str(lib))
    assert owner is not None and (owner.manager, owner.name, owner.version, owner.license) == \
        ("conda", "libzlib", "1.3.1", "Zlib")
    assert owner.licenses == (("LICENSE", f"{base}/pkgs/libzlib-1.3.1-hb9d3cd8_2/info/licenses/LICENSE"),)
    assert owner.purl_parts()[0] == "conda" and owner.purl_parts()[4]["build"] == "hb9d3cd8_2"
    assert Owners(SearchPaths()).owner(str(_write(prefix / "lib/libunowned.so"))) is None


def test_vcpkg_installed_tree(tmp_path: Path) -> None:
    installed = tmp_path / "vcpkg/installed"
    dll = _write(installed / "x64-windows/bin/zlib1.dll")
    _write(installed / "vcpkg/info/zlib_1.3.1_x64-windows.list",
           "x64-windows/\nx64-windows/bin/\nx64-windows/bin/zlib1.dll\nx64-windows/share/zlib/copyright\n")
    _write(installed / "x64-windows/share/zlib/copyright", "zlib")
    owner = Owners(SearchPaths()).owner(str(dll))
    assert owner == Owner("vcpkg", "zlib", "1.3.1", None, (("triplet", "x64-windows"),), None,
                          (("copyright", f"{installed}/x64-windows/share/zlib/copyright"),))


def test_msys2_pacman_database(tmp_path: Path) -> None:
    root = tmp_path / "msys64"
    dll = _write(root / "ucrt64/bin/libzstd.dll")
    _write(root / "ucrt64/share/licenses/zstd/LICENSE", "BSD")
    local = root / "var/lib/pacman/local/mingw-w64-ucrt-x86_64-zstd-1.5.6-2"
    _write(local / "desc", "%NAME%\nmingw-w64-ucrt-x86_64-zstd\n\n%VERSION%\n1.5.6-2\n\n%ARCH%\nany\n\n"
                           "%LICENSE%\nspdx:BSD-3-Clause OR GPL-2.0-or-later\n\n")
    _write(local / "files", "%FILES%\nucrt64/\nucrt64/bin/\nucrt64/bin/libzstd.dll\nucrt64/share/licenses/\n"
                            "ucrt64/share/licenses/zstd/\nucrt64/share/licenses/zstd/LICENSE\n\n")
    owner = Owners(SearchPaths()).owner(str(dll))
    assert owner is not None and (owner.manager, owner.name, owner.version) == \
        ("msys2", "mingw-w64-ucrt-x86_64-zstd", "1.5.6-2")
    assert owner.licenses == (("zstd/LICENSE", f"{root}/ucrt64/share/licenses/zstd/LICENSE"),)
    assert owner.purl_parts()[:2] == ("alpm", "msys2")


def test_sbom_of_owners_from_every_layout_is_valid(tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    owners = {"/c/lib/libz.so.1.3.1": Owner("conda", "libzlib", "1.3.1", None, (("build", "h_2"),), "Zlib"),
              "/m/ucrt64/bin/libzstd.dll": Owner("msys2", "z", "1-2", "msys2", (), "spdx:BSD-3-Clause OR GPL2"),
              "/v/bin/foo.dll": Owner("vcpkg", "foo", "2", None, (("triplet", "x64-windows"),)),
              "/x/libbar.so.4.5.6": None}
    vendored = tuple(Vendored(src, (), f"x.libs/{i}", f"x.libs/{i}-{src.rsplit('/', 1)[1]}", BinaryFormat.ELF,
                              f"{i:064x}", ("x/_ext.so",)) for i, src in enumerate(owners))
    doc = json.loads(sbom_json("x-1-py3-none-any.whl", "x", "1", vendored, owners))
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc)) is None
    by_name = {c["name"].split("-", 1)[1]: c for c in doc["components"]}
    assert by_name["libz.so.1.3.1"]["purl"] == "pkg:conda/libzlib@1.3.1?build=h_2"
    assert by_name["libz.so.1.3.1"]["licenses"] == [{"expression": "Zlib"}]
    assert by_name["libzstd.dll"]["licenses"] == [{"license": {"name": "spdx:BSD-3-Clause OR GPL2"}}]
    assert by_name["foo.dll"]["purl"] == "pkg:generic/vcpkg/foo@2?triplet=x64-windows"
    assert "purl" not in by_name["libbar.so.4.5.6"] and by_name["libbar.so.4.5.6"]["version"] == "4.5.6"
    assert file_version("/usr/lib/libfoo.so.1") is None and file_version("/l/libfoo.1.2.dylib") == "1.2"
