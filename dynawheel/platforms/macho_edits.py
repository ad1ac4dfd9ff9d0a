"""`MachoEdits`: the edit record of one Mach-O file, as repair/plan.py decides it and macho_edit.py's editor
applies it.

Apart from edits.py so that only a repair that plans a Mach-O file defines it (performance: an ELF repair does
not, ~1 ms a frozen dataclass); ``from dynawheel.platforms import MachoEdits`` (or ``.edits``) imports it then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..binary import BinaryFormat


@dataclass(frozen=True)
class MachoEdits:
    """The edits of one Mach-O file (every slice): renamed dependencies, install name, LC_RPATHs."""

    format: ClassVar[BinaryFormat] = BinaryFormat.MACHO
    change_dependencies: tuple[tuple[str, str], ...] = ()  # (load command's name, new name), in the order decided
    install_id: str | None = None
    delete_rpaths: tuple[str, ...] = ()
    add_rpaths: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.change_dependencies or self.install_id or self.delete_rpaths or self.add_rpaths)

    @property
    def renames(self) -> dict[str, str]:
        return dict(self.change_dependencies)

    @property
    def own_name(self) -> str | None:
        return self.install_id

    @property
    def runpath(self) -> tuple[str, ...] | None:
        return None
