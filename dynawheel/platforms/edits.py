"""The edit records of each format and the editors' interface (`dynawheel repair`'s, never `show`'s).

Each editor module (elf_edit, pe_edit, macho_edit) provides a ``make_editor()`` returning an
:class:`Editor`, which takes the frozen edit record of its format (:class:`ElfEdits` here, :class:`MachoEdits`
in macho_edits.py, :class:`PeEdits` in pe_edits.py, both exported here and imported on first use).  The core
reaches these names through the registry (``from dynawheel.platforms import ElfEdits``), which imports this
module on first use: `show` never creates these classes, an ELF repair only ElfEdits.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, Union

from ..binary import BinaryFormat

if TYPE_CHECKING:
    from pathlib import Path

    from .macho_edits import MachoEdits as MachoEdits
    from .pe_edits import PeEdits as PeEdits

# ---- editors -------------------------------------------------------------------------------------

# Each record also answers the format-neutral questions of `dynawheel repair --dry-run` (and of
# RepairResult.plan): renames, runpath, own_name, delete_rpaths.

@dataclass(frozen=True)
class ElfEdits:
    """The edits of one ELF file, applied in one write (or one patchelf call)."""

    format: ClassVar[BinaryFormat] = BinaryFormat.ELF
    replace_needed: tuple[tuple[str, str], ...] = ()  # (DT_NEEDED, new name), in the order decided
    runpath: tuple[str, ...] | None = None  # None: leave as is; (): remove RPATH/RUNPATH
    soname: str | None = None
    force_rpath: bool = False  # write DT_RPATH (inherited by dependencies) instead of DT_RUNPATH

    @property
    def empty(self) -> bool:
        return not self.replace_needed and self.runpath is None and self.soname is None

    @property
    def renames(self) -> dict[str, str]:
        return dict(self.replace_needed)

    @property
    def own_name(self) -> str | None:
        return self.soname

    @property
    def delete_rpaths(self) -> tuple[str, ...]:
        return ()


# PeEdits and MachoEdits are in modules of their own (pe_edits.py, macho_edits.py), imported when a repair plans
# such a file or the name is asked for: performance, an ELF repair defines neither (~1 ms a frozen dataclass).
if TYPE_CHECKING:
    Edits = Union[ElfEdits, MachoEdits, PeEdits]


def __getattr__(name: str) -> Any:
    """PEP 562: PeEdits, MachoEdits and Edits (the Union of the three records), imported on first use."""
    if name == "PeEdits":
        from .pe_edits import PeEdits

        return PeEdits
    if name == "MachoEdits":
        from .macho_edits import MachoEdits

        return MachoEdits
    if name == "Edits":
        return Union[ElfEdits, __getattr__("MachoEdits"), __getattr__("PeEdits")]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class EditJob(NamedTuple):
    """One file an editor writes: the private copy `path`, the tree path errors name (`label`), its
    edits, and, for an editor that `writes_from_source`, the file to read when `path` does not exist yet.
    (Repair's plumbing to the editors: a NamedTuple, no dataclass to create on every repair.)"""

    path: Path
    label: str
    edits: Edits
    source: str | None = None


class Editor(Protocol):
    """Writes the edits of one format, every file once with all its edits."""

    format: BinaryFormat
    writes_from_source: bool  # True: EditJob.source may name the file to read (the copy is written from it)

    def prepare(self) -> None:
        """Start what the edits will need (a tool's version check) on a thread; failures surface in apply()."""
        ...

    def apply(self, jobs: Sequence[EditJob], done: Callable[[Path], None] | None = None) -> None:
        """Write every job; `done` is called with each copy once it is final (maybe on another thread).
        Nothing is written when a file cannot take its edits and the format can tell in advance."""
        ...


_EDITOR_MODULES = {BinaryFormat.ELF: "elf_edit", BinaryFormat.PE: "pe_edit", BinaryFormat.MACHO: "macho_edit"}


def make_editor(fmt: BinaryFormat, *, in_process: bool = True) -> Editor:
    """A new editor for `fmt` (its module is imported now).  `in_process` False: an editor that can
    leave the work to an external tool does so (ELF: patchelf for every file)."""
    module = importlib.import_module(f"{__package__}.{_EDITOR_MODULES[fmt]}")
    editor: Editor = module.make_editor(in_process=in_process)
    return editor
