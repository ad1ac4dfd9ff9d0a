"""Zip local file headers: where a member's stored bytes start (the one reader of local headers).

A module of its own so that reading a wheel (``show``) does not import the writer and its
hashlib and concurrent.futures.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

__all__ = ["data_offset_from", "pread_data_offset", "raw_data_offset"]


def data_offset_from(head: bytes, header_offset: int) -> int:
    """Where a member's stored data starts, from the 30 bytes read at its local header (the one
    reader of local headers); EOFError when they are not one."""
    if len(head) != 30 or head[:4] != b"PK\x03\x04":
        raise EOFError(f"no local file header at offset {header_offset}")
    name_len, extra_len = struct.unpack_from("<HH", head, 26)
    return int(header_offset + 30 + name_len + extra_len)


def raw_data_offset(fp: BinaryIO, header_offset: int) -> int:
    """Where a member's compressed data starts, from its local header (read through `fp`)."""
    fp.seek(header_offset)
    return data_offset_from(fp.read(30), header_offset)


def pread_data_offset(fd: int, header_offset: int, name: bytes | None = None) -> int:
    """Where a member's compressed data starts, from its local header (read with pread: no seek);
    with `name` (as the central directory stores it), the local header must name the same member."""
    head = os.pread(fd, 30 + len(name or b""), header_offset)
    offset = data_offset_from(head[:30], header_offset)
    if name is not None:
        name_len = struct.unpack_from("<H", head, 26)[0]
        if name_len != len(name) or head[30:] != name:
            got = head[30 : 30 + name_len] + (b"..." if name_len > len(head) - 30 else b"")
            raise EOFError(f"its local header names {got.decode('utf-8', 'replace')!r}")
    return offset
