"""Options shared by several subcommands."""

from __future__ import annotations

import os
from typing import Any

from ..wheel.zipwriter import DEFLATE_CHOICES


def add_deflate_option(p: Any) -> None:  # a parser or an argument group
    """--deflate; its default comes from $DYNAWHEEL_DEFLATE (read here, in the CLI, not in the library)."""
    p.add_argument("--deflate", choices=DEFLATE_CHOICES, default=os.environ.get("DYNAWHEEL_DEFLATE", "auto"),
                   help="deflate implementation: auto (libdeflate for members up to 128 MiB: ~3x zlib's speed, "
                        "~1%% smaller; zlib-ng for larger ones: ~2.4x, ~2%% larger; each when installed), "
                        "libdeflate, zlib-ng, or zlib (the standard library's bytes); "
                        "default $DYNAWHEEL_DEFLATE or auto")
