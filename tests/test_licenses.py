"""License files of vendored libraries (PEP 639): copied into .dist-info/licenses/<library>/, named in METADATA
(Metadata-Version 2.4), in RECORD; installed by pip and seen by importlib.metadata; a library without one is
named in repair's note and returned typed.  Judged by packaging's metadata validation, dpkg-query (which
package, which copyright file), pip and importlib.metadata.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from packaging.metadata import Metadata

from dynawheel.repair.licenses import with_license_files
from dynawheel.repair.options import RepairOptions
from dynawheel.repair.pipeline import repair_wheel

from . import elfbuild
from .conftest import make_venv, run_cli
from .repairkit import members, only_wheel, read_member
from .test_sbom import built

__all__ = ["built"]  # the module-scoped fixture: a wheel whose extension needs Debian's libyaml, libffi, zlib
DIST_INFO = "zy-1.dist-info"


def _dpkg_copyright(library: str) -> Path:
    proc = subprocess.run(["dpkg-query", "-S", library.removeprefix("/usr")], capture_output=True, text=True)
    if proc.returncode:
        proc = subprocess.run(["dpkg-query", "-S", library], capture_output=True, text=True, check=True)
    return Path("/usr/share/doc") / proc.stdout.split(":", 1)[0] / "copyright"


@pytest.fixture(scope="module")
def repaired(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("licensed")
    result = run_cli("repair", built, "-w", out, "--include", "libz.so.1")
    assert result.code == 0, result.err
    assert "no license file found" not in result.err, result.err
    return only_wheel(out)


def test_copyright_files_of_the_owning_packages(repaired: Path) -> None:
    meta = Metadata.from_email(read_member(repaired, f"{DIST_INFO}/METADATA"), validate=True)
    assert meta.metadata_version == "2.4"
    vendored = [m for m in members(repaired) if "/lib" in m and ".so." in m and "/licenses/" not in m]
    assert len(vendored) == 3
    expected = sorted(f"{m.rsplit('/', 1)[1]}/copyright" for m in vendored)
    assert sorted(meta.license_files or []) == expected
    sbom = json.loads(read_member(repaired, f"{DIST_INFO}/sboms/dynawheel.cdx.json"))
    sources = {c["name"]: c for c in sbom["components"]}
    for entry in expected:
        lib = entry.split("/")[0]
        (source,) = [p["value"] for p in sources[lib]["properties"] if p["name"] == "dynawheel:source"]
        assert read_member(repaired, f"{DIST_INFO}/licenses/{entry}") == _dpkg_copyright(source).read_bytes()
    record = read_member(repaired, f"{DIST_INFO}/RECORD").decode()
    assert all(f"{DIST_INFO}/licenses/{e}," in record for e in expected)
    check = run_cli("check", repaired)
    assert check.code == 0, check.out + check.err


@pytest.mark.slow
def test_pip_installs_them_and_importlib_metadata_names_them(repaired: Path, tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", repaired)
    out = venv.run("-I", "-c", "import importlib.metadata as m, zy._zy as z; print(z.value()); "
                   "print('\\n'.join(m.metadata('zy').get_all('License-File')))")
    value, *entries = out.strip().splitlines()
    assert value.endswith(", 1)") and len(entries) == 3
    for entry in entries:
        installed = venv.site_packages / DIST_INFO / "licenses" / entry
        assert installed.read_bytes() == read_member(repaired, f"{DIST_INFO}/licenses/{entry}")


def test_unowned_library_is_named_in_the_note_and_the_result(tmp_path: Path) -> None:
    if not elfbuild.have_gcc():
        pytest.skip("needs gcc")
    lib = elfbuild.shared_lib(tmp_path / "build" / "libhelper.so.1", soname="libhelper.so.1")
    stage = tmp_path / "stage" / "hp"
    elfbuild.extension(stage, "_hp", needs=[lib], runpath=[str(lib.parent)])
    (stage / "__init__.py").write_text("")
    assert run_cli("build", stage.parent, "--name", "hp", "--version", "2", "-w", tmp_path / "dist").code == 0
    wheel = only_wheel(tmp_path / "dist")
    cli = run_cli("repair", wheel, "-w", tmp_path / "cli")
    assert cli.code == 0, cli.err
    (copy,) = [m for m in members(only_wheel(tmp_path / "cli")) if "libhelper" in m]
    assert f"note: no license file found for 1 vendored library (package unknown, or it ships none): {copy}" \
        in cli.err.splitlines()
    result = repair_wheel(wheel, tmp_path / "lib", RepairOptions())
    assert result.licenses.missing == (copy,) and result.licenses.files == ()
    assert result.owners == {str(lib.resolve()): None}
    meta = read_member(only_wheel(tmp_path / "lib"), "hp-2.dist-info/METADATA")
    assert b"License-File" not in meta and b"Metadata-Version: 2.1" in meta, "nothing to name: METADATA unchanged"


def test_metadata_bump_keeps_older_license_files(tmp_path: Path) -> None:
    """Before 2.4 setuptools wrote License-File relative to .dist-info; 2.4 reads it below licenses/."""
    old = (b"Metadata-Version: 2.1\nName: x\nVersion: 1\nLicense-File: LICENSE\nRequires-Dist: a\n\n"
           b"Long description\n\nLicense-File: not-a-header\n")
    have = {"x-1.dist-info/LICENSE": b"MIT text"}
    text, moved = with_license_files(old, ("libz-1234abcd.so.1/copyright",), "x-1.dist-info", have.get)
    assert moved == {"x-1.dist-info/licenses/LICENSE": b"MIT text"}
    meta = Metadata.from_email(text, validate=True)
    assert meta.metadata_version == "2.4" and meta.license_files == ["LICENSE", "libz-1234abcd.so.1/copyright"]
    assert text.endswith(b"\n\nLong description\n\nLicense-File: not-a-header\n") and meta.requires_dist
    same, none = with_license_files(text, ("libz-1234abcd.so.1/copyright",), "x-1.dist-info", have.get)
    assert same == text and none == {}, "2.4 already, the entry already there: unchanged"


def test_check_refuses_a_license_file_that_is_not_there(tmp_path: Path, repaired: Path) -> None:
    broken = tmp_path / repaired.name
    with zipfile.ZipFile(repaired) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == f"{DIST_INFO}/METADATA":
                data = data.replace(b"License-File: libffi", b"License-File: gone/libffi")
                meta = data
            if info.filename == f"{DIST_INFO}/RECORD":  # RECORD stays right: only the License-File is wrong
                digest = base64.urlsafe_b64encode(hashlib.sha256(meta).digest()).rstrip(b"=")
                data = b"\n".join(b"%s/METADATA,sha256=%s,%d" % (DIST_INFO.encode(), digest, len(meta))
                                   if line.startswith(f"{DIST_INFO}/METADATA,".encode()) else line
                                   for line in data.split(b"\n"))
            dst.writestr(info, data)
    result = run_cli("check", broken)
    assert result.code != 0
    problems = [line for line in (result.out + result.err).splitlines() if "METADATA" in line or "RECORD" in line]
    assert len(problems) == 1 and "no member zy-1.dist-info/licenses/gone/libffi" in problems[0], result.out


def test_show_json_names_libraries_without_license_and_reports_the_sbom(tmp_path: Path, repaired: Path,
                                                                         built: Path) -> None:
    import jsonschema

    from dynawheel.report import json_schema

    lib = elfbuild.shared_lib(tmp_path / "build" / "libhelper.so.1", soname="libhelper.so.1")
    stage = tmp_path / "stage" / "hp"
    elfbuild.extension(stage, "_hp", needs=[lib], runpath=[str(lib.parent)])
    (stage / "__init__.py").write_text("")
    assert run_cli("build", stage.parent, "--name", "hp", "--version", "2", "-w", tmp_path / "dist").code == 0
    before = run_cli("show", "--json", only_wheel(tmp_path / "dist"))
    doc = json.loads(before.out)
    jsonschema.validate(doc, json_schema())
    assert doc["provenance"]["no_license"] == [str(lib.resolve())]
    assert doc["provenance"]["sbom"] is None
    text = run_cli("show", only_wheel(tmp_path / "dist")).out
    assert f"licenses: no license file found for 1 library: {lib.resolve()}" in text.splitlines()
    unrepaired = json.loads(run_cli("show", "--json", built).out)["provenance"]  # Debian's: owned, licensed
    assert unrepaired["no_license"] == [] and len(unrepaired["libraries"]) == 2
    assert all(x["owner"].startswith("pkg:deb/debian/") and x["license_files"] for x in unrepaired["libraries"])
    after = json.loads(run_cli("show", "--json", repaired).out)
    jsonschema.validate(after, json_schema())
    sbom = after["provenance"]["sbom"]
    assert sbom["path"] == f"{DIST_INFO}/sboms/dynawheel.cdx.json" and len(sbom["components"]) == 3
    in_sbom = json.loads(read_member(repaired, sbom["path"]))["components"]
    assert sorted(c["purl"] for c in sbom["components"]) == sorted(c["purl"] for c in in_sbom)
    assert after["provenance"]["no_license"] == []
    assert all(x["in_tree"] and len(x["license_files"]) == 1 for x in after["provenance"]["libraries"])


def test_staged_tree_then_build_carries_sbom_and_licenses(built: Path, tmp_path: Path) -> None:
    """A stage without .dist-info: repair leaves the SBOM and license files at its root, build moves them into
    the wheel's .dist-info and names the license files in METADATA.  A stage with one gets them there."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    stage = tmp_path / "stage"
    with zipfile.ZipFile(built) as zf:
        zf.extractall(stage, [n for n in zf.namelist() if not n.startswith(DIST_INFO)])
    fixed = run_cli("repair", stage, "-o", tmp_path / "fixed", "--include", "libz.so.1")
    assert fixed.code == 0, fixed.err
    assert sorted(p.name for p in (tmp_path / "fixed" / "dynawheel-licenses").iterdir())[0].startswith("libffi-")
    assert run_cli("build", tmp_path / "fixed", "--name", "zy", "--version", "1", "-w", tmp_path / "dist").code == 0
    wheel = only_wheel(tmp_path / "dist")
    names = members(wheel)
    assert not [n for n in names if n.startswith("dynawheel")], "nothing left at the wheel's root"
    text = read_member(wheel, f"{DIST_INFO}/sboms/dynawheel.cdx.json").decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert len(json.loads(text)["components"]) == 3
    meta = Metadata.from_email(read_member(wheel, f"{DIST_INFO}/METADATA"), validate=True)
    assert meta.metadata_version == "2.4" and len(meta.license_files or []) == 3
    assert all(f"{DIST_INFO}/licenses/{e}" in names for e in meta.license_files or [])
    assert run_cli("check", wheel).code == 0
    # a stage with a .dist-info (an unpacked wheel): written into it, its METADATA edited
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(built) as zf:
        zf.extractall(unpacked)
    assert run_cli("repair", unpacked, "--in-place").code == 0
    assert (unpacked / DIST_INFO / "sboms" / "dynawheel.cdx.json").is_file()
    edited = Metadata.from_email((unpacked / DIST_INFO / "METADATA").read_bytes(), validate=True)
    assert sorted(edited.license_files or []) == sorted(
        f"{p.parent.name}/{p.name}" for p in (unpacked / DIST_INFO / "licenses").rglob("*") if p.is_file())
    assert len(edited.license_files or []) == 2


def test_two_libraries_of_one_name_get_two_license_directories(tmp_path: Path) -> None:
    from dynawheel.analysis.owners import Owner
    from dynawheel.binary import BinaryFormat
    from dynawheel.repair.collect import Vendored
    from dynawheel.repair.licenses import find_licenses

    one, two = _write_file(tmp_path / "one" / "COPYING", "one"), _write_file(tmp_path / "two" / "COPYING", "two")
    vendored = (Vendored("/x/a/libfoo.so", (), "libfoo.so", "pk/a/libfoo.so", BinaryFormat.ELF, "0" * 64, ()),
                Vendored("/x/b/libfoo.so", (), "libfoo.so", "pk/b/libfoo.so", BinaryFormat.ELF, "1" * 64, ()),
                Vendored("/x/libbar.so", (), "libbar.so", "pk/libbar.so", BinaryFormat.ELF, "2" * 64, ()))
    owners = {"/x/a/libfoo.so": Owner("conda", "foo-a", licenses=(("COPYING", str(one)),)),
              "/x/b/libfoo.so": Owner("conda", "foo-b", licenses=(("COPYING", str(two)),)), "/x/libbar.so": None}
    found = find_licenses(vendored, owners)
    assert [(f.name, f.source) for f in found.files] == [("pk/a/libfoo.so/COPYING", str(one)),
                                                         ("pk/b/libfoo.so/COPYING", str(two))]
    assert found.missing == ("pk/libbar.so",)


def _write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
