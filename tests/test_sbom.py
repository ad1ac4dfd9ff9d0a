"""The PEP 770 SBOM that `repair` writes (.dist-info/sboms/dynawheel.cdx.json), on a real Debian-built wheel.

An extension built here with gcc links Debian's libyaml, libffi and zlib; the wheel is repaired by
dynawheel and by auditwheel (PyPI).  Judged by others: the owning packages equal the ones auditwheel
puts in its SBOM, and the ones `dpkg-query` names; the document passes the CycloneDX 1.6 JSON schema
(cyclonedx-python-lib's validator); the hashes are those of the files on the host; pip installs it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote

import pytest

from dynawheel.analysis.owners import Owner
from dynawheel.binary import BinaryFormat
from dynawheel.repair.collect import Choices, Vendored
from dynawheel.repair.options import RepairOptions
from dynawheel.repair.pipeline import repair_wheel
from dynawheel.repair.sbom import file_version, license_entry, sbom_json, serial_number, spdx_expression

from . import elfbuild
from .conftest import make_venv, run_cli
from .repairkit import members, only_wheel, read_member

SBOM = "zy-1.dist-info/sboms/dynawheel.cdx.json"
ZY_C = """#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <yaml.h>
#include <zlib.h>
#include <ffi.h>
static PyObject *value(PyObject *s, PyObject *a) {
    ffi_cif cif; ffi_type *args[1] = {&ffi_type_sint};
    int ok = ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 1, &ffi_type_sint, args) == FFI_OK;
    return Py_BuildValue("ssi", yaml_get_version_string(), zlibVersion(), ok);
}
static PyMethodDef M[] = {{"value", value, METH_NOARGS, 0}, {0}};
static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, "_zy", 0, -1, M};
PyMODINIT_FUNC PyInit__zy(void) { return PyModule_Create(&D); }
"""
HEADERS = ("/usr/include/yaml.h", "/usr/include/zlib.h", "/usr/include/x86_64-linux-gnu/ffi.h")


def _problem() -> str | None:
    if not elfbuild.have_gcc() or shutil.which("dpkg-query") is None:
        return "needs gcc and a Debian host (dpkg-query)"
    missing = [h for h in HEADERS if not Path(h).exists()]
    if missing:
        return f"needs libyaml-dev, zlib1g-dev, libffi-dev (.ci/apt-packages.txt): {missing} missing"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel whose extension needs libyaml-0.so.2, libz.so.1 and libffi.so.8 from Debian's packages."""
    problem = _problem()
    if problem:
        pytest.skip(problem)
    tmp = tmp_path_factory.mktemp("sbom")
    stage = tmp / "stage" / "zy"
    stage.mkdir(parents=True)
    (stage / "__init__.py").write_text("")
    (tmp / "zy.c").write_text(ZY_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", f"-I{elfbuild.PY_INCLUDE}", str(tmp / "zy.c"), "-o",
                    str(stage / f"_zy{elfbuild.EXT_SUFFIX}"), "-lyaml", "-lz", "-lffi"], check=True)
    assert run_cli("build", stage.parent, "--name", "zy", "--version", "1", "-w", tmp / "dist").code == 0
    return only_wheel(tmp / "dist")


def _repair(wheel: Path, out: Path, *args: str) -> Path:
    result = run_cli("repair", wheel, "-w", out, *args)
    assert result.code == 0, result.err
    return only_wheel(out)


def _sbom(wheel: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads(read_member(wheel, SBOM))
    return doc


def _components(doc: dict[str, object]) -> list[dict[str, object]]:
    comps = doc["components"]
    assert isinstance(comps, list)
    return comps


def _prop(comp: dict[str, object], name: str) -> str:
    props = comp["properties"]
    assert isinstance(props, list)
    (value,) = [p["value"] for p in props if p["name"] == name]
    return str(value)


def _purl_base(purl: str) -> str:
    """'pkg:deb/debian/libffi8@3.4.4-1?arch=amd64' -> the same without qualifiers, unquoted."""
    return unquote(purl.split("?", 1)[0].split("#", 1)[0])


def test_owners_equal_auditwheels(built: Path, tmp_path: Path) -> None:
    if shutil.which("auditwheel", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("auditwheel (>= 6.3, .ci/pip-packages.txt) is not installed beside this Python")
    ours = _repair(built, tmp_path / "ours")
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "auditwheel"), "repair", str(built),
                           "-w", str(tmp_path / "aw")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    theirs = only_wheel(tmp_path / "aw")
    (aw_sbom,) = [m for m in members(theirs) if "/sboms/" in m and m.endswith(".json")]
    aw_doc = json.loads(read_member(theirs, aw_sbom))
    aw_owners = {_purl_base(c["purl"]) for c in aw_doc["components"] if not c["purl"].startswith("pkg:pypi/")}
    our_owners = {_purl_base(str(c["purl"])) for c in _components(_sbom(ours))}
    assert aw_owners == our_owners
    assert {o.split("@")[0] for o in our_owners} == {"pkg:deb/debian/libyaml-0-2", "pkg:deb/debian/libffi8"}


def _dpkg_owner(path: str) -> str:
    """`dpkg-query -S` for the path, or for its /lib alias when /lib links to usr/lib (usrmerge)."""
    for candidate in (path, path.removeprefix("/usr")):
        proc = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if proc.returncode == 0:
            name = proc.stdout.split(":", 1)[0]
            version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True,
                                     text=True, check=True).stdout
            return f"pkg:deb/debian/{name}@{version}"
    raise AssertionError(f"dpkg knows no owner of {path}")


def test_every_component_as_dpkg_and_the_host_say(built: Path, tmp_path: Path) -> None:
    """zlib too (vendored with --include): dpkg lists it as /lib/... only; auditwheel finds no owner for it."""
    wheel = _repair(built, tmp_path / "out", "--include", "libz.so.1")
    comps = _components(_sbom(wheel))
    assert len(comps) == 3
    names = set(members(wheel))
    for comp in comps:
        source, path = _prop(comp, "dynawheel:source"), _prop(comp, "dynawheel:path")
        assert path in names and comp["name"] == path.rsplit("/", 1)[-1]
        assert comp["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(Path(source).read_bytes()).hexdigest()}]
        assert _purl_base(str(comp["purl"])) == _dpkg_owner(source)
        assert str(comp["purl"]).endswith("?arch=amd64") and comp["version"] == _dpkg_owner(source).split("@")[1]
    assert {str(c["purl"]).split("@")[0] for c in comps} >= {"pkg:deb/debian/zlib1g"}


def test_valid_cyclonedx_1_6(built: Path, tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    wheel = _repair(built, tmp_path / "out", "--include", "libz.so.1")
    text = read_member(wheel, SBOM).decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    broken = text.replace('"SHA-256"', '"SHA-257"')  # the validator does reject a bad document
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(broken) is not None
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6" and doc["metadata"]["component"]["purl"] == \
        f"pkg:pypi/zy@1?file_name={wheel.name}"
    depends = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert sorted(depends["pkg:pypi/zy@1"]) == sorted(c["bom-ref"] for c in doc["components"])


def test_byte_identical_on_rerun_and_in_record(built: Path, tmp_path: Path) -> None:
    one = _repair(built, tmp_path / "one", "--include", "libz.so.1")
    two = _repair(built, tmp_path / "two", "--include", "libz.so.1")
    assert read_member(one, SBOM) == read_member(two, SBOM)
    assert one.read_bytes() == two.read_bytes()
    record = {row[0]: row for row in csv.reader(io.StringIO(read_member(one, "zy-1.dist-info/RECORD").decode()))}
    digest = base64.urlsafe_b64encode(hashlib.sha256(read_member(one, SBOM)).digest()).rstrip(b"=").decode()
    assert record[SBOM][1:] == [f"sha256={digest}", str(len(read_member(one, SBOM)))]
    check = run_cli("check", one)
    assert check.code == 0, check.out + check.err


def test_no_sbom_cli_and_library(built: Path, tmp_path: Path) -> None:
    wheel = _repair(built, tmp_path / "cli", "--no-sbom")
    assert not [m for m in members(wheel) if "/sboms/" in m]
    result = repair_wheel(built, tmp_path / "lib", RepairOptions(sbom=False))
    assert result.sbom is None and result.output is not None
    assert not [m for m in members(result.output) if "/sboms/" in m]
    assert len(result.collection.vendored) == 2  # the libraries are vendored all the same
    with_sbom = repair_wheel(built, tmp_path / "lib2", RepairOptions())
    assert with_sbom.sbom == SBOM
    assert {o.name for o in with_sbom.owners.values() if o is not None} == {"libyaml-0-2", "libffi8"}


@pytest.mark.slow
def test_installed_with_pip_the_sbom_is_in_dist_info(built: Path, tmp_path: Path) -> None:
    wheel = _repair(built, tmp_path / "out")
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", wheel)
    out = venv.run("-I", "-c", "import importlib.metadata as m, zy._zy as z; print(z.value()); "
                   "print([str(f) for f in m.files('zy') if 'sboms' in str(f)])")
    value, files = out.strip().splitlines()
    assert value.endswith(", 1)") and files == "['zy-1.dist-info/sboms/dynawheel.cdx.json']"
    assert (venv.site_packages / SBOM).read_bytes() == read_member(wheel, SBOM)


# ---- the document against cyclonedx-python-lib's own model (repair/sbom.py writes the JSON itself) ----------

def _model_sbom(wheel_file: str | None, name: str, version: str | None, vendored: tuple[Vendored, ...],
                owners: Mapping[str, Owner | None]) -> dict[str, object]:
    """The same BOM built with cyclonedx-python-lib's model and serialised by it (as repair did until
    2026-12-06), parsed; the license choice (expression or name) is `spdx_expression`'s, tested below."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    import dynawheel

    def licenses(owner: Owner | None) -> list[LicenseExpression | DisjunctiveLicense] | None:
        if owner is None or not owner.license:
            return None
        expression = spdx_expression(owner.license)
        return [LicenseExpression(expression) if expression else DisjunctiveLicense(name=owner.license)]

    def component(v: Vendored) -> Component:
        owner = owners.get(v.source)
        return Component(
            type=ComponentType.LIBRARY, name=v.dest.rsplit("/", 1)[-1], bom_ref=f"file:{v.dest}",
            version=owner.version if owner is not None and owner.version else file_version(v.source),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=v.sha256)], licenses=licenses(owner),
            purl=PackageURL.from_string(owner.purl()) if owner is not None else None,
            properties=[Property(name="dynawheel:path", value=v.dest),
                        Property(name="dynawheel:source", value=v.source)])

    purl = PackageURL("pypi", None, name.lower().replace("_", "-"), version,
                      {"file_name": wheel_file} if wheel_file else None)
    wheel = Component(type=ComponentType.LIBRARY, name=name, version=version, purl=purl,
                      bom_ref=f"pkg:pypi/{purl.name}" + (f"@{version}" if version else ""))
    libs = {v.dest: component(v) for v in vendored}
    tool = Component(type=ComponentType.APPLICATION, name="dynawheel", version=dynawheel.__version__)
    seed = "\n".join([wheel_file or name, *(f"{v.dest} {v.sha256} {v.source}" for v in vendored)])
    bom = Bom(serial_number=uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16], version=5),
              metadata=BomMetaData(component=wheel, tools=ToolRepository(components=[tool])),
              components=libs.values())
    bom.register_dependency(wheel, [libs[v.dest] for v in vendored if any(c not in libs for c in v.consumers)])
    for v in vendored:
        for consumer in v.consumers:
            if consumer in libs:
                bom.register_dependency(libs[consumer], [libs[v.dest]])
    doc: dict[str, object] = json.loads(JsonV1Dot6(bom).output_as_string())
    metadata = doc["metadata"]
    assert isinstance(metadata, dict)
    metadata.pop("timestamp")
    return doc


def _vendored(i: int, source: str, dest: str, *consumers: str) -> Vendored:
    return Vendored(source, (), dest.rsplit("/", 1)[-1], dest, BinaryFormat.ELF, f"{i:064x}", consumers)


# owners of every kind, declared licenses of every shape, names that tie (sorted by version, then bom-ref)
OWNERS: dict[str, Owner | None] = {
    "/c/lib/libz.so.1.3.1": Owner("conda", "libzlib", "1.3.1", None, (("build", "h_2"), ("channel", "c f")), "Zlib"),
    "/m/ucrt64/bin/libzstd.dll": Owner("msys2", "zstd", "1-2", "msys2", (), "spdx:BSD-3-Clause OR GPL-2.0-or-later"),
    "/m/ucrt64/bin/libbz2.dll": Owner("msys2", "bzip2", "1.0.8-3", "msys2", (), "spdx:BSD-3-Clause OR GPL2"),
    "/v/bin/foo.dll": Owner("vcpkg", "foo", "2", None, (("triplet", "x64-windows"),)),
    "/x/libbar.so.4.5.6": None, "/y/libbar.so.4.5.6": None, "/z/libbar.so": None,
    "/a/libq.so.1": Owner("deb", "libq1", "2:6.2.1+dfsg1-1.1", "debian", (("arch", "amd64"),)),
    "/b/libw.so.1": Owner("apk", "w", "1.0-r0", "alpine", (("arch", "x86_64"),), "mit and (bsd-3-clause or zlib)"),
    "/b/libü.so.1": Owner("rpm", "ü-libs", "1.0", "fedora", (("arch", "x86_64"),), "GPLv2+ and ÜLicense"),
    "/h/Cellar/q/1.0/lib/libq.1.dylib": Owner("homebrew", "q", "1.0", licenses=(("LICENSE", "/h/LICENSE"),)),
}
VENDORED = (
    _vendored(0, "/c/lib/libz.so.1.3.1", "x.libs/libz-1.so.1", "x/_ext.so", "x.libs/libq-2.so.1"),
    _vendored(1, "/m/ucrt64/bin/libzstd.dll", "x.libs/libzstd.dll", "x/_ext.so"),
    _vendored(2, "/m/ucrt64/bin/libbz2.dll", "x.libs/libbz2.dll", "x.libs/libzstd.dll"),
    _vendored(3, "/v/bin/foo.dll", "x.libs/foo.dll", "x.libs/libzstd.dll", "x.libs/libbz2.dll"),
    _vendored(4, "/x/libbar.so.4.5.6", "b/libbar.so", "b/_e.so"),
    _vendored(5, "/y/libbar.so.4.5.6", "a/libbar.so", "a/_e.so"),
    _vendored(6, "/z/libbar.so", "c/libbar.so", "c/_e.so"),
    _vendored(7, "/a/libq.so.1", "x.libs/libq-2.so.1", "x/_ext.so", "x.libs/foo.dll"),
    _vendored(8, "/b/libw.so.1", "x.libs/libw.so.1", "x.libs/libq-2.so.1"),
    _vendored(9, "/b/libü.so.1", "x.libs/libü.so.1", "x/_ext.so"),
    _vendored(10, "/h/Cellar/q/1.0/lib/libq.1.dylib", "x/.dylibs/libq.1.dylib", "x/_ext.so"),
)


@pytest.mark.parametrize("names", [("X_y-1-cp311-cp311-linux_x86_64.whl", "X_y", "1"), (None, "x", None),
                                   (None, "x", "2.0")])
@pytest.mark.parametrize("vendored", [VENDORED, VENDORED[::-1], VENDORED[4:7], VENDORED[:1]],
                         ids=["all", "reversed", "ties", "one"])
def test_same_document_as_cyclonedx_python_libs_model(names: tuple[str | None, str, str | None],
                                                      vendored: tuple[Vendored, ...]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    ours = sbom_json(*names, vendored, OWNERS)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(ours.decode()) is None
    theirs = _model_sbom(*names, vendored, OWNERS)
    assert json.loads(ours) == theirs
    assert ours == (json.dumps(theirs, indent=2) + "\n").encode(), "and the same bytes (keys in the same order)"
    licenses = {c["name"]: c.get("licenses") for c in _components(theirs)}
    if vendored is VENDORED:  # every shape of license in the comparison: expressions, names, none
        assert licenses["libw.so.1"] == [{"expression": "MIT AND (BSD-3-Clause OR Zlib)"}]
        assert licenses["libbz2.dll"] == [{"license": {"name": "spdx:BSD-3-Clause OR GPL2"}}]
        assert licenses["libü.so.1"] == [{"license": {"name": "GPLv2+ and ÜLicense"}}]
        assert licenses["libzstd.dll"] == [{"expression": "BSD-3-Clause OR GPL-2.0-or-later"}]
        assert licenses["libq-2.so.1"] is None and licenses["libq.1.dylib"] is None


def test_same_document_as_the_model_for_a_real_repair(built: Path, tmp_path: Path) -> None:
    result = repair_wheel(built, tmp_path, RepairOptions(choices=Choices(include=("libz.so.1",))))
    assert result.output is not None and len(result.collection.vendored) == 3
    doc = _sbom(result.output)
    assert doc == _model_sbom(result.output.name, "zy", "1", result.collection.vendored, result.owners)


# declared licenses (apk L:, rpm LICENSE, conda license, pacman %LICENSE%) on which packaging.licenses and
# license_expression (what repair used until 2026-12-06) agree: the expression, or None (written as a name)
AGREED = ["MIT", "mit", "Zlib", "zlib", "BSD-3-Clause OR GPL-2.0-or-later", "BSD-3-Clause or GPL-2.0-or-later",
          "GPL-2.0-or-later AND LGPL-2.1-or-later", "GPL-2.0-only WITH Linux-syscall-note",
          "GPL-3.0-or-later WITH GCC-exception-3.1", "(MIT OR Apache-2.0) AND BSD-3-Clause", "Apache-2.0 OR MIT",
          "MIT AND (LGPL-2.1-or-later OR BSD-3-Clause)", "OpenSSL", "ISC", "Unlicense", "curl", "OLDAP-2.8",
          "Apache-2.0 WITH LLVM-exception", "BSL-1.0", "bzip2-1.0.6", "0BSD", "MIT-0", "CC0-1.0", "Unicode-3.0",
          "custom", "custom:none", "GPL2", "GPLv2+", "GPLv2+ and LGPLv2+", "BSD", "BSD 3-Clause", "Public Domain",
          "spdx:BSD-3-Clause OR GPL2"]
# where they differ, packaging's answer, and why it is the one written
DIFFERENT = {
    "GPL-2.0+": "GPL-2.0+",  # a deprecated id kept as declared (license_expression: GPL-2.0-or-later)
    "LGPL-2.1": "LGPL-2.1",  # (license_expression: LGPL-2.1-only)
    "bzip2-1.0.5": "bzip2-1.0.5",  # license_expression makes it bzip2-1.0.6, another license text
    "Nunit": "Nunit",  # license_expression makes it zlib-acknowledgement
    "LicenseRef-Public-Domain": "LicenseRef-Public-Domain",  # valid SPDX; license_expression refused it
    "LicenseRef-scancode-x AND MIT": "LicenseRef-scancode-x AND MIT",
    "MIT/X11": None,  # license_expression raised AttributeError (a repair failed)
    "MIT AND": None,  # the same
    "spdx:MIT": "MIT",  # MSYS2's mark for an SPDX expression (license_expression: not one)
    "spdx:mit or zlib": "MIT OR Zlib",
}


def test_spdx_expressions_as_license_expression_says() -> None:
    from license_expression import get_spdx_licensing

    licensing = get_spdx_licensing()
    for text in AGREED:
        info = licensing.validate(text)
        theirs = info.normalized_expression if not info.errors and info.normalized_expression else None
        assert spdx_expression(text) == theirs, text
        assert license_entry(text) == ({"expression": theirs} if theirs else {"license": {"name": text}})
    for text, expected in DIFFERENT.items():
        assert spdx_expression(text) == expected, text


def test_serial_number_is_uuids_version_5_shape() -> None:
    for seed in ("", "x", "zy-1-cp311-cp311-manylinux_2_17_x86_64.whl\nzy.libs/a 00 /usr/lib/a", "\u00e9" * 1000):
        expected = uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16], version=5)
        assert serial_number(seed) == expected.urn and uuid.UUID(serial_number(seed)).version == 5
