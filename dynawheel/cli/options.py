"""Options shared by several subcommands."""

from __future__ import annotations

import os
from typing import Any

from ..wheel.zipwriter import DEFLATE_CHOICES


def add_deflate_option(p: Any) -> None:  # a parser or an argument group
    """--deflate; its default comes from $DYNAWHEEL_DEFLATE (read here, in the CLI, not in the library)."""
    p.add_argument("--deflate", choices=DEFLATE_CHOICES, default=os.environ.get("DYNAWHEEL_DEFLATE", "auto"),
                   help="deflate implementation: auto (zlib-ng when installed: ~2.4x faster, ~2%% larger), "
                        "zlib (the standard library's bytes); default $DYNAWHEEL_DEFLATE or auto")
