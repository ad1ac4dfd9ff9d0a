"""Apply the plan: private copies of every changed or vendored binary, each written once with all its
edits (the format's editor in platforms/ does the writing)."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..binary import BinaryFormat
from ..platforms import EditJob, make_editor
from ..tree import HostFS, Tree
from ..wording import counted
from .plan import Job

if TYPE_CHECKING:
    from ..platforms import Editor, Edits
    from .options import RepairOptions


class Editors:
    """The editor of each format (platforms.make_editor), made on first use: a repair imports the
    editors of the formats it edits only."""

    def __init__(self, in_process: bool = True) -> None:
        self.in_process = in_process
        self._made: dict[BinaryFormat, Editor] = {}

    def of(self, fmt: BinaryFormat) -> Editor:
        if fmt not in self._made:
            self._made[fmt] = make_editor(fmt, in_process=self.in_process)
        return self._made[fmt]


def apply_edits(files: Mapping[Path, tuple[str, Edits]], editors: Editors,
                sources: Mapping[Path, str] | None = None, done: Callable[[Path], None] | None = None) -> None:
    """Apply every file's edits to its private copy: one write per file, by its format's editor.  A
    copy named in `sources` does not exist yet (its editor writes from a source): it is written from
    its source.  `done` is called with each copy once it is written (maybe on a worker thread)."""
    jobs: dict[BinaryFormat, list[EditJob]] = {}
    for path, (label, edits) in files.items():
        jobs.setdefault(edits.format, []).append(EditJob(path, label, edits, (sources or {}).get(path)))
    for fmt in (BinaryFormat.PE, BinaryFormat.MACHO, BinaryFormat.ELF):  # ELF last: its copies pack soonest
        if fmt in jobs:
            editors.of(fmt).apply(jobs[fmt], done)


def edit_copies(job: Job, tree: Tree, work: Path, opts: RepairOptions, editors: Editors,
                ready: Callable[[Path], None] | None = None) -> dict[str, Path]:
    """Private, edited copies of every changed or vendored binary: tree path -> file.  A host
    library whose editor writes from a source (ELF) is not copied first: the editor reads it and
    writes the copy.  `ready` is called with each copy once it is final (as soon as it is edited)."""
    out: dict[str, Path] = {}
    sources: dict[Path, str] = {}
    host = HostFS(opts.search.sysroot)
    vendored = {v.dest: v for v in job.collection.vendored}
    for rel in sorted(set(job.plan.files) | set(vendored)):
        dest = out[rel] = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        # a copy of a library the tree ships (for the scripts directory) is read from the tree
        src_rel = job.analysis.relpath(vendored[rel].source) if rel in vendored else rel
        real = host.real(vendored[rel].source) if rel in vendored and src_rel is None else None
        edits = job.plan.files.get(rel)
        if real is not None and edits is not None and editors.of(edits.format).writes_from_source:
            sources[dest] = real
            continue
        src_fp = tree.open(src_rel) if src_rel is not None else host.open(vendored[rel].source)
        with src_fp as src, open(dest, "wb") as fp:
            if isinstance(src, io.BytesIO):  # performance: a member inflated whole, written in one call
                with src.getbuffer() as view:
                    fp.write(view)
            else:
                shutil.copyfileobj(src, fp, 1 << 20)
    libraries = counted(len(vendored), "library", "libraries")
    opts.say(f"patching {counted(len(job.plan.files), 'file')}, vendoring {libraries}")
    apply_edits({out[rel]: (rel, edits) for rel, edits in job.plan.files.items()}, editors, sources, ready)
    for dest in out.values():
        os.chmod(dest, 0o755)
        if ready is not None:
            ready(dest)  # again for an edited copy: a no-op
    return out
