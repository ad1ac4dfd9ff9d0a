"""Counted nouns for messages: `counted(1, "file")` is '1 file', `counted(0, "library", "libraries")` '0 libraries'."""

from __future__ import annotations


def counted(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else (plural or singular + 's')}"
