"""CLI: publish subcommands (placeholder until the module lands)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    _ = sub
