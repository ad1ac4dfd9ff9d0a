"""A newcomer's first hour (issue 17): options where a user puts them, quiet meaning quiet, counted nouns,
errors that say what is wrong, a serve banner that says only what works, a demo whose commands paste back."""

from __future__ import annotations

import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from . import elfbuild
from .conftest import ROOT, run_cli
from .repairkit import hash_tree, have_patchelf, only_wheel
from .test_repair_cli import small

needs_gcc = pytest.mark.skipif(not elfbuild.have_gcc() or not have_patchelf(), reason="gcc and patchelf are needed")


@needs_gcc
def test_verbosity_after_the_subcommand_and_quiet_repair(tmp_path: Path) -> None:
    s = small(tmp_path)
    wheel = s.wheel()
    loud = run_cli("repair", wheel, "-w", tmp_path / "loud", "-v")  # after the subcommand, as users type it
    assert loud.code == 0, loud.err
    assert "INFO: patching 3 files, vendoring 2 libraries" in loud.err, loud.err
    assert loud.out.startswith("repaired ") and "(2 vendored)" in loud.out
    before = run_cli("-v", "repair", wheel, "-w", tmp_path / "before")  # before it, as it always worked
    assert before.code == 0 and "vendoring 2 libraries" in before.err, before.err
    quiet = run_cli("repair", wheel, "-w", tmp_path / "quiet", "-q")
    assert quiet.code == 0 and quiet.out == "" and quiet.err == "", (quiet.out, quiet.err)
    assert only_wheel(tmp_path / "quiet").read_bytes() == only_wheel(tmp_path / "loud").read_bytes()
    built = run_cli("build", s.stage, "--name", "small", "--version", "2", "-w", tmp_path / "dist2", "-q")
    assert built.code == 0 and built.out == "" and built.err == "", (built.out, built.err)
    assert list((tmp_path / "dist2").glob("small-2-*.whl"))


@needs_gcc
def test_counted_nouns(tmp_path: Path) -> None:
    s = small(tmp_path)
    tree = tmp_path / "pure" / "p"
    tree.mkdir(parents=True)
    (tree / "__init__.py").write_text("")
    (tmp_path / "pure" / "one.txt").write_text("x")
    shown = run_cli("show", tmp_path / "pure")
    assert shown.out.splitlines()[0] == f"{tmp_path / 'pure'}: 0 binaries, 2 files", shown.out
    one = run_cli("show", s.ext)
    assert one.out.splitlines()[0] == f"{s.ext}: 1 binary, 1 file", one.out
    assert one.out.rstrip().splitlines()[-1] == "summary: 0 missing, 2 external, 0 bad files", one.out
    pure = run_cli("build", tmp_path / "pure", "--name", "pure", "--version", "1", "-w", tmp_path / "wh")
    assert pure.code == 0, pure.err
    indexed = run_cli("index", tmp_path / "wh")
    assert indexed.out.startswith("index: 1 file in 1 project at "), indexed.out
    broken = tmp_path / "broken-1-py3-none-any.whl"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("broken-1.dist-info/METADATA", "Metadata-Version: 2.1\nName: broken\nVersion: 1\n")
    checked = run_cli("check", broken)
    assert checked.code == 3
    first = checked.out.splitlines()[0]
    count = len([ln for ln in checked.out.splitlines() if ln.startswith("  - ")])
    assert first == f"{broken.name}: {count} problem{'s' if count != 1 else ''}", checked.out


def test_check_on_a_missing_file_or_a_directory(tmp_path: Path) -> None:
    missing = run_cli("check", tmp_path / "nope-1.0-py3-none-any.whl")
    assert missing.code == 1 and missing.out == "", missing
    assert missing.err.strip() == f"dynawheel: error: no such file: {str(tmp_path / 'nope-1.0-py3-none-any.whl')!r}"
    directory = run_cli("check", tmp_path)
    assert directory.code == 1 and "is a directory: check takes .whl files" in directory.err, directory


def test_show_on_a_file_that_is_not_a_binary(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    result = run_cli("show", text)
    assert result.code == 1 and result.out == "", result
    assert result.err.strip() == (f"dynawheel: error: {str(text)!r} is not a binary (not an ELF, PE or Mach-O file): "
                                  "show reads a binary, a .whl or a directory")
    fake = tmp_path / "libfake.so"  # named like a library: a finding (exit 3), as before
    fake.write_text("not elf")
    assert run_cli("show", fake).code == 3


@needs_gcc
def test_repair_output_inside_the_input_is_refused(tmp_path: Path) -> None:
    s = small(tmp_path)
    before = hash_tree(tmp_path)
    for out in (s.stage / "repaired", s.stage, s.stage / "pk" / "deeper"):
        result = run_cli("repair", s.stage, "-o", out)
        assert result.code == 1, result
        assert "is inside the input" in result.err and "Traceback" not in result.err, result.err
    assert hash_tree(tmp_path) == before, "nothing written"
    ok = run_cli("repair", s.stage, "-o", tmp_path / "repaired")
    assert ok.code == 0, ok.err


def _banner(wheelhouse: Path, *extra: str) -> str:
    proc = subprocess.Popen([sys.executable, "-m", "dynawheel", "serve", str(wheelhouse), "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("dynawheel: serving "), first + (proc.stderr.read() if proc.stderr else "")
        proc.terminate()  # the banner is printed (and flushed) whole before the server starts
        proc.wait(timeout=30)
        rest = proc.stdout.read()  # through the same buffered reader as the first line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return first + rest


def test_serve_banner_gives_upload_instructions_only_when_uploads_are_taken(tmp_path: Path) -> None:
    (tmp_path / "wh").mkdir()
    refused = _banner(tmp_path / "wh")
    assert "uploads refused: no --password-file" in refused.splitlines()[0]
    assert "pip install --index-url http://127.0.0.1:" in refused
    assert "twine" not in refused and "[distutils]" not in refused and "username" not in refused, refused
    anonymous = _banner(tmp_path / "wh", "--allow-anonymous-upload")
    assert "upload with twine" in anonymous and "username = anonymous" in anonymous, anonymous


def test_demo_echoes_commands_that_paste_back() -> None:
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import demo; "
                           "demo.sh('printf', '%s|', 'two words', \"it's\", '$HOME')", str(ROOT / "scripts")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    echoed, output = proc.stdout.splitlines()[:2]
    assert echoed.startswith("$ ")
    assert output == "two words|it's|$HOME|"
    again = subprocess.run(echoed[2:], shell=True, capture_output=True, text=True, timeout=60)  # pasted back
    assert again.stdout == output, (echoed, again.stdout)
    assert shlex.split(echoed[2:]) == ["printf", "%s|", "two words", "it's", "$HOME"]
