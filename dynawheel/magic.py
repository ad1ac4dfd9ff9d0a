"""The one table of the first bytes that start a binary of each format.

Leaf module (it imports nothing), so that wheel/ can tell a binary from other files without knowing
anything else about binaries; each reader's ``sniff()`` (platforms/) decides for sure.
"""

from __future__ import annotations

# the first bytes that can start a file of each format
MAGIC_PREFIXES: dict[str, tuple[bytes, ...]] = {
    "elf": (b"\x7fELF",),
    "pe": (b"MZ",),
    "macho": (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce",  # thin, 64/32-bit
              b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"),  # fat (universal), 32- and 64-bit offsets
}
BINARY_MAGIC = tuple(m for prefixes in MAGIC_PREFIXES.values() for m in prefixes)  # any of the formats


def format_of(head: bytes) -> str | None:
    """'elf', 'pe' or 'macho' when `head` (the first 4 bytes or more) starts like such a file, else None."""
    for name, prefixes in MAGIC_PREFIXES.items():
        if head.startswith(prefixes):
            return name
    return None
