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
from pathlib import Path
from urllib.parse import unquote

import pytest

from dynawheel.repair.options import RepairOptions
from dynawheel.repair.pipeline import repair_wheel

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
