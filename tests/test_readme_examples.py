"""Every console example of the README that can run here is run, and its output compared.

The README's ```console blocks are read in order. In each, a `$ dynawheel ...` line is run with bash in one shared
workspace (the seed's example built with gcc: `dist/` holds pkg1's wheel with support.so left in the build tree,
`stage/` pkg1's staged tree, `wheelhouse/` pkg2's wheel), and what it prints (stdout and stderr, as a terminal
shows them) must be the lines that follow it in the README. Only the workspace's own path is taken out of the
output (the README shows `/src/build/lib` where the run has `<tmp>/src/build/lib`) and a library's content hash in
its vendored name (`support-1a2b3c4d.so`). A line `...` in the README stands for any number of lines.

Other commands (pip, a web server, aws, docker) are not run and must show no output. A block that cannot run at all
here is marked `<!-- readme-examples: not run: REASON -->` on the line before it.

To write the outputs of a changed command into the README: DYNAWHEEL_README_WRITE=1 pytest tests/test_readme_examples.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import elfbuild
from .conftest import ROOT, run_cli

README = ROOT / "README.md"
NOT_RUN = re.compile(r"<!-- readme-examples: not run: (?P<reason>[^>]+?) -->")
_HASHED = re.compile(r"\b([A-Za-z0-9_.+]+?)-[0-9a-f]{8}(\.so\b|\.dll\b|\.dylib\b)")


@dataclass
class Command:
    line: int  # 1-based line of the `$ ...` line in the README
    text: str
    expected: list[str]


@dataclass
class Block:
    line: int
    skip: str | None
    commands: list[Command]


def blocks(lines: list[str]) -> list[Block]:
    out: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        marker = NOT_RUN.search(lines[i - 1]) if i else None
        block = Block(i + 1, marker.group("reason") if marker else None, [])
        i += 1
        while lines[i].strip() != "```":
            text = lines[i]
            if text.startswith("$ "):
                command = text[2:]
                while command.endswith("\\"):  # a continued command line
                    i += 1
                    command = command[:-1] + "\n" + lines[i]
                block.commands.append(Command(i + 1, command, []))
            else:
                assert block.commands, f"README.md:{i + 1}: output before any command"
                block.commands[-1].expected.append(text)
            i += 1
        out.append(block)
        i += 1
    return out


def normalize(text: str, workspace: Path) -> list[str]:
    return [line.rstrip() for line in text.replace(str(workspace), "").rstrip("\n").splitlines()]


def _unhashed(lines: list[str]) -> list[str]:
    return [_HASHED.sub(r"\1-HASH\2", line) for line in lines]


def matches(expected: list[str], actual: list[str]) -> bool:
    """`expected` with `...` lines standing for any run of lines (possibly none)."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not elfbuild.have_gcc():
        pytest.skip("gcc is needed to build the seed's example")
    if sysconfig.get_config_var("EXT_SUFFIX") != ".cpython-311-x86_64-linux-gnu.so":
        pytest.skip("the README's examples are CPython 3.11 on x86_64 Linux output")
    import stage_seed  # fixtures/seed/stage_seed.py

    ws = tmp_path_factory.mktemp("readme")
    tree = stage_seed.build(ws / "src", external=True)  # support.so stays in src/build/lib
    shutil.copytree(tree / "pkg1" / "src", ws / "stage", symlinks=True)
    built = run_cli("build", tree / "pkg1" / "src", "--name", "anamespace.pkg1", "--version", "1.0.0",
                    "--root-is-platlib", "-w", ws / "dist")
    assert built.code == 0, built.err
    built = run_cli("build", tree / "pkg2" / "src", "--name", "anamespace.pkg2", "--version", "1.0.0",
                    "--requires", "anamespace.pkg1", "--tag", "py3-none-linux_x86_64", "--root-is-platlib",
                    "-w", ws / "wheelhouse")
    assert built.code == 0, built.err
    return ws


def _run(command: str, workspace: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "COLUMNS": "120"}
    proc = subprocess.run(["bash", "-c", command], cwd=workspace, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    return proc.stdout


def test_readme_console_examples(workspace: Path) -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    found = blocks(lines)
    assert len(found) >= 3, "the README has its show, repair and index examples"
    ran, failures, rewrites = 0, [], {}
    for block in found:
        if block.skip:
            continue
        for cmd in block.commands:
            if not cmd.text.startswith("dynawheel "):
                assert not cmd.expected, f"README.md:{cmd.line}: output shown for a command that is not run: {cmd.text}"
                continue
            actual = normalize(_run(cmd.text, workspace), workspace)
            ran += 1
            if not matches(_unhashed(cmd.expected), _unhashed(actual)):
                failures.append(f"README.md:{cmd.line}: $ {cmd.text}\n--- README\n" + "\n".join(cmd.expected)
                                + "\n--- actual\n" + "\n".join(actual))
                rewrites[cmd.line] = (len(cmd.expected), actual)
    if failures and os.environ.get("DYNAWHEEL_README_WRITE"):
        for start, (count, actual) in sorted(rewrites.items(), reverse=True):
            lines[start:start + count] = actual
        README.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert not failures, "\n\n".join(failures)
    assert ran >= 5, ran


def test_blocks_not_run_say_why() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    for block in blocks(lines):
        if block.skip is not None:
            assert len(block.skip) > 10, f"README.md:{block.line}: say why the block is not run"
        for cmd in block.commands:
            assert cmd.text.strip(), f"README.md:{cmd.line}: empty command"


def test_ellipsis_matching() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "d"], ["a", "d"])
    assert not matches(["a", "...", "d"], ["a", "b"])
    assert not matches(["a"], ["a", "b"])
    assert matches(["a", "  ..."], ["a", "x", "y"])
