"""`MachoFacts`: what the Mach-O reader finds in one slice beyond the dependencies (``Image.macho``;
``Image.details`` is its JSON).

Apart from :mod:`dynawheel.binary` so that only a run that reads or builds a Mach-O image defines it
(performance: an ELF repair does not, ~1 ms a frozen dataclass); ``from dynawheel.binary import MachoFacts``
imports it then.  It imports nothing of dynawheel: :mod:`dynawheel.binary` says which format it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class MachoFacts:
    """What the Mach-O reader finds in one slice beyond the dependencies."""

    cputype: int = 0x01000007
    cpusubtype: int = 3  # without the capability bits
    slice_offset: int = 0  # where the slice starts in the file
    header_size: int = 0  # the end of the load commands
    free_header_space: int = 0  # bytes between the load commands and the first section
    code_signature: bool = False  # has LC_CODE_SIGNATURE
    min_macos: str | None = None  # LC_BUILD_VERSION (platform macos) / LC_VERSION_MIN_MACOSX
    sdk: str | None = None
    platform: str | None = None  # 'macos', 'ios', ... (LC_BUILD_VERSION), or the number as text
    uuid: str | None = None  # LC_UUID, hex
    code_signature_size: int | None = None  # LC_CODE_SIGNATURE's datasize
    filetype: str = "MH_BUNDLE"  # MH_* name, or the number in hex

    def json(self) -> dict[str, Any]:
        """The JSON of `dynawheel show`: uuid and code_signature_size only when present."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("uuid", "code_signature_size"):
            if out[key] is None:
                del out[key]
        out["filetype"] = out.pop("filetype")
        return out
