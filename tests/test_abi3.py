"""The stable-ABI audit (analysis/abi3.py): gcc-built extensions tagged cp38-abi3, one calling functions
outside the stable ABI of Python 3.8, one clean; `show` reports, `repair` refuses unless
--allow-abi3-violations; abi3audit (PyPI, test-only) run on the same wheels agrees.  Marked `network`:
real abi3 wheels from PyPI for manylinux, win_amd64 and macOS, compared with abi3audit."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import platform
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

import jsonschema
import pytest

from dynawheel.analysis.abi3 import stable_abi, stable_abi_target
from dynawheel.report import audit, json_schema, to_json

from .conftest import make_venv, pypi_problem, run_cli

BAD_C = r"""
#define Py_LIMITED_API 0x03080000
#include <Python.h>
/* not declared under the 3.8 limited API: declared here, as a careless extension would */
const char *PyUnicode_AsUTF8AndSize(PyObject *unicode, Py_ssize_t *size);   /* stable ABI since 3.10 */
const char *PyUnicode_AsUTF8(PyObject *unicode);                            /* not in the 3.8 stable ABI */
static PyObject *size(PyObject *self, PyObject *arg) {
    Py_ssize_t n = 0;
    if (PyUnicode_AsUTF8AndSize(arg, &n) == NULL || PyUnicode_AsUTF8(arg) == NULL) return NULL;
    return PyLong_FromSsize_t(n);
}
static PyMethodDef methods[] = {{"size", size, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "NAME", NULL, -1, methods};
PyMODINIT_FUNC PyInit_NAME(void) { return PyModule_Create(&mod); }
"""

GOOD_C = r"""
#define Py_LIMITED_API 0x03080000
#include <Python.h>
static PyObject *twice(PyObject *self, PyObject *arg) {
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(2 * v);
}
static PyMethodDef methods[] = {{"twice", twice, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "NAME", NULL, -1, methods};
PyMODINIT_FUNC PyInit_NAME(void) { return PyModule_Create(&mod); }
"""

PLAT = f"linux_{platform.machine()}"


def _abi3_wheel(tmp_path: Path, name: str, source: str) -> Path:
    """A wheel NAME-1.0-cp38-abi3-linux_<arch>.whl holding NAME.abi3.so, built by gcc."""
    c = tmp_path / f"{name}.c"
    c.write_text(source.replace("NAME", name))
    so = tmp_path / f"{name}.abi3.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", f"-I{sysconfig.get_paths()['include']}", str(c), "-o", str(so)],
                   check=True)
    wheel = tmp_path / f"{name}-1.0-cp38-abi3-{PLAT}.whl"
    dist = f"{name}-1.0.dist-info"
    files = {so.name: so.read_bytes(),
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
             f"{dist}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                               f"Tag: cp38-abi3-{PLAT}\n").encode()}
    digest = {n: base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode() for n, b in files.items()}
    record = "".join(f"{n},sha256={digest[n]},{len(b)}\n" for n, b in files.items()) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        for n, b in files.items():
            zf.writestr(n, b)
        zf.writestr(f"{dist}/RECORD", record)
    return wheel


def _abi3audit(wheel: Path) -> dict[str, set[str]]:
    """abi3audit's findings per extension (file name) of a wheel: non-abi3 symbols and too-new ones."""
    proc = subprocess.run([sys.executable, "-m", "abi3audit", "--report", str(wheel)], capture_output=True,
                          text=True, timeout=600)
    report = json.loads(proc.stdout)
    out: dict[str, set[str]] = {}
    for spec in report["specs"].values():
        for ext in spec["wheel"]:
            name = Path(ext["name"]).name
            result = ext["result"]
            found = set(result.get("non_abi3_symbols", [])) | set(result.get("future_abi3_objects", {}))
            out[name] = out.get(name, set()) | found
    return out


def _ours(wheel: Path) -> dict[str, set[str]]:
    report = audit(wheel)
    assert report.abi3 is not None
    out: dict[str, set[str]] = {}
    for v in report.abi3.violations:
        out.setdefault(Path(v.path).name, set()).add(v.symbol)
    return out


def test_stable_abi_data() -> None:
    data = stable_abi()
    assert data["PyUnicode_AsUTF8AndSize"] == (3, 10)
    assert data["PyArg_ParseTuple"] == (3, 2) and data["PyType_FromSpec"] == (3, 2)
    assert "PyUnicode_AsUTF8" not in data or data["PyUnicode_AsUTF8"] >= (3, 13)
    assert len(data) > 800
    doc = json.loads((Path(__file__).parent.parent / "dynawheel/data/stable-abi.json").read_text())
    assert doc["version"] == 1 and doc["generator"] == "scripts/gen_stable_abi.py"
    assert "stable_abi.toml" in doc["provenance"]


def test_tags() -> None:
    assert stable_abi_target("cp38", "abi3") == ("abi3", (3, 8))
    assert stable_abi_target("cp39.cp310", "abi3") == ("abi3", (3, 9))
    assert stable_abi_target("cp315", "abi3t") == ("abi3t", (3, 15))
    assert stable_abi_target("cp311", "cp311") is None
    assert stable_abi_target("py3", "none") is None


def test_violations_shown_and_refused(tmp_path: Path) -> None:
    wheel = _abi3_wheel(tmp_path, "careless", BAD_C)
    report = audit(wheel)
    assert report.abi3 is not None and report.abi3.minimum == "3.8" and not report.abi3.ok
    found = {(v.path, v.symbol, v.added) for v in report.abi3.violations}
    added = stable_abi().get("PyUnicode_AsUTF8")
    assert found == {("careless.abi3.so", "PyUnicode_AsUTF8AndSize", "3.10"),
                     ("careless.abi3.so", "PyUnicode_AsUTF8", None if added is None else f"{added[0]}.{added[1]}")}
    doc = to_json(report)
    jsonschema.validate(doc, json_schema())
    assert doc["version"] == 3 and doc["abi3"]["ok"] is False and len(doc["abi3"]["violations"]) == 2
    text = run_cli("show", wheel)
    assert "abi3: Python >= 3.8: 2 violation(s)" in text.out
    assert "careless.abi3.so: PyUnicode_AsUTF8AndSize (in the stable ABI since Python 3.10, not 3.8)" in text.out
    # same findings as abi3audit on the same wheel
    assert _ours(wheel) == _abi3audit(wheel) == {"careless.abi3.so": {"PyUnicode_AsUTF8AndSize", "PyUnicode_AsUTF8"}}

    out = tmp_path / "out"
    refused = run_cli("repair", wheel, "-w", out)
    assert refused.code != 0 and "PyUnicode_AsUTF8AndSize" in refused.err and "--allow-abi3-violations" in refused.err
    assert "Traceback" not in refused.err and not list(out.glob("*.whl"))
    allowed = run_cli("repair", "--allow-abi3-violations", wheel, "-w", out)
    assert allowed.code == 0, allowed.err
    assert len(list(out.glob("careless-1.0-cp38-abi3-*.whl"))) == 1


def test_clean_wheel_passes_and_imports(tmp_path: Path) -> None:
    wheel = _abi3_wheel(tmp_path, "tidy", GOOD_C)
    report = audit(wheel)
    assert report.abi3 is not None and report.abi3.ok and report.abi3.checked == 1
    assert _abi3audit(wheel) in ({}, {"tidy.abi3.so": set()})
    out = tmp_path / "out"
    result = run_cli("repair", wheel, "-w", out)
    assert result.code == 0, result.err
    (repaired,) = out.glob("tidy-1.0-cp38-abi3-*.whl")
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "-q", "--no-index", repaired)
    assert venv.run("-c", "import tidy; print(tidy.twice(21))").strip() == "42"
    # a wheel not tagged abi3 is not audited
    plain = wheel.with_name(f"tidy-1.0-cp311-cp311-{PLAT}.whl")
    plain.write_bytes(wheel.read_bytes())
    assert audit(plain).abi3 is None and to_json(audit(plain))["abi3"] is None


# ---- real abi3 wheels from PyPI, side by side with abi3audit -------------------------------------

REAL = [  # (requirement, pip --platform, python version): abi3 wheels of all three formats
    ("cryptography==44.0.0", "manylinux_2_28_x86_64", "3.12"),
    ("cryptography==44.0.0", "win_amd64", "3.12"),
    ("cryptography==44.0.0", "macosx_10_9_universal2", "3.12"),
    ("bcrypt==4.2.1", "manylinux_2_28_x86_64", "3.9"),
    ("bcrypt==4.2.1", "win_amd64", "3.9"),
    ("bcrypt==4.2.1", "macosx_10_12_universal2", "3.9"),
    ("PyNaCl==1.5.0", "manylinux_2_17_x86_64", "3.9"),
    ("PyNaCl==1.5.0", "win_amd64", "3.9"),
    ("PyNaCl==1.5.0", "macosx_10_10_universal2", "3.9"),
    ("argon2-cffi-bindings==21.2.0", "manylinux_2_17_x86_64", "3.12"),
    ("argon2-cffi-bindings==21.2.0", "win_amd64", "3.12"),
    ("argon2-cffi-bindings==21.2.0", "macosx_10_9_universal2", "3.12"),
]


def _download(cache: Path, req: str, plat: str, python: str) -> Path | None:
    key = f"{req}-{plat}-{python}".replace("=", "_")
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = cache / key
        if done.is_dir():
            found = sorted(done.glob("*abi3*.whl"))
            return found[0] if found else None
        reason = pypi_problem(req.split("==")[0], "the abi3audit comparison downloads real abi3 wheels")
        if reason:
            pytest.skip(reason)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--platform", plat,
                 "--python-version", python, "--disable-pip-version-check", "-q", "-d", tmp, req],
                capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr
            Path(tmp).rename(done)
        found = sorted(done.glob("*abi3*.whl"))
        return found[0] if found else None


@pytest.fixture(scope="session")
def abi3_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("abi3-wheels")
    return Path(cache.mkdir("dynawheel-abi3-wheels"))


@pytest.mark.network
@pytest.mark.parametrize(("req", "plat", "python"), REAL, ids=[f"{r}-{p}" for r, p, _ in REAL])
def test_real_abi3_wheels_agree_with_abi3audit(tmp_path: Path, abi3_cache: Path, req: str, plat: str,
                                               python: str) -> None:
    wheel = _download(abi3_cache, req, plat, python)
    assert wheel is not None, f"{req} has no abi3 wheel for {plat}"
    report = audit(wheel)
    assert report.abi3 is not None and report.abi3.checked >= 1
    theirs = {name: found for name, found in _abi3audit(wheel).items() if found}
    assert _ours(wheel) == theirs
    # the same binaries claimed for Python 3.2 (a renamed copy): every symbol added since is a
    # violation for both tools, a non-trivial comparison of the symbols each reads
    old = tmp_path / re.sub(r"-cp3\d+-abi3-", "-cp32-abi3-", wheel.name)
    old.write_bytes(wheel.read_bytes())
    theirs = {name: found for name, found in _abi3audit(old).items() if found}
    assert _ours(old) == theirs
