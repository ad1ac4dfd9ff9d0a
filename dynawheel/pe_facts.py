"""`PeFacts`: what the PE reader finds beyond the dependencies (``Image.pe``; ``Image.details`` is its JSON).

Apart from :mod:`dynawheel.binary` so that only a run that reads or builds a PE image defines it (performance:
an ELF repair does not, ~1 ms a frozen dataclass); ``from dynawheel.binary import PeFacts`` imports it then.
It imports nothing of dynawheel: :mod:`dynawheel.binary` says which format it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class PeFacts:
    """What the PE reader finds beyond the dependencies."""

    machine: int = 0x8664  # IMAGE_FILE_HEADER.Machine
    pe32plus: bool = True  # the optional header is PE32+ (64-bit)
    subsystem: str | int = "IMAGE_SUBSYSTEM_WINDOWS_GUI"  # the IMAGE_SUBSYSTEM_* name, or the number
    exports: tuple[str, ...] = ()  # exported names
    python_extension: bool = False  # exports a PyInit_* function
    dependent_load_flags: int | None = None  # the load config directory's DependentLoadFlags

    def json(self) -> dict[str, Any]:
        """The `details` of show --json: every field, in order."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["exports"] = list(self.exports)
        return out
