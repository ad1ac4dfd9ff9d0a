"""RepairOptions: how to repair (what to vendor, where to look, which tag to aim for, how to write)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..search import SearchPaths
from .collect import Choices

log = logging.getLogger("dynawheel.repair")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RepairOptions:
    """How to repair: what to vendor, where to look, which tag to aim for, how to write."""

    choices: Choices = field(default_factory=Choices)
    search: SearchPaths = field(default_factory=SearchPaths)
    plat: str | None = None  # ELF: the policy to meet (manylinux_2_17_x86_64, manylinux2014_x86_64, ...)
    macos_target: str | None = None  # MACOSX_DEPLOYMENT_TARGET, given by the caller
    provided_by: tuple[Path, ...] = ()
    compression_level: int = 6
    deflate: str = "auto"  # 'auto' (libdeflate; zlib-ng for streams), 'libdeflate', 'zlib-ng' or 'zlib'
    elf_editor: str = "auto"  # 'auto': shared libraries in this process (platforms/elf_rewrite.py); 'patchelf'
    dry_run: bool = False
    sbom: bool = True  # write .dist-info/sboms/dynawheel.cdx.json (PEP 770) listing the vendored libraries
    allow_abi3_violations: bool = False  # repair a wheel tagged abi3 that uses symbols outside its stable ABI
    isa_check: bool = True  # False (--disable-isa-check): x86-64 levels above the baseline do not block manylinux
    progress: Progress | None = None

    def say(self, message: str) -> None:
        """Log a step, and report it to `progress`."""
        log.info(message)
        if self.progress is not None:
            self.progress(message)
