"""The `cli` fuzz kind: every subcommand that reads a wheel or a directory of wheels, run as a user runs it
(in this process, `dynawheel.cli.main`), on one mutated wheel.

The input picks the command (a byte of its SHA-256, so a case always runs the same one): ``check``,
``show`` (the wheel, or the wheel's files staged in a directory), ``repair -w`` (and ``--dry-run``),
``repair STAGE -o``, ``build STAGE`` (with the wheel's METADATA), ``tags``, ``merge`` and ``index``.  Each case
asserts the command line's contract (README, "Exit codes"; issue 12):

- the exit code is one the command documents (0 or 1; 3 too for check, show, index and repair --dry-run),
  never 2 (usage: the command lines here are valid) or 4 (an internal error, raised again by targets.cli);
- on exit 1 exactly one ``dynawheel: error:`` line; never a traceback;
- on exit 1 the output directory holds nothing (no ``.whl``, no half-written site);
- nothing is written outside the output directory: every file of the case's work directory and of the
  seeds' library directory has the same bytes after the command, the working directory stays empty,
  and nothing is left in $TMPDIR (run.py checks that);
- the inputs (the wheel, the staged directory, METADATA) are unchanged: hashed before and after.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import targets

WHEEL_NAME = "fuzz-1.0-cp311-cp311-linux_x86_64.whl"
MAX_STAGED = 16 << 20  # bytes the harness extracts into a staged directory (a zip bomb stops there)


@dataclass(frozen=True)
class Case:
    """One case's paths: the input wheel, a directory for staged inputs, the output, the working directory."""

    work: Path
    wheel: Path
    inputs: Path
    out: Path
    cwd: Path
    libs: Path


@dataclass(frozen=True)
class Command:
    name: str
    codes: tuple[int, ...]  # the exit codes the command documents for this use
    args: Callable[[Case, bytes, int], list[str]]  # (case, input, variant) -> the command line after -q
    writes: bool = True  # False: the command writes nothing at all (check, show, --dry-run)


def _search(case: Case) -> list[str]:
    return ["--no-system-paths", "-L", str(case.libs)]


def _stage(case: Case, data: bytes) -> Path:
    """The wheel's files, as far as Python's zipfile reads them, in a staged directory (``.dist-info``
    left out: build writes its own); its METADATA beside the stage, for ``build --metadata``."""
    stage = case.inputs / "stage"
    stage.mkdir()
    total = 0
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except Exception:  # the harness stages what it can read; a zip nothing reads stages nothing
        return stage
    with zf:
        for info in zf.infolist():
            name = info.filename
            parts = name.split("/")
            if (not name or name.endswith("/") or name.startswith("/") or "\\" in name or "\0" in name
                    or any(p in ("", ".", "..") for p in parts) or total + info.file_size > MAX_STAGED):
                continue
            try:
                content = zf.read(info)
            except Exception:
                continue
            if parts[0].endswith(".dist-info"):
                if parts[-1] == "METADATA" and len(parts) == 2:
                    (case.inputs / "METADATA").write_bytes(content)
                continue
            target = stage.joinpath(*parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            except OSError:  # a file and a directory of one name: the first wins
                continue
            total += len(content)
    return stage


def _check(case: Case, data: bytes, variant: int) -> list[str]:
    return ["check", str(case.wheel)] + (["--json"] if variant & 1 else [])


def _show(case: Case, data: bytes, variant: int) -> list[str]:
    return ["show", str(case.wheel), "--json" if variant & 1 else "--dot", *_search(case)]


def _show_dir(case: Case, data: bytes, variant: int) -> list[str]:
    return ["show", str(_stage(case, data)), *_search(case)]


def _repair(case: Case, data: bytes, variant: int) -> list[str]:
    return ["repair", str(case.wheel), "-w", str(case.out), *_search(case), "--allow-missing"]


def _repair_dry(case: Case, data: bytes, variant: int) -> list[str]:
    return ["repair", str(case.wheel), "--dry-run", "-w", str(case.out), *_search(case)] + (
        ["--json"] if variant & 1 else [])


def _repair_stage(case: Case, data: bytes, variant: int) -> list[str]:
    return ["repair", str(_stage(case, data)), "-o", str(case.out / "repaired"), *_search(case),
            "--allow-missing", "--name", "fuzz"]


def _build(case: Case, data: bytes, variant: int) -> list[str]:
    stage = _stage(case, data)
    meta = case.inputs / "METADATA"
    named = ["--metadata", str(meta)] if meta.exists() else ["--name", "fuzz", "--version", "1.0"]
    return ["build", str(stage), "-w", str(case.out), *named] + (["--root-is-platlib"] if variant & 1 else [])


_TAG_CHANGES = (["--python-tag", "+cp312"], ["--platform-tag", "manylinux_2_17_x86_64"], ["--build", "1"],
                ["--abi-tag", "abi3"])


def _tags(case: Case, data: bytes, variant: int) -> list[str]:
    return ["tags", str(case.wheel), "-w", str(case.out), *_TAG_CHANGES[variant % len(_TAG_CHANGES)]]


def _merge(case: Case, data: bytes, variant: int) -> list[str]:
    """The wheel and a copy under another platform tag (identical content: one wheel with both tags), or
    the wheel and a clean seed of the same project (different content: fused or refused)."""
    other = case.inputs / "fuzz-1.0-cp311-cp311-linux_aarch64.whl"
    other.write_bytes(data if variant & 1 else targets._pure_wheel(case.work.parent, "fuzz"))
    return ["merge", str(case.wheel), str(other), "-w", str(case.out)]


def _index(case: Case, data: bytes, variant: int) -> list[str]:
    house = case.inputs / "house"
    house.mkdir()
    os.replace(case.wheel, house / case.wheel.name)
    (house / "other-1.0-py3-none-any.whl").write_bytes(targets._pure_wheel(case.work.parent, "other"))
    return ["index", str(house), "-o", str(case.out)] + (["--flat"] if variant & 1 else [])


COMMANDS = (
    Command("check", (0, 1, 3), _check, writes=False),
    Command("show", (0, 1, 3), _show, writes=False),
    Command("show-dir", (0, 1, 3), _show_dir, writes=False),
    Command("repair", (0, 1), _repair),
    Command("repair-dry-run", (0, 1, 3), _repair_dry, writes=False),
    Command("repair-stage", (0, 1), _repair_stage),
    Command("build", (0, 1), _build),
    Command("tags", (0, 1), _tags),
    Command("merge", (0, 1), _merge),
    Command("index", (0, 1, 3), _index),
)


def pick(data: bytes) -> tuple[Command, int]:
    digest = hashlib.sha256(data).digest()
    return COMMANDS[digest[0] % len(COMMANDS)], digest[1]


def _snapshot(*roots: Path, skip: Path) -> dict[str, str]:
    """Every file and directory below `roots` (but not `skip` nor below it) -> the SHA-256 of its bytes
    (a link: its target; a directory: 'dir')."""
    files: dict[str, str] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            if Path(dirpath) == skip:
                dirnames[:] = []
                continue
            files[dirpath] = "dir"
            for name in filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    files[path] = "link:" + os.readlink(path)
                else:
                    with open(path, "rb") as fp:
                        files[path] = hashlib.sha256(fp.read()).hexdigest()
    return files


def run_case(data: bytes, work: Path) -> None:
    command, variant = pick(data)
    case = Case(work=work, wheel=work / "in" / WHEEL_NAME, inputs=work / "in", out=work / "out",
                cwd=work / "cwd", libs=work.parent / "libs")
    for directory in (case.inputs, case.cwd):
        directory.mkdir()
    case.libs.mkdir(exist_ok=True)
    case.wheel.write_bytes(data)
    args = command.args(case, data, variant)
    before = _snapshot(work, case.libs, skip=case.out)
    home = os.getcwd()
    os.chdir(case.cwd)  # a relative default (dist/, wheelhouse/) would land here: it must stay empty
    try:
        code = targets.cli(args, codes=command.codes)
    finally:
        os.chdir(home)
    _verify(command, code, case, before)


def _verify(command: Command, code: int, case: Case, before: dict[str, str]) -> None:
    after = _snapshot(case.work, case.libs, skip=case.out)
    if after != before:
        changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
        raise AssertionError(f"{command.name}: exit {code} wrote or changed files outside its output directory "
                             f"(or changed its input): {changed[:10]}")
    left = sorted(str(p.relative_to(case.out)) for p in case.out.rglob("*")) if case.out.exists() else []
    if code == 1 and left:
        raise AssertionError(f"{command.name}: exit 1 left {left[:10]} in its output directory")
    if not command.writes and case.out.exists():
        raise AssertionError(f"{command.name}: exit {code} wrote {left[:10] or 'an empty directory'} "
                             "(it writes nothing)")
    if code == 0 and command.name in ("repair", "tags", "merge", "build"):
        wheels = [p for p in left if p.endswith(".whl")]
        if len(wheels) != 1 or any(".tmp" in p or p.startswith(".") for p in left):
            raise AssertionError(f"{command.name}: exit 0 wrote {left[:10]}: expected one wheel and nothing else")
