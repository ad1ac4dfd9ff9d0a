"""`PeEdits`: the edit record of one PE file, as repair/plan.py decides it and pe_edit.py's editor applies it.

Apart from edits.py so that only a repair that plans a PE file defines it (performance: an ELF repair does
not, ~1 ms a frozen dataclass); ``from dynawheel.platforms import PeEdits`` (or ``.edits``) imports it then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..binary import BinaryFormat


@dataclass(frozen=True)
class PeEdits:
    """The edits of one PE file: imported DLLs renamed."""

    format: ClassVar[BinaryFormat] = BinaryFormat.PE
    rename_imports: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.rename_imports

    @property
    def renames(self) -> dict[str, str]:
        return dict(self.rename_imports)

    @property
    def own_name(self) -> str | None:
        return None

    @property
    def runpath(self) -> tuple[str, ...] | None:
        return None

    @property
    def delete_rpaths(self) -> tuple[str, ...]:
        return ()
