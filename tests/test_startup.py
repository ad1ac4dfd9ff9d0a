"""What `dynawheel show` and `dynawheel --version` import (issue 11).

`show` on a small wheel is start-up bound: most of its time is the interpreter and the modules it
imports.  These tests are structural, not timed: a module listed here is one the show path has been
freed of (each with what it cost, measured with ``python -X importtime``), and a change that pulls
it back in fails here instead of slowing every `show` silently (benchmarks/bench_show_pe.py has the
figures).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from . import elfbuild

PE_FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "pe" / "bin" / "realistic.pyd"

# module -> why `show` must not import it (what it cost, or what it belongs to)
NOT_FOR_SHOW = {
    "packaging": "wheel-name validation (~10 ms with platform and subprocess): show reads tags as written",
    "platform": "packaging.tags' import",
    "subprocess": "only for external tools (dot for --svg, patchelf)",
    "pefile": "~28 ms; the PE reader and the stable-ABI audit read the tables themselves; pefile only edits",
    "elftools": "the ELF reader is our own; pyelftools only for ELF symbols of the stable-ABI audit",
    "macholib": "Mach-O is read by platforms/macho.py",
    "hashlib": "~2.5 ms with OpenSSL: digests are repair's and build's",
    "tempfile": "only to spool a big PE member (random, too)",
    "concurrent.futures": "no thread pool when there is nothing to overlap",
    "csv": "RECORD rows are repair's and check's",
    "email": "METADATA parsing is build's and check's",
    "dynawheel.repair": "show reads no repair code (the shim's markers live beside their reader)",
    "dynawheel.wheel.tags": "imports packaging",
    "dynawheel.wheel.zipwriter": "writing is not show's",
    "dynawheel.platforms.edits": "the editors' records (4 dataclasses): repair's",
    "logging": "~7 ms (traceback, linecache, tokenize, string): imported by dynawheel.log when a record is emitted",
    "dynawheel.analysis.owners": "package databases (shutil, regexes): only for a library found outside the tree",
}

# what `show` of a Windows wheel must not import on top (each measured with -X importtime when removed):
# the rules of the ELF and Mach-O verdicts
NOT_FOR_PE_SHOW = {
    "dynawheel.platform_tags": "the ELF/Mach-O tag rules (3 dataclasses, an enum, regexes; ~1.5 ms)",
    "dynawheel.ops.content": "what the ELF/Mach-O verdicts read (with analysis.imports)",
}
# ... and, for a wheel not tagged abi3, the stable-ABI audit
NOT_FOR_NON_ABI3 = {
    "dynawheel.analysis.abi3": "the stable-ABI audit (2 dataclasses, its data)",
    # (the audit reads data/stable-abi.json through policy.read_data)
    "dynawheel.policy": "the manylinux/musllinux policy data (a dataclass, 44 KB of JSON): the ELF rules'",
}

# what `--version` and `--help` may import of dynawheel: no command module
VERSION_ONLY = {"dynawheel", "dynawheel.cli", "dynawheel.errors", "dynawheel.log"}


# runs the CLI in a fresh interpreter and writes what it imported (sys.modules, which also holds the
# modules importlib.import_module brings in, unlike `-X importtime`) and its exit code
_PROBE = """
import sys
from dynawheel.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
names = sorted(sys.modules)
with open(sys.argv[1], "w") as out:
    out.write(str(code) + "\\n" + "\\n".join(names))
"""


def imported(*args: str | Path, cwd: Path) -> tuple[int, set[str]]:
    """Run ``dynawheel ARGS`` in a fresh interpreter; (exit code, every module it imported)."""
    report = cwd / "modules.txt"
    proc = subprocess.run([sys.executable, "-c", _PROBE, report, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONSAFEPATH": "1"}, timeout=120)
    assert report.exists(), proc.stderr
    code, *names = report.read_text().splitlines()
    return int(code), set(names)


def offenders(names: set[str], listed: dict[str, str] = NOT_FOR_SHOW) -> dict[str, str]:
    return {n: why for n, why in listed.items() if any(m == n or m.startswith(n + ".") for m in names)}


def windows_wheel(directory: Path, python: str, abi: str) -> Path:
    """A small win_amd64 wheel of these tags whose extension imports from python3.dll."""
    wheel = directory / f"demo-1.0-{python}-{abi}-win_amd64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("demo/__init__.py", "")
        zf.write(PE_FIXTURE, "demo/_ext.pyd")
        zf.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
        zf.writestr("demo-1.0.dist-info/WHEEL",
                    f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {python}-{abi}-win_amd64\n")
        zf.writestr("demo-1.0.dist-info/RECORD", "")
    return wheel


@pytest.fixture
def abi3_wheel(tmp_path: Path) -> Path:
    """Tagged abi3: the stable-ABI audit runs (psutil's case)."""
    return windows_wheel(tmp_path, "cp38", "abi3")


def test_show_of_a_windows_wheel_imports_only_what_it_needs(abi3_wheel: Path, tmp_path: Path) -> None:
    code, names = imported("show", "--no-system-paths", abi3_wheel, cwd=tmp_path)
    assert code in (0, 3)
    # the path under test did run: the wheel reader, the PE backend and the stable-ABI audit
    assert {"dynawheel.tree", "dynawheel.platforms.pe", "dynawheel.analysis.abi3", "dynawheel.platforms.symbols",
            "dynawheel.report"} <= names, sorted(n for n in names if n.startswith("dynawheel"))
    assert offenders(names) == {}
    assert offenders(names, NOT_FOR_PE_SHOW) == {}


def test_show_of_a_windows_wheel_not_tagged_abi3_imports_no_audit(tmp_path: Path) -> None:
    """Most Windows wheels (cp311-cp311): no stable-ABI audit, no ELF/Mach-O rules, no package database."""
    wheel = windows_wheel(tmp_path, "cp311", "cp311")
    code, names = imported("show", "--no-system-paths", wheel, cwd=tmp_path)
    assert code in (0, 3)
    assert {"dynawheel.tree", "dynawheel.platforms.pe", "dynawheel.report"} <= names
    assert offenders(names) == {}
    assert offenders(names, NOT_FOR_PE_SHOW) == {}
    assert offenders(names, NOT_FOR_NON_ABI3) == {}


@pytest.mark.skipif(not elfbuild.have_gcc(), reason="needs gcc to build the ELF library")
def test_show_of_an_elf_file_imports_only_what_it_needs(tmp_path: Path) -> None:
    """A library needing only libc (the system's): no owner lookup runs (that one may run rpm or dpkg)."""
    lib = elfbuild.shared_lib(tmp_path / "libdemo.so", soname="libdemo.so")
    code, names = imported("show", lib, cwd=tmp_path)
    assert code == 0
    assert {"dynawheel.platforms.elf", "dynawheel.report"} <= names
    assert offenders(names) == {}


# what a repair imports only for what it writes: the SBOM (--no-sbom: none), METADATA fields (license files,
# Requires-Dist of --provided-by), a build's metadata sources
NOT_FOR_A_PLAIN_REPAIR = {
    "packageurl": "purls are the SBOM's",
    "packaging.licenses": "SPDX expressions are the SBOM's (the SPDX list, ~6 ms), for a package declaring one",
    "packaging.requirements": "wheel/metadata.py's, for build",
    "tomllib": "pyproject.toml is build's",
    "dynawheel.wheel.metadata": "build's",
    "dynawheel.analysis.abi3": "the stable-ABI audit (2 dataclasses, a regex): only for a wheel tagged abi3/abi3t",
}


def _plain_wheel(tmp_path: Path) -> Path:
    """demo-1.0: an extension needing libaa.so.1 from a build directory no package manager owns (so no license
    files to ship)."""
    build, stage = tmp_path / "build", tmp_path / "stage"
    libaa = elfbuild.shared_lib(build / "libaa.so.1", soname="libaa.so.1")
    ext = elfbuild.extension(stage / "demo", "_e", needs=[libaa], runpath=[str(build)])
    files = {"demo/__init__.py": b"", f"demo/{ext.name}": ext.read_bytes(),
             "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
             "demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n"}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in files.items())
    wheel = tmp_path / "demo-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("demo-1.0.dist-info/RECORD", record + "demo-1.0.dist-info/RECORD,,\n")
    return wheel


# never imported by a repair: the SBOM is written as JSON (repair/sbom.py); cyclonedx-python-lib only checks it
# in the tests
NOT_FOR_ANY_REPAIR = {
    "cyclonedx": "cyclonedx-python-lib's model and serializer: ~100 ms of imports on every repair that vendors",
    "py_serializable": "cyclonedx's serializer",
    "license_expression": "~16 ms with the SPDX list it loads; packaging.licenses canonicalises expressions",
    "email": "~10 ms with socket, datetime, calendar: METADATA's fields (License-File, Requires-Dist) are read by "
             "wheel/text.py's header_fields",
}


def _loaded(names: set[str], table: dict[str, str]) -> dict[str, str]:
    return {n: why for n, why in table.items() if any(m == n or m.startswith(n + ".") for m in names)}


@pytest.mark.skipif(not elfbuild.have_gcc(), reason="needs gcc to build the extension and its library")
def test_repair_imports_no_sbom_library_and_purls_only_to_write_an_sbom(tmp_path: Path) -> None:
    wheel = _plain_wheel(tmp_path)
    for args, written in (("--no-sbom",), False), ((), True):
        out = tmp_path / f"out{len(args)}"
        code, names = imported("repair", wheel, "-w", out, *args, cwd=tmp_path)
        assert code == 0
        with zipfile.ZipFile(next(out.glob("*.whl"))) as zf:  # the repair did run: libaa.so.1 is vendored
            got = zf.namelist()
        assert any("libaa" in n for n in got) and ("demo-1.0.dist-info/sboms/dynawheel.cdx.json" in got) == written
        assert not any(n.startswith("demo-1.0.dist-info/licenses/") for n in got)
        assert _loaded(names, NOT_FOR_ANY_REPAIR) == {}
        heavy = _loaded(names, NOT_FOR_A_PLAIN_REPAIR)
        # with an SBOM: packageurl (the purls); no package declares a license: no SPDX list
        assert set(heavy) == ({"packageurl"} if written else set()), heavy


@pytest.mark.skipif(not elfbuild.have_gcc(), reason="needs gcc to build the extension and its library")
def test_repair_of_a_library_whose_package_declares_a_license_imports_no_sbom_library(tmp_path: Path) -> None:
    """libaa.so.1 owned by a conda package that declares 'MIT OR Zlib' and ships a license file: the SBOM says
    so as an SPDX expression, canonicalised by packaging.licenses, METADATA names the file; neither cyclonedx,
    license_expression nor email is imported."""
    prefix = tmp_path / "conda"
    lib = elfbuild.shared_lib(prefix / "lib" / "libaa.so.1", soname="libaa.so.1")
    record = {"name": "aa", "version": "1.0", "build": "h0_0", "license": "mit or zlib", "files": ["lib/libaa.so.1"]}
    (prefix / "conda-meta").mkdir()
    (prefix / "conda-meta" / "aa-1.0-h0_0.json").write_text(json.dumps(record))
    (prefix / "pkgs" / "aa-1.0-h0_0" / "info" / "licenses").mkdir(parents=True)
    (prefix / "pkgs" / "aa-1.0-h0_0" / "info" / "licenses" / "LICENSE").write_text("MIT or zlib, your choice\n")
    stage = tmp_path / "stage" / "demo"
    elfbuild.extension(stage, "_e", needs=[lib], runpath=[str(lib.parent)])
    (stage / "__init__.py").write_text("")
    assert imported("build", stage.parent, "--name", "demo", "--version", "1", "-w", tmp_path / "dist",
                    cwd=tmp_path)[0] == 0
    code, names = imported("repair", next((tmp_path / "dist").glob("*.whl")), "-w", tmp_path / "out", cwd=tmp_path)
    assert code == 0
    with zipfile.ZipFile(next((tmp_path / "out").glob("*.whl"))) as zf:
        doc = json.loads(zf.read("demo-1.dist-info/sboms/dynawheel.cdx.json"))
        metadata = zf.read("demo-1.dist-info/METADATA").decode()
    (comp,) = doc["components"]
    assert f"License-File: {comp['name']}/LICENSE" in metadata.splitlines()  # METADATA's fields were read
    assert comp["purl"] == "pkg:conda/aa@1.0?build=h0_0" and comp["licenses"] == [{"expression": "MIT OR Zlib"}]
    assert _loaded(names, NOT_FOR_ANY_REPAIR) == {}
    assert {"packageurl", "packaging.licenses"} <= set(_loaded(names, NOT_FOR_A_PLAIN_REPAIR))


@pytest.mark.parametrize("args", [("--version",), ("--help",)])
def test_version_and_help_import_no_command(args: tuple[str, ...], tmp_path: Path) -> None:
    code, names = imported(*args, cwd=tmp_path)
    assert code == 0
    ours = {n for n in names if n == "dynawheel" or n.startswith("dynawheel.")}
    assert ours <= VERSION_ONLY, sorted(ours - VERSION_ONLY)
    assert "dataclasses" not in names
    assert "logging" not in names


def test_help_lists_every_command_and_a_command_gets_its_own_parser(tmp_path: Path) -> None:
    """The one-line helps come from the CLI's table; the command given is parsed by its module."""
    from dynawheel.cli import _COMMANDS, _parser

    text = _parser([]).format_help()
    for name, (_module, line) in _COMMANDS.items():
        assert name in text and line.split()[0] in text
    show = _parser(["show", "x"])
    args = show.parse_args(["show", "--json", "x.whl"])
    assert args.json is True and args.path == "x.whl" and callable(args.func)


def test_a_command_given_alone_is_parsed_and_reported_as_with_every_command_listed(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`dynawheel [-v|-q] COMMAND ...` builds no parser for the commands not given (~6 M instructions of every
    repair's start): the same namespace, help, usage and errors as with all of them listed; any other option
    before the command (-h, --verb, -vq, --) lists them all, as it may print them."""
    import dynawheel.cli as cli

    argvs = [["repair", "x.whl", "-w", "out"], ["-v", "repair", "x.whl"], ["-vv", "-q", "show", "--json", "x.whl"],
             ["--verbose", "repair"], ["-q", "repair", "--help"], ["repair", "x.whl", "--bogus"], ["-h", "repair"],
             ["--verb", "show", "x"], ["-vq", "show", "x"], ["--", "show", "x"], ["-v", "nothing"], ["-v-v", "show"]]

    def run(argv: list[str]) -> tuple[object, str, str]:
        try:
            result: object = sorted(vars(cli._parser(argv).parse_args(argv)).items(), key=lambda kv: kv[0])
        except SystemExit as exc:
            result = exc.code
        out = capsys.readouterr()
        return result, out.out, out.err

    def choices(argv: list[str]) -> set[str]:
        (action,) = [a for a in cli._parser(argv)._actions if isinstance(a, argparse._SubParsersAction)]
        return set(action.choices)

    alone = [run(a) for a in argvs]
    assert choices(["-v", "repair", "x.whl"]) == {"repair"} and choices(["-h", "repair"]) == set(cli._COMMANDS)
    monkeypatch.setattr(cli, "_only_verbosity_first", lambda argv: False)
    assert choices(["-v", "repair", "x.whl"]) == set(cli._COMMANDS)
    assert [run(a) for a in argvs] == alone
    assert "usage: dynawheel repair" in alone[4][1] and "COMMAND" in alone[6][1]  # both helps were printed


# what a repair of a wheel with ELF files only must not import: what only PE and Mach-O files need (a frozen
# dataclass costs ~1 ms / ~5 M instructions to define; the small repairs of issue 14 are ~130 ms)
NOT_FOR_AN_ELF_REPAIR = {
    "dynawheel.pe_facts": "PeFacts: what the PE reader finds",
    "dynawheel.macho_facts": "MachoFacts: what the Mach-O reader finds",
    "dynawheel.platforms.pe": "the PE reader",
    "dynawheel.platforms.macho": "the Mach-O reader",
    "dynawheel.platforms.pe_edits": "PeEdits: the edits repair/plan.py decides for a PE file",
    "dynawheel.platforms.macho_edits": "MachoEdits: the edits repair/plan.py decides for a Mach-O file",
    "dynawheel.platforms.pe_edit": "the PE editor",
    "dynawheel.platforms.macho_edit": "the Mach-O editor",
}


@pytest.mark.skipif(not elfbuild.have_gcc(), reason="needs gcc to build the extension and its library")
def test_an_elf_repair_imports_nothing_only_pe_or_macho_files_need(tmp_path: Path) -> None:
    wheel = _plain_wheel(tmp_path)
    code, names = imported("repair", wheel, "-w", tmp_path / "out", cwd=tmp_path)
    assert code == 0
    with zipfile.ZipFile(next((tmp_path / "out").glob("*.whl"))) as zf:  # the repair did run: libaa.so.1 is vendored
        assert any("libaa" in n for n in zf.namelist())
    assert {"dynawheel.platforms.elf", "dynawheel.platforms.elf_edit", "dynawheel.repair.plan"} <= names
    assert _loaded(names, NOT_FOR_AN_ELF_REPAIR) == {}
