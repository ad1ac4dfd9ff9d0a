"""`dynawheel show` from the command line: text, JSON against its schema, DOT/SVG, exit codes, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import jsonschema
import pytest

from dynawheel.report import audit, json_schema, to_json

from .conftest import FIXTURES, assert_user_error, run_cli


def _gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", "-O2", "-fPIC", *map(str, args)], check=True)


@pytest.fixture()
def broken_tree(tmp_path: Path) -> Path:
    """pkg/_ext.so needs libgone.so.1, which was built in a directory that is then deleted."""
    build = tmp_path / "build"
    build.mkdir()
    (build / "gone.c").write_text("int gone(void) { return 1; }\n")
    (build / "ext.c").write_text("int gone(void); int ext(void) { return gone(); }\n")
    _gcc("-shared", "-Wl,-soname,libgone.so.1", build / "gone.c", "-o", build / "libgone.so.1")
    tree = tmp_path / "tree" / "pkg"
    tree.mkdir(parents=True)
    _gcc("-shared", build / "ext.c", "-o", tree / "_ext.so", f"-L{build}", "-l:libgone.so.1", f"-Wl,-rpath,{build}")
    shutil.rmtree(build)
    return tmp_path / "tree"


def test_seed_text_tree(seed_tree: Path) -> None:
    result = run_cli("show", seed_tree / "pkg1" / "src")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    ext = next(line for line in lines if line.startswith("anamespace/_apy."))
    assert "RUNPATH $ORIGIN" in ext
    assert "├── support.so => anamespace/support.so [in tree]" in lines
    assert any(line.startswith("└── libc.so.6 => /") and line.endswith("[system]") for line in lines)
    assert any(line.startswith("elf: manylinux_2_") for line in lines)
    assert lines[-1] == "summary: 0 missing, 0 external, 0 bad files"


def test_missing_library_exit_code_and_places_searched(broken_tree: Path) -> None:
    result = run_cli("show", broken_tree)
    assert result.code == 3
    assert "libgone.so.1 => [MISSING]" in result.out
    build = broken_tree.parent / "build"
    assert f"looked in {build}/libgone.so.1 (DT_RUNPATH" in result.out
    assert "looked in /usr/lib/x86_64-linux-gnu/libgone.so.1" in result.out or "/lib/x86_64-linux-gnu" in result.out
    assert "summary: 1 missing" in result.out


def test_json_validates_against_shipped_schema(seed_tree: Path, broken_tree: Path) -> None:
    for target, ok in ((seed_tree / "pkg1" / "src", True), (broken_tree, False)):
        result = run_cli("show", "--json", target)
        doc = json.loads(result.out)
        jsonschema.validate(doc, json_schema())
        assert doc["version"] == 3 and doc["ok"] is ok
    assert doc["missing"] == ["pkg/_ext.so: libgone.so.1"]
    edge = next(e for w in doc["walks"] for e in w["edges"] if e["request"] == "libgone.so.1")
    assert edge["status"] == "missing" and edge["hit"] is None and edge["tried"]


def test_json_on_wheel_reads_zip_members(seed_tree: Path, tmp_path: Path) -> None:
    built = run_cli("build", seed_tree / "pkg1" / "src", "--name", "p", "--version", "1", "-w", tmp_path)
    assert built.code == 0, built.err
    wheel = next(tmp_path.glob("p-1-*.whl"))
    doc = to_json(audit(wheel))
    paths = {b["path"] for b in doc["binaries"] if b["in_tree"]}
    assert paths == {"anamespace/support.so", next(n for n in zipfile.ZipFile(wheel).namelist() if "_apy" in n)}
    assert not list(tmp_path.glob("anamespace")), "show does not extract the wheel"


def test_macho_fixture_resolution_and_verdict() -> None:
    doc = to_json(audit(FIXTURES / "macho" / "bin"))
    jsonschema.validate(doc, json_schema())
    edges = {(e["dependent"], e["request"]): e for w in doc["walks"] for e in w["edges"]}
    hit = edges[("chain/libchain_a.dylib", "@rpath/libchain_b.dylib")]
    assert (hit["status"], hit["hit"]) == ("in_tree", "chain/bdir/libchain_b.dylib")
    system = edges[("chain/libchain_a.dylib", "/usr/lib/libSystem.B.dylib")]
    assert system["status"] == "system", "in the shared cache: system even though not on this disk"
    assert doc["missing"] == [], "b finds c through a's LC_RPATH; b's own walk is not a root"
    inner = edges[("chain/bdir/libchain_b.dylib", "@rpath/libchain_c.dylib")]
    assert (inner["status"], inner["hit"]) == ("in_tree", "chain/cdir/libchain_c.dylib")
    verdict = next(v for v in doc["verdicts"] if v["format"] == "macho")
    assert verdict["summary"].startswith("arm64") and "macOS >= " in verdict["summary"]


def test_dot_and_svg(seed_tree: Path, tmp_path: Path) -> None:
    dot = run_cli("show", "--dot", seed_tree / "pkg1" / "src")
    assert dot.code == 0
    assert dot.out.startswith("digraph dynawheel {")
    assert '"anamespace/support.so"' in dot.out and " -> " in dot.out
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed here (CI installs it): cannot render SVG")
    svg = run_cli("show", "--svg", tmp_path / "g.svg", seed_tree / "pkg1" / "src")
    assert svg.code == 0, svg.err
    assert "<svg" in (tmp_path / "g.svg").read_text()


def test_bad_inputs_are_reported_and_show_goes_on(seed_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    shutil.copytree(seed_tree / "pkg1" / "src", tree)
    (tree / "anamespace" / "fake.so").write_text("not a library\n")
    (tree / "anamespace" / "trunc.so").write_bytes((tree / "anamespace" / "support.so").read_bytes()[:40])
    result = run_cli("show", tree)
    assert result.code == 3
    assert "bad file: 'anamespace/fake.so' is named like a library but is not" in result.out
    assert any(line.startswith("bad file:") and "trunc.so" in line for line in result.out.splitlines())
    assert "support.so => anamespace/support.so [in tree]" in result.out, "the other files are still shown"
    assert "Traceback" not in result.err
    assert_user_error(run_cli("show", tmp_path / "nope"), "no such file or directory", "nope")
    (tmp_path / "x.whl").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    assert_user_error(run_cli("show", tmp_path / "x.whl"))
